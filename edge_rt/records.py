"""The record builder: what the detector found -> the `edgert.v1.Record` that the outbox stores as bytes and the
uplink sends as it is. The record's schema is the .proto's; nothing else on the edge spells it out.

The outbox gives each record its seq and created_ns (columns beside the bytes); the uplink stamps them on the
record when it sends it, and decides only how the clip travels (inline, or uploaded first and referenced).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from edge_rt.errors import EdgeRtError


class RecordsUnavailable(EdgeRtError):
    """The generated gRPC code (edgert.v1) is missing."""


def pb():
    """The generated `edgert.v1.ingest_pb2` module, or a clear error saying how to build it."""
    try:
        from edgert.v1 import ingest_pb2
    except ImportError as exc:
        raise RecordsUnavailable(f"the generated gRPC code is missing ({exc}): run `make setup` "
                                 "(or `python -m edgert.protos_build`)") from exc
    return ingest_pb2


@dataclass(frozen=True)
class Staged:
    """One record ready for the outbox: its kind, the serialized Record (no seq yet) and the clip, if any."""

    kind: str  # "event" | "event_end" | "alert"
    body: bytes
    clip: Optional[bytes] = None


@dataclass(frozen=True)
class ClipInfo:
    format: str
    sample_rate: int
    start_ns: int
    preroll_s: float


class RecordBuilder:
    """Builds the records of one device's detector output. Times are stream seconds, placed on the wall clock
    at `t0_ns` (the wall time of stream second 0)."""

    def __init__(self, *, backend: str, model_sha256: str, lat: Optional[float], lon: Optional[float], t0_ns: int):
        self.backend, self.model_sha256, self.lat, self.lon, self.t0_ns = backend, model_sha256, lat, lon, t0_ns
        pb()  # a missing build fails here, and the first event does not wait for the import

    def ns(self, stream_s: float) -> int:
        return self.t0_ns + int(round(stream_s * 1e9))

    def _event(self, ev, label: str, start_s: float, end_s: Optional[float], score: float, classes) -> Any:
        e = pb().Event(event_id=ev.event_id, label=label, start_ns=self.ns(start_s),
                       end_ns=self.ns(end_s) if end_s is not None else 0, score=round(float(score), 4),
                       backend=self.backend, model_sha256=self.model_sha256)
        for name, s in classes:
            e.classes.add(name=str(name), score=round(float(s), 4))
        if self.lat is not None and self.lon is not None:
            e.position.lat, e.position.lon = float(self.lat), float(self.lon)
        return e

    def started(self, ev, inference_ms: float) -> Staged:
        """An event started (sent at once, for latency)."""
        e = self._event(ev, ev.label, ev.start_s, None, ev.score, ev.classes)
        e.inference_ms = round(float(inference_ms), 3)
        return Staged("event", pb().Record(event=e).SerializeToString())

    def ended(self, ev, *, embedding: Optional[np.ndarray] = None, clip: Optional[bytes] = None,
              clip_info: Optional[ClipInfo] = None, clip_dropped: str = "") -> Staged:
        """The same event ended: final score and classes, its mean embedding, and its clip (or why there is none)."""
        e = self._event(ev, ev.label, ev.start_s, ev.end_s if ev.end_s is not None else ev.start_s, ev.score,
                        ev.classes)
        if embedding is not None:
            e.embedding_f16 = np.asarray(embedding).astype("<f2").tobytes()
        if clip_dropped:
            e.clip_dropped = clip_dropped
        if clip and clip_info is not None:
            e.clip.format, e.clip.sample_rate = clip_info.format, clip_info.sample_rate
            e.clip.start_ns, e.clip.preroll_s = clip_info.start_ns, clip_info.preroll_s
        return Staged("event_end", pb().Record(event_end=e).SerializeToString(), clip if clip else None)

    def alert(self, al) -> Staged:
        """A compound rule fired on the device."""
        a = pb().DeviceAlert(rule=al.rule, start_ns=self.ns(al.start_s), end_ns=self.ns(al.end_s))
        a.labels.extend(al.labels)
        a.event_ids.extend(al.event_ids)
        if self.lat is not None and self.lon is not None:
            a.position.lat, a.position.lon = float(self.lat), float(self.lon)
        return Staged("alert", pb().Record(alert=a).SerializeToString())


def parse(body: bytes):
    """Outbox bytes -> the `edgert.v1.Record` they hold."""
    return pb().Record.FromString(body)


def from_legacy(kind: str, body: dict) -> bytes:
    """A JSON body of the outbox format before typed records (edge_rt < 0.2) -> the serialized Record, so a spool
    written by an older edge migrates on open and nothing it holds is lost. Raises KeyError/TypeError/ValueError
    for a body that cannot be expressed."""
    p = pb()
    rec = p.Record()
    if kind in ("event", "event_end"):
        e = rec.event if kind == "event" else rec.event_end
        e.event_id, e.label, e.start_ns = str(body["event_id"]), str(body["label"]), int(body["start_ns"])
        e.end_ns = int(body.get("end_ns") or 0) if kind == "event_end" else 0
        e.score = float(body.get("score") or 0.0)
        for name, s in body.get("classes") or []:
            e.classes.add(name=str(name), score=float(s))
        if body.get("lat") is not None and body.get("lon") is not None:
            e.position.lat, e.position.lon = float(body["lat"]), float(body["lon"])
        e.backend, e.model_sha256 = str(body.get("backend") or ""), str(body.get("model_sha256") or "")
        e.inference_ms = float(body.get("inference_ms") or 0.0)
        if body.get("embedding_f16"):
            e.embedding_f16 = base64.b64decode(body["embedding_f16"])
        if body.get("clip_dropped"):
            e.clip_dropped = str(body["clip_dropped"])
        c = body.get("clip")
        if kind == "event_end" and c:
            e.clip.format, e.clip.sample_rate = str(c.get("format", "flac")), int(c.get("sample_rate", 0))
            e.clip.start_ns, e.clip.preroll_s = int(c.get("start_ns") or 0), float(c.get("preroll_s") or 0)
    elif kind == "alert":
        a = rec.alert
        a.rule, a.start_ns, a.end_ns = str(body["rule"]), int(body["start_ns"]), int(body["end_ns"])
        a.labels.extend(str(x) for x in body.get("labels") or [])
        a.event_ids.extend(str(x) for x in body.get("event_ids") or [])
        if body.get("lat") is not None and body.get("lon") is not None:
            a.position.lat, a.position.lon = float(body["lat"]), float(body["lon"])
    else:
        raise ValueError(f"unknown record kind {kind!r}")
    return rec.SerializeToString()
