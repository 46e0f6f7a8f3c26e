"""Unit tests for edge_rt.evaluation.match: detections against truth, and the fast replica of event starts.

`event_starts` is held equal to the real `Detector` on random score sequences: the detector is fed Windows
whose onset is given and whose loudness straddles the gate, and the start times of its events are compared.
"""
from __future__ import annotations

import numpy as np
import pytest

from edge_rt import config
from edge_rt.config import DetectorConfig
from edge_rt.detector import HOP_S, Detector, Window
from edge_rt.evaluation.match import Detection, TruthSpan, event_starts, match
from edgert.yamnet.classmap import class_names

NAMES = class_names()
IDX = {n: i for i, n in enumerate(NAMES)}
LABEL = "glass_break"


# ---------------------------------------------------------------- match

def test_a_detection_0_9_s_before_a_truth_start_is_found():
    t = TruthSpan("scream", 10.0, 11.0)
    m = match([Detection("scream", 9.1)], [t])
    assert [tt for tt, _ in m.tp] == [t] and m.missed == [] and m.false == [] and m.duplicates == []


def test_a_detection_1_1_s_before_a_truth_start_is_false_and_the_truth_missed():
    t = TruthSpan("scream", 10.0, 11.0)
    d = Detection("scream", 8.9)
    m = match([d], [t])
    assert m.tp == [] and m.false == [d] and m.missed == [t]


def test_a_detection_up_to_1_s_after_a_truth_end_is_found_but_not_later():
    t = TruthSpan("siren", 10.0, 12.0)
    assert len(match([Detection("siren", 12.9)], [t]).tp) == 1
    assert match([Detection("siren", 13.1)], [t]).tp == []


def test_a_detection_inside_a_long_truth_is_found():
    t = TruthSpan("siren", 10.0, 40.0)
    d = Detection("siren", 25.0)
    m = match([d], [t])
    assert m.tp == [(t, d)] and m.missed == []


def test_a_second_detection_inside_a_found_truth_is_a_duplicate_not_a_second_tp():
    t = TruthSpan("siren", 10.0, 40.0)
    first, second = Detection("siren", 10.2), Detection("siren", 30.0)
    m = match([second, first], [t])  # given out of order: matching goes in time order
    assert m.tp == [(t, first)] and m.duplicates == [second] and m.false == []
    assert m.count("siren") == {"tp": 1, "fn": 0, "dup": 1, "fp": 0}


def test_a_detection_of_the_wrong_label_is_false_and_the_truth_is_missed():
    t = TruthSpan("scream", 10.0, 11.0)
    d = Detection("shout", 10.0)
    m = match([d], [t])
    assert m.tp == [] and m.false == [d] and m.missed == [t]
    assert m.count("scream") == {"tp": 0, "fn": 1, "dup": 0, "fp": 0}
    assert m.count("shout") == {"tp": 0, "fn": 0, "dup": 0, "fp": 1}


def test_two_nearby_truths_are_each_found_by_their_own_detection():
    a, b = TruthSpan("glass_break", 10.0, 10.5), TruthSpan("glass_break", 11.0, 11.5)
    da, db = Detection("glass_break", 10.1), Detection("glass_break", 11.1)
    m = match([da, db], [a, b])
    assert m.tp == [(a, da), (b, db)] and m.missed == []


# ---------------------------------------------------------------- event_starts == Detector

def single_label_cfg(min_hits: int, max_event_s: float, quiet_s: float = 1.0, start_window: int = 3
                     ) -> DetectorConfig:
    base = config.load(env={}).detector
    data = base.model_dump()
    lc = dict(data["labels"][LABEL], min_hits=min_hits, head_veto=[])
    data.update(labels={LABEL: lc}, max_event_s=max_event_s, quiet_s=quiet_s, start_window=start_window)
    return DetectorConfig.model_validate(data)


def random_track(seed: int, n: int, threshold: float, gate: float):
    """Scores with bursts (runs of mostly-high scores) over a low floor, loudness on both sides of the gate,
    and per-window onsets inside each window."""
    rng = np.random.default_rng(seed)
    score = rng.uniform(0.0, 0.8 * threshold, n).astype(np.float32)
    i = int(rng.integers(0, 10))
    while i < n:
        length = int(rng.integers(1, 25))
        density = rng.uniform(0.4, 1.0)
        burst = np.where(rng.uniform(size=length) < density, rng.uniform(threshold, 1.0, length),
                         rng.uniform(0.0, threshold, length))
        score[i:i + length] = burst[: n - i]
        i += length + int(rng.integers(1, 15))
    score[rng.uniform(size=n) < 0.02] = threshold  # exactly at the threshold is a hit
    dbfs = np.where(rng.uniform(size=n) < 0.85, rng.uniform(gate, gate + 40, n), rng.uniform(gate - 30, gate, n))
    dbfs[rng.uniform(size=n) < 0.02] = gate  # exactly at the gate is loud
    onsets = (np.arange(n) * HOP_S + rng.uniform(0.0, 0.9, n)).astype(np.float32)
    return score, dbfs, onsets


def detector_starts(cfg: DetectorConfig, score, dbfs, onsets) -> list[float]:
    det = Detector(cfg, [], NAMES)
    starts = []
    for i in range(len(score)):
        s = np.zeros(521, np.float32)
        s[IDX["Glass"]] = score[i]
        w = Window(start_s=i * HOP_S, scores=s, patch=np.zeros((96, 64), np.float32), dbfs=float(dbfs[i]),
                   onset=float(onsets[i]), offset=float(onsets[i]) + 0.05)
        starts += [e.start_s for e in det.push(w).started]
    det.flush()
    return starts


CASES = [(1, 60.0, 1.0, 3), (2, 60.0, 1.0, 3), (1, 2.0, 1.0, 3), (2, 2.5, 1.0, 3), (2, 60.0, 0.0, 4),
         (3, 4.0, 2.0, 5)]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("min_hits,max_event_s,quiet_s,start_window", CASES)
def test_event_starts_equals_the_detectors_event_starts(seed, min_hits, max_event_s, quiet_s, start_window):
    cfg = single_label_cfg(min_hits, max_event_s, quiet_s, start_window)
    threshold, gate = cfg.labels[LABEL].threshold, cfg.loudness_gate_dbfs
    score, dbfs, onsets = random_track(seed * 101 + min_hits, 300, threshold, gate)
    expected = detector_starts(cfg, score, dbfs, onsets)
    hit = (score >= threshold) & (dbfs >= gate)
    got = event_starts(hit, onsets, min_hits, start_window, quiet_s, max_event_s)
    assert len(expected) > 3
    assert got == expected


def test_a_short_max_event_s_splits_a_long_run_of_hits_in_both():
    cfg = single_label_cfg(1, 2.0)
    n = 30
    score = np.full(n, 0.9, np.float32)
    dbfs = np.full(n, -20.0)
    onsets = (np.arange(n) * HOP_S).astype(np.float32)
    expected = detector_starts(cfg, score, dbfs, onsets)
    # a window ends the event once it reaches 2.0 s from the start: i*0.48 + 0.96 >= start + 2.0, i.e. 3 windows
    # after the start; the next window opens a new event, so starts are 4 windows (1.92 s) apart
    assert expected == pytest.approx([k * 4 * HOP_S for k in range(8)], abs=1e-5)
    assert event_starts(score >= 0.5, onsets, 1, 3, 1.0, 2.0) == expected


def test_event_starts_of_no_hits_is_empty():
    assert event_starts(np.zeros(50, bool), np.zeros(50, np.float32), 1, 3, 1.0, 60.0) == []


def test_min_hits_two_starts_at_the_first_hit_of_the_pair():
    hit = np.zeros(20, bool)
    hit[[5, 7]] = True  # two hits within a start window of 3
    hit[[12, 15]] = True  # too far apart
    onsets = (np.arange(20) * HOP_S + 0.1).astype(np.float32)
    assert event_starts(hit, onsets, 2, 3, 1.0, 60.0) == [pytest.approx(5 * HOP_S + 0.1, abs=1e-6)]
