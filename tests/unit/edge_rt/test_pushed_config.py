"""A config pushed by the cloud: validated, applied without a restart, persisted, refused with its reason."""
import json
import re

import pytest

from edge_rt import config
from edge_rt.pushed import FILE, Push, PushedConfig


@pytest.fixture
def base():
    return config.load(env={})


def test_a_valid_push_is_applied_persisted_and_run_again_after_a_restart(tmp_path, base):
    applied = []
    p = PushedConfig(tmp_path, base)
    assert p.startup() is base and p.heartbeat() == {"config_version": 0}
    p.bind(applied.append)
    assert p.offer(Push(3, {"glass_break": 0.97, "scream": 0.5}))
    assert [d.labels["glass_break"].threshold for d in applied] == [0.97]
    assert applied[0].labels["scream"].threshold == 0.5
    assert applied[0].labels["shout"].threshold == base.detector.labels["shout"].threshold  # untouched
    assert p.heartbeat() == {"config_version": 3}
    assert json.loads((tmp_path / FILE).read_text()) == {"version": 3, "thresholds": {"glass_break": 0.97,
                                                                                      "scream": 0.5}}
    again = PushedConfig(tmp_path, base)
    cfg = again.startup()
    assert again.version == 3 and cfg.detector.labels["glass_break"].threshold == 0.97
    assert not p.offer(Push(3, {"glass_break": 0.2})) and len(applied) == 1  # the running version: nothing to do


@pytest.mark.parametrize("thresholds, why", [({"kazoo": 0.5}, r"labels this edge does not have: \['kazoo'\]"),
                                             ({"scream": 1.5}, r"not valid: .*less than or equal to 1"),
                                             ({"scream": 0.0}, r"not valid: .*greater than 0")])
def test_an_invalid_push_is_refused_with_its_reason_and_the_running_config_stays(tmp_path, base, thresholds, why):
    applied = []
    p = PushedConfig(tmp_path, base)
    p.bind(applied.append)
    assert p.offer(Push(1, {"glass_break": 0.9}))
    assert not p.offer(Push(2, thresholds))
    assert len(applied) == 1 and p.version == 1
    hb = p.heartbeat()
    assert hb["config_version"] == 1

    assert re.search(why, hb["config_error"]), hb["config_error"]
    assert json.loads((tmp_path / FILE).read_text())["version"] == 1  # the file still holds the running one
    assert p.offer(Push(3, {"glass_break": 0.8})) and "config_error" not in p.heartbeat()


def test_a_saved_push_that_no_longer_fits_is_reported_and_the_edges_own_config_runs(tmp_path, base):
    (tmp_path / FILE).write_text(json.dumps({"version": 5, "thresholds": {"retired_label": 0.5}}))
    p = PushedConfig(tmp_path, base)
    assert p.startup() is base and p.version == 0
    assert "retired_label" in p.heartbeat()["config_error"]


def test_a_retuned_detector_keeps_its_open_event_and_uses_the_new_threshold():
    import numpy as np

    from edge_rt.detector import Detector, Window
    from edgert import labels

    names = sorted({c for lc in labels.scoring().labels.values() for c in lc.classes})
    names += [f"class {i}" for i in range(521 - len(names))]
    cfg = config.load(env={}, calibrated=False)
    det = Detector(cfg.detector, cfg.rules, names)
    glass = names.index("Glass")

    def window(i: int, score: float) -> Window:
        s = np.full(521, 0.001, np.float32)
        s[glass] = score
        return Window(start_s=i * 0.48, scores=s, patch=None, dbfs=-20.0, onset=i * 0.48, offset=i * 0.48 + 0.96)

    started = det.push(window(0, 0.6)).started
    assert [e.label for e in started] == ["glass_break"]  # hand-set threshold 0.25
    raised = cfg.detector.model_copy(update={"labels": {**cfg.detector.labels, "glass_break": cfg.detector.labels[
        "glass_break"].model_copy(update={"threshold": 0.9})}})
    det.retune(raised)
    assert det.push(window(1, 0.6)).ended == []  # the open event goes on
    for i in range(2, 8):  # 0.6 is no longer a hit: the event ends after the quiet period, none starts
        out = det.push(window(i, 0.6))
        assert out.started == []
    assert det.flush().ended == [] and det.tracks[0].threshold == 0.9
