"""The JSON of events, alerts and status: exact bytes for known notes (the documented format), and the checks that
keep a malformed note from being sent."""
from __future__ import annotations

import json

import pytest

from edgert.errors import NotifyError
from edgert.notify import payloads as p

START_NS = 1_700_000_000_123_456_789
END_NS = START_NS + 2_500_000_000

EDGE_START = p.EventNote(device_id="dev-1", event_id="0123456789abcdef0123456789abcdef", phase="start",
                         label="glass_break", score=0.87654321, classes=(("Glass", 0.81234567), ("Shatter", 0.5)),
                         start_ns=START_NS, end_ns=None, lat=52.52, lon=13.405, seq=7)


def test_an_edge_start_note_renders_as_documented():
    assert p.event_json(EDGE_START) == (
        b'{"classes":[{"name":"Glass","score":0.8123},{"name":"Shatter","score":0.5}],"clip":null,"clip_dropped":"",'
        b'"delivery":"event/dev-1/0123456789abcdef0123456789abcdef/start","device":"dev-1","duration_s":null,'
        b'"end":null,"end_ns":null,"event_type":"glass_break","id":"0123456789abcdef0123456789abcdef",'
        b'"label":"glass_break","phase":"start","pk":null,"position":{"lat":52.52,"lon":13.405},"score":0.8765,'
        b'"seq":7,"start":"2023-11-14T22:13:20.123Z","start_ns":1700000000123456789,"type":"event","v":1,'
        b'"verification":{"labels":[],"state":"none"}}')


def test_a_cloud_end_note_carries_verification_clip_and_duration():
    n = p.EventNote(device_id="dev-1", event_id="0123456789abcdef0123456789abcdef", phase="end", label="scream",
                    score=0.9, classes=(), start_ns=START_NS, end_ns=END_NS, lat=None, lon=None, seq=9, pk=42,
                    verification="agree", verified_labels=("scream",),
                    clip=p.ClipRef(id="42", url="http://dash:8050/event/42", format="opus", sample_rate=16000))
    d = json.loads(p.event_json(n))
    assert d["end_ns"] == END_NS and d["end"] == "2023-11-14T22:13:22.623Z" and d["duration_s"] == 2.5
    assert d["verification"] == {"state": "agree", "labels": ["scream"]}
    assert d["clip"] == {"id": "42", "url": "http://dash:8050/event/42", "format": "opus", "sample_rate": 16000}
    assert d["position"] is None and d["pk"] == 42 and d["event_type"] == "scream"
    assert d["delivery"] == "event/dev-1/0123456789abcdef0123456789abcdef/end"


def test_a_verified_note_is_the_events_end_with_its_verdict_and_a_delivery_id_of_its_own():
    end = p.EventNote(device_id="dev-1", event_id="0123456789abcdef0123456789abcdef", phase="end", label="scream",
                      score=0.9, classes=(), start_ns=START_NS, end_ns=END_NS, lat=None, lon=None, seq=9, pk=42,
                      verification="pending")
    verified = p.EventNote(**{**end.__dict__, "phase": "verified", "verification": "disagree",
                              "verified_labels": ("shout",)})
    a, b = json.loads(p.event_json(end)), json.loads(p.event_json(verified))
    assert set(a) == set(b)                            # the same shape: only what changed differs
    assert {k for k in a if a[k] != b[k]} == {"phase", "verification", "delivery"}
    assert b["verification"] == {"state": "disagree", "labels": ["shout"]} and b["end_ns"] == END_NS
    assert b["delivery"] == "event/dev-1/0123456789abcdef0123456789abcdef/verified"


def test_a_start_note_never_shows_an_end_even_if_one_is_known():
    d = json.loads(p.event_json(EDGE_START.__class__(**{**EDGE_START.__dict__, "end_ns": END_NS})))
    assert d["end_ns"] is None and d["duration_s"] is None


def test_rendering_is_compact_sorted_and_the_same_for_equal_notes():
    a, b = p.event_json(EDGE_START), p.event_json(p.EventNote(**EDGE_START.__dict__))
    assert a == b
    assert b" " not in a.replace(b"glass break", b"")
    assert list(json.loads(a)) == sorted(json.loads(a))


def test_scores_read_back_from_a_single_precision_column_render_like_the_edges():
    import numpy as np

    f32 = float(np.float32(EDGE_START.score))
    assert f32 != EDGE_START.score
    assert p.event_json(EDGE_START) == p.event_json(p.EventNote(**{**EDGE_START.__dict__, "score": f32}))


@pytest.mark.parametrize("change, match", [
    ({"phase": "middle"}, "phase"),
    ({"verification": "maybe"}, "verification"),
    ({"phase": "end"}, "end_ns"),
    ({"phase": "verified", "end_ns": END_NS, "verification": "pending"}, "finished verification"),
    ({"phase": "verified", "verification": "agree"}, "end_ns"),
    ({"score": float("nan")}, "score"),
])
def test_a_malformed_event_note_is_refused(change, match):
    with pytest.raises(NotifyError, match=match):
        p.event_json(p.EventNote(**{**EDGE_START.__dict__, **change}))


def test_alerts_render_as_documented_with_stable_delivery_ids():
    edge = p.AlertNote(kind="device", rule="distress", labels=("scream", "glass_break"), device_id="dev-1",
                       start_ns=START_NS, end_ns=END_NS, lat=1.5, lon=2.5, event_ids=("a" * 32, "b" * 32), seq=11)
    assert p.alert_json(edge) == (
        b'{"delivery":"alert/dev-1/11","device":"dev-1","device_count":1,"end":"2023-11-14T22:13:22.623Z",'
        b'"end_ns":1700000002623456789,"event_ids":["' + b"a" * 32 + b'","' + b"b" * 32 + b'"],"id":null,'
        b'"kind":"device","labels":["scream","glass_break"],"position":{"lat":1.5,"lon":2.5},"rule":"distress",'
        b'"seq":11,"start":"2023-11-14T22:13:20.123Z","start_ns":1700000000123456789,"type":"alert","v":1}')
    fleet = p.AlertNote(kind="fleet", rule="fleet", labels=("gunshot",), device_id=None, start_ns=START_NS,
                        end_ns=END_NS, lat=None, lon=None, device_count=3, alert_id=5)
    d = json.loads(p.alert_json(fleet))
    assert d["delivery"] == "alert/fleet/5" and d["device"] is None and d["device_count"] == 3
    assert p.delivery_id(p.AlertNote(**{**edge.__dict__, "alert_id": 9})) == "alert/dev-1/11"  # the edge's id wins


def test_an_alert_without_an_identity_or_with_an_unknown_kind_is_refused():
    with pytest.raises(NotifyError, match="delivered once"):
        p.delivery_id(p.AlertNote(kind="fleet", rule="fleet", labels=(), device_id=None, start_ns=0, end_ns=0,
                                  lat=None, lon=None))
    with pytest.raises(NotifyError, match="kind"):
        p.alert_json(p.AlertNote(kind="room", rule="r", labels=(), device_id=None, start_ns=0, end_ns=0, lat=None,
                                 lon=None, alert_id=1))


def test_status_renders_state_and_drops_figures_that_are_not_numbers():
    n = p.StatusNote(device_id="dev-1", online=True, last_seen_ns=START_NS, rtf=0.05, backlog=3,
                     figures={"rtf": 0.05, "cpu": float("nan"), "flag": True, "depth": 3})
    assert p.status_json(n) == (
        b'{"backlog":3,"device":"dev-1","figures":{"depth":3.0,"rtf":0.05},"last_seen":"2023-11-14T22:13:20.123Z",'
        b'"last_seen_ns":1700000000123456789,"rtf":0.05,"state":"online","type":"status","v":1}')
    off = json.loads(p.status_json(p.StatusNote(device_id="d", online=False, last_seen_ns=None)))
    assert off["state"] == "offline" and off["last_seen"] is None and off["rtf"] is None and off["figures"] == {}


def test_bridge_status_has_the_state_key_availability_reads():
    assert json.loads(p.bridge_json(True))["state"] == "online"
    assert json.loads(p.bridge_json(False))["state"] == "offline"


def test_iso_time_is_utc_with_milliseconds():
    assert p.iso_ns(0) == "1970-01-01T00:00:00.000Z"
    assert p.iso_ns(1_999_999) == "1970-01-01T00:00:00.001Z"
    assert p.iso_ns(None) is None


def test_the_readmes_event_examples_are_what_payloads_renders():
    """Every event note the README shows, rebuilt from its own fields, renders byte for byte as printed there (so
    the examples are made by payloads, not written by hand)."""
    from pathlib import Path

    readme = (Path(__file__).parents[4] / "README.md").read_text()
    shown = [line for line in readme.splitlines() if line.startswith('{"classes":')]
    assert {json.loads(line)["phase"] for line in shown} == set(p.PHASES)
    for line in shown:
        d = json.loads(line)
        clip = None if d["clip"] is None else p.ClipRef(**d["clip"])
        pos = d["position"] or {"lat": None, "lon": None}
        n = p.EventNote(device_id=d["device"], event_id=d["id"], phase=d["phase"], label=d["label"], score=d["score"],
                        classes=tuple((c["name"], c["score"]) for c in d["classes"]), start_ns=d["start_ns"],
                        end_ns=d["end_ns"], lat=pos["lat"], lon=pos["lon"], seq=d["seq"], pk=d["pk"],
                        verification=d["verification"]["state"], verified_labels=tuple(d["verification"]["labels"]),
                        clip=clip, clip_dropped=d["clip_dropped"])
        assert p.event_json(n).decode() == line
