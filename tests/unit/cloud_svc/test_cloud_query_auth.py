"""The Query API's credentials (users' tokens, checked before anything else, never a device's), its paging (no
silent cap; next_page_token) and Subscribe's immediate headers and gap-free resume, over loopback."""
from __future__ import annotations

import threading
import time
import uuid

import grpc
import pytest
import sqlalchemy as sa
from store_records import rec, start

from cloud_svc import config
from cloud_svc.domain import BatchIn
from cloud_svc.schema import alerts
from cloud_svc.server import ServerThread
from edgert.v1 import query_pb2, query_pb2_grpc

QUERY_CALLS = {  # rpc -> (request, is it response-streaming)
    "ListEvents": (query_pb2.ListEventsRequest(), True),
    "ListEventsPage": (query_pb2.ListEventsRequest(), False),
    "ListDevices": (query_pb2.ListDevicesRequest(), False),
    "GetClip": (query_pb2.GetClipRequest(device_id="d1", seq=1), True),
    "ListAlerts": (query_pb2.ListAlertsRequest(), True),
    "Subscribe": (query_pb2.SubscribeRequest(), True),
    "GetAgreement": (query_pb2.GetAgreementRequest(), False),
}


@pytest.fixture
def srv(db_url, tmp_path):
    cfg = config.load(None, {"db": db_url, "listen": "127.0.0.1:0", "clips": str(tmp_path / "clips"),
                             "fleet.enabled": False, "ingest.auth_cache_s": 0.2})
    with ServerThread(cfg) as s:
        yield s


def call(port: int, rpc: str, request, token: str | None, timeout: float = 5.0):
    """Make one Query call; returns the responses (list) or raises grpc.RpcError."""
    md = (("authorization", f"Bearer {token}"),) if token else None
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = query_pb2_grpc.QueryStub(ch)
        out = getattr(stub, rpc)(request, metadata=md, timeout=timeout)
        if QUERY_CALLS.get(rpc, (None, isinstance(out, grpc.Call) and hasattr(out, "__iter__")))[1]:
            return list(out)
        return [out]


@pytest.mark.parametrize("rpc", sorted(QUERY_CALLS))
def test_every_query_rpc_needs_a_users_token_and_a_devices_is_refused(srv, rpc):
    device_token = srv.app.store.devices.add_device("d1")
    request, _ = QUERY_CALLS[rpc]
    for token, hint in ((None, "users add"), ("erq_not-a-real-token", "unknown or revoked"),
                        (device_token, "device token is not a Query credential")):
        with pytest.raises(grpc.RpcError) as err:
            call(srv.port, rpc, request, token, timeout=3.0)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, (rpc, token)
        assert hint in err.value.details()


def test_the_token_is_checked_before_the_arguments_and_before_parsing(srv):
    srv.app.store.users.add("ann", "reader")
    bad = query_pb2.ListEventsRequest(start_ns=-5, bbox=query_pb2.BoundingBox(min_lat=95))  # invalid twice over
    with pytest.raises(grpc.RpcError) as err:
        call(srv.port, "ListEventsPage", bad, "erq_wrong")
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:  # bytes that are no ListEventsRequest at all
        raw = ch.unary_unary("/edgert.v1.Query/ListEventsPage", request_serializer=None,
                             response_deserializer=None)
        with pytest.raises(grpc.RpcError) as err:
            raw(b"\xff\xff\xff\xff garbage", timeout=3.0)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_reader_reads_and_a_revoked_or_rotated_token_stops_working(srv):
    users = srv.app.store.users
    token = users.add("ann", "reader")
    admin = users.add("ops", "admin")
    bad = query_pb2.ListEventsRequest(start_ns=-5)
    with pytest.raises(grpc.RpcError) as err:  # with a good token, the argument is what is wrong
        call(srv.port, "ListEventsPage", bad, token)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert call(srv.port, "ListDevices", query_pb2.ListDevicesRequest(), token)[0].devices == []
    assert call(srv.port, "ListDevices", query_pb2.ListDevicesRequest(), admin)[0].devices == []
    new = users.rotate("ann")
    users.revoke("ops")
    time.sleep(0.3)  # the credential cache lives 0.2 s here
    for old in (token, admin):
        with pytest.raises(grpc.RpcError) as err:
            call(srv.port, "ListDevices", query_pb2.ListDevicesRequest(), old)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert call(srv.port, "ListDevices", query_pb2.ListDevicesRequest(), new)[0].devices == []


def _events(store, n: int) -> None:
    store.devices.add_device("d1")
    for lo in range(0, n, 500):
        store.ingest.commit([BatchIn("d1", 1, [rec(i + 1, "event", start(uuid.uuid4().hex, "siren", 10**18 + i))
                                               for i in range(lo, min(n, lo + 500))])])


def test_list_events_streams_every_match_and_a_limit_says_where_the_rest_starts(srv):
    token = srv.app.store.users.add("ann", "reader")
    _events(srv.app.store, 1500)
    everything = call(srv.port, "ListEvents", query_pb2.ListEventsRequest(), token)
    assert len(everything) == 1500  # no silent cap at 1000
    assert [e.seq for e in everything] == list(range(1, 1501))
    md = (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        stream = query_pb2_grpc.QueryStub(ch).ListEvents(query_pb2.ListEventsRequest(limit=1200), metadata=md)
        first = list(stream)
        trailer = dict(stream.trailing_metadata())
    assert len(first) == 1200 and "edgert-next-page-token" in trailer
    rest = call(srv.port, "ListEvents", query_pb2.ListEventsRequest(page_token=trailer["edgert-next-page-token"]),
                token)
    assert [e.seq for e in first + rest] == list(range(1, 1501))
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:  # a limit that takes everything: no token
        stream = query_pb2_grpc.QueryStub(ch).ListEvents(query_pb2.ListEventsRequest(limit=1500), metadata=md)
        assert len(list(stream)) == 1500 and "edgert-next-page-token" not in dict(stream.trailing_metadata())


def test_list_events_page_pages_with_next_page_token_until_it_is_empty(srv):
    token = srv.app.store.users.add("ann", "reader")
    _events(srv.app.store, 250)
    seen, page_token, pages = [], "", 0
    while True:
        [page] = call(srv.port, "ListEventsPage", query_pb2.ListEventsRequest(limit=100, page_token=page_token),
                      token)
        seen += [e.seq for e in page.events]
        pages += 1
        page_token = page.next_page_token
        if not page_token:
            break
    assert pages == 3 and seen == list(range(1, 251))
    [exact] = call(srv.port, "ListEventsPage", query_pb2.ListEventsRequest(limit=250), token)
    assert len(exact.events) == 250 and exact.next_page_token == ""
    with pytest.raises(grpc.RpcError) as err:
        call(srv.port, "ListEventsPage", query_pb2.ListEventsRequest(page_token="nonsense"), token)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in err.value.details()


def _alert(store, alert_id: int | None = None) -> int:
    """Store a fleet alert row (the correlator's kind), optionally with a given id (a late commit)."""
    row = {"kind": "fleet", "rule": "fleet", "label": "glass_break", "labels": ["glass_break"], "start_ns": 10**18,
           "end_ns": 10**18 + 1, "device_count": 2, "event_ids": [], "created_ns": time.time_ns()}
    if alert_id is not None:
        row["id"] = alert_id
    with store.engine.begin() as conn:
        res = conn.execute(alerts.insert().values(**row))
        return int(alert_id or res.inserted_primary_key[0])


def test_subscribe_sends_its_headers_at_once_and_resumes_without_a_gap(srv):
    token = srv.app.store.users.add("ann", "reader")
    store = srv.app.store
    before = _alert(store)
    md = (("authorization", f"Bearer {token}"),)
    ch = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
    try:
        stub = query_pb2_grpc.QueryStub(ch)
        live = stub.Subscribe(query_pb2.SubscribeRequest(), metadata=md, timeout=30)
        headers = {}
        t = threading.Thread(target=lambda: headers.update(dict(live.initial_metadata())), daemon=True)
        t.start()
        t.join(3.0)
        assert headers.get("edgert-after-id") == str(before), "no headers before the first alert"
        got: list[int] = []

        def read():
            try:
                for m in live:
                    got.append(m.id)
            except grpc.RpcError as exc:  # the cancel() below
                if exc.code() != grpc.StatusCode.CANCELLED:
                    raise

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        a1 = _alert(store)
        a3 = _alert(store, a1 + 2)       # a larger id becomes visible first ...
        deadline = time.monotonic() + 10
        while a3 not in got and time.monotonic() < deadline:
            time.sleep(0.05)
        a2 = _alert(store, a1 + 1)       # ... and the smaller one commits late: still delivered, once
        while a2 not in got and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)                  # a few more polls: nothing is sent twice
        live.cancel()
        reader.join(5)
        assert got == [a1, a3, a2]       # not `before`: the stream starts after the headers' id
        # a client that saw up to a1 resumes with after_id=a1 and gets everything after it
        again = stub.Subscribe(query_pb2.SubscribeRequest(after_id=a1), metadata=md, timeout=30)
        resumed = []
        for m in again:
            resumed.append(m.id)
            if len(resumed) == 2:
                again.cancel()
                break
        assert sorted(resumed) == [a2, a3]
    finally:
        ch.close()
    with store.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(alerts)) == 4
