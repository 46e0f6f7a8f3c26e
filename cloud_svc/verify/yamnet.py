"""The `yamnet` verifier: the float YAMNet and the distress head over the whole clip, scored by the edge's own
label scoring (groups, head fusion, veto; the shared `edgert.labels`), max over the clip's windows."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from cloud_svc.domain import VerifyResult
from cloud_svc.errors import VerifierUnavailable
from cloud_svc.verify.base import Verifier, decode
from edgert import labels
from edgert.labels import LabelScorer

log = logging.getLogger("cloud_svc.verify")


class YamnetVerifier(Verifier):
    KEY = "yamnet"

    def __init__(self, model_dir: Optional[str] = None, threads: int = 1, head_weight: Optional[float] = None):
        """`head_weight` overrides every label's weight of the head (0: AudioSet groups alone); by default the
        verifier scores exactly as the edge's shipped detector does."""
        path = Path(model_dir) if model_dir is not None else None  # None: the edge's default model folder
        try:
            from edgert.yamnet import backends
            from edgert.yamnet.classmap import class_names
            from edgert.yamnet.head import Head

            self.backend = backends.load("onnxruntime", path, threads=threads)
            names = class_names(path)
            self.head = Head.load_optional(path)
        except Exception as exc:  # noqa: BLE001 - EdgeRtError, ImportError: say what is missing
            raise VerifierUnavailable(f"the yamnet verifier needs the built YAMNet models (`make setup`): {exc}") \
                from exc
        det = labels.scoring()
        if head_weight is not None:
            weighted = {k: v.model_copy(update={"head_weight": head_weight}) for k, v in det.labels.items()}
            det = det.model_copy(update={"labels": weighted, "head_weight": head_weight})
        self.scorer = LabelScorer(det, names)
        self.groups = dict(zip(self.scorer.labels, self.scorer.idx))
        self.thresholds = {label: lc.threshold for label, lc in det.labels.items()}
        log.info("yamnet verifier: %s%s", self.backend.name, ", with the distress head" if self.head else "")

    def scores(self, wave: np.ndarray) -> dict[str, float]:
        """float32[samples] 16 kHz -> label -> max over the clip's windows of the label's score."""
        from edgert.yamnet.analysis import analyse_clip

        per_window = analyse_clip(wave, self.backend, self.head, self.scorer).labels  # float32[N, L]
        return self.scorer.as_dict(per_window.max(axis=0))

    def verify(self, clip: bytes, fmt: str, label: str) -> VerifyResult:
        wave = decode(clip)
        if wave.size == 0:
            return VerifyResult(self.KEY, [], {}, None, "empty clip")
        return self.verdict(self.KEY, self.scores(wave), self.thresholds, label)
