"""The uplink: drains the outbox to cloud_svc over Ingest.Stream and deletes only what the cloud acked.

It is given one cloud address or several (replicas on one database). `Failover` orders them per device by
rendezvous hashing (so a fleet spreads over the replicas, and the devices of a replica that fails spread over
the others) and keeps the uplink on one address until a session there fails; then it moves to the next.

One thread runs sessions: connect (optionally TLS/mTLS, the same for every address), say Hello, trim what the
cloud already holds, then stream the outbox in seq order (clips over `inline_clip_bytes` are uploaded first as
ClipChunk messages and sent by reference), keep at most `max_inflight_records` unacked, send heartbeats, and
apply each ack to the outbox. A session that fails with UNAVAILABLE or DEADLINE_EXCEEDED (including an ack that
does not come within `ack_timeout_s`, or a connection that cannot be made) moves to the next address and is
retried: after a short jittered pause while some address has not been tried since the cloud last answered, after
an exponential backoff with full jitter once a whole round of them failed. Switching replicas mid-batch is safe:
the new replica's answer to Hello is the device's watermark, and replays are idempotent in the cloud. Any other
status stops the uplink (`failed` says why) and the records stay in the outbox. That includes UNAUTHENTICATED (a
wrong or revoked token) and PERMISSION_DENIED (a token of another device than --device-id). In-band Rejects are
logged and counted by scope: a record (dead-lettered) or a batch in `rejects`, a dropped clip in `clip_rejects`.
"""
from __future__ import annotations

import hashlib
import logging
import queue
import random
import threading
import time
from collections import deque
from typing import Any, Callable, Optional, Sequence

import grpc

from edge_rt import records
from edge_rt.config import CloudConfig, parse_addresses
from edge_rt.errors import EdgeRtError
from edge_rt.outbox import CLOUD, Outbox, Record
from edgert.backoff import Backoff
from edgert.channel import open_channel

log = logging.getLogger("edge_rt.uplink")

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
REFUSED = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
AGENT = "edge_rt/0.1"
HINTS = {  # what to check when the cloud refuses this device for good
    grpc.StatusCode.UNAUTHENTICATED: "check --token (`python -m cloud_svc devices add|rotate ID` prints one)",
    grpc.StatusCode.PERMISSION_DENIED: "--device-id must be the device the token was issued for",
}


class UplinkError(EdgeRtError):
    """The cloud refused this device for good (bad token, revoked, ...) or the uplink is misconfigured."""


class _Retry(Exception):
    """A session ended in a way that is worth retrying (mapped to a retryable status)."""

    def __init__(self, code: grpc.StatusCode, detail: str):
        super().__init__(f"{code.name}: {detail}")
        self.code = code
        self.progressed = False  # whether the session got as far as a Hello ack (resets the backoff)


def rotation(addresses: Sequence[str], device_id: str) -> tuple[str, ...]:
    """The order in which `device_id` tries `addresses`: highest rendezvous hash first. Each device gets its own
    order, the same on every start: first choices spread evenly over the replicas, the devices of a replica that
    fails spread evenly over the rest, and adding or removing one replica moves only its share of the devices."""
    def weight(address: str) -> bytes:
        return hashlib.sha256(f"{device_id}\0{address}".encode()).digest()

    return tuple(sorted(addresses, key=weight, reverse=True))


class Failover:
    """Which cloud address the uplink is on, and where it goes and how long it waits when a session ends.

    Sticky: the uplink stays on an address until a session there fails, then moves to the next in its
    `rotation`. Waits: while some address has not been tried since the cloud last answered a Hello, the wait is
    `backoff`'s first step (jittered, so the devices of a lost replica do not arrive at the next in lockstep);
    when a whole round of addresses failed, it is the backoff of the number of failed rounds. With one address
    this is the plain backoff: a step per failed attempt, the first step after a session that got an answer."""

    def __init__(self, addresses: Sequence[str], device_id: str, backoff: Backoff):
        if not addresses:
            raise UplinkError("the uplink needs at least one cloud address (--cloud HOST:PORT[,HOST:PORT...])")
        self.addresses = rotation(addresses, device_id)
        self.backoff = backoff
        self.index = 0
        self.misses = 0  # sessions in a row that got no answer to their Hello

    @property
    def current(self) -> str:
        return self.addresses[self.index]

    def failed(self, answered: bool, move: bool = True, rng: Optional[random.Random] = None) -> float:
        """A session on `current` ended; `answered`: the cloud had acked its Hello; `move` False keeps the address
        (the failure was not the cloud's, or the stream reached its planned end). Seconds to wait before the next."""
        self.misses = 0 if answered else self.misses + 1
        if move:
            self.index = (self.index + 1) % len(self.addresses)
        n = len(self.addresses)
        rounds = self.misses // n if self.misses % n == 0 else 0
        return self.backoff.delay(rounds, rng)


class Uplink:
    """`start()` runs it in a thread, `stop()` ends it; `drained()` is True once the cloud has acked every record
    the outbox holds (its consumer is `outbox.CLOUD`; other consumers may still hold rows it acked)."""

    def __init__(self, outbox: Outbox, target: str | Sequence[str], device_id: str, token: str, *,
                 heartbeat: Optional[Callable[[], dict]] = None, options: Optional[CloudConfig] = None,
                 agent: str = AGENT, on_config: Optional[Callable[[Any], object]] = None):
        """`target`: HOST:PORT, several comma-separated, or a sequence of them (replicas to fail over between).
        `on_config` receives each ConfigPush (on the receiving thread); `heartbeat` gives the figures sent."""
        try:
            addresses = parse_addresses(target)
        except ValueError as exc:
            raise UplinkError(f"--cloud: {exc}") from None
        if not token:
            raise UplinkError("the uplink needs a device token (`python -m cloud_svc devices add ID`)")
        self.pb = records.pb()  # a clear error when the generated code is missing
        from edgert.v1 import ingest_pb2_grpc  # generated with ingest_pb2

        self.grpc_mod = ingest_pb2_grpc
        self.outbox, self.device_id, self.token = outbox, device_id, token
        self.heartbeat, self.o, self.agent, self.on_config = heartbeat, options or CloudConfig(), agent, on_config
        self.failover = Failover(addresses, device_id, self.o.backoff)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._cv = threading.Condition()
        self.failed: Optional[UplinkError] = None
        self.config: dict[str, Any] = {}     # the cloud's last ConfigPush
        self.acked_seq = 0
        self.connects = 0
        self.retries = 0
        self.rejects = 0       # records dead-lettered, batches and messages refused
        self.clip_rejects = 0  # clips the cloud dropped (their events are stored without them)
        self.sent_records = 0
        self.failovers = 0     # moves to another address
        self.last_error = ""
        self.connected = False

    @property
    def target(self) -> str:
        """The cloud address the uplink is on (or will try next)."""
        return self.failover.current

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> "Uplink":
        self._thread = threading.Thread(target=self.run, name="uplink", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def drained(self) -> bool:
        return self.outbox.backlog(CLOUD) == 0

    def stats(self) -> dict:
        return {"connected": self.connected, "connects": self.connects, "retries": self.retries,
                "acked_seq": self.acked_seq, "sent_records": self.sent_records, "rejects": self.rejects,
                "clip_rejects": self.clip_rejects, "last_error": self.last_error,
                "failed": str(self.failed) if self.failed else None, "cloud_address": self.target,
                "cloud_addresses": list(self.failover.addresses), "failovers": self.failovers}

    def run(self) -> None:
        if len(self.failover.addresses) > 1:
            log.info("uplink: cloud replicas in this device's order %s; starting on %s",
                     ", ".join(self.failover.addresses), self.target)
        while not self._stop.is_set():
            progressed, cloud_failed = False, True
            started = time.monotonic()
            try:
                progressed = self._session()
                if self._stop.is_set():
                    break
                self.last_error = "the server ended the stream"
            except _Retry as exc:
                progressed = getattr(exc, "progressed", False)
                self.last_error = str(exc)
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
                detail = exc.details() if hasattr(exc, "details") else str(exc)
                if code not in RETRYABLE:
                    self.failed = self._refused(code, detail)
                    self.last_error = str(self.failed)
                    log.error("%s; not retrying (records stay in the outbox)", self.failed)
                    return
                progressed = getattr(exc, "progressed", False)
                self.last_error = f"{code.name}: {detail}"
            except UplinkError as exc:
                self.failed = exc
                self.last_error = str(exc)
                log.error("%s", exc)
                return
            except Exception as exc:  # noqa: BLE001 - e.g. the outbox could not be read: try again later
                log.exception("uplink session failed")
                self.last_error = f"{type(exc).__name__}: {exc}"
                cloud_failed = False  # ours, not the replica's: stay on it
            finally:
                self.connected = False
            if self._stop.is_set():
                break
            # a stream that lived to its deadline (stream_max_s) ended as planned: reconnect to the same replica
            planned = progressed and time.monotonic() - started >= self.o.stream_max_s
            left = self.target
            delay = self.failover.failed(progressed, move=cloud_failed and not planned)
            self.retries += 1
            if self.target != left:
                self.failovers += 1
                log.warning("uplink to %s: %s; failing over to %s in %.2f s", left, self.last_error, self.target,
                            delay)
            else:
                log.warning("uplink to %s: %s; reconnecting in %.2f s", self.target, self.last_error, delay)
            self._stop.wait(delay)

    def _refused(self, code: grpc.StatusCode, detail: str) -> UplinkError:
        hint = f" ({HINTS[code]})" if code in HINTS else ""
        return UplinkError(f"the cloud at {self.target} refused device {self.device_id!r}: {code.name}: {detail}{hint}")

    # ------------------------------------------------------------------------------------------ one session
    def _channel(self) -> grpc.Channel:
        o = self.o
        # retries are ours (only UNAVAILABLE and DEADLINE_EXCEEDED), never gRPC's own
        return open_channel(self.target, tls=o.tls, ca=o.tls_ca, cert=o.tls_cert, key=o.tls_key,
                            max_message_bytes=o.max_message_bytes, keepalive_s=o.keepalive_s,
                            keepalive_timeout_s=o.keepalive_timeout_s,
                            reconnect_backoff_s=(o.backoff_initial_s, o.backoff_max_s), grpc_retries=False)

    def _session(self) -> bool:
        """Run one stream until stop or failure; returns whether the cloud answered (resets the backoff)."""
        channel = self._channel()
        sendq: "queue.Queue" = queue.Queue()
        state = _SessionState()
        call = None
        receiver = None
        try:
            self._connect(channel)
            self.connects += 1
            stub = self.grpc_mod.IngestStub(channel)
            call = stub.Stream(iter(sendq.get, None), metadata=(("authorization", f"Bearer {self.token}"),),
                               timeout=self.o.stream_max_s)
            receiver = threading.Thread(target=self._receive, args=(call, state), name="uplink-acks", daemon=True)
            receiver.start()
            st = self.outbox.stats()
            sendq.put(self.pb.IngestRequest(hello=self.pb.Hello(
                device_id=self.device_id, low_water=st["next_seq"] - st["depth"] if st["depth"] else 0,
                agent=self.agent)))
            self._pump(sendq, state, st["next_seq"])
            return state.hello_acked
        except _Retry as exc:
            exc.progressed = state.hello_acked
            raise
        except grpc.RpcError as exc:
            exc.progressed = state.hello_acked
            raise
        finally:
            sendq.put(None)  # half-close the request stream
            if call is not None:
                call.cancel()
            if receiver is not None:
                receiver.join(2.0)
            channel.close()

    def _connect(self, channel: grpc.Channel) -> None:
        """Wait until `channel` is ready. With one address, through gRPC's own reconnects for up to
        connect_timeout_s; with several, a failed connection attempt (refused, TLS handshake, no such host) ends
        the wait at once, so the uplink moves on to a replica that is up."""
        settled = threading.Event()
        seen: list[grpc.ChannelConnectivity] = []
        fail_fast = len(self.failover.addresses) > 1

        def watch(state: grpc.ChannelConnectivity) -> None:
            if state is grpc.ChannelConnectivity.READY or (
                    state is grpc.ChannelConnectivity.TRANSIENT_FAILURE and fail_fast):
                seen.append(state)
                settled.set()

        channel.subscribe(watch, try_to_connect=True)
        try:
            deadline = time.monotonic() + self.o.connect_timeout_s
            while not settled.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
                if self._stop.is_set():
                    raise _Retry(grpc.StatusCode.UNAVAILABLE, "stopped while connecting")
                if time.monotonic() >= deadline:
                    raise _Retry(grpc.StatusCode.UNAVAILABLE,
                                 f"cannot connect to {self.target} within {self.o.connect_timeout_s:.0f} s")
        finally:
            channel.unsubscribe(watch)
        if seen[0] is not grpc.ChannelConnectivity.READY:
            raise _Retry(grpc.StatusCode.UNAVAILABLE, f"cannot connect to {self.target}")

    def _receive(self, call, state: "_SessionState") -> None:
        try:
            for resp in call:
                which = resp.WhichOneof("msg")
                if which == "ack":
                    self._on_ack(resp.ack.seq, state)
                elif which == "config":
                    c = resp.config
                    cfg = {"version": c.version, "thresholds": dict(c.thresholds),
                           "verify_sample_rate": c.verify_sample_rate}
                    if cfg != self.config:
                        log.info("cloud config: %s", cfg)
                    self.config = cfg
                    if self.on_config is not None:
                        try:
                            self.on_config(c)
                        except Exception:  # noqa: BLE001 - a config that cannot be applied must not end the session
                            log.exception("applying the cloud's config failed")
                elif which == "reject":
                    refusal = self._on_reject(resp.reject, state)
                    if refusal is not None:
                        state.error = refusal
                        return
        except grpc.RpcError as exc:
            state.error = exc
        except Exception as exc:  # noqa: BLE001 - e.g. the outbox failed while applying an ack
            state.error = _Retry(grpc.StatusCode.UNAVAILABLE, f"receiver failed: {exc}")
        finally:
            state.ended = True
            with self._cv:
                self._cv.notify_all()

    def _on_reject(self, r, state: "_SessionState") -> Optional[UplinkError]:
        """Log and count an in-band Reject; a refused Hello (as older servers sent it in-band) is returned, to stop
        the uplink as the status would."""
        R = self.pb.Reject
        scope = r.scope or (R.SCOPE_RECORD if r.seq else R.SCOPE_MESSAGE)  # an older server sets no scope
        if scope == R.SCOPE_CLIP:
            self.clip_rejects += 1
            log.warning("cloud dropped the clip of seq %d (%s: %s); the event is stored without it", r.seq, r.field,
                        r.message)
            return None
        self.rejects += 1
        if scope == R.SCOPE_BATCH:
            log.error("cloud refused the batch of seqs %d-%d (%s: %s); it stays in the outbox", r.first_seq,
                      r.last_seq, r.field, r.message)
        elif scope == R.SCOPE_RECORD:
            log.warning("cloud rejected seq %d (%s: %s); it is dead-lettered", r.seq, r.field, r.message)
        else:
            refused = [c for c in REFUSED if c.value[0] == r.code]
            if refused and r.field.startswith("hello.") and not state.hello_acked:
                return self._refused(refused[0], r.message)
            log.warning("cloud rejected a message (%s: %s)", r.field, r.message)
        return None

    def _on_ack(self, seq: int, state: "_SessionState") -> None:
        if seq:
            self.outbox.ack(seq, CLOUD)
        with self._cv:
            self.acked_seq = max(self.acked_seq, seq)
            if not state.hello_acked:
                state.hello_acked = True
                state.last_sent = seq
                self.connected = True
                log.info("uplink on %s: the cloud holds seqs up to %d", self.target, seq)
            while state.inflight and state.inflight[0][1] <= seq:
                state.inflight.popleft()
            state.last_ack = time.monotonic()
            self._cv.notify_all()

    def _pump(self, sendq: "queue.Queue", state: "_SessionState", next_seq_at_hello: int) -> None:
        o = self.o
        deadline = time.monotonic() + o.ack_timeout_s
        with self._cv:
            while not state.hello_acked and not state.ended and not self._stop.is_set():
                if time.monotonic() > deadline:
                    raise _Retry(grpc.StatusCode.DEADLINE_EXCEEDED, "no answer to Hello")
                self._cv.wait(0.05)
        self._check(state)
        if state.hello_acked and state.last_sent >= next_seq_at_hello:
            raise UplinkError(f"the cloud holds seqs up to {state.last_sent} for {self.device_id!r} but this outbox "
                              f"only reached {next_seq_at_hello - 1}: the spool was reset. Register the device "
                              "under a new id (seqs are never reused per device)")
        next_beat = time.monotonic()
        while not self._stop.is_set():
            self._check(state)
            now = time.monotonic()
            if self.heartbeat is not None and now >= next_beat:
                next_beat = now + o.heartbeat_s
                sendq.put(self._heartbeat())
            sent = self._send_some(sendq, state)
            with self._cv:
                if state.inflight and now - state.inflight[0][2] > o.ack_timeout_s and \
                        now - state.last_ack > o.ack_timeout_s:
                    raise _Retry(grpc.StatusCode.DEADLINE_EXCEEDED,
                                 f"no ack within {o.ack_timeout_s:.0f} s for seq {state.inflight[0][1]}")
                if not sent:
                    self._cv.wait(o.poll_s)
        # stopping: give what is in flight a moment to be acked, so it is not sent again next time
        end = time.monotonic() + o.stop_flush_s
        with self._cv:
            while state.inflight and not state.ended and time.monotonic() < end:
                self._cv.wait(0.05)

    def _check(self, state: "_SessionState") -> None:
        if state.ended:
            if state.error is not None:
                raise state.error
            raise _Retry(grpc.StatusCode.UNAVAILABLE, "the server closed the stream")

    def _send_some(self, sendq: "queue.Queue", state: "_SessionState") -> bool:
        """Send one batch if the window allows; True when something was sent."""
        o = self.o
        with self._cv:
            room = o.max_inflight_records - sum(n for _, _, _, n in state.inflight)
            after, busy = state.last_sent, bool(state.inflight)
        if room <= 0:
            return False
        recs = self.outbox.pending(after_seq=after, limit=min(o.batch_records, room))
        if not recs:
            return False
        if recs[0].seq > after + 1 and busy:
            # The outbox dropped records we never sent. The gap may only be declared (low_water) once
            # everything before it is acked, or a batch that failed before it could be declared settled.
            return False
        msgs, budget = [], int(o.max_message_bytes * 0.75)
        batch = self.pb.RecordBatch()
        for rec in recs:
            pre, proto = self._record(rec)
            if batch.records and (batch.ByteSize() + proto.ByteSize() > budget):
                break
            msgs.extend(pre)
            batch.records.append(proto)
        with self._cv:
            first = batch.records[0].seq
            batch.low_water = state.inflight[0][0] if state.inflight else first
            state.inflight.append((first, batch.records[-1].seq, time.monotonic(), len(batch.records)))
            state.last_sent = batch.records[-1].seq
        for m in msgs:
            sendq.put(m)
        sendq.put(self.pb.IngestRequest(batch=batch))
        self.sent_records += len(batch.records)
        return True

    # ------------------------------------------------------------------------------------------ messages
    def _heartbeat(self):
        st = self.outbox.stats()
        try:
            figures = self.heartbeat() if self.heartbeat else {}
        except Exception as exc:  # noqa: BLE001 - a heartbeat must never end the session
            figures = {"heartbeat_error": str(exc)}
        figures = {**figures, "uplink_rejects": self.rejects, "uplink_clip_rejects": self.clip_rejects,
                   "uplink_failovers": self.failovers, "cloud_address": self.target}
        hb = self.pb.Heartbeat(sent_ns=time.time_ns(), outbox_depth=st["depth"], outbox_dropped=st["dropped"])
        for k, v in figures.items():
            if isinstance(v, bool) or v is None:
                continue
            if isinstance(v, (int, float)):
                hb.figures[k] = float(v)
            else:
                hb.info[k] = str(v)[:512]
        return self.pb.IngestRequest(heartbeat=hb)

    def _record(self, rec: Record):
        """Outbox record -> (ClipChunk messages to send first, Record proto): the stored Record as it is, with its
        seq and created_ns, and its clip inline or uploaded first and referenced by hash. Bytes that do not parse
        are sent without a kind: the cloud dead-letters them, which settles the seq instead of stalling."""
        pb = self.pb
        try:
            out = pb.Record.FromString(rec.body)
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError; never stall the stream on one record
            log.warning("outbox seq %d (%s) does not parse as a record (%s); the cloud will dead-letter it",
                        rec.seq, rec.kind, exc)
            out = pb.Record()
        out.seq, out.created_ns = rec.seq, rec.created_ns
        pre: list = []
        if rec.clip and out.WhichOneof("kind") == "event_end":
            clip = out.event_end.clip
            if len(rec.clip) <= self.o.inline_clip_bytes:
                clip.inline = rec.clip
            else:
                sha = hashlib.sha256(rec.clip).hexdigest()
                pre = [pb.IngestRequest(clip_chunk=pb.ClipChunk(
                    sha256=sha, total_size=len(rec.clip), offset=off, data=rec.clip[off:off + self.o.chunk_bytes]))
                    for off in range(0, len(rec.clip), self.o.chunk_bytes)]
                clip.ref.sha256, clip.ref.size = sha, len(rec.clip)
        return pre, out


class _SessionState:
    def __init__(self):
        self.hello_acked = False
        self.last_sent = 0
        self.last_ack = time.monotonic()
        self.inflight: deque = deque()  # (first seq, last seq, sent at, records)
        self.ended = False
        self.error: Optional[BaseException] = None
