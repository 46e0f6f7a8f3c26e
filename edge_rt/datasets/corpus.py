"""The labelled pack and the negatives pack as lists of clips, each assigned to one split by source and speaker.

Splits: `train` (the head learns from it), `calib` (thresholds and fusion are chosen on it), `test` (reported
figures). A source recording (an ESC-50 clip id, one recorded file) or a speaker is in exactly one split, never
cut by window, so a figure on `test` is about recordings and voices the head and the calibration never met.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edgert.errors import ModelMissingError
from edgert.yamnet import paths

SPLITS = ("train", "calib", "test")
FRACTIONS = (0.6, 0.2, 0.2)  # of each label's source recordings
SPLIT_SEED = 20261203
LABEL_MAP = {"shout_help": "shout"}  # pack label -> detector label
# The negatives' four speakers: two to learn from, one to calibrate on, one held out for the reported figures.
SPEAKER_SPLIT = {"george": "train", "lucas": "train", "jackson": "calib", "nicolas": "test"}
# espeak-ng voices, split the same way (variants are the synthesiser's own voice shapes).
ESPEAK_VOICES = {
    "train": ("en-us", "en-gb+f2", "en-us+m3", "en-gb-scotland", "en+f4", "en-029"),
    "calib": ("en-gb+m4", "en-us+f3", "en-gb-x-rp"),
    "test": ("en-us+m7", "en-gb+f5", "en-gb-x-gbclan"),
}
SENTENCES = (
    "the meeting starts at ten tomorrow morning", "could you pass me the salt please", "the weather is nice today",
    "I will call you back in five minutes", "this is the last train to the city", "please close the door",
    "we need two more chairs in the kitchen", "the shop opens at nine on sundays", "my brother lives near the bridge",
    "let us meet at the station", "did you feed the cat already", "the soup needs a little more pepper",
    "turn the radio down a bit", "where did I leave my keys", "the kids are playing in the garden",
    "can you hear the rain on the roof", "I think the bus is late again", "dinner will be ready at seven",
    "the package arrived this afternoon", "put the milk back in the fridge", "what time does the film start",
    "I am going to the shop for bread", "have you seen my glasses", "the neighbours are painting their fence",
)


@dataclass(frozen=True)
class Clip:
    path: Path
    label: str  # detector label ("shout", not "shout_help"); "background" or "speech" for negatives
    group: str  # the source recording or speaker: never split across
    split: str


def _group(label: str, original_path: str) -> str:
    """The source recording a pack file came from: ESC-50 style names share a clip id across their takes."""
    stem = Path(original_path).stem
    esc = re.fullmatch(r"\d+-(\d+)-[A-Z]-\d+", stem)
    return f"{label}:esc{esc.group(1)}" if esc else f"{label}:{stem}"


def assign_splits(groups: list[str], seed: int = SPLIT_SEED) -> dict[str, str]:
    """group -> split, FRACTIONS of the (sorted, shuffled) groups each; at least one group in each split when
    there are three or more."""
    order = sorted(set(groups))
    np.random.default_rng(seed).shuffle(order)
    n = len(order)
    n_calib = max(1, int(round(FRACTIONS[1] * n))) if n >= 3 else 0
    n_test = max(1, int(round(FRACTIONS[2] * n))) if n >= 3 else 0
    out = {}
    for i, g in enumerate(order):
        out[g] = "test" if i < n_test else "calib" if i < n_test + n_calib else "train"
    return out


def read_labels(folder: Path) -> list[dict[str, str]]:
    with open(folder / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def pack_clips(data_dir: Optional[Path] = None) -> list[Clip]:
    """Every clip of ../shared/data with its split (stratified by label, split by source recording)."""
    data_dir = data_dir or paths.data_dir()
    if data_dir is None:
        raise ModelMissingError("the labelled clip pack (../shared/data) is not present")
    rows = read_labels(data_dir)
    out = []
    for label in sorted({r["label"] for r in rows}):
        mine = [r for r in rows if r["label"] == label]
        groups = [_group(label, r["original_path"]) for r in mine]
        split = assign_splits(groups)
        out += [Clip(data_dir / r["file"], LABEL_MAP.get(label, label), g, split[g]) for r, g in zip(mine, groups)]
    return out


def negatives_dir() -> Optional[Path]:
    """../shared/negatives beside the checkout (or $EDGE_RT_NEGATIVES_DIR), or None where it is absent."""
    import os

    env = os.environ.get("EDGE_RT_NEGATIVES_DIR")
    path = Path(env) if env else paths.REPO_ROOT.parent / "shared" / "negatives"
    return path if (path / "labels.csv").is_file() else None


def speaker(original_path: str) -> str:
    """The Free Spoken Digit Dataset names files DIGIT_SPEAKER_TAKE."""
    parts = Path(original_path).stem.split("_")
    return parts[1] if len(parts) == 3 else "unknown"


def speech_clips(neg_dir: Optional[Path] = None) -> list[Clip]:
    """The negatives pack's calm speech, split by speaker (SPEAKER_SPLIT; an unknown speaker goes to test)."""
    neg_dir = neg_dir or negatives_dir()
    if neg_dir is None:
        raise ModelMissingError("the negatives pack (../shared/negatives) is not present")
    out = []
    for r in read_labels(neg_dir):
        who = speaker(r["original_path"])
        out.append(Clip(neg_dir / r["file"], "speech", f"speaker:{who}", SPEAKER_SPLIT.get(who, "test")))
    return out


def by_split(clips: list[Clip], split: str, label: Optional[str] = None) -> list[Clip]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return [c for c in clips if c.split == split and (label is None or c.label == label)]
