"""The labelled clip pack's layout (../shared/data), which the cloud's `export-labels` writes and the edge's
training, evaluation and `calibrate --extra` read.

    PACK/labels.csv                    one row per clip: COLUMNS, `file` relative to PACK
    PACK/audio/<label>/<name>.wav      the clips, one folder per label

Ordinary, non-event audio has the label NON_EVENT_LABEL: its clips carry no truth, so any event raised on one
is a false event.
"""
from __future__ import annotations

import re

AUDIO_DIR = "audio"
LABELS_CSV = "labels.csv"
COLUMNS = ("file", "label", "source", "original_path", "license", "sha1", "duration_s", "sample_rate")
NON_EVENT_LABEL = "background"  # the pack's own label for ordinary sound that is no event

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def clip_file(label: str, *parts: str, suffix: str = ".wav") -> str:
    """`audio/<label>/<label>_<part>_<part>...wav`, relative to the pack; characters a file name should not hold
    (a device id's ':' for one) become '-'."""
    stem = "_".join(_UNSAFE.sub("-", p) for p in (label, *parts))
    return f"{AUDIO_DIR}/{_UNSAFE.sub('-', label)}/{stem}{suffix}"
