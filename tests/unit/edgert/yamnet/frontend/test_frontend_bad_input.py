"""Bad input gets a clear, typed error, or the documented handling (int16 scaling, float64 rounding)."""
from __future__ import annotations

import numpy as np
import pytest

from edgert.errors import CoreError, FrontendError, InputShapeError, NonFiniteAudioError, SampleRateError


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_raise_non_finite_audio_error(fe, value, audio):
    x = audio(1.0)
    x[1234] = value
    with pytest.raises(NonFiniteAudioError, match="index 1234"):
        fe.log_mel(x)
    with pytest.raises(NonFiniteAudioError):
        fe.StreamingFrontend().push(x)
    assert issubclass(NonFiniteAudioError, FrontendError) and issubclass(FrontendError, CoreError)


def test_int16_pcm_is_scaled_by_1_over_32768(fe, rng):
    pcm = (rng.integers(-32768, 32768, 20000)).astype(np.int16)
    expected = fe.log_mel(pcm.astype(np.float32) / np.float32(32768))
    assert np.array_equal(fe.log_mel(pcm), expected)
    s = fe.StreamingFrontend()
    assert np.array_equal(s.push(pcm), fe.patches(fe.log_mel(pcm, pad=False)))


def test_float64_is_rounded_to_float32(fe, audio):
    x = audio(1.0)
    assert np.array_equal(fe.log_mel(x.astype(np.float64)), fe.log_mel(x))


def test_non_contiguous_input_gives_the_contiguous_result(fe, audio):
    x = audio(2.0)
    strided = np.repeat(x, 2)[::2]
    assert not strided.flags.c_contiguous
    assert np.array_equal(fe.log_mel(strided), fe.log_mel(x))


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.float16, np.complex64, bool, object])
def test_other_dtypes_raise_input_shape_error(fe, dtype):
    x = np.zeros(20000, dtype=dtype)
    with pytest.raises(InputShapeError, match="dtype"):
        fe.log_mel(x)
    with pytest.raises(InputShapeError, match="dtype"):
        fe.StreamingFrontend().push(x)


@pytest.mark.parametrize("shape", [(20000, 1), (2, 20000), (4, 100, 100)])
def test_multichannel_or_2d_input_raises_input_shape_error(fe, shape):
    with pytest.raises(InputShapeError, match="mono"):
        fe.log_mel(np.zeros(shape, np.float32))
    with pytest.raises(InputShapeError, match="mono"):
        fe.StreamingFrontend().push(np.zeros(shape, np.float32))


def test_a_scalar_raises_input_shape_error(fe):
    with pytest.raises(InputShapeError):
        fe.log_mel(np.float32(0.5))


def test_an_empty_waveform_raises_input_shape_error(fe):
    with pytest.raises(InputShapeError, match="empty"):
        fe.log_mel(np.zeros(0, np.float32))
    with pytest.raises(InputShapeError, match="empty"):
        fe.log_mel(np.zeros(0, np.float32), pad=False)


@pytest.mark.parametrize("rate", [8000, 44100, 48000, 16001])
def test_a_sample_rate_other_than_16k_raises_and_points_to_capture(fe, rate):
    with pytest.raises(SampleRateError, match="resampling lives in capture"):
        fe.log_mel(np.zeros(20000, np.float32), sample_rate=rate)
    with pytest.raises(SampleRateError, match="resampling lives in capture"):
        fe.StreamingFrontend(sample_rate=rate)


def test_sample_rate_16000_is_accepted_by_keyword(fe):
    assert fe.log_mel(np.zeros(20000, np.float32), sample_rate=16000).shape == (144, 64)
    fe.StreamingFrontend(sample_rate=16000)


@pytest.mark.parametrize("shape", [(100,), (100, 63), (100, 65), (2, 100, 64)])
def test_patches_of_a_wrong_shape_raise_input_shape_error(fe, shape):
    with pytest.raises(InputShapeError):
        fe.patches(np.zeros(shape, np.float32))


def test_patches_of_integers_raise_input_shape_error(fe):
    with pytest.raises(InputShapeError, match="dtype"):
        fe.patches(np.zeros((100, 64), np.int32))
