"""The CUDA twin of the front end: cext/frontend.cu compiled at run time with CuPy (NVRTC), same API and bits.

Importing this module fails with FrontendUnavailableError when CuPy (`pip install '.[gpu]'`), a CUDA device or
the kernel source is missing; edgert.yamnet.frontend then keeps the compiled CPU module. NVRTC is a library, so no
nvcc is needed on the device. The kernel performs the CPU's float32 operations in the CPU's order with
contraction, flush-to-zero and approximate division/sqrt disabled, so it reproduces the numpy and Cython twins
bit for bit (log-mel within 1e-4 of TF's, like them).
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from edgert.errors import FrontendUnavailableError
from edgert.yamnet.frontend import fallback
from edgert.yamnet.frontend._shared import (
    HOP,
    NBANDS,
    NFFT,
    WINDOW,
    as_waveform,
    hann_window,
    mel_bands,
    num_frames,
    padded_length,
    rfft_passes,
)
from edgert.yamnet.params import PARAMS

__all__ = ["log_mel", "patches", "StreamingFrontend"]

try:
    import cupy
except ImportError as exc:
    raise FrontendUnavailableError(f"CuPy is not installed ({exc}); install the extra: pip install '.[gpu]'") from exc

SOURCE = Path(__file__).resolve().parents[3] / "cext" / "frontend.cu"
# IEEE float32 everywhere: no fused multiply-add, exact division and sqrt, denormals kept, as on the CPU.
NVRTC_OPTIONS = ("--fmad=false", "--prec-div=true", "--prec-sqrt=true", "--ftz=false", f"-DYK_NFFT={NFFT}")
THREADS_PER_BLOCK = 128  # one block per frame; 128 threads cover the widest FFT pass in a few sweeps


def _cuda_errors() -> tuple[type[BaseException], ...]:
    """The exceptions CuPy raises for a missing driver or device, a failed compile or a failed launch."""
    errors: list[type[BaseException]] = [RuntimeError]
    for owner, name in ((cupy.cuda.runtime, "CUDARuntimeError"), (cupy.cuda.driver, "CUDADriverError"),
                        (getattr(cupy.cuda, "compiler", None), "CompileException")):
        err = getattr(owner, name, None)
        if isinstance(err, type) and issubclass(err, BaseException):
            errors.append(err)
    return tuple(errors)


class _Gpu:
    """Device 0, the compiled kernel and the constant tables, set up once."""

    def __init__(self):
        if not SOURCE.is_file():
            raise FrontendUnavailableError(f"{SOURCE} is missing; the CUDA front end runs from a source checkout")
        errors = _cuda_errors()
        try:
            if cupy.cuda.runtime.getDeviceCount() == 0:
                raise FrontendUnavailableError("no CUDA device is present")
        except errors as exc:
            raise FrontendUnavailableError(f"CUDA is not usable here: {exc}") from exc
        self.device = cupy.cuda.Device(0)
        self.lock = threading.Lock()  # one launch at a time: the tables and the device are shared by all streams
        with self.device:
            try:
                module = cupy.RawModule(code=SOURCE.read_text(), options=NVRTC_OPTIONS)
                self.kernel = module.get_function("yk_log_mel")
            except errors as exc:  # NVRTC missing, or a device it cannot target
                raise FrontendUnavailableError(f"could not compile {SOURCE.name}: {exc}") from exc
            passes = rfft_passes(NFFT)
            offsets = np.cumsum([0] + [p.twiddles.size for p in passes])[:-1]
            bands = mel_bands()
            tables = {
                "window": np.asarray(hann_window(), np.float32),
                "radix": np.array([p.radix for p in passes], np.int32),
                "l1": np.array([p.l1 for p in passes], np.int32),
                "ido": np.array([p.ido for p in passes], np.int32),
                "wa_off": offsets.astype(np.int32),
                "twiddles": np.concatenate([p.twiddles for p in passes] + [np.zeros(1, np.float32)]),
                "band_start": np.asarray(bands.start, np.int32),
                "band_len": np.asarray(bands.length, np.int32),
                "band_off": np.asarray(bands.offset, np.int32),
                "band_w": np.asarray(bands.weights, np.float32),
            }
            self.tables = {name: cupy.asarray(np.ascontiguousarray(a)) for name, a in tables.items()}
            self.npasses = len(passes)
            self.first_bin, self.end_bin = bands.first_bin, bands.end_bin

    def frames(self, x: np.ndarray) -> np.ndarray:
        """Log-mel rows of every whole frame of float32[samples]: float32[frames, 64]."""
        n = num_frames(x.size)
        if n == 0:
            return np.empty((0, NBANDS), np.float32)
        t = self.tables
        with self.lock, self.device:
            x_gpu = cupy.asarray(np.ascontiguousarray(x[:(n - 1) * HOP + WINDOW]))
            out_gpu = cupy.empty((n, NBANDS), np.float32)
            self.kernel((n,), (THREADS_PER_BLOCK,),
                        (x_gpu, np.int64(n), np.int32(WINDOW), np.int32(HOP), t["window"], np.int32(self.npasses),
                         t["radix"], t["l1"], t["ido"], t["wa_off"], t["twiddles"], np.int32(self.first_bin),
                         np.int32(self.end_bin), np.int32(NBANDS), t["band_start"], t["band_len"], t["band_off"],
                         t["band_w"], np.float32(PARAMS.log_offset), out_gpu))
            return cupy.asnumpy(out_gpu)


_GPU = _Gpu()


def log_mel(waveform, pad=True, *, sample_rate=16000):
    """YAMNet's log-mel spectrogram of mono 16 kHz audio, computed on the GPU: float32[frames, 64].

    With pad=True the waveform is first zero-padded at its end exactly as the TF-Hub model does (at least one
    patch, then whole patch hops), so the result equals the hub's `log_mel` output. With pad=False a waveform
    shorter than one STFT window (400 samples) gives float32[0, 64]. int16 input is scaled by 1/32768.
    """
    x = as_waveform(waveform, sample_rate)
    if pad:
        x = np.pad(x, (0, padded_length(x.size) - x.size))  # float32[padded]
    return _GPU.frames(x)


def patches(log_mel):
    """Cut a log-mel spectrogram float32[frames, 64] into YAMNet patches: float32[N, 96, 64], hop 48 frames.

    N = 1 + (frames - 96) // 48, and 0 when frames < 96. A host-side copy: framing is no work for a GPU.
    """
    return fallback.patches(log_mel)


class StreamingFrontend(fallback.StreamingFrontend):
    """Incremental front end whose frames are computed on the GPU, each exactly once, as the chunks arrive.

    Its patches equal `patches(log_mel(x, pad=False))` of everything pushed so far; a stream never pads.
    """

    def _frame_rows(self, samples: np.ndarray) -> np.ndarray:
        return _GPU.frames(samples)
