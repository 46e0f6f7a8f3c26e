"""YAMNet's front end (waveform -> log-mel -> patches), and the one-time choice of its implementation.

    log_mel(waveform, pad=True, *, sample_rate=16000) -> float32[frames, 64]
    patches(log_mel) -> float32[N, 96, 64]
    StreamingFrontend(*, sample_rate=16000).push(chunk) -> float32[k, 96, 64]

`IMPLEMENTATION` is "cython" (the compiled `_cfrontend`, the default), "numpy" (the `fallback` twin, forced by
EDGE_RT_PUREPYTHON=1) or "cuda" (the `_cuda` twin, only when EDGE_RT_FRONTEND=cuda asks for it and CuPy and
a CUDA device are present; otherwise the reason is logged and the compiled module is used). The choice is made
once, at import.

Input handling, the same in every implementation: float32 is used as is, float64 is rounded to float32 and int16
PCM is scaled by 1/32768; other dtypes, anything but 1-D, and an empty waveform raise InputShapeError; NaN or
Inf raise NonFiniteAudioError; a sample_rate other than 16000 raises SampleRateError (resampling belongs to
capture). StreamingFrontend.push accepts an empty chunk and returns no patches.
"""
from __future__ import annotations

import logging
import os

from edgert.errors import FrontendError, FrontendUnavailableError
from edgert.yamnet.frontend._shared import hann_window, mel_matrix, padded_length

log = logging.getLogger("edgert.yamnet.frontend")

_CHOICES = ("", "auto", "cython", "cuda", "numpy")


def _choose():
    if os.environ.get("EDGE_RT_PUREPYTHON") == "1":
        from edgert.yamnet.frontend import fallback
        return "numpy", fallback
    wanted = os.environ.get("EDGE_RT_FRONTEND", "").strip().lower()
    if wanted not in _CHOICES:
        raise FrontendError(f"EDGE_RT_FRONTEND={wanted!r}: expected one of cython, cuda, numpy")
    if wanted == "numpy":
        from edgert.yamnet.frontend import fallback
        return "numpy", fallback
    if wanted == "cuda":
        try:
            from edgert.yamnet.frontend import _cuda
            return "cuda", _cuda
        except FrontendUnavailableError as exc:
            log.warning("EDGE_RT_FRONTEND=cuda but the CUDA front end is unavailable (%s); using the Cython one", exc)
    try:
        from edgert.yamnet.frontend import _cfrontend
    except ImportError as exc:  # a missing build is an install error, never a silent slowdown
        raise ImportError("edgert.yamnet.frontend._cfrontend is not built: run `make setup` (or pip install -e .), "
                          "or set EDGE_RT_PUREPYTHON=1 to use the numpy front end") from exc
    return "cython", _cfrontend


IMPLEMENTATION, _impl = _choose()
log.debug("front end implementation: %s", IMPLEMENTATION)

log_mel = _impl.log_mel
patches = _impl.patches
StreamingFrontend = _impl.StreamingFrontend

__all__ = ["log_mel", "patches", "StreamingFrontend", "IMPLEMENTATION", "mel_matrix", "hann_window", "padded_length"]
