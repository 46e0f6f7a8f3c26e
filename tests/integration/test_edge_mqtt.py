"""`python -m edge_rt run --mqtt/--webhook` end to end: real synth: edges publishing to a real Mosquitto on a free
loopback port and POSTing to a local HTTP server, through broker and receiver outages, alone and beside the cloud."""
from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import jsonschema
import paho.mqtt.client as paho
from http_receiver import Receiver
from mosquitto import Collector, Mosquitto, free_port
from paho.mqtt.enums import CallbackAPIVersion

from edge_rt.notify import note
from edge_rt.outbox import CLOUD, Outbox
from edgert.notify import payloads
from edgert.notify.webhook import DELIVERY_HEADER, verify
from support import REPO, ServerProcess, add_device, edge_run, wait_for

DEVICE = "home-1"
PREFIX = "edgert"
EVENT, ALERT, STATUS = (f"{PREFIX}/{DEVICE}/{x}" for x in ("event", "alert", "status"))
SCHEMA = json.loads((REPO / "tests/unit/edgert/notify/ha_discovery.schema.json").read_text())
DISCOVERY_RE = re.compile(r"^homeassistant/(binary_sensor|sensor|event)/edgert_home-1/([A-Za-z0-9_-]+)/config$")
EVENT_KEYS = {"v", "type", "phase", "event_type", "id", "device", "label", "score", "classes", "start_ns", "start",
              "end_ns", "end", "duration_s", "position", "verification", "clip", "clip_dropped", "seq", "pk",
              "delivery"}
ALERT_KEYS = {"v", "type", "kind", "rule", "labels", "device", "start_ns", "start", "end_ns", "end", "position",
              "device_count", "event_ids", "id", "seq", "delivery"}
# three glass-and-scream pairs: three distress alerts, ten seconds apart
THREE_ALERTS = "synth:dur=30,glass_break@3,scream@5,glass_break@12,scream@14,glass_break@23,scream@25"
SECRET = "hook-secret"


def _edge(source: str, spool: Path, *args: str, fast: bool = True, wait: bool = True, **env: str):
    return edge_run(source, spool, device_id=DEVICE, fast=fast, wait=wait, timeout=120, extra=args,
                    env={"EDGE_RT__NOTIFY__MQTT__RETRY_MAX_S": "1", **env})


def _ok(proc) -> str:
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


def _notes(messages) -> list[tuple[str, dict]]:
    return [(t, json.loads(p)) for t, p, _ in messages if t in (EVENT, ALERT)]


def _outbox(spool: Path) -> Outbox:
    return Outbox(spool / "outbox.db")


def test_events_arrive_once_each_on_their_topics_with_status_and_discovery_retained(tmp_path):
    with Mosquitto(tmp_path / "broker") as broker, Collector(broker.url, [f"{PREFIX}/#"]) as sub:
        out = _ok(_edge("synth:tour", tmp_path / "spool", "--mqtt", broker.url))
        st = _outbox(tmp_path / "spool").stats()
        last = st["next_seq"] - 1
        got = sub.wait_for(lambda m: len(_notes(m)) >= last)
        time.sleep(0.5)  # anything extra (a duplicate) would come now
        notes = _notes(sub.snapshot())
        with Collector(broker.url, [STATUS, "homeassistant/#"]) as late:  # retained: there for a late subscriber
            retained = late.wait_for(lambda m: sum(t.startswith("homeassistant/") for t, _, _ in m) >= 6
                                     and any(t == STATUS for t, _, _ in m))
    assert f"mqtt {broker.url}: " in out and st["depth"] == 0 and last >= 15
    assert sorted(d["seq"] for _, d in notes) == list(range(1, last + 1))  # every record once, none twice
    for topic, doc in notes:
        assert set(doc) == (EVENT_KEYS if doc["type"] == "event" else ALERT_KEYS)
        assert topic == (EVENT if doc["type"] == "event" else ALERT) and doc["device"] == DEVICE
        assert doc["pk"] is None if doc["type"] == "event" else doc["id"] is None  # no cloud row behind them
    phases = Counter((d["id"], d["phase"]) for _, d in notes if d["type"] == "event")
    assert set(phases.values()) == {1} and {p for _, p in phases} == {"start", "end"}
    assert len(phases) == 2 * len({i for i, _ in phases})  # each event: its start and its end
    assert any(d["type"] == "alert" and d["rule"] == "distress" for _, d in notes)
    # the status: online with the heartbeat's figures while running, retained offline after a clean stop
    online = [json.loads(p) for t, p, _ in got if t == STATUS]
    assert online and online[0]["state"] == "online" and "rtf" in online[0]["figures"]
    (payload, flag), = [(p, r) for t, p, r in retained if t == STATUS]
    assert flag and json.loads(payload)["state"] == "offline" and json.loads(payload)["backlog"] == 0
    configs = [(DISCOVERY_RE.match(t), json.loads(p), r) for t, p, r in retained if t.startswith("homeassistant/")]
    assert len(configs) == 6 and all(m and r for m, _, r in configs)  # 4 distress labels, a sensor, an event
    for m, cfg, _ in configs:
        jsonschema.Draft202012Validator(SCHEMA).validate({m.group(1): cfg})
        assert [a["topic"] for a in cfg["availability"]] == [STATUS] and cfg["state_topic"] == EVENT


def test_records_kept_while_no_broker_answers_are_published_later_as_the_shared_payloads_render_them(tmp_path):
    port = free_port()
    spool = tmp_path / "spool"
    out = _ok(_edge("synth:distress", spool, "--mqtt", f"mqtt://127.0.0.1:{port}", EDGE_RT__RUNTIME__GRACE_S="1"))
    assert "cannot be reached" in out  # not fatal: the records wait in the outbox
    ob = _outbox(spool)
    held = ob.pending(limit=1000)
    ob.close()
    assert len(held) >= 7 and held[0].seq == 1
    want = []
    for rec in held:
        n = note(rec, DEVICE)
        want.append((EVENT, payloads.event_json(n)) if isinstance(n, payloads.EventNote)
                    else (ALERT, payloads.alert_json(n)))
    with Mosquitto(tmp_path / "broker", port=port) as broker, Collector(broker.url, [f"{PREFIX}/+/event",
                                                                                   f"{PREFIX}/+/alert"]) as sub:
        _ok(_edge("synth:quiet", spool, "--mqtt", broker.url))  # the next run publishes what the last one kept
        sub.wait_for(lambda m: len(m) >= len(want))
        time.sleep(0.5)
        got = [(t, p) for t, p, _ in sub.snapshot()]
    assert got == want  # byte for byte, in seq order, once each
    assert _outbox(spool).stats()["depth"] == 0


class _SessionSubscriber:
    """A subscriber with a persistent session (clean_session False): the broker queues QoS 1 messages for it while
    it is away, so it misses nothing the broker took, whichever client reconnects first after a restart."""

    def __init__(self, port: int, topic: str):
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"session-sub-{port}", protocol=paho.MQTTv311,
                        clean_session=False)
        c.reconnect_delay_set(0.1, 1)
        c.on_connect = lambda cl, _u, _f, reason, _p: reason.is_failure or cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *_a: self.ready.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port, keepalive=5)
        c.loop_start()
        self.client = c
        assert self.ready.wait(10), "the session subscriber could not subscribe"

    def _on_message(self, _c, _u, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def notes(self) -> list[dict]:
        with self.lock:
            return [json.loads(p) for t, p in self.messages if t in (EVENT, ALERT)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_broker_stopped_for_20_s_mid_stream_loses_nothing(tmp_path):
    broker = Mosquitto(tmp_path / "broker")
    conf = broker.workdir / "mosquitto.conf"  # keep sessions across the restart (the subscriber's queue)
    conf.write_text(conf.read_text().replace("persistence false",
                                             f"persistence true\npersistence_location {broker.workdir}/"))
    broker.start()
    sub = _SessionSubscriber(broker.port, f"{PREFIX}/#")
    proc = None
    try:
        proc = _edge(THREE_ALERTS, tmp_path / "spool", "--mqtt", broker.url, fast=False, wait=False)
        assert wait_for(lambda: any(d["type"] == "event" for d in sub.notes()), 30), "no event before the outage"
        broker.stop()
        time.sleep(20)
        during = len(sub.notes())
        broker.start()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-4000:]
        last = _outbox(tmp_path / "spool").stats()["next_seq"] - 1
        assert wait_for(lambda: len({d["seq"] for d in sub.notes()}) >= last, 20)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        sub.close()
        broker.stop()
    seqs = [d["seq"] for d in sub.notes()]
    assert set(seqs) == set(range(1, last + 1)), f"missing {set(range(1, last + 1)) - set(seqs)}"
    assert during < last  # records were made while the broker was away, and published after
    assert _outbox(tmp_path / "spool").stats()["depth"] == 0
    alerts = {d["seq"] for d in sub.notes() if d["type"] == "alert"}
    assert len(alerts) == int(re.search(r"(\d+) alerts, window", err).group(1)) == 3
    print(f"\nedge --mqtt, broker down 20 s: {last} records, {during} received before the restart, "
          f"{len(seqs)} messages, lost {len(set(range(1, last + 1)) - set(seqs))}, "
          f"repeated {len(seqs) - len(set(seqs))}")


def test_a_wrong_broker_password_ends_the_run_at_once_with_one_line_naming_the_broker(tmp_path):
    with Mosquitto(tmp_path / "broker", users={"ha": "right-pw"}) as broker:
        bad = broker.url.replace("mqtt://", "mqtt://ha:wrong-pw@")
        t = time.monotonic()
        proc = _edge("synth:distress", tmp_path / "spool", "--mqtt", bad, fast=False)
        took = time.monotonic() - t
        good = broker.url.replace("mqtt://", "mqtt://ha:right-pw@")
        ok = _edge("synth:distress", tmp_path / "spool2", "--mqtt", good)
    assert proc.returncode != 0 and took < 30
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"error: mqtt://127\.0\.0\.1:{broker.port} refused the connection.*", last), last
    assert "Traceback" not in proc.stderr and "wrong-pw" not in proc.stderr
    assert "source synth:" not in proc.stderr  # it never started listening
    assert "0 waiting" in _ok(ok)  # the right password drains


def test_the_webhook_gets_every_alert_signed_across_a_10_s_outage(tmp_path):
    recv = Receiver().start()
    try:
        proc = _edge(THREE_ALERTS, tmp_path / "spool", "--webhook", recv.url, fast=False, wait=False,
                     EDGE_RT__NOTIFY__WEBHOOK__SECRET=SECRET, EDGE_RT__NOTIFY__WEBHOOK__RETRY_MAX_S="2")
        recv.wait_for(lambda p: len(p) >= 1, 40)
        recv.stop()
        time.sleep(10)  # the second alert comes while nobody answers
        assert len(recv.snapshot()) == 1
        recv.start()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-4000:]
        posts = recv.wait_for(lambda p: len(p) >= 3, 20)
    finally:
        recv.stop()
    assert int(re.search(r"(\d+) alerts, window", err).group(1)) == 3  # the pipeline's own count
    ids = [p.headers[DELIVERY_HEADER] for p in posts]
    assert len(set(ids)) == 3 and all(re.fullmatch(rf"alert/{DEVICE}/\d+", i) for i in ids)
    for p in posts:
        assert verify(SECRET, p.headers, p.body), p.headers
        doc = json.loads(p.body)
        assert set(doc) == ALERT_KEYS and doc["delivery"] == p.headers[DELIVERY_HEADER] and doc["kind"] == "device"
    assert _outbox(tmp_path / "spool").stats()["depth"] == 0


def test_with_the_cloud_and_mqtt_the_outbox_drains_for_both(tmp_path):
    db = tmp_path / "cloud.db"
    url = f"sqlite:///{db}"
    server = ServerProcess(url, log_path=tmp_path / "serve.log")
    server.start()
    try:
        token = add_device(url, DEVICE)
        with Mosquitto(tmp_path / "broker") as broker, Collector(broker.url, [f"{PREFIX}/#"]) as sub:
            out = _ok(edge_run("synth:distress", tmp_path / "spool", cloud=server.target, token=token,
                               device_id=DEVICE, extra=("--mqtt", broker.url), timeout=120))
            ob = _outbox(tmp_path / "spool")
            st, marks = ob.stats(), {c: ob.mark(c) for c in (CLOUD, "mqtt")}
            last = st["next_seq"] - 1
            sub.wait_for(lambda m: len(_notes(m)) >= last)
    finally:
        server.terminate()
    assert "cloud 127.0.0.1" in out and f"mqtt {broker.url}" in out
    assert st["depth"] == 0 and marks == {CLOUD: last, "mqtt": last}
    with sqlite3.connect(str(db)) as c:
        stored = c.execute("SELECT COUNT(*) FROM events WHERE device_id = ?", (DEVICE,)).fetchone()[0]
    assert stored == sum(1 for _, d in _notes(sub.snapshot()) if d["type"] == "event" and d["phase"] == "start")
