"""Unit tests for edge_rt.datasets.corpus: pack and negatives clips and their train/calib/test splits.

Groups are recomputed here from labels.csv with an independent parser, so a split that leaks a source recording
or a speaker is caught even if the module's own grouping is what is wrong.
"""
from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from edge_rt.datasets import corpus
from edgert.yamnet import paths

HAVE_PACK = paths.data_dir() is not None
HAVE_NEGATIVES = corpus.negatives_dir() is not None
needs_pack = pytest.mark.skipif(not HAVE_PACK, reason="the labelled clip pack (../shared/data) is not present")
needs_negatives = pytest.mark.skipif(not HAVE_NEGATIVES, reason="the negatives pack (../shared/negatives) is absent")

LABELS_HEADER = ["file", "label", "source", "original_path", "license", "sha1", "duration_s", "sample_rate"]


def write_labels(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A minimal labels.csv of (file, label, original_path) rows; the audio files themselves are never read."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(LABELS_HEADER)
        for file, label, original in rows:
            w.writerow([file, label, "test", original, "none", "0" * 40, "1.0", "16000"])
    return folder


def source_key(original_path: str) -> str:
    """Independent notion of 'the same recording': an ESC-50 clip id (FOLD-ID-TAKE-TARGET) or the file stem."""
    stem = original_path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    parts = stem.split("-")
    if len(parts) == 4 and parts[0].isdigit() and parts[1].isdigit() and len(parts[2]) == 1 and parts[3].isdigit():
        return "esc:" + parts[1]
    return "file:" + stem


def fsdd_speaker(original_path: str) -> str:
    """Free Spoken Digit Dataset: recordings/DIGIT_SPEAKER_TAKE.wav."""
    return re.match(r"\d+_([a-z]+)_\d+$", Path(original_path).stem).group(1)


# ---------------------------------------------------------------- the real packs

@pytest.fixture(scope="module")
def pack() -> list[corpus.Clip]:
    return corpus.pack_clips()


@pytest.fixture(scope="module")
def speech() -> list[corpus.Clip]:
    return corpus.speech_clips()


@needs_pack
def test_every_pack_group_is_in_exactly_one_split(pack):
    splits = defaultdict(set)
    for c in pack:
        splits[c.group].add(c.split)
    assert pack and all(len(s) == 1 for s in splits.values())
    assert {c.split for c in pack} == set(corpus.SPLITS)


@needs_pack
def test_no_source_recording_of_the_pack_is_in_two_splits_whatever_its_label(pack):
    split_of = {c.path.name: c.split for c in pack}
    by_source = defaultdict(set)
    for r in corpus.read_labels(paths.data_dir()):
        by_source[source_key(r["original_path"])].add(split_of[Path(r["file"]).name])
    leaks = {k: v for k, v in by_source.items() if len(v) > 1}
    assert leaks == {}


@needs_pack
def test_every_pack_label_with_three_or_more_groups_has_all_three_splits(pack):
    groups = defaultdict(set)
    splits = defaultdict(set)
    for c in pack:
        groups[c.label].add(c.group)
        splits[c.label].add(c.split)
    big = [label for label, g in groups.items() if len(g) >= 3]
    assert big  # the real pack has several such labels
    for label in big:
        assert splits[label] == set(corpus.SPLITS), label


@needs_pack
def test_pack_labels_are_detector_labels(pack):
    labels = {c.label for c in pack}
    assert "shout" in labels and "shout_help" not in labels


@needs_negatives
def test_no_speaker_is_in_two_splits(speech):
    splits = defaultdict(set)
    for c in speech:
        splits[c.group].add(c.split)
    assert speech and all(len(s) == 1 for s in splits.values())


@needs_negatives
def test_speakers_follow_speaker_split_and_nicolas_is_held_out_for_test(speech):
    rows = {Path(r["file"]).name: r for r in corpus.read_labels(corpus.negatives_dir())}
    for c in speech:
        who = fsdd_speaker(rows[c.path.name]["original_path"])
        assert c.group == f"speaker:{who}"
        assert c.split == corpus.SPEAKER_SPLIT[who]
    test_speakers = {c.group for c in speech if c.split == "test"}
    assert test_speakers == {"speaker:nicolas"}
    assert corpus.SPEAKER_SPLIT["nicolas"] == "test"
    assert all(c.label == "speech" for c in speech)


@needs_negatives
def test_each_split_has_speech(speech):
    assert Counter(c.split for c in speech).keys() == set(corpus.SPLITS)


# ---------------------------------------------------------------- grouping and split assignment on made-up packs

def test_esc50_takes_of_one_clip_id_share_a_group_and_a_split(tmp_path):
    rows = [("take_a.wav", "glass_break", "audio/2-000207-A-1.wav"),
            ("take_b.wav", "glass_break", "audio/3-000207-B-1.wav")]
    rows += [(f"other_{i}.wav", "glass_break", f"audio/1-{300 + i:06d}-A-1.wav") for i in range(12)]
    clips = {c.path.name: c for c in corpus.pack_clips(write_labels(tmp_path, rows))}
    assert clips["take_a.wav"].group == clips["take_b.wav"].group
    assert clips["take_a.wav"].split == clips["take_b.wav"].split
    assert len({c.group for c in clips.values()}) == 13


def test_different_esc50_clip_ids_are_different_groups(tmp_path):
    rows = [("1.wav", "siren", "audio/2-000207-A-1.wav"), ("2.wav", "siren", "audio/2-000208-A-1.wav")]
    a, b = corpus.pack_clips(write_labels(tmp_path, rows))
    assert a.group != b.group


def test_non_esc_names_are_each_their_own_group(tmp_path):
    rows = [("1.wav", "scream", "audio/fold1/yisell_sound_2007_11_9.wav"),
            ("2.wav", "scream", "audio/fold4/14510.wav"), ("3.wav", "scream", "audio/fold4/zljv4-8xxjg.wav")]
    clips = corpus.pack_clips(write_labels(tmp_path, rows))
    assert len({c.group for c in clips}) == 3


def test_shout_help_in_the_pack_becomes_the_shout_label(tmp_path):
    (clip,) = corpus.pack_clips(write_labels(tmp_path, [("1.wav", "shout_help", "audio/helpC.wav")]))
    assert clip.label == "shout"


def test_assign_splits_is_deterministic_for_a_seed():
    groups = [f"g{i}" for i in range(50)]
    a = corpus.assign_splits(groups, seed=7)
    b = corpus.assign_splits(list(reversed(groups)), seed=7)  # input order must not matter either
    assert a == b


def test_assign_splits_depends_on_the_seed():
    groups = [f"g{i}" for i in range(50)]
    assert corpus.assign_splits(groups, seed=1) != corpus.assign_splits(groups, seed=2)


@pytest.mark.parametrize("n", [5, 10, 37, 100, 171])
def test_assign_splits_is_roughly_60_20_20(n):
    out = corpus.assign_splits([f"g{i}" for i in range(n)])
    counts = Counter(out.values())
    assert sum(counts.values()) == n
    for split, frac in zip(corpus.SPLITS, (0.6, 0.2, 0.2)):
        assert abs(counts[split] - frac * n) <= 1, (split, counts)


def test_assign_splits_gives_each_distinct_group_one_split():
    out = corpus.assign_splits(["a", "b", "a", "c", "b"])
    assert set(out) == {"a", "b", "c"} and set(out.values()) == set(corpus.SPLITS)


@pytest.mark.parametrize("n", [1, 2])
def test_assign_splits_keeps_fewer_than_three_groups_for_training(n):
    assert set(corpus.assign_splits([f"g{i}" for i in range(n)]).values()) == {"train"}


def test_unknown_speaker_goes_to_test(tmp_path):
    folder = write_labels(tmp_path, [("a.wav", "speech", "recordings/3_george_1.wav"),
                                     ("b.wav", "speech", "recordings/3_yweweler_1.wav"),
                                     ("c.wav", "speech", "recordings/weird.wav")])
    clips = {c.path.name: c for c in corpus.speech_clips(folder)}
    assert clips["a.wav"].split == "train"
    assert clips["b.wav"].split == "test" and clips["b.wav"].group == "speaker:yweweler"
    assert clips["c.wav"].split == "test"


def test_by_split_rejects_an_unknown_split_name():
    with pytest.raises(ValueError, match="split must be one of"):
        corpus.by_split([], "validation")


def test_by_split_filters_by_split_and_label():
    clips = [corpus.Clip(Path("1.wav"), "siren", "siren:1", "train"),
             corpus.Clip(Path("2.wav"), "siren", "siren:2", "test"),
             corpus.Clip(Path("3.wav"), "scream", "scream:3", "test")]
    assert corpus.by_split(clips, "test") == clips[1:]
    assert corpus.by_split(clips, "test", "siren") == [clips[1]]
    assert corpus.by_split(clips, "calib") == []
