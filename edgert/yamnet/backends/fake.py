"""The `fake` backend: no model file, no runtime; scores follow the loudness of each patch.

It lets the pipeline, the uplink and the cloud be exercised where the models are not built (unit tests, a
developer's laptop without TF). One AudioSet class (`loud_class`, by index) scores the patch's mean log-mel
mapped onto [0, 1]; every other class scores `floor`; the embedding is the patch's band means, repeated.
Never chosen by `auto`.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Optional

import numpy as np

from edgert.yamnet.backends.base import RUNTIMES, Backend
from edgert.yamnet.params import PARAMS

QUIET_LOG_MEL = -12.0  # mean log-mel of near silence (log(0 + 0.001) is -6.9 per band; quieter floors lower)
LOUD_LOG_MEL = 0.0  # mean log-mel of a loud, broadband sound


@RUNTIMES.register("fake")
class FakeBackend(Backend):
    RUNTIME = "fake"
    PRECISIONS = {"fp32": ""}

    def __init__(self, model_dir: str | os.PathLike | None = None, threads: int = 1, precision: Optional[str] = None,
                 *, loud_class: int = 0, floor: float = 0.001):
        self.precision, self.artifact = "fp32", ""
        self.model_dir, self.model_path = Path(model_dir or "."), Path("fake")
        self.model_sha256 = "0" * 64
        self.threads, self.loud_class, self.floor = threads, int(loud_class), float(floor)
        self._lock = threading.Lock()

    @classmethod
    def _check_runtime(cls) -> None:
        return None

    def _load(self) -> None:
        return None

    def _infer(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = patches.shape[0]
        loud = (patches.mean(axis=(1, 2)) - QUIET_LOG_MEL) / (LOUD_LOG_MEL - QUIET_LOG_MEL)
        scores = np.full((n, PARAMS.num_classes), self.floor, np.float32)
        scores[:, self.loud_class] = np.clip(loud, 0.0, 1.0)
        bands = patches.mean(axis=1)  # float32[N,64]
        emb = np.tile(bands, (1, PARAMS.embedding_size // bands.shape[1] + 1))[:, :PARAMS.embedding_size]
        return scores, emb.astype(np.float32)
