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


def windows(patches: np.ndarray, scores: np.ndarray, embeddings: np.ndarray, levels: list[float],
            first_index: int, head: Optional[Head]) -> list[Window]:
    """Wrap a batch: patches float32[N,96,64], scores [N,521], embeddings [N,1024], levels N dBFS values."""
    probs = head.per_label(embeddings) if head is not None else [None] * len(patches)
    return [Window(start_s=(first_index + i) * PARAMS.patch_hop_seconds, scores=scores[i], patch=patches[i],
                   dbfs=levels[i], embedding=embeddings[i], head=probs[i])
            for i in range(len(patches))]


def infer_windows(backend: Backend, patches: np.ndarray, waveform: np.ndarray, head: Optional[Head],
                  first_index: int = 0) -> list[Window]:
    """Run the model over float32[N,96,64] patches cut from float32[samples] `waveform` (window i at i*hop)."""
    scores, emb = backend.infer(patches)
    return windows(patches, scores, emb, window_levels(waveform, len(patches)), first_index, head)
