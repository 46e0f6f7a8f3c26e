"""Proto <-> domain translation with validation: every problem is an InvalidMessage naming the field."""
from __future__ import annotations

import math
import re
from typing import Callable, NamedTuple, Optional

from cloud_svc.domain import (
    EMBEDDING_F16_BYTES,
    AlertIn,
    AlertView,
    BatchIn,
    BBox,
    ClipIn,
    DeviceView,
    EventFilter,
    EventIn,
    EventView,
    HeartbeatIn,
    Payload,
    RecordIn,
    RejectIn,
    Verified,
)
from cloud_svc.errors import ClipNotUploaded, InvalidMessage
from edgert.v1 import common_pb2, ingest_pb2, query_pb2

EVENT_ID_RE = re.compile(r"^[0-9a-f]{32}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
DEVICE_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
HEX_RE = re.compile(r"^[0-9a-f]{0,64}$")
CLIP_FORMATS = frozenset({"flac", "wav", "ogg"})
MAX_CLASSES = 20
MAX_TEXT = 128
MAX_ALERT_EVENTS = 100
MAX_FIGURES = 64
MAX_ID = (1 << 63) - 1  # seqs and ids are uint64 on the wire, signed 64-bit in the database
SCORE_SLACK = 1e-3  # float32 rounding of probabilities
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def text(v: str, field: str, max_len: int = MAX_TEXT, required: bool = True) -> str:
    if required and not v:
        raise InvalidMessage(field, "is required")
    if len(v) > max_len:
        raise InvalidMessage(field, f"longer than {max_len} characters")
    if CONTROL_RE.search(v):
        raise InvalidMessage(field, "contains control characters")
    return v


def _score(v: float, field: str) -> float:
    if not math.isfinite(v) or v < 0.0 or v > 1.0 + SCORE_SLACK:
        raise InvalidMessage(field, f"must be a finite score in [0, 1], got {v!r}")
    return float(min(v, 1.0))


def _ns(v: int, field: str, required: bool = True) -> int:
    if v < 0 or (required and v == 0):
        raise InvalidMessage(field, f"must be a positive time in ns, got {v}")
    return int(v)


def _classes(items, field: str) -> list[tuple[str, float]]:
    """Validated (name, score) pairs; checked in bulk, the offending index is looked for only on failure."""
    if len(items) > MAX_CLASSES:
        raise InvalidMessage(field, f"at most {MAX_CLASSES} classes")
    if not items:
        return []
    names = [c.name for c in items]
    scores = [c.score for c in items]
    if not (math.isfinite(sum(scores)) and min(scores) >= 0.0 and max(scores) <= 1.0 + SCORE_SLACK) \
            or min(map(len, names)) == 0 or max(map(len, names)) > MAX_TEXT or CONTROL_RE.search("".join(names)):
        for i, (n, sc) in enumerate(zip(names, scores)):
            text(n, f"{field}[{i}].name")
            _score(sc, f"{field}[{i}].score")
    if max(scores) > 1.0:
        scores = [min(sc, 1.0) for sc in scores]
    return list(zip(names, scores))


def _position(msg, field: str) -> tuple[Optional[float], Optional[float]]:
    if not msg.HasField("position"):
        return None, None
    lat, lon = msg.position.lat, msg.position.lon
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise InvalidMessage(f"{field}.position.lat", f"must be in [-90, 90], got {lat!r}")
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise InvalidMessage(f"{field}.position.lon", f"must be in [-180, 180], got {lon!r}")
    return lat, lon


# ---------------------------------------------------------------------------------------------- ingest in
class Problem(NamedTuple):
    """What was wrong with one record of a batch: the record became a dead letter, or (clip_only) only its clip
    was dropped and the event is stored without it."""
    seq: int
    error: InvalidMessage
    clip_only: bool = False


def clip_dropped_reason(exc: InvalidMessage) -> str:
    """What the event's clip_dropped says when the cloud refused its clip (it fits the column and the text limit)."""
    return f"clip rejected: {exc.detail}"[:MAX_TEXT]


def event_in(e: ingest_pb2.Event, field: str, *, ended: bool, max_inline: int,
             max_clip: int) -> tuple[EventIn, Optional[InvalidMessage]]:
    """The event, and the problem of its clip when the clip could not be used: a bad clip costs only the clip (the
    event keeps the rest, with clip_dropped saying why); any other bad field raises."""
    if not EVENT_ID_RE.match(e.event_id):
        raise InvalidMessage(f"{field}.event_id", "must be 32 lowercase hex digits")
    if not LABEL_RE.match(e.label):
        raise InvalidMessage(f"{field}.label", "must be 1-64 characters of [A-Za-z0-9_.:-]")
    start = _ns(e.start_ns, f"{field}.start_ns")
    end: Optional[int] = None
    if ended:
        end = _ns(e.end_ns, f"{field}.end_ns")
        if end < start:
            raise InvalidMessage(f"{field}.end_ns", f"{end} is before start_ns {start}")
    elif e.end_ns:
        raise InvalidMessage(f"{field}.end_ns", "an event start has no end; send it as event_end")
    classes = _classes(e.classes, f"{field}.classes")
    lat, lon = _position(e, field)
    if not math.isfinite(e.inference_ms) or e.inference_ms < 0:
        raise InvalidMessage(f"{field}.inference_ms", "must be finite and >= 0")
    if e.embedding_f16 and len(e.embedding_f16) != EMBEDDING_F16_BYTES:
        raise InvalidMessage(f"{field}.embedding_f16",
                             f"must be {EMBEDDING_F16_BYTES} bytes, got {len(e.embedding_f16)}")
    if not HEX_RE.match(e.model_sha256):
        raise InvalidMessage(f"{field}.model_sha256", "must be lowercase hex")
    out = EventIn(e.event_id, e.label, start, end, _score(e.score, f"{field}.score"), classes, lat, lon,
                  text(e.backend, f"{field}.backend", 64, required=False), e.model_sha256,
                  float(e.inference_ms) if e.inference_ms else None, bytes(e.embedding_f16) or None, None,
                  text(e.clip_dropped, f"{field}.clip_dropped", required=False) or None)
    if not e.HasField("clip"):
        return out, None
    try:  # last, so that a record with a bad event field is a dead letter whatever its clip
        if not ended:
            raise InvalidMessage(f"{field}.clip", "clips come with event_end")
        out.clip = clip_in(e.clip, f"{field}.clip", max_inline, max_clip)
    except InvalidMessage as exc:
        out.clip_dropped = clip_dropped_reason(exc)
        return out, exc
    return out, None


def clip_in(c: common_pb2.Clip, field: str, max_inline: int, max_clip: int) -> ClipIn:
    if c.format not in CLIP_FORMATS:
        raise InvalidMessage(f"{field}.format", f"must be one of {sorted(CLIP_FORMATS)}")
    if not 1 <= c.sample_rate <= 384000:
        raise InvalidMessage(f"{field}.sample_rate", "must be in [1, 384000]")
    if not math.isfinite(c.preroll_s) or c.preroll_s < 0:
        raise InvalidMessage(f"{field}.preroll_s", "must be finite and >= 0")
    out = ClipIn(c.format, c.sample_rate, _ns(c.start_ns, f"{field}.start_ns", required=False), float(c.preroll_s))
    which = c.WhichOneof("data")
    if which == "inline":
        if not c.inline:
            raise InvalidMessage(f"{field}.inline", "is empty")
        if len(c.inline) > max_inline:
            raise InvalidMessage(f"{field}.inline", f"{len(c.inline)} bytes inline, over max_inline_clip_bytes "
                                                    f"{max_inline}; upload it as clip_chunk messages, send a ref")
        out.data = bytes(c.inline)
    elif which == "ref":
        if not SHA256_RE.match(c.ref.sha256):
            raise InvalidMessage(f"{field}.ref.sha256", "must be 64 lowercase hex digits")
        if not 0 < c.ref.size <= max_clip:
            raise InvalidMessage(f"{field}.ref.size", f"must be in [1, max_clip_bytes {max_clip}]")
        out.sha256, out.size = c.ref.sha256, int(c.ref.size)
    else:
        raise InvalidMessage(f"{field}.data", "a clip needs inline bytes or a ref")
    return out


def alert_in(a: ingest_pb2.DeviceAlert, field: str) -> AlertIn:
    rule = text(a.rule, f"{field}.rule", 64)
    if not a.labels or len(a.labels) > MAX_CLASSES:
        raise InvalidMessage(f"{field}.labels", f"needs 1-{MAX_CLASSES} labels")
    for i, lab in enumerate(a.labels):
        if not LABEL_RE.match(lab):
            raise InvalidMessage(f"{field}.labels[{i}]", "must be 1-64 characters of [A-Za-z0-9_.:-]")
    start, end = _ns(a.start_ns, f"{field}.start_ns"), _ns(a.end_ns, f"{field}.end_ns")
    if end < start:
        raise InvalidMessage(f"{field}.end_ns", f"{end} is before start_ns {start}")
    if len(a.event_ids) > MAX_ALERT_EVENTS:
        raise InvalidMessage(f"{field}.event_ids", f"at most {MAX_ALERT_EVENTS}")
    for i, ev in enumerate(a.event_ids):
        if not EVENT_ID_RE.match(ev):
            raise InvalidMessage(f"{field}.event_ids[{i}]", "must be 32 lowercase hex digits")
    lat, lon = _position(a, field)
    return AlertIn(rule, list(a.labels), start, end, list(a.event_ids), lat, lon)


def batch_in(device_id: str, b: ingest_pb2.RecordBatch, *, max_records: int, max_inline: int,
             max_clip: int) -> tuple[BatchIn, list[Problem]]:
    """The batch and the problems of single records. A bad record becomes a dead letter (kind "reject"), so
    its seq is settled and the stream goes on; a bad clip is dropped from its event; a bad batch raises."""
    n = len(b.records)
    if not 1 <= n <= max_records:
        raise InvalidMessage("batch.records", f"needs 1-{max_records} records (max_batch_records), got {n}")
    records: list[RecordIn] = []
    problems: list[Problem] = []
    prev = 0
    for i, r in enumerate(b.records):
        field = f"batch.records[{i}]"
        if r.seq <= prev:
            raise InvalidMessage(f"{field}.seq", f"seqs must be >= 1 and ascending; {r.seq} follows {prev}")
        if r.seq > MAX_ID:
            raise InvalidMessage(f"{field}.seq", f"must be at most {MAX_ID} (2**63-1), got {r.seq}")
        prev = r.seq
        try:
            created = _ns(r.created_ns, f"{field}.created_ns")
            kind = r.WhichOneof("kind")
            payload: Payload
            clip_error: Optional[InvalidMessage] = None
            if kind in ("event", "event_end"):
                payload, clip_error = event_in(getattr(r, kind), f"{field}.{kind}", ended=kind == "event_end",
                                               max_inline=max_inline, max_clip=max_clip)
            elif kind == "alert":
                payload = alert_in(r.alert, f"{field}.alert")
            else:
                raise InvalidMessage(f"{field}.kind", "one of event, event_end, alert is required")
            records.append(RecordIn(r.seq, created, kind, payload))
            if clip_error is not None:
                problems.append(Problem(int(r.seq), clip_error, clip_only=True))
        except InvalidMessage as exc:
            problems.append(Problem(int(r.seq), exc))
            records.append(RecordIn(r.seq, max(r.created_ns, 0), "reject", RejectIn(exc.field, exc.detail)))
    if not 1 <= b.low_water <= records[0].seq:
        raise InvalidMessage("batch.low_water", f"must be in [1, first seq {records[0].seq}], got {b.low_water}")
    return BatchIn(device_id, int(b.low_water), records), problems


def drop_missing_clips(batch: BatchIn, exists: Callable[[str], bool], reason: str) -> list[Problem]:
    """Drop the clips the batch refers to by hash that were never uploaded (`exists` says which are in the clip
    store): each event keeps the rest, with clip_dropped = reason, and each is a clip-only problem."""
    problems = []
    for i, r in enumerate(batch.records):  # in the order of the message's records, so i is their index
        e = r.payload
        if not isinstance(e, EventIn) or e.clip is None or e.clip.data is not None or exists(e.clip.sha256):
            continue
        problems.append(Problem(r.seq, ClipNotUploaded(
            f"batch.records[{i}].{r.kind}.clip.ref.sha256",
            f"clip {e.clip.sha256} was never uploaded (send its clip_chunk messages before the batch that refers "
            "to it); the event is stored without it"), clip_only=True))
        e.clip, e.clip_dropped = None, reason
    return problems


def heartbeat_in(device_id: str, h: ingest_pb2.Heartbeat) -> HeartbeatIn:
    if len(h.figures) > MAX_FIGURES or len(h.info) > MAX_FIGURES:
        raise InvalidMessage("heartbeat.figures", f"at most {MAX_FIGURES} figures and {MAX_FIGURES} info entries")
    figures = {}
    for k, v in h.figures.items():
        text(k, "heartbeat.figures")
        if not math.isfinite(v):
            raise InvalidMessage(f"heartbeat.figures[{k}]", "must be finite")
        figures[k] = float(v)
    info = {text(k, "heartbeat.info"): text(v, f"heartbeat.info[{k}]", 512, required=False)
            for k, v in h.info.items()}
    for name in ("outbox_depth", "outbox_dropped"):
        if getattr(h, name) > MAX_ID:
            raise InvalidMessage(f"heartbeat.{name}", f"must be at most {MAX_ID} (2**63-1)")
    return HeartbeatIn(device_id, _ns(h.sent_ns, "heartbeat.sent_ns"), int(h.outbox_depth), int(h.outbox_dropped),
                       figures, info)


def max_id(value: int, field: str) -> int:
    """A uint64 id or seq of a request, which the database stores as a signed 64-bit integer."""
    if value > MAX_ID:
        raise InvalidMessage(field, f"must be at most {MAX_ID} (2**63-1), got {value}")
    return int(value)


def check_chunk(c: ingest_pb2.ClipChunk, max_clip: int, max_chunk: int) -> None:
    if not SHA256_RE.match(c.sha256):
        raise InvalidMessage("clip_chunk.sha256", "must be 64 lowercase hex digits")
    if not 0 < c.total_size <= max_clip:
        raise InvalidMessage("clip_chunk.total_size", f"must be in [1, {max_clip}]")
    if not c.data:
        raise InvalidMessage("clip_chunk.data", "is empty")
    if len(c.data) > max_chunk:
        raise InvalidMessage("clip_chunk.data", f"at most {max_chunk} bytes per chunk")


# ---------------------------------------------------------------------------------------------- ingest out
def ack(device_id: str, seq: int) -> ingest_pb2.IngestResponse:
    return ingest_pb2.IngestResponse(ack=ingest_pb2.Ack(device_id=device_id, seq=seq))


def reject(code: int, field: str, message: str, seq: int = 0, *,
           scope: ingest_pb2.Reject.Scope = ingest_pb2.Reject.SCOPE_MESSAGE,
           first_seq: int = 0, last_seq: int = 0) -> ingest_pb2.IngestResponse:
    return ingest_pb2.IngestResponse(reject=ingest_pb2.Reject(
        code=code, field=field, message=message[:1000], seq=seq, scope=scope, first_seq=first_seq, last_seq=last_seq))


def record_reject(code: int, p: Problem) -> ingest_pb2.IngestResponse:
    """A dead-lettered record (RECORD), or a record whose clip was dropped (CLIP)."""
    return reject(code, p.error.field, p.error.detail, p.seq,
                  scope=ingest_pb2.Reject.SCOPE_CLIP if p.clip_only else ingest_pb2.Reject.SCOPE_RECORD)


def batch_reject(code: int, exc: InvalidMessage, b: ingest_pb2.RecordBatch) -> ingest_pb2.IngestResponse:
    """A batch refused whole, named by the seqs of its first and last records as sent."""
    first, last = (b.records[0].seq, b.records[-1].seq) if b.records else (0, 0)
    return reject(code, exc.field, exc.detail, scope=ingest_pb2.Reject.SCOPE_BATCH, first_seq=first, last_seq=last)


def config_push(thresholds: dict[str, float], sample_rate: float, version: int) -> ingest_pb2.IngestResponse:
    return ingest_pb2.IngestResponse(config=ingest_pb2.ConfigPush(thresholds=thresholds, version=version,
                                                                  verify_sample_rate=sample_rate))


# ---------------------------------------------------------------------------------------------- query
VERIFIED = {
    query_pb2.VERIFIED_ANY: Verified.ANY, query_pb2.VERIFIED_DONE: Verified.DONE,
    query_pb2.VERIFIED_AGREE: Verified.AGREE, query_pb2.VERIFIED_DISAGREE: Verified.DISAGREE,
    query_pb2.VERIFIED_PENDING: Verified.PENDING, query_pb2.VERIFIED_NONE: Verified.NONE,
}


def event_filter(r: query_pb2.ListEventsRequest, default_limit: int, max_limit: int) -> EventFilter:
    if r.start_ns < 0 or r.end_ns < 0:
        raise InvalidMessage("start_ns" if r.start_ns < 0 else "end_ns", "must be >= 0")
    if r.verified not in VERIFIED:
        raise InvalidMessage("verified", f"unknown value {r.verified}")
    bbox = None
    if r.HasField("bbox"):
        b = r.bbox
        for name in ("min_lat", "max_lat"):
            if not -90 <= getattr(b, name) <= 90:
                raise InvalidMessage(f"bbox.{name}", "must be in [-90, 90]")
        for name in ("min_lon", "max_lon"):
            if not -180 <= getattr(b, name) <= 180:
                raise InvalidMessage(f"bbox.{name}", "must be in [-180, 180]")
        if b.min_lat > b.max_lat:
            raise InvalidMessage("bbox.min_lat", "is above max_lat")
        bbox = BBox(b.min_lat, b.min_lon, b.max_lat, b.max_lon)
    for i, d in enumerate(r.device_ids):
        if not DEVICE_RE.match(d):
            raise InvalidMessage(f"device_ids[{i}]", "not a device id")
    for i, lab in enumerate(r.labels):
        if not LABEL_RE.match(lab):
            raise InvalidMessage(f"labels[{i}]", "not a label")
    return EventFilter(r.start_ns or None, r.end_ns or None, list(r.labels), list(r.device_ids), bbox,
                       VERIFIED[r.verified], min(r.limit or default_limit, max_limit), max_id(r.after_id, "after_id"))


def _pos(lat, lon) -> Optional[common_pb2.Position]:
    return common_pb2.Position(lat=lat, lon=lon) if lat is not None and lon is not None else None


def event_info(e: EventView) -> query_pb2.EventInfo:
    m = query_pb2.EventInfo(id=e.id, device_id=e.device_id, seq=e.seq, event_id=e.event_id, label=e.label,
                            start_ns=e.start_ns, end_ns=e.end_ns or 0, score=e.score,
                            classes=[common_pb2.ClassScore(name=n, score=s) for n, s in e.classes],
                            position=_pos(e.lat, e.lon), backend=e.backend, model_sha256=e.model_sha256,
                            has_clip=e.clip is not None, clip_dropped=e.clip_dropped or "",
                            received_ns=e.received_ns)
    if e.clip is not None:
        m.clip_size, m.clip_sha256 = e.clip.size, e.clip.sha256
    v = e.verification
    if v is not None:
        m.verification.CopyFrom(query_pb2.Verification(
            status=v.status, reason=v.reason, verifier=v.verifier or "", labels=v.labels,
            scores=[common_pb2.ClassScore(name=k, score=s) for k, s in sorted(v.scores.items())],
            has_agree=v.agree is not None, agree=bool(v.agree), error=v.error or ""))
    return m


def device_info(d: DeviceView) -> query_pb2.DeviceInfo:
    return query_pb2.DeviceInfo(device_id=d.device_id, revoked=d.revoked, acked_seq=d.acked_seq,
                                last_heartbeat_ns=d.last_heartbeat_ns or 0, health=d.health, figures=d.figures,
                                info=d.info, position=_pos(d.lat, d.lon), events=d.events, created_ns=d.created_ns)


def alert_info(a: AlertView) -> query_pb2.AlertInfo:
    return query_pb2.AlertInfo(
        id=a.id, kind=a.kind, rule=a.rule, labels=a.labels, device_id=a.device_id or "", start_ns=a.start_ns,
        end_ns=a.end_ns, position=_pos(a.lat, a.lon), device_count=a.device_count, created_ns=a.created_ns,
        events=[query_pb2.AlertEvent(device_id=x.device_id, seq=x.seq, event_id=x.event_id, label=x.label)
                for x in a.events])
