"""The notification bridge: follows the stored events, ends, alerts and device states and hands them to its
transports (MQTT, webhook), each in its own thread with its own cursors, so a slow webhook never holds up MQTT.

One step of a relay reads the ends and alerts before the events (an end is stored after its event, so every end
read has its event in the later read), then sends the starts, the ends and the alerts in that order, and moves
each cursor as far as is safe (see follow.py). Device states are read at most every STATUS_READ_S.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Optional, Sequence

from cloud_svc.errors import StorageUnavailable
from cloud_svc.notify import notes
from cloud_svc.notify.follow import Follower, Item, Stream
from cloud_svc.notify.transports import ALERTS, ENDS, EVENTS, Transport
from cloud_svc.store.outbound import OutboundStore
from edgert.backoff import Backoff
from edgert.errors import NotifyError, NotifyUnavailable

log = logging.getLogger("cloud_svc.notify")

POLL_S = 0.5            # an idle relay looks for new rows this often
BATCH = 500             # rows per read
STATUS_READ_S = 1.0     # device states are read this often (offline is noticed within this of stale_after_s)
# Rows may become visible this long after they were stored (commits finish out of order); the same look-back as
# the Query API's Subscribe.
LATE_COMMIT_S = 10.0
STOP_TIMEOUT_S = 15.0   # a stopping relay may take this long: its last step and the settling of its cursors
READ_ORDER = (ENDS, ALERTS, EVENTS)
SEND_ORDER = (EVENTS, ENDS, ALERTS)


def streams(link_base: Optional[str]) -> dict[str, Stream]:
    def read_events(store: OutboundStore, after: int, limit: int) -> list[Item]:
        return [Item((e.pk, 0), e.received_ns, notes.start_note(e)) for e in store.events_after(after, limit)]

    def read_ends(store: OutboundStore, after: int, limit: int) -> list[Item]:
        return [Item((x.received_ns, x.pk), x.received_ns, notes.end_note(x, link_base))
                for x in store.ends_after(after, limit)]

    def read_alerts(store: OutboundStore, after: int, limit: int) -> list[Item]:
        return [Item((a.id, 0), a.created_ns, notes.alert_note(a)) for a in store.alerts_after(after, limit)]

    return {
        EVENTS: Stream(EVENTS, read_events, lambda s: s.heads()[0], ids=True),
        ENDS: Stream(ENDS, read_ends, lambda s: time.time_ns(), ids=False),
        ALERTS: Stream(ALERTS, read_alerts, lambda s: s.heads()[1], ids=True),
    }


class Relay:
    """One transport's loop: `while not stop.wait(idle): step()`."""

    def __init__(self, transport: Transport, store: OutboundStore, *, stale_after_s: float,
                 link_base: Optional[str] = None, poll_s: float = POLL_S, batch: int = BATCH,
                 settle_s: float = LATE_COMMIT_S):
        self.transport = transport
        self.store = store
        self.stale_after_ns = int(stale_after_s * 1e9)
        self.poll_s = poll_s
        kinds = streams(link_base)
        self.followers = {name: Follower(store, kinds[name], f"{transport.cursor_prefix}:{name}",
                                         settle_s=settle_s, batch=batch)
                          for name in READ_ORDER if name in transport.streams}
        self.settle_s = settle_s
        self.failed: Optional[str] = None   # why the destination refused us for good
        self.errors = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._last_status_ns = 0
        self._problem = ""
        self._drain_until = float("inf")

    @property
    def sent(self) -> dict[str, int]:
        return {name: f.count for name, f in self.followers.items()}

    def step(self, now_ns: Optional[int] = None) -> bool:
        """Reads, sends and records progress once; True when more is waiting."""
        now = time.time_ns() if now_ns is None else now_ns
        if now - self._last_status_ns >= int(STATUS_READ_S * 1e9):
            states = self.store.device_states()
            self.transport.statuses([notes.status_note(d, now, self.stale_after_ns) for d in states], now)
            self._last_status_ns = now
        pending = {name: f.pending() for name, f in self.followers.items()}
        for name in SEND_ORDER:
            if name in pending:
                self._send(self.followers[name], pending[name])
        for f in self.followers.values():
            f.advance(now)
        return any(f.full for f in self.followers.values())

    def _send(self, follower: Follower, items: Sequence[Item]) -> None:
        n = self.transport.chunk
        for i in range(0, len(items), n):
            part = items[i:i + n]
            self.transport.send([it.note for it in part])
            follower.sent(part)

    def run(self) -> None:
        idle, down = 0.0, 0
        backoff = Backoff(self.poll_s, 10.0, jitter=0.5)
        while not self._stop.wait(idle):
            try:
                busy = self.step()
                idle, down = (0.0 if busy else self.poll_s), 0
                if self._problem:
                    log.warning("%s: delivering again", self.transport.describe())
                    self._problem = ""
            except (NotifyUnavailable, StorageUnavailable) as exc:
                self.errors += 1
                idle, down = backoff.delay(down), down + 1
                if str(exc) != self._problem:  # once per problem, not once per retry
                    log.warning("%s: %s; retrying", self.transport.describe(), exc)
                    self._problem = str(exc)
            except NotifyError as exc:
                self.failed = str(exc)
                log.error("%s refuses the bridge's notes, which stay stored for a restart: %s",
                          self.transport.describe(), exc)
                return
            except Exception:  # noqa: BLE001 - one bad step must not end the relay
                self.errors += 1
                log.exception("%s: step failed", self.transport.describe())
                idle = self.poll_s
        self._drain()

    def _drain(self) -> None:
        """On a clean stop, keeps stepping until the cursors are past everything sent (at most settle_s, and
        within the time stop() allows), so that a restart sends nothing twice."""
        until = min(time.monotonic() + self.settle_s + 2 * self.poll_s, self._drain_until)
        while any(f.unsettled for f in self.followers.values()) and time.monotonic() < until:
            try:
                self.step()
            except (NotifyError, StorageUnavailable):
                return  # what is unsettled goes out once more after the restart
            time.sleep(self.poll_s)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "Relay":
        try:  # where following begins is fixed now, not at the thread's first step
            for f in self.followers.values():
                f.begin()
        except StorageUnavailable as exc:
            log.warning("%s: %s; the cursors are read once the database answers", self.transport.describe(), exc)
        self._thread = threading.Thread(target=self.run, name=f"notify-{self.transport.KEY}", daemon=True)
        self._thread.start()
        return self

    def request_stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Asks the loop to end after its current step and a drain of at most `timeout` - 1 s."""
        self._drain_until = time.monotonic() + max(0.0, timeout - 1.0)
        self._stop.set()

    def join(self, timeout: float = STOP_TIMEOUT_S) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        self.request_stop(timeout)
        self.join(timeout)


class Bridge:
    """The relays of every configured transport. `start()` connects them (a refused login raises NotifyError
    here, before anything runs) and runs each in a thread; `run()` does the same and blocks until `stop()`."""

    def __init__(self, store: OutboundStore, transports: Sequence[Transport], *, stale_after_s: float,
                 link_base: Optional[str] = None, poll_s: float = POLL_S, settle_s: float = LATE_COMMIT_S):
        if not transports:
            raise NotifyError("the notification bridge has no transport: configure an MQTT broker or a webhook")
        self.relays = [Relay(t, store, stale_after_s=stale_after_s, link_base=link_base, poll_s=poll_s,
                             settle_s=settle_s) for t in transports]
        self._stopped = threading.Event()
        self._opened = self._started = False

    def describe(self) -> str:
        return ", ".join(r.transport.describe() for r in self.relays)

    @property
    def alive(self) -> bool:
        """Some relay still runs (each stops only when stopped, or when its destination refuses the bridge)."""
        return any(r.is_alive() for r in self.relays)

    def open(self) -> None:
        """Connects every transport: a refused login raises NotifyError (and closes the others), so a server can
        fail before it serves; an unreachable broker does not (the transport keeps trying)."""
        if self._opened:
            return
        opened: list[Transport] = []
        try:
            for r in self.relays:
                r.transport.open()
                opened.append(r.transport)
        except BaseException:
            for t in opened:
                t.close()
            raise
        self._opened = True

    def start(self) -> "Bridge":
        self.open()
        for r in self.relays:
            r.start()
        self._started = True
        return self

    def run(self) -> None:
        if not self._started:
            self.start()
        self._stopped.wait()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stops the relays (each after its current step) and closes the transports: the bridge says it is
        offline and disconnects cleanly. Safe to call more than once."""
        if self._stopped.is_set():
            return
        for r in self.relays:  # all at once: each waits for its own cursors to settle
            r.request_stop(timeout)
        for r in self.relays:
            r.join(timeout)
        for r in self.relays:
            try:
                r.transport.close()
            except Exception:  # noqa: BLE001 - closing is best effort; the broker's will covers the rest
                log.exception("closing %s", r.transport.describe())
        self._stopped.set()

    def summary(self) -> str:
        parts = []
        for r in self.relays:
            sent = ", ".join(f"{v} {k}" for k, v in r.sent.items())
            parts.append(f"{r.transport.describe()}: {sent}" + (f" (stopped: {r.failed})" if r.failed else ""))
        return "; ".join(parts)
