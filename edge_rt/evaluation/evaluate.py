"""`python -m edge_rt evaluate DATA...`: raw AudioSet groups beside the shipped detector on labelled data.

DATA is any mix of: `streams:SPLIT` (the generated ordinary and event streams of a split, `test` for the
reported figures), a folder of saved streams (NAME.wav + NAME.json), a CSV with file,label columns, a folder
with a labels.csv, or a folder of label folders. Prints a table; writes evaluation.json and PNG figures.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from edge_rt.config import EdgeConfig
from edge_rt.evaluation import report, score
from edge_rt.evaluation.material import (
    MaterialError,
    Recording,
    clip_recordings,
    saved_stream_recordings,
    stream_recordings,
)
from edgert.labels import LabelScorer
from edgert.yamnet.head import Head

DET_THRESHOLDS = np.round(np.arange(0.02, 0.999, 0.02), 3)


def load_data(specs: Sequence[str], backend, progress: bool = True) -> list[Recording]:
    recs: list[Recording] = []
    for spec in specs:
        if spec.startswith("streams:"):
            recs += stream_recordings(spec.split(":", 1)[1], backend, progress=progress)
            continue
        path = Path(spec)
        if path.is_dir() and any(path.glob("*.json")) and not (path / "labels.csv").exists():
            recs += saved_stream_recordings(path, backend, progress)
        else:
            recs += clip_recordings(path, backend, progress)
    if not recs:
        raise MaterialError(f"no recordings in {', '.join(specs)}")
    return recs


def raw_config(cfg: EdgeConfig) -> EdgeConfig:
    """The AudioSet groups alone at their hand-set thresholds (defaults.yaml, no head, no calibration)."""
    from edge_rt import config

    raw = config.load(calibrated=False, env={})
    labels = {k: v.model_copy(update={"fusion": "max", "head_weight": 0.0}) for k, v in raw.detector.labels.items()}
    return raw.model_copy(update={"detector": raw.detector.model_copy(update={"labels": labels, "head_weight": 0.0}),
                                  "rules": cfg.rules})


def system(recs: Sequence[Recording], cfg: EdgeConfig, names: Sequence[str], head: Optional[Head],
           description: str) -> dict:
    labels = list(cfg.detector.labels)
    distress = sorted({lab for r in cfg.rules for lab in r.labels})
    out = {"description": description, **score.summarise(score.run(recs, cfg, names, head), labels, distress)}
    scorer = LabelScorer(cfg.detector, names)
    all_scores = [score.label_scores(r, scorer, head) for r in recs]
    present = score.truth_labels(recs)
    out["det"], out["reliability"] = {}, {}
    for j, label in enumerate(labels):
        if label not in present and label not in distress:
            continue
        s = [x[:, j] for x in all_scores]
        out["det"][label] = score.operating_curve(recs, s, label, cfg, DET_THRESHOLDS,
                                                  cfg.detector.labels[label].min_hits)
        if label in present:
            out["reliability"][label] = score.reliability(recs, s, label)
    return out


def evaluate(specs: Sequence[str], cfg: EdgeConfig, backend, head: Optional[Head], names: Sequence[str],
             out_dir: Optional[Path], command: str = "", progress: bool = True) -> dict:
    recs = load_data(specs, backend, progress)
    result = {
        "systems": {
            "raw": system(recs, raw_config(cfg), names, None, "YAMNet AudioSet class groups alone, hand-set "
                                                               "thresholds (no head, no calibration)"),
            "shipped": system(recs, cfg, names, head, "the shipped detector: calibrated thresholds, minimum hits "
                                                       "and head/group fusion"),
        },
        "data": {"clips": sum(r.kind == "clip" for r in recs), "streams": sum(r.kind != "clip" for r in recs),
                 "hours": round(sum(r.hours for r in recs), 3), "sources": list(specs)},
        "command": command, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model_sha256": backend.model_sha256,
    }
    report.print_report(result)
    if out_dir is not None:
        written = report.save(result, out_dir)
        from rich.console import Console

        Console(stderr=True).print(f"wrote {len(written)} files to {out_dir}")
    return result
