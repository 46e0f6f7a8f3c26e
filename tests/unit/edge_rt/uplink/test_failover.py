"""Several cloud addresses: how they are given and checked (config, CLI, Uplink), the order each device tries them
in (rendezvous hashing: spread, stable), the sticky failover and its waits, and the uplink moving between real
loopback gRPC servers: past a dead address, off a replica that fails mid-stream, and never on a refusal."""
from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from concurrent import futures

import grpc
import pytest

from edge_rt import config
from edge_rt.__main__ import main
from edge_rt.config import CloudConfig, parse_addresses
from edge_rt.errors import ConfigError
from edge_rt.outbox import Outbox
from edge_rt.uplink import Failover, Uplink, UplinkError, rotation
from edgert.backoff import Backoff
from edgert.v1 import ingest_pb2 as pb
from edgert.v1 import ingest_pb2_grpc
from support import put_event, wait_for

FAST = CloudConfig(backoff_initial_s=0.05, backoff_max_s=0.2, poll_s=0.005, heartbeat_s=0.05, connect_timeout_s=2.0,
                   ack_timeout_s=1.0, stop_flush_s=0.5)
STEADY = Backoff(1.0, 8.0, 2.0, jitter=0.0)  # waits without jitter: each one is its step


# ---------------------------------------------------------------------------------------------- the addresses
@pytest.mark.parametrize("given, want", [
    ("ingest.example:50051", ("ingest.example:50051",)),
    ("a:1,b:2", ("a:1", "b:2")),
    (" a:1 , b:2 ,c:3", ("a:1", "b:2", "c:3")),
    (["10.0.0.1:50051", "10.0.0.2:50051"], ("10.0.0.1:50051", "10.0.0.2:50051")),
    ("[::1]:50051,localhost:50052", ("[::1]:50051", "localhost:50052")),
])
def test_one_address_several_comma_separated_or_a_list_are_taken_in_their_order(given, want):
    assert parse_addresses(given) == want


@pytest.mark.parametrize("given, named", [
    ("a:1,b", "'b' is not HOST:PORT (no port)"),
    ("a:1,:2", "':2' is not HOST:PORT (no host)"),
    ("a:1,b:0", "'b:0': port '0' is not a number in 1-65535"),
    ("a:65536", "'a:65536': port '65536'"),
    ("a:1,b:x", "'b:x': port 'x'"),
    ("a:1,,b:2", "an empty address in 'a:1,,b:2'"),
    ("a:1,a:1", "'a:1' is listed twice"),
    ("::1:50051", "an IPv6 host goes in brackets"),
    ("a b:1", "host 'a b' is not a host name or address"),
    ("dns:///a:1", "host 'dns:///a'"),
    ([], "needs at least one"),
    (50051, "must be HOST:PORT"),
])
def test_a_bad_address_is_refused_by_name(given, named):
    with pytest.raises(ValueError) as err:
        parse_addresses(given)
    assert named in str(err.value)


def test_the_config_takes_a_list_or_a_comma_separated_string_from_yaml_env_and_overrides(tmp_path):
    f = tmp_path / "edge.yaml"
    f.write_text("cloud:\n  address: [a:1, b:2]\n")
    assert config.load(f, env={}).cloud.address == ("a:1", "b:2")
    assert config.load(env={"EDGE_RT__CLOUD__ADDRESS": "a:1,b:2,c:3"}).cloud.address == ("a:1", "b:2", "c:3")
    assert config.load(overrides={"cloud.address": "a:1"}, env={}).cloud.address == ("a:1",)
    assert config.load(env={}).cloud.address is None


def test_a_bad_address_among_several_is_named_when_the_config_loads():
    with pytest.raises(ConfigError, match=r"cloud\.address: .*cloud address 'b:99999': port"):
        config.load(overrides={"cloud.address": "a:1,b:99999"}, env={})


def test_the_cli_refuses_a_bad_cloud_address_by_name_before_starting(tmp_path, capsys):
    rc = main(["run", "--source", "synth:distress", "--spool", str(tmp_path), "--cloud", "a:50051,b"])
    assert rc == 2
    assert "cloud address 'b' is not HOST:PORT" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was started


def test_the_uplink_refuses_a_bad_address_by_name(tmp_path):
    with pytest.raises(UplinkError, match="'nope' is not HOST:PORT"):
        Uplink(Outbox(tmp_path / "o.db"), "a:1,nope", "lamp-1", "ert_token")


# ---------------------------------------------------------------------------------------------- the order
def test_each_device_tries_every_address_once_in_an_order_of_its_own_that_never_changes():
    addresses = ("a:1", "b:1", "c:1")
    orders = {d: rotation(addresses, d) for d in (f"lamp-{i}" for i in range(50))}
    assert all(sorted(o) == sorted(addresses) for o in orders.values())
    assert all(rotation(list(reversed(addresses)), d) == o for d, o in orders.items())  # not the list's order
    assert len(set(orders.values())) > 1


def test_first_choices_spread_over_the_replicas_and_a_failed_replicas_devices_spread_over_the_rest():
    addresses = ("a:1", "b:1", "c:1")
    devices = [f"lamp-{i}" for i in range(600)]
    first = Counter(rotation(addresses, d)[0] for d in devices)
    assert set(first) == set(addresses) and min(first.values()) >= 150  # 200 each, give or take
    moved = Counter(rotation(addresses, d)[1] for d in devices if rotation(addresses, d)[0] == "a:1")
    assert set(moved) == {"b:1", "c:1"} and min(moved.values()) >= first["a:1"] // 4


def test_removing_a_replica_moves_only_its_own_devices():
    devices = [f"lamp-{i}" for i in range(300)]
    for d in devices:
        three, two = rotation(("a:1", "b:1", "c:1"), d), rotation(("a:1", "b:1"), d)
        assert two == tuple(x for x in three if x != "c:1")


# ---------------------------------------------------------------------------------------------- the policy
def test_failover_is_sticky_and_moves_along_the_devices_order_only_when_told():
    f = Failover(("a:1", "b:1", "c:1"), "lamp-7", STEADY)
    order = rotation(("a:1", "b:1", "c:1"), "lamp-7")
    assert f.current == order[0]
    f.failed(answered=True, move=False)  # e.g. the stream reached its planned end: same replica
    assert f.current == order[0]
    seen = [f.current]
    for _ in range(5):
        f.failed(answered=False)
        seen.append(f.current)
    assert seen == [order[0], order[1], order[2], order[0], order[1], order[2]]


def test_failover_waits_a_short_step_within_a_round_and_backs_off_after_each_whole_failed_round():
    f = Failover(("a:1", "b:1", "c:1"), "lamp-7", STEADY)
    waits = [f.failed(answered=True)] + [f.failed(answered=False) for _ in range(9)]
    # answered, then misses 1..9: a round is three misses; rounds back off 2, 4, 8 (capped)
    assert waits == [1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 4.0, 1.0, 1.0, 8.0]
    assert f.failed(answered=True) == 1.0  # an answer starts over


def test_with_one_address_the_waits_are_the_plain_backoff():
    f = Failover(("a:1",), "lamp-7", STEADY)
    assert [f.failed(answered=False) for _ in range(4)] == [2.0, 4.0, 8.0, 8.0]
    assert f.failed(answered=True) == 1.0 and f.current == "a:1"


def test_the_waits_are_jittered_so_a_lost_replicas_devices_do_not_arrive_in_lockstep():
    rng = random.Random(3)
    waits = {Failover(("a:1", "b:1"), f"lamp-{i}", CloudConfig().backoff).failed(True, rng=rng) for i in range(20)}
    assert len(waits) == 20 and all(0 <= w <= CloudConfig().backoff_initial_s for w in waits)


# ---------------------------------------------------------------------------------------------- the uplink
class Scripted(ingest_pb2_grpc.IngestServicer):
    """Answers each Stream call with `script(call_number, requests, context)`; counts the calls."""

    def __init__(self, script):
        self.script, self.calls, self.lock = script, 0, threading.Lock()

    def Stream(self, request_iterator, context):
        with self.lock:
            self.calls += 1
            n = self.calls
        yield from self.script(n, request_iterator, context)


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


class Database:
    """What replicas on one database share: the device's watermark, and the heartbeats they were sent."""

    def __init__(self):
        self.held, self.beats = 0, []

    def acking(self, n, requests, context):
        """A well-behaved replica: answers Hello with the watermark, acks each batch's last seq once stored."""
        for req in requests:
            which = req.WhichOneof("msg")
            if which == "hello":
                yield pb.IngestResponse(ack=pb.Ack(device_id=req.hello.device_id, seq=self.held))
            elif which == "batch":
                self.held = max(self.held, req.batch.records[-1].seq)
                yield pb.IngestResponse(ack=pb.Ack(seq=req.batch.records[-1].seq))
            elif which == "heartbeat":
                self.beats.append(req.heartbeat)


def dead_address() -> str:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def device_starting_on(address: str, addresses: tuple[str, ...]) -> str:
    return next(d for d in (f"lamp-{i}" for i in range(1000)) if rotation(addresses, d)[0] == address)


def test_a_refused_connection_moves_the_uplink_to_the_next_replica_at_once(serve, tmp_path):
    live, target = serve(Database().acking)
    dead = dead_address()
    device = device_starting_on(dead, (dead, target))
    ob = Outbox(tmp_path / "o.db")
    for _ in range(5):
        put_event(ob)
    started = time.monotonic()
    up = Uplink(ob, f"{dead},{target}", device, "ert_token", options=FAST, heartbeat=lambda: {}).start()
    try:
        assert wait_for(up.drained, 10)
        took = time.monotonic() - started
    finally:
        up.stop()
    assert took < FAST.connect_timeout_s  # it did not wait out the connect timeout on the dead one
    st = up.stats()
    assert st["cloud_address"] == target and st["failovers"] == 1 and st["cloud_addresses"] == [dead, target]
    assert f"cannot connect to {dead}" in up.last_error and live.calls >= 1


def test_a_replica_failing_mid_stream_hands_the_rest_to_the_other_which_keeps_it(serve, tmp_path, caplog):
    db = Database()

    def dies_after_one_batch(n, requests, context):
        for req in requests:
            if req.WhichOneof("msg") == "batch":
                db.held = max(db.held, req.batch.records[-1].seq)  # committed, but the ack is lost
                context.abort(grpc.StatusCode.UNAVAILABLE, "replica going down")
            elif req.WhichOneof("msg") == "hello":
                yield pb.IngestResponse(ack=pb.Ack(seq=db.held))

    first, a = serve(dies_after_one_batch)
    second, b = serve(db.acking)
    device = device_starting_on(a, (a, b))
    ob = Outbox(tmp_path / "o.db")
    put_event(ob)
    up = Uplink(ob, [a, b], device, "ert_token", options=FAST.model_copy(update={"batch_records": 2}),
                heartbeat=lambda: {}).start()
    try:
        assert wait_for(lambda: up.acked_seq == 2 and up.target == b, 10)
        for _ in range(20):  # more records after the failover: they all go to b
            put_event(ob)
        assert wait_for(up.drained, 10)
        assert wait_for(lambda: len(db.beats) >= 2, 5)
    finally:
        up.stop()
    assert first.calls == 1 and up.failovers == 1 and up.target == b and second.calls == 1 and db.held == 42
    assert db.beats[-1].info["cloud_address"] == b and db.beats[-1].figures["uplink_failovers"] == 1
    assert any(f"failing over to {b}" in r.getMessage() for r in caplog.records if r.name == "edge_rt.uplink")


def test_a_stream_that_reaches_its_planned_end_reconnects_to_the_same_replica(serve, tmp_path):
    db = Database()
    first, a = serve(db.acking)
    second, b = serve(db.acking)
    device = device_starting_on(a, (a, b))
    ob = Outbox(tmp_path / "o.db")
    put_event(ob)
    up = Uplink(ob, [a, b], device, "ert_token", options=FAST.model_copy(update={"stream_max_s": 0.3})).start()
    try:
        assert wait_for(lambda: first.calls >= 3, 10)
    finally:
        up.stop()
    assert "DEADLINE_EXCEEDED" in up.last_error and second.calls == 0 and up.failovers == 0 and up.drained()


def test_a_refusal_stops_the_uplink_without_trying_another_replica(serve, tmp_path):
    def refusing(n, requests, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown or revoked device token")
        yield from ()

    first, a = serve(refusing)
    second, b = serve(Database().acking)
    device = device_starting_on(a, (a, b))
    ob = Outbox(tmp_path / "o.db")
    put_event(ob)
    up = Uplink(ob, f"{a},{b}", device, "ert_bad", options=FAST).start()
    try:
        assert wait_for(lambda: up.failed is not None, 10)
        time.sleep(0.3)
    finally:
        up.stop()
    assert "UNAUTHENTICATED" in str(up.failed) and a in str(up.failed)
    assert first.calls == 1 and second.calls == 0 and up.failovers == 0 and ob.stats()["depth"] == 2


def test_with_every_replica_down_it_goes_round_them_and_delivers_once_one_comes_back(tmp_path):
    a, b = dead_address(), dead_address()
    ob = Outbox(tmp_path / "o.db")
    put_event(ob)
    up = Uplink(ob, [a, b], "lamp-1", "ert_token", options=FAST).start()
    try:
        assert wait_for(lambda: up.failovers >= 4, 10)
        assert up.connects == 0 and not up.drained()
        servicer = Scripted(Database().acking)  # one replica comes back on its port
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        ingest_pb2_grpc.add_IngestServicer_to_server(servicer, server)
        server.add_insecure_port(b)
        server.start()
        try:
            assert wait_for(up.drained, 10)
        finally:
            server.stop(0)
    finally:
        up.stop()
    assert up.target == b and servicer.calls >= 1
