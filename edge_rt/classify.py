"""Batch mode: classify recordings and print the contract's JSON object per file."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Iterable, Optional, TextIO

import numpy as np

from edge_rt.analysis import score_clip
from edge_rt.config import EdgeConfig
from edge_rt.detector import Detector
from edge_rt.errors import EdgeRtError
from edgert.errors import CoreError
from edgert.yamnet.backends import Backend
from edgert.yamnet.classmap import top_classes
from edgert.yamnet.head import Head
from edgert.yamnet.params import PARAMS

log = logging.getLogger("edge_rt.classify")


def top_k(scores: np.ndarray, names, k: int) -> list[list]:
    """The contract's [[class, score] x k], scores to 4 decimals."""
    return [[n, round(s, 4)] for n, s in top_classes(scores, names, k)]


def classify_waveform(wave: np.ndarray, cfg: EdgeConfig, backend: Backend, names, head: Optional[Head]) -> dict:
    """float32[samples] at 16 kHz -> the contract's dict (without "file")."""
    det = Detector(cfg.detector, cfg.rules, names)
    wins, _ = score_clip(wave, backend, head, det.scorer)
    events, alerts = [], []
    for w in wins:
        out = det.push(w)
        alerts.extend(out.alerts)
        events.extend(out.started)
    det.flush()
    k = cfg.detector.top_k
    scores = np.stack([w.scores for w in wins])
    return {
        "duration_s": round(wave.size / PARAMS.sample_rate, 3),
        "clip_top": top_k(scores.mean(axis=0), names, k),
        "frames": [{"t": round(w.start_s, 2), "top": top_k(w.scores, names, k)} for w in wins],
        "events": [e.as_dict() for e in sorted(events, key=lambda e: e.start_s)],
        "alerts": [a.as_dict() for a in alerts],
    }


def classify_files(files: Iterable[str], cfg: EdgeConfig, backend: Backend, names, head: Optional[Head],
                   out: TextIO = sys.stdout, as_json: bool = True) -> int:
    """Classify each file; one JSON line each (or a short text summary). Return the number of failures."""
    from tqdm import tqdm

    from edge_rt.capture.files import read_clip

    files = list(files)
    failures = 0
    for path in tqdm(files, desc="classify", unit="file", disable=len(files) < 2, file=sys.stderr):
        try:
            wave = read_clip(Path(path))
            result = {"file": str(path), **classify_waveform(wave, cfg, backend, names, head)}
        except (EdgeRtError, CoreError) as exc:
            failures += 1
            print(f"error: {path}: {exc}", file=sys.stderr)
            continue
        if as_json:
            out.write(json.dumps(result) + "\n")
        else:
            ev = ", ".join(f"{e['label']} {e['start_s']:.2f}-{e['end_s']:.2f}s ({e['score']:.2f})"
                           for e in result["events"]) or "no events"
            al = "; ".join(f"ALERT {a['rule']} {a['labels']}" for a in result["alerts"])
            top = ", ".join(f"{n} {s:.2f}" for n, s in result["clip_top"][:3])
            out.write(f"{path} ({result['duration_s']:.1f} s): {top} | {ev}{' | ' + al if al else ''}\n")
        out.flush()
    return failures
