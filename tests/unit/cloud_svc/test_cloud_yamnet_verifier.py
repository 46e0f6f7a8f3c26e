"""The yamnet verifier: the float model on the whole clip, max over frames (equal to TF's reference on the golden
clips), plus the distress head where it was built."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from cloud_svc.verify import load


@pytest.fixture(scope="module")
def verifier():
    return load("yamnet")


def flac(wave: np.ndarray, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


@pytest.mark.parametrize("clip", ["clip_glass_break", "clip_scream"])
def test_label_scores_are_the_max_over_frames_of_the_tf_reference(goldens, clip):
    g = goldens[clip]
    plain = load("yamnet", head_weight=0.0)  # AudioSet groups only
    peak = g["scores"].max(axis=0)            # TF hub model, [521] max over the clip's frames
    got = plain.scores(g["waveform"])
    for label, idx in plain.groups.items():
        assert got[label] == pytest.approx(float(peak[idx].max()), abs=2e-3)


def test_the_distress_head_can_only_raise_a_label(verifier, goldens):
    if verifier.head is None:
        pytest.skip("no distress head built")
    g = goldens["clip_glass_break"]
    with_head, without = verifier.scores(g["waveform"]), load("yamnet", head_weight=0.0).scores(g["waveform"])
    assert all(with_head[k] >= without[k] - 1e-6 for k in without)


def test_verdicts_on_flac_clips(verifier, goldens):
    glass = verifier.verify(flac(goldens["clip_glass_break"]["waveform"]), "flac", "glass_break")
    assert glass.verifier == "yamnet" and glass.agree is ("glass_break" in glass.labels)
    scream = verifier.verify(flac(goldens["clip_scream"]["waveform"]), "flac", "glass_break")
    assert "scream" in scream.labels and scream.agree is False
    assert verifier.verify(flac(goldens["clip_scream"]["waveform"]), "flac", "no_such_label").agree is None


def test_a_clip_at_another_rate_is_resampled(verifier, goldens):
    w = goldens["clip_scream"]["waveform"]
    from scipy.signal import resample_poly

    r = verifier.verify(flac(resample_poly(w, 3, 1).astype(np.float32), 48000), "flac", "scream")
    assert r.agree is True


def test_a_clip_that_is_not_audio_fails_the_job_not_the_worker(verifier):
    from cloud_svc.verify.base import ClipDecodeError

    with pytest.raises(ClipDecodeError):
        verifier.verify(b"definitely not flac", "flac", "scream")
