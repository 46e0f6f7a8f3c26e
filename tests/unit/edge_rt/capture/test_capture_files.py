"""file: and dir: sources: correct 16 kHz mono from any rate and format, pacing, and clear errors on bad input."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from edge_rt.capture import open_source
from edge_rt.errors import AudioDecodeError, CaptureError, EmptySourceError, SourceNotFoundError, SourceSpecError

SR = 16000


class Collect:
    """A sink that keeps every chunk and checks the chunk contract as it goes."""

    def __init__(self):
        self.chunks: list[np.ndarray] = []

    def __call__(self, chunk: np.ndarray) -> None:
        assert chunk.dtype == np.float32 and chunk.ndim == 1 and chunk.size > 0 and chunk.flags.c_contiguous
        assert np.isfinite(chunk).all()
        self.chunks.append(chunk)

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)


def run(spec: str, **kw) -> tuple[np.ndarray, object]:
    src = open_source(spec, **kw)
    sink = Collect()
    src.run(sink, threading.Event())
    return sink.audio, src


def tone(rate: int, seconds: float, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32)


def peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.fft.rfftfreq(audio.size, 1 / SR)[np.argmax(spectrum)])


def test_a_44k1_stereo_file_matches_scipy_resample_poly_of_the_whole_file(tmp_path):
    rate, n = 44100, 44100 * 5
    t = np.arange(n) / rate
    rng = np.random.default_rng(7)
    left = 0.5 * scipy.signal.chirp(t, 100, 5, 5000)
    right = 0.3 * scipy.signal.sosfilt(scipy.signal.butter(8, 5000, fs=rate, output="sos"), rng.standard_normal(n))
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), rate, subtype="PCM_16")

    got, src = run(f"file:{path}")
    decoded, _ = sf.read(path, dtype="float64")
    ref = scipy.signal.resample_poly(decoded.mean(axis=1), 160, 441)

    assert abs(got.size - ref.size) <= 2
    edge = SR * 50 // 1000  # both filters see zeros past the ends, each its own way
    diff = np.abs(got[edge:ref.size - edge] - ref[edge:ref.size - edge])
    # Measured: max 1.1e-3, RMS 2.5e-4. They differ because the filters differ: resample_poly's Kaiser(5)
    # window ripples ~1e-3 in the passband and rolls off from ~6.5 kHz, soxr HQ is flat to 7.3 kHz (against an
    # exact sine it is within 1e-4, see test_audio_resample). A misaligned or wrong-rate output is off by ~0.5.
    assert diff.max() <= 2e-3
    assert np.sqrt(np.mean(diff ** 2)) <= 5e-4
    assert src.stats["files"] == 1 and src.stats["samples"] == got.size


def test_a_16k_mono_file_passes_through_bit_exact(tmp_path):
    audio = np.random.default_rng(3).uniform(-0.9, 0.9, SR * 2).astype(np.float32)
    sf.write(tmp_path / "a.wav", audio, SR, subtype="FLOAT")
    got, _ = run(f"file:{tmp_path / 'a.wav'}")
    assert np.array_equal(got, audio)


@pytest.mark.parametrize("fmt, rate, channels", [("wav", 8000, 1), ("flac", 22050, 2), ("ogg", 48000, 2),
                                                 ("flac", 16000, 1)])
def test_wav_flac_and_ogg_at_any_rate_become_16k_mono_with_the_same_pitch(tmp_path, fmt, rate, channels):
    path = tmp_path / f"tone.{fmt}"
    sf.write(path, tone(rate, 2.0, 1000.0, channels), rate)
    got, _ = run(f"file:{path}")
    assert abs(got.size - 2 * SR) <= 2
    assert abs(peak_hz(got) - 1000.0) <= 2.0
    assert 0.3 < np.sqrt(np.mean(got[SR // 4: -SR // 4] ** 2)) < 0.4  # 0.5 / sqrt(2): the level survives


def test_a_missing_file_is_an_error_naming_the_path(tmp_path):
    with pytest.raises(SourceNotFoundError, match="nope.wav"):
        open_source(f"file:{tmp_path / 'nope.wav'}")


def test_a_corrupt_file_could_not_be_decoded_and_says_which(tmp_path):
    path = tmp_path / "junk.wav"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(AudioDecodeError, match=r"junk\.wav could not be decoded"):
        open_source(f"file:{path}")


def test_a_zero_length_file_and_a_header_without_frames_are_empty(tmp_path):
    (tmp_path / "zero.wav").write_bytes(b"")
    sf.write(tmp_path / "header.wav", np.zeros((0, 1), np.float32), SR)
    for name in ("zero.wav", "header.wav"):
        with pytest.raises(EmptySourceError, match="empty"):
            open_source(f"file:{tmp_path / name}")


def test_a_truncated_wav_plays_what_exists_with_a_warning(tmp_path, caplog):
    audio = tone(SR, 2.0)
    sf.write(tmp_path / "full.wav", audio, SR, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2 + 1])  # +1: cut mid-sample too
    with caplog.at_level(logging.WARNING, logger="edge_rt.capture"):
        got, src = run(f"file:{tmp_path / 'cut.wav'}")
    assert "truncated" in caplog.text and "cut.wav" in caplog.text
    assert src.stats["truncated_files"] == 1
    assert abs(got.size - SR) <= SR // 100
    np.testing.assert_allclose(got, audio[: got.size, 0], atol=1e-4)


def test_a_flac_cut_mid_stream_delivers_its_audio_then_fails_saying_how_far(tmp_path):
    sf.write(tmp_path / "full.flac", tone(SR, 10.0), SR)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    src = open_source(f"file:{tmp_path / 'cut.flac'}")
    sink = Collect()
    with pytest.raises(AudioDecodeError, match=r"cut\.flac could not be decoded past \d+\.\d+ s"):
        src.run(sink, threading.Event())
    assert sink.audio.size > 2 * SR


def test_nan_and_inf_samples_become_zero_are_counted_and_warned_once(tmp_path, caplog):
    audio = tone(SR, 1.0)[:, 0]
    audio[100:110] = np.nan
    audio[5000] = np.inf
    audio[9000:9003] = -np.inf
    sf.write(tmp_path / "nan.wav", audio, SR, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="edge_rt.capture"):
        got, src = run(f"file:{tmp_path / 'nan.wav'}")
    assert src.stats["nan_samples"] == 14
    assert np.isfinite(got).all() and got[100:110].tolist() == [0.0] * 10 and got[5000] == 0.0
    assert caplog.text.count("NaN/Inf") == 1


def test_a_file_paced_realtime_takes_its_duration_in_wall_clock(tmp_path):
    sf.write(tmp_path / "half.wav", tone(SR, 0.5), SR)
    t0 = time.monotonic()
    got, _ = run(f"file:{tmp_path / 'half.wav'}", realtime=True)
    elapsed = time.monotonic() - t0
    assert got.size == SR // 2 and 0.45 <= elapsed < 1.0


def test_a_realtime_file_stops_promptly_when_asked(tmp_path):
    sf.write(tmp_path / "long.wav", tone(SR, 30.0), SR)
    src = open_source(f"file:{tmp_path / 'long.wav'}", realtime=True)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    src.run(Collect(), stop)
    assert time.monotonic() - t0 < 0.6


def test_source_stop_from_another_thread_ends_run(tmp_path):
    sf.write(tmp_path / "long.wav", tone(SR, 30.0), SR)
    src = open_source(f"file:{tmp_path / 'long.wav'}", realtime=True)
    threading.Timer(0.2, src.stop).start()
    t0 = time.monotonic()
    src.run(Collect(), threading.Event())
    assert time.monotonic() - t0 < 0.5 and src.stopped


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "a.wav", tone(SR, 0.5, 500.0), SR)
    (folder / "b.wav").write_bytes(b"RIFF not really a wav file at all" * 10)
    sf.write(folder / "sub" / "c.flac", tone(44100, 0.5, 700.0, 2), 44100)
    (folder / "notes.txt").write_text("not audio")
    return folder


def test_dir_once_plays_every_file_in_path_order_and_skips_a_corrupt_one(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="edge_rt.capture"):
        got, src = run(f"dir:{_folder(tmp_path)}", loop=False)
    assert src.finite
    assert src.stats["files"] == 2 and src.stats["files_skipped"] == 1
    assert "b.wav" in caplog.text and "could not be decoded" in caplog.text
    assert abs(got.size - SR) <= 2
    assert abs(peak_hz(got[: SR // 2]) - 500) <= 4 and abs(peak_hz(got[SR // 2:]) - 700) <= 4


def test_dir_in_a_loop_is_live_and_plays_again_until_stopped(tmp_path):
    src = open_source(f"dir:{_folder(tmp_path)}", realtime=False)
    assert not src.finite
    stop = threading.Event()

    def sink(chunk):
        if src.stats["files"] >= 5:
            stop.set()

    src.run(sink, stop)
    assert src.stats["files"] >= 5 and src.stats["files_skipped"] >= 2


def test_dir_with_no_audio_files_is_empty(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing to hear")
    with pytest.raises(EmptySourceError, match="no audio files"):
        open_source(f"dir:{tmp_path}")


def test_dir_whose_every_file_is_corrupt_fails_clearly(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"garbage" * 100)
    (tmp_path / "y.ogg").write_bytes(b"garbage" * 100)
    with pytest.raises(AudioDecodeError, match="none of the 2 audio files"):
        run(f"dir:{tmp_path}", loop=False)


def test_dir_missing_or_pointing_at_a_file_is_an_error(tmp_path):
    with pytest.raises(SourceNotFoundError):
        open_source(f"dir:{tmp_path / 'absent'}")
    sf.write(tmp_path / "a.wav", tone(SR, 0.1), SR)
    with pytest.raises(SourceSpecError, match="use file:"):
        open_source(f"dir:{tmp_path / 'a.wav'}")


def test_errors_are_one_line_capture_errors(tmp_path):
    (tmp_path / "junk.ogg").write_bytes(b"\x00" * 100)
    for spec in (f"file:{tmp_path / 'junk.ogg'}", f"file:{tmp_path / 'none.wav'}", f"dir:{tmp_path / 'none'}"):
        with pytest.raises(CaptureError) as info:
            open_source(spec)
        assert "\n" not in str(info.value)
