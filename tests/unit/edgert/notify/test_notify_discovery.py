"""Home Assistant discovery: every config validates against the schema kept beside this test, and its templates,
rendered the way Home Assistant renders them (Jinja with value and value_json), react to the right notes only."""
from __future__ import annotations

import json
from pathlib import Path

import jinja2
import jsonschema
import pytest

from edgert import labels
from edgert.errors import NotifyError
from edgert.notify import payloads as p
from edgert.notify.config import DiscoveryConfig
from edgert.notify.discovery import discovery_messages, node_id, removal_messages, safe_id
from edgert.notify.topics import Topics

SCHEMA = json.loads((Path(__file__).parent / "ha_discovery.schema.json").read_text())
TOPIC_RE = r"^homeassistant/(binary_sensor|sensor|event)/([A-Za-z0-9_-]+)/([A-Za-z0-9_-]+)/config$"
ALL_LABELS = list(labels.scoring(calibrated=False).labels)
T = Topics("edgert")


def validate(topic: str, payload: bytes) -> dict:
    """The config as a dict once it passed the schema for the component its topic names."""
    import re

    m = re.match(TOPIC_RE, topic)
    assert m, f"{topic} is not a discovery config topic"
    cfg = json.loads(payload)
    jsonschema.Draft202012Validator(SCHEMA).validate({m.group(1): cfg})
    return cfg


def render(template: str, note: bytes) -> str:
    return jinja2.Environment().from_string(template).render(value=note.decode(), value_json=json.loads(note))


def messages(device="dev-1", **cfg):
    return discovery_messages(device, T, DiscoveryConfig(**cfg), availability=[T.status(device), T.bridge_status()],
                              all_labels=ALL_LABELS, sw_version="1.2.3")


def note(label="scream", phase="start"):
    return p.event_json(p.EventNote(device_id="dev-1", event_id="e" * 32, phase=phase, label=label, score=0.9,
                                    classes=(), start_ns=1, end_ns=None if phase == "start" else 2, lat=None,
                                    lon=None, verification="agree" if phase == "verified" else "none"))


def test_every_config_validates_against_the_schema():
    msgs = messages()
    assert len(msgs) == len(labels.distress_labels()) + 2
    for topic, payload in msgs:
        validate(topic, payload)


def test_the_schema_rejects_what_home_assistant_would_reject():
    topic, payload = next(m for m in messages() if "/event/" in m[0])
    cfg = json.loads(payload)
    for broken in ({k: v for k, v in cfg.items() if k != "event_types"},               # event_types is required
                   {**cfg, "availability_mode": "most"},
                   {**cfg, "availability_topic": "x/y"},                             # not with a list
                   {**cfg, "device": {"name": "no identifiers"}},
                   {**cfg, "unique_id": "has.dot"},
                   {**cfg, "state_topic": "edgert/+/event"},
                   {**cfg, "off_delay": 5}):                                         # not an event option
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator(SCHEMA).validate({"event": broken})


def test_one_binary_sensor_per_configured_label_turns_on_only_at_a_start_of_its_label():
    msgs = messages(labels=["scream", "siren"], on_s=12.4)
    sensors = {t: validate(t, b) for t, b in msgs if "/binary_sensor/" in t}
    assert sorted(sensors) == ["homeassistant/binary_sensor/edgert_dev-1/scream/config",
                               "homeassistant/binary_sensor/edgert_dev-1/siren/config"]
    scream = sensors["homeassistant/binary_sensor/edgert_dev-1/scream/config"]
    assert scream["off_delay"] == 12 and scream["state_topic"] == "edgert/dev-1/event"
    assert render(scream["value_template"], note("scream")) == scream["payload_on"] == "ON"
    # Home Assistant ignores an empty rendering: these leave the sensor as it is (off_delay turns it off)
    assert render(scream["value_template"], note("scream", "end")) == ""
    assert render(scream["value_template"], note("scream", "verified")) == ""
    assert render(scream["value_template"], note("siren")) == ""


def test_the_sensor_shows_the_last_label_with_the_note_as_attributes():
    cfg = next(validate(t, b) for t, b in messages() if "/sensor/" in t)
    assert render(cfg["value_template"], note("siren")) == "siren"
    assert render(cfg["value_template"], note("siren", "verified")) == "siren"  # its attributes: the verdict
    assert cfg["json_attributes_topic"] == cfg["state_topic"] == "edgert/dev-1/event"


def test_the_event_entity_fires_once_per_event_with_the_label_as_event_type():
    cfg = next(validate(t, b) for t, b in messages() if "/event/" in t)
    assert cfg["event_types"] == ALL_LABELS
    fired = render(cfg["value_template"], note("gunshot"))
    assert json.loads(fired)["event_type"] == "gunshot" and "gunshot" in cfg["event_types"]
    assert render(cfg["value_template"], note("gunshot", "end")) == ""
    assert render(cfg["value_template"], note("gunshot", "verified")) == ""


def test_entities_share_one_device_and_availability_needs_every_status_topic():
    cfgs = [json.loads(b) for _, b in messages()]
    assert all(c["device"] == cfgs[0]["device"] for c in cfgs)
    assert cfgs[0]["device"]["identifiers"] == ["edgert_dev-1"] and cfgs[0]["device"]["sw_version"] == "1.2.3"
    assert len({c["unique_id"] for c in cfgs}) == len(cfgs)
    for c in cfgs:
        assert c["availability_mode"] == "all"
        assert [a["topic"] for a in c["availability"]] == ["edgert/dev-1/status", "edgert/bridge/status"]
        for a, status in zip(c["availability"], (p.status_json(p.StatusNote("dev-1", True, 1)), p.bridge_json(True))):
            assert render(a["value_template"], status) == a["payload_available"]


def test_device_ids_with_characters_home_assistant_refuses_get_distinct_safe_ids():
    assert safe_id("dev-1_a") == "dev-1_a"
    assert node_id("a.b").startswith("edgert_a_b_") and node_id("a.b") != node_id("a_b") != node_id("a:b")
    for topic, payload in messages("site.mic:1"):
        assert validate(topic, payload)["state_topic"] == "edgert/site.mic:1/event"


def test_removal_empties_the_same_topics():
    removal = removal_messages("dev-1", T, DiscoveryConfig())
    assert [t for t, _ in removal] == [t for t, _ in messages()]
    assert all(b == b"" for _, b in removal)


def test_discovery_needs_an_availability_topic():
    with pytest.raises(NotifyError, match="availability"):
        discovery_messages("dev-1", T, DiscoveryConfig(), availability=[], all_labels=ALL_LABELS)
