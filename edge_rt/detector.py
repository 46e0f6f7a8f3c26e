"""The detector: per-window YAMNet scores in, one event per occurrence and compound-rule alerts out."""
from __future__ import annotations

import logging
import math
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from edge_rt.config import DetectorConfig, RuleConfig
from edgert.labels import LabelScorer
from edgert.yamnet.classmap import top_classes
from edgert.yamnet.params import PARAMS

log = logging.getLogger("edge_rt.detector")
hear = logging.getLogger("edge_rt.detector.hears")  # the "what the model hears" stream, at DEBUG

WINDOW_S = PARAMS.patch_window_seconds
HOP_S = PARAMS.patch_hop_seconds
FRAME_S = PARAMS.stft_hop_seconds
# Onset/offset refinement inside a window: a frame belongs to the sound when its energy is above the
# window's floor by this fraction of the floor-to-peak range; below MIN_CONTRAST (nats) there is no edge.
EDGE_FRACTION = 0.3
MIN_CONTRAST = 1.0
SPEECH_CLASS = "Speech"


@dataclass
class Window:
    """One analysed 0.96 s window: stream time of its first sample and what the model made of it."""

    start_s: float
    scores: np.ndarray  # float32[521]
    patch: Optional[np.ndarray]  # float32[96,64] log-mel (None in a replayed window, which carries onset/offset)
    dbfs: float
    embedding: Optional[np.ndarray] = None  # float32[1024]
    head: Optional[dict[str, float]] = None  # label -> probability from the trained head
    # float32[L] label scores, set once by the LabelScorer of the detector (or score_clip) that first scores the
    # window; a window belongs to one detector configuration.
    labels: Optional[np.ndarray] = None
    onset: Optional[float] = None  # onset_s/offset_s when known already (replayed windows carry no patch)
    offset: Optional[float] = None


@dataclass
class Event:
    label: str
    start_s: float
    score: float
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    end_s: Optional[float] = None
    hits: int = 0
    classes: list[tuple[str, float]] = field(default_factory=list)
    _score_sum: Optional[np.ndarray] = None
    _emb_sum: Optional[np.ndarray] = None
    _emb_n: int = 0
    speech_max: float = 0.0  # highest speech score over the event's windows (for the privacy option)
    last_hit: Optional[Window] = None

    @property
    def mean_embedding(self) -> Optional[np.ndarray]:
        """float32[1024] mean embedding over the event's hit windows, or None."""
        return None if self._emb_sum is None else (self._emb_sum / max(self._emb_n, 1)).astype(np.float32)

    def as_dict(self) -> dict:
        return {"label": self.label, "start_s": round(self.start_s, 3),
                "end_s": None if self.end_s is None else round(self.end_s, 3),
                "score": round(float(self.score), 4), "classes": [[n, round(float(s), 4)] for n, s in self.classes]}


@dataclass
class Alert:
    rule: str
    start_s: float
    end_s: float
    labels: list[str]
    event_ids: list[str]

    def as_dict(self) -> dict:
        return {"rule": self.rule, "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
                "labels": self.labels}


@dataclass
class Output:
    """What one window produced: events that started, events that ended, alerts that fired."""

    started: list[Event] = field(default_factory=list)
    ended: list[Event] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.started or self.ended or self.alerts)


def frame_energy(patch: np.ndarray) -> np.ndarray:
    """float32[96] per-frame energy of a log-mel patch (mean log-mel over bands)."""
    return patch.mean(axis=1)


def _edges(patch: np.ndarray) -> Optional[tuple[int, int]]:
    """(first, last) frame of the sound in a patch, or None when the patch has no clear edge."""
    e = frame_energy(patch)
    s = np.sort(e)
    # The 10th percentile with linear interpolation (np.percentile's default), without its per-call overhead.
    pos = 0.1 * (s.size - 1)
    lo = int(pos)
    floor = float(s[lo] + (pos - lo) * (s[min(lo + 1, s.size - 1)] - s[lo]))
    peak = float(s[-1])
    if peak - floor < MIN_CONTRAST:
        return None
    above = np.flatnonzero(e >= floor + EDGE_FRACTION * (peak - floor))
    return int(above[0]), int(above[-1])


def patch_onset_s(start_s: float, patch: np.ndarray) -> float:
    """Where the sound in a window starting at `start_s` begins: its first loud frame, else the window's start."""
    edges = _edges(patch)
    return start_s + (edges[0] * FRAME_S if edges else 0.0)


def patch_offset_s(start_s: float, patch: np.ndarray) -> float:
    """Where the sound in a window starting at `start_s` ends: after its last loud frame, else the window's end."""
    edges = _edges(patch)
    return start_s + ((edges[1] + 1) * FRAME_S if edges else WINDOW_S)


def onset_s(w: Window) -> float:
    if w.onset is not None:
        return w.onset
    assert w.patch is not None, "a window carries its patch or its onset"
    return patch_onset_s(w.start_s, w.patch)


def offset_s(w: Window) -> float:
    if w.offset is not None:
        return w.offset
    assert w.patch is not None, "a window carries its patch or its offset"
    return patch_offset_s(w.start_s, w.patch)


class _LabelTrack:
    def __init__(self, label: str, pos: int, threshold: float, min_hits: int, start_window: int):
        self.label, self.pos, self.threshold, self.min_hits = label, pos, threshold, min_hits
        self.recent: deque[Optional[Window]] = deque(maxlen=start_window)
        self.active: Optional[Event] = None
        self.misses = 0


class RuleEngine:
    """Fires an alert when `count` distinct labels of a rule start events within `window_s` of each other."""

    def __init__(self, rules: Sequence[RuleConfig]):
        self.rules = list(rules)
        self._recent: dict[str, deque[Event]] = {r.name: deque() for r in self.rules}

    def on_start(self, ev: Event) -> list[Alert]:
        fired = []
        for rule in self.rules:
            if ev.label not in rule.labels:
                continue
            recent = self._recent[rule.name]
            recent.append(ev)
            while recent and ev.start_s - recent[0].start_s > rule.window_s:
                recent.popleft()
            labels = sorted({e.label for e in recent})
            if len(labels) >= rule.count:
                fired.append(Alert(rule.name, min(e.start_s for e in recent), max(e.start_s for e in recent),
                                   labels, [e.event_id for e in recent]))
                recent.clear()  # one alert per episode: the next needs fresh events
        return fired


class Detector:
    """Turns a stream of windows into events and alerts; feed windows in time order, then `flush()`."""

    def __init__(self, cfg: DetectorConfig, rules: Sequence[RuleConfig], class_names: Sequence[str]):
        self.cfg = cfg
        self.names = list(class_names)
        index = {n: i for i, n in enumerate(self.names)}
        self.scorer = LabelScorer(cfg, self.names)
        self.tracks = [_LabelTrack(label, j, lc.threshold, lc.min_hits, cfg.start_window)
                       for j, (label, lc) in enumerate(cfg.labels.items())]
        self.quiet_windows = max(1, math.ceil(cfg.quiet_s / HOP_S))
        speech = cfg.labels.get("speech")
        self.speech_idx = np.array([index[c] for c in (speech.classes if speech else [SPEECH_CLASS])])
        self.rules = RuleEngine(rules)
        self._thresholds = self._threshold_row()
        self._open = 0  # tracks with an active event

    def retune(self, cfg: DetectorConfig) -> None:
        """Take new operating points (thresholds, minimum hits) for the same labels and scoring, keeping open
        events and recent hits: what a pushed config changes takes effect from the next window."""
        if list(cfg.labels) != list(self.cfg.labels):
            raise ValueError(f"a retune keeps the labels {list(self.cfg.labels)}, got {list(cfg.labels)}")
        for t, lc in zip(self.tracks, cfg.labels.values()):
            t.threshold, t.min_hits = lc.threshold, lc.min_hits
        self._thresholds = self._threshold_row()
        self.cfg = cfg

    def _threshold_row(self) -> np.ndarray:
        """float32[L] thresholds in label order: a window's label scores compare with them in float32, as each
        float32 score compares with its Python-float threshold."""
        return np.array([t.threshold for t in self.tracks], np.float32)

    def label_scores(self, w: Window) -> np.ndarray:
        """float32[L] label scores of a window (computed once, by the shared LabelScorer)."""
        if w.labels is None:
            w.labels = self.scorer(w.scores[None, :], [w.head])[0]
        return w.labels

    def push(self, w: Window) -> Output:
        out = Output()
        scores = self.label_scores(w)
        loud = w.dbfs >= self.cfg.loudness_gate_dbfs
        if hear.isEnabledFor(logging.DEBUG):
            hear.debug("t=%.2f %.0f dBFS hears %s", w.start_s, w.dbfs,
                       ", ".join(f"{n} {s:.2f}" for n, s in top_classes(w.scores, self.names, self.cfg.top_k)))
        above = (scores >= self._thresholds).tolist() if loud else [False] * len(self.tracks)  # bool[L]
        if not self._open and True not in above:  # most windows: nothing open, nothing heard
            for t in self.tracks:
                t.recent.append(None)
            return out
        for t, hit in zip(self.tracks, above):
            ev = t.active
            if ev is None:
                t.recent.append(w if hit else None)
                if not hit:
                    continue
                hits = [x for x in t.recent if x is not None]
                if len(hits) >= t.min_hits:
                    ev = t.active = Event(t.label, onset_s(hits[0]), 0.0)
                    self._open += 1
                    for x in hits:
                        self._absorb(ev, x, float(self.label_scores(x)[t.pos]))
                    ev.classes = self._classes(ev)
                    t.recent.clear()
                    t.misses = 0
                    out.started.append(ev)
                    out.alerts.extend(self.rules.on_start(ev))
                continue
            if hit:
                self._absorb(ev, w, float(scores[t.pos]))
                t.misses = 0
            else:
                t.misses += 1
            too_long = w.start_s + WINDOW_S - ev.start_s >= self.cfg.max_event_s
            if t.misses >= self.quiet_windows or too_long:
                out.ended.append(self._close(t))
        return out

    def flush(self) -> Output:
        """Close every open event (end of a finite stream)."""
        out = Output()
        for t in self.tracks:
            if t.active is not None:
                out.ended.append(self._close(t))
        return out

    def _absorb(self, ev: Event, w: Window, score: float) -> None:
        ev.hits += 1
        ev.score = max(ev.score, score)
        ev.last_hit = w
        ev.speech_max = max(ev.speech_max, float(w.scores[self.speech_idx].max()))
        ev._score_sum = w.scores.astype(np.float64) if ev._score_sum is None else ev._score_sum + w.scores
        if w.embedding is not None:
            ev._emb_sum = w.embedding.astype(np.float64) if ev._emb_sum is None else ev._emb_sum + w.embedding
            ev._emb_n += 1

    def _classes(self, ev: Event) -> list[tuple[str, float]]:
        """The event's top classes over its hits so far: set when it starts and when it ends, the two records
        that carry them, not at every hit."""
        assert ev._score_sum is not None
        return top_classes(ev._score_sum / ev.hits, self.names, self.cfg.top_k)

    def _close(self, t: _LabelTrack) -> Event:
        ev = t.active
        assert ev is not None and ev.last_hit is not None
        ev.classes = self._classes(ev)
        ev.end_s = max(ev.start_s + FRAME_S, offset_s(ev.last_hit))
        t.active = None
        self._open -= 1
        t.misses = 0
        t.recent.clear()
        return ev
