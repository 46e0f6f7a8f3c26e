"""Event-level scoring: detections against truth, and the detector's event starts for one label, fast.

A detection is found (tp) when it starts within TOLERANCE_S of a truth event of the same label (of its span);
each truth is found at most once. A second detection inside a truth already found is a duplicate; everything
else is a false event.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from edge_rt.detector import HOP_S, WINDOW_S

TOLERANCE_S = 1.0


@dataclass(frozen=True)
class Detection:
    label: str
    start_s: float
    score: float = 0.0


@dataclass(frozen=True)
class TruthSpan:
    label: str
    start_s: float
    end_s: float


@dataclass
class Matched:
    tp: list[tuple[TruthSpan, Detection]]
    missed: list[TruthSpan]
    duplicates: list[Detection]  # inside a truth of their label that was already found
    false: list[Detection]  # near no truth of their label

    def count(self, label: str) -> dict[str, int]:
        return {"tp": sum(t.label == label for t, _ in self.tp), "fn": sum(t.label == label for t in self.missed),
                "dup": sum(d.label == label for d in self.duplicates), "fp": sum(d.label == label for d in self.false)}


def near(d: Detection, t: TruthSpan, tol: float = TOLERANCE_S) -> bool:
    return t.start_s - tol <= d.start_s <= t.end_s + tol


def match(detections: Iterable[Detection], truth: Sequence[TruthSpan], tol: float = TOLERANCE_S) -> Matched:
    """Greedy in time: each detection takes the earliest unfound truth of its label that it is near."""
    found: set[int] = set()
    out = Matched([], [], [], [])
    for d in sorted(detections, key=lambda d: d.start_s):
        cands = [i for i, t in enumerate(truth) if t.label == d.label and near(d, t, tol)]
        fresh = [i for i in cands if i not in found]
        if fresh:
            i = min(fresh, key=lambda i: truth[i].start_s)
            found.add(i)
            out.tp.append((truth[i], d))
        elif cands:
            out.duplicates.append(d)
        else:
            out.false.append(d)
    out.missed = [t for i, t in enumerate(truth) if i not in found]
    return out


def event_starts(hit: np.ndarray, onsets: np.ndarray, min_hits: int, start_window: int, quiet_s: float,
                 max_event_s: float) -> list[float]:
    """Start times of the events one detector track opens, given bool[N] hits (score >= threshold and loud
    enough) and float32[N] onsets of windows at i * hop. The same state machine as `Detector.push`, without
    building windows, so calibration can try thousands of operating points (a test holds the two equal)."""
    quiet_windows = max(1, math.ceil(quiet_s / HOP_S))
    recent: list[int] = []  # the last start_window windows' indices that hit (None-free deque)
    starts: list[float] = []
    active_start = None
    misses = 0
    idx = np.flatnonzero(hit)
    if idx.size == 0:
        return starts
    hit_list = hit.tolist()
    i = int(idx[0])
    n = len(hit_list)
    while i < n:
        h = hit_list[i]
        if active_start is None:
            if not h:
                # fast-forward to the next hit: misses only age the recent window
                nxt = np.searchsorted(idx, i, side="right")
                if nxt >= idx.size:
                    break
                i = int(idx[nxt])
                continue
            recent = [j for j in recent if j > i - start_window] + [i]
            if len(recent) >= min_hits:
                active_start = float(onsets[recent[0]])
                starts.append(active_start)
                recent = []
                misses = 0
            i += 1
            continue
        misses = 0 if h else misses + 1
        too_long = i * HOP_S + WINDOW_S - active_start >= max_event_s
        if misses >= quiet_windows or too_long:
            active_start = None
            misses = 0
            recent = []
        i += 1
    return starts
