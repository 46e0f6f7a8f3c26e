"""StreamingResampler: block-wise resampling equals one-shot, mono passes through untouched, channels average."""
from __future__ import annotations

import numpy as np
import pytest

from edgert.audio import StreamingResampler, resample_whole
from edgert.errors import AudioFormatError

SR = 16000


def _stream(rs: StreamingResampler, audio: np.ndarray, block: int) -> np.ndarray:
    parts = [rs.process(audio[i:i + block]) for i in range(0, len(audio), block)]
    return np.concatenate(parts + [rs.flush()])


def test_blockwise_output_equals_one_shot_output_whatever_the_block_size():
    audio = np.random.default_rng(0).standard_normal((44100 * 2, 2)).astype(np.float32) * 0.1
    whole = resample_whole(audio, 44100)
    for block in (7, 441, 4410, 10007):
        np.testing.assert_allclose(_stream(StreamingResampler(44100, 2), audio, block), whole, atol=1e-6)
    assert abs(whole.size - audio.shape[0] * SR / 44100) <= 1


def test_sines_resampled_from_44100_match_the_exact_16k_sine_to_1e4():
    t_in = np.arange(44100 * 2) / 44100
    t_out = np.arange(SR * 2) / SR
    for freq in (440.0, 1000.0, 3000.0, 5000.0):
        out = resample_whole(0.5 * np.sin(2 * np.pi * freq * t_in).astype(np.float32), 44100)
        exact = 0.5 * np.sin(2 * np.pi * freq * t_out)
        inner = slice(800, SR * 2 - 800)  # the filter's edges see the zeros outside the signal
        assert np.max(np.abs(out[inner] - exact[inner])) < 1e-4, freq


def test_mono_16k_passes_through_bit_exact_without_a_filter():
    audio = np.random.default_rng(1).uniform(-1, 1, (5000, 1)).astype(np.float32)
    rs = StreamingResampler(SR, 1)
    assert rs.passthrough
    out = _stream(rs, audio, 333)
    assert out.dtype == np.float32 and np.array_equal(out, audio[:, 0])


def test_stereo_is_downmixed_by_the_mean_of_its_channels():
    left = np.full(100, 0.5, np.float32)
    right = np.full(100, -0.25, np.float32)
    out = StreamingResampler(SR, 2).process(np.stack([left, right], axis=1))
    assert np.allclose(out, 0.125) and out.flags.c_contiguous and out.dtype == np.float32


def test_flush_resets_the_stream_for_a_new_signal():
    audio = np.random.default_rng(2).standard_normal(8000).astype(np.float32) * 0.1
    rs = StreamingResampler(8000, 1)
    first = _stream(rs, audio, 800)
    second = _stream(rs, audio, 800)
    np.testing.assert_array_equal(first, second)
    assert abs(first.size - 16000) <= 1


def test_a_block_with_the_wrong_channel_count_is_an_audio_format_error():
    with pytest.raises(AudioFormatError, match=r"\[k, 2\]"):
        StreamingResampler(44100, 2).process(np.zeros((10, 3), np.float32))


@pytest.mark.parametrize("rate, channels", [(0, 1), (44100, 0), (-8000, 1), (44100.5, 1)])
def test_a_nonsense_rate_or_channel_count_fails_when_built(rate, channels):
    with pytest.raises(AudioFormatError):
        StreamingResampler(rate, channels)
