"""The `yamnet` verifier: the float YAMNet on the whole clip, max over frames, plus the distress head if built."""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from cloud_svc.domain import VerifyResult
from cloud_svc.errors import VerifierUnavailable
from cloud_svc.verify.base import Verifier, decode, edge_label_groups

log = logging.getLogger("cloud_svc.verify")


class YamnetVerifier(Verifier):
    KEY = "yamnet"

    def __init__(self, model_dir: Optional[str] = None, threads: int = 1, head_weight: float = 1.0):
        try:
            from edge_rt import backends, frontend
            from edge_rt.head import Head
            from edge_rt.models.classmap import class_names

            self.backend = backends.load("onnxruntime", model_dir, threads=threads)
            names = class_names(model_dir)
            self.head = Head.load_optional(model_dir)
        except Exception as exc:  # noqa: BLE001 - EdgeRtError, ImportError: say what is missing
            raise VerifierUnavailable(f"the yamnet verifier needs the built YAMNet models (`make setup`): {exc}") \
                from exc
        self.frontend = frontend
        index = {n: i for i, n in enumerate(names)}
        self.groups = {g.label: np.array([index[c] for c in g.classes if c in index]) for g in edge_label_groups()}
        self.thresholds = {g.label: g.threshold for g in edge_label_groups()}
        self.head_weight = head_weight
        log.info("yamnet verifier: %s%s", self.backend.name, ", with the distress head" if self.head else "")

    def scores(self, wave: np.ndarray) -> dict[str, float]:
        """float32[samples] 16 kHz -> label -> max over the clip's frames of the label's score."""
        patches = self.frontend.patches(self.frontend.log_mel(wave, pad=True))  # float32[N, 96, 64]
        class_scores, emb = self.backend.infer(patches)                         # [N, 521], [N, 1024]
        peak = class_scores.max(axis=0)                                         # [521]: max over frames
        out = {lab: float(peak[idx].max()) for lab, idx in self.groups.items() if idx.size}
        if self.head is not None:
            for frame in self.head.per_label(emb):
                for lab, p in frame.items():
                    if lab in out:
                        out[lab] = max(out[lab], self.head_weight * float(p))
        return out

    def verify(self, clip: bytes, fmt: str, label: str) -> VerifyResult:
        wave = decode(clip)
        if wave.size == 0:
            return VerifyResult(self.KEY, [], {}, None, "empty clip")
        return self.verdict(self.KEY, self.scores(wave), self.thresholds, label)
