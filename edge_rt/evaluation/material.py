"""Recordings with truth, analysed once: generated streams of a split, and labelled clips (folders or CSVs).

Both calibration and evaluation score detectors on a list of `Recording`s, so they agree on what was found
and what was false.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterable, Optional

import numpy as np

from edge_rt.datasets.corpus import LABEL_MAP
from edge_rt.errors import EdgeRtError
from edge_rt.evaluation.match import TruthSpan
from edge_rt.evaluation.windows import Analysed, cached
from edgert import pack

# Stream recipes per split: (kind, minutes, seed). "ordinary" is negatives only; false alarms are counted there.
STREAM_SEED = 7
STREAM_PLAN = {
    "calib": (("ordinary", 60.0), ("events", 40.0)),
    "test": (("ordinary", 60.0), ("events", 40.0)),
}
NEGATIVE_LABELS = (pack.NON_EVENT_LABEL, "speech", "negative", "ordinary", "none")  # clip labels that are no event


class MaterialError(EdgeRtError):
    """Evaluation data cannot be read (a missing file, a CSV without file/label columns)."""


@dataclass
class Recording:
    name: str
    kind: str  # "ordinary" (negatives only), "events" (stream with events), "clip" (one labelled file)
    analysed: Analysed
    truth: list[TruthSpan]
    targets: Optional[np.ndarray] = None  # str[N] per-window truth (streams only)
    label: Optional[str] = None  # a clip's label
    meta: dict = field(default_factory=dict)

    @property
    def hours(self) -> float:
        return self.analysed.duration_s / 3600.0


def stream_recordings(split: str, backend, plan: Optional[Iterable[tuple[str, float]]] = None,
                      seed: int = STREAM_SEED, progress: bool = True, save_to: Optional[Path] = None
                      ) -> list[Recording]:
    """Build (or read from the cache) and analyse the streams of `split`."""
    from tqdm import tqdm

    from edge_rt.datasets.streams import StreamBuilder

    if plan is None and split not in STREAM_PLAN:
        raise MaterialError(f"no generated streams for split {split!r}; use one of {sorted(STREAM_PLAN)}")
    plan = list(plan or STREAM_PLAN[split])
    builder = StreamBuilder(split)
    out = []
    for kind, minutes in tqdm(plan, desc=f"{split} streams", unit="stream", disable=not progress):
        s = builder.build(kind, minutes, seed)
        if save_to is not None:
            s.save(save_to)
        a = cached(s.wave, backend)
        truth = [TruthSpan(t.label, t.start_s, t.end_s) for t in s.truth]
        out.append(Recording(s.name, kind, a, truth, s.window_targets(len(a.scores)),
                             meta={"split": split, "minutes": round(s.seconds / 60, 2), "seed": seed}))
    return out


def saved_stream_recordings(folder: Path, backend, progress: bool = True) -> list[Recording]:
    """Streams written by `Stream.save` (NAME.wav + NAME.json with the truth)."""
    from tqdm import tqdm

    from edge_rt.capture.files import read_clip

    out = []
    for js in tqdm(sorted(folder.glob("*.json")), desc=f"streams in {folder}", unit="stream", disable=not progress):
        meta = json.loads(js.read_text())
        wav = js.with_suffix(".wav")
        if not wav.is_file() or "truth" not in meta:
            continue
        a = cached(read_clip(wav), backend)
        truth = [TruthSpan(t["label"], float(t["start_s"]), float(t["end_s"])) for t in meta["truth"]]
        out.append(Recording(meta.get("name", js.stem), meta.get("kind", "events"), a, truth, meta=meta))
    return out


def labelled_files(spec: Path) -> list[tuple[Path, str]]:
    """(file, label) from a CSV with file,label columns, a folder with labels.csv, or a folder of label folders."""
    if spec.is_file():
        with open(spec, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or not {"file", "label"} <= set(rows[0]):
            raise MaterialError(f"{spec}: a labels CSV needs the columns file,label")
        base = spec.parent
        return [((base / r["file"]) if not Path(r["file"]).is_absolute() else Path(r["file"]), r["label"])
                for r in rows]
    if (spec / "labels.csv").is_file():
        return labelled_files(spec / "labels.csv")
    if spec.is_dir():
        from edge_rt.capture.files import AUDIO_SUFFIXES

        files = sorted(p for p in spec.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise MaterialError(f"{spec}: no labels.csv and no audio files in label folders")
        return [(p, p.parent.name) for p in files]
    raise MaterialError(f"{spec}: no such file or folder")


def clip_recordings(spec: Path, backend, progress: bool = True) -> list[Recording]:
    """Each labelled file as a recording whose truth is its label over its whole length (negatives: none)."""
    from tqdm import tqdm

    from edge_rt.capture.files import read_clip

    out = []
    for path, label in tqdm(labelled_files(spec), desc=f"clips in {spec}", unit="clip", disable=not progress):
        label = LABEL_MAP.get(label, label)
        a = cached(read_clip(path), backend)
        truth = [] if label in NEGATIVE_LABELS and label != "speech" else [TruthSpan(label, 0.0, a.duration_s)]
        out.append(Recording(str(path), "clip", a, truth, label=label))
    return out


def extra_recordings(packs: Iterable[Path], backend, labels: Collection[str], progress: bool = True
                     ) -> list[Recording]:
    """The clips of extra labelled packs (`python -m cloud_svc export-labels` writes a fleet's reviewed events
    as one) as clip recordings: an event label's clips are its truths, a negative's (a false alarm's) have none,
    so any event raised on one is false. Every label is checked before any audio is read. Each recording's
    meta["pack"] names its pack."""
    known = set(labels) | set(NEGATIVE_LABELS)
    for p in packs:
        bad = sorted({LABEL_MAP.get(lab, lab) for _, lab in labelled_files(p)} - known)
        if bad:
            raise MaterialError(f"{p}: labels {bad} are neither detector labels ({', '.join(sorted(labels))}) "
                                f"nor ordinary sound ({', '.join(NEGATIVE_LABELS)})")
    out = []
    for p in packs:
        for r in clip_recordings(p, backend, progress):
            r.meta["pack"] = str(p)
            out.append(r)
    return out
