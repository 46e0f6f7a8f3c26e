"""Home Assistant MQTT discovery for one device: the retained config messages that make Home Assistant create its
entities (a binary_sensor per chosen label, a sensor with the last event's label, an event entity) without any
YAML on the Home Assistant side, and the empty messages that remove them again.

Every entity reads the device's event topic. Home Assistant drops a message whose value_template renders to
nothing, so the templates render only for the messages an entity cares about: a label's binary_sensor turns on
for a "start" of that label (and off_delay turns it off), the event entity fires once per event, at its start;
neither reacts to an "end" or to the cloud's "verified" note. The last-sound sensor takes every note of an event
(they carry its label), so its attributes show the latest: the verdict once the verified note came.
"""
from __future__ import annotations

import json
import re
import zlib
from typing import Any, Sequence

from edgert.errors import NotifyError
from edgert.notify.config import DiscoveryConfig
from edgert.notify.topics import Topics, check_device

# Home Assistant accepts only these characters in a discovery topic's node and object ids.
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MANUFACTURER = "edgert"
MODEL = "acoustic event detector"
ORIGIN = "edgert"
AVAILABLE, NOT_AVAILABLE = "online", "offline"


def safe_id(text: str) -> str:
    """`text` as a discovery id: unchanged when it only has [A-Za-z0-9_-], else with the rest replaced by '_' and a
    crc32 of the original appended, so "a.b" and "a_b" stay two devices."""
    clean = _ID_UNSAFE.sub("_", text)
    return clean if clean == text else f"{clean}_{zlib.crc32(text.encode()):08x}"


def node_id(device_id: str) -> str:
    return f"edgert_{safe_id(check_device(device_id))}"


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _label_name(label: str) -> str:
    return label.replace("_", " ").capitalize()


def _configs(device_id: str, topics: Topics, cfg: DiscoveryConfig, availability: Sequence[str],
             all_labels: Sequence[str], sw_version: str) -> list[tuple[str, dict[str, Any]]]:
    if not availability:
        raise NotifyError(f"discovery for device {device_id!r} needs at least one availability topic")
    node = node_id(device_id)
    state_topic = topics.event(device_id)
    device: dict[str, Any] = {"identifiers": [node], "name": f"edgert {device_id}", "manufacturer": MANUFACTURER,
                              "model": MODEL}
    if sw_version:
        device["sw_version"] = sw_version
    common: dict[str, Any] = {
        "device": device,
        "origin": {"name": ORIGIN, **({"sw_version": sw_version} if sw_version else {})},
        "availability": [{"topic": t, "value_template": "{{ value_json.state }}",
                          "payload_available": AVAILABLE, "payload_not_available": NOT_AVAILABLE}
                         for t in availability],
        "availability_mode": "all",  # the device's own status and, through the cloud, the bridge's
        "qos": 1,
        "state_topic": state_topic,
    }
    out: list[tuple[str, dict[str, Any]]] = []
    for label in cfg.labels:
        obj = safe_id(label)
        out.append((f"{cfg.prefix}/binary_sensor/{node}/{obj}/config", {
            **common, "name": _label_name(label), "unique_id": f"{node}_{obj}", "device_class": "sound",
            # json.dumps quotes the label as a Jinja string literal too
            "value_template": f"{{% if value_json.phase == 'start' and value_json.label == {json.dumps(label)} %}}"
                              "ON{% endif %}",
            "payload_on": "ON", "payload_off": "OFF",
            "off_delay": int(round(cfg.on_s)),
        }))
    out.append((f"{cfg.prefix}/sensor/{node}/last_event/config", {
        **common, "name": "Last sound", "unique_id": f"{node}_last_event", "icon": "mdi:waveform",
        "value_template": "{{ value_json.label }}",
        "json_attributes_topic": state_topic,
    }))
    out.append((f"{cfg.prefix}/event/{node}/sound/config", {
        **common, "name": "Sound event", "unique_id": f"{node}_sound", "icon": "mdi:ear-hearing",
        "event_types": list(all_labels),
        # the payload is the note itself (its event_type key is the label); an end note renders empty and is ignored
        "value_template": "{% if value_json.phase == 'start' %}{{ value }}{% endif %}",
    }))
    return out


def discovery_messages(device_id: str, topics: Topics, cfg: DiscoveryConfig, *, availability: Sequence[str],
                       all_labels: Sequence[str], sw_version: str = "") -> list[tuple[str, bytes]]:
    """(topic, payload) of every discovery config of one device; publish them retained."""
    return [(t, _dump(c)) for t, c in _configs(device_id, topics, cfg, availability, all_labels, sw_version)]


def removal_messages(device_id: str, topics: Topics, cfg: DiscoveryConfig) -> list[tuple[str, bytes]]:
    """The same config topics with empty payloads: published retained, they make Home Assistant remove the entities
    and clear the retained configs from the broker."""
    configs = _configs(device_id, topics, cfg, [topics.status(device_id)], list(cfg.labels) or ["none"], "")
    return [(t, b"") for t, _ in configs]
