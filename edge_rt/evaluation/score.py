"""A detector configuration scored on recordings: events found, false events per hour, alerts, curves.

`run` replays the real `Detector` over each recording's analysed windows, so what is scored is what `classify`
and `run` do. `operating_curve` sweeps one label's threshold with the fast event-start replica instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from edge_rt.config import EdgeConfig
from edge_rt.detector import Detector
from edge_rt.evaluation.match import Detection, Matched, event_starts, match, near
from edge_rt.evaluation.material import Recording
from edgert.labels import LabelScorer
from edgert.yamnet.head import Head

RELIABILITY_BINS = 10


@dataclass
class RecordingResult:
    recording: Recording
    detections: list[Detection]
    alerts: int
    matched: Matched


def run(recordings: Sequence[Recording], cfg: EdgeConfig, names: Sequence[str], head: Optional[Head]
        ) -> list[RecordingResult]:
    out = []
    for rec in recordings:
        det = Detector(cfg.detector, cfg.rules, names)
        started, alerts = [], 0
        for w in rec.analysed.windows(head):
            o = det.push(w)
            started += o.started
            alerts += len(o.alerts)
        started += det.flush().started
        dets = [Detection(e.label, e.start_s, e.score) for e in started]
        out.append(RecordingResult(rec, dets, alerts, match(dets, rec.truth)))
    return out


def ordinary(rec: Recording) -> bool:
    """Recordings whose every event is false (negatives-only streams and negative clips)."""
    return rec.kind == "ordinary" or (rec.kind == "clip" and not any(t.label != "speech" for t in rec.truth))


def _ratio(a: int, b: int) -> Optional[float]:
    return round(a / b, 4) if b else None


def summarise(results: Sequence[RecordingResult], labels: Sequence[str], distress: Sequence[str]) -> dict:
    """Per-label tp/fp/fn, precision/recall/F1 and false events per ordinary hour; alerts; confusion."""
    ord_hours = sum(r.recording.hours for r in results if ordinary(r.recording))
    per = {}
    for label in labels:
        tp = fp = fn = fa = 0
        for r in results:
            c = r.matched.count(label)
            tp, fn, fp = tp + c["tp"], fn + c["fn"], fp + c["fp"] + c["dup"]
            if ordinary(r.recording):
                fa += c["fp"] + c["dup"]
        p, rc = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        f1 = round(2 * p * rc / (p + rc), 4) if p and rc else (0.0 if p is not None and rc is not None else None)
        per[label] = {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": rc, "f1": f1,
                      "false_events": fa, "false_per_hour": round(fa / ord_hours, 3) if ord_hours else 0.0}
    alerts = sum(r.alerts for r in results if ordinary(r.recording))
    return {"per_label": per, "distress_alerts": alerts,
            "distress_alerts_per_hour": round(alerts / ord_hours, 3) if ord_hours else 0.0,
            "ordinary_hours": round(ord_hours, 3), "confusion": confusion(results, labels)}


def confusion(results: Sequence[RecordingResult], labels: Sequence[str]) -> dict:
    """Rows: truth labels and "none" (false events); columns: detected labels and "missed"."""
    truth_labels = sorted({t.label for r in results for t in r.recording.truth})
    rows, cols = truth_labels + ["none"], list(labels) + ["missed"]
    m = np.zeros((len(rows), len(cols)), int)
    for r in results:
        for t, d in r.matched.tp:
            m[rows.index(t.label), cols.index(d.label)] += 1
        for t in r.matched.missed:
            other = [d for d in r.detections if near(d, t)]
            col = cols.index(max(other, key=lambda d: d.score).label) if other else cols.index("missed")
            m[rows.index(t.label), col] += 1
        for d in r.matched.false:
            if not any(near(d, t) for t in r.recording.truth):
                m[rows.index("none"), cols.index(d.label)] += 1
    return {"truth": rows, "detected": cols, "matrix": m.tolist()}


def label_scores(rec: Recording, scorer: LabelScorer, head: Optional[Head]) -> np.ndarray:
    """float32[N,L] label scores of every window of a recording, as the detector computes them."""
    return scorer(rec.analysed.scores, rec.analysed.head_probs(head))


@dataclass
class Sweep:
    """One label's counts as its threshold moves: int[T] each, one entry per threshold."""

    found: np.ndarray  # truths of the label found
    false_ordinary: np.ndarray  # false events (duplicates included) on ordinary recordings
    false_elsewhere: np.ndarray  # false events in event recordings that are near no truth of any label


def sweep(recordings: Sequence[Recording], scores: Sequence[np.ndarray], label: str, cfg: EdgeConfig,
          thresholds: Sequence[float] | np.ndarray, min_hits: int) -> Sweep:
    """Replay one label's event starts (the fast replica of the detector) at each of the ascending `thresholds`.

    `scores` holds each recording's float32[N] score for `label`."""
    d = cfg.detector
    out = Sweep(*(np.zeros(len(thresholds), int) for _ in range(3)))
    for rec, s in zip(recordings, scores):
        loud = rec.analysed.levels >= d.loudness_gate_dbfs
        mine = [t for t in rec.truth if t.label == label]
        for k, thr in enumerate(thresholds):
            hit = (s >= thr) & loud
            if not hit.any():
                break  # higher thresholds hit nothing either
            starts = event_starts(hit, rec.analysed.onsets, min_hits, d.start_window, d.quiet_s, d.max_event_s)
            m = match([Detection(label, t) for t in starts], mine)
            out.found[k] += len(m.tp)
            if ordinary(rec):
                out.false_ordinary[k] += len(m.false) + len(m.duplicates)
            else:  # in an event stream, a false event near another label's truth is that event's, not life's
                out.false_elsewhere[k] += sum(not any(near(x, t) for t in rec.truth) for x in m.false)
    return out


def operating_curve(recordings: Sequence[Recording], scores: Sequence[np.ndarray], label: str, cfg: EdgeConfig,
                    thresholds: Sequence[float] | np.ndarray, min_hits: int) -> dict:
    """False events per ordinary hour and miss rate of one label as its threshold moves (DET curve points)."""
    ord_hours = sum(r.hours for r in recordings if ordinary(r))
    positives = sum(t.label == label for r in recordings for t in r.truth)
    sw = sweep(recordings, scores, label, cfg, thresholds, min_hits)
    fa_h = [round(int(fa) / ord_hours, 4) if ord_hours else 0.0 for fa in sw.false_ordinary]
    miss = [round(1 - int(tp) / positives, 4) if positives else None for tp in sw.found]
    return {"thresholds": [round(float(t), 4) for t in thresholds], "false_per_hour": fa_h, "miss_rate": miss}


def reliability(recordings: Sequence[Recording], scores: Sequence[np.ndarray], label: str) -> dict:
    """Window-level reliability of a label's score against the streams' per-window truth."""
    s = np.concatenate([x for r, x in zip(recordings, scores) if r.targets is not None] or [np.zeros(0)])
    y = np.concatenate([r.targets == label for r in recordings if r.targets is not None] or [np.zeros(0, bool)])
    keep = np.concatenate([r.targets != "" for r in recordings if r.targets is not None] or [np.zeros(0, bool)])
    s, y = s[keep], y[keep]
    edges = np.linspace(0, 1, RELIABILITY_BINS + 1)
    b = np.clip(np.digitize(s, edges) - 1, 0, RELIABILITY_BINS - 1)
    out = {"bin_lo": edges[:-1].round(3).tolist(), "bin_hi": edges[1:].round(3).tolist(), "mean_score": [],
           "frac_positive": [], "count": []}
    for i in range(RELIABILITY_BINS):
        m = b == i
        out["count"].append(int(m.sum()))
        out["mean_score"].append(round(float(s[m].mean()), 4) if m.any() else None)
        out["frac_positive"].append(round(float(y[m].mean()), 4) if m.any() else None)
    return out


def truth_labels(recordings: Sequence[Recording]) -> set[str]:
    return {t.label for r in recordings for t in r.truth}

