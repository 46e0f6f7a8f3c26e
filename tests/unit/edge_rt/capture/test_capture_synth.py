"""synth: scenarios: the syntax, deterministic audio, and ground truth that matches where the events sound."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge_rt.capture import GroundTruthEvent, SynthSource, open_source, parse_scenario
from edge_rt.capture.synth import DEFAULT_SNR_DB, PACK_LABELS, PEAK_CEILING, SCREENED_CLIPS, pack_clips, stand_in
from edge_rt.errors import SourceNotFoundError, SourceSpecError
from edgert.yamnet import paths

SR = 16000
HOP = SR // 100
NOISE_RMS = 10 ** (-45 / 20)  # the default background level
needs_pack = pytest.mark.skipif(paths.data_dir() is None, reason="the labelled clip pack is absent")


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))


def levels_50ms(x: np.ndarray) -> np.ndarray:
    power = np.mean(x[: x.size // HOP * HOP].reshape(-1, HOP) ** 2, axis=1)
    return np.sqrt(np.convolve(power, np.ones(5) / 5, mode="same"))


@pytest.fixture
def no_pack(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGE_RT_DATA_DIR", str(tmp_path))  # no labels.csv there: data_dir() is None
    assert paths.data_dir() is None


def test_presets_distress_and_quiet_say_what_plays():
    distress = parse_scenario("distress")
    assert distress.duration_s == 20 and distress.events == (("glass_break", 5.0), ("shout_help", 8.0))
    quiet = parse_scenario("quiet")
    assert quiet.duration_s == 10 and quiet.events == ()


def test_the_explicit_form_and_preset_overrides_parse():
    sc = parse_scenario("dur=20,seed=1,siren@12,glass_break@5,shout_help@8")
    assert (sc.duration_s, sc.seed) == (20, 1)
    assert sc.events == (("glass_break", 5.0), ("shout_help", 8.0), ("siren", 12.0))  # time order
    over = parse_scenario("distress,seed=4,snr=10,noise=-50,baby_cry@15,clips=synthetic")
    assert (over.seed, over.snr_db, over.noise_dbfs, over.clips) == (4, 10, -50, "synthetic")
    assert over.events[-1] == ("baby_cry", 15.0) and parse_scenario("dur=9,shout@2").events == (("shout_help", 2),)


@pytest.mark.parametrize("text, words", [
    ("bogus", "unknown scenario"), ("dur=10,glass@1", "unknown label"), ("dur=abc", "needs a number"),
    ("dur=5,siren@6", "after the scenario's end"), ("dur=10,volume=3", "unknown option"),
    ("seed=-1", "non-negative integer"), ("dur=0", "out of range"), ("", "needs a scenario"),
    ("dur=10,clips=maybe", "clips must be one of"), ("dur=10,siren", "cannot read")])
def test_malformed_scenarios_fail_when_opened_with_a_clear_message(text, words):
    with pytest.raises(SourceSpecError, match=words):
        open_source(f"synth:{text}")


@needs_pack
def test_distress_from_the_pack_is_a_screened_glass_at_5_s_and_a_shout_at_8_s():
    src = open_source("synth:distress")
    assert src.finite and "pack clips" in src.description
    assert [(t.label, t.start_s) for t in src.truth] == [("glass_break", 5.0), ("shout_help", 8.0)]
    for event in src.truth:
        assert isinstance(event, GroundTruthEvent) and event.clip.startswith(f"audio/{event.label}/")
        assert 0.2 <= event.end_s - event.start_s <= 5.0
    assert int(src.truth[0].clip[-8:-4]) in SCREENED_CLIPS["glass_break"]
    audio = []
    src.run(audio.append, threading.Event())
    audio = np.concatenate(audio)
    assert audio.size == 20 * SR and np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    assert src.stats["samples"] == 20 * SR


def test_quiet_is_background_noise_at_the_set_level():
    src = open_source("synth:quiet")
    audio = src.render()
    assert src.truth == [] and audio.size == 10 * SR
    assert 20 * np.log10(rms(audio)) == pytest.approx(-45.0, abs=0.5)
    low = np.abs(np.fft.rfft(audio))[: audio.size // 16].mean()
    high = np.abs(np.fft.rfft(audio))[audio.size // 4:].mean()
    assert low > 4 * high  # pink, not white


def test_the_same_scenario_gives_the_same_audio_and_another_seed_does_not():
    a = SynthSource("dur=6,seed=3,glass_break@1,siren@3").render()
    b = SynthSource("dur=6,seed=3,glass_break@1,siren@3").render()
    c = SynthSource("dur=6,seed=4,glass_break@1,siren@3").render()
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_run_delivers_exactly_render_in_chunks_fast_or_paced():
    src = SynthSource("dur=0.6,seed=2,clips=synthetic,glass_break@0.1")
    for realtime in (False, True):
        src.realtime = realtime
        chunks = []
        t0 = time.monotonic()
        src.run(chunks.append, threading.Event())
        elapsed = time.monotonic() - t0
        assert np.array_equal(np.concatenate(chunks), src.render())
        assert max(c.size for c in chunks) == (320 if realtime else 1600)
        assert (0.55 <= elapsed < 1.2) if realtime else elapsed < 0.3


def _event_audio(spec: str, quiet_spec: str) -> tuple[SynthSource, np.ndarray]:
    src = SynthSource(spec)
    return src, src.render().astype(np.float64) - SynthSource(quiet_spec).render()


@pytest.mark.parametrize("clips", [pytest.param("pack", marks=needs_pack), "synthetic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_truth_times_are_where_each_event_is_audible_in_the_output_within_0_1_s(clips, seed):
    src, events = _event_audio(f"tour,seed={seed},clips={clips}", f"dur=34,seed={seed},clips={clips}")
    assert sorted(t.label for t in src.truth) == sorted(set(PACK_LABELS) - {"background"})
    for truth in src.truth:
        lo = int((truth.start_s - 1.0) * SR)  # tour's events are >= 5 s apart: this window holds one
        level = levels_50ms(events[lo: int((truth.end_s + 1.0) * SR)])
        # Audible, as synth defines it: 6 dB over the background and within 25 dB of the event's loudest moment
        # (a recording's own room noise, ~30 dB under its shout, is not the event).
        loud = np.flatnonzero((level > 2 * NOISE_RMS) & (level > level.max() * 10 ** (-25 / 20)))
        heard_from, heard_to = lo / SR + loud[0] / 100, lo / SR + (loud[-1] + 1) / 100
        assert abs(heard_from - truth.start_s) < 0.1, truth
        assert abs(heard_to - truth.end_s) < 0.1, truth
        span = events[int(truth.start_s * SR): int(truth.end_s * SR)]
        snr = 20 * np.log10(rms(span) / NOISE_RMS)
        peak_limited = np.max(np.abs(span)) == pytest.approx(PEAK_CEILING, abs=1e-3)
        assert snr == pytest.approx(DEFAULT_SNR_DB, abs=2.0) or (peak_limited and snr < DEFAULT_SNR_DB), snr


def test_without_the_pack_every_label_gets_a_generated_stand_in(no_pack):
    src = open_source("synth:dur=20,seed=5,glass_break@1,scream@4,shout_help@7,siren@10,baby_cry@14,background@18")
    assert "synthetic clips" in src.description
    assert [t.clip for t in src.truth] == [f"synthetic:{label}" for label in
                                           ("glass_break", "scream", "shout_help", "siren", "baby_cry", "background")]
    assert open_source("synth:distress").truth[0].start_s == 5.0


def test_stand_ins_are_deterministic_and_sound_like_their_kind():
    for label in PACK_LABELS:
        clip = stand_in(label, 7)
        assert clip.dtype == np.float32 and np.array_equal(clip, stand_in(label, 7)) and np.abs(clip).max() == 0.5
    spectrum = np.abs(np.fft.rfft(stand_in("glass_break", 1)))
    freqs = np.fft.rfftfreq(stand_in("glass_break", 1).size, 1 / SR)
    assert spectrum[freqs > 2000].sum() > 4 * spectrum[freqs < 2000].sum()  # glass is bright
    siren = stand_in("siren", 1)
    peak = np.fft.rfftfreq(siren.size, 1 / SR)[np.argmax(np.abs(np.fft.rfft(siren)))]
    assert 550 < peak < 1350  # a wail between 600 and 1300 Hz


def test_clips_pack_without_the_pack_is_an_error(no_pack):
    with pytest.raises(SourceNotFoundError, match="clip pack is absent"):
        open_source("synth:distress,clips=pack")


def test_an_event_near_the_end_is_cut_at_the_end_and_its_truth_too():
    src = SynthSource("dur=3,clips=synthetic,siren@2")
    assert src.render().size == 3 * SR and src.truth[0].end_s == 3.0


@needs_pack
def test_pick_screened_limits_choice_to_the_listed_clips_and_any_does_not():
    pack = paths.data_dir()
    screened = pack_clips(pack, "glass_break", "screened")
    everything = pack_clips(pack, "glass_break", "any")
    assert {int(p.stem[-4:]) for p in screened} == set(SCREENED_CLIPS["glass_break"])
    assert len(everything) > len(screened) and pack_clips(pack, "siren", "screened") == pack_clips(pack, "siren")
    picks = {SynthSource(f"dur=3,seed={s},pick=any,glass_break@1").truth[0].clip for s in range(12)}
    assert any(int(c[-8:-4]) not in SCREENED_CLIPS["glass_break"] for c in picks)
