"""The inference backend plugin base: one subclass per runtime, registered in RUNTIMES; precision is a parameter."""
from __future__ import annotations

import abc
import logging
import os
import threading
from typing import ClassVar

import numpy as np

from edgert.errors import InputShapeError, SettingsError
from edgert.registry import Registry
from edgert.yamnet import manifest, paths
from edgert.yamnet.params import PARAMS

log = logging.getLogger("edgert.yamnet.backends")

RUNTIMES: Registry[type["Backend"]] = Registry("backend runtime")


def qualified(runtime: str, precision: str, default: str) -> str:
    """A backend's one-word name: the runtime at its default precision ("tflite"), else runtime-precision
    ("tflite-fp16")."""
    return runtime if precision == default else f"{runtime}-{precision}"


class Backend(abc.ABC):
    """Runs YAMNet's patch model: float32[N,96,64] log-mel patches -> scores[N,521], embeddings[N,1024].

    A subclass is one runtime, registered in RUNTIMES under RUNTIME; PRECISIONS maps each precision it runs to
    its file in the model folder. Building one fails loudly when its runtime is missing, the precision is not
    one it has, or its artifact is absent or corrupted, never at first use.
    """

    RUNTIME: ClassVar[str] = ""
    PRECISIONS: ClassVar[dict[str, str]] = {}  # precision -> artifact file name
    DEFAULT_PRECISION: ClassVar[str] = "fp32"
    # A CUDA context does not survive fork(): a process holding one starts its workers fresh (classify --jobs).
    USES_CUDA: ClassVar[bool] = False

    def __init__(self, model_dir: str | os.PathLike | None = None, threads: int = 1, precision: str | None = None):
        self.precision = precision or self.DEFAULT_PRECISION
        if self.precision not in self.PRECISIONS:
            raise SettingsError(f"backend {self.RUNTIME!r} has no precision {self.precision!r}; "
                                f"choose one of: {', '.join(self.PRECISIONS)}")
        self.artifact = self.PRECISIONS[self.precision]
        self._check_runtime()
        self.model_dir = paths.model_dir(model_dir)
        self.model_path = self.model_dir / self.artifact
        self.model_sha256 = manifest.check_artifact(self.model_dir, self.artifact)
        self.threads = threads
        # Runtimes' interpreters are not re-entrant; one infer at a time per backend instance.
        self._lock = threading.Lock()
        self._load()

    @property
    def name(self) -> str:
        """The name `load()` takes for this runtime at this precision, e.g. "tflite-fp16"."""
        return qualified(self.RUNTIME, self.precision, self.DEFAULT_PRECISION)

    @classmethod
    def names(cls) -> list[str]:
        return [qualified(cls.RUNTIME, p, cls.DEFAULT_PRECISION) for p in cls.PRECISIONS]

    @classmethod
    @abc.abstractmethod
    def _check_runtime(cls) -> None:
        """Raise BackendUnavailableError naming what to install when the runtime cannot be used."""

    @abc.abstractmethod
    def _load(self) -> None:
        """Load self.model_path into the runtime."""

    @abc.abstractmethod
    def _infer(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run a validated float32[N,96,64] batch, N >= 1."""

    def infer(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32[N,96,64] -> (scores float32[N,521], embeddings float32[N,1024])."""
        patches = validate_patches(patches)
        if patches.shape[0] == 0:
            return (np.zeros((0, PARAMS.num_classes), np.float32), np.zeros((0, PARAMS.embedding_size), np.float32))
        with self._lock:
            scores, emb = self._infer(patches)
        return np.asarray(scores, np.float32), np.asarray(emb, np.float32)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.model_path.name} sha256={self.model_sha256[:12]}>"


def validate_patches(patches) -> np.ndarray:
    """Check shape [N,96,64] and a real floating dtype; return a C-contiguous float32 array."""
    arr = np.asarray(patches)
    if arr.ndim == 2 and arr.shape == PARAMS.patch_shape:
        raise InputShapeError(
            f"patches must be [N,{PARAMS.patch_frames},{PARAMS.patch_bands}]; got one patch of shape {arr.shape} "
            f"(add a batch axis: patches[None])")
    if arr.ndim != 3 or arr.shape[1:] != PARAMS.patch_shape:
        raise InputShapeError(
            f"patches must be float32[N,{PARAMS.patch_frames},{PARAMS.patch_bands}], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputShapeError(f"patches must be float32 log-mel values, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)
