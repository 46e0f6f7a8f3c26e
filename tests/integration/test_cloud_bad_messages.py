"""Bad messages: 1,000 random, truncated, mutated and semantically malformed messages plus oversized ones leave the
server serving; each malformed one is answered INVALID_ARGUMENT naming the field, and a good stream works after."""
from __future__ import annotations

import math
import queue
import random
import threading
import time
import uuid

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from support import ServerProcess, add_device

N = 1000
METHOD = "/edgert.v1.Ingest/Stream"


def good_batch(seq: int) -> bytes:
    from edgert.v1 import common_pb2, ingest_pb2

    ev = ingest_pb2.Event(event_id=uuid.uuid4().hex, label="glass_break", start_ns=time.time_ns(), score=0.5,
                          classes=[common_pb2.ClassScore(name="Glass", score=0.5)])
    return ingest_pb2.IngestRequest(batch=ingest_pb2.RecordBatch(low_water=seq, records=[
        ingest_pb2.Record(seq=seq, created_ns=time.time_ns(), event=ev)])).SerializeToString()


def malformed(rng: random.Random, i: int) -> bytes:
    """One of several kinds of bad message, as raw bytes."""
    from edgert.v1 import common_pb2, ingest_pb2

    kind = i % 6
    if kind == 0:  # random bytes
        return rng.randbytes(rng.randint(1, 3000))
    if kind == 1:  # a good message, truncated
        b = good_batch(1)
        return b[:rng.randint(1, len(b) - 1)]
    if kind == 2:  # a good message with flipped bits
        b = bytearray(good_batch(1))
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 3:  # well-formed protobuf, invalid values
        ev = ingest_pb2.Event(event_id=rng.choice(["", "XYZ", uuid.uuid4().hex]),
                              label=rng.choice(["", "has space", "x" * 65, "glass_break"]),
                              start_ns=rng.choice([-5, 0, time.time_ns()]),
                              score=rng.choice([math.nan, math.inf, -1.0, 2.0]),
                              classes=[common_pb2.ClassScore(name="\x00bad", score=0.1)] * rng.randint(0, 30))
        return ingest_pb2.IngestRequest(batch=ingest_pb2.RecordBatch(low_water=1, records=[
            ingest_pb2.Record(seq=rng.randint(1, 10), created_ns=time.time_ns(), event=ev)])).SerializeToString()
    if kind == 4:  # structural problems: empty batch, descending seqs, no kind, empty message
        return rng.choice([
            ingest_pb2.IngestRequest(batch=ingest_pb2.RecordBatch(low_water=1)),
            ingest_pb2.IngestRequest(batch=ingest_pb2.RecordBatch(low_water=1, records=[
                ingest_pb2.Record(seq=5, created_ns=1), ingest_pb2.Record(seq=4, created_ns=1)])),
            ingest_pb2.IngestRequest(),
            ingest_pb2.IngestRequest(heartbeat=ingest_pb2.Heartbeat(sent_ns=1, figures={"x": math.nan})),
        ]).SerializeToString()
    chunk = rng.choice([  # uploads that cannot be right
        dict(sha256="nothex", total_size=10, offset=0, data=b"x"),
        dict(sha256="0" * 64, total_size=0, offset=0, data=b"x"),
        dict(sha256="0" * 64, total_size=1 << 40, offset=0, data=b"x"),
        dict(sha256="1" * 64, total_size=10, offset=rng.randint(1, 9), data=b"x"),
        dict(sha256="2" * 64, total_size=10, offset=0, data=b""),
        dict(sha256="3" * 64, total_size=4, offset=0, data=b"abcd"),  # complete, but the hash is wrong
    ])
    return ingest_pb2.IngestRequest(clip_chunk=ingest_pb2.ClipChunk(**chunk)).SerializeToString()


def is_marker(r) -> bool:
    return r.HasField("reject") and r.reject.field == "heartbeat.sent_ns"


def open_raw(target: str, token: str | None, **opts):
    from edgert.v1 import ingest_pb2

    ch = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)])
    q: queue.Queue = queue.Queue()
    md = (("authorization", f"Bearer {token}"),) if token else None
    call = ch.stream_stream(METHOD, request_serializer=None,
                            response_deserializer=ingest_pb2.IngestResponse.FromString)(iter(q.get, None), metadata=md)
    return ch, q, call


def test_a_thousand_malformed_and_oversized_messages_leave_the_server_serving(tmp_path):
    from edgert.v1 import ingest_pb2

    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    srv = ServerProcess(url, clips=str(tmp_path / "clips"), log_path=tmp_path / "server.log")
    srv.start()
    try:
        token = add_device(url, "lamp-1")
        rng = random.Random(1234)

        ch, q, call = open_raw(srv.target, token)
        responses: list = []
        ended: list = []

        def read():
            try:
                for r in call:
                    responses.append(r)
            except grpc.RpcError as exc:
                ended.append(exc.code())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        # After each bad message a marker (a heartbeat without its time: always rejected on heartbeat.sent_ns)
        # delimits its answers, which are in order: message i was rejected if a reject precedes marker i.
        marker = ingest_pb2.IngestRequest(heartbeat=ingest_pb2.Heartbeat(sent_ns=0)).SerializeToString()
        kinds = []
        for i in range(N):
            q.put(malformed(rng, i))
            q.put(marker)
            kinds.append(i % 6)
        deadline = time.monotonic() + 90
        while sum(is_marker(r) for r in responses) < N and time.monotonic() < deadline and not ended:
            time.sleep(0.1)
        assert not ended, f"the stream ended: {ended}"
        verdicts, current = [], False
        for r in list(responses):
            if is_marker(r):
                verdicts.append(current)
                current = False
            elif r.HasField("reject"):
                current = True
                assert r.reject.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and r.reject.field
                assert r.reject.scope != ingest_pb2.Reject.SCOPE_UNSPECIFIED
                if r.reject.scope == ingest_pb2.Reject.SCOPE_BATCH:  # named by its seqs, as sent
                    assert r.reject.field.startswith("batch.") and r.reject.seq == 0
        assert len(verdicts) == N
        by_kind = {k: [v for v, kk in zip(verdicts, kinds) if kk == k] for k in range(6)}
        for k in (1, 3, 4, 5):  # truncated, invalid values, bad structure, bad uploads: always rejected
            assert all(by_kind[k]), f"kind {k}: {by_kind[k].count(False)} accepted"
        for k in (0, 2):  # random bytes and bit flips: the rare one that is still valid is accepted, and fine
            assert sum(by_kind[k]) >= 0.8 * len(by_kind[k])
        rejects = [r.reject for r in responses if r.HasField("reject") and not is_marker(r)]
        fields = {r.field.split("[")[0] for r in rejects}
        assert {"(message)", "batch.records", "batch.low_water", "msg", "clip_chunk.sha256"} <= fields
        assert any(r.field.startswith("batch.records[0].event.") for r in rejects)
        # the same stream still works
        q.put(good_batch(1))
        deadline = time.monotonic() + 10
        while not any(r.HasField("ack") and r.ack.seq >= 1 for r in responses) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(r.HasField("ack") and r.ack.seq >= 1 for r in responses)
        q.put(None)
        ch.close()

        # Oversized: beyond the 4 MiB limit, the call fails by itself and nothing else.
        for size in (5 << 20, 32 << 20):
            ch, q, call = open_raw(srv.target, token)
            q.put(b"\x12" + rng.randbytes(size))
            try:
                next(iter(call))
                raise AssertionError("an oversized message was accepted")
            except grpc.RpcError as exc:
                assert exc.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL,
                                      grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
            q.put(None)
            ch.close()

        # Unauthenticated garbage is refused before it is read.
        ch, q, call = open_raw(srv.target, None)
        q.put(rng.randbytes(100))
        try:
            next(iter(call))
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
        q.put(None)
        ch.close()

        # Still serving: health, and a fresh good stream is acked.
        assert srv.proc.poll() is None
        with grpc.insecure_channel(srv.target) as hc:
            st = health_pb2_grpc.HealthStub(hc).Check(health_pb2.HealthCheckRequest(), timeout=5).status
            assert st == health_pb2.HealthCheckResponse.SERVING
        ch, q, call = open_raw(srv.target, token)
        q.put(good_batch(1000))  # beyond what the dead-lettered junk settled
        first = next(iter(call))
        assert first.HasField("ack") and first.ack.seq == 1000
        q.put(None)
        ch.close()
    finally:
        srv.terminate()
