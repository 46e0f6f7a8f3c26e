"""Unit tests for edge_rt.datasets.streams: long streams with truth, window targets, active spans, save.

Streams are built from the real packs (short, 1 minute) by a fresh StreamBuilder each, and checked against
facts computed here: the corpus split of each event file, the speakers of the split, sample-exact item
placement, and brute-force window powers.
"""
from __future__ import annotations

import functools
import hashlib
import json
import shutil
from dataclasses import asdict

import numpy as np
import pytest
import soundfile as sf

from edge_rt.datasets import corpus
from edge_rt.datasets import streams as S
from edgert.yamnet import paths

SR = 16000
HOP = 7680  # 0.48 s
WIN = 15360  # 0.96 s
ROUNDING_S = 0.0005  # truth times are rounded to the millisecond

pytestmark = [
    pytest.mark.skipif(paths.data_dir() is None, reason="the labelled clip pack (../shared/data) is not present"),
    pytest.mark.skipif(corpus.negatives_dir() is None, reason="the negatives pack (../shared/negatives) is absent"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]

TEST_STREAMS = [("ordinary", 0), ("ordinary", 2), ("events", 0), ("events", 1), ("events", 2), ("events", 3)]
TRAIN_STREAMS = [("ordinary", 0), ("events", 0), ("events", 1)]
ALL = [("test", k, s) for k, s in TEST_STREAMS] + [("train", k, s) for k, s in TRAIN_STREAMS]


@functools.lru_cache(maxsize=None)
def built(split: str, kind: str, seed: int, minutes: float = 1.0) -> S.Stream:
    """One stream from a fresh builder (a builder's caches must not change what a seed makes)."""
    return S.StreamBuilder(split).build(kind, minutes, seed)


@functools.lru_cache(maxsize=1)
def pack_split() -> dict[str, str]:
    return {c.path.name: c.split for c in corpus.pack_clips()}


def n_windows(s: S.Stream) -> int:
    return (s.wave.size - WIN) // HOP + 1


def speech_sources(split: str) -> set[str]:
    speakers = {f"speaker:{who}" for who, sp in corpus.SPEAKER_SPLIT.items() if sp == split}
    return speakers | {f"espeak:{v}" for v in corpus.ESPEAK_VOICES[split]}


def ids(params):
    return [f"{sp}-{k}-{s}" for sp, k, s in params]


# ---------------------------------------------------------------- determinism and length

def test_same_seed_on_fresh_builders_gives_identical_wave_bytes():
    a = S.StreamBuilder("test").build("ordinary", 1.0, 11)
    b = S.StreamBuilder("test").build("ordinary", 1.0, 11)
    assert a.wave.dtype == np.float32 and a.wave.tobytes() == b.wave.tobytes()
    assert [asdict(t) for t in a.truth] == [asdict(t) for t in b.truth]


def test_different_seeds_give_different_streams():
    assert built("test", "events", 0).wave.tobytes() != built("test", "events", 1).wave.tobytes()
    assert built("test", "ordinary", 0).wave.tobytes() != built("test", "ordinary", 2).wave.tobytes()


def test_same_seed_gives_the_same_stream_whatever_the_builder_built_before():
    builder = S.StreamBuilder("test")
    first = builder.build("ordinary", 1.0, 0)
    again = builder.build("ordinary", 1.0, 0)
    assert again.wave.tobytes() == first.wave.tobytes()


@pytest.mark.parametrize("split,kind,seed", ALL, ids=ids(ALL))
def test_stream_lasts_at_least_the_requested_minutes(split, kind, seed):
    s = built(split, kind, seed)
    assert s.seconds >= 60.0 and s.seconds == s.wave.size / SR
    assert s.bed is not None and s.bed.size == s.wave.size
    assert np.all(np.abs(s.wave) <= 1.0)


# ---------------------------------------------------------------- truth

@pytest.mark.parametrize("split,kind,seed", ALL, ids=ids(ALL))
def test_every_truth_span_starts_inside_the_stream_and_before_its_end(split, kind, seed):
    s = built(split, kind, seed)
    assert s.truth
    for t in s.truth:
        assert 0.0 <= t.start_s < t.end_s, t
        assert t.start_s < s.seconds, t


def test_no_truth_span_ends_after_the_stream():
    over = [(split, kind, seed, t.end_s - built(split, kind, seed).seconds)
            for split, kind, seed in ALL for t in built(split, kind, seed).truth
            if t.end_s > built(split, kind, seed).seconds + ROUNDING_S]
    assert over == []


@pytest.mark.parametrize("split,seed", [("test", 0), ("test", 2), ("train", 0)])
def test_an_ordinary_stream_has_only_speech_truth(split, seed):
    s = built(split, "ordinary", seed)
    assert {t.label for t in s.truth} == {"speech"}
    assert {it.label for it in s.items} <= {"speech", "clatter", "background"}
    ambience = {c.path.name for c in corpus.by_split(corpus.pack_clips(), split, "background")}
    assert {it.source for it in s.items if it.label == "background"} <= ambience | {"hiss"}


@pytest.mark.parametrize("split,kind,seed", [p for p in ALL if p[1] == "events"], ids=ids([p for p in ALL
                                                                                            if p[1] == "events"]))
def test_an_events_stream_has_pack_events_of_its_own_split(split, kind, seed):
    s = built(split, kind, seed)
    events = [t for t in s.truth if t.label != "speech"]
    assert events
    for t in events:
        assert t.label in S.EVENT_LABELS
        assert pack_split()[t.source] == split, t
    item_sources = {it.source for it in s.items if it.label in S.EVENT_LABELS}
    assert item_sources == {t.source for t in events}


@pytest.mark.parametrize("split,kind,seed", ALL, ids=ids(ALL))
def test_speech_comes_only_from_the_splits_speakers_and_voices(split, kind, seed):
    s = built(split, kind, seed)
    sources = {it.source for it in s.items if it.label == "speech"}
    assert sources and sources <= speech_sources(split)
    assert {t.source for t in s.truth if t.label == "speech"} <= speech_sources(split)


def test_the_test_split_speaks_with_nicolas_only():
    turns = {it.source for k, sd in TEST_STREAMS for it in built("test", k, sd).items
             if it.source.startswith("speaker:")}
    assert turns == {"speaker:nicolas"}


def test_items_sit_in_the_stream_where_they_say():
    s = built("test", "events", 0)
    for it in s.items:
        assert 0 <= it.start and it.start + it.audio.size <= s.wave.size
        assert it.audio.dtype == np.float32


# ---------------------------------------------------------------- window targets

@pytest.mark.parametrize("split,kind,seed", [p for p in ALL if p[1] == "events"], ids=ids([p for p in ALL
                                                                                            if p[1] == "events"]))
def test_each_event_truth_has_a_window_labelled_with_it(split, kind, seed):
    s = built(split, kind, seed)
    n = n_windows(s)
    targets = s.window_targets(n)
    assert targets.shape == (n,)
    for t in (t for t in s.truth if t.label in S.EVENT_LABELS):
        overlapping = [i for i in range(n) if i * HOP / SR < t.end_s and i * HOP / SR + WIN / SR > t.start_s]
        assert t.label in {targets[i] for i in overlapping}, t


@pytest.mark.parametrize("split,kind,seed", ALL, ids=ids(ALL))
def test_windows_that_hold_no_item_are_background(split, kind, seed):
    s = built(split, kind, seed)
    n = n_windows(s)
    targets = s.window_targets(n)
    covered = np.zeros(n, bool)
    for it in s.items:
        for i in range(n):
            if i * HOP < it.start + it.audio.size and i * HOP + WIN > it.start:
                covered[i] = True
    assert (~covered).any()
    assert set(targets[~covered]) == {S.BACKGROUND}


def synthetic_stream(event_db: float, bed_db: float = -60.0) -> S.Stream:
    """20 s of white-noise bed at bed_db RMS with one glass_break noise burst at 8.0-9.0 s at event_db RMS."""
    rng = np.random.default_rng(5)
    n = 20 * SR
    bed = (rng.standard_normal(n) * 10 ** (bed_db / 20)).astype(np.float32)
    burst = (rng.standard_normal(SR) * 10 ** (event_db / 20)).astype(np.float32)
    wave = bed.copy()
    wave[8 * SR:9 * SR] += burst
    item = S.Item("glass_break", 8 * SR, burst, "made-up.wav")
    return S.Stream("synthetic", "events", "test", 0, wave, [S.Truth("glass_break", 8.0, 9.0, "made-up.wav")],
                    [item], bed)


def test_window_targets_label_a_loud_event_and_leave_the_quiet_stretch_background():
    s = synthetic_stream(event_db=-20.0)
    n = n_windows(s)
    targets = s.window_targets(n)
    inside = [i for i in range(n) if i * HOP >= 8 * SR - WIN // 2 and i * HOP + WIN <= 9 * SR + WIN // 2]
    assert inside and all(targets[i] == "glass_break" for i in inside)
    far = [i for i in range(n) if i * HOP + WIN <= 8 * SR or i * HOP >= 9 * SR]
    assert far and all(targets[i] == "background" for i in far)


def test_an_event_buried_far_under_the_bed_is_not_a_target():
    targets = synthetic_stream(event_db=-90.0).window_targets(n_windows(synthetic_stream(event_db=-90.0)))
    assert set(targets) == {"background"}


def test_window_power_is_the_mean_power_of_the_placed_audio_in_each_window():
    rng = np.random.default_rng(3)
    audio = rng.standard_normal(20000).astype(np.float32)
    start, n = 12345, 10
    placed = np.zeros(n * HOP + WIN + audio.size, np.float64)
    placed[start:start + audio.size] = audio
    expected = [np.sum(placed[i * HOP:i * HOP + WIN] ** 2) / WIN for i in range(n)]
    np.testing.assert_allclose(S._window_power(audio, start, n), expected, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- active span

def test_active_span_of_a_tone_between_silences_is_the_tone():
    t = np.arange(int(1.5 * SR)) / SR
    x = np.where((t >= 0.5) & (t < 1.0), 0.5 * np.sin(2 * np.pi * 440.0 * t), 0.0).astype(np.float32)
    a, b = S.active_span(x)
    assert a == pytest.approx(0.5, abs=0.010) and b == pytest.approx(1.0, abs=0.010)


def test_active_span_ignores_a_tail_more_than_25_db_down():
    x = np.zeros(SR, np.float32)
    x[3200:6400] = 0.5  # 0.2-0.4 s
    x[6400:12800] = 0.5 * 10 ** (-30 / 20)  # 30 dB down: not part of the sound
    assert S.active_span(x) == pytest.approx((0.2, 0.4), abs=0.010)


def test_active_span_never_ends_after_the_audio():
    x = np.full(250, 0.5, np.float32)  # 15.6 ms, loud to the last sample
    assert S.active_span(x)[1] <= x.size / SR


# ---------------------------------------------------------------- save

def test_save_writes_a_bit_exact_float_wav_and_the_truth(tmp_path):
    s = built("test", "events", 0)
    wav = s.save(tmp_path / "out")
    assert wav == tmp_path / "out" / f"{s.name}.wav"
    back, rate = sf.read(wav, dtype="float32")
    assert rate == SR and back.dtype == np.float32
    assert back.tobytes() == s.wave.tobytes()
    meta = json.loads((tmp_path / "out" / f"{s.name}.json").read_text())
    assert meta["truth"] == [asdict(t) for t in s.truth]
    assert meta["sha256"] == hashlib.sha256(back.tobytes()).hexdigest()
    assert (meta["kind"], meta["split"], meta["seed"]) == ("events", "test", 0)


def test_builder_rejects_an_unknown_stream_kind():
    with pytest.raises(ValueError, match="stream kind"):
        S.StreamBuilder("test").build("party", 1.0, 0)
