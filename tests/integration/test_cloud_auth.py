"""Auth: a wrong token, a revoked token and a missing token are refused (UNAUTHENTICATED), for a raw stream and for
a real edge, whose records then stay in its outbox; a real edge whose token is another device's is refused
(PERMISSION_DENIED) at once and for good; a rotated token replaces the old one."""
from __future__ import annotations

import queue
import time
import uuid

import grpc
import pytest
import sqlalchemy as sa

from edge_rt.outbox import Outbox
from support import ServerProcess, add_device, cloud_cli, edge_run


@pytest.fixture
def server(tmp_path):
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    srv = ServerProcess(url, clips=str(tmp_path / "clips"), log_path=tmp_path / "server.log")
    srv.start()
    srv.url = url
    yield srv
    srv.terminate()


def raw_stream_status(target: str, token: str | None) -> grpc.StatusCode | None:
    from edgert.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc

    q: queue.Queue = queue.Queue()
    ev = ingest_pb2.Event(event_id=uuid.uuid4().hex, label="glass_break", start_ns=time.time_ns(), score=0.5,
                          classes=[common_pb2.ClassScore(name="Glass", score=0.5)])
    q.put(ingest_pb2.IngestRequest(batch=ingest_pb2.RecordBatch(low_water=1, records=[
        ingest_pb2.Record(seq=1, created_ns=time.time_ns(), event=ev)])))
    md = (("authorization", f"Bearer {token}"),) if token is not None else None
    with grpc.insecure_channel(target) as ch:
        call = ingest_pb2_grpc.IngestStub(ch).Stream(iter(q.get, None), metadata=md, timeout=10)
        try:
            first = next(iter(call))
            q.put(None)
            return grpc.StatusCode.OK if first.HasField("ack") else None
        except grpc.RpcError as exc:
            q.put(None)
            return exc.code()


def test_wrong_revoked_and_missing_tokens_are_refused(server):
    good = add_device(server.url, "lamp-1")
    assert raw_stream_status(server.target, good) == grpc.StatusCode.OK
    assert raw_stream_status(server.target, "ert_" + "x" * 43) == grpc.StatusCode.UNAUTHENTICATED
    assert raw_stream_status(server.target, None) == grpc.StatusCode.UNAUTHENTICATED
    assert raw_stream_status(server.target, "") == grpc.StatusCode.UNAUTHENTICATED
    cloud_cli("devices", "revoke", "lamp-1", "--db", server.url)
    time.sleep(5.5)  # the server caches a token for 5 s
    assert raw_stream_status(server.target, good) == grpc.StatusCode.UNAUTHENTICATED


def test_a_rotated_token_replaces_the_old_one(server):
    old = add_device(server.url, "lamp-2")
    new = cloud_cli("devices", "rotate", "lamp-2", "--db", server.url).stdout.strip().splitlines()[-1]
    assert new != old
    assert raw_stream_status(server.target, new) == grpc.StatusCode.OK
    assert raw_stream_status(server.target, old) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("case", ["wrong", "revoked", "other-device"])
def test_a_refused_edge_exits_with_an_error_and_keeps_its_records(server, tmp_path, case):
    token = add_device(server.url, "lamp-3")
    if case == "wrong":
        token = "ert_" + "y" * 43
    elif case == "revoked":
        cloud_cli("devices", "revoke", "lamp-3", "--db", server.url)
    else:
        token = add_device(server.url, "lamp-4")  # a real token, of another device than --device-id
    spool = tmp_path / "spool"
    r = edge_run("synth:distress,seed=2", spool, cloud=server.target, device_id="lamp-3", token=token,
                 env={"EDGE_RT__RUNTIME__GRACE_S": "30"})
    assert r.returncode == 2, r.stderr
    [error] = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    if case == "other-device":
        assert "PERMISSION_DENIED" in error and "'lamp-3'" in error and "'lamp-4'" in error, error
        assert "1 connects" in r.stderr  # refused for good, not retried
        engine = sa.create_engine(server.url)
        with engine.connect() as c:
            assert c.scalar(sa.text("SELECT count(*) FROM events")) == 0  # under neither device
        engine.dispose()
    else:
        assert "UNAUTHENTICATED" in error
    ob = Outbox(spool / "outbox.db")
    assert ob.stats()["depth"] > 0 and ob.stats()["acked"] == 0
    ob.close()
