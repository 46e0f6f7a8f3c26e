"""The clip encoder converts float samples to 16-bit itself: the FLAC it writes is the one libsndfile writes from
the float samples, byte for byte, at full scale, beyond it, at rounding ties and for NaN."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from edge_rt.pipeline import SR, flac_bytes, pcm16


def _libsndfile(audio: np.ndarray) -> bytes:
    """What the encoder wrote before: libsndfile converting float32 samples to PCM_16 itself."""
    buf = io.BytesIO()
    sf.write(buf, audio, SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


EDGES = np.array([0.0, -0.0, 1.0, -1.0, 1.5, -1.5, 0.99999, -0.99999, 32766.5 / 32768, 32767.5 / 32768,
                  -32767.5 / 32768, -32768.5 / 32768, 0.5 / 32768, 1.5 / 32768, 2.5 / 32768, -0.5 / 32768,
                  -1.5 / 32768, 3e-5, 1e30, -1e30, np.inf, -np.inf], np.float32)


@pytest.mark.parametrize("seed", range(3))
def test_the_bytes_are_libsndfiles_own(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60000))
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / SR)
    audio = (tone + 0.05 * rng.standard_normal(n)).astype(np.float32)
    assert flac_bytes(audio) == _libsndfile(audio)
    loud = np.concatenate([rng.uniform(-2, 2, 20000).astype(np.float32), EDGES])  # beyond full scale, ties
    assert flac_bytes(loud) == _libsndfile(loud)
    decoded = sf.read(io.BytesIO(flac_bytes(loud)), dtype="int16")[0]
    np.testing.assert_array_equal(decoded, pcm16(loud))


def test_nan_is_left_to_libsndfile():
    audio = np.array([0.1, np.nan, -0.2], np.float32)
    assert pcm16(audio) is None
    outcomes = []
    for encode in (flac_bytes, _libsndfile):  # libsndfile refuses the write: the event keeps no clip, as before
        try:
            outcomes.append(encode(audio))
        except Exception as exc:  # noqa: BLE001 - the failure itself is compared
            outcomes.append(type(exc))
    assert outcomes[0] == outcomes[1]


def test_an_empty_clip():
    assert flac_bytes(np.zeros(0, np.float32)) == _libsndfile(np.zeros(0, np.float32))
