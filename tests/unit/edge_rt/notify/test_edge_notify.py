"""edge_rt.notify: the outbox's records as the shared notes (the cloud bridge's JSON), published to a real Mosquitto
and POSTed to a real local HTTP server, each consumer acking its own mark only after delivery."""
from __future__ import annotations

import json
import time

import pytest
from http_receiver import Receiver
from mosquitto import Collector, Mosquitto

from edge_rt.detector import Alert
from edge_rt.notify import MQTT, WEBHOOK, MqttNotifier, WebhookNotifier, note
from edge_rt.outbox import CLOUD, Outbox, Record
from edge_rt.records import RecordBuilder
from edgert.errors import NotifyError
from edgert.notify import payloads
from edgert.notify.config import MqttConfig, WebhookConfig
from edgert.notify.payloads import AlertNote, ClipRef, EventNote
from edgert.notify.webhook import DELIVERY_HEADER, verify
from support import event_records, wait_for

T0 = 1_700_000_000_000_000_000
DEVICE = "lamp-1"
SECRET = "hook-secret"


def _alert_staged(lat=52.52, lon=13.40):
    build = RecordBuilder(backend="onnxruntime", model_sha256="ab" * 32, lat=lat, lon=lon, t0_ns=T0)
    return build.alert(Alert(rule="distress", labels=["glass_break", "scream"], start_s=1.0, end_s=4.5,
                             event_ids=["a" * 32, "b" * 32]))


def _put_event_and_alert(ob: Outbox) -> list[int]:
    start, end = event_records(start_ns=T0, event_id="e" * 32, clip=b"fLaC-clip")
    alert = _alert_staged()
    return ob.put_many([(start.kind, start.body, None), (alert.kind, alert.body, None),
                        (end.kind, end.body, end.clip)])


def test_records_become_the_notes_the_cloud_bridge_renders(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    _put_event_and_alert(ob)
    start, alert, end = ob.pending()
    classes = (("Glass", 0.81), ("Shatter", 0.4), ("Breaking", 0.2), ("Smash, crash", 0.1), ("Speech", 0.05))
    want_start = EventNote(device_id=DEVICE, event_id="e" * 32, phase="start", label="glass_break", score=0.81,
                           classes=classes, start_ns=T0, end_ns=None, lat=52.52, lon=13.40, seq=1)
    want_end = EventNote(device_id=DEVICE, event_id="e" * 32, phase="end", label="glass_break", score=0.81,
                         classes=classes, start_ns=T0, end_ns=T0 + 700_000_000, lat=52.52, lon=13.40, seq=3,
                         clip=ClipRef(id=f"{DEVICE}/{'e' * 32}", format="flac", sample_rate=16000))
    want_alert = AlertNote(kind="device", rule="distress", labels=("glass_break", "scream"), device_id=DEVICE,
                           start_ns=T0 + 10**9, end_ns=T0 + 4_500_000_000, lat=52.52, lon=13.40,
                           event_ids=("a" * 32, "b" * 32), seq=2)
    # the proto holds float32 scores and positions: the JSON (rounded as the cloud's is) is the reference
    assert payloads.event_json(note(start, DEVICE)) == payloads.event_json(want_start)
    assert payloads.event_json(note(end, DEVICE)) == payloads.event_json(want_end)
    assert payloads.alert_json(note(alert, DEVICE)) == payloads.alert_json(want_alert)
    doc = json.loads(payloads.event_json(note(end, DEVICE)))
    assert doc["pk"] is None and doc["verification"] == {"state": "none", "labels": []}
    assert doc["delivery"] == f"event/{DEVICE}/{'e' * 32}/end" and doc["duration_s"] == 0.7
    assert payloads.delivery_id(note(alert, DEVICE)) == f"alert/{DEVICE}/2"


def test_an_event_without_position_or_clip_says_so(tmp_path):
    start, end = event_records(start_ns=T0, lat=None, lon=None)
    ob = Outbox(tmp_path / "o.db")
    ob.put(end.kind, end.body)
    doc = json.loads(payloads.event_json(note(ob.pending()[0], DEVICE)))
    assert doc["position"] is None and doc["clip"] is None


def test_a_record_that_does_not_parse_notifies_nobody():
    assert note(Record(7, "event", T0, b"\xff\xff not a record", None), DEVICE) is None


# ---------------------------------------------------------------------------------------------------- MQTT
@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "broker") as b:
        yield b


def _mqtt(url: str, **kw) -> MqttConfig:
    return MqttConfig(broker=url, publish_timeout_s=3.0, retry_initial_s=0.1, retry_max_s=0.5, **kw)


def _notifier(ob, url, **kw) -> MqttNotifier:
    return MqttNotifier(ob, _mqtt(url, **kw), DEVICE, figures=lambda: {"rtf": 12.5, "backend": "onnxruntime"},
                        all_labels=["glass_break", "scream"], sw_version="test", poll_s=0.02)


def test_mqtt_publishes_each_record_once_on_its_topic_and_acks_only_its_own_mark(tmp_path, broker):
    ob = Outbox(tmp_path / "o.db")
    ob.register([CLOUD, MQTT])
    _put_event_and_alert(ob)
    with Collector(broker.url, ["edgert/#"]) as sub:
        n = _notifier(ob, broker.url)
        n.connect()
        n.start()
        try:
            assert wait_for(n.drained, 10)
            sub.wait_for(lambda m: sum(t.endswith(("/event", "/alert")) for t, _, _ in m) == 3)
        finally:
            n.stop()
        events = [json.loads(p) for p, _ in sub.on(f"edgert/{DEVICE}/event")]
        alerts = [json.loads(p) for p, _ in sub.on(f"edgert/{DEVICE}/alert")]
    assert [(e["phase"], e["seq"]) for e in events] == [("start", 1), ("end", 3)]
    assert [(a["rule"], a["seq"], a["kind"]) for a in alerts] == [("distress", 2, "device")]
    assert ob.mark(MQTT) == 3 and ob.mark(CLOUD) == 0 and ob.stats()["depth"] == 3  # the cloud still needs them
    ob.ack(3)
    assert ob.stats()["depth"] == 0


def test_mqtt_status_and_discovery_are_retained_and_a_clean_stop_says_offline(tmp_path, broker):
    ob = Outbox(tmp_path / "o.db")
    n = _notifier(ob, broker.url)
    n.connect()
    n.start()
    try:
        assert wait_for(lambda: n.statuses >= 1, 10)
        with Collector(broker.url, [f"edgert/{DEVICE}/status", "homeassistant/#"]) as late:  # after the fact
            late.wait_for(lambda m: len(m) >= 1 + len(n.cfg.discovery.labels) + 2)
            status = late.on(f"edgert/{DEVICE}/status")
            configs = [(t, r) for t, _, r in late.snapshot() if t.startswith("homeassistant/")]
    finally:
        n.stop()
    doc = json.loads(status[0][0])
    assert status[0][1] and doc["state"] == "online" and doc["rtf"] == 12.5 and doc["backlog"] == 0
    assert "backend" not in doc["figures"] and doc["figures"]["rtf"] == 12.5  # numbers only
    # a binary_sensor per discovery label (the distress labels), the last-sound sensor and the event entity
    assert len(configs) == len(n.cfg.discovery.labels) + 2 and all(r for _, r in configs)
    with Collector(broker.url, [f"edgert/{DEVICE}/status"]) as after:
        after.wait_for(lambda m: len(m) >= 1)
        (payload, retained), = after.on(f"edgert/{DEVICE}/status")
    assert retained and json.loads(payload)["state"] == "offline"


def test_mqtt_keeps_records_while_the_broker_is_away_and_sends_them_when_it_comes(tmp_path):
    # The subscriber's lasting session exists before the broker goes away (persistence keeps it across the
    # restart), so what the notifier publishes the moment the broker is back is queued for it: the notifier may
    # reconnect before the subscriber does.
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    sub = Collector(broker.url, ["edgert/+/event"], client_id="keeps-records", clean_session=False)
    ob = Outbox(tmp_path / "o.db")
    n = None
    try:
        broker.stop()
        ob.register([MQTT])
        _put_event_and_alert(ob)
        n = _notifier(ob, broker.url)
        n.connect(timeout_s=1.0)  # nobody listens: not fatal
        n.start()
        time.sleep(0.5)
        assert ob.mark(MQTT) == 0 and ob.stats()["depth"] == 3 and not n.drained()
        broker.start()
        assert wait_for(n.drained, 15), n.stats()
        sub.wait_for(lambda m: len(m) == 2, timeout=15)
    finally:
        if n is not None:
            n.stop()
        sub.close()
        broker.stop()
    assert ob.stats()["depth"] == 0


def test_mqtt_wrong_password_is_a_clear_error_naming_the_broker(tmp_path):
    with Mosquitto(tmp_path / "broker", users={"ha": "right"}) as b:
        url = b.url.replace("mqtt://", "mqtt://ha:wrong@")
        n = _notifier(Outbox(tmp_path / "o.db"), url)
        try:
            with pytest.raises(NotifyError, match=rf"mqtt://127\.0\.0\.1:{b.port} refused the connection"):
                n.connect()
        finally:
            n.publisher.close()


def test_a_device_id_that_cannot_be_a_topic_level_is_refused(tmp_path):
    with pytest.raises(NotifyError, match="reserved"):
        MqttNotifier(Outbox(tmp_path / "o.db"), _mqtt("mqtt://127.0.0.1:1"), "fleet")


# ---------------------------------------------------------------------------------------------------- webhook
def _webhook(ob, url: str) -> WebhookNotifier:
    cfg = WebhookConfig(url=url, secret=SECRET, timeout_s=2.0, retry_initial_s=0.1, retry_max_s=0.5)
    return WebhookNotifier(ob, cfg, DEVICE, poll_s=0.02)


def test_the_webhook_gets_only_alerts_signed_with_their_delivery_id(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    ob.register([WEBHOOK])
    _put_event_and_alert(ob)
    with Receiver() as recv:
        w = _webhook(ob, recv.url)
        w.start()
        try:
            assert wait_for(w.drained, 10)
        finally:
            w.stop()
        posts = recv.snapshot()
    assert len(posts) == 1 and verify(SECRET, posts[0].headers, posts[0].body)
    assert posts[0].headers[DELIVERY_HEADER] == f"alert/{DEVICE}/2"
    assert posts[0].body == payloads.alert_json(note(Record(2, "alert", T0, _alert_staged().body, None), DEVICE))
    assert ob.mark(WEBHOOK) == 3 and ob.stats()["depth"] == 0


def test_the_webhook_holds_an_alert_through_an_outage_and_delivers_it_once(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    ob.register([WEBHOOK])
    _put_event_and_alert(ob)
    recv = Receiver()
    w = _webhook(ob, recv.url)
    w.start()
    try:
        time.sleep(1.0)
        assert ob.mark(WEBHOOK) == 1  # the event before the alert is settled; the alert is not
        recv.start()
        assert wait_for(w.drained, 10)
    finally:
        w.stop()
        recv.stop()
    assert [p.headers[DELIVERY_HEADER] for p in recv.snapshot()] == [f"alert/{DEVICE}/2"]


def test_a_receiver_that_refuses_stops_the_webhook_and_its_alerts_stay(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    ob.register([WEBHOOK])
    _put_event_and_alert(ob)
    with Receiver(status=401) as recv:
        w = _webhook(ob, recv.url)
        w.start()
        try:
            assert wait_for(lambda: w.failed is not None, 10)
        finally:
            w.stop()
    assert "HTTP 401" in str(w.failed) and w.drained()  # failed counts as done for a finite run's wait
    assert ob.mark(WEBHOOK) == 1 and ob.stats()["depth"] == 2
