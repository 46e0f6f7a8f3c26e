"""The notification bridge: follows the stored events, ends, finished verifications, alerts and device states and
hands them to its transports (MQTT, webhook), each in its own thread with its own cursors, so a slow webhook never
holds up MQTT.

One step of a relay reads the finished verifications, ends and alerts before the events (a verification is stored
after its event's end, an end after its event, so every row read has what it follows in the later reads), then
sends the starts, the ends, the verified notes and the alerts in that order, and moves each cursor as far as is
safe (see follow.py). Device states are read at most every STATUS_READ_S.

Several bridges may follow one database (`serve --mqtt` on each replica, or `mqtt` processes on several hosts):
per transport and prefix (the cursors' names) one of them relays at a time. Its relay holds a lease (a row of
`cursors`, cloud_svc.store.lease) that it renews as it steps; the others only poll the lease, and the first to find
it run out (the leader died or stalled for lease_s) or given back (a clean stop) takes it and goes on from the
stored cursors. Every move of the cursors is fenced by the lease, so a leader that stalled past its lease and
comes back moves nothing and stands by. What a dead leader sent but had not yet recorded is sent again by its
successor: the usual edge of QoS 1.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Optional, Sequence

from cloud_svc.errors import StorageUnavailable
from cloud_svc.notify import notes
from cloud_svc.notify.follow import Follower, Item, Stream
from cloud_svc.notify.transports import ALERTS, ENDS, EVENTS, VERIFIED, Transport
from cloud_svc.store.outbound import OutboundStore
from edgert.backoff import Backoff
from edgert.errors import NotifyError, NotifyUnavailable

log = logging.getLogger("cloud_svc.notify")

POLL_S = 0.5            # an idle relay looks for new rows (and a standing-by one at the lease) this often
BATCH = 500             # rows per read
STATUS_READ_S = 1.0     # device states are read this often (offline is noticed within this of stale_after_s)
# Rows may become visible this long after they were stored (commits finish out of order); the same look-back as
# the Query API's Subscribe.
LATE_COMMIT_S = 10.0
STOP_TIMEOUT_S = 15.0   # a stopping relay may take this long: its last step and the settling of its cursors
LEASE_S = 10.0          # a relay that stops stepping (killed, stalled) is replaced this long after its last renewal
RETRY_MAX_S = 10.0      # the longest wait between failing steps (a third of the lease at most: see Relay.run)
READ_ORDER = (VERIFIED, ENDS, ALERTS, EVENTS)
SEND_ORDER = (EVENTS, ENDS, VERIFIED, ALERTS)


def streams(link_base: Optional[str]) -> dict[str, Stream]:
    def read_events(store: OutboundStore, after: int, limit: int) -> list[Item]:
        return [Item((e.pk, 0), e.received_ns, notes.start_note(e)) for e in store.events_after(after, limit)]

    def read_ends(store: OutboundStore, after: int, limit: int) -> list[Item]:
        return [Item((x.received_ns, x.pk), x.received_ns, notes.end_note(x, link_base))
                for x in store.ends_after(after, limit)]

    def read_verified(store: OutboundStore, after: int, limit: int) -> list[Item]:
        return [Item((v.done_ns, v.end.pk), v.done_ns, notes.verified_note(v, link_base))
                for v in store.verdicts_after(after, limit)]

    def read_alerts(store: OutboundStore, after: int, limit: int) -> list[Item]:
        return [Item((a.id, 0), a.created_ns, notes.alert_note(a)) for a in store.alerts_after(after, limit)]

    return {
        EVENTS: Stream(EVENTS, read_events, lambda s: s.heads()[0], ids=True),
        ENDS: Stream(ENDS, read_ends, lambda s: time.time_ns(), ids=False),
        VERIFIED: Stream(VERIFIED, read_verified, lambda s: time.time_ns(), ids=False),
        ALERTS: Stream(ALERTS, read_alerts, lambda s: s.heads()[1], ids=True),
    }


class _Deposed(Exception):
    """Raised in a step when the relay finds that it no longer leads: it sends nothing more."""


class Relay:
    """One transport's loop: `while not stop.wait(idle): step()`; only while it holds its lease does a step send
    anything."""

    def __init__(self, transport: Transport, store: OutboundStore, *, stale_after_s: float,
                 link_base: Optional[str] = None, poll_s: float = POLL_S, batch: int = BATCH,
                 settle_s: float = LATE_COMMIT_S, lease_s: float = LEASE_S):
        if poll_s * 3 > lease_s:
            raise NotifyError(f"the bridge's lease ({lease_s:g} s) must last at least three polls ({poll_s:g} s "
                              "each): its leader renews it as it polls")
        self.transport = transport
        self.store = store
        self.stale_after_ns = int(stale_after_s * 1e9)
        self.poll_s = poll_s
        kinds = streams(link_base)
        self.followers = {name: Follower(store, kinds[name], f"{transport.cursor_prefix}:{name}",
                                         settle_s=settle_s, batch=batch)
                          for name in READ_ORDER if name in transport.streams}
        self.settle_s = settle_s
        self.lease = store.lease(transport.cursor_prefix, lease_s)
        self.leading: Optional[bool] = None  # None until the first step has looked at the lease
        self.took_over = 0                   # how often this relay took the lead
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
        """Reads, sends and records progress once, if this relay leads; True when more is waiting."""
        now = time.time_ns() if now_ns is None else now_ns
        if not self._lead(now):
            return False
        try:
            if now - self._last_status_ns >= int(STATUS_READ_S * 1e9):
                states = self.store.device_states()
                self._check_lease()
                self.transport.statuses([notes.status_note(d, now, self.stale_after_ns) for d in states], now)
                self._last_status_ns = now
            pending = {name: f.pending() for name, f in self.followers.items()}
            for name in SEND_ORDER:
                if name in pending:
                    self._send(self.followers[name], pending[name])
        except _Deposed:
            return False
        moves = [(f, f.cursor, pos) for f in self.followers.values()
                 if f.cursor is not None and (pos := f.plan(now)) is not None]
        if moves:
            if self.store.move_cursors([(f.cursor_name, old, pos) for f, old, pos in moves], self.lease):
                for f, _, pos in moves:
                    f.moved(pos)
            elif self.lease.token is None:  # deposed since the step began: its successor sends that again
                self._stand_by("another bridge took the lease")
                return False
            else:  # a process without the lease moved them (not a bridge of this version): go on from there
                log.warning("%s: the cursors were moved by another process; following them",
                            self.transport.describe())
                for f in self.followers.values():
                    f.reset()
        return any(f.full for f in self.followers.values())

    def _lead(self, now: int) -> bool:
        """Whether this relay leads now: it renews or takes the lease when it can; on taking it, it goes on from
        the stored cursors, on losing it (or finding another's), it stands by."""
        if self.lease.hold(now):
            if not self.leading:
                for f in self.followers.values():
                    f.reset()  # the cursors as the last leader left them
                self.transport.lead()
                self.leading = True
                self.took_over += 1
                self._last_status_ns = 0
                log.info("%s: this bridge relays now, from the stored cursors", self.transport.describe())
            return True
        if self.leading is not False:
            self._stand_by("another bridge relays")
        return False

    def _stand_by(self, why: str) -> None:
        was = self.leading
        self.leading = False
        for f in self.followers.values():
            f.reset()
        self.transport.stand_by()
        if was:
            log.warning("%s: this bridge no longer relays: %s", self.transport.describe(), why)
        else:
            log.info("%s: standing by (%s)", self.transport.describe(), why)

    def _check_lease(self) -> None:
        """Before sending: renews the lease once less than half of it is left (a long step), and stops the step
        (_Deposed) when this relay lost it. Sends therefore never start after the lease ran out by this server's
        clock, unless the process stalled between this check and the send."""
        if self.lease.remaining_ns > self.lease.lease_ns // 2:
            return
        if not self._lead(time.time_ns()):
            raise _Deposed()

    def _send(self, follower: Follower, items: Sequence[Item]) -> None:
        n = self.transport.chunk
        for i in range(0, len(items), n):
            part = items[i:i + n]
            self._check_lease()
            self.transport.send([it.note for it in part])
            follower.sent(part)

    def release(self) -> None:
        """Gives the lease back (after a clean stop and the transport's close), so another bridge takes over at
        its next poll instead of after lease_s."""
        try:
            self.lease.release()
        except StorageUnavailable as exc:
            log.warning("%s: could not hand over the lead (%s); another bridge takes over when it runs out",
                        self.transport.describe(), exc)

    def run(self) -> None:
        idle, down = 0.0, 0
        # a leader whose broker is away keeps stepping (each step renews its lease) rather than let the lease run
        # out while it waits: the other bridges could not reach the broker either
        backoff = Backoff(self.poll_s, min(RETRY_MAX_S, self.lease.lease_ns / 3e9), jitter=0.5)
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
                 link_base: Optional[str] = None, poll_s: float = POLL_S, settle_s: float = LATE_COMMIT_S,
                 lease_s: float = LEASE_S):
        if not transports:
            raise NotifyError("the notification bridge has no transport: configure an MQTT broker or a webhook")
        self.relays = [Relay(t, store, stale_after_s=stale_after_s, link_base=link_base, poll_s=poll_s,
                             settle_s=settle_s, lease_s=lease_s) for t in transports]
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
        """Stops the relays (each after its current step and the settling of its cursors), closes the transports
        (a leading bridge says it is offline and disconnects cleanly), then gives the leases back, so that a
        bridge standing by takes over at once, and says online after this one said offline. Safe to call more
        than once."""
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
        for r in self.relays:
            if not r.is_alive():  # a step still runs (a stuck database): the lease runs out on its own
                r.release()
        self._stopped.set()

    def summary(self) -> str:
        parts = []
        for r in self.relays:
            sent = ", ".join(f"{v} {k}" for k, v in r.sent.items())
            led = "" if r.took_over else " (stood by throughout)"
            parts.append(f"{r.transport.describe()}: {sent}{led}" + (f" (stopped: {r.failed})" if r.failed else ""))
        return "; ".join(parts)
