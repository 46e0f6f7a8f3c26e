"""The verifier base class, clip decoding, and the edge's label groups that verdicts are stated in."""
from __future__ import annotations

import io
from dataclasses import dataclass
from math import gcd
from typing import Optional

import numpy as np

from cloud_svc.domain import VerifyResult
from cloud_svc.errors import CloudError

SAMPLE_RATE = 16000


class ClipDecodeError(CloudError):
    """A stored clip cannot be decoded as audio."""


def decode(clip: bytes, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """FLAC/WAV/OGG bytes -> float32[samples] mono at `sample_rate`."""
    import soundfile as sf

    try:
        audio, sr = sf.read(io.BytesIO(clip), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile errors
        raise ClipDecodeError(f"cannot decode clip: {exc}") from exc
    mono = audio.mean(axis=1).astype(np.float32)
    if sr != sample_rate:
        from scipy.signal import resample_poly

        g = gcd(int(sr), sample_rate)
        mono = resample_poly(mono, sample_rate // g, int(sr) // g).astype(np.float32)
    return np.clip(mono, -1.0, 1.0)


@dataclass(frozen=True)
class LabelGroup:
    label: str
    classes: tuple[str, ...]
    threshold: float


def edge_label_groups() -> list[LabelGroup]:
    """The labels the edge reports, with their AudioSet classes and thresholds (the edge's shipped defaults)."""
    from edge_rt.config import defaults

    labels = defaults()["detector"]["labels"]
    return [LabelGroup(k, tuple(v["classes"]), float(v["threshold"])) for k, v in labels.items()]


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
