"""Train the distress head on the clip pack's YAMNet embeddings, with a held-out report (build time only)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge_rt.head import BACKGROUND, HEAD_FILE, Head
from edge_rt.models.dataset import PackPatches

log = logging.getLogger("edge_rt.models.head")

SEED = 20261125
LOUD_WITHIN_DB = 10.0  # a patch of an event clip is that event when within this of the clip's loudest patch ...
QUIET_BELOW_DB = 25.0  # ... and background (the clip's silence) when this far below it; between: left out
C_GRID = (0.01, 0.03, 0.1, 0.3)
HOLDOUT_FRACTION = 0.25


def patch_targets(pack: PackPatches) -> np.ndarray:
    """str[N]: the training label of every patch, '' for patches left out."""
    y = pack.labels.astype(object).copy()
    for c in np.unique(pack.clip):
        m = pack.clip == c
        if pack.labels[m][0] == BACKGROUND:
            continue
        loudest = pack.levels[m].max()
        idx = np.flatnonzero(m)
        rel = pack.levels[m] - loudest
        y[idx[rel < -LOUD_WITHIN_DB]] = ""
        y[idx[rel < -QUIET_BELOW_DB]] = BACKGROUND
    return y.astype(str)


def _split(pack: PackPatches) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, held-out) splitting whole pack clips (with their noisy copies), stratified by label."""
    rng = np.random.default_rng(SEED)
    held = np.zeros(int(pack.group.max()) + 1, bool)
    group_label = {g: pack.labels[pack.group == g][0] for g in np.unique(pack.group)}
    for label in sorted(set(group_label.values())):
        groups = sorted(g for g, l in group_label.items() if l == label)
        rng.shuffle(groups)
        held[groups[: max(1, int(round(HOLDOUT_FRACTION * len(groups))))]] = True
    return ~held[pack.group], held[pack.group]


def _fit(x: np.ndarray, y: np.ndarray, c: float) -> Head:
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(0), x.std(0) + 1e-6
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=3000, random_state=SEED)
    clf.fit((x - mean) / scale, y)
    return Head(clf.coef_.T.astype(np.float32), clf.intercept_.astype(np.float32), list(clf.classes_), mean, scale)


def _report(head: Head, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    pred = np.array(head.labels)[head.proba(x).argmax(1)]
    per = {}
    for label in head.labels:
        tp = int(np.sum((pred == label) & (y == label)))
        per[label] = {"precision": round(tp / max(1, int(np.sum(pred == label))), 3),
                      "recall": round(tp / max(1, int(np.sum(y == label))), 3), "support": int(np.sum(y == label))}
    return {"accuracy": round(float(np.mean(pred == y)), 4), "per_label": per,
            "confusion": {"labels": head.labels,
                          "matrix": [[int(np.sum((y == a) & (pred == b))) for b in head.labels] for a in head.labels]}}


def train(pack: PackPatches, embeddings: np.ndarray, out: Path) -> dict[str, Any]:
    """Pick C on held-out clips, report, then fit on every clip and save the head to `out`/distress_head.npz."""
    y = patch_targets(pack)
    use = y != ""
    train_m, held_m = _split(pack)
    tr, te = use & train_m, use & held_m
    best = None
    for c in C_GRID:
        rep = _report(_fit(embeddings[tr], y[tr], c), embeddings[te], y[te])
        macro = float(np.mean([v["recall"] for v in rep["per_label"].values()]))
        log.info("head C=%g: held-out accuracy %.3f, macro recall %.3f", c, rep["accuracy"], macro)
        if best is None or macro > best[0]:
            best = (macro, c, rep)
    _, c, held_report = best
    head = _fit(embeddings[use], y[use], c)
    head.save(out / HEAD_FILE)
    return {"C": c, "train_patches": int(use.sum()), "held_out": held_report,
            "held_out_clips": int(len(np.unique(pack.group[held_m])))}
