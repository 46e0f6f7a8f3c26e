"""edgert.audio.decode: what the edge reads from a file and what the cloud decodes from the same bytes agree."""
import io

import numpy as np
import pytest
import soundfile as sf

from edge_rt.capture.files import read_clip
from edgert.audio import SAMPLE_RATE, decode
from edgert.errors import ClipDecodeError, EmptyClipError


def _flac(wave: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="FLAC")
    return buf.getvalue()


def test_a_44k_stereo_clip_decodes_to_16k_mono_as_the_edge_reads_the_file(tmp_path):
    t = np.arange(44100) / 44100
    wave = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.1 * np.sin(2 * np.pi * 880 * t)], axis=1)
    data = _flac(wave, 44100)
    path = tmp_path / "c.flac"
    path.write_bytes(data)
    got = decode(data)
    assert got.dtype == np.float32 and abs(got.size - SAMPLE_RATE) <= 1
    np.testing.assert_array_equal(got, read_clip(path))
    # the mean of the channels at 440 and 880 Hz: amplitude 0.15 and 0.05, not one channel alone
    spectrum = np.abs(np.fft.rfft(got[:16000])) / 8000
    assert spectrum[440] == pytest.approx(0.15, abs=0.01) and spectrum[880] == pytest.approx(0.05, abs=0.01)


def test_no_bytes_is_an_empty_clip_error():
    with pytest.raises(EmptyClipError, match="upload 7 is empty"):
        decode(b"", "upload 7")


def test_bytes_that_are_not_audio_are_a_decode_error_naming_the_clip():
    with pytest.raises(ClipDecodeError, match=r"^clip could not be decoded as audio \("):
        decode(b"RIFF not really a wave file at all")


def test_nan_and_inf_samples_decode_as_silence():
    wave = np.zeros(1600, np.float32)
    wave[10], wave[20] = np.nan, np.inf
    buf = io.BytesIO()
    sf.write(buf, wave, SAMPLE_RATE, format="WAV", subtype="FLOAT")
    got = decode(buf.getvalue())
    assert np.isfinite(got).all() and got[10] == 0.0 and got[20] == 0.0
