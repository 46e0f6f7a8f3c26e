"""edgert.labels: the one taxonomy the edge's detector and the cloud's verifier read, calibrated or not."""
import pytest

from edge_rt import config
from edgert import labels
from edgert.labels import ScoringConfig


def test_the_edge_config_takes_its_labels_and_rules_from_the_core_taxonomy():
    for calibrated in (True, False):
        taxonomy = labels.shipped(calibrated)
        cfg = config.load(env={}, calibrated=calibrated)
        assert {k: v.model_dump(exclude_unset=True) for k, v in cfg.detector.labels.items()} == {
            k: v for k, v in taxonomy["labels"].items()}
        assert [r.model_dump() for r in cfg.rules] == taxonomy["rules"]


def test_calibration_lays_operating_points_over_the_hand_set_ones_and_keeps_the_classes():
    raw, cal = labels.scoring(calibrated=False), labels.scoring()
    calibrated = labels.calibration()["detector"]["labels"]
    assert calibrated, "edgert/calibration.yaml holds no labels"
    for label, point in calibrated.items():
        assert cal.labels[label].threshold == pytest.approx(point["threshold"])
        assert cal.labels[label].classes == raw.labels[label].classes
    # glass_break's hand-set threshold (taxonomy.yaml) is not its calibrated one
    assert raw.labels["glass_break"].threshold != cal.labels["glass_break"].threshold


def test_the_distress_labels_are_those_of_the_shipped_distress_rule():
    rule = next(r for r in labels.shipped()["rules"] if r["name"] == "distress")
    assert labels.distress_labels() == rule["labels"] == ["glass_break", "scream", "shout", "gunshot"]


def test_a_veto_naming_an_unknown_label_is_refused():
    with pytest.raises(ValueError, match=r"head_veto names unknown labels \['sirne'\]"):
        ScoringConfig.model_validate({"labels": {"scream": {"classes": ["Screaming"], "threshold": 0.3,
                                                            "head_veto": ["sirne"]}}})


def test_the_cloud_verifies_the_taxonomys_distress_labels_by_default():
    from cloud_svc import config as cloud_config

    assert cloud_config.load(env={}).verify.distress_labels == labels.distress_labels()
