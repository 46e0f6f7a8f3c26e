"""The distress head: a small classifier on YAMNet's embedding, a few of its own class scores and the window's
loudness above the room, trained by `models build` on streams of the pack's events and ordinary life."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from edgert.errors import ModelIntegrityError
from edgert.yamnet import manifest, paths
from edgert.yamnet.params import PARAMS

HEAD_FILE = "distress_head.npz"
BACKGROUND = "background"
# Classes of ordinary life the head learns explicitly; they are never reported as labels.
NEGATIVES = (BACKGROUND, "speech", "clatter")
# YAMNet's own view of the voice and of the events, given to the head beside the embedding: a shout and calm
# speech share most of an embedding, and YAMNet's Speech against Shout/Yell scores is what tells them apart.
FEATURE_CLASSES = ("Speech", "Conversation", "Narration, monologue", "Shout", "Yell", "Bellow", "Screaming",
                   "Children shouting", "Crying, sobbing", "Baby cry, infant cry", "Glass", "Shatter", "Siren")
LOUDNESS_SCALE_DB = 10.0  # the loudness feature in units of 10 dB above the running background


class Head:
    """Multinomial logistic regression on `features()` float32[N,D] -> probabilities float32[N,K] over `labels`."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray, labels: list[str], mean: np.ndarray, scale: np.ndarray,
                 feature_classes: Sequence[str], class_names: Sequence[str] | None = None):
        dim = PARAMS.embedding_size + len(feature_classes) + 1
        if weights.shape != (dim, len(labels)) or bias.shape != (len(labels),) or mean.shape != (dim,):
            raise ModelIntegrityError(f"head weights {weights.shape}/{bias.shape} do not fit {len(labels)} labels "
                                      f"and {dim} features; {paths.BUILD_HINT}")
        self.weights, self.bias, self.labels = weights.astype(np.float32), bias.astype(np.float32), list(labels)
        self.mean, self.scale = mean.astype(np.float32), scale.astype(np.float32)
        self.feature_classes = list(feature_classes)
        if class_names is None:
            from edgert.yamnet.classmap import class_names as load_names

            class_names = load_names()
        index = {n: i for i, n in enumerate(class_names)}
        missing = [c for c in self.feature_classes if c not in index]
        if missing:
            raise ModelIntegrityError(f"the head uses classes YAMNet does not have: {missing}")
        self.feature_idx = np.array([index[c] for c in self.feature_classes])

    @classmethod
    def load(cls, model_dir: str | os.PathLike | None = None) -> "Head":
        from edgert.yamnet.classmap import class_names

        model_dir = paths.model_dir(model_dir)
        manifest.check_artifact(model_dir, HEAD_FILE)
        with np.load(model_dir / HEAD_FILE) as z:
            if "feature_classes" not in z:
                raise ModelIntegrityError(f"{model_dir / HEAD_FILE} is a head of an older format (embedding only): "
                                          f"{paths.BUILD_HINT}")
            return cls(z["weights"], z["bias"], [str(x) for x in z["labels"]], z["mean"], z["scale"],
                       [str(x) for x in z["feature_classes"]], class_names(model_dir))

    def features(self, embeddings: np.ndarray, scores: np.ndarray, relative_db: np.ndarray) -> np.ndarray:
        """float32[N,1024] embeddings, float32[N,521] scores, float32[N] dB above background -> float32[N,D]."""
        return np.concatenate([np.asarray(embeddings, np.float32), np.asarray(scores, np.float32)[:, self.feature_idx],
                               (np.asarray(relative_db, np.float32) / LOUDNESS_SCALE_DB)[:, None]], axis=1)

    @classmethod
    def load_optional(cls, model_dir: str | os.PathLike | None = None) -> Optional["Head"]:
        """The head when it was built, else None (the detector then uses AudioSet groups only)."""
        if not (paths.model_dir(model_dir) / HEAD_FILE).is_file():
            return None
        return cls.load(model_dir)

    def proba(self, features: np.ndarray) -> np.ndarray:
        """float32[N,D] features -> float32[N,K] softmax probabilities."""
        z = ((features - self.mean) / self.scale) @ self.weights + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def per_label(self, features: np.ndarray) -> list[dict[str, float]]:
        """One {label: probability} per row of float32[N,D] features, the ordinary-life classes left out."""
        p = self.proba(features)
        keep = [(i, label) for i, label in enumerate(self.labels) if label not in NEGATIVES]
        return [{label: float(row[i]) for i, label in keep} for row in p]

    def save(self, path: Path) -> None:
        """An .npz that np.load reads, byte-identical for identical weights (np.savez stamps the wall clock)."""
        import io
        import zipfile

        arrays = {"weights": self.weights, "bias": self.bias, "labels": np.array(self.labels), "mean": self.mean,
                  "scale": self.scale, "feature_classes": np.array(self.feature_classes)}
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for name, arr in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())
