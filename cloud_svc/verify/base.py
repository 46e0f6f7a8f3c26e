"""The verifier base class, clip decoding, and the label groups (the shared taxonomy) that verdicts are stated in."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from cloud_svc.domain import VerifyResult
from cloud_svc.errors import CloudError
from edgert import audio, labels
from edgert.errors import CoreError

SAMPLE_RATE = audio.SAMPLE_RATE


class ClipDecodeError(CloudError):
    """A stored clip cannot be decoded as audio."""


def decode(clip: bytes, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """FLAC/WAV/OGG bytes -> float32[samples] mono at 16 kHz, by the core's reader (soxr), so the verifier
    hears a clip exactly as the edge hears the same file."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"clips decode to YAMNet's {SAMPLE_RATE} Hz only, not {sample_rate}")
    try:
        return audio.decode(clip, "clip")
    except CoreError as exc:
        raise ClipDecodeError(f"cannot decode clip: {exc}") from exc


@dataclass(frozen=True)
class LabelGroup:
    label: str
    classes: tuple[str, ...]
    threshold: float


def edge_label_groups() -> list[LabelGroup]:
    """The labels the edge reports, with their AudioSet classes and thresholds (the shared taxonomy, calibrated)."""
    return [LabelGroup(k, tuple(v.classes), float(v.threshold)) for k, v in labels.scoring().labels.items()]


class Verifier:
    """A second opinion on an event: `verify(clip, format, label)` -> the labels it hears and whether the edge's
    label is among them. Subclasses set KEY and fail in __init__ when their model cannot run here."""

    KEY = ""

    def verify(self, clip: bytes, fmt: str, label: str) -> VerifyResult:
        raise NotImplementedError

    @staticmethod
    def verdict(key: str, scores: dict[str, float], thresholds: dict[str, float], label: str,
                note: Optional[str] = None) -> VerifyResult:
        present = sorted((lab for lab, s in scores.items() if s >= thresholds.get(lab, 1.0)),
                         key=lambda lab: -scores[lab])
        agree: Optional[bool] = label in present if label in thresholds else None
        return VerifyResult(key, present, scores, agree,
                            note or (None if agree is not None else f"{key} has no opinion on {label!r}"))
