"""`python -m edge_rt calibrate`: per label, the threshold, minimum hits and head/AudioSet fusion that give the
highest recall at a false-event budget on ordinary audio, written as the detector's shipped YAML.

Material is the `calib` split (recordings and speakers that the head never trained on): ordinary streams, where
every event is false, and event streams, whose events between pack events are false too. Extra labelled packs
(`--extra`, e.g. a fleet's reviewed events from `python -m cloud_svc export-labels`) add their clips: an event
label's clips as events to find, ordinary sound (reviewed false alarms) as audio where every event is false.
A label's operating point must keep its false events within the budget (times SAFETY) not only at its threshold
but MARGIN below it, so a threshold never sits on the edge of the last false alarm it happened to see.
Deterministic for a seed.
"""
from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import yaml

from edge_rt.config import EdgeConfig
from edge_rt.evaluation.material import STREAM_SEED, Recording
from edge_rt.evaluation.score import ordinary, sweep
from edgert.labels import LabelScorer
from edgert.yamnet.head import Head

log = logging.getLogger("edge_rt.calibrate")

TARGET_FALSE_PER_HOUR = 1.0  # per distress label (and every other label) on ordinary audio
TARGET_ALERTS_PER_HOUR = 0.1  # distress alerts on ordinary audio
SAFETY = 1.0  # share of the false-event budget the calibration material may use (1 event in its 1.7 h)
MARGIN = 0.04  # ... and keep within it even with the threshold this much lower
# (fusion, head weight): the AudioSet group alone, the head as a max over it, or an even blend. Few choices on
# purpose: the calib split holds a handful of recordings per label, and a finer search fits their accidents.
FUSIONS = (("max", 0.0), ("max", 1.0), ("blend", 0.5))
MIN_HITS = (1, 2)  # one hit suits a short break of glass; two keep one odd window from raising an event
THRESHOLDS = np.round(np.arange(0.05, 0.996, 0.01), 3)  # float64[95]
SKIP = ("speech",)  # labels that describe ordinary life itself: kept as shipped


@dataclass
class Choice:
    label: str
    fusion: str
    head_weight: float
    min_hits: int
    threshold: float
    recall: Optional[float]
    found: int
    positives: int
    false_events: int
    false_at_margin: int

    def key(self) -> tuple:
        # Most recall; then fewest false events just below the threshold; then the higher threshold.
        return (self.recall or 0.0, -self.false_at_margin, self.threshold)


def _curve(recs: Sequence[Recording], scores: Sequence[np.ndarray], label: str, cfg: EdgeConfig, min_hits: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """int[T] false events (ordinary recordings, and event recordings away from any truth) and int[T] found
    truths of `label` over THRESHOLDS."""
    sw = sweep(recs, scores, label, cfg, THRESHOLDS, min_hits)
    return sw.false_ordinary + sw.false_elsewhere, sw.found


def choose(label: str, recs: Sequence[Recording], cfg: EdgeConfig, names: Sequence[str], head: Optional[Head],
           allowed: int) -> Choice:
    """The best operating point of one label (see the module docstring)."""
    j = list(cfg.detector.labels).index(label)
    probs = [r.analysed.head_probs(head) for r in recs]
    has_head = head is not None and label in head.labels
    positives = sum(t.label == label for r in recs for t in r.truth)
    step = int(round(MARGIN / 0.01))
    base = cfg.detector.labels[label]
    if positives == 0:
        return _no_positives(label, recs, cfg, names, allowed, step)
    best: Optional[Choice] = None
    for fusion, w in (FUSIONS if has_head else FUSIONS[:1]):
        lc = base.model_copy(update={"fusion": fusion, "head_weight": w})
        dcfg = cfg.detector.model_copy(update={"labels": {**cfg.detector.labels, label: lc}})
        scorer = LabelScorer(dcfg, names)
        scores = [scorer(r.analysed.scores, p)[:, j] for r, p in zip(recs, probs)]
        for mh in MIN_HITS:
            false, found = _curve(recs, scores, label, cfg, mh)
            for k, thr in enumerate(THRESHOLDS):
                at_margin = false[max(0, k - step)]
                if false[k] > allowed or at_margin > allowed:
                    continue
                c = Choice(label, fusion, w, mh, float(thr), float(found[k] / positives),
                           int(found[k]), positives, int(false[k]), int(at_margin))
                if best is None or c.key() > best.key():
                    best = c
    if best is None:  # nothing meets the budget: the highest threshold, group alone (reported as such)
        best = Choice(label, "max", 0.0, max(MIN_HITS), float(THRESHOLDS[-1]), None, 0, positives, -1, -1)
    return best


def _no_positives(label: str, recs: Sequence[Recording], cfg: EdgeConfig, names: Sequence[str], allowed: int,
                  step: int) -> Choice:
    """A label the material has no events of (gunshot, dog_bark...): its AudioSet group alone, at the hand-set
    threshold, raised only as far as the false-event budget demands."""
    base = cfg.detector.labels[label]
    j = list(cfg.detector.labels).index(label)
    scorer = LabelScorer(cfg.detector, names)
    scores = [scorer.groups(r.analysed.scores)[:, j] for r in recs]
    false, _ = _curve(recs, scores, label, cfg, base.min_hits)
    for k, thr in enumerate(THRESHOLDS):
        if thr >= base.threshold - 1e-9 and false[k] <= allowed and false[max(0, k - step)] <= allowed:
            return Choice(label, "max", 0.0, base.min_hits, float(thr), None, 0, 0, int(false[k]),
                          int(false[max(0, k - step)]))
    return Choice(label, "max", 0.0, base.min_hits, float(THRESHOLDS[-1]), None, 0, 0, int(false[-1]), -1)


def calibrate(recs: Sequence[Recording], cfg: EdgeConfig, names: Sequence[str], head: Optional[Head],
              progress: bool = True) -> list[Choice]:
    from tqdm import tqdm

    hours = sum(r.hours for r in recs)
    allowed = int(math.floor(TARGET_FALSE_PER_HOUR * hours * SAFETY))
    labels = [lab for lab in cfg.detector.labels if lab not in SKIP]
    out = []
    for label in tqdm(labels, desc="calibrate", unit="label", disable=not progress):
        c = choose(label, recs, cfg, names, head, allowed)
        log.info("%s: %s w=%.2f min_hits=%d threshold=%.2f recall=%s false=%d", label, c.fusion, c.head_weight,
                 c.min_hits, c.threshold, c.recall, c.false_events)
        out.append(c)
    return out


def calibrated_config(cfg: EdgeConfig, choices: Sequence[Choice]) -> EdgeConfig:
    labels = dict(cfg.detector.labels)
    for c in choices:
        labels[c.label] = labels[c.label].model_copy(update={
            "threshold": c.threshold, "min_hits": c.min_hits, "fusion": c.fusion, "head_weight": c.head_weight})
    return cfg.model_copy(update={"detector": cfg.detector.model_copy(update={"labels": labels})})


def render(choices: Sequence[Choice], provenance: dict) -> str:
    """The calibration YAML: provenance, then the detector settings laid over the core's taxonomy.yaml."""
    head = ("# Written by `python -m edge_rt calibrate`; do not edit by hand, run it again (after retraining the\n"
            "# head, or to change the budget). Per label: the threshold, minimum hits and fusion of the trained head\n"
            "# with the AudioSet group that give the highest recall on the calib split's event streams while keeping\n"
            "# false events on its ordinary audio within the budget. Laid over edgert/taxonomy.yaml's labels.\n")
    labels = {c.label: {"threshold": round(c.threshold, 3), "min_hits": c.min_hits, "fusion": c.fusion,
                        "head_weight": round(c.head_weight, 3)} for c in choices}
    body = {"calibration": provenance, "detector": {"labels": labels}}
    return head + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=110)


def extra_material(recs: Sequence[Recording]) -> list[dict]:
    """Per extra pack (recordings with meta["pack"]): its clips, hours, events per label and negatives (clips of
    ordinary sound, on which every event counts as false)."""
    out = []
    for name in sorted({r.meta["pack"] for r in recs if "pack" in r.meta}):
        mine = [r for r in recs if r.meta.get("pack") == name]
        labels_csv = Path(name) / "labels.csv"
        out.append({
            "pack": Path(name).name,
            "labels_sha256": hashlib.sha256(labels_csv.read_bytes()).hexdigest() if labels_csv.is_file() else None,
            "clips": len(mine), "hours": round(sum(r.hours for r in mine), 4),
            "events": dict(sorted(Counter(t.label for r in mine for t in r.truth).items())),
            "negatives": sum(ordinary(r) for r in mine)})
    return out


def provenance(recs: Sequence[Recording], choices: Sequence[Choice], seed: int, head_sha: Optional[str],
               model_sha: str, check: dict) -> dict:
    hours = sum(r.hours for r in recs)
    extra = extra_material(recs)
    return {
        "seed": seed, "head_sha256": head_sha, "model_sha256": model_sha,
        "budget": {"false_per_hour": TARGET_FALSE_PER_HOUR, "alerts_per_hour": TARGET_ALERTS_PER_HOUR,
                   "safety": SAFETY, "margin": MARGIN},
        "material": {"split": "calib", "hours": round(hours, 3),
                     "ordinary_hours": round(sum(r.hours for r in recs if ordinary(r)), 3),
                     "events": {lab: n for lab, n in sorted(
                         {t.label: sum(x.label == t.label for r in recs for x in r.truth)
                          for r in recs for t in r.truth}.items())},
                     **({"extra": extra} if extra else {})},
        "on_material": check,
        "choices": {c.label: {"recall": None if c.recall is None else round(c.recall, 3), "found": c.found,
                              "positives": c.positives, "false_events": c.false_events} for c in choices},
    }


def write(text: str, path: Optional[Path] = None) -> Path:
    from edgert.labels import calibration_path

    path = path or Path(str(calibration_path()))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def main(backend, head: Optional[Head], names: Sequence[str], out: Optional[Path], seed: int = STREAM_SEED,
         progress: bool = True, model_dir=None, extra: Sequence[Path] = (),
         plan: Optional[Sequence[tuple[str, float]]] = None) -> tuple[Path, dict]:
    """Build the calib streams (`plan`: material.STREAM_PLAN's), add the clips of the `extra` packs, choose every
    label's operating point, check it with the real detector, write."""
    from edge_rt import config
    from edge_rt.evaluation import score
    from edge_rt.evaluation.material import extra_recordings, stream_recordings

    base = config.load(calibrated=False, env={})
    added = extra_recordings(extra, backend, base.detector.labels, progress)  # first: a bad pack fails at once
    recs = stream_recordings("calib", backend, plan=plan, seed=seed, progress=progress) + added
    choices = calibrate(recs, base, names, head, progress)
    cfg = calibrated_config(base, choices)
    distress = sorted({lab for r in cfg.rules for lab in r.labels})
    summary = score.summarise(score.run(recs, cfg, names, head), list(cfg.detector.labels), distress)
    check = {"distress_alerts_per_hour": summary["distress_alerts_per_hour"],
             "false_per_hour": {lab: v["false_per_hour"] for lab, v in summary["per_label"].items()},
             "recall": {lab: v["recall"] for lab, v in summary["per_label"].items() if v["recall"] is not None}}
    head_sha = None
    if head is not None:
        from edgert.yamnet import manifest, paths
        from edgert.yamnet.head import HEAD_FILE

        head_sha = manifest.sha256_file(paths.model_dir(model_dir) / HEAD_FILE)
    text = render(choices, provenance(recs, choices, seed, head_sha, backend.model_sha256, check))
    path = write(text, out)
    log.info("calibration sha256 %s", hashlib.sha256(text.encode()).hexdigest())
    return path, {**check, "extra": extra_material(recs)}
