"""Unit tests for edgert.labels.LabelScorer: AudioSet group max, head fusion (max, blend) and the head veto.

Every expected score is worked out by hand from the numbers put in the window.
"""
from __future__ import annotations

import numpy as np
import pytest

from edge_rt.config import DetectorConfig
from edge_rt.detector import Detector, Window
from edgert.errors import TaxonomyError
from edgert.labels import LabelScorer
from edgert.yamnet.classmap import class_names

NAMES = class_names()
IDX = {n: i for i, n in enumerate(NAMES)}


def make_cfg(**detector) -> DetectorConfig:
    labels = {
        "glass_break": {"classes": ["Glass", "Shatter", "Breaking"], "threshold": 0.25},
        "scream": {"classes": ["Screaming"], "threshold": 0.3, "head_veto": ["siren"]},
        "siren": {"classes": ["Siren", "Civil defense siren"], "threshold": 0.4},
        "shout": {"classes": ["Shout", "Yell"], "threshold": 0.3, "fusion": "blend", "head_weight": 0.4},
        "baby_cry": {"classes": ["Baby cry, infant cry"], "threshold": 0.4, "head_weight": 0.5},
    }
    return DetectorConfig.model_validate({"labels": labels, "head_weight": 0.8, "head_veto_min": 0.3, **detector})


CFG = make_cfg()
LABELS = ["glass_break", "scream", "siren", "shout", "baby_cry"]


def row(values: dict[str, float]) -> np.ndarray:
    """float32[1,521] class scores with the named AudioSet classes set."""
    s = np.zeros((1, 521), np.float32)
    for name, v in values.items():
        s[0, IDX[name]] = v
    return s


@pytest.fixture(scope="module")
def scorer() -> LabelScorer:
    return LabelScorer(CFG, NAMES)


def test_labels_come_in_config_order(scorer):
    assert scorer.labels == LABELS


def test_group_score_is_the_max_of_the_labels_classes(scorer):
    s = row({"Glass": 0.1, "Shatter": 0.6, "Breaking": 0.3, "Screaming": 0.2, "Siren": 0.05,
             "Civil defense siren": 0.15, "Speech": 0.99})
    g = scorer.groups(s)
    assert g.shape == (1, 5) and g.dtype == np.float32
    np.testing.assert_allclose(g[0], [0.6, 0.2, 0.15, 0.0, 0.0], atol=1e-7)


def test_groups_score_many_windows_at_once(scorer):
    s = np.zeros((3, 521), np.float32)
    s[0, IDX["Glass"]], s[1, IDX["Shatter"]], s[2, IDX["Yell"]] = 0.5, 0.7, 0.9
    g = scorer.groups(s)
    np.testing.assert_allclose(g[:, 0], [0.5, 0.7, 0.0], atol=1e-7)
    np.testing.assert_allclose(g[:, 3], [0.0, 0.0, 0.9], atol=1e-7)


def test_max_fusion_is_the_larger_of_group_and_weighted_head(scorer):
    s = row({"Glass": 0.3, "Siren": 0.2})
    out = scorer(s, [{"glass_break": 0.5, "siren": 0.1}])[0]
    assert out[0] == pytest.approx(max(0.3, 0.8 * 0.5))  # head wins: 0.4
    assert out[2] == pytest.approx(max(0.2, 0.8 * 0.1))  # group wins: 0.2


def test_a_labels_own_head_weight_overrides_the_detectors(scorer):
    out = scorer(row({"Baby cry, infant cry": 0.1}), [{"baby_cry": 0.9}])[0]
    assert out[4] == pytest.approx(0.5 * 0.9)


def test_blend_fusion_mixes_group_and_head_by_the_weight(scorer):
    out = scorer(row({"Shout": 0.2, "Yell": 0.5}), [{"shout": 0.9}])[0]
    assert out[3] == pytest.approx(0.6 * 0.5 + 0.4 * 0.9)  # 0.66


def test_blend_can_lower_a_high_group_score_when_the_head_disagrees(scorer):
    out = scorer(row({"Yell": 0.8}), [{"shout": 0.0}])[0]
    assert out[3] == pytest.approx(0.6 * 0.8)


def test_a_veto_label_at_head_veto_min_turns_the_head_off_for_the_vetoed_label_only(scorer):
    s = row({"Siren": 0.3, "Screaming": 0.1, "Glass": 0.05})  # siren group exactly at head_veto_min
    out = scorer(s, [{"scream": 0.9, "glass_break": 0.9, "siren": 0.9}])[0]
    assert out[1] == pytest.approx(0.1)  # scream falls back to its group score
    assert out[0] == pytest.approx(0.8 * 0.9)  # glass_break has no veto: head still counts
    assert out[2] == pytest.approx(0.8 * 0.9)  # the vetoing label itself keeps its head


def test_a_veto_label_below_head_veto_min_leaves_the_head_on(scorer):
    out = scorer(row({"Siren": 0.29, "Screaming": 0.1}), [{"scream": 0.9}])[0]
    assert out[1] == pytest.approx(0.8 * 0.9)


def test_the_veto_reads_the_veto_labels_group_not_its_fused_score(scorer):
    # the head says siren 0.9 (fused siren 0.72) but the AudioSet siren group is 0.1: no veto
    out = scorer(row({"Siren": 0.1, "Screaming": 0.2}), [{"scream": 0.9, "siren": 0.9}])[0]
    assert out[1] == pytest.approx(0.8 * 0.9)


def test_a_label_the_head_does_not_know_gets_its_group_score(scorer):
    out = scorer(row({"Glass": 0.3, "Yell": 0.4}), [{"siren": 0.9}])[0]
    assert out[0] == pytest.approx(0.3) and out[3] == pytest.approx(0.4)  # blend would have given 0.24 for shout


def test_nan_in_the_head_matrix_means_no_opinion(scorer):
    g = np.array([[0.3, 0.2, 0.1, 0.4, 0.05]], np.float32)
    head = np.full((1, 5), np.nan, np.float32)
    head[0, 0] = 0.0
    out = scorer.fuse(g, head)
    np.testing.assert_allclose(out[0], [0.3, 0.2, 0.1, 0.4, 0.05], atol=1e-7)
    head[0, 3] = 0.0  # shout blends with 0: (1 - 0.4) * 0.4
    assert scorer.fuse(g, head)[0, 3] == pytest.approx(0.24)


def test_a_window_without_head_probabilities_scores_as_groups(scorer):
    s = row({"Glass": 0.3, "Yell": 0.4})
    np.testing.assert_allclose(scorer(s, [None])[0], [0.3, 0.0, 0.0, 0.4, 0.0], atol=1e-7)
    np.testing.assert_allclose(scorer(s, [{}])[0], [0.3, 0.0, 0.0, 0.4, 0.0], atol=1e-7)


def test_call_without_a_head_equals_the_group_scores(scorer):
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 1, (4, 521)).astype(np.float32)
    expected = np.stack([[s[n, [IDX[c] for c in CFG.labels[label].classes]].max() for label in LABELS]
                         for n in range(4)])
    out = scorer(s)
    assert out.dtype == np.float32 and out.shape == (4, 5)
    np.testing.assert_array_equal(out, expected.astype(np.float32))


def test_as_dict_names_each_score_by_label(scorer):
    assert scorer.as_dict(np.array([0.1, 0.2, 0.3, 0.4, 0.5], np.float32)) == pytest.approx(
        {"glass_break": 0.1, "scream": 0.2, "siren": 0.3, "shout": 0.4, "baby_cry": 0.5})


def test_a_class_yamnet_does_not_have_is_a_config_error():
    cfg = DetectorConfig.model_validate({"labels": {"x": {"classes": ["Glass", "Kazoo solo"], "threshold": 0.5}}})
    with pytest.raises(TaxonomyError, match="Kazoo solo"):
        LabelScorer(cfg, NAMES)


def test_detector_label_scores_agree_with_the_label_scorer():
    s = row({"Siren": 0.35, "Screaming": 0.1, "Glass": 0.2, "Shout": 0.5})
    head = {"scream": 0.9, "glass_break": 0.6, "shout": 0.1}
    w = Window(start_s=0.0, scores=s[0], patch=np.zeros((96, 64), np.float32), dbfs=-20.0, head=head)
    got = Detector(CFG, [], NAMES).label_scores(w)
    expected = [max(0.2, 0.8 * 0.6), 0.1, 0.35, 0.6 * 0.5 + 0.4 * 0.1, 0.0]  # scream vetoed by siren 0.35
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_array_equal(got, LabelScorer(CFG, NAMES)(s, [head])[0])
    assert w.labels is got  # computed once and kept on the window


def test_a_batch_is_scored_as_each_label_and_veto_taken_one_by_one():
    """groups() and fuse() take a batch in a few whole-array calls: the same float32 scores as a max per label
    and a veto per label, for the shipped scoring and random batches with and without head opinions."""
    from edgert import labels as shipped

    for cfg in (make_cfg(), shipped.scoring()):
        scorer = LabelScorer(cfg, NAMES)
        rng = np.random.default_rng(5)
        for _ in range(300):
            n = int(rng.integers(1, 17))
            scores = (rng.uniform(0, 1, (n, len(NAMES))) ** rng.uniform(1, 8)).astype(np.float32)
            head = rng.uniform(0, 1, (n, len(scorer.labels))).astype(np.float32)
            head[rng.uniform(size=head.shape) < 0.3] = np.nan
            groups = np.stack([scores[:, i].max(axis=1) for i in scorer.idx], axis=1)
            usable = ~np.isnan(head)
            for j, veto in enumerate(scorer.veto):
                if veto.size:
                    usable[:, j] &= ~(groups[:, veto] >= scorer.veto_min).any(axis=1)
            h, w = np.where(usable, head, 0.0), scorer.weight
            fused = np.where(scorer.blend, (1.0 - w) * groups + w * h, np.maximum(groups, w * h))
            want = np.where(usable, fused, groups).astype(np.float32)
            got = scorer.groups(scores)
            assert got.dtype == np.float32 and np.array_equal(got, groups)
            assert np.array_equal(scorer.fuse(got, head), want)
