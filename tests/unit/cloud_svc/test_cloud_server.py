"""The gRPC server over loopback: ingest stream semantics, health, reflection, auth, clips, queries, shutdown."""
from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
import uuid

import grpc
import pytest

from cloud_svc import config
from cloud_svc.client import QueryClient
from cloud_svc.errors import NotFound, Unauthenticated
from cloud_svc.server import ServerThread


@pytest.fixture
def server(db_url, tmp_path):
    cfg = config.load(None, {"db": db_url, "listen": "127.0.0.1:0", "clips": str(tmp_path / "clips"),
                             "edge_thresholds": {"glass_break": 0.3}, "fleet.enabled": False,
                             "ingest.auth_cache_s": 0.2, "open_query": True})
    with ServerThread(cfg) as s:
        yield s


def pb():
    from edgert.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc

    return common_pb2, ingest_pb2, ingest_pb2_grpc


class Stream:
    """A raw Ingest.Stream: put requests, read responses (the way a device talks, without the uplink)."""

    def __init__(self, port: int, token: str | None, **kw):
        _, self.ipb, grpc_mod = pb()
        self.ch = grpc.insecure_channel(f"127.0.0.1:{port}", **kw)
        self.q: queue.Queue = queue.Queue()
        md = (("authorization", f"Bearer {token}"),) if token else None
        self.call = grpc_mod.IngestStub(self.ch).Stream(iter(self.q.get, None), metadata=md)
        self.it = iter(self.call)

    def send(self, **msg):
        self.q.put(self.ipb.IngestRequest(**msg))

    def recv(self, timeout: float = 10.0):
        """The next response (None at the end of the stream); an RpcError is raised here."""
        out: list = []

        def read():
            try:
                out.append(next(self.it, None))
            except grpc.RpcError as exc:
                out.append(exc)

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        assert out, "no response in time"
        if isinstance(out[0], grpc.RpcError):
            raise out[0]
        return out[0]

    def close(self):
        self.q.put(None)
        self.call.cancel()
        self.ch.close()


def event(seq: int, label: str = "glass_break", **kw):
    common_pb2, ipb, _ = pb()
    ev = ipb.Event(event_id=uuid.uuid4().hex, label=label, start_ns=time.time_ns(), score=0.7,
                   classes=[common_pb2.ClassScore(name="Glass", score=0.7)], **kw)
    return ipb.Record(seq=seq, created_ns=time.time_ns(), event=ev)


def test_hello_gets_the_watermark_and_a_config_push(server):
    token = server.app.store.devices.add_device("d1")
    s = Stream(server.port, token)
    s.send(hello=pb()[1].Hello(device_id="d1", low_water=0, agent="test/1"))
    first, second = s.recv(), s.recv()
    assert first.ack.seq == 0 and first.ack.device_id == "d1"
    assert second.config.thresholds["glass_break"] == pytest.approx(0.3)
    s.close()


def test_a_batch_is_acked_after_its_commit(server):
    token = server.app.store.devices.add_device("d1")
    s = Stream(server.port, token)
    s.send(batch=pb()[1].RecordBatch(low_water=1, records=[event(1), event(2)]))
    resp = s.recv()
    assert resp.ack.seq == 2
    assert server.app.store.queries.count_events("d1") == 2  # committed before the ack left
    s.close()


def test_a_bad_message_gets_invalid_argument_naming_the_field_and_the_stream_survives(server):
    token = server.app.store.devices.add_device("d1")
    _, ipb, _ = pb()
    s = Stream(server.port, token)
    bad = event(1)
    bad.event.label = "no spaces allowed"
    s.send(batch=ipb.RecordBatch(low_water=1, records=[bad, event(2)]))
    r1, r2 = s.recv(), s.recv()
    assert r1.reject.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert r1.reject.field == "batch.records[0].event.label" and r1.reject.seq == 1
    assert r1.reject.scope == ipb.Reject.SCOPE_RECORD
    assert r2.ack.seq == 2  # the bad record was dead-lettered, the good one stored
    s.send(batch=ipb.RecordBatch(low_water=5, records=[event(3), event(4)]))  # low_water above the first seq
    r = s.recv().reject
    assert r.field == "batch.low_water" and r.scope == ipb.Reject.SCOPE_BATCH
    assert (r.first_seq, r.last_seq, r.seq) == (3, 4, 0)  # the batch is named by its seqs
    s.send()  # an empty IngestRequest
    r = s.recv().reject
    assert r.field == "msg" and r.scope == ipb.Reject.SCOPE_MESSAGE
    s.send(batch=ipb.RecordBatch(low_water=3, records=[event(3)]))
    assert s.recv().ack.seq == 3
    s.close()


def test_a_hello_for_another_device_ends_the_stream_and_nothing_after_it_is_stored(server):
    token = server.app.store.devices.add_device("d1")
    server.app.store.devices.add_device("d2")
    s = Stream(server.port, token)
    s.send(hello=pb()[1].Hello(device_id="d2"))
    s.send(batch=pb()[1].RecordBatch(low_water=1, records=[event(1)]))
    with pytest.raises(grpc.RpcError) as err:
        s.recv()
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'d1'" in err.value.details() and "'d2'" in err.value.details()
    time.sleep(0.3)  # what a reader that went on would have committed by now
    assert server.app.store.queries.count_events() == 0
    s.close()


@pytest.mark.parametrize("which", ["missing", "wrong", "revoked"])
def test_unknown_revoked_or_missing_tokens_are_unauthenticated(server, which):
    token = server.app.store.devices.add_device("d1")
    if which == "revoked":
        server.app.store.devices.revoke_device("d1")
    s = Stream(server.port, None if which == "missing" else ("ert_wrong" if which == "wrong" else token))
    s.send(batch=pb()[1].RecordBatch(low_water=1, records=[event(1)]))
    with pytest.raises(grpc.RpcError) as err:
        s.recv()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert server.app.store.queries.count_events() == 0
    s.close()


def test_a_token_revoked_while_streaming_ends_the_stream(server):
    token = server.app.store.devices.add_device("d1")
    s = Stream(server.port, token)
    s.send(batch=pb()[1].RecordBatch(low_water=1, records=[event(1)]))
    assert s.recv().ack.seq == 1
    server.app.store.devices.revoke_device("d1")
    time.sleep(0.3)  # the auth cache's lifetime in this fixture
    s.send(batch=pb()[1].RecordBatch(low_water=2, records=[event(2)]))
    with pytest.raises(grpc.RpcError) as err:
        s.recv()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    s.close()


def test_a_chunked_clip_is_stored_and_comes_back_byte_exact(server):
    common_pb2, ipb, _ = pb()
    token = server.app.store.devices.add_device("d1")
    clip = os.urandom(3 * (1 << 20) + 123)
    sha = hashlib.sha256(clip).hexdigest()
    s = Stream(server.port, token)
    for off in range(0, len(clip), 256 << 10):
        s.send(clip_chunk=ipb.ClipChunk(sha256=sha, total_size=len(clip), offset=off, data=clip[off:off + (256 << 10)]))
    start = event(1)
    end = ipb.Record(seq=2, created_ns=time.time_ns(), event_end=ipb.Event(
        event_id=start.event.event_id, label="glass_break", start_ns=start.event.start_ns,
        end_ns=start.event.start_ns + 10**9, score=0.9,
        clip=common_pb2.Clip(format="flac", sample_rate=16000, start_ns=1, ref=common_pb2.ClipRef(sha256=sha,
                                                                                                  size=len(clip)))))
    s.send(batch=ipb.RecordBatch(low_water=1, records=[start, end]))
    assert s.recv().ack.seq == 2
    s.close()
    with QueryClient(f"127.0.0.1:{server.port}") as q:
        meta, data = q.clip("d1", seq=1)
        assert data == clip and meta["sha256"] == sha and meta["format"] == "flac"
        [ev] = q.events()
        assert ev["clip"] == {"size": len(clip), "sha256": sha}
        with pytest.raises(NotFound):
            q.clip("d1", seq=77)


def test_a_clip_chunk_with_the_wrong_hash_is_rejected(server):
    ipb = pb()[1]
    token = server.app.store.devices.add_device("d1")
    s = Stream(server.port, token)
    s.send(clip_chunk=ipb.ClipChunk(sha256="0" * 64, total_size=4, offset=0, data=b"abcd"))
    r = s.recv()
    assert r.reject.field == "clip_chunk.sha256"
    s.close()


def test_an_inline_clip_round_trips(server):
    common_pb2, ipb, _ = pb()
    token = server.app.store.devices.add_device("d1")
    clip = os.urandom(5000)
    s = Stream(server.port, token)
    start = event(1)
    end = ipb.Record(seq=2, created_ns=time.time_ns(), event_end=ipb.Event(
        event_id=start.event.event_id, label="glass_break", start_ns=start.event.start_ns,
        end_ns=start.event.start_ns + 10**9, score=0.9, clip=common_pb2.Clip(format="flac", sample_rate=16000,
                                                                             inline=clip)))
    s.send(batch=ipb.RecordBatch(low_water=1, records=[start, end]))
    assert s.recv().ack.seq == 2
    s.close()
    with QueryClient(f"127.0.0.1:{server.port}") as q:
        assert q.clip("d1", event_id=start.event.event_id)[1] == clip


def stored_events(server):
    from cloud_svc.domain import EventFilter

    return server.app.store.queries.list_events(EventFilter())


def event_end_with_clip(start, seq: int, clip):
    _, ipb, _ = pb()
    return ipb.Record(seq=seq, created_ns=time.time_ns(), event_end=ipb.Event(
        event_id=start.event.event_id, label="glass_break", start_ns=start.event.start_ns,
        end_ns=start.event.start_ns + 10**9, score=0.9, clip=clip))


def test_an_inline_clip_over_the_limit_costs_only_the_clip_and_the_device_is_told(server):
    common_pb2, ipb, _ = pb()
    token = server.app.store.devices.add_device("d1")
    limit = server.app.cfg.ingest.max_inline_clip_bytes
    s = Stream(server.port, token)
    start = event(1)
    big = common_pb2.Clip(format="flac", sample_rate=16000, inline=os.urandom(limit + 1))
    s.send(batch=ipb.RecordBatch(low_water=1, records=[start, event_end_with_clip(start, 2, big)]))
    r, a = s.recv(), s.recv()
    assert r.reject.scope == ipb.Reject.SCOPE_CLIP and r.reject.seq == 2
    assert r.reject.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert r.reject.field == "batch.records[1].event_end.clip.inline" and str(limit) in r.reject.message
    assert a.ack.seq == 2  # the event was stored, not dead-lettered
    s.close()
    [ev] = stored_events(server)
    assert ev.event_id == start.event.event_id and ev.end_ns and ev.clip is None
    assert "max_inline_clip_bytes" in ev.clip_dropped


def test_a_ref_to_a_clip_never_uploaded_costs_only_the_clip_and_the_device_is_told(server):
    common_pb2, ipb, _ = pb()
    token = server.app.store.devices.add_device("d1")
    s = Stream(server.port, token)
    clip = os.urandom(3000)
    sha = hashlib.sha256(clip).hexdigest()
    s.send(clip_chunk=ipb.ClipChunk(sha256=sha, total_size=len(clip), offset=0, data=clip))  # this one is uploaded
    start1, start2 = event(1), event(3)
    ref = lambda h: common_pb2.Clip(format="flac", sample_rate=16000, ref=common_pb2.ClipRef(sha256=h, size=3000))  # noqa: E731
    s.send(batch=ipb.RecordBatch(low_water=1, records=[
        start1, event_end_with_clip(start1, 2, ref(sha)), start2, event_end_with_clip(start2, 4, ref("e" * 64))]))
    r, a = s.recv(), s.recv()
    assert r.reject.scope == ipb.Reject.SCOPE_CLIP and r.reject.seq == 4
    assert r.reject.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert r.reject.field == "batch.records[3].event_end.clip.ref.sha256" and "e" * 64 in r.reject.message
    assert a.ack.seq == 4
    s.close()
    by_id = {e.event_id: e for e in stored_events(server)}
    assert by_id[start1.event.event_id].clip.sha256 == sha
    missing = by_id[start2.event.event_id]
    assert missing.clip is None and missing.clip_dropped == "clip upload missing" and missing.end_ns


def test_health_is_serving_and_reflection_lists_the_services(server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    ch = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    for svc in ("", "edgert.v1.Ingest", "edgert.v1.Query"):
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=svc), timeout=5)
        assert r.status == health_pb2.HealthCheckResponse.SERVING
    call = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for s in next(call).list_services_response.service}
    assert {"edgert.v1.Ingest", "edgert.v1.Query", "grpc.health.v1.Health"} <= names
    ch.close()


def test_subscribe_streams_a_device_alert_as_it_is_stored(server):
    ipb = pb()[1]
    token = server.app.store.devices.add_device("d1")
    got: list = []
    q = QueryClient(f"127.0.0.1:{server.port}")

    def follow():
        for a in q.follow_alerts(timeout=15):
            got.append(a)
            return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    time.sleep(0.5)
    s = Stream(server.port, token)
    e = event(1)
    alert = ipb.DeviceAlert(rule="distress", labels=["glass_break", "shout"], start_ns=1, end_ns=2,
                            event_ids=[e.event.event_id])
    s.send(batch=ipb.RecordBatch(low_water=1, records=[e, ipb.Record(seq=2, created_ns=time.time_ns(), alert=alert)]))
    assert s.recv().ack.seq == 2
    t.join(10)
    s.close()
    q.close()
    assert got and got[0]["rule"] == "distress" and got[0]["events"][0]["event_id"] == e.event.event_id


def test_graceful_shutdown_commits_and_acks_what_is_in_flight(db_url, tmp_path):
    cfg = config.load(None, {"db": db_url, "listen": "127.0.0.1:0", "clips": str(tmp_path / "clips"),
                             "ingest.commit_linger_ms": 300})  # commits wait, so batches are in flight at stop
    srv = ServerThread(cfg)
    srv.start()
    token = srv.app.store.devices.add_device("d1")
    ipb = pb()[1]
    s = Stream(srv.port, token)
    s.send(batch=ipb.RecordBatch(low_water=1, records=[event(i) for i in range(1, 51)]))
    s.send(batch=ipb.RecordBatch(low_water=1, records=[event(i) for i in range(51, 101)]))
    time.sleep(0.1)
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    acks = []
    with pytest.raises(grpc.RpcError) as err:
        while True:
            r = s.recv()
            if r is None:
                break
            acks.append(r.ack.seq)
    stopper.join(30)
    assert acks and acks[-1] == 100
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # devices retry UNAVAILABLE
    from cloud_svc.store import Store

    store = Store.open(db_url)
    assert store.queries.count_events("d1") == 100
    store.close()
    s.close()


def test_query_needs_a_users_token_unless_open(db_url, tmp_path):
    cfg = config.load(None, {"db": db_url, "listen": "127.0.0.1:0", "clips": str(tmp_path / "c")})
    with ServerThread(cfg) as srv:
        token = srv.app.store.users.add("ann", "reader")
        with QueryClient(f"127.0.0.1:{srv.port}") as q:
            with pytest.raises(Unauthenticated):
                q.events()
        with QueryClient(f"127.0.0.1:{srv.port}", token=token) as q:
            assert q.events() == []
