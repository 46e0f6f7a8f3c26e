"""Label scoring: YAMNet class scores and the trained head's probabilities -> one score per detector label.

This is the one place where AudioSet class groups, the head and the veto rule meet. The detector, `classify`,
`run`, `evaluate`, `calibrate` and the cloud verifier all score labels through `LabelScorer`, so the same
window gets the same label scores everywhere.

For each label with AudioSet group score g (the max of its classes' scores) and head probability h:
- `fusion: max`   -> max(g, w * h)
- `fusion: blend` -> (1 - w) * g + w * h
where w is the label's `head_weight` (or the detector's). Where the head has no such label, or one of the label's
`head_veto` labels has an AudioSet group score of at least `head_veto_min` in that window, the score is g alone.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from edge_rt.config import DetectorConfig
from edge_rt.errors import ConfigError

FUSIONS = ("max", "blend")


class LabelScorer:
    """Scores windows for the labels of a detector config, in the config's label order (`self.labels`)."""

    def __init__(self, cfg: DetectorConfig, class_names: Sequence[str]):
        index = {n: i for i, n in enumerate(class_names)}
        self.labels = list(cfg.labels)
        pos = {label: i for i, label in enumerate(self.labels)}
        self.idx: list[np.ndarray] = []
        for label, lc in cfg.labels.items():
            unknown = [c for c in lc.classes if c not in index]
            if unknown:
                raise ConfigError(f"label {label!r} names classes YAMNet does not have: {unknown}")
            self.idx.append(np.array([index[c] for c in lc.classes]))
        self.weight = np.array([cfg.head_weight if lc.head_weight is None else lc.head_weight
                                for lc in cfg.labels.values()], np.float32)  # float32[L]
        self.blend = np.array([lc.fusion == "blend" for lc in cfg.labels.values()])  # bool[L]
        self.veto = [np.array([pos[v] for v in lc.head_veto], np.int64) for lc in cfg.labels.values()]
        self.veto_min = cfg.head_veto_min

    def groups(self, scores: np.ndarray) -> np.ndarray:
        """float32[N,521] class scores -> float32[N,L] AudioSet group scores (max over each label's classes)."""
        scores = np.asarray(scores, np.float32).reshape(-1, scores.shape[-1])
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
        for j, veto in enumerate(self.veto):
            if veto.size:
                usable[:, j] &= ~(groups[:, veto] >= self.veto_min).any(axis=1)
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
