"""What every front-end twin shares: input checks, the hub's padding, the window, the mel matrix, the FFT plan."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from edgert.errors import InputShapeError, NonFiniteAudioError, SampleRateError
from edgert.yamnet.params import PARAMS

# int16 PCM maps onto [-1, 1) by this scale, the convention of every WAV reader (soundfile, scipy, librosa).
INT16_SCALE = 1.0 / 32768.0
# HTK mel scale, as TF's mel_ops writes it: mel = Q * ln(1 + f / BREAK).
MEL_BREAK_FREQUENCY_HZ = 700.0
MEL_HIGH_FREQUENCY_Q = 1127.0

WINDOW = PARAMS.window_length_samples  # 400
HOP = PARAMS.hop_length_samples  # 160
NFFT = PARAMS.fft_length  # 512
NBINS = PARAMS.num_spectrum_bins  # 257
NBANDS = PARAMS.mel_bands  # 64
PATCH_FRAMES = PARAMS.patch_frames  # 96
PATCH_HOP = PARAMS.patch_hop_frames  # 48
# The hub needs one whole patch of frames plus the rest of the last STFT window: 95 hops + 1 window = 15600.
MIN_PADDED_SAMPLES = (PATCH_FRAMES - 1) * HOP + WINDOW
# Beyond the first patch the hub pads to whole patch hops: 48 frames * 160 = 7680 samples.
PATCH_HOP_SAMPLES = PATCH_HOP * HOP
# Streams compute frames in aligned groups of this many (one per SIMD lane of the compiled kernel). Patches
# start every 48 frames and span 96, both multiples of 8, so a patch's last frame always closes a group.
STREAM_FRAME_GROUP = 8
assert PATCH_FRAMES % STREAM_FRAME_GROUP == 0 and PATCH_HOP % STREAM_FRAME_GROUP == 0


def check_sample_rate(sample_rate: int) -> None:
    if sample_rate != PARAMS.sample_rate:
        raise SampleRateError(
            f"the front end takes {PARAMS.sample_rate} Hz audio, got sample_rate={sample_rate!r}; "
            "resampling lives in capture (edge_rt.capture), before the ring buffer")


def as_waveform(waveform, sample_rate: int, *, allow_empty: bool = False, check_finite: bool = True) -> np.ndarray:
    """Validate audio and return it as float32[samples], C-contiguous (no copy when it already is).

    float32 passes as is, float64 is rounded to float32, int16 PCM is scaled by 1/32768; every other dtype,
    any shape but 1-D, an empty array (unless allow_empty) and NaN/Inf samples are errors.
    """
    check_sample_rate(sample_rate)
    x = np.asarray(waveform)
    if x.ndim != 1:
        raise InputShapeError(f"the front end takes mono float32[samples]; got an array of shape {x.shape} "
                              "(mix or pick a channel in capture)")
    if x.dtype.kind == "i" and x.dtype.itemsize == 2:  # int16 PCM, either byte order
        x = x.astype(np.float32) * np.float32(INT16_SCALE)
    elif x.dtype.kind == "f" and x.dtype.itemsize in (4, 8):  # float32/float64, either byte order
        x = np.ascontiguousarray(x, dtype=np.float32)
    else:
        raise InputShapeError(f"the front end takes float32, float64 or int16 PCM samples; got dtype {x.dtype}")
    if x.size == 0 and not allow_empty:
        raise InputShapeError("the front end got an empty waveform; there is nothing to analyse")
    if check_finite and not np.isfinite(x).all():
        raise_non_finite(x)
    return x


def raise_non_finite(x: np.ndarray) -> None:
    """Raise NonFiniteAudioError describing the first bad sample of float32[samples] `x`."""
    bad = np.flatnonzero(~np.isfinite(x))
    raise NonFiniteAudioError(f"waveform holds {bad.size} NaN/Inf sample(s), the first at index {bad[0]} "
                              f"({x[bad[0]]}); the front end never guesses a value for them")


def as_log_mel(log_mel) -> np.ndarray:
    """Validate a log-mel spectrogram and return it as float32[frames, 64], C-contiguous."""
    m = np.asarray(log_mel)
    if m.ndim != 2 or m.shape[1] != NBANDS:
        raise InputShapeError(f"patches() takes a log-mel float32[frames, {NBANDS}]; got shape {m.shape}")
    if m.dtype not in (np.float32, np.float64):
        raise InputShapeError(f"patches() takes a float32 log-mel; got dtype {m.dtype}")
    return np.ascontiguousarray(m, dtype=np.float32)


def padded_length(num_samples: int) -> int:
    """Length after the hub's zero padding: at least one patch, then whole patch hops beyond it."""
    n = max(num_samples, MIN_PADDED_SAMPLES)
    hops = -(-(n - MIN_PADDED_SAMPLES) // PATCH_HOP_SAMPLES)  # ceil
    return MIN_PADDED_SAMPLES + hops * PATCH_HOP_SAMPLES


def num_frames(num_samples: int) -> int:
    """STFT frames of `num_samples` samples without padding the end (tf.signal.stft's pad_end=False)."""
    return 0 if num_samples < WINDOW else 1 + (num_samples - WINDOW) // HOP


def num_patches(frames: int) -> int:
    """Patches of `frames` log-mel frames (tf.signal.frame without pad_end)."""
    return 0 if frames < PATCH_FRAMES else 1 + (frames - PATCH_FRAMES) // PATCH_HOP


# TF computes its window with Eigen's float32 cosine (range reduction by four float parts of pi/2, then a
# polynomial, with no FMA in TF's x86 build). One ulp of difference in a few window values moves the hub's
# log-mel by 3e-3 in quiet bands, so the same cosine is reproduced here; a test checks it bit for bit.
_TWO_OVER_PI_F32 = 0.636619746685028076171875
_ROUNDING_MAGIC_F32 = 12582912.0  # 1.5 * 2**23: adding it rounds a float32 to an integer
_PIO2_PARTS_F32 = (-1.5703125, -0.000483989715576171875, 1.62865035235881805419921875e-07,
                   5.5644315544167710640977020375430583953857421875e-11)
_COS_POLY_F32 = (2.4372266125283204019069671630859375e-05, -0.00138865201734006404876708984375,
                 0.041666619479656219482421875, -0.5, 1.0)
_SIN_POLY_F32 = (-0.0001959234114083702898469196984621021329076029360294342041015625,
                 0.0083326873655616851693794799871284340042620897293090820312500000,
                 -0.1666666203982298255503735617821803316473960876464843750000000000)


def tf_cos_f32(x: np.ndarray) -> np.ndarray:
    """cos of float32[n] rounded exactly as TF's float32 Cos kernel on x86 rounds it: float32[n]."""
    f = np.float32
    x = np.abs(np.asarray(x, np.float32))
    y_round = x * f(_TWO_OVER_PI_F32) + f(_ROUNDING_MAGIC_F32)
    quadrant = y_round.view(np.int32)  # the low bits hold round(x * 2/pi)
    y = y_round - f(_ROUNDING_MAGIC_F32)
    for part in _PIO2_PARTS_F32:  # x - y * pi/2 in four steps, each rounded
        x = y * f(part) + x
    x2 = x * x
    cos_poly = f(_COS_POLY_F32[0])
    for c in _COS_POLY_F32[1:]:
        cos_poly = cos_poly * x2 + f(c)
    sin_poly = f(_SIN_POLY_F32[0])
    for c in _SIN_POLY_F32[1:]:
        sin_poly = sin_poly * x2 + f(c)
    sin_poly = (sin_poly * x2) * x + x
    value = np.where((quadrant & 1) == 0, cos_poly, sin_poly).astype(np.float32)
    sign = ((quadrant + 1) << 30).view(np.uint32) & np.uint32(0x80000000)
    return (value.view(np.uint32) ^ sign).view(np.float32)


@functools.cache
def hann_window() -> np.ndarray:
    """tf.signal.hann_window(400, periodic=True), bit for bit: float32[400], read-only."""
    f = np.float32
    n = np.arange(WINDOW, dtype=np.float32)
    angle = (f(2.0 * np.pi) * n) / f(WINDOW)  # float32 steps in TF's order
    w = (f(0.5) - f(0.5) * tf_cos_f32(angle)).astype(np.float32)
    w.setflags(write=False)
    return w


# TF's Log kernel on a float32 vector (Eigen's plog: frexp, a shift to [sqrt(1/2), sqrt(2)), a rational
# approximation, no FMA); scalars go through the C library's logf instead.
_SQRT_HALF_F32 = 0.707106781186547524
_LOG_NUM_F32 = (0.18256296349849254, 1.0000000190281063, 1.0000000190281136)
_LOG_DEN_F32 = (0.049616247954120038, 0.59923249590823520, 1.4999999999999927, 1.0)


def tf_log_f32(x: np.ndarray) -> np.ndarray:
    """log of positive float32[...] rounded exactly as TF's float32 Log kernel rounds a vector: float32[...]."""
    f = np.float32
    x = np.asarray(x, np.float32)
    with np.errstate(invalid="ignore"):
        m, e = np.frexp(x)  # x = m * 2**e, m in [0.5, 1)
    m, e = m.astype(np.float32), e.astype(np.float32)
    low = m < f(_SQRT_HALF_F32)
    t = m - f(1.0)
    e = e - np.where(low, f(1.0), f(0.0))
    t = t + np.where(low, m, f(0.0))
    num = f(_LOG_NUM_F32[0])
    for c in _LOG_NUM_F32[1:]:
        num = num * t + f(c)
    num = t * num
    den = f(_LOG_DEN_F32[0])
    for c in _LOG_DEN_F32[1:]:
        den = den * t + f(c)
    out = (e * f(np.log(2.0)) + num / den).astype(np.float32)
    special = np.isnan(x) | (x == np.inf)  # as TF: log(inf) = inf, log(NaN) = NaN
    return np.where(special, x, out).astype(np.float32)


def _linspace_f32(start, stop, num: int) -> np.ndarray:
    """tf.linspace in float32: start, start + delta * i (each step rounded), stop. float32[num]."""
    f = np.float32
    start, stop = f(start), f(stop)
    delta = (stop - start) / f(num - 1)
    return np.concatenate([[start], start + delta * np.arange(1, num - 1, dtype=np.float32), [stop]]).astype(f)


def _hz_to_mel_f32(hz) -> np.ndarray:
    """TF's HTK mel scale, Q * ln(1 + f / BREAK): float32 of hz's shape. Vectors use TF's vector log, scalars logf."""
    hz = np.asarray(hz, np.float32)
    arg = np.float32(1.0) + hz / np.float32(MEL_BREAK_FREQUENCY_HZ)
    log = tf_log_f32(arg) if hz.ndim else np.float32(np.log(np.float64(arg)))
    return np.asarray(np.float32(MEL_HIGH_FREQUENCY_Q) * log, np.float32)


@functools.cache
def mel_matrix() -> np.ndarray:
    """tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125, 7500), bit for bit: float32[257, 64], read-only.

    Triangles are drawn in HTK mel space over the bin centre frequencies, and the DC bin is all zero, as in TF;
    every step is rounded in float32 in TF's order, because the hub's log-mel is sensitive to single ulps here.
    """
    f = np.float32
    bins_mel = _hz_to_mel_f32(_linspace_f32(0.0, f(PARAMS.sample_rate) / f(2.0), NBINS)[1:])[:, None]  # [256, 1]
    edges = _linspace_f32(_hz_to_mel_f32(f(PARAMS.mel_min_hz)), _hz_to_mel_f32(f(PARAMS.mel_max_hz)),
                          NBANDS + 2)  # [66]
    lower, center, upper = edges[:-2][None, :], edges[1:-1][None, :], edges[2:][None, :]  # [1, 64] each
    rising = (bins_mel - lower) / (center - lower)  # float32[256, 64]
    falling = (upper - bins_mel) / (upper - center)  # float32[256, 64]
    weights = np.maximum(f(0.0), np.minimum(rising, falling))  # float32[256, 64]
    m = np.vstack([np.zeros((1, NBANDS), np.float32), weights]).astype(np.float32)  # [257, 64]
    m.setflags(write=False)
    return m


@dataclass(frozen=True)
class MelBands:
    """The mel matrix stored sparse: band b weighs bins start[b] .. start[b]+length[b]-1 by weights[offset[b]:...]."""

    start: np.ndarray  # int32[64]
    length: np.ndarray  # int32[64]
    offset: np.ndarray  # int32[64], into weights
    weights: np.ndarray  # float32[sum(length)]
    padded_index: np.ndarray  # int64[64, max_len]: bins of band b, padded by repeating its last bin
    padded_weights: np.ndarray  # float32[64, max_len]: zero where padded

    @property
    def first_bin(self) -> int:
        return int(self.start.min())

    @property
    def end_bin(self) -> int:
        return int((self.start + self.length).max())


@functools.cache
def mel_bands() -> MelBands:
    """The nonzero run of every column of mel_matrix(); each band's triangle covers contiguous bins."""
    m = mel_matrix()
    starts, lengths, chunks = [], [], []
    for b in range(NBANDS):
        nz = np.flatnonzero(m[:, b])
        if nz.size == 0 or nz[-1] - nz[0] + 1 != nz.size:
            raise AssertionError(f"mel band {b} is not one contiguous run of bins")  # TF's triangles always are
        starts.append(nz[0])
        lengths.append(nz.size)
        chunks.append(m[nz, b])
    start = np.asarray(starts, np.int32)
    length = np.asarray(lengths, np.int32)
    offset = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int32)
    width = int(length.max())
    j = np.arange(width)[None, :]  # [1, width]
    padded_index = start[:, None] + np.minimum(j, length[:, None] - 1)  # [64, width]
    padded_weights = np.where(j < length[:, None], m[padded_index, np.arange(NBANDS)[:, None]], 0).astype(np.float32)
    return MelBands(start, length, offset, np.concatenate(chunks).astype(np.float32),
                    padded_index.astype(np.int64), padded_weights)


def rfft_factors(n: int) -> list[int]:
    """TF's (DUCC's) factor list for a real FFT of length n = 2**k: fours, with a lone two moved to the front."""
    if n < 2 or n & (n - 1):
        raise ValueError(f"the TF-order real FFT here needs a power-of-two length, got {n}")
    factors = []
    while n % 4 == 0:
        factors.append(4)
        n //= 4
    if n == 2:
        factors.append(2)
        factors[0], factors[-1] = factors[-1], factors[0]
    return factors


def _unit_root(m: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin) of 2 pi m / n: float64 arrays of m's shape, from the first octant, so symmetric roots match."""
    m = np.asarray(m, np.int64) % n
    x = 8 * m  # in units of 2 pi / (8 n): octant boundaries fall on multiples of n
    ang = 2.0 * np.pi / (8 * n)
    c = np.empty(m.shape)
    s = np.empty(m.shape)
    for i, xi in np.ndenumerate(x):
        upper = xi >= 4 * n
        xi = 8 * n - xi if upper else xi  # fold the lower half plane onto the upper
        if xi < 2 * n:  # first quadrant
            cv, sv = (np.cos(xi * ang), np.sin(xi * ang)) if xi < n else \
                (np.sin((2 * n - xi) * ang), np.cos((2 * n - xi) * ang))
        else:  # second quadrant
            xi -= 2 * n
            cv, sv = (-np.sin(xi * ang), np.cos(xi * ang)) if xi < n else \
                (-np.cos((2 * n - xi) * ang), np.sin((2 * n - xi) * ang))
        c[i], s[i] = cv, (-sv if upper else sv)
    return c, s


@dataclass(frozen=True)
class RfftPass:
    """One radix pass of the TF-order real FFT: `radix` butterflies over l1 blocks of ido elements."""

    radix: int
    l1: int
    ido: int
    twiddles: np.ndarray  # float32[(radix - 1) * (ido - 1)]: cos, sin interleaved, as the butterflies read them


@functools.cache
def rfft_passes(n: int = NFFT) -> tuple[RfftPass, ...]:
    """The forward passes of TF's float32 real FFT of length n, in execution order (last factor first)."""
    passes = []
    l1 = 1
    for radix in rfft_factors(n):
        ido = n // (radix * l1)
        wa = np.zeros((radix - 1) * (ido - 1), np.float32)
        i = np.arange(1, (ido - 1) // 2 + 1)
        for j in range(1, radix):
            c, s = _unit_root(j * l1 * i, n)
            wa[(j - 1) * (ido - 1) + 2 * i - 2] = c
            wa[(j - 1) * (ido - 1) + 2 * i - 1] = s
        wa.setflags(write=False)
        passes.append(RfftPass(radix, l1, ido, wa))
        l1 *= radix
    return tuple(reversed(passes))
