"""The yamnet verifier: the float model on the whole clip, max over frames (equal to TF's reference on the golden
clips), plus the distress head where it was built."""
from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cloud_svc.verify import load
from cloud_svc.verify.base import decode


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


@pytest.mark.parametrize("clip", ["clip_glass_break", "clip_scream"])
def test_the_verifier_scores_a_clip_exactly_as_the_edge_detector_does(verifier, goldens, clip):
    """One scoring everywhere: the edge's classify path (its detector's per-window label scores, max over the
    clip) and the cloud verifier, fed the same FLAC bytes, give the same label scores."""
    from edge_rt import config
    from edge_rt.capture.files import read_clip
    from edge_rt.classify import classify_waveform
    from edge_rt.detector import Detector
    from edgert.yamnet import backends
    from edgert.yamnet.classmap import class_names
    from edgert.yamnet.head import Head

    data = flac(goldens[clip]["waveform"])
    path = Path(tempfile.mkdtemp()) / f"{clip}.flac"
    path.write_bytes(data)
    cfg = config.load(env={})
    names = class_names()
    edge_wave = read_clip(path)  # the edge reads the file, the cloud decodes the uploaded bytes
    from edge_rt.analysis import score_clip

    det = Detector(cfg.detector, cfg.rules, names)
    _, per_window = score_clip(edge_wave, backends.load("onnxruntime"), Head.load_optional(), det.scorer)
    edge = dict(zip(det.scorer.labels, per_window.max(axis=0).tolist()))
    cloud = verifier.scores(decode(data))
    assert set(cloud) == set(edge)
    for label in edge:
        assert cloud[label] == pytest.approx(edge[label], abs=1e-6), label
    # and classify's events come from those same scores: every event's score is one of its label's window scores
    result = classify_waveform(edge_wave, cfg, backends.load("onnxruntime"), names, Head.load_optional())
    for ev in result["events"]:
        assert ev["score"] <= edge[ev["label"]] + 1e-4


def test_the_cloud_decodes_a_clip_with_the_edges_resampler(goldens):
    from edge_rt.capture.files import read_clip

    w = goldens["clip_scream"]["waveform"]
    data = flac(np.repeat(w, 3).astype(np.float32), 48000)
    path = Path(tempfile.mkdtemp()) / "x.flac"
    path.write_bytes(data)
    np.testing.assert_array_equal(decode(data), read_clip(path))


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
