"""file: and dir: on awkward audio: samples beyond full scale, 8-bit PCM, 96 kHz x 6 channels, a FLAC cut inside
a large block, and folders that hold other files than audio."""
from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import soundfile as sf

from edge_rt.capture import FileSource, open_source
from edge_rt.capture.base import Feed, Source
from edge_rt.errors import AudioDecodeError

SR = 16000


def collect(src) -> np.ndarray:
    chunks: list[np.ndarray] = []
    src.run(chunks.append, threading.Event())
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def tone(rate: int, seconds: float, freq: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_float_samples_beyond_full_scale_are_clipped_counted_and_warned_once(tmp_path, caplog):
    loud = tone(SR, 2.0, 440.0, amplitude=4.0)
    sf.write(tmp_path / "loud.wav", loud, SR, subtype="FLOAT")
    sf.write(tmp_path / "clipped.wav", np.clip(loud, -1, 1), SR, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="edge_rt.capture"):
        src = open_source(f"file:{tmp_path / 'loud.wav'}")
        got = collect(src)
    assert np.abs(got).max() == 1.0
    np.testing.assert_array_equal(got, collect(open_source(f"file:{tmp_path / 'clipped.wav'}")))
    assert src.stats["clipped_samples"] == int(np.count_nonzero(np.abs(loud) > 1))
    assert src.stats["nan_samples"] == 0
    assert caplog.text.count("beyond full scale") == 1 and "loud.wav" in caplog.text


class Blocks(Source):
    """Hands fixed float32[k, 1] blocks through the feed's sanitizer; keeps what it returned."""

    def __init__(self, blocks: list[np.ndarray]):
        super().__init__("blocks", finite=True)
        self.blocks = blocks
        self.sanitized: list[np.ndarray] = []

    def _produce(self, feed: Feed) -> None:
        for block in self.blocks:
            self.sanitized.append(feed.sanitize(block, "blocks"))
            feed.emit(self.sanitized[-1][:, 0])


def test_nan_and_overrange_in_one_block_are_counted_apart_and_a_clean_block_is_not_copied():
    bad = np.array([[0.5], [np.nan], [np.inf], [-3.0], [1.0], [-1.0]], np.float32)
    clean = np.array([[0.25], [-1.0]], np.float32)
    src = Blocks([bad, clean])
    got = collect(src)
    assert got.tolist() == [0.5, 0.0, 0.0, -1.0, 1.0, -1.0, 0.25, -1.0]
    assert src.stats["nan_samples"] == 2 and src.stats["clipped_samples"] == 1
    assert src.sanitized[1] is clean


def test_a_full_scale_pcm_recording_plays_unchanged(tmp_path):
    pcm = np.clip(tone(SR, 1.0, 440.0, amplitude=3.0), -1, 1)
    sf.write(tmp_path / "sat.wav", pcm, SR, subtype="PCM_16")
    src = open_source(f"file:{tmp_path / 'sat.wav'}")
    got = collect(src)
    np.testing.assert_array_equal(got, sf.read(tmp_path / "sat.wav", dtype="float32")[0])
    assert src.stats["clipped_samples"] == 0


def test_8_bit_unsigned_pcm_decodes_centred_at_full_level(tmp_path):
    sf.write(tmp_path / "u8.wav", tone(SR, 1.0, 440.0), SR, subtype="PCM_U8")
    assert sf.info(str(tmp_path / "u8.wav")).subtype == "PCM_U8"
    got = collect(open_source(f"file:{tmp_path / 'u8.wav'}"))
    assert got.size == SR
    assert abs(float(got.mean())) < 0.01  # unsigned bytes read as signed would sit 0.5 off centre, or wrap
    np.testing.assert_allclose(got, tone(SR, 1.0, 440.0), atol=1.5 / 128)  # within 8-bit quantisation


def test_96k_six_channels_become_the_16k_mean_of_the_channels(tmp_path):
    freqs = [300.0, 700.0, 1100.0, 1900.0, 2700.0, 3900.0]
    six = np.stack([tone(96000, 2.0, f) for f in freqs], axis=1)
    sf.write(tmp_path / "six.wav", six, 96000, subtype="PCM_24")
    got = collect(open_source(f"file:{tmp_path / 'six.wav'}"))
    assert abs(got.size - 2 * SR) <= 1
    spectrum = np.abs(np.fft.rfft(got[:SR])) / (SR / 2)  # 1 Hz bins
    for f in freqs:
        assert spectrum[int(f)] == pytest.approx(0.5 / 6, abs=0.005), f  # each channel at a sixth of its level


def test_a_flac_cut_inside_a_large_block_still_delivers_the_audio_before_the_cut(tmp_path):
    sf.write(tmp_path / "full.flac", tone(SR, 10.0, 440.0), SR)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    small = FileSource(tmp_path / "cut.flac")
    large = FileSource(tmp_path / "cut.flac", block_seconds=10.0)
    heard = []
    for src in (small, large):
        chunks: list[np.ndarray] = []
        with pytest.raises(AudioDecodeError, match=r"cut\.flac could not be decoded past [1-9]"):
            src.run(chunks.append, threading.Event())
        heard.append(np.concatenate(chunks))
    assert heard[1].size > 2 * SR  # a 10 s block is not lost whole when a read inside it fails
    np.testing.assert_allclose(heard[1], heard[0], atol=0)


def test_block_seconds_must_be_positive(tmp_path):
    sf.write(tmp_path / "a.wav", tone(SR, 0.1, 440.0), SR)
    with pytest.raises(ValueError, match="block_seconds"):
        FileSource(tmp_path / "a.wav", block_seconds=0)


def test_dir_names_each_non_audio_file_once_and_plays_the_audio(tmp_path, caplog):
    sf.write(tmp_path / "a.wav", tone(SR, 0.5, 500.0), SR)
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "cover.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (tmp_path / ".DS_Store").write_bytes(bytes(64))
    src = open_source(f"dir:{tmp_path}", loop=True, realtime=False)
    stop = threading.Event()

    def sink(chunk):
        if src.stats["files"] >= 3:
            stop.set()

    with caplog.at_level(logging.WARNING, logger="edge_rt.capture"):
        src.run(sink, stop)
    assert src.stats["files"] >= 3 and src.stats["files_ignored"] == 2
    for name in ("notes.txt", "cover.png"):
        assert caplog.text.count(name) == 1, name  # once, not once per pass of the loop
    assert ".DS_Store" not in caplog.text
    assert "(1 files" in src.description
