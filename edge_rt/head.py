"""The distress head: a small classifier on YAMNet embeddings, trained on the labelled clip pack by `models head`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from edge_rt.errors import ModelIntegrityError
from edge_rt.models import manifest, paths
from edge_rt.params import PARAMS

HEAD_FILE = "distress_head.npz"
BACKGROUND = "background"


class Head:
    """Multinomial logistic regression: embeddings float32[N,1024] -> probabilities float32[N,K] over `labels`."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray, labels: list[str], mean: np.ndarray, scale: np.ndarray):
        if weights.shape != (PARAMS.embedding_size, len(labels)) or bias.shape != (len(labels),):
            raise ModelIntegrityError(f"head weights {weights.shape}/{bias.shape} do not fit {len(labels)} labels")
        self.weights, self.bias, self.labels = weights.astype(np.float32), bias.astype(np.float32), list(labels)
        self.mean, self.scale = mean.astype(np.float32), scale.astype(np.float32)

    @classmethod
    def load(cls, model_dir: Path | None = None) -> "Head":
        model_dir = paths.model_dir(model_dir)
        manifest.check_artifact(model_dir, HEAD_FILE)
        with np.load(model_dir / HEAD_FILE) as z:
            return cls(z["weights"], z["bias"], [str(x) for x in z["labels"]], z["mean"], z["scale"])

    @classmethod
    def load_optional(cls, model_dir: Path | None = None) -> Optional["Head"]:
        """The head when it was built, else None (the detector then uses AudioSet groups only)."""
        if not (paths.model_dir(model_dir) / HEAD_FILE).is_file():
            return None
        return cls.load(model_dir)

    def proba(self, embeddings: np.ndarray) -> np.ndarray:
        """float32[N,1024] -> float32[N,K] softmax probabilities."""
        z = ((embeddings - self.mean) / self.scale) @ self.weights + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def per_label(self, embeddings: np.ndarray) -> list[dict[str, float]]:
        """One {label: probability} per row, background left out."""
        p = self.proba(embeddings)
        keep = [(i, l) for i, l in enumerate(self.labels) if l != BACKGROUND]
        return [{l: float(row[i]) for i, l in keep} for row in p]

    def save(self, path: Path) -> None:
        np.savez(path, weights=self.weights, bias=self.bias, labels=np.array(self.labels), mean=self.mean,
                 scale=self.scale)
