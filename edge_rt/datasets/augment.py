"""Generated ordinary audio and the augmentations that make training and evaluation material look like real rooms.

Every function takes and returns float32[samples] mono at 16 kHz, and every random choice comes from the
`numpy.random.Generator` it is given, so the same seed gives the same audio.
"""
from __future__ import annotations

import functools
import io
import shutil
import subprocess

import numpy as np

from edge_rt.errors import EdgeRtError
from edgert.yamnet.params import PARAMS

SR = PARAMS.sample_rate
FRAME = 160  # 10 ms frames for the active level
ACTIVE_WITHIN_DB = 20.0  # a frame is "active" (part of the sound) within this of the loudest frame
NARROW_RATE = 8000  # a cheap microphone / telephone path: everything above 4 kHz is gone
TRANSIENT_KINDS = ("click", "knock", "tap", "clink")


class AugmentError(EdgeRtError):
    """Generated audio cannot be made (a missing tool, an impossible request)."""


def active_rms(x: np.ndarray) -> float:
    """RMS over the 10 ms frames within ACTIVE_WITHIN_DB of the loudest one: the level of the sound, not its gaps."""
    n = x.size // FRAME
    if n == 0:
        return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    e = np.mean(np.square(x[:n * FRAME].reshape(n, FRAME), dtype=np.float64), axis=1)  # float64[n] frame power
    peak = e.max()
    if peak <= 0:
        return 0.0
    return float(np.sqrt(e[e >= peak * 10 ** (-ACTIVE_WITHIN_DB / 10)].mean()))


def gain_db(x: np.ndarray, db: float) -> np.ndarray:
    return (x * np.float32(10 ** (db / 20))).astype(np.float32)


def set_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    """Scale so that the sound's active RMS is `dbfs` (dB re full scale); silence stays silence."""
    rms = active_rms(x)
    if rms <= 0:
        return x.astype(np.float32, copy=True)
    return np.clip(gain_db(x, dbfs - 20 * np.log10(rms)), -1.0, 1.0)


def fit_length(bed: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """float32[n]: `bed` looped (from a random offset) or cut to n samples."""
    if bed.size == 0:
        raise AugmentError("cannot fit an empty background to a length")
    reps = -(-(n + bed.size) // bed.size)
    start = int(rng.integers(bed.size))
    return np.tile(bed, reps)[start:start + n].astype(np.float32)


def mix_at_snr(signal: np.ndarray, bed: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """`signal` over `bed` (looped or cut to its length), the bed scaled so active signal / bed RMS is snr_db."""
    bed = fit_length(bed, signal.size, rng)
    s, b = active_rms(signal), float(np.sqrt(np.mean(np.square(bed, dtype=np.float64))))
    if s <= 0 or b <= 0:
        raise AugmentError("SNR is undefined for a silent signal or a silent background")
    scaled = bed * np.float32(s / b * 10 ** (-snr_db / 20))
    return np.clip(signal + scaled, -1.0, 1.0).astype(np.float32)


def band_limit(x: np.ndarray, rate: int = NARROW_RATE) -> np.ndarray:
    """Through a `rate` Hz path and back to 16 kHz (soxr, the edge's own resampler): nothing above rate/2 is left."""
    import soxr

    if not 0 < rate < SR:
        raise AugmentError(f"band-limit rate must be between 0 and {SR} Hz, got {rate}")
    down = soxr.resample(x.astype(np.float32), SR, rate, quality="HQ")
    up = soxr.resample(down, rate, SR, quality="HQ").astype(np.float32)
    out = np.zeros(x.size, np.float32)
    out[:min(x.size, up.size)] = up[:x.size]
    return out


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Played `factor` times faster (soxr): pitch up and length down by that factor, as a tape would."""
    import soxr

    if not 0.5 <= factor <= 2.0:
        raise AugmentError(f"speed factor must be between 0.5 and 2, got {factor}")
    if factor == 1.0:
        return x.astype(np.float32, copy=True)
    return soxr.resample(x.astype(np.float32), SR * factor, SR, quality="HQ").astype(np.float32)


@functools.lru_cache(maxsize=1)
def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise AugmentError("espeak-ng is not installed (Debian package espeak-ng; `make setup` installs it)")
    return exe


def espeak(text: str, voice: str = "en-us", speed: int = 160, pitch: int = 50) -> np.ndarray:
    """Synthetic speech at a normal speaking level: float32[samples] at 16 kHz, active RMS -20 dBFS."""
    import soundfile as sf

    from edgert.audio import resample_whole

    if not text.strip():
        raise AugmentError("espeak needs some text to speak")
    proc = subprocess.run([_espeak(), "--stdout", "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), text],
                          capture_output=True)
    if proc.returncode != 0 or len(proc.stdout) < 64:
        raise AugmentError(f"espeak-ng failed for voice {voice!r}: {proc.stderr.decode(errors='replace').strip()}")
    audio, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    return set_level(resample_whole(audio, rate), -20.0)


def transient(kind: str, rng: np.random.Generator, brightness: float = 0.5) -> np.ndarray:
    """One household transient, float32[samples], peak about -6 dBFS.

    click: a broadband impulse; knock: a low damped thump (wood, a door); tap: a mid-frequency tick (a finger on
    a table); clink: inharmonic high partials ringing out (cutlery, a cup on a saucer). `brightness` in [0, 1]
    moves each one's frequencies up and shortens its decay.
    """
    if kind not in TRANSIENT_KINDS:
        raise AugmentError(f"unknown transient kind {kind!r}; one of {TRANSIENT_KINDS}")
    if not 0.0 <= brightness <= 1.0:
        raise AugmentError(f"brightness must be in [0, 1], got {brightness}")
    b = float(brightness)
    if kind == "click":
        n = int(SR * 0.01)
        x = rng.standard_normal(n) * np.exp(-np.arange(n) / (SR * (0.003 - 0.002 * b)))
        if b < 0.5:  # a duller click: smooth away the top of the spectrum
            k = int(2 + 8 * (0.5 - b))
            x = np.convolve(x, np.ones(k) / k, mode="same")
    else:
        lo, hi, decay, partials = {
            "knock": (70.0, 300.0, 0.06, 3),
            "tap": (600.0, 2500.0, 0.03, 3),
            "clink": (2000.0, 7000.0, 0.25, 5),
        }[kind]
        f0 = lo + (hi - lo) * b * rng.uniform(0.8, 1.0)
        tau = decay * (1.3 - 0.6 * b) * rng.uniform(0.8, 1.2)
        n = int(SR * min(1.0, 6 * tau))
        t = np.arange(n) / SR
        ratios = [1.0] + sorted(rng.uniform(1.3, 3.9, partials - 1).tolist())  # inharmonic, as struck objects are
        x = np.zeros(n)
        for i, r in enumerate(ratios):
            f = min(f0 * r, 0.45 * SR)
            x += np.exp(-t / (tau / (1 + 0.5 * i))) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) / (1 + i)
        attack = int(SR * 0.002)
        x[:attack] *= np.linspace(0.0, 1.0, attack)
        x += 0.3 * rng.standard_normal(n) * np.exp(-t / 0.004)  # the strike itself
    peak = float(np.max(np.abs(x))) or 1.0
    return (x / peak * 0.5).astype(np.float32)


def typing(rng: np.random.Generator, seconds: float = 2.0) -> np.ndarray:
    """float32[seconds*16000]: a train of clicks and taps 60-250 ms apart, uneven in level and brightness (a
    keyboard, a rattle, a spoon stirred in a cup): the rapid ticking that glass-break detectors mistake."""
    n = int(seconds * SR)
    out = np.zeros(n, np.float32)
    kind = str(rng.choice(["click", "tap"]))
    base = float(rng.uniform(0, 1))
    t = int(rng.uniform(0, 0.1) * SR)
    while t < n:
        x = gain_db(transient(kind, rng, float(np.clip(base + rng.normal(0, 0.15), 0, 1))), float(rng.uniform(-12, 0)))
        seg = x[:n - t]
        out[t:t + seg.size] += seg
        t += int(rng.uniform(0.06, 0.25) * SR)
    return np.clip(out, -1.0, 1.0)


def clatter(rng: np.random.Generator, seconds: float = 2.0, count: int | None = None) -> np.ndarray:
    """float32[seconds*16000]: a burst of random transients of every kind and brightness (a kitchen, a desk);
    with `count` None, a third of the bursts are `typing` trains instead."""
    n = int(seconds * SR)
    if count is None and rng.uniform() < 1 / 3:
        return typing(rng, seconds)
    out = np.zeros(n, np.float32)
    for _ in range(count if count is not None else int(rng.integers(1, 7))):
        t = transient(str(rng.choice(TRANSIENT_KINDS)), rng, float(rng.uniform(0, 1)))
        t = gain_db(t, float(rng.uniform(-20, 0)))
        at = int(rng.integers(0, max(1, n - t.size)))
        seg = t[:n - at]
        out[at:at + seg.size] += seg
    return np.clip(out, -1.0, 1.0)


def noise_burst(rng: np.random.Generator, seconds: float = 2.0, brightness: float | None = None) -> np.ndarray:
    """float32[seconds*16000]: a household hiss, peak about -6 dBFS: band-passed noise that swells and fades
    (a kettle, a shower, a tap, spray, a hair dryer), sometimes wavering as running water does. Broadband
    sounds are what a scream detector confuses them with, so the head needs to have heard them.
    `brightness` in [0, 1] moves the band up (drawn when None)."""
    from scipy.signal import butter, sosfilt

    if seconds <= 0:
        raise AugmentError(f"a noise burst needs a positive length, got {seconds} s")
    b = float(rng.uniform(0, 1)) if brightness is None else float(brightness)
    if not 0.0 <= b <= 1.0:
        raise AugmentError(f"brightness must be in [0, 1], got {brightness}")
    n = int(seconds * SR)
    centre = 300.0 * (20.0 ** b)  # 300 Hz .. 6 kHz
    lo, hi = centre / rng.uniform(1.5, 4.0), min(centre * rng.uniform(1.5, 4.0), 0.45 * SR)
    sos = butter(4, [max(lo, 40.0), hi], btype="bandpass", fs=SR, output="sos")
    x = sosfilt(sos, rng.standard_normal(n))
    t = np.arange(n) / SR
    rise, fall = rng.uniform(0.02, 0.4), rng.uniform(0.05, 0.6)
    env = np.minimum(1.0, np.minimum(t / rise, (seconds - t) / fall)).clip(0, 1)
    if rng.uniform() < 0.5:  # running water: a fast, irregular waver
        env = env * (1 + 0.5 * np.interp(t, np.linspace(0, seconds, int(seconds * 30) + 2),
                                         rng.uniform(-1, 1, int(seconds * 30) + 2)))
    x = x * env
    peak = float(np.max(np.abs(x))) or 1.0
    return (x / peak * 0.5).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """float32[n] pink (1/f) noise of unit RMS, shaped in the frequency domain."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = 1.0
    spec[0] = 0.0  # no DC: it would count towards the level without being heard
    x = np.fft.irfft(spec / np.sqrt(f), n)
    rms = float(np.sqrt(np.mean(np.square(x))))
    return (x / (rms or 1.0)).astype(np.float32)
