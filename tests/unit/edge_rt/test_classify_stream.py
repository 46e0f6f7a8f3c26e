"""`classify` streams a recording: in any chunk size, and from a file in blocks, it gives the whole-clip result
that the shared `analyse_clip` (the cloud verifier's) gives, with the real YAMNet."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf

from edge_rt import config
from edge_rt.capture import open_source
from edge_rt.capture.files import read_clip
from edge_rt.classify import (
    BATCH_WINDOWS,
    BLOCK_SAMPLES,
    BLOCK_SECONDS,
    ClipClassifier,
    block_seconds,
    classify_file,
    classify_waveform,
)
from edge_rt.errors import EmptySourceError
from edgert.yamnet import backends
from edgert.yamnet.classmap import class_names
from edgert.yamnet.head import Head

SR = 16000


@pytest.fixture(scope="module")
def parts(model_dir):
    cfg = config.load(overrides={"runtime.model_dir": str(model_dir)})
    return cfg, backends.load("onnxruntime", model_dir), class_names(model_dir), Head.load_optional(model_dir)


@pytest.fixture(scope="module")
def tour() -> np.ndarray:
    """The 34 s `synth:tour` scenario (glass, scream, shout, siren, baby): float32[n] at 16 kHz."""
    chunks: list[np.ndarray] = []
    open_source("synth:tour").run(chunks.append, threading.Event())
    return np.concatenate(chunks)


def stream(audio: np.ndarray, parts, sizes) -> dict:
    clf = ClipClassifier(*parts)
    rng = np.random.default_rng(0)
    at = 0
    while at < audio.size:
        n = int(rng.integers(1, 20000)) if sizes == "random" else sizes
        clf.push(audio[at:at + n])
        at += n
    return clf.finish()


def test_the_scenario_holds_events_and_an_alert_over_several_batches(tour, parts):
    whole = classify_waveform(tour, *parts)
    assert len(whole["frames"]) > 3 * BATCH_WINDOWS
    assert {e["label"] for e in whole["events"]} >= {"glass_break", "siren"}
    assert whole["alerts"], "the tour's glass and scream make a distress alert"


@pytest.mark.parametrize("sizes", [1600, 7680 * 16, "random"])
def test_streaming_in_any_chunk_size_gives_the_whole_clip_result(tour, parts, sizes):
    assert stream(tour, parts, sizes) == classify_waveform(tour, *parts)


def test_a_clip_shorter_than_one_window_is_padded_as_the_hub_pads_it(tour, parts):
    short = tour[:5000]
    got = stream(short, parts, 1600)
    assert got == classify_waveform(short, *parts)
    assert len(got["frames"]) == 1 and got["duration_s"] == round(5000 / SR, 3)


def test_no_audio_at_all_is_an_empty_source(parts):
    with pytest.raises(EmptySourceError):
        ClipClassifier(*parts).finish()


def test_a_long_16k_file_streamed_from_disk_equals_the_whole_file_decoded_at_once(tmp_path, tour, parts):
    path = tmp_path / "tour2.wav"
    sf.write(path, np.concatenate([tour, tour[::-1]]), SR, subtype="FLOAT")  # 68 s: many blocks and batches
    got, failed = classify_file(path, *parts)
    assert failed is None
    assert got == classify_waveform(read_clip(path), *parts)


def test_a_resampled_clip_of_one_block_equals_the_verifiers_one_shot_decode(tmp_path, tour, parts):
    import scipy.signal

    mono = scipy.signal.resample_poly(tour[:9 * SR], 441, 160)  # 9 s at 44.1 kHz
    path = tmp_path / "tour44k.flac"
    sf.write(path, np.stack([mono, 0.5 * mono], axis=1), 44100)
    got, failed = classify_file(path, *parts)
    assert failed is None
    assert got == classify_waveform(read_clip(path), *parts)


def test_blocks_are_ten_seconds_unless_that_exceeds_the_sample_bound():
    assert block_seconds(1, 16000) == BLOCK_SECONDS
    assert block_seconds(2, 44100) == BLOCK_SECONDS
    assert block_seconds(6, 96000) * 6 * 96000 == pytest.approx(BLOCK_SAMPLES)
    assert block_seconds(8, 384000) * 8 * 384000 <= BLOCK_SAMPLES
