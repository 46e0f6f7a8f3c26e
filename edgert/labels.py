"""The label taxonomy and label scoring, which the edge's detector and the cloud's verifier share.

The taxonomy (`taxonomy.yaml`, with `calibration.yaml` from `python -m edge_rt calibrate` laid over it) names
each label's AudioSet classes, its operating point, the head's weight and veto rule, and the compound rules.

Label scoring turns YAMNet class scores and the trained head's probabilities into one score per label. This is
the one place where AudioSet class groups, the head and the veto rule meet. The detector, `classify`,
`run`, `evaluate`, `calibrate` and the cloud verifier all score labels through `LabelScorer`, so the same
window gets the same label scores everywhere.

For each label with AudioSet group score g (the max of its classes' scores) and head probability h:
- `fusion: max`   -> max(g, w * h)
- `fusion: blend` -> (1 - w) * g + w * h
where w is the label's `head_weight` (or the detector's). Where the head has no such label, or one of the label's
`head_veto` labels has an AudioSet group score of at least `head_veto_min` in that window, the score is g alone.
"""
from __future__ import annotations

from importlib import resources
from typing import Literal, Mapping, Optional, Sequence

import numpy as np
from pydantic import Field, model_validator

from edgert.errors import TaxonomyError
from edgert.settings import Strict, merge, parse_yaml

FUSIONS = ("max", "blend")
TAXONOMY_FILE = "taxonomy.yaml"
CALIBRATION_FILE = "calibration.yaml"
DISTRESS_RULE = "distress"


class LabelConfig(Strict):
    classes: list[str] = Field(min_length=1, description="AudioSet display names whose max score is the label's score")
    threshold: float = Field(gt=0.0, le=1.0, description="score at or above which a window is a hit")
    min_hits: int = Field(1, ge=1, le=10, description="hits within detector.start_window windows to start an event")
    head_veto: list[str] = Field(default_factory=list, description=(
        "labels whose own AudioSet group score, at or above head_veto_min in a window, stops the trained "
        "head's probability for this label from counting there (the head confuses a siren's tail with a scream)"))
    fusion: Literal["max", "blend"] = Field("max", description=(
        "how the head's probability h joins the AudioSet group score g: max(g, w*h) or (1-w)*g + w*h"))
    head_weight: Optional[float] = Field(None, ge=0.0, le=1.0, description=(
        "w for this label; unset: the taxonomy's head_weight"))


class RuleConfig(Strict):
    name: str = Field(min_length=1, description="alert name")
    labels: list[str] = Field(min_length=1, description="labels that take part")
    count: int = Field(2, ge=1, le=10, description="distinct labels needed")
    window_s: float = Field(10.0, gt=0.0, le=3600.0, description="all within this many seconds")


class ScoringConfig(Strict):
    """What label scoring needs: the labels and how the head joins their AudioSet groups. The edge's
    DetectorConfig extends it with the detector's own mechanics."""

    head_weight: float = Field(1.0, ge=0.0, le=1.0, description="weight of the trained head's probability")
    head_veto_min: float = Field(0.3, ge=0.0, le=1.0, description="AudioSet group score at which a veto applies")
    labels: dict[str, LabelConfig] = Field(min_length=1, description="label -> AudioSet classes and threshold")

    @model_validator(mode="after")
    def _vetoes_name_known_labels(self):
        known = set(self.labels)
        for label, lc in self.labels.items():
            if set(lc.head_veto) - known:
                raise ValueError(f"label {label!r} head_veto names unknown labels {sorted(set(lc.head_veto) - known)}")
        return self


def _read(name: str) -> dict:
    ref = resources.files("edgert").joinpath(name)
    return (parse_yaml(ref.read_text()) or {}) if ref.is_file() else {}


def calibration_path():
    """Where `python -m edge_rt calibrate` writes, and everyone reads, the calibrated operating points."""
    return resources.files("edgert").joinpath(CALIBRATION_FILE)


def calibration() -> dict:
    """The shipped calibration: {"calibration": provenance, "detector": {"labels": ...}}, or {} when absent."""
    return _read(CALIBRATION_FILE)


def shipped(calibrated: bool = True) -> dict:
    """The shipped taxonomy as a mapping: {"head_weight", "head_veto_min", "labels", "rules"}, with, unless
    `calibrated` is False, the calibrated operating points laid over the labels."""
    base = _read(TAXONOMY_FILE)
    if calibrated:
        over = {k: v for k, v in calibration().get("detector", {}).items() if k in ("head_weight", "head_veto_min",
                                                                                     "labels")}
        base = merge(base, over)
    return base


def scoring(calibrated: bool = True) -> ScoringConfig:
    """The shipped taxonomy's scoring settings, validated."""
    data = shipped(calibrated)
    return ScoringConfig.model_validate({k: data[k] for k in ("head_weight", "head_veto_min", "labels") if k in data})


def distress_labels() -> list[str]:
    """The labels of the shipped compound `distress` rule (the events the cloud always verifies)."""
    for rule in shipped(calibrated=False).get("rules", []):
        if rule.get("name") == DISTRESS_RULE:
            return list(rule["labels"])
    raise TaxonomyError(f"{TAXONOMY_FILE} has no {DISTRESS_RULE!r} rule")


class LabelScorer:
    """Scores windows for the labels of a detector config, in the config's label order (`self.labels`)."""

    def __init__(self, cfg: ScoringConfig, class_names: Sequence[str]):
        index = {n: i for i, n in enumerate(class_names)}
        self.labels = list(cfg.labels)
        pos = {label: i for i, label in enumerate(self.labels)}
        self.idx: list[np.ndarray] = []
        for label, lc in cfg.labels.items():
            unknown = [c for c in lc.classes if c not in index]
            if unknown:
                raise TaxonomyError(f"label {label!r} names classes YAMNet does not have: {unknown}")
            self.idx.append(np.array([index[c] for c in lc.classes]))
        self.weight = np.array([cfg.head_weight if lc.head_weight is None else lc.head_weight
                                for lc in cfg.labels.values()], np.float32)  # float32[L]
        self.blend = np.array([lc.fusion == "blend" for lc in cfg.labels.values()])  # bool[L]
        self.veto = [np.array([pos[v] for v in lc.head_veto], np.int64) for lc in cfg.labels.values()]
        self.veto_min = cfg.head_veto_min
        # The same, for a whole batch in a few calls: every label's classes side by side and where each label's
        # run starts (np.maximum.reduceat), and bool[L,L] "label k vetoes label j's head".
        self._classes = np.concatenate(self.idx) if self.idx else np.zeros(0, np.int64)
        self._starts = np.cumsum([0] + [i.size for i in self.idx[:-1]])
        self._runs = all(i.size for i in self.idx)  # reduceat needs every run non-empty
        self._vetoes = np.zeros((len(self.labels), len(self.labels)), bool)
        for j, veto in enumerate(self.veto):
            self._vetoes[veto, j] = True

    def groups(self, scores: np.ndarray) -> np.ndarray:
        """float32[N,521] class scores -> float32[N,L] AudioSet group scores (max over each label's classes)."""
        scores = np.asarray(scores, np.float32).reshape(-1, scores.shape[-1])
        if self._runs and len(scores):
            return np.maximum.reduceat(scores[:, self._classes], self._starts, axis=1)
        return np.stack([scores[:, i].max(axis=1) for i in self.idx], axis=1)

    def head_matrix(self, head: Optional[Sequence[Optional[Mapping[str, float]]]], n: int) -> np.ndarray:
        """Per-window {label: probability} (or None) -> float32[N,L], NaN where the head has no opinion."""
        out = np.full((n, len(self.labels)), np.nan, np.float32)
        for row, probs in enumerate(head or ()):
            if probs:
                for j, label in enumerate(self.labels):
                    if label in probs:
                        out[row, j] = probs[label]
        return out

    def fuse(self, groups: np.ndarray, head: Optional[np.ndarray]) -> np.ndarray:
        """float32[N,L] group scores and float32[N,L] head probabilities (NaN: none) -> float32[N,L] scores."""
        if head is None:
            return groups.astype(np.float32, copy=True)
        usable = ~np.isnan(head)
        if self._vetoes.any():  # label j's head is vetoed where any label k that vetoes it scores >= veto_min
            usable &= ~((groups >= self.veto_min)[:, :, None] & self._vetoes).any(axis=1)
        h = np.where(usable, head, 0.0)
        w = self.weight
        fused = np.where(self.blend, (1.0 - w) * groups + w * h, np.maximum(groups, w * h))
        return np.where(usable, fused, groups).astype(np.float32)

    def __call__(self, scores: np.ndarray, head: Optional[Sequence[Optional[Mapping[str, float]]]] = None
                 ) -> np.ndarray:
        """float32[N,521] class scores and per-window head probabilities -> float32[N,L] label scores."""
        g = self.groups(scores)
        return self.fuse(g, self.head_matrix(head, len(g)) if head is not None else None)

    def as_dict(self, row: np.ndarray) -> dict[str, float]:
        """float32[L] -> {label: score}."""
        return {label: float(v) for label, v in zip(self.labels, row)}
