"""The numpy twin of the compiled front end: the same names and signatures as `_cfrontend`, in plain numpy.

Every frame is computed with row-wise operations whose result never depends on how many rows are computed
together (TF's FFT passes written as array expressions, a fixed-order mel sum instead of a BLAS matmul, TF's
float32 log), so the streaming path reproduces the batch path bit for bit, and both equal the compiled module's.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from edgert.yamnet.frontend._shared import (
    HOP,
    NBANDS,
    NFFT,
    PATCH_FRAMES,
    PATCH_HOP,
    STREAM_FRAME_GROUP,
    WINDOW,
    as_log_mel,
    as_waveform,
    check_sample_rate,
    hann_window,
    mel_bands,
    num_frames,
    num_patches,
    padded_length,
    rfft_passes,
    tf_log_f32,
)
from edgert.yamnet.params import PARAMS

__all__ = ["log_mel", "patches", "StreamingFrontend"]


def log_mel(waveform, pad=True, *, sample_rate=16000):
    """YAMNet's log-mel spectrogram of mono 16 kHz audio: float32[frames, 64].

    With pad=True the waveform is first zero-padded at its end exactly as the TF-Hub model does (at least one
    patch, then whole patch hops), so the result equals the hub's `log_mel` output. With pad=False a waveform
    shorter than one STFT window (400 samples) gives float32[0, 64]. int16 input is scaled by 1/32768.
    """
    x = as_waveform(waveform, sample_rate)
    if pad:
        x = np.pad(x, (0, padded_length(x.size) - x.size))  # float32[padded]
    return _log_mel_frames(x)


def _log_mel_frames(x: np.ndarray) -> np.ndarray:
    """Every whole STFT frame of float32[samples] `x` as log-mel rows: float32[num_frames(samples), 64]."""
    n = num_frames(x.size)
    if n == 0:
        return np.empty((0, NBANDS), np.float32)
    # Only an absurdly loud input (|x| beyond ~1e17) overflows float32; it then gives inf/NaN like TF, silently.
    with np.errstate(over="ignore", invalid="ignore"):
        frames = np.zeros((n, NFFT), np.float32)  # float32[n, 512]: windowed, zero-padded to the FFT length
        frames[:, :WINDOW] = sliding_window_view(x, WINDOW)[::HOP][:n] * hann_window()
        half = rfft_halfcomplex(frames)  # float32[n, 512]: r0, r1, i1, ..., r256
        bands = mel_bands()
        k = np.arange(bands.first_bin, bands.end_bin)
        re, im = half[:, 2 * k - 1], half[:, 2 * k]
        mag = np.zeros((n, NFFT // 2 + 1), np.float32)  # float32[n, 257]; bins outside every band stay 0
        mag[:, k] = np.sqrt(re * re + im * im)
        mel = np.zeros((n, NBANDS), np.float32)  # float32[n, 64]: ascending bins per band, never a BLAS matmul
        for j in range(bands.padded_index.shape[1]):
            live = bands.length > j  # bands that still have a j-th bin (never add 0 * mag: inf * 0 is NaN)
            mel[:, live] += mag[:, bands.padded_index[live, j]] * bands.padded_weights[live, j]
        return tf_log_f32(mel + np.float32(PARAMS.log_offset))


def rfft_halfcomplex(frames: np.ndarray) -> np.ndarray:
    """TF's float32 real FFT of every row of float32[rows, 512]: float32[rows, 512] in halfcomplex order
    (r0, r1, i1, ..., r255, i255, r256). Rounds exactly as TF's CPU RFFT (same passes, twiddles and order)."""
    a = np.ascontiguousarray(frames, np.float32)
    for p in rfft_passes(a.shape[1]):
        a = (_radf4 if p.radix == 4 else _radf2)(a, p.l1, p.ido, p.twiddles)
    return a


def _mul_conj(wr, wi, re, im):
    """(wr - i wi) * (re + i im) as (real, imag) float32 arrays of the inputs' broadcast shape; each product is
    rounded on its own (no fused multiply-add), as in TF's FFT."""
    return wr * re + wi * im, wr * im - wi * re


def _radf2(a: np.ndarray, l1: int, ido: int, wa: np.ndarray) -> np.ndarray:
    """One radix-2 forward pass over rows: float32[rows, n] -> float32[rows, n]."""
    rows = a.shape[0]
    cc = a.reshape(rows, 2, l1, ido)  # CC(i, k, j) = cc[:, j, k, i]
    ch = np.empty((rows, l1, 2, ido), np.float32)  # CH(i, j, k) = ch[:, k, j, i]
    c0, c1 = cc[:, 0], cc[:, 1]  # [rows, l1, ido]
    h0, h1 = ch[:, :, 0], ch[:, :, 1]  # views [rows, l1, ido]
    h0[..., 0] = c0[..., 0] + c1[..., 0]
    h1[..., ido - 1] = c0[..., 0] - c1[..., 0]
    if ido % 2 == 0:
        h1[..., 0] = -c1[..., ido - 1]
        h0[..., ido - 1] = c0[..., ido - 1]
    if ido > 2:
        i = np.arange(2, ido, 2)
        ic = ido - i
        tr2, ti2 = _mul_conj(wa[i - 2], wa[i - 1], c1[..., i - 1], c1[..., i])
        h0[..., i - 1] = c0[..., i - 1] + tr2
        h1[..., ic - 1] = c0[..., i - 1] - tr2
        h0[..., i] = ti2 + c0[..., i]
        h1[..., ic] = ti2 - c0[..., i]
    return ch.reshape(rows, -1)


def _radf4(a: np.ndarray, l1: int, ido: int, wa: np.ndarray) -> np.ndarray:
    """One radix-4 forward pass over rows: float32[rows, n] -> float32[rows, n]."""
    rows = a.shape[0]
    cc = a.reshape(rows, 4, l1, ido)
    ch = np.empty((rows, l1, 4, ido), np.float32)
    c0, c1, c2, c3 = cc[:, 0], cc[:, 1], cc[:, 2], cc[:, 3]
    h0, h1, h2, h3 = ch[:, :, 0], ch[:, :, 1], ch[:, :, 2], ch[:, :, 3]
    tr1 = c3[..., 0] + c1[..., 0]
    h2[..., 0] = c3[..., 0] - c1[..., 0]
    tr2 = c0[..., 0] + c2[..., 0]
    h1[..., ido - 1] = c0[..., 0] - c2[..., 0]
    h0[..., 0] = tr2 + tr1
    h3[..., ido - 1] = tr2 - tr1
    if ido % 2 == 0:
        hsqt2 = np.float32(np.sqrt(0.5))
        e = ido - 1
        ti1 = -hsqt2 * (c1[..., e] + c3[..., e])
        tr1 = hsqt2 * (c1[..., e] - c3[..., e])
        h0[..., e] = c0[..., e] + tr1
        h2[..., e] = c0[..., e] - tr1
        h3[..., 0] = ti1 + c2[..., e]
        h1[..., 0] = ti1 - c2[..., e]
    if ido > 2:
        i = np.arange(2, ido, 2)
        ic = ido - i
        w = [(wa[x * (ido - 1) + i - 2], wa[x * (ido - 1) + i - 1]) for x in range(3)]
        cr2, ci2 = _mul_conj(*w[0], c1[..., i - 1], c1[..., i])
        cr3, ci3 = _mul_conj(*w[1], c2[..., i - 1], c2[..., i])
        cr4, ci4 = _mul_conj(*w[2], c3[..., i - 1], c3[..., i])
        tr1, tr4 = cr4 + cr2, cr4 - cr2
        ti1, ti4 = ci2 + ci4, ci2 - ci4
        tr2, tr3 = c0[..., i - 1] + cr3, c0[..., i - 1] - cr3
        ti2, ti3 = c0[..., i] + ci3, c0[..., i] - ci3
        h0[..., i - 1] = tr2 + tr1
        h3[..., ic - 1] = tr2 - tr1
        h0[..., i] = ti1 + ti2
        h3[..., ic] = ti1 - ti2
        h2[..., i - 1] = tr3 + ti4
        h1[..., ic - 1] = tr3 - ti4
        h2[..., i] = tr4 + ti3
        h1[..., ic] = tr4 - ti3
    return ch.reshape(rows, -1)


def patches(log_mel):
    """Cut a log-mel spectrogram float32[frames, 64] into YAMNet patches: float32[N, 96, 64], hop 48 frames.

    N = 1 + (frames - 96) // 48, and 0 when frames < 96 (like tf.signal.frame without padding).
    """
    m = as_log_mel(log_mel)
    n = num_patches(m.shape[0])
    if n == 0:
        return np.empty((0, PATCH_FRAMES, NBANDS), np.float32)
    row = m.strides[0]
    view = as_strided(m, shape=(n, PATCH_FRAMES, NBANDS), strides=(PATCH_HOP * row, row, m.strides[1]),
                      writeable=False)  # float32[n, 96, 64], a view
    return view.copy()


class StreamingFrontend:
    """Incremental front end: push audio chunks of any size, get each 96x64 patch as soon as its last frame exists.

    Its patches equal `patches(log_mel(x, pad=False))` of everything pushed so far; a stream never pads. Each
    STFT frame is computed once, in groups of STREAM_FRAME_GROUP frames as soon as a group's samples have arrived;
    patch boundaries fall on group boundaries (96 and 48 are multiples of 8), so no patch ever waits for a group.
    """

    def __init__(self, *, sample_rate=16000):
        check_sample_rate(sample_rate)
        self.reset()

    def reset(self):
        """Forget all audio and frames, as if just built."""
        self._tail = np.empty(0, np.float32)  # samples from the next group's first frame: float32[< 1520]
        self._history = np.empty((0, NBANDS), np.float32)  # frames from the next patch's start: float32[< 96, 64]
        self._frames_computed = 0
        self._patches_emitted = 0

    @property
    def frames_computed(self):
        """How many STFT frames this stream has computed (each exactly once; whole groups of STREAM_FRAME_GROUP)."""
        return self._frames_computed

    @property
    def patches_emitted(self):
        """How many patches push() has returned so far."""
        return self._patches_emitted

    def push(self, chunk):
        """Add float32[samples] (any length, int16 scaled by 1/32768) and return the patches it completes:
        float32[k, 96, 64], k >= 0. An empty chunk returns float32[0, 96, 64]. A rejected chunk leaves the
        stream as it was."""
        x = as_waveform(chunk, PARAMS.sample_rate, allow_empty=True)
        buf = np.concatenate([self._tail, x]) if self._tail.size else x  # float32[tail + samples]
        n = num_frames(buf.size) // STREAM_FRAME_GROUP * STREAM_FRAME_GROUP  # whole groups only, as the C stream
        rows = self._frame_rows(buf[:(n - 1) * HOP + WINDOW] if n else buf[:0])  # float32[n, 64]
        self._tail = buf[n * HOP:].copy()  # a copy: never keep a view of the caller's array
        self._frames_computed += n
        history = np.concatenate([self._history, rows]) if n else self._history  # float32[h, 64]
        out = patches(history)
        self._history = history[out.shape[0] * PATCH_HOP:].copy()
        self._patches_emitted += out.shape[0]
        return out

    def _frame_rows(self, samples: np.ndarray) -> np.ndarray:
        """Log-mel rows of every whole frame of float32[samples]: float32[frames, 64]. The CUDA twin overrides it."""
        return _log_mel_frames(samples)
