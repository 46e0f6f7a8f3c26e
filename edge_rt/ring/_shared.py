"""Argument checks that both ring buffer twins share, so they fail with the same errors and messages."""
from __future__ import annotations

import numbers

import numpy as np

from edge_rt.errors import RingBufferError
from edgert.errors import InputShapeError

# 2**30 float32 samples (4 GiB, 18 h at 16 kHz): far beyond any capture backlog worth keeping, and the
# largest request that is surely a typo rather than a plan.
MAX_CAPACITY = 1 << 30


def _count(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise RingBufferError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    value = int(value)
    if not low <= value <= high:
        raise RingBufferError(f"{name} must be in [{low}, {high}], got {value}")
    return int(value)


def check_shape(capacity, window, hop) -> tuple[int, int, int]:
    """Validate a ring's construction arguments; returns (capacity, window, hop), window = hop = 0 when unset."""
    capacity = _count("capacity", capacity, 1, MAX_CAPACITY)
    if window is None:
        if hop is not None:
            raise RingBufferError("hop is the step between overlapping windows; it needs a window too")
        return capacity, 0, 0
    window = _count("window", window, 1, capacity)
    hop = window if hop is None else _count("hop", hop, 1, window)
    return capacity, window, hop


def check_samples(samples) -> np.ndarray:
    """The producer's chunk as float32[n], C-contiguous (a copy only when it is strided)."""
    if not isinstance(samples, np.ndarray) or samples.dtype != np.float32 or samples.ndim != 1:
        shape = getattr(samples, "shape", None)
        dtype = getattr(samples, "dtype", type(samples).__name__)
        raise InputShapeError(f"the ring buffer stores float32[n] samples; got {dtype} of shape {shape} "
                              "(convert in capture)")
    return np.ascontiguousarray(samples)


def check_out(out, need: int | None = None) -> np.ndarray:
    """A caller's output buffer: float32[n], C-contiguous, writable, and at least `need` long when given."""
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.ndim != 1 \
            or not out.flags.c_contiguous or not out.flags.writeable:
        raise InputShapeError("out must be a writable, C-contiguous float32[n] array")
    if need is not None and out.shape[0] < need:
        raise InputShapeError(f"out holds {out.shape[0]} samples; a window needs {need}")
    return out


def check_max(max_samples) -> int | None:
    if max_samples is None:
        return None
    return _count("max_samples", max_samples, 0, 1 << 62)


def check_has_window(window: int) -> None:
    if window == 0:
        raise RingBufferError("read_window() needs a ring built with window=..., e.g. RingBuffer(n, window=w, hop=h)")
