"""The notification bridge over a real store (SQLite and MariaDB) and a real Mosquitto: its cursors survive late
commits and restarts, its notes land on the right topics, device status follows the heartbeats, discovery is
republished to a broker that forgot it, the webhook gets signed alerts, a finished verification gets its verified
note, and of several bridges on one database one relays at a time."""
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

from cloud_svc.domain import AlertIn, BatchIn, HeartbeatIn, VerifyResult
from cloud_svc.notify import WebhookTransport
from cloud_svc.notify.bridge import Bridge, Relay, streams
from cloud_svc.notify.follow import Follower
from cloud_svc.notify.transports import CURSOR_NAME_MAX, CURSOR_SUFFIX_MAX, MqttTransport, Transport, transport_kinds
from cloud_svc.schema import alerts, event_ends, events
from edgert import labels
from edgert.notify.config import MqttConfig, WebhookConfig
from edgert.notify.webhook import DELIVERY_HEADER, verify

S = 1_000_000_000
SCHEMA = json.loads((Path(__file__).parents[2] / "unit/edgert/notify/ha_discovery.schema.json").read_text())
ALL_LABELS = list(labels.scoring(calibrated=False).labels)


class Recording(Transport):
    """A transport that keeps what it is given (the bridge's own contract, without a network)."""

    streams = ("events", "ends", "verified", "alerts")
    chunk = 2

    def __init__(self):
        self.notes: list = []
        self.status: list = []
        self.turns: list[str] = []   # "lead" / "stand_by", as the relay said them

    def send(self, notes):
        self.notes.extend(notes)

    def statuses(self, notes, now_ns):
        self.status.append(list(notes))

    def lead(self):
        self.turns.append("lead")

    def stand_by(self):
        self.turns.append("stand_by")


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
    assert len(t.cursor_prefix) + CURSOR_SUFFIX_MAX <= CURSOR_NAME_MAX == 64
    assert CURSOR_SUFFIX_MAX == len(":verified")
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
    with store.db.read() as conn:
        plan = " ".join(str(r) for r in conn.execute(sa.text(
            "EXPLAIN QUERY PLAN SELECT event_pk FROM verifications WHERE done_ns > 5 ORDER BY done_ns")))
    assert "ix_verifications_done_ns" in plan


# ---------------------------------------------------------------------------------------------- verified notes
def finish_verification(store, agree) -> None:
    """A verification worker claims the pending job and stores its verdict (agree None: it could not judge)."""
    [job] = store.jobs.claim_jobs("w", 5, lease_s=60, max_attempts=3)
    assert store.jobs.finish_job(job, VerifyResult("yamnet", ["glass_break"] if agree else ["shout"],
                                                   {"glass_break": 0.8}, agree))


@pytest.mark.parametrize("agree, state", [(True, "agree"), (False, "disagree"), (None, "skipped")])
def test_a_verification_that_finishes_after_the_end_note_gets_a_verified_note_once(store, agree, state):
    store.devices.add_device("d1")
    t = Recording()
    relay = Relay(t, store.outbound, stale_after_s=60, settle_s=1.0)
    relay.step()
    eid = uuid.uuid4().hex
    store.ingest.commit([BatchIn("d1", 1, [rec(1, "event", start(eid)), rec(2, "event_end", end(eid))])])
    relay.step()
    assert [n.phase for n in t.notes] == ["start", "end"] and t.notes[1].verification == "pending"
    finish_verification(store, agree)
    relay.step()
    assert [n.phase for n in t.notes] == ["start", "end", "verified"]
    v = t.notes[2]
    assert (v.verification, v.pk, v.event_id, v.end_ns) == (state, t.notes[1].pk, eid, t.notes[1].end_ns)
    assert v.verified_labels == (("glass_break",) if agree else ("shout",))
    for _ in range(3):
        relay.step(time.time_ns() + 2 * S)               # settled: the cursor passes it
    assert len(t.notes) == 3 and relay.followers["verified"].unsettled == 0
    again = Recording()
    Relay(again, store.outbound, stale_after_s=60, settle_s=1.0).step()
    assert again.notes == []                             # a restart does not send it again


def test_a_failed_verification_gets_its_verified_note_and_a_pending_one_none(store):
    store.devices.add_device("d1")
    t = Recording()
    relay = Relay(t, store.outbound, stale_after_s=60, settle_s=1.0)
    relay.step()
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    store.ingest.commit([BatchIn("d1", 1, [rec(1, "event", start(a)), rec(2, "event_end", end(a)),
                                           rec(3, "event", start(b)), rec(4, "event_end", end(b))])])
    jobs = store.jobs.claim_jobs("w", 1, lease_s=60, max_attempts=1)
    assert store.jobs.fail_job(jobs[0], "the clip store is away", max_attempts=1)
    relay.step()
    verified = [n for n in t.notes if n.phase == "verified"]
    assert [(n.event_id, n.verification) for n in verified] == [(a, "failed")]   # b's is still pending


# ---------------------------------------------------------------------------------------------- one leader
def three_events(store, first_seq: int) -> list[str]:
    eids = [uuid.uuid4().hex for _ in range(3)]
    store.ingest.commit([BatchIn("d1", first_seq, [rec(first_seq + i, "event", start(x))
                                                   for i, x in enumerate(eids)])])
    return eids


def test_of_two_relays_on_one_database_one_sends_and_the_other_stands_by(store):
    store.devices.add_device("d1")
    ta, tb = Recording(), Recording()
    a = Relay(ta, store.outbound, stale_after_s=60, settle_s=1.0, poll_s=0.05)
    b = Relay(tb, store.outbound, stale_after_s=60, settle_s=1.0, poll_s=0.05)
    a.step()
    b.step()
    assert (a.leading, b.leading) == (True, False) and (ta.turns, tb.turns) == (["lead"], ["stand_by"])
    eids = three_events(store, 1)
    for _ in range(2):
        a.step()
        b.step()
    assert [n.event_id for n in ta.notes] == eids and tb.notes == [] and tb.status == []


def test_a_standby_takes_over_from_the_stored_cursors_once_the_leader_stops_renewing(store):
    store.devices.add_device("d1")
    ta, tb = Recording(), Recording()
    a = Relay(ta, store.outbound, stale_after_s=60, settle_s=0.2, poll_s=0.05, lease_s=0.5)
    b = Relay(tb, store.outbound, stale_after_s=60, settle_s=0.2, poll_s=0.05, lease_s=0.5)
    a.step()
    b.step()
    first = three_events(store, 1)
    a.step()
    time.sleep(0.25)
    a.step()                                             # sent, and recorded once settled
    assert [n.event_id for n in ta.notes] == first and a.followers["events"].unsettled == 0
    second = three_events(store, 4)
    b.step()
    assert tb.notes == []                                # a's lease runs: b waits ...
    time.sleep(0.6)                                      # ... a stalls past its lease ...
    b.step()
    assert b.leading and [n.event_id for n in tb.notes] == second   # ... and b goes on where a's cursor was
    a.step()                                             # a comes back: it stands by, sending nothing more
    assert not a.leading and ta.turns == ["lead", "stand_by"] and len(ta.notes) == 3


def test_a_leader_that_stalled_past_its_lease_cannot_move_the_cursors(store):
    store.devices.add_device("d1")
    ta, tb = Recording(), Recording()
    a = Relay(ta, store.outbound, stale_after_s=60, settle_s=0.2, poll_s=0.05, lease_s=0.5)
    b = Relay(tb, store.outbound, stale_after_s=60, settle_s=0.2, poll_s=0.05, lease_s=0.5)
    a.step()
    eids = three_events(store, 1)
    pending = a.followers["events"].pending()            # a reads and sends, then stalls before recording
    ta.send([it.note for it in pending])
    a.followers["events"].sent(pending)
    cursor = store.outbound.cursor("notify::events", 0)
    time.sleep(0.6)
    b.step()                                             # b takes over and sends them again (QoS 1's edge) ...
    assert b.leading and [n.event_id for n in tb.notes] == eids
    b.step()
    moved = store.outbound.cursor("notify::events", 0)
    assert moved > cursor
    assert not store.outbound.move_cursors([("notify::events", cursor, cursor + 1)], a.lease)  # ... a is fenced
    assert store.outbound.cursor("notify::events", 0) == moved and a.lease.token is None


def test_a_cleanly_stopped_leader_hands_over_at_once(store):
    store.devices.add_device("d1")
    first, second = Recording(), Recording()
    a = Bridge(store.outbound, [first], stale_after_s=60, poll_s=0.05, settle_s=0.5).start()
    time.sleep(0.2)
    b = Bridge(store.outbound, [second], stale_after_s=60, poll_s=0.05, settle_s=0.5).start()
    try:
        eids = three_events(store, 1)
        deadline = time.monotonic() + 5
        while len(first.notes) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        a.stop()                                         # the default lease is 10 s: b must not wait for it
        t0 = time.monotonic()
        later = three_events(store, 4)
        while len(second.notes) < 3 and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        assert time.monotonic() - t0 < 2.0
    finally:
        b.stop()
    assert [n.event_id for n in first.notes] == eids and [n.event_id for n in second.notes] == later
    assert "stood by throughout" not in b.summary() and second.turns == ["stand_by", "lead"]
