"""The uplink's session state machine against a scripted Ingest server over loopback gRPC: the hello and its ack,
acks that trim the outbox, rejects by scope (record, clip, batch), retries with backoff, and the refusals that stop
it (a wrong device id, as a status or as an older server's in-band reject)."""
from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import pytest

from edge_rt.config import CloudConfig
from edge_rt.outbox import Outbox
from edge_rt.uplink import Uplink
from edgert.v1 import ingest_pb2 as pb
from edgert.v1 import ingest_pb2_grpc
from support import put_event

FAST = CloudConfig(backoff_initial_s=0.05, backoff_max_s=0.2, poll_s=0.005, heartbeat_s=0.05, connect_timeout_s=2.0,
                   ack_timeout_s=1.0, stop_flush_s=0.5)


class Scripted(ingest_pb2_grpc.IngestServicer):
    """Answers each Stream call with `script(call_number, requests, context)`, a generator of responses, and
    keeps every request it saw."""

    def __init__(self, script):
        self.script, self.calls, self.seen = script, 0, []
        self.lock = threading.Lock()

    def Stream(self, request_iterator, context):
        with self.lock:
            self.calls += 1
            n = self.calls

        def recorded():
            for req in request_iterator:
                self.seen.append(req)
                yield req
        yield from self.script(n, recorded(), context)


@pytest.fixture
def serve():
    servers = []

    def start(script) -> tuple[Scripted, str]:
        servicer = Scripted(script)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        ingest_pb2_grpc.add_IngestServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return servicer, f"127.0.0.1:{port}"

    yield start
    for s in servers:
        s.stop(0)


def acking(n, requests, context):
    """A well-behaved cloud: ack the hello (nothing held yet), then the last seq of every batch."""
    for req in requests:
        which = req.WhichOneof("msg")
        if which == "hello":
            yield pb.IngestResponse(ack=pb.Ack(device_id=req.hello.device_id, seq=0))
        elif which == "batch":
            yield pb.IngestResponse(ack=pb.Ack(seq=req.batch.records[-1].seq))


def wait_for(cond, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_the_session_says_hello_first_and_acks_trim_the_outbox(serve, tmp_path):
    servicer, target = serve(acking)
    ob = Outbox(tmp_path / "o.db")
    for _ in range(5):
        put_event(ob)
    up = Uplink(ob, target, "lamp-1", "ert_token", options=FAST, heartbeat=lambda: {"rtf": 9.0}).start()
    try:
        assert wait_for(up.drained)
    finally:
        up.stop()
    first = servicer.seen[0]
    assert first.WhichOneof("msg") == "hello" and first.hello.device_id == "lamp-1" and first.hello.low_water == 1
    sent = [r.seq for q in servicer.seen if q.WhichOneof("msg") == "batch" for r in q.batch.records]
    assert sent == list(range(1, 11)) and ob.stats()["depth"] == 0 and up.acked_seq == 10
    assert any(q.WhichOneof("msg") == "heartbeat" and q.heartbeat.figures["rtf"] == 9.0 for q in servicer.seen)


def test_a_rejected_record_is_counted_and_the_stream_goes_on(serve, tmp_path):
    def rejecting(n, requests, context):
        for req in requests:
            if req.WhichOneof("msg") == "hello":
                yield pb.IngestResponse(ack=pb.Ack(seq=0))
            elif req.WhichOneof("msg") == "batch":
                first = req.batch.records[0].seq
                yield pb.IngestResponse(reject=pb.Reject(code=3, field="batch.records[0].event.label",
                                                         message="unknown label", seq=first))
                yield pb.IngestResponse(ack=pb.Ack(seq=req.batch.records[-1].seq))

    _, target = serve(rejecting)
    ob = Outbox(tmp_path / "o.db")
    put_event(ob)
    up = Uplink(ob, target, "lamp-1", "ert_token", options=FAST).start()
    try:
        assert wait_for(up.drained)
    finally:
        up.stop()
    assert up.rejects >= 1 and up.failed is None and ob.stats()["depth"] == 0


def test_an_unavailable_cloud_is_retried_with_backoff_and_nothing_is_lost(serve, tmp_path):
    def flaky(n, requests, context):
        if n <= 2:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        yield from acking(n, requests, context)

    servicer, target = serve(flaky)
    ob = Outbox(tmp_path / "o.db")
    put_event(ob)
    started = time.monotonic()
    up = Uplink(ob, target, "lamp-1", "ert_token", options=FAST).start()
    try:
        assert wait_for(up.drained)
    finally:
        up.stop()
    assert servicer.calls == 3 and up.retries == 2 and up.failed is None
    assert ob.stats()["acked"] == 2 and time.monotonic() - started < 5.0


def test_a_hello_for_another_device_stops_the_uplink_with_a_clear_error_and_keeps_the_outbox(serve, tmp_path):
    def owner_check(n, requests, context):
        for req in requests:
            if req.WhichOneof("msg") == "hello" and req.hello.device_id != "lamp-1":
                context.abort(grpc.StatusCode.PERMISSION_DENIED,
                              f"this token belongs to 'lamp-1', not {req.hello.device_id!r}")
            yield pb.IngestResponse(ack=pb.Ack(seq=0))

    servicer, target = serve(owner_check)
    ob = Outbox(tmp_path / "o.db")
    put_event(ob)
    up = Uplink(ob, target, "lamp-2", "ert_token_of_lamp_1", options=FAST).start()
    try:
        assert wait_for(lambda: up.failed is not None)
    finally:
        up.stop()
    assert "PERMISSION_DENIED" in str(up.failed) and "not 'lamp-2'" in str(up.failed)
    assert servicer.calls == 1 and up.retries == 0 and ob.stats()["depth"] == 2


def test_an_ack_that_never_comes_ends_the_session_and_the_batch_is_sent_again(serve, tmp_path):
    def silent_first(n, requests, context):
        for req in requests:
            if req.WhichOneof("msg") == "hello":
                yield pb.IngestResponse(ack=pb.Ack(seq=0))
            elif req.WhichOneof("msg") == "batch" and n > 1:
                yield pb.IngestResponse(ack=pb.Ack(seq=req.batch.records[-1].seq))

    servicer, target = serve(silent_first)
    ob = Outbox(tmp_path / "o.db")
    put_event(ob)
    up = Uplink(ob, target, "lamp-1", "ert_token", options=FAST).start()
    try:
        assert wait_for(up.drained, 15)
    finally:
        up.stop()
    batches = [q for q in servicer.seen if q.WhichOneof("msg") == "batch"]
    assert servicer.calls >= 2 and [r.seq for r in batches[-1].batch.records] == [1, 2]
    assert "DEADLINE_EXCEEDED" in up.last_error


def test_a_dropped_clip_is_logged_and_counted_apart_and_the_stream_goes_on(serve, tmp_path, caplog):
    def clip_dropping(n, requests, context):
        for req in requests:
            if req.WhichOneof("msg") == "hello":
                yield pb.IngestResponse(ack=pb.Ack(seq=0))
            elif req.WhichOneof("msg") == "batch":
                end = req.batch.records[-1]
                yield pb.IngestResponse(reject=pb.Reject(
                    code=3, field="batch.records[1].event_end.clip.inline", seq=end.seq, scope=pb.Reject.SCOPE_CLIP,
                    message="1048577 bytes inline, over max_inline_clip_bytes 1048576"))
                yield pb.IngestResponse(ack=pb.Ack(seq=end.seq))

    servicer, target = serve(clip_dropping)
    ob = Outbox(tmp_path / "o.db")
    put_event(ob, clip=b"fLaC" * 100)
    up = Uplink(ob, target, "lamp-1", "ert_token", options=FAST, heartbeat=lambda: {}).start()
    try:
        assert wait_for(up.drained)
        assert wait_for(lambda: any(q.WhichOneof("msg") == "heartbeat" and q.heartbeat.figures["uplink_clip_rejects"]
                                    for q in list(servicer.seen)))
    finally:
        up.stop()
    assert up.clip_rejects == 1 and up.rejects == 0 and up.failed is None
    assert up.stats()["clip_rejects"] == 1
    [msg] = [r.getMessage() for r in caplog.records if "clip" in r.getMessage() and r.name == "edge_rt.uplink"]
    assert "dropped the clip of seq 2" in msg and "max_inline_clip_bytes" in msg


def test_a_refused_batch_is_logged_by_its_first_and_last_seq(serve, tmp_path, caplog):
    def batch_refusing(n, requests, context):
        for req in requests:
            if req.WhichOneof("msg") == "hello":
                yield pb.IngestResponse(ack=pb.Ack(seq=0))
            elif req.WhichOneof("msg") == "batch":
                recs = req.batch.records
                yield pb.IngestResponse(reject=pb.Reject(
                    code=3, field="batch.records", message="needs 1-1 records (max_batch_records), got 2",
                    scope=pb.Reject.SCOPE_BATCH, first_seq=recs[0].seq, last_seq=recs[-1].seq))

    _, target = serve(batch_refusing)
    ob = Outbox(tmp_path / "o.db")
    put_event(ob)
    up = Uplink(ob, target, "lamp-1", "ert_token", options=FAST).start()
    try:
        assert wait_for(lambda: up.rejects >= 1)
    finally:
        up.stop()
    assert up.clip_rejects == 0 and ob.stats()["depth"] == 2  # nothing acked: it stays in the outbox
    assert any("batch of seqs 1-2" in r.getMessage() and "max_batch_records" in r.getMessage()
               for r in caplog.records if r.name == "edge_rt.uplink")


def test_an_older_servers_in_band_refusal_of_the_hello_stops_the_uplink_too(serve, tmp_path):
    def old_server(n, requests, context):
        for req in requests:
            if req.WhichOneof("msg") == "hello":  # what servers did before the refusal became a status
                yield pb.IngestResponse(reject=pb.Reject(code=grpc.StatusCode.PERMISSION_DENIED.value[0],
                                                         field="hello.device_id",
                                                         message="this token belongs to 'lamp-1', not 'lamp-2'"))

    servicer, target = serve(old_server)
    ob = Outbox(tmp_path / "o.db")
    put_event(ob)
    up = Uplink(ob, target, "lamp-2", "ert_token_of_lamp_1", options=FAST).start()
    try:
        assert wait_for(lambda: up.failed is not None)
    finally:
        up.stop()
    assert "PERMISSION_DENIED" in str(up.failed) and "'lamp-1'" in str(up.failed) and "'lamp-2'" in str(up.failed)
    assert "--device-id" in str(up.failed)
    assert servicer.calls == 1 and up.retries == 0 and ob.stats()["depth"] == 2
