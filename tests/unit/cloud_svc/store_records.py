"""Record builders shared by the store's tests: event starts and ends as a device sends them, and records."""
from __future__ import annotations

from cloud_svc.domain import ClipIn, EventIn, RecordIn

CLASSES = [("Glass", 0.8), ("Shatter", 0.4)]


def start(eid: str, label: str = "glass_break", t: int = 10**18, lat=52.5, lon=13.4) -> EventIn:
    return EventIn(eid, label, t, None, 0.6, CLASSES, lat, lon, "onnxruntime", "ab" * 32, 1.9)


def end(eid: str, label: str = "glass_break", t: int = 10**18, clip: ClipIn | None = None) -> EventIn:
    return EventIn(eid, label, t, t + 700_000_000, 0.9, [("Shatter", 0.9), ("Glass", 0.7)], 52.5, 13.4,
                   "onnxruntime", "ab" * 32, None, b"\x01\x02" * 1024, clip)


def rec(seq: int, kind: str, payload) -> RecordIn:
    return RecordIn(seq, 1_700_000_000_000_000_000 + seq, kind, payload)
