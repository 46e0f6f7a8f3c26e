"""The JSON of every outbound notification: the typed notes the edge and the cloud build, and the one function per
note that renders it, so both sides publish byte-identical messages for the same event.

Rendering is compact, key-sorted UTF-8. Scores are rounded to SCORE_DIGITS places: the cloud reads them back from a
FLOAT column (single precision on MySQL), and the rounding makes its figure the edge's again.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Optional, Union

from edgert.errors import NotifyError

SCHEMA_VERSION = 1
SCORE_DIGITS = 4
# An event's notes: its start, its end, and (the cloud only, which verifies) "verified" once its verification is
# over, which usually comes after the end note said "pending".
PHASES = ("start", "end", "verified")
VERIFICATION_STATES = ("none", "pending", "agree", "disagree", "failed", "skipped")
FINAL_VERIFICATION_STATES = ("agree", "disagree", "failed", "skipped")
ALERT_KINDS = ("device", "fleet")


@dataclass(frozen=True)
class ClipRef:
    id: str                      # the clip's key: the event's pk on the cloud, "DEVICE/EVENT_ID" where no pk exists
    url: Optional[str] = None    # where a person can listen to it (the dashboard's event page), when known
    format: str = ""
    sample_rate: int = 0


@dataclass(frozen=True)
class EventNote:
    device_id: str
    event_id: str
    phase: str                   # "start" | "end" | "verified"
    label: str
    score: float
    classes: tuple[tuple[str, float], ...]
    start_ns: int
    end_ns: Optional[int]
    lat: Optional[float]
    lon: Optional[float]
    seq: Optional[int] = None    # the outbox seq of the record behind this note
    pk: Optional[int] = None     # the cloud's row id of the event; None on the edge
    verification: str = "none"   # none | pending | agree | disagree | failed | skipped
    verified_labels: tuple[str, ...] = ()
    clip: Optional[ClipRef] = None
    clip_dropped: str = ""


@dataclass(frozen=True)
class AlertNote:
    kind: str                    # "device" | "fleet"
    rule: str
    labels: tuple[str, ...]
    device_id: Optional[str]
    start_ns: int
    end_ns: int
    lat: Optional[float]
    lon: Optional[float]
    device_count: int = 1
    event_ids: tuple[str, ...] = ()
    alert_id: Optional[int] = None  # the cloud's alert row id
    seq: Optional[int] = None       # the outbox seq of a device alert


@dataclass(frozen=True)
class StatusNote:
    device_id: str
    online: bool
    last_seen_ns: Optional[int]
    rtf: Optional[float] = None
    backlog: Optional[int] = None
    figures: Mapping[str, float] = field(default_factory=dict)


Note = Union[EventNote, AlertNote]


def iso_ns(ns: Optional[int]) -> Optional[str]:
    """Unix ns as ISO 8601 UTC with milliseconds and a Z: 1700000000123456789 -> '2023-11-14T22:13:20.123Z'."""
    if ns is None:
        return None
    ms = int(ns) // 1_000_000
    dt = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def _score(x: float) -> float:
    x = float(x)
    if not math.isfinite(x):
        raise NotifyError(f"a score of {x!r} cannot be sent as JSON")
    return round(x, SCORE_DIGITS)


def _num(x: Optional[float]) -> Optional[float]:
    # NaN and inf are not JSON; a figure that is not a number is left out as null rather than breaking the note
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _position(lat: Optional[float], lon: Optional[float]) -> Optional[dict[str, float]]:
    if lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
        return None
    return {"lat": float(lat), "lon": float(lon)}


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def delivery_id(n: Note) -> str:
    """A stable id of one delivery, the same on every retry and on both sides, so a receiver can drop duplicates:
    "event/DEVICE/EVENT_ID/PHASE", "alert/DEVICE/SEQ" (an edge's device alert) or "alert/KIND/ALERT_ID" (cloud)."""
    if isinstance(n, EventNote):
        return f"event/{n.device_id}/{n.event_id}/{n.phase}"
    if n.kind == "device" and n.device_id is not None and n.seq is not None:
        return f"alert/{n.device_id}/{n.seq}"
    if n.alert_id is not None:
        return f"alert/{n.kind}/{n.alert_id}"
    raise NotifyError(f"a {n.kind} alert needs a device and seq, or an alert id, to be delivered once: {n!r}")


def event_dict(n: EventNote) -> dict[str, Any]:
    if n.phase not in PHASES:
        raise NotifyError(f"event phase must be one of {PHASES}, got {n.phase!r}")
    if n.verification not in VERIFICATION_STATES:
        raise NotifyError(f"verification state must be one of {VERIFICATION_STATES}, got {n.verification!r}")
    if n.phase != "start" and n.end_ns is None:
        raise NotifyError(f"the {n.phase} note of event {n.event_id} has no end_ns")
    if n.phase == "verified" and n.verification not in FINAL_VERIFICATION_STATES:
        raise NotifyError(f"the verified note of event {n.event_id} needs a finished verification "
                          f"{FINAL_VERIFICATION_STATES}, got {n.verification!r}")
    end_ns = None if n.phase == "start" else n.end_ns
    clip = None if n.clip is None else {"id": n.clip.id, "url": n.clip.url, "format": n.clip.format,
                                        "sample_rate": int(n.clip.sample_rate)}
    return {
        "v": SCHEMA_VERSION, "type": "event", "phase": n.phase,
        "event_type": n.label,  # Home Assistant's MQTT event entity takes the event's type from this key
        "id": n.event_id, "device": n.device_id, "label": n.label, "score": _score(n.score),
        "classes": [{"name": str(name), "score": _score(s)} for name, s in n.classes],
        "start_ns": int(n.start_ns), "start": iso_ns(n.start_ns),
        "end_ns": end_ns, "end": iso_ns(end_ns),
        "duration_s": None if end_ns is None else round((end_ns - n.start_ns) / 1e9, 3),
        "position": _position(n.lat, n.lon),
        "verification": {"state": n.verification, "labels": list(n.verified_labels)},
        "clip": clip, "clip_dropped": n.clip_dropped or "",
        "seq": n.seq, "pk": n.pk, "delivery": delivery_id(n),
    }


def alert_dict(n: AlertNote) -> dict[str, Any]:
    if n.kind not in ALERT_KINDS:
        raise NotifyError(f"alert kind must be one of {ALERT_KINDS}, got {n.kind!r}")
    return {
        "v": SCHEMA_VERSION, "type": "alert", "kind": n.kind, "rule": n.rule, "labels": list(n.labels),
        "device": n.device_id, "start_ns": int(n.start_ns), "start": iso_ns(n.start_ns),
        "end_ns": int(n.end_ns), "end": iso_ns(n.end_ns), "position": _position(n.lat, n.lon),
        "device_count": int(n.device_count), "event_ids": list(n.event_ids), "id": n.alert_id, "seq": n.seq,
        "delivery": delivery_id(n),
    }


def status_dict(n: StatusNote) -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION, "type": "status", "device": n.device_id, "state": "online" if n.online else "offline",
        "last_seen_ns": n.last_seen_ns, "last_seen": iso_ns(n.last_seen_ns), "rtf": _num(n.rtf),
        "backlog": None if n.backlog is None else int(n.backlog),
        "figures": {str(k): float(v) for k, v in sorted(n.figures.items()) if _figure(v)},
    }


def _figure(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def bridge_json(online: bool) -> bytes:
    """The bridge's own retained status (its will says offline). It carries `state` like a device's status, so
    Home Assistant reads both availability topics with one template."""
    return _dump({"v": SCHEMA_VERSION, "type": "bridge", "state": "online" if online else "offline"})


def event_json(n: EventNote) -> bytes:
    return _dump(event_dict(n))


def alert_json(n: AlertNote) -> bytes:
    return _dump(alert_dict(n))


def status_json(n: StatusNote) -> bytes:
    return _dump(status_dict(n))
