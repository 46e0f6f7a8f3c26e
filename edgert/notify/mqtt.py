"""The MQTT publisher both processes use: QoS 1 over paho-mqtt, where a message counts as delivered only once
the broker's PUBACK has come back, and the connection is rebuilt in the background after a drop.

Each connection is a fresh paho client with its own network thread. A client that lost its connection is thrown
away with whatever it had in flight, instead of letting paho resend that on reconnect: the caller was told those
messages were not acknowledged and sends them again itself, so each one goes out once more, not twice. A duplicate
then only happens at QoS 1's usual edge (the broker took the message but its PUBACK was lost).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edgert.backoff import Backoff
from edgert.errors import NotifyError, NotifyUnavailable
from edgert.notify.config import MqttConfig

log = logging.getLogger(__name__)

SCHEMES = {"mqtt": 1883, "mqtts": 8883}
# CONNACK refusals that another try with the same settings cannot fix (MQTT 3.1.1 codes 1, 2, 4, 5 as paho's
# MQTT 5 reason codes): the caller must change its configuration.
PERMANENT_REFUSALS = {"Unsupported protocol version", "Client identifier not valid", "Bad user name or password",
                      "Not authorized"}
CREDENTIAL_REFUSALS = {"Bad user name or password", "Not authorized"}
LOOP_TICK_S = 0.2  # the network thread wakes this often to notice close()


@dataclass(frozen=True)
class BrokerUrl:
    scheme: str
    host: str
    port: int
    username: Optional[str] = None
    password: Optional[str] = None

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    def __str__(self) -> str:  # never shows the password
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_broker(url: str) -> BrokerUrl:
    """mqtt://[user[:password]@]host[:port] or mqtts://...; the port defaults to 1883 (mqtts: 8883)."""
    if not isinstance(url, str) or not url.strip():
        raise NotifyError("no MQTT broker given: expected mqtt://HOST[:PORT]")
    try:
        u = urlsplit(url.strip())
        port = u.port
    except ValueError as exc:  # a port that is not a number or out of range
        raise NotifyError(f"MQTT broker URL {_redact(url)!r} is not valid: {exc}") from None
    if u.scheme not in SCHEMES:
        raise NotifyError(f"MQTT broker URL {_redact(url)!r} must start with mqtt:// or mqtts://")
    if not u.hostname:
        raise NotifyError(f"MQTT broker URL {_redact(url)!r} names no host")
    if u.path not in ("", "/") or u.query or u.fragment:
        raise NotifyError(f"MQTT broker URL {_redact(url)!r} must be only scheme://[user[:password]@]host[:port]")
    return BrokerUrl(u.scheme, u.hostname, port or SCHEMES[u.scheme],
                     unquote(u.username) if u.username else None, unquote(u.password) if u.password else None)


def _redact(url: str) -> str:
    """The URL with any password replaced, for error messages."""
    try:
        u = urlsplit(url)
        if u.password:
            return url.replace(f":{u.password}@", ":***@", 1)
    except ValueError:
        pass
    return url


class _Connection:
    """One paho client, connected once, and the thread that runs its network loop until it drops or is closed."""

    def __init__(self, client: paho.Client, changed: threading.Condition):
        self.client = client
        self._changed = changed
        self.connack = threading.Event()
        self.refusal: Optional[str] = None
        self.dead = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="mqtt-net", daemon=True)

    def _loop(self) -> None:
        while not self.dead.is_set():
            rc = self.client.loop(LOOP_TICK_S)
            if rc != paho.MQTT_ERR_SUCCESS:
                break
        self.close()

    def close(self) -> None:
        if self.dead.is_set():
            return
        self.dead.set()
        with self._changed:
            self._changed.notify_all()
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001  (the socket is already gone; nothing to tell anyone)
            pass

    @property
    def alive(self) -> bool:
        return self.connack.is_set() and self.refusal is None and not self.dead.is_set()


class MqttPublisher:
    """Publishes at QoS 1 to the broker of `cfg`. `connect()` first; `publish()` blocks until PUBACK."""

    def __init__(self, cfg: MqttConfig, *, client_id: str, will: Optional[tuple[str, bytes]] = None):
        if not cfg.broker:
            raise NotifyError("MQTT is not configured: no broker URL")
        url = parse_broker(cfg.broker)
        self.broker = url
        self.cfg = cfg
        self.client_id = client_id
        self.will = will
        self._username = cfg.username if cfg.username is not None else url.username
        self._password = cfg.password if cfg.password is not None else url.password
        self._backoff = Backoff(cfg.retry_initial_s, cfg.retry_max_s)
        self._changed = threading.Condition()
        self._conn: Optional[_Connection] = None
        self._stop = threading.Event()
        self._supervisor: Optional[threading.Thread] = None
        self._connections = 0
        self._last_problem = ""

    # ------------------------------------------------------------------------------------------ connection
    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and conn.alive

    @property
    def connections(self) -> int:
        """Connections made so far. A caller that keeps retained state on the broker republishes it when this
        grows: a broker restarted without persistence has forgotten it."""
        return self._connections

    def connect(self, timeout_s: Optional[float] = None) -> None:
        """Connects once, within `timeout_s` (default publish_timeout_s). Raises NotifyError when the broker refuses
        (bad credentials, not authorised) and NotifyUnavailable when it cannot be reached; in the latter case, and
        after any later drop, the publisher keeps trying in the background until close()."""
        if self._stop.is_set():
            raise NotifyError(f"the publisher to {self.broker} is closed")
        try:
            self._open(self.cfg.publish_timeout_s if timeout_s is None else timeout_s)
        except NotifyUnavailable:
            self._start_supervisor()
            raise
        self._start_supervisor()

    def _start_supervisor(self) -> None:
        if self._supervisor is None:
            self._supervisor = threading.Thread(target=self._supervise, name="mqtt-reconnect", daemon=True)
            self._supervisor.start()

    def _client(self) -> paho.Client:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv311,
                        clean_session=True)
        if self._username is not None:
            c.username_pw_set(self._username, self._password)
        if self.broker.tls or self.cfg.tls_ca:
            try:
                c.tls_set(ca_certs=self.cfg.tls_ca, certfile=self.cfg.tls_cert, keyfile=self.cfg.tls_key)
            except (OSError, ValueError) as exc:
                raise NotifyError(f"MQTT TLS settings for {self.broker} are not usable: {exc}") from None
            c.tls_insecure_set(self.cfg.tls_insecure)
        if self.will is not None:
            c.will_set(self.will[0], self.will[1], qos=1, retain=True)
        return c

    def _open(self, timeout_s: float) -> None:
        client = self._client()
        conn = _Connection(client, self._changed)

        def on_connect(_c, _u, _flags, reason, _props) -> None:
            if reason.is_failure:
                conn.refusal = str(reason)
            conn.connack.set()
            with self._changed:
                self._changed.notify_all()

        def on_disconnect(_c, _u, _flags, _reason, _props) -> None:
            conn.dead.set()
            with self._changed:
                self._changed.notify_all()

        def on_publish(_c, _u, _mid, _reason, _props) -> None:
            with self._changed:
                self._changed.notify_all()

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.connect_timeout = max(0.1, timeout_s)
        deadline = time.monotonic() + timeout_s
        try:
            client.connect(self.broker.host, self.broker.port, keepalive=int(self.cfg.keepalive_s))
        except OSError as exc:
            raise NotifyUnavailable(f"MQTT broker {self.broker} cannot be reached: "
                                    f"{exc.strerror or exc or type(exc).__name__}") from None
        conn.thread.start()
        got = conn.connack.wait(max(0.0, deadline - time.monotonic()))
        if conn.refusal is not None:
            conn.close()
            if conn.refusal in CREDENTIAL_REFUSALS:
                who = f"user {self._username!r}" if self._username is not None else "an anonymous client"
                raise NotifyError(f"{self.broker} refused the connection: {conn.refusal.lower()} (the credentials "
                                  f"of {who} were refused)")
            if conn.refusal in PERMANENT_REFUSALS:
                raise NotifyError(f"{self.broker} refused the connection: {conn.refusal.lower()}")
            raise NotifyUnavailable(f"{self.broker} refused the connection: {conn.refusal.lower()}")
        if not got or conn.dead.is_set():
            conn.close()
            raise NotifyUnavailable(f"MQTT broker {self.broker} did not accept the connection within {timeout_s:g} s")
        old, self._conn = self._conn, conn
        if old is not None:
            old.close()
        self._connections += 1
        log.info("connected to MQTT broker %s as %s", self.broker, self.client_id)

    def _supervise(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            conn = self._conn
            if conn is not None and conn.alive:
                attempt = 0
                conn.dead.wait(LOOP_TICK_S * 5)
                continue
            if self._stop.wait(self._backoff.delay(attempt)):
                break
            attempt += 1
            try:
                self._open(self.cfg.publish_timeout_s)
            except NotifyError as exc:  # refusals too: someone may fix the broker's password file
                if str(exc) != self._last_problem:
                    log.warning("%s; retrying", exc)
                    self._last_problem = str(exc)
            else:
                if self._last_problem:
                    log.warning("MQTT broker %s is back", self.broker)
                self._last_problem = ""

    def close(self) -> None:
        """Disconnects cleanly (the broker does not send the will) and stops reconnecting."""
        self._stop.set()
        conn = self._conn
        if conn is not None:
            conn.close()
            conn.thread.join(timeout=2.0)
        if self._supervisor is not None:
            self._supervisor.join(timeout=2.0)
        with self._changed:
            self._changed.notify_all()

    def __enter__(self) -> "MqttPublisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ publishing
    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Sends one message at QoS 1 and returns once the broker acknowledged it."""
        self.publish_many([(topic, payload, retain)])

    def publish_many(self, messages: Sequence[tuple[str, bytes, bool]] | Iterable[tuple[str, bytes, bool]]) -> None:
        """Sends all messages without waiting in between, then waits until every one is acknowledged. Raises
        NotifyUnavailable when the connection is down or drops, or an acknowledgement does not come within
        publish_timeout_s; the caller sends all of them again (those that did arrive then arrive twice)."""
        conn = self._conn
        if conn is None or not conn.alive:
            raise NotifyUnavailable(f"not connected to MQTT broker {self.broker}"
                                    + (f" ({self._last_problem})" if self._last_problem else ""))
        infos = []
        for topic, payload, retain in messages:
            try:
                info = conn.client.publish(topic, payload, qos=1, retain=retain)
            except ValueError as exc:  # a topic with a wildcard, or a payload too large: a bug in the caller
                raise NotifyError(f"cannot publish to {topic!r}: {exc}") from None
            if info.rc != paho.MQTT_ERR_SUCCESS:
                conn.close()  # the message is queued in paho; this client must not send it later
                raise NotifyUnavailable(f"MQTT broker {self.broker}: publish failed ({paho.error_string(info.rc)})")
            infos.append(info)
        deadline = time.monotonic() + self.cfg.publish_timeout_s
        with self._changed:
            while True:
                if all(i.is_published() for i in infos):
                    return
                if conn.dead.is_set():
                    raise NotifyUnavailable(f"lost the connection to MQTT broker {self.broker} before "
                                            f"{sum(not i.is_published() for i in infos)} of {len(infos)} "
                                            "messages were acknowledged")
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    raise NotifyUnavailable(f"MQTT broker {self.broker} did not acknowledge "
                                            f"{sum(not i.is_published() for i in infos)} of {len(infos)} "
                                            f"messages within {self.cfg.publish_timeout_s:g} s")
                self._changed.wait(min(left, LOOP_TICK_S))
