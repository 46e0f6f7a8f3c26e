"""Unit tests for edge_rt.datasets.augment: generated audio and room-like augmentations.

Levels, ratios and spectra are measured here independently (numpy RMS / rfft) rather than through the
module's own helpers wherever that is practical.
"""
from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest

from edge_rt.datasets import augment as A
from edge_rt.datasets.augment import AugmentError

SR = 16000
HAVE_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng is not installed (Debian package espeak-ng)")


# ---------------------------------------------------------------- helpers (independent measurements)

def rms(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def db(ratio: float) -> float:
    return 20.0 * np.log10(ratio)


def tone(seconds: float, freq: float = 1000.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def gapped_tone(amp: float = 0.5, on_s: float = 0.2, off_s: float = 0.8, bursts: int = 3) -> np.ndarray:
    """1 kHz tone bursts separated by long exact silence; burst lengths are whole 10 ms frames and whole cycles."""
    on, off = tone(on_s, amp=amp), np.zeros(int(off_s * SR), np.float32)
    return np.concatenate([np.concatenate([off, on]) for _ in range(bursts)] + [off])


def power_spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    return np.fft.rfftfreq(x.size, 1 / SR), np.abs(np.fft.rfft(x)) ** 2


def centroid_hz(x: np.ndarray) -> float:
    f, p = power_spectrum(x)
    return float((f * p).sum() / p.sum())


def energy_time_s(x: np.ndarray, fraction: float = 0.9) -> float:
    """Seconds until `fraction` of the signal's energy has arrived: a decay-time measure."""
    c = np.cumsum(np.asarray(x, np.float64) ** 2)
    return float(np.searchsorted(c, fraction * c[-1]) / SR)


def count_onsets(x: np.ndarray, rise_db: float = 10.0, floor_db: float = -50.0) -> int:
    """Frames (10 ms) whose power jumps > rise_db above the quietest of the previous 3 frames."""
    n = x.size // 160
    e = np.mean(np.asarray(x[:n * 160], np.float64).reshape(n, 160) ** 2, axis=1) + 1e-12
    d = 10 * np.log10(e)
    count, last = 0, -100
    for i in range(1, n):
        if d[i] > floor_db and d[i] - d[max(0, i - 3):i].min() > rise_db and i - last > 3:
            count, last = count + 1, i
    return count


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- active_rms

def test_active_rms_of_gapped_tone_is_the_tone_rms_not_the_diluted_overall_rms():
    amp = 0.5
    x = gapped_tone(amp)
    overall = rms(x)
    assert overall < 0.5 * np.sqrt(0.5) * amp  # the gaps really do dilute the plain RMS
    assert A.active_rms(x) == pytest.approx(np.sqrt(0.5) * amp, rel=0.01)


def test_active_rms_ignores_a_noise_floor_far_below_the_sound():
    x = gapped_tone(0.5) + (1e-4 * rng(3).standard_normal(gapped_tone(0.5).size)).astype(np.float32)
    assert A.active_rms(x) == pytest.approx(np.sqrt(0.5) * 0.5, rel=0.01)


def test_active_rms_of_silence_and_of_empty_input_is_zero():
    assert A.active_rms(np.zeros(16000, np.float32)) == 0.0
    assert A.active_rms(np.zeros(0, np.float32)) == 0.0


def test_active_rms_of_input_shorter_than_a_frame_is_its_plain_rms():
    x = np.array([0.5, -0.5, 0.5, -0.5, 0.0], np.float32)
    assert A.active_rms(x) == pytest.approx(np.sqrt(1.0 / 5.0), rel=1e-6)


# ---------------------------------------------------------------- set_level

@pytest.mark.parametrize("dbfs", [-40.0, -20.0, -6.0])
def test_set_level_hits_the_requested_active_level(dbfs):
    y = A.set_level(gapped_tone(0.05), dbfs)
    assert y.dtype == np.float32
    tone_part = y[np.abs(y) > 0]  # the bursts only (the gaps stay exact zeros under a gain)
    assert db(rms(tone_part)) == pytest.approx(dbfs, abs=0.1)
    assert db(A.active_rms(y)) == pytest.approx(dbfs, abs=0.1)


def test_set_level_never_leaves_full_scale_even_when_the_peaks_would_clip():
    x = gapped_tone(0.01)
    x[100] = 0.9  # one spike far above the tone: at -6 dBFS active level it would exceed 1
    y = A.set_level(x, -6.0)
    assert np.all(np.abs(y) <= 1.0)
    assert np.max(np.abs(y)) == pytest.approx(1.0)


def test_set_level_leaves_silence_silent():
    y = A.set_level(np.zeros(8000, np.float32), -20.0)
    assert y.dtype == np.float32 and y.shape == (8000,)
    assert not np.any(y)


# ---------------------------------------------------------------- fit_length

@pytest.mark.parametrize("n", [0, 1, 700, 1000, 1001, 5432])
def test_fit_length_returns_exactly_n_samples_as_a_circular_slice_of_the_bed(n):
    bed = np.arange(1000, dtype=np.float32)
    y = A.fit_length(bed, n, rng(1))
    assert y.dtype == np.float32 and y.shape == (n,)
    if n:
        start = int(y[0])
        assert np.array_equal(y, bed[(start + np.arange(n)) % bed.size])


def test_fit_length_is_deterministic_for_a_seed():
    bed = rng(0).standard_normal(1234).astype(np.float32)
    assert np.array_equal(A.fit_length(bed, 5000, rng(7)), A.fit_length(bed, 5000, rng(7)))


def test_fit_length_starts_at_different_offsets_for_different_seeds():
    bed = np.arange(1000, dtype=np.float32)
    offsets = {int(A.fit_length(bed, 10, rng(s))[0]) for s in range(10)}
    assert len(offsets) >= 8


def test_fit_length_of_an_empty_bed_raises():
    with pytest.raises(AugmentError, match="empty"):
        A.fit_length(np.zeros(0, np.float32), 100, rng())


# ---------------------------------------------------------------- mix_at_snr

@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_mix_at_snr_sets_active_signal_to_bed_ratio(snr_db):
    amp = 0.1
    signal = gapped_tone(amp)
    bed = rng(5).standard_normal(3 * SR).astype(np.float32)
    mix = A.mix_at_snr(signal, bed, snr_db, rng(2))
    assert mix.dtype == np.float32 and mix.shape == signal.shape
    assert np.max(np.abs(mix)) < 1.0  # no clipping, so mix - signal is exactly the scaled bed
    residual = mix.astype(np.float64) - signal
    measured = db(np.sqrt(0.5) * amp / rms(residual))
    assert measured == pytest.approx(snr_db, abs=0.2)


def test_mix_at_snr_loops_a_bed_shorter_than_the_signal():
    signal = tone(2.0, amp=0.1)
    bed = rng(6).standard_normal(3000).astype(np.float32)
    mix = A.mix_at_snr(signal, bed, 10.0, rng(3))
    assert mix.shape == signal.shape
    residual = mix.astype(np.float64) - signal
    # the added bed repeats with the bed's period
    assert np.allclose(residual[3000:], residual[:-3000], atol=1e-6)
    assert rms(residual) > 0


def test_mix_at_snr_of_a_silent_signal_raises():
    with pytest.raises(AugmentError, match="silent"):
        A.mix_at_snr(np.zeros(SR, np.float32), rng().standard_normal(SR).astype(np.float32), 10.0, rng())


def test_mix_at_snr_with_a_silent_bed_raises():
    with pytest.raises(AugmentError, match="silent"):
        A.mix_at_snr(tone(1.0), np.zeros(SR, np.float32), 10.0, rng())


# ---------------------------------------------------------------- band_limit

def test_band_limit_removes_white_noise_above_4_2_khz():
    x = (0.1 * rng(0).standard_normal(2 * SR)).astype(np.float32)
    f, p = power_spectrum(A.band_limit(x))
    above = p[f > 4200].mean()
    in_band = p[(f > 200) & (f < 3000)].mean()
    assert above / in_band < 1e-3


def test_band_limit_passes_a_1_khz_sine_at_its_amplitude():
    x = tone(1.0, 1000.0, amp=0.5)
    y = A.band_limit(x)
    mid = slice(2000, -2000)  # away from the resampler's edges
    assert rms(y[mid]) == pytest.approx(rms(x[mid]), rel=0.02)
    assert np.max(np.abs(y[mid])) == pytest.approx(0.5, rel=0.02)


def test_band_limit_removes_a_6_khz_sine():
    x = tone(1.0, 6000.0, amp=0.5)
    assert rms(A.band_limit(x)[2000:-2000]) < 1e-3 * rms(x)


@pytest.mark.parametrize("n", [1, 1000, 16001, 32000])
def test_band_limit_keeps_the_input_length(n):
    y = A.band_limit(rng(1).standard_normal(n).astype(np.float32))
    assert y.dtype == np.float32 and y.shape == (n,)


@pytest.mark.parametrize("rate", [0, -8000, 16000, 22050])
def test_band_limit_rejects_a_rate_outside_0_to_16k(rate):
    with pytest.raises(AugmentError, match="rate"):
        A.band_limit(tone(0.1), rate)


# ---------------------------------------------------------------- espeak

@needs_espeak
def test_espeak_returns_16khz_float32_speech_of_the_raw_duration():
    text = "Hello there, how are you today?"
    y = A.espeak(text)
    assert y.dtype == np.float32 and y.ndim == 1
    import soundfile as sf

    raw = subprocess.run(["espeak-ng", "--stdout", "-v", "en-us", "-s", "160", "-p", "50", text],
                         capture_output=True, check=True).stdout
    audio, rate = sf.read(io.BytesIO(raw), dtype="float32")
    assert rate != SR  # a real resample happens
    assert y.size / SR == pytest.approx(audio.shape[0] / rate, abs=0.01)


@needs_espeak
def test_espeak_is_longer_for_longer_text():
    short = A.espeak("Hi.")
    long = A.espeak("Hi. This sentence is a good deal longer than the first one.")
    assert long.size > 2 * short.size


@needs_espeak
def test_espeak_speaks_at_minus_20_dbfs_active_level():
    y = A.espeak("The kettle has boiled.")
    assert db(A.active_rms(y)) == pytest.approx(-20.0, abs=0.2)
    assert np.all(np.abs(y) <= 1.0)


@needs_espeak
def test_espeak_is_full_band_with_most_energy_below_4_khz():
    f, p = power_spectrum(A.espeak("Please close the window in the kitchen."))
    above = p[f > 4000].sum() / p.sum()
    assert above < 0.2
    assert above > 1e-4


@needs_espeak
def test_espeak_with_a_different_voice_gives_different_audio():
    a = A.espeak("Good morning.", voice="en-us")
    b = A.espeak("Good morning.", voice="en-gb")
    assert a.shape != b.shape or not np.allclose(a, b, atol=1e-3)


@needs_espeak
@pytest.mark.parametrize("text", ["", "   \n"])
def test_espeak_rejects_empty_text(text):
    with pytest.raises(AugmentError, match="text"):
        A.espeak(text)


@needs_espeak
def test_espeak_reports_an_unknown_voice():
    with pytest.raises(AugmentError, match="zz-nonexistent"):
        A.espeak("hello", voice="zz-nonexistent")


# ---------------------------------------------------------------- transient

@pytest.mark.parametrize("kind", A.TRANSIENT_KINDS)
@pytest.mark.parametrize("brightness", [0.0, 0.5, 1.0])
def test_transient_is_finite_float32_with_peak_half_scale(kind, brightness):
    x = A.transient(kind, rng(4), brightness)
    assert x.dtype == np.float32 and x.ndim == 1 and x.size > 0
    assert np.all(np.isfinite(x))
    assert np.max(np.abs(x)) == pytest.approx(0.5, rel=1e-3)


@pytest.mark.parametrize("brightness", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transient_centroid_orders_clink_above_tap_above_knock(brightness, seed):
    c = {k: centroid_hz(A.transient(k, rng(seed), brightness)) for k in ("knock", "tap", "clink")}
    assert c["clink"] > c["tap"] > c["knock"]


@pytest.mark.parametrize("kind", A.TRANSIENT_KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transient_brighter_means_higher_centroid_and_no_longer_decay(kind, seed):
    dull, bright = A.transient(kind, rng(seed), 0.1), A.transient(kind, rng(seed), 0.9)
    assert centroid_hz(bright) > centroid_hz(dull)
    assert energy_time_s(bright) <= energy_time_s(dull)


@pytest.mark.parametrize("kind", A.TRANSIENT_KINDS)
def test_transient_is_deterministic_per_seed_and_varies_across_seeds(kind):
    a, b, c = (A.transient(kind, rng(s), 0.5) for s in (11, 11, 12))
    assert np.array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_transient_rejects_an_unknown_kind_by_name():
    with pytest.raises(AugmentError, match="thud"):
        A.transient("thud", rng())


@pytest.mark.parametrize("brightness", [-0.01, 1.01, float("nan")])
def test_transient_rejects_brightness_outside_0_to_1(brightness):
    with pytest.raises(AugmentError, match="brightness"):
        A.transient("tap", rng(), brightness)


# ---------------------------------------------------------------- clatter

@pytest.mark.parametrize("seconds", [0.5, 2.0, 3.25])
def test_clatter_is_exactly_seconds_long_and_within_full_scale(seconds):
    x = A.clatter(rng(3), seconds=seconds)
    assert x.dtype == np.float32 and x.shape == (int(seconds * SR),)
    assert np.all(np.abs(x) <= 1.0)
    assert np.any(x)


@pytest.mark.parametrize("seed", range(5))
def test_clatter_holds_several_separate_bursts(seed):
    x = A.clatter(rng(seed), seconds=3.0, count=6)
    assert count_onsets(x) >= 3
    assert count_onsets(A.clatter(rng(seed), seconds=3.0, count=1)) == 1


def test_clatter_with_no_transients_is_silence():
    x = A.clatter(rng(), seconds=1.0, count=0)
    assert x.shape == (SR,) and not np.any(x)


def test_clatter_is_deterministic_per_seed():
    assert np.array_equal(A.clatter(rng(9)), A.clatter(rng(9)))
    a, b = A.clatter(rng(9), count=3), A.clatter(rng(10), count=3)
    assert not np.array_equal(a, b)


# ---------------------------------------------------------------- pink_noise

@pytest.mark.parametrize("n", [1000, 64000])
def test_pink_noise_has_the_requested_length(n):
    x = A.pink_noise(n, rng())
    assert x.dtype == np.float32 and x.shape == (n,)
    assert np.all(np.isfinite(x))


@pytest.mark.parametrize("seed", [1, 3, 5])
def test_pink_noise_has_unit_rms_and_no_dc_offset(seed):
    x = A.pink_noise(4 * SR, rng(seed))
    assert rms(x) == pytest.approx(1.0, rel=0.01)
    assert abs(float(np.mean(x, dtype=np.float64))) < 0.05


def test_pink_noise_power_falls_about_10_db_per_decade():
    slopes = []
    for seed in range(4):
        f, p = power_spectrum(A.pink_noise(8 * SR, rng(seed)))
        band = (f >= 100) & (f <= 6000)
        slopes.append(np.polyfit(np.log10(f[band]), np.log10(p[band]), 1)[0])
    assert np.mean(slopes) == pytest.approx(-1.0, abs=0.3)
    assert all(-1.3 < s < -0.7 for s in slopes)


def test_pink_noise_is_deterministic_per_seed():
    assert np.array_equal(A.pink_noise(5000, rng(2)), A.pink_noise(5000, rng(2)))
    assert not np.array_equal(A.pink_noise(5000, rng(2)), A.pink_noise(5000, rng(3)))


# --------------------------------------------------------------------------- noise_burst


def test_noise_burst_has_the_requested_length_peak_and_swells_and_fades():
    x = A.noise_burst(rng(3), 2.0, 0.5)
    assert x.dtype == np.float32 and x.shape == (2 * SR,)
    assert float(np.max(np.abs(x))) == pytest.approx(0.5, rel=1e-3)
    edge, middle = rms(x[: SR // 100]), rms(x[SR - SR // 4: SR + SR // 4])
    assert edge < 0.5 * middle  # it starts from (almost) nothing


def test_noise_burst_brightness_moves_its_band_up():
    def centroid(x):
        f, p = power_spectrum(x)
        return float(np.sum(f * p) / np.sum(p))

    dull = np.mean([centroid(A.noise_burst(rng(s), 1.5, 0.05)) for s in range(4)])
    bright = np.mean([centroid(A.noise_burst(rng(s), 1.5, 0.95)) for s in range(4)])
    assert bright > 3 * dull


def test_noise_burst_is_deterministic_per_seed_and_checks_its_arguments():
    np.testing.assert_array_equal(A.noise_burst(rng(9), 1.0), A.noise_burst(rng(9), 1.0))
    assert not np.array_equal(A.noise_burst(rng(9), 1.0), A.noise_burst(rng(10), 1.0))
    with pytest.raises(A.AugmentError, match="positive length"):
        A.noise_burst(rng(1), 0.0)
    with pytest.raises(A.AugmentError, match="brightness"):
        A.noise_burst(rng(1), 1.0, 1.5)


# --------------------------------------------------------------------------- typing


def test_typing_is_a_train_of_clicks_a_few_per_second_apart():
    x = A.typing(rng(4), 2.0)
    assert x.shape == (2 * SR,) and np.all(np.abs(x) <= 1.0)
    frame = SR // 100
    env = np.sqrt(np.mean(x[: x.size // frame * frame].reshape(-1, frame).astype(np.float64) ** 2, axis=1))
    loud = env > 0.1 * env.max()
    onsets = np.flatnonzero(loud[1:] & ~loud[:-1])
    assert 6 <= onsets.size <= 40  # 60-250 ms apart over 2 s
    np.testing.assert_array_equal(x, A.typing(rng(4), 2.0))


# --------------------------------------------------------------------------- speed


@pytest.mark.parametrize("factor", [0.85, 1.18])
def test_speed_moves_pitch_up_and_length_down_by_the_factor(factor):
    tone = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(SR) / SR)).astype(np.float32)
    y = A.speed(tone, factor)
    assert y.dtype == np.float32 and abs(y.size - SR / factor) <= 2
    f, p = power_spectrum(y)
    assert float(f[np.argmax(p)]) == pytest.approx(1000 * factor, rel=0.01)


def test_speed_one_is_the_same_audio_and_a_wild_factor_is_refused():
    x = rng(2).standard_normal(1000).astype(np.float32)
    np.testing.assert_array_equal(A.speed(x, 1.0), x)
    with pytest.raises(A.AugmentError, match="speed factor"):
        A.speed(x, 3.0)
