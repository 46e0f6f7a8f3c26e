"""Detector: thresholds, class groups, one event per occurrence, start/end, loudness gate, compound rules."""
from __future__ import annotations

import numpy as np
import pytest

from edge_rt import config
from edge_rt.config import RuleConfig
from edge_rt.detector import Detector, Window
from edgert.errors import TaxonomyError
from edgert.yamnet.classmap import class_names

NAMES = class_names()
IDX = {n: i for i, n in enumerate(NAMES)}
CFG = config.load(calibrated=False, env={})  # the mechanics, at the hand-set defaults (not the calibration)
HOP = 0.48


def patch(onset_frame: int | None = None, offset_frame: int = 96) -> np.ndarray:
    """A log-mel patch that is quiet, or loud from onset_frame to offset_frame (exclusive)."""
    p = np.full((96, 64), -6.0, np.float32)
    if onset_frame is not None:
        p[onset_frame:offset_frame] = 0.0
    return p


def win(i: int, loud: dict[str, float] | None = None, dbfs: float = -20.0, p=None, head=None) -> Window:
    s = np.zeros(521, np.float32)
    for name, v in (loud or {}).items():
        s[IDX[name]] = v
    return Window(start_s=i * HOP, scores=s, patch=patch(0) if p is None else p, dbfs=dbfs, head=head)


def run(windows, cfg=CFG, rules=None):
    det = Detector(cfg.detector, cfg.rules if rules is None else rules, NAMES)
    started, ended, alerts = [], [], []
    for w in windows:
        out = det.push(w)
        started += out.started
        ended += out.ended
        alerts += out.alerts
    ended += det.flush().ended
    return started, ended, alerts


def test_one_event_per_occurrence_not_per_window():
    ws = [win(i) for i in range(5)] + [win(i, {"Glass": 0.8}) for i in range(5, 9)] + [win(i) for i in range(9, 20)]
    started, ended, _ = run(ws)
    assert [e.label for e in started] == ["glass_break"]
    assert len(ended) == 1 and ended[0] is started[0]


def test_group_score_is_the_max_of_its_classes():
    started, _, _ = run([win(0, {"Shatter": 0.3, "Glass": 0.1})])
    assert started[0].label == "glass_break" and started[0].score == pytest.approx(0.3)


def test_below_threshold_gives_no_event():
    thr = CFG.detector.labels["glass_break"].threshold
    started, _, _ = run([win(i, {"Glass": thr - 0.01}) for i in range(6)])
    assert started == []


def test_min_hits_needs_enough_hits_in_the_start_window():
    # siren needs 2 hits among 3 windows
    one = [win(0, {"Siren": 0.9})] + [win(i) for i in range(1, 8)]
    assert run(one)[0] == []
    two = [win(0, {"Siren": 0.9}), win(1), win(2, {"Siren": 0.9})] + [win(i) for i in range(3, 8)]
    started = run(two)[0]
    assert [e.label for e in started] == ["siren"]
    assert started[0].start_s == pytest.approx(0.0)  # the event starts at its first hit


def test_loudness_gate_silences_quiet_windows():
    gate = CFG.detector.loudness_gate_dbfs
    assert run([win(i, {"Glass": 0.9}, dbfs=gate - 1) for i in range(4)])[0] == []
    assert len(run([win(i, {"Glass": 0.9}, dbfs=gate + 1) for i in range(4)])[0]) == 1


def test_quiet_period_ends_the_event_and_a_new_occurrence_starts_a_new_one():
    n_quiet = int(np.ceil(CFG.detector.quiet_s / HOP))
    ws = [win(0, {"Glass": 0.9})] + [win(i) for i in range(1, 1 + n_quiet)] + [win(1 + n_quiet, {"Glass": 0.9})]
    started, ended, _ = run(ws)
    assert len(started) == 2 and len(ended) == 2


def test_a_gap_shorter_than_the_quiet_period_keeps_one_event():
    ws = [win(0, {"Glass": 0.9}), win(1), win(2, {"Glass": 0.9})]
    assert len(run(ws)[0]) == 1


def test_start_and_end_are_refined_to_the_frames_of_the_sound():
    ws = [win(10, {"Glass": 0.9}, p=patch(40, 70))] + [win(i) for i in range(11, 16)]
    started, ended, _ = run(ws)
    assert started[0].start_s == pytest.approx(10 * HOP + 0.40, abs=1e-6)
    assert ended[0].end_s == pytest.approx(10 * HOP + 0.70, abs=1e-6)


def test_max_event_length_splits_a_long_sound():
    cfg = config.load(overrides={"detector.max_event_s": 5.0}, calibrated=False, env={})
    ws = [win(i, {"Siren": 0.9}) for i in range(30)]
    started, ended, _ = run(ws, cfg)
    assert len(started) >= 2 and all(e.end_s - e.start_s <= 5.0 + 0.96 for e in ended)


def test_distress_fires_for_glass_then_shout_within_10s():
    ws = [win(i) for i in range(40)]
    ws[10] = win(10, {"Glass": 0.9})  # 4.8 s
    ws[16] = win(16, {"Shout": 0.9})  # 7.68 s
    _, _, alerts = run(ws)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.rule == "distress" and a.labels == ["glass_break", "shout"]
    assert a.start_s == pytest.approx(4.8) and len(a.event_ids) == 2


def test_distress_does_not_fire_when_more_than_10s_apart():
    ws = [win(i) for i in range(50)]
    ws[2] = win(2, {"Glass": 0.9})
    ws[40] = win(40, {"Screaming": 0.9})  # 18 s later
    assert run(ws)[2] == []


def test_distress_needs_two_different_labels():
    ws = [win(i) for i in range(30)]
    ws[2] = win(2, {"Glass": 0.9})
    ws[12] = win(12, {"Glass": 0.9})
    assert run(ws)[2] == []


def test_rules_are_data():
    rule = RuleConfig(name="bedlam", labels=["dog_bark", "car_horn", "siren"], count=3, window_s=5.0)
    ws = [win(i) for i in range(20)]
    ws[1] = win(1, {"Bark": 0.9})
    ws[3] = win(3, {"Toot": 0.9})
    ws[4], ws[5] = win(4, {"Siren": 0.9}), win(5, {"Siren": 0.9})
    alerts = run(ws, rules=[rule])[2]
    assert [a.rule for a in alerts] == ["bedlam"] and alerts[0].labels == ["car_horn", "dog_bark", "siren"]


def test_head_probability_can_carry_a_label_yamnet_misses():
    started = run([win(0, head={"shout": 0.95})] + [win(i) for i in range(1, 6)])[0]
    assert [e.label for e in started] == ["shout"]


def test_event_reports_top_classes_and_mean_embedding():
    ws = [Window(0.0, np.eye(521, dtype=np.float32)[IDX["Glass"]] * 0.9, patch(0), -20.0, np.ones(1024, np.float32))]
    ev = run(ws)[0][0]
    assert ev.classes[0] == ("Glass", pytest.approx(0.9))
    assert ev.mean_embedding.shape == (1024,) and ev.mean_embedding.dtype == np.float32


def test_unknown_class_name_in_config_is_a_clear_error():
    cfg = config.load(overrides={"detector.labels.glass_break.classes": ["Glass", "Glas shatter"]})
    with pytest.raises(TaxonomyError, match="Glas shatter"):
        Detector(cfg.detector, cfg.rules, NAMES)
