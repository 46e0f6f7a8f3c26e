"""The cloud's domain objects: what the servicers hand the store (cloud_svc.store) and what queries return
(no protobuf)."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional, Union

EMBEDDING_F16_BYTES = 1024 * 2  # YAMNet's 1024-d embedding as little-endian float16


@dataclass(slots=True)
class ClipIn:
    format: str
    sample_rate: int
    start_ns: int
    preroll_s: float
    sha256: str = ""               # filled from the store once the bytes are in it
    size: int = 0
    data: Optional[bytes] = None   # inline bytes, still to be written to the clip store


@dataclass(slots=True)
class EventIn:
    event_id: str
    label: str
    start_ns: int
    end_ns: Optional[int]
    score: float
    classes: list[tuple[str, float]]
    lat: Optional[float] = None
    lon: Optional[float] = None
    backend: str = ""
    model_sha256: str = ""
    inference_ms: Optional[float] = None
    embedding: Optional[bytes] = None
    clip: Optional[ClipIn] = None
    clip_dropped: Optional[str] = None


@dataclass(slots=True)
class AlertIn:
    rule: str
    labels: list[str]
    start_ns: int
    end_ns: int
    event_ids: list[str]
    lat: Optional[float] = None
    lon: Optional[float] = None


@dataclass(slots=True)
class RejectIn:
    field: str
    reason: str


# kind: "event" | "event_end" | "alert" | "reject" (a dead letter: invalid, stored only so its seq is settled)
Payload = Union[EventIn, AlertIn, RejectIn]


@dataclass(slots=True)
class RecordIn:
    seq: int
    created_ns: int
    kind: str
    payload: Payload


@dataclass(slots=True)
class BatchIn:
    device_id: str
    low_water: int
    records: list[RecordIn]


@dataclass(slots=True)
class HeartbeatIn:
    device_id: str
    sent_ns: int
    outbox_depth: int
    outbox_dropped: int
    figures: dict[str, float] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class CommitResult:
    acked_seq: int   # the device's watermark after the commit
    stored: int      # records that were new
    duplicates: int  # records already stored (replays)


class Verified(Enum):
    ANY = "any"
    DONE = "done"
    AGREE = "agree"
    DISAGREE = "disagree"
    PENDING = "pending"
    NONE = "none"


class Reviewed(str, Enum):
    """Which events by their current review: any, not reviewed, reviewed, or one decision."""
    ANY = "any"
    NONE = "none"
    REVIEWED = "reviewed"
    REAL = "real"
    FALSE_ALARM = "false_alarm"
    WRONG_LABEL = "wrong_label"


EVENT_ORDER = ("id", "start_ns", "label", "device_id", "score")  # the columns events can be sorted by


@dataclass(slots=True, frozen=True)
class BBox:
    min_lat: float
    min_lon: float
    max_lat: float
    max_lon: float


@dataclass(slots=True)
class EventFilter:
    start_ns: Optional[int] = None
    end_ns: Optional[int] = None
    labels: list[str] = field(default_factory=list)
    device_ids: list[str] = field(default_factory=list)
    bbox: Optional[BBox] = None
    verified: Verified = Verified.ANY
    limit: int = 1000
    after_id: int = 0
    reviewed: Reviewed = Reviewed.ANY
    order: str = "id"            # one of EVENT_ORDER; with `descending` and `offset`: the dashboard's paging
    descending: bool = False
    offset: int = 0
    ids: Optional[list[int]] = None


@dataclass(slots=True)
class VerificationView:
    status: str
    reason: str
    verifier: Optional[str]
    labels: list[str]
    scores: dict[str, float]
    agree: Optional[bool]
    error: Optional[str]


@dataclass(slots=True)
class ClipView:
    format: str
    sample_rate: int
    sha256: str
    size: int
    uri: str
    start_ns: int = 0
    preroll_s: float = 0.0


@dataclass(slots=True)
class EventView:
    id: int
    device_id: str
    seq: int
    event_id: str
    label: str
    start_ns: int
    end_ns: Optional[int]
    score: float
    classes: list[tuple[str, float]]
    lat: Optional[float]
    lon: Optional[float]
    backend: str
    model_sha256: str
    received_ns: int
    clip: Optional[ClipView] = None
    clip_dropped: Optional[str] = None
    verification: Optional[VerificationView] = None
    review: Optional["ReviewView"] = None


@dataclass(slots=True)
class DeviceView:
    device_id: str
    revoked: bool
    acked_seq: int
    created_ns: int
    last_heartbeat_ns: Optional[int]
    health: str                      # ok | degraded | stale | never
    figures: dict[str, float]
    info: dict[str, str]
    lat: Optional[float]
    lon: Optional[float]
    events: int


@dataclass(slots=True)
class AlertEventRef:
    device_id: str
    seq: int
    event_id: str
    label: str
    lat: Optional[float] = None
    lon: Optional[float] = None
    event_pk: int = 0


@dataclass(slots=True)
class AlertView:
    id: int
    kind: str                        # device | fleet
    rule: str
    labels: list[str]
    device_id: Optional[str]
    start_ns: int
    end_ns: int
    lat: Optional[float]
    lon: Optional[float]
    device_count: int
    created_ns: int
    events: list[AlertEventRef] = field(default_factory=list)


@dataclass(slots=True)
class Agreement:
    label: str
    verified: int
    agreed: int

    @property
    def rate(self) -> float:
        return self.agreed / self.verified if self.verified else 0.0


@dataclass(slots=True)
class VerifyJob:
    id: int
    event_pk: int
    device_id: str
    event_id: str
    label: str
    reason: str
    attempts: int
    clip: Optional[ClipView]


@dataclass(slots=True)
class VerifyResult:
    verifier: str
    labels: list[str]                # labels the verifier found present
    scores: dict[str, float]         # label -> the verifier's score
    agree: Optional[bool]            # None when the verifier could not judge (e.g. no clip)
    note: Optional[str] = None


class Decision(str, Enum):
    """A reviewer's verdict on an event."""
    REAL = "real"
    FALSE_ALARM = "false_alarm"
    WRONG_LABEL = "wrong_label"


@dataclass(slots=True)
class ReviewView:
    id: int
    event_pk: int
    decision: str           # a Decision value
    label: Optional[str]    # the right label, for wrong_label
    reviewer: str
    note: Optional[str]
    created_ns: int


@dataclass(slots=True)
class ReviewedClip:
    """A reviewed event with a clip: one row of the exported label pack."""
    event_pk: int
    device_id: str
    event_id: str
    edge_label: str
    review: ReviewView
    clip_sha256: str
    clip_format: str
    clip_rate: int
    clip_preroll_s: float
    start_ns: int
    end_ns: Optional[int]


@dataclass(slots=True)
class DeviceConfigView:
    device_id: str
    thresholds: dict[str, float]
    version: int
    set_by: str
    set_ns: int


@dataclass(slots=True)
class HealthSample:
    ts_ns: int
    figures: dict[str, float]
    outbox_depth: int


@dataclass(slots=True)
class MapCell:
    """Events aggregated on a grid (the map's server-side clusters); one event when count is 1."""
    lat: float
    lon: float
    count: int
    distress: int         # how many of them have a distress label
    event_pk: int         # the cell's first event
    label: str            # the cell's most frequent label
    labels: dict[str, int]


@dataclass(slots=True)
class LabelReviews:
    label: str
    reviewed: int
    real: int
    false_alarm: int
    wrong_label: int

    @property
    def agreement(self) -> float:
        return self.real / self.reviewed if self.reviewed else 0.0


@dataclass(slots=True)
class DeviceFalseAlarms:
    device_id: str
    events: int
    reviewed: int
    false_alarms: int
