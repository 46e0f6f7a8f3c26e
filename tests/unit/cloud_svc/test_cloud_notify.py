"""The notification bridge over a real store (SQLite and MariaDB) and a real Mosquitto: its cursors survive late
commits and restarts, its notes land on the right topics, device status follows the heartbeats, discovery is
republished to a broker that forgot it, and the webhook gets signed alerts."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jsonschema
import pytest
import sqlalchemy as sa
from http_receiver import Receiver
from mosquitto import Collector, Mosquitto
from store_records import end, rec, start

from cloud_svc.domain import AlertIn, BatchIn, HeartbeatIn
from cloud_svc.notify import WebhookTransport
from cloud_svc.notify.bridge import Bridge, Relay, streams
from cloud_svc.notify.follow import Follower
from cloud_svc.notify.transports import MqttTransport, Transport, transport_kinds
from cloud_svc.schema import alerts, event_ends, events
from edgert import labels
from edgert.notify.config import MqttConfig, WebhookConfig
from edgert.notify.webhook import DELIVERY_HEADER, verify

S = 1_000_000_000
SCHEMA = json.loads((Path(__file__).parents[2] / "unit/edgert/notify/ha_discovery.schema.json").read_text())
ALL_LABELS = list(labels.scoring(calibrated=False).labels)


class Recording(Transport):
    """A transport that keeps what it is given (the bridge's own contract, without a network)."""

    streams = ("events", "ends", "alerts")
    chunk = 2

    def __init__(self):
        self.notes: list = []
        self.status: list = []

    def send(self, notes):
        self.notes.extend(notes)

    def statuses(self, notes, now_ns):
        self.status.append(list(notes))


def put_event(store, pk: int, received_ns: int, device="d1") -> None:
    """An event row with a chosen id and commit time: what a committer that finished late leaves behind."""
    with store.db.write() as conn:
        conn.execute(events.insert().values(id=pk, device_id=device, seq=pk, event_id=uuid.uuid4().hex,
                                            label="scream", start_ns=pk * S, score=0.5, created_ns=received_ns,
                                            received_ns=received_ns))


def put_end(store, pk: int, received_ns: int) -> None:
    with store.db.write() as conn:
        conn.execute(event_ends.insert().values(event_pk=pk, seq=1000 + pk, end_ns=pk * S + S, score=0.7,
                                                created_ns=received_ns, received_ns=received_ns))


def follower(store, name: str, batch: int = 100) -> Follower:
    store.outbound.cursor(f"t:{name}", 0)  # follow from the beginning
    return Follower(store.outbound, streams(None)[name], f"t:{name}", settle_s=10, batch=batch)


def pks(items) -> list[int]:
    return [it.note.pk for it in items]


def test_an_event_committed_late_below_sent_ones_is_sent_and_the_cursor_waits_for_it(store):
    store.devices.add_device("d1")
    now = time.time_ns()
    put_event(store, 1, now)
    put_event(store, 3, now)                  # id 2 is still in another committer's transaction
    f = follower(store, "events")
    got = f.pending()
    assert pks(got) == [1, 3]
    f.sent(got)
    f.advance(now)
    assert f.cursor == 1                      # 3 sits behind a gap that may still fill
    put_event(store, 2, now)                  # ... and it does
    got = f.pending()
    assert pks(got) == [2]                    # only the late one: 3 is not sent twice
    f.sent(got)
    f.advance(now)
    assert f.cursor == 3 and store.outbound.cursor("t:events", 0) == 3


def test_a_gap_that_never_fills_is_passed_once_the_rows_after_it_settled(store):
    store.devices.add_device("d1")
    now = time.time_ns()
    put_event(store, 1, now)
    put_event(store, 3, now)                  # 2 was rolled back, or burnt by an INSERT IGNORE
    f = follower(store, "events")
    f.sent(f.pending())
    f.advance(now + 5 * S)
    assert f.cursor == 1
    f.pending()
    f.advance(now + 11 * S)
    assert f.cursor == 3


def test_a_restarted_follower_resumes_from_the_stored_cursor_and_repeats_only_what_was_unsettled(store):
    store.devices.add_device("d1")
    now = time.time_ns()
    for pk in (1, 2, 4):
        put_event(store, pk, now)
    f = follower(store, "events")
    f.sent(f.pending())
    f.advance(now)
    assert f.cursor == 2
    again = Follower(store.outbound, streams(None)["events"], "t:events", settle_s=10, batch=100)
    assert pks(again.pending()) == [4]        # 1 and 2 are behind the stored cursor; 4 was behind a gap


def test_ends_move_the_cursor_only_over_settled_and_whole_commit_times(store):
    store.devices.add_device("d1")
    now = time.time_ns()
    t1, t2 = now - 20 * S, now - 15 * S
    for pk in (1, 2, 3, 4):
        put_event(store, pk, t1)
    put_end(store, 1, t1)
    put_end(store, 2, t2)
    put_end(store, 3, t2)                     # one commit stored 2 and 3
    put_end(store, 4, now)                    # not settled
    f = follower(store, "ends", batch=2)      # a page boundary inside the t2 commit
    got = f.pending()
    assert pks(got) == [1, 2]
    f.sent(got)
    f.advance(now)
    assert f.cursor == t1                     # not t2: its group was cut by the page
    got = f.pending()
    assert pks(got) == [3, 4]                 # 2 was sent already
    f.sent(got)
    f.advance(now)
    assert f.cursor == t2
    assert f.pending() == [] and not f.full
    f.advance(now)
    assert f.cursor == t2                     # 4 waits until settled ...
    f.pending()
    f.advance(now + 11 * S)
    assert f.cursor == now                    # ... and no longer


def test_a_new_follower_starts_at_the_head_not_at_the_beginning(store):
    store.devices.add_device("d1")
    put_event(store, 1, time.time_ns())
    f = Follower(store.outbound, streams(None)["events"], "fresh:events", settle_s=10, batch=100)
    assert f.pending() == [] and f.cursor == 1
    put_event(store, 2, time.time_ns())
    assert pks(f.pending()) == [2]


def test_a_relay_sends_starts_before_ends_and_alerts_with_the_stored_details(store):
    store.devices.add_device("d1")
    t = Recording()
    relay = Relay(t, store.outbound, stale_after_s=60)
    relay.step()                                               # the cursors start here
    eid = uuid.uuid4().hex
    store.ingest.commit([BatchIn("d1", 1, [rec(1, "event", start(eid)), rec(2, "event_end", end(eid)),
                                           rec(3, "alert", AlertIn("distress", ["glass_break"], 10**18,
                                                                   10**18 + S, [eid], 52.5, 13.4))])],
                        [HeartbeatIn("d1", time.time_ns(), 4, 0, {"rtf": 0.07})])
    relay.step(time.time_ns() + 2 * S)                         # a second on: the device states are read again
    kinds = [(type(n).__name__, getattr(n, "phase", None)) for n in t.notes]
    assert kinds == [("EventNote", "start"), ("EventNote", "end"), ("AlertNote", None)]
    s, e, a = t.notes
    assert (s.pk, s.seq, s.label, s.classes[0][0], s.verification) == (e.pk, 1, "glass_break", "Glass", "pending")
    assert (e.seq, e.end_ns, e.score, e.classes[0][0]) == (2, 10**18 + 700_000_000, 0.9, "Shatter")
    assert (a.kind, a.device_id, a.seq, a.event_ids) == ("device", "d1", 3, (eid,))
    assert a.alert_id == store.queries.list_alerts()[0].id     # MariaDB's ids go on after a wipe
    status = t.status[-1][0]
    assert (status.device_id, status.online, status.rtf, status.backlog) == ("d1", True, 0.07, 4)
    relay.step()
    assert len(t.notes) == 3                                   # nothing twice


def test_a_cleanly_stopped_bridge_waits_for_its_cursors_so_a_restart_repeats_nothing(store):
    store.devices.add_device("d1")
    first = Recording()
    bridge = Bridge(store.outbound, [first], stale_after_s=60, poll_s=0.05, settle_s=1.0).start()
    time.sleep(0.3)
    eids = [uuid.uuid4().hex for _ in range(3)]
    store.ingest.commit([BatchIn("d1", 1, [rec(2 * i + 1, "event", start(x)) for i, x in enumerate(eids)]
                                 + [rec(2 * i + 2, "event_end", end(x)) for i, x in enumerate(eids)])])
    deadline = time.monotonic() + 5
    while len(first.notes) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    bridge.stop()                                              # the ends are younger than settle_s here
    assert len(first.notes) == 6 and 0.3 < time.monotonic() - t0 < 5
    again = Recording()
    relay = Relay(again, store.outbound, stale_after_s=60, settle_s=1.0)
    relay.step()
    assert again.notes == []


def test_transport_kinds_are_found_by_key():
    kinds = transport_kinds()
    assert kinds["mqtt"] is MqttTransport and kinds["webhook"] is WebhookTransport


# ---------------------------------------------------------------------------------------------- over MQTT
@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "broker") as b:
        yield b


def mqtt_bridge(store, broker, **kw) -> Bridge:
    cfg = MqttConfig(broker=broker.url, retry_initial_s=0.1, retry_max_s=0.5, status_s=60,
                     link_base="http://dash:8050")
    return Bridge(store.outbound, [MqttTransport(cfg, all_labels=ALL_LABELS)], poll_s=0.1, settle_s=1.0, **kw)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_notes_status_and_discovery_arrive_on_their_topics(store, broker):
    store.devices.add_device("d1")
    with Collector(broker.url, ["edgert/#", "homeassistant/#"]) as c:
        # stale after 2 s: longer than the bridge's 1 s between device reads, so "online" is seen once for sure
        bridge = mqtt_bridge(store, broker, stale_after_s=2.0).start()
        try:
            c.wait_for(lambda m: any(t == "edgert/d1/status" for t, _, _ in m))
            eid = uuid.uuid4().hex
            store.ingest.commit([BatchIn("d1", 1, [rec(1, "event", start(eid)), rec(2, "event_end", end(eid))])],
                                [HeartbeatIn("d1", time.time_ns(), 2, 0, {"rtf": 0.1})])
            c.wait_for(lambda m: len([1 for t, _, _ in m if t == "edgert/d1/event"]) == 2)
            # 2 s without a heartbeat: offline
            c.wait_for(lambda m: [json.loads(p)["state"] for t, p, _ in m if t == "edgert/d1/status"]
                       == ["offline", "online", "offline"], timeout=5)
        finally:
            bridge.stop()
        got = c.snapshot()
    start_note, end_note = c.json_on("edgert/d1/event")
    assert (start_note["phase"], end_note["phase"]) == ("start", "end")
    assert start_note["id"] == end_note["id"] == eid and start_note["pk"] == end_note["pk"]
    assert end_note["clip"] is None and end_note["duration_s"] == 0.7
    configs = [(t, p) for t, p, _ in got if t.startswith("homeassistant/")]
    assert len(configs) == len(labels.distress_labels()) + 2
    for t, p in configs:
        component = t.split("/")[1]
        jsonschema.Draft202012Validator(SCHEMA).validate({component: json.loads(p)})
    bridge_states = [json.loads(p)["state"] for p, _ in c.on("edgert/bridge/status")]
    assert bridge_states == ["online", "offline"]     # the clean stop says so; the will was not needed


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_restarted_broker_gets_the_missed_notes_and_the_retained_state_again(store, broker):
    store.devices.add_device("d1")
    bridge = mqtt_bridge(store, broker, stale_after_s=60).start()
    try:
        with Collector(broker.url, ["edgert/#"]) as c:
            c.wait_for(lambda m: any(t == "edgert/d1/status" for t, _, _ in m))
        broker.stop()
        ids = [uuid.uuid4().hex for _ in range(5)]
        store.ingest.commit([BatchIn("d1", 1, [rec(i + 1, "event", start(x)) for i, x in enumerate(ids)])])
        time.sleep(1.0)                                   # the relay fails and backs off meanwhile
        broker.start()                                    # no persistence: it forgot every retained message
        with Collector(broker.url, ["edgert/#", "homeassistant/#"]) as c:
            c.wait_for(lambda m: len(c.json_on("edgert/d1/event")) == 5
                       and any(t.startswith("homeassistant/") for t, _, _ in m)
                       and any(t == "edgert/d1/status" for t, _, _ in m), timeout=15)
            assert sorted(n["id"] for n in c.json_on("edgert/d1/event")) == sorted(ids)
            assert json.loads(c.on("edgert/bridge/status")[-1][0])["state"] == "online"
    finally:
        bridge.stop()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_alerts_go_to_the_device_and_fleet_topics_and_unusable_device_ids_are_skipped(store, broker):
    store.devices.add_device("d1")
    store.devices.add_device("fleet")                     # a legal device id that cannot be a topic level
    bridge = mqtt_bridge(store, broker, stale_after_s=60).start()
    try:
        with Collector(broker.url, ["edgert/+/alert", "edgert/+/event"]) as c:
            time.sleep(0.5)
            eid, bad = uuid.uuid4().hex, uuid.uuid4().hex
            store.ingest.commit([BatchIn("fleet", 1, [rec(1, "event", start(bad))]),
                                 BatchIn("d1", 1, [rec(1, "event", start(eid)),
                                                   rec(2, "alert", AlertIn("distress", ["scream"], S, 2 * S, [eid]))])])
            with store.db.write() as conn:
                conn.execute(alerts.insert().values(kind="fleet", rule="fleet", label="scream", labels=["scream"],
                                                    start_ns=S, end_ns=2 * S, lat=1.0, lon=2.0, device_count=2,
                                                    event_ids=[eid, bad], created_ns=time.time_ns()))
            c.wait_for(lambda m: len(m) == 3)
            time.sleep(0.5)
            topics = sorted(t for t, _, _ in c.snapshot())
    finally:
        bridge.stop()
    assert topics == ["edgert/d1/alert", "edgert/d1/event", "edgert/fleet/alert"]
    fleet = c.json_on("edgert/fleet/alert")[0]
    assert (fleet["kind"], fleet["device"], fleet["device_count"], fleet["delivery"]) == ("fleet", None, 2,
                                                                                        f"alert/fleet/{fleet['id']}")


# ---------------------------------------------------------------------------------------------- webhook
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_webhook_gets_each_alert_once_signed_and_none_of_the_events(store):
    store.devices.add_device("d1")
    with Receiver() as hook:
        cfg = WebhookConfig(url=hook.url, secret="k3y", retry_initial_s=0.1, retry_max_s=0.5)
        bridge = Bridge(store.outbound, [WebhookTransport(cfg)], stale_after_s=60, poll_s=0.1).start()
        try:
            time.sleep(0.3)
            eid = uuid.uuid4().hex
            store.ingest.commit([BatchIn("d1", 1, [rec(1, "event", start(eid)),
                                                   rec(2, "alert", AlertIn("distress", ["scream"], S, 2 * S, [eid])),
                                                   rec(3, "alert", AlertIn("distress", ["shout"], S, 2 * S, [eid]))])])
            posts = hook.wait_for(lambda p: len(p) == 2)
            time.sleep(0.5)
        finally:
            bridge.stop()
    assert len(hook.snapshot()) == 2
    for p in posts:
        assert verify("k3y", p.headers, p.body) and not verify("other", p.headers, p.body)
        assert json.loads(p.body)["type"] == "alert"
        assert p.headers[DELIVERY_HEADER] == json.loads(p.body)["delivery"]
    assert [json.loads(p.body)["labels"] for p in posts] == [["scream"], ["shout"]]


def test_cursor_names_stay_within_the_column_for_long_prefixes():
    t = MqttTransport(MqttConfig(broker="mqtt://127.0.0.1:1", prefix="/".join(["level"] * 20)), all_labels=["a"])
    assert len(t.cursor_prefix + ":alerts") <= 64
    assert t.cursor_prefix != MqttTransport(MqttConfig(broker="mqtt://127.0.0.1:1",
                                                       prefix="/".join(["level"] * 21)), all_labels=["a"]).cursor_prefix


def test_rows_are_read_with_the_cursor_index(store):
    """The ends are found by received_ns through migration 0004's index, not by a scan."""
    if not store.sqlite:
        pytest.skip("the plan check reads SQLite's EXPLAIN QUERY PLAN")
    with store.db.read() as conn:
        plan = " ".join(str(r) for r in conn.execute(sa.text(
            "EXPLAIN QUERY PLAN SELECT event_pk FROM event_ends WHERE received_ns > 5 ORDER BY received_ns")))
    assert "ix_event_ends_received_ns" in plan
