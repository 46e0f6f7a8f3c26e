"""Shared analysis steps of batch and real-time modes: patches -> windows (scores, loudness, head) -> detector."""
from __future__ import annotations

from typing import Optional

import numpy as np

from edge_rt.backends import Backend
from edge_rt.detector import Window
from edge_rt.head import Head
from edge_rt.params import PARAMS

WINDOW_SAMPLES = int(round(PARAMS.patch_window_seconds * PARAMS.sample_rate))  # 15360
HOP_SAMPLES = PARAMS.patch_hop_frames * PARAMS.hop_length_samples  # 7680
DBFS_FLOOR = -140.0


def dbfs(audio: np.ndarray) -> float:
    """RMS level of float32[samples] in dB relative to full scale (a full-scale sine is -3 dBFS)."""
    if audio.size == 0:
        return DBFS_FLOOR
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return max(DBFS_FLOOR, 20.0 * np.log10(rms)) if rms > 0 else DBFS_FLOOR


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


def windows(patches: np.ndarray, scores: np.ndarray, embeddings: np.ndarray, levels: list[float],
            first_index: int, head: Optional[Head], background: BackgroundLevel) -> list[Window]:
    """Wrap a batch: patches float32[N,96,64], scores [N,521], embeddings [N,1024], levels N dBFS values.

    `background` carries the running level across batches of one stream (a new stream needs a new one)."""
    rel = background.relative(levels)
    probs = head.per_label(head.features(embeddings, scores, rel)) if head is not None else [None] * len(patches)
    return [Window(start_s=(first_index + i) * PARAMS.patch_hop_seconds, scores=scores[i], patch=patches[i],
                   dbfs=levels[i], embedding=embeddings[i], head=probs[i])
            for i in range(len(patches))]


def score_clip(waveform: np.ndarray, backend: Backend, head: Optional[Head], scorer) -> tuple[list[Window], np.ndarray]:
    """A whole clip as `classify` sees it: its windows and float32[N,L] label scores from `scorer` (a LabelScorer).

    The cloud verifier calls this too, so the edge and the cloud score the same clip the same way."""
    from edge_rt import frontend

    wins = infer_windows(backend, frontend.patches(frontend.log_mel(waveform, pad=True)), waveform, head)
    if not wins:
        return wins, np.zeros((0, len(scorer.labels)), np.float32)
    labels = scorer(np.stack([w.scores for w in wins]), [w.head for w in wins])
    for w, row in zip(wins, labels):
        w.labels = row  # the detector reuses them rather than scoring again
    return wins, labels


def infer_windows(backend: Backend, patches: np.ndarray, waveform: np.ndarray, head: Optional[Head],
                  first_index: int = 0) -> list[Window]:
    """Run the model over float32[N,96,64] patches cut from float32[samples] `waveform` (window i at i*hop)."""
    scores, emb = backend.infer(patches)
    return windows(patches, scores, emb, window_levels(waveform, len(patches)), first_index, head, BackgroundLevel())
