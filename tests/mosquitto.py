"""A real Mosquitto broker for the tests, on a free loopback port of its own (never 1883, where the system's may
run), and a collecting subscriber that records what arrives in order."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import pytest

MOSQUITTO = os.environ.get("EDGERT_TEST_MOSQUITTO", "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class Mosquitto:
    """`mosquitto -c WORKDIR/mosquitto.conf` as a child process: loopback only, no persistence unless asked (a
    restart forgets retained messages and sessions, like a broker that lost its disk), its log in
    WORKDIR/mosquitto.log. `users` {name: password}: a password file, and anonymous clients refused."""

    def __init__(self, workdir: Path, *, port: Optional[int] = None, users: Optional[dict[str, str]] = None,
                 persistence: bool = False):
        if not os.access(MOSQUITTO, os.X_OK):
            pytest.skip(f"{MOSQUITTO} is not installed (`make sysdeps` installs mosquitto)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.users = dict(users or {})
        self.persistence = persistence
        self.log_path = self.workdir / "mosquitto.log"
        self.proc: Optional[subprocess.Popen] = None
        self._write_config()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        # persistence: sessions and queued QoS 1 messages of clean_session=False clients survive a restart
        persist = ["persistence true", f"persistence_location {self.workdir}/"] if self.persistence else \
            ["persistence false"]
        lines = [f"listener {self.port} 127.0.0.1", *persist, f"log_dest file {self.log_path}",
                 "log_type error", "log_type warning", "log_type notice", "log_type information",
                 "connection_messages true"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to `mosquitto`, which cannot read a 0700 pytest tmp dir
        if self.users:
            pw = self.workdir / "passwd"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            pw.chmod(0o600)
            subprocess.run([MOSQUITTO_PASSWD, "-U", str(pw)], check=True, capture_output=True, timeout=30)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        (self.workdir / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def start(self) -> "Mosquitto":
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.workdir / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.workdir / "stderr.log", "ab"))
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{self.log_tail()}\n"
                                   f"{(self.workdir / 'stderr.log').read_text(errors='replace')}")
            if _answers(self.port):
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {START_TIMEOUT_S:g} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, as a broker being shut down: it closes every connection."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a broker that died."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> "Mosquitto":
        self.stop()
        return self.start()

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Collector:
    """A paho subscriber at QoS 1 recording (topic, payload, retain) in arrival order. It reconnects and
    subscribes again after the broker comes back, so a test can restart the broker under it. With
    `client_id` and clean_session=False on a broker with persistence, what was published while it was away
    (the broker restarting) is delivered when it is back."""

    def __init__(self, url: str, topics: Sequence[str], *, username: Optional[str] = None,
                 password: Optional[str] = None, timeout_s: float = 10.0, client_id: Optional[str] = None,
                 clean_session: bool = True):
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        host, port = url.removeprefix("mqtt://").rsplit(":", 1)
        self.topics = list(topics)
        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"collector-{os.getpid()}-{id(self):x}",
                                  protocol=paho.MQTTv311, clean_session=clean_session)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(0.1, 1)

        def on_connect(client, _u, _f, reason, _p):
            if not reason.is_failure:
                client.subscribe([(t, 1) for t in self.topics])

        def on_subscribe(_c, _u, _mid, _codes, _p):
            self._subscribed.set()

        def on_message(_c, _u, msg):
            with self._cond:
                self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
                self._cond.notify_all()

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect(host, int(port), keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.close()
            raise RuntimeError(f"collector could not subscribe to {self.topics} at {url} within {timeout_s:g} s")

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self._cond:
            return list(self.messages)

    def on(self, topic: str) -> list[tuple[bytes, bool]]:
        """Payload and retain flag of what came on exactly `topic`."""
        return [(p, r) for t, p, r in self.snapshot() if t == topic]

    def json_on(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(p) for p, _ in self.on(topic) if p]

    def wait_for(self, pred: Callable[[list[tuple[str, bytes, bool]]], bool], timeout: float = 10.0
                 ) -> list[tuple[str, bytes, bool]]:
        """Waits until pred(messages so far) holds; the messages, or AssertionError listing what did come."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(list(self.messages)):
                left = deadline - time.monotonic()
                if left <= 0:
                    got = "\n".join(f"  {t} {p[:200]!r}{' (retained)' if r else ''}" for t, p, r in self.messages[-30:])
                    raise AssertionError(f"not within {timeout:g} s; {len(self.messages)} messages, last:\n{got}")
                self._cond.wait(min(left, 0.2))
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> "Collector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
