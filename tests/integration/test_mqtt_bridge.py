"""The cloud's MQTT bridge end to end: real `synth:` edges stream to a real `serve`, the bridge (inside serve with
--mqtt, or on its own as `python -m cloud_svc mqtt`) publishes to a real Mosquitto, and a subscriber checks that
every stored event, alert and device status arrives on its topic once, in the documented JSON; through a broker
outage of 20 s and a restart of the bridge none is lost; a wrong broker password ends the command with one line."""
from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from http_receiver import Receiver
from mosquitto import Collector, Mosquitto

from edgert.notify.webhook import verify
from support import REPO, ServerProcess, add_device, cloud_cli, edge_run, env_with_repo

SCHEMA = json.loads((Path(__file__).parents[1] / "unit/edgert/notify/ha_discovery.schema.json").read_text())
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
EVENT_KEYS = {"v", "type", "phase", "event_type", "id", "device", "label", "score", "classes", "start_ns", "start",
              "end_ns", "end", "duration_s", "position", "verification", "clip", "clip_dropped", "seq", "pk",
              "delivery"}
ALERT_KEYS = {"v", "type", "kind", "rule", "labels", "device", "start_ns", "start", "end_ns", "end", "position",
              "device_count", "event_ids", "id", "seq", "delivery"}
STATUS_KEYS = {"v", "type", "device", "state", "last_seen_ns", "last_seen", "rtf", "backlog", "figures"}
HERE = (52.5200, 13.4050)


def stored(srv: ServerProcess) -> list[dict]:
    return json.loads(cloud_cli("events", "--server", srv.target, "--json").stdout)


def expected_deliveries(events: list[dict]) -> set[str]:
    """The delivery id of every note the stored events call for: a start each, and an end for the ended ones."""
    out = {f"event/{e['device_id']}/{e['event_id']}/start" for e in events}
    return out | {f"event/{e['device_id']}/{e['event_id']}/end" for e in events if e["end_ns"] is not None}


def deliveries(c: Collector) -> list[str]:
    return [json.loads(p)["delivery"] for t, p, _ in c.snapshot() if t.endswith("/event")]


def check_event_note(n: dict, e: dict) -> None:
    """A note against the stored event it describes, and the documented shape."""
    assert set(n) == EVENT_KEYS and n["v"] == 1 and n["type"] == "event"
    assert (n["id"], n["device"], n["label"], n["event_type"], n["pk"]) == (
        e["event_id"], e["device_id"], e["label"], e["label"], e["id"])
    assert n["start_ns"] == e["start_ns"] and ISO.match(n["start"])
    assert n["position"] == {"lat": e["lat"], "lon": e["lon"]}
    assert n["verification"]["state"] in ("none", "pending", "agree", "disagree", "failed", "skipped")
    assert all(set(c) == {"name", "score"} for c in n["classes"]) and n["classes"]
    if n["phase"] == "start":
        assert n["end_ns"] is None and n["clip"] is None and n["seq"] == e["seq"]
    else:
        assert n["end_ns"] == e["end_ns"] and ISO.match(n["end"]) and n["duration_s"] > 0
        assert n["clip"] is None or (n["clip"]["id"] == str(e["id"]) and n["clip"]["format"] == "flac"
                                     and n["clip"]["url"] == f"http://dash:8050/event/{e['id']}")


def start_bridge(db_url: str, broker: str, log: Path, *extra: str) -> subprocess.Popen:
    """`python -m cloud_svc mqtt` until it says what it bridges."""
    proc = subprocess.Popen([sys.executable, "-m", "cloud_svc", "-v", "mqtt", "--db", db_url, "--broker", broker,
                             *extra], cwd=REPO, env=env_with_repo(), stdout=subprocess.PIPE,
                            stderr=open(log, "ab"), text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("bridging "), f"{line!r}; see {log}"
    return proc


def test_events_alerts_and_status_of_real_edges_arrive_once_each_in_the_documented_json(cloud_db, tmp_path):
    broker = Mosquitto(tmp_path / "broker").start()
    notify_yaml = tmp_path / "notify.yaml"
    with Receiver() as hook:
        notify_yaml.write_text(json.dumps({"notify": {
            "mqtt": {"link_base": "http://dash:8050", "retry_max_s": 1.0},
            "webhook": {"url": hook.url, "secret": "hook-secret", "retry_max_s": 1.0}}}))
        srv = ServerProcess(cloud_db, clips=str(tmp_path / "clips"), log_path=tmp_path / "server.log",
                            extra=("--mqtt", broker.url, "--config", str(notify_yaml)))
        c = Collector(broker.url, ["edgert/#", "homeassistant/#"])
        srv.start()
        try:
            tokens = {d: add_device(cloud_db, d) for d in ("yard-a", "yard-b")}
            # two devices side by side hear the same tour at the same time: device alerts and a fleet alert
            runs = [edge_run("synth:tour", tmp_path / d, cloud=srv.target, device_id=d, token=tokens[d],
                             lat=HERE[0], lon=HERE[1] + 0.0001 * i, wait=False) for i, d in enumerate(tokens)]
            for r in runs:
                out, err = r.communicate(timeout=120)
                assert r.returncode == 0, err
            events = stored(srv)
            assert {e["device_id"] for e in events} == set(tokens)
            want = expected_deliveries(events)
            c.wait_for(lambda m: want <= set(deliveries(c)), timeout=30)
            # the correlator links events once they settled: wait until the alerts stop changing
            deadline, alerts, since = time.monotonic() + 30, [], time.monotonic()
            while time.monotonic() < deadline:
                now = json.loads(cloud_cli("alerts", "--server", srv.target, "--json").stdout)
                if now != alerts:
                    alerts, since = now, time.monotonic()
                elif any(a["kind"] == "fleet" for a in alerts) and time.monotonic() - since > 3.0:
                    break
                time.sleep(0.5)
            assert any(a["kind"] == "fleet" for a in alerts), f"no fleet alert among {alerts}"
            c.wait_for(lambda m: len([1 for t, _, _ in m if t.endswith("/alert")]) >= len(alerts), timeout=20)
            hook.wait_for(lambda p: len(p) >= len(alerts), timeout=20)
            time.sleep(1.0)  # anything sent twice would have come by now
        finally:
            srv.terminate()
            c.close()
            broker.stop()
        posts = hook.snapshot()

    # every stored event's start and end note, once each, on its device's topic, matching what was stored
    got = deliveries(c)
    assert sorted(got) == sorted(want), "missing or repeated event notes"
    by_pk = {e["id"]: e for e in events}
    for t, p, retained in c.snapshot():
        if t.endswith("/event"):
            n = json.loads(p)
            assert t == f"edgert/{n['device']}/event" and not retained
            check_event_note(n, by_pk[n["pk"]])
    # alerts: the device alerts on the devices' topics, the fleet alert on the fleet topic, once each
    notes = [(t, json.loads(p)) for t, p, _ in c.snapshot() if t.endswith("/alert")]
    assert sorted(n["id"] for _, n in notes) == sorted(a["id"] for a in alerts)
    for t, n in notes:
        assert set(n) == ALERT_KEYS
        assert t == ("edgert/fleet/alert" if n["kind"] == "fleet" else f"edgert/{n['device']}/alert")
    assert any(t == "edgert/fleet/alert" and n["device_count"] == 2 for t, n in notes)
    # the webhook: the same alerts, signed
    assert sorted(json.loads(p.body)["id"] for p in posts) == sorted(a["id"] for a in alerts)
    assert all(verify("hook-secret", p.headers, p.body) for p in posts)
    # device status (retained) and Home Assistant discovery for both devices
    for d in tokens:
        states = c.json_on(f"edgert/{d}/status")
        assert states and all(set(s) == STATUS_KEYS for s in states) and states[-1]["state"] == "online"
        assert states[-1]["rtf"] is not None and states[-1]["backlog"] is not None
        configs = [(t, p) for t, p, _ in c.snapshot() if t.startswith("homeassistant/") and f"/edgert_{d}/" in t]
        assert {t.split("/")[1] for t, _ in configs} == {"binary_sensor", "sensor", "event"}
        for t, p in configs:
            jsonschema.Draft202012Validator(SCHEMA).validate({t.split("/")[1]: json.loads(p)})
    # online (said again every status_s while it runs), then offline from its clean stop
    states = [json.loads(p)["state"] for p, _ in c.on("edgert/bridge/status")]
    assert [k for k, _ in itertools.groupby(states)] == ["online", "offline"]


def test_no_event_is_lost_through_a_20_s_broker_outage_and_a_bridge_restart(tmp_path):
    db = f"sqlite:///{tmp_path / 'cloud.db'}"
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text(json.dumps({"notify": {"mqtt": {"retry_initial_s": 0.2, "retry_max_s": 1.0}}}))
    # persistence and a lasting session: the subscriber gets what was published while the broker restarted
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    c = Collector(broker.url, ["edgert/+/event"], client_id="outage-test", clean_session=False)
    srv = ServerProcess(db, clips=str(tmp_path / "clips"), log_path=tmp_path / "server.log")
    srv.start()
    bridge = start_bridge(db, broker.url, tmp_path / "bridge.log", "--config", str(cfg))
    try:
        tokens = {d: add_device(db, d) for d in ("a", "b", "c")}

        def run(device: str, scenario: str) -> None:  # an edge at full speed, to the end of its scenario
            r = edge_run(scenario, tmp_path / device, cloud=srv.target, device_id=device, token=tokens[device],
                         lat=HERE[0], lon=HERE[1])
            assert r.returncode == 0, r.stderr

        run("a", "synth:tour")
        want = expected_deliveries(stored(srv))
        c.wait_for(lambda m: want <= set(deliveries(c)), timeout=30)

        # edge b streams in real time (events at 3, 8, 13, 18 and 25 s) across a broker outage from 5 s to 25 s
        live = edge_run("synth:tour,seed=3", tmp_path / "b", cloud=srv.target, device_id="b", token=tokens["b"],
                        lat=HERE[0], lon=HERE[1], fast=False, wait=False)
        c.wait_for(lambda m: any(d.startswith("event/b/") for d in deliveries(c)), timeout=15)
        # the subscriber's PUBACKs of the last notes must reach the broker before it stops, or it delivers them
        # again after the restart (QoS 1 between broker and subscriber: not the bridge's doing)
        time.sleep(0.5)
        broker.stop()
        time.sleep(20.0)
        broker.start()
        _, err = live.communicate(timeout=60)
        assert live.returncode == 0, err
        want = expected_deliveries(stored(srv))
        c.wait_for(lambda m: want <= set(deliveries(c)), timeout=40)

        bridge.send_signal(signal.SIGTERM)                # the bridge stops; edge c streams meanwhile
        out, _ = bridge.communicate(timeout=30)
        assert bridge.returncode == 0 and "stopped:" in out
        run("c", "synth:distress")
        bridge = start_bridge(db, broker.url, tmp_path / "bridge.log", "--config", str(cfg))
        want = expected_deliveries(stored(srv))
        c.wait_for(lambda m: want <= set(deliveries(c)), timeout=30)
        time.sleep(1.0)
    finally:
        if bridge.poll() is None:
            bridge.send_signal(signal.SIGTERM)
            bridge.wait(30)
        srv.terminate()
        c.close()
        broker.stop()
    got = deliveries(c)
    assert set(got) == want, f"lost: {sorted(want - set(got))}"
    repeated = sorted({d for d in got if got.count(d) > 1})
    assert not repeated, f"sent more than once: {repeated}"
    assert "retrying" in (tmp_path / "bridge.log").read_text()  # it did notice the outage
    during = [d for d in got if d.startswith("event/b/")]
    assert len(during) >= 6, f"edge b's notes: {during}"  # several events were stored while the broker was away
    print(f"\ncloud bridge, broker down 20 s then bridge restarted: {len(want)} notes expected, {len(got)} received, "
          f"lost {len(want - set(got))}, repeated {len(repeated)}; {len(during)} of edge b's across the outage")


def test_a_wrong_broker_password_ends_the_bridge_and_serve_with_one_clear_line(tmp_path):
    db = f"sqlite:///{tmp_path / 'cloud.db'}"
    with Mosquitto(tmp_path / "broker", users={"edgert": "right"}) as broker:
        wrong = broker.url.replace("mqtt://", "mqtt://edgert:wrong@")
        r = cloud_cli("mqtt", "--db", db, "--broker", wrong, check=False)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert lines == [f"error: {broker.url} refused the connection: not authorized (the credentials of user "
                         "'edgert' were refused)"], r.stderr
        assert "wrong" not in r.stderr
        s = subprocess.run([sys.executable, "-m", "cloud_svc", "serve", "--db", db, "--listen", "127.0.0.1:0",
                            "--open-query", "--mqtt", broker.url, "--no-fleet"],
                           cwd=REPO, env=env_with_repo(), capture_output=True, text=True, timeout=60)
        assert s.returncode == 2 and "Traceback" not in s.stderr
        assert s.stderr.strip().splitlines()[-1] == (f"error: {broker.url} refused the connection: not authorized "
                                                     "(the credentials of an anonymous client were refused)")


@pytest.mark.parametrize("args, message", [
    ((), "nothing to publish to"),
    (("--broker", "http://x:1883"), "must start with mqtt:// or mqtts://"),
    (("--broker", "mqtt://127.0.0.1:1883", "--prefix", "a/#"), "prefix"),
])
def test_bad_bridge_settings_are_named_before_anything_runs(tmp_path, args, message):
    r = cloud_cli("mqtt", "--db", f"sqlite:///{tmp_path / 'c.db'}", *args, check=False)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
