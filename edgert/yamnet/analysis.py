"""A clip through the YAMNet runtime as both sides score it: windows, their loudness above the room, the head.

The edge's `classify` and the cloud's `yamnet` verifier call `analyse_clip`, so one clip gets the same label
scores on the device and in the cloud; the edge's real-time loop uses the same loudness steps window by window.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from edgert.yamnet.backends import Backend
from edgert.yamnet.head import Head
from edgert.yamnet.params import PARAMS

WINDOW_SAMPLES = int(round(PARAMS.patch_window_seconds * PARAMS.sample_rate))  # 15360
HOP_SAMPLES = PARAMS.patch_hop_frames * PARAMS.hop_length_samples  # 7680
DBFS_FLOOR = -140.0


def dbfs(audio: np.ndarray) -> float:
    """RMS level of float32[samples] in dB relative to full scale (a full-scale sine is -3 dBFS)."""
    if audio.size == 0:
        return DBFS_FLOOR
    return dbfs_of_squares(np.square(audio, dtype=np.float64))


def dbfs_of_squares(squares: np.ndarray) -> float:
    """`dbfs` of audio given as its float64[samples] squares (non-empty): overlapping windows square once."""
    rms = float(np.sqrt(np.mean(squares)))
    return max(DBFS_FLOOR, 20.0 * np.log10(rms)) if rms > 0 else DBFS_FLOOR


def dbfs_of_hop_sums(hops: np.ndarray) -> list[float]:
    """dBFS of the n windows spanned by float64[n+1] consecutive hops' sums of squares (window i: hops i and i+1).
    Bit for bit `dbfs` of each window where a window is two hops (WINDOW_SAMPLES == 2 * HOP_SAMPLES): numpy's
    pairwise sum of a window's squares is the sum of its halves' pairwise sums."""
    rms = np.sqrt((hops[:-1] + hops[1:]) / WINDOW_SAMPLES)  # float64[n]
    with np.errstate(divide="ignore"):
        return np.maximum(20.0 * np.log10(rms), DBFS_FLOOR).tolist()


def window_levels(waveform: np.ndarray, n: int) -> list[float]:
    """dBFS of each of the first n windows of float32[samples] (window i at i*hop; short audio counts as zeros)."""
    padded = np.zeros(max(waveform.size, (n - 1) * HOP_SAMPLES + WINDOW_SAMPLES), np.float32)
    padded[:waveform.size] = waveform
    return [dbfs(padded[i * HOP_SAMPLES:i * HOP_SAMPLES + WINDOW_SAMPLES]) for i in range(n)]


class BackgroundLevel:
    """The running background level of a stream of windows, in dBFS, and each window's loudness above it.

    The level follows a fall at once and a rise by at most RISE_DB per window, so a voice or a bang (seconds)
    barely lifts it while a room that gets louder for good (a minute) is followed. A raised voice stands out
    from the room it is in; calm speech in a quiet room stands out less than a shout in the same room.
    """

    RISE_DB = 0.5  # per 0.48 s window: about 1 dB/s
    LEVEL_FLOOR_DBFS = -90.0  # digital silence (padding, a muted input) counts as this quiet
    RELATIVE_RANGE_DB = (-20.0, 60.0)
    # Before the first window the room is taken to be a quiet one. Starting from the first window's own level
    # instead told the head that a clip which opens on a break of glass was no louder than its room.
    INITIAL_DBFS = -60.0

    def __init__(self) -> None:
        self.level: float = self.INITIAL_DBFS

    def relative(self, levels) -> np.ndarray:
        """N window levels (dBFS, in stream order) -> float32[N] dB above the background before each window."""
        out = np.empty(len(levels), np.float32)
        for i, lv in enumerate(levels):
            lv = max(float(lv), self.LEVEL_FLOOR_DBFS)
            bg = self.level
            out[i] = lv - bg
            self.level = lv if lv < bg else bg + min(self.RISE_DB, lv - bg)
        return np.clip(out, *self.RELATIVE_RANGE_DB)


def head_probs(head: Optional[Head], scores: np.ndarray, embeddings: np.ndarray, relative_db: np.ndarray
               ) -> list[Optional[dict[str, float]]]:
    """Per window {label: probability} from the head (None for every window when there is no head)."""
    if head is None:
        return [None] * len(scores)
    return [p for p in head.per_label(head.features(embeddings, scores, relative_db))]


@dataclass
class ClipAnalysis:
    patches: np.ndarray  # float32[N,96,64] log-mel
    scores: np.ndarray  # float32[N,521]
    embeddings: np.ndarray  # float32[N,1024]
    levels: list[float]  # N window levels, dBFS
    head: list[Optional[dict[str, float]]]  # N per-window head probabilities (None without a head)
    labels: np.ndarray  # float32[N,L] label scores, in the scorer's label order


def analyse_clip(waveform: np.ndarray, backend: Backend, head: Optional[Head], scorer) -> ClipAnalysis:
    """A whole float32[samples] 16 kHz clip, padded as the hub pads it: every window's scores, embedding,
    loudness and head probabilities, and label scores from `scorer` (an `edgert.labels.LabelScorer`)."""
    from edgert.yamnet import frontend

    patches = frontend.patches(frontend.log_mel(waveform, pad=True))
    scores, embeddings = backend.infer(patches)
    levels = window_levels(waveform, len(patches))
    probs = head_probs(head, scores, embeddings, BackgroundLevel().relative(levels))
    labels = (scorer(scores, probs) if len(patches) else np.zeros((0, len(scorer.labels)), np.float32))
    return ClipAnalysis(patches, scores, embeddings, levels, probs, labels)
