"""Calibration: the operating point keeps its false-event budget with a margin, takes the most recall, and the
YAML it writes is deterministic and loads as the detector's config."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from edge_rt import config
from edge_rt.config import EdgeConfig
from edge_rt.evaluation import calibrate as C
from edge_rt.evaluation.match import TruthSpan
from edge_rt.evaluation.material import Recording
from edge_rt.evaluation.windows import Analysed
from edgert.settings import merge
from edgert.yamnet.classmap import class_names

NAMES = class_names()
GLASS = NAMES.index("Glass")
HOP = 0.48


def recording(kind: str, glass: np.ndarray, truth=()) -> Recording:
    n = glass.size
    scores = np.zeros((n, 521), np.float32)
    scores[:, GLASS] = glass
    starts = (np.arange(n) * HOP).astype(np.float32)
    a = Analysed(n * HOP + 0.48, scores, np.zeros((n, 1024), np.float32), np.full(n, -20.0, np.float32),
                 starts, starts + 0.96)
    return Recording(kind, kind, a, list(truth))


@pytest.fixture
def material():
    rng = np.random.default_rng(0)
    quiet = rng.uniform(0, 0.1, 2000).astype(np.float32)
    for i in (100, 700, 1500):  # three ordinary sounds the AudioSet group half-believes are glass
        quiet[i:i + 2] = 0.5
    events = rng.uniform(0, 0.1, 600).astype(np.float32)
    truth = []
    for k, i in enumerate(range(20, 600, 30)):
        events[i:i + 2] = 0.8 if k % 4 else 0.3  # every fourth real break scores under the false alarms
        truth.append(TruthSpan("glass_break", i * HOP, i * HOP + 0.5))
    return [recording("ordinary", quiet), recording("events", events, truth)]


def base_cfg() -> EdgeConfig:
    return config.load(calibrated=False, env={})


def test_the_threshold_clears_every_false_alarm_with_the_margin_and_keeps_the_rest(material):
    c = C.choose("glass_break", material, base_cfg(), NAMES, None, allowed=0)
    assert 0.5 + C.MARGIN < c.threshold <= 0.8
    assert c.false_events == 0 and c.false_at_margin == 0
    assert c.positives == 20 and c.found == 15 and c.recall == pytest.approx(0.75)
    assert (c.fusion, c.head_weight) == ("max", 0.0)  # no head given: the group alone


def test_a_larger_budget_buys_the_quieter_breaks(material):
    c = C.choose("glass_break", material, base_cfg(), NAMES, None, allowed=3)
    assert c.threshold <= 0.3 and c.recall == pytest.approx(1.0) and c.false_events <= 3


def test_a_label_without_events_keeps_its_hand_set_threshold_unless_the_budget_demands_more(material):
    cfg = base_cfg()
    c = C.choose("gunshot", material, cfg, NAMES, None, allowed=0)
    assert c.threshold == pytest.approx(cfg.detector.labels["gunshot"].threshold) and c.recall is None


def test_the_yaml_is_deterministic_and_loads_as_the_shipped_detector(material, tmp_path):
    cfg = base_cfg()
    choices = [C.choose(lab, material, cfg, NAMES, None, allowed=0) for lab in ("glass_break", "gunshot")]
    prov = C.provenance(material, choices, 7, None, "0" * 64, {"distress_alerts_per_hour": 0.0})
    text = C.render(choices, prov)
    assert text == C.render(choices, C.provenance(material, choices, 7, None, "0" * 64,
                                                  {"distress_alerts_per_hour": 0.0}))
    doc = yaml.safe_load(text)
    assert doc["calibration"]["seed"] == 7
    merged = merge(config.defaults(calibrated=False), {"detector": doc["detector"]})
    loaded = EdgeConfig.model_validate(merged)
    assert loaded.detector.labels["glass_break"].threshold == pytest.approx(round(choices[0].threshold, 3))
    path = C.write(text, tmp_path / "calibration.yaml")
    assert path.read_text() == text


def test_the_shipped_calibration_names_the_head_and_budget_it_was_made_for():
    shipped = config.calibration()
    assert shipped, "edgert/calibration.yaml is missing: run `python -m edge_rt calibrate`"
    prov = shipped["calibration"]
    assert prov["budget"]["false_per_hour"] == C.TARGET_FALSE_PER_HOUR
    assert len(prov["head_sha256"]) == 64
    for label in ("glass_break", "scream", "shout"):
        assert label in shipped["detector"]["labels"]
