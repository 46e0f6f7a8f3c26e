"""Where the bridge's notes go: a small transport base and its kinds (MQTT, webhook), found by their KEY among the
base's subclasses. The bridge's loop only calls `open`, `lead`, `stand_by`, `send`, `statuses` and `close`; it
never knows which transport it drives."""
from __future__ import annotations

import logging
import secrets
import threading
import time
import zlib
from typing import ClassVar, Optional, Sequence

from edgert.errors import NotifyError, NotifyUnavailable
from edgert.notify import discovery
from edgert.notify.config import MqttConfig, WebhookConfig
from edgert.notify.mqtt import MqttPublisher
from edgert.notify.payloads import (
    AlertNote,
    EventNote,
    StatusNote,
    alert_json,
    bridge_json,
    delivery_id,
    event_json,
    status_json,
)
from edgert.notify.topics import Topics

log = logging.getLogger("cloud_svc.notify")

EVENTS, ENDS, VERIFIED, ALERTS = "events", "ends", "verified", "alerts"
CURSOR_NAME_MAX = 64  # cursors.name is a String(64)
# what follows a transport's cursor prefix: a stream's name, or the lease of the bridge that keeps them
CURSOR_SUFFIX_MAX = max(len(f":{n}") for n in (EVENTS, ENDS, VERIFIED, ALERTS, "leader"))


class Transport:
    """One destination. `send` delivers all of its notes or raises: NotifyUnavailable (try again later: the
    follower keeps them) or NotifyError (this destination refuses; the bridge stops feeding it)."""

    KEY: ClassVar[str] = ""
    streams: ClassVar[tuple[str, ...]] = ()
    chunk: ClassVar[int] = 1             # notes per send(): all of one send are sent again after a failure

    @property
    def cursor_prefix(self) -> str:
        """The prefix of this transport's cursor names: two bridges with the same prefix share their progress."""
        return f"notify:{self.KEY}"

    def open(self) -> None:
        """Connects. Raises NotifyError when the destination refuses us (wrong credentials); being unreachable
        is not an error here: the transport keeps trying."""

    def lead(self) -> None:
        """This bridge relays from now on (it took the lease): be ready to send. Raises like open()."""

    def stand_by(self) -> None:
        """Another bridge relays: let go of the destination quietly (say nothing, leave nothing behind that
        speaks for this bridge later), until lead()."""

    def send(self, notes: Sequence[EventNote | AlertNote]) -> None:
        raise NotImplementedError

    def statuses(self, notes: Sequence[StatusNote], now_ns: int) -> None:
        """The devices' current status, offered every step; a transport without a status sends nothing."""

    def close(self) -> None:
        """Stops cleanly."""

    def describe(self) -> str:
        return self.KEY


def transport_kinds() -> dict[str, type[Transport]]:
    """Every transport kind by its KEY."""
    return {cls.KEY: cls for cls in Transport.__subclasses__() if cls.KEY}


def _cursor_prefix(kind: str, scope: str) -> str:
    name = f"notify:{kind}:{scope}"
    if len(name) + CURSOR_SUFFIX_MAX <= CURSOR_NAME_MAX:
        return name
    return f"notify:{kind}:{scope[:24]}~{zlib.crc32(scope.encode()):08x}"


class MqttTransport(Transport):
    """Events, ends, verified notes and alerts on PREFIX/DEVICE/event, PREFIX/DEVICE/alert and PREFIX/fleet/alert;
    each device's retained status on PREFIX/DEVICE/status (on change and every status_s), and its Home Assistant
    discovery when the bridge first sees it on a connection; the bridge's own retained status (on each connection
    and every status_s), with an offline will.

    Only the leading bridge is connected: one standing by has disconnected cleanly, so neither its will nor its
    client id can speak over the leader's. Each bridge connects under its own client id (unless one is
    configured), so a leader that stalled and comes back never takes its successor's session."""

    KEY = "mqtt"
    streams = (EVENTS, ENDS, VERIFIED, ALERTS)
    chunk = 32

    def __init__(self, cfg: MqttConfig, *, all_labels: Sequence[str], sw_version: str = ""):
        self.cfg = cfg
        self.topics = Topics(cfg.prefix)
        self.all_labels = list(all_labels)
        self.sw_version = sw_version
        self.client_id = cfg.client_id or (f"edgert-bridge-{cfg.prefix.replace('/', '-')}"[:119]
                                           + f"-{secrets.token_hex(4)}")
        self.publisher = self._publisher()
        self._standing_by = False                 # the publisher was closed for another bridge's turn
        self._connection = 0                      # the publisher's connection our retained state is on
        self._online_ns = 0                       # when the bridge's own status last went out
        self._discovered: set[str] = set()        # devices whose discovery went out on this connection
        self._status: dict[str, tuple[bool, int]] = {}  # device -> (online, when its status went out)
        self._skipped: set[str] = set()           # devices whose id cannot be a topic level (warned once)
        self.skipped = 0

    def _publisher(self) -> MqttPublisher:
        return MqttPublisher(self.cfg, client_id=self.client_id,
                             will=(self.topics.bridge_status(), bridge_json(False)))

    @property
    def cursor_prefix(self) -> str:
        return _cursor_prefix(self.KEY, self.cfg.prefix)

    def describe(self) -> str:
        return f"{self.publisher.broker} under {self.cfg.prefix}/"

    def open(self) -> None:
        try:
            self.publisher.connect()
        except NotifyUnavailable as exc:
            log.warning("%s; the bridge keeps trying", exc)

    def lead(self) -> None:
        if self._standing_by:
            self.publisher = self._publisher()
            self._standing_by = False
            self._connection = 0
            self.open()

    def stand_by(self) -> None:
        if not self._standing_by:
            self.publisher.close()  # a clean DISCONNECT: the broker drops the will, the leader's status stands
            self._standing_by = True

    def _fresh_connection(self) -> None:
        """On a connection the bridge has not used yet, say it is online and forget what the broker held for it:
        a broker restarted without persistence lost the retained discovery and statuses. The bridge's status is
        said again every status_s: a bridge that stalled past its lease may have its will published (offline)
        after its successor said online."""
        n = self.publisher.connections
        now = time.monotonic_ns()
        if n != self._connection or now - self._online_ns >= int(self.cfg.status_s * 1e9):
            self.publisher.publish(self.topics.bridge_status(), bridge_json(True), retain=True)
            self._online_ns = now
        if n != self._connection:
            self._connection = n
            self._discovered.clear()
            self._status.clear()

    def _usable(self, device_id: Optional[str]) -> bool:
        if device_id is None:
            return True
        try:
            self.topics.event(device_id)
            return True
        except NotifyError as exc:
            self.skipped += 1
            if device_id not in self._skipped:
                self._skipped.add(device_id)
                log.warning("MQTT: notes of device %r are not published: %s", device_id, exc)
            return False

    def send(self, notes: Sequence[EventNote | AlertNote]) -> None:
        self._fresh_connection()
        messages = []
        for n in notes:
            if not self._usable(n.device_id):
                continue
            if isinstance(n, EventNote):
                messages.append((self.topics.event(n.device_id), event_json(n), False))
            elif n.kind == "fleet":
                messages.append((self.topics.fleet_alert(), alert_json(n), False))
            elif n.device_id is not None:
                messages.append((self.topics.alert(n.device_id), alert_json(n), False))
        if messages:
            self.publisher.publish_many(messages)

    def statuses(self, notes: Sequence[StatusNote], now_ns: int) -> None:
        self._fresh_connection()
        every_ns = int(self.cfg.status_s * 1e9)
        out: list[tuple[str, bytes, bool]] = []
        news: dict[str, tuple[bool, int]] = {}
        for n in notes:
            if not self._usable(n.device_id):
                continue
            if self.cfg.discovery.enabled and n.device_id not in self._discovered:
                out += [(t, p, True) for t, p in discovery.discovery_messages(
                    n.device_id, self.topics, self.cfg.discovery, sw_version=self.sw_version,
                    availability=[self.topics.status(n.device_id), self.topics.bridge_status()],
                    all_labels=self.all_labels)]
            last = self._status.get(n.device_id)
            if last is None or last[0] != n.online or now_ns - last[1] >= every_ns:
                out.append((self.topics.status(n.device_id), status_json(n), True))
                news[n.device_id] = (n.online, now_ns)
        if out:
            self.publisher.publish_many(out)
        self._discovered.update(n.device_id for n in notes if self._usable(n.device_id))
        self._status.update(news)

    def close(self) -> None:
        try:
            if self.publisher.connected and not self._standing_by:
                self.publisher.publish(self.topics.bridge_status(), bridge_json(False), retain=True)
        except NotifyError as exc:
            log.info("MQTT: could not say the bridge is offline: %s", exc)
        self.publisher.close()


class WebhookTransport(Transport):
    """Alerts (device and fleet) POSTed as the shared alert JSON, signed, with the sender's own retries."""

    KEY = "webhook"
    streams = (ALERTS,)
    chunk = 1

    def __init__(self, cfg: WebhookConfig):
        from edgert.notify.webhook import WebhookSender

        if not cfg.url:
            raise NotifyError("the webhook transport needs notify.webhook.url")
        self.cfg = cfg
        self.sender = WebhookSender(cfg.url, cfg.secret, timeout_s=cfg.timeout_s,
                                    retry_initial_s=cfg.retry_initial_s, retry_max_s=cfg.retry_max_s)
        self._stop = threading.Event()

    @property
    def cursor_prefix(self) -> str:
        return _cursor_prefix(self.KEY, self.sender.shown_url)

    def describe(self) -> str:
        return f"webhook {self.sender.shown_url}"

    def send(self, notes: Sequence[EventNote | AlertNote]) -> None:
        for n in notes:
            if isinstance(n, AlertNote):
                # a bounded try, so the loop gets back to record progress; the follower keeps what is not taken
                self.sender.post(alert_json(n), delivery_id(n), stop=self._stop, deadline_s=max(
                    self.cfg.retry_max_s, self.cfg.timeout_s) * 2)

    def close(self) -> None:
        self._stop.set()
        self.sender.close()


def build(kind: str, **kw) -> Transport:
    kinds = transport_kinds()
    if kind not in kinds:
        raise NotifyError(f"no transport {kind!r}; known: {sorted(kinds)}")
    return kinds[kind](**kw)
