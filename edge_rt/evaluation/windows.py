"""YAMNet over a whole recording, as `classify` runs it, with the outputs cached on disk by audio and model.

Training, calibration and evaluation read the same recordings many times with different heads and thresholds;
the model's part (class scores, embeddings, loudness, onsets) depends only on the audio and the model, so it is
computed once and kept under `models/.cache/windows/`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edge_rt.detector import Window, patch_offset_s, patch_onset_s
from edgert.yamnet import frontend, paths
from edgert.yamnet.analysis import BackgroundLevel, window_levels
from edgert.yamnet.backends import Backend
from edgert.yamnet.head import Head
from edgert.yamnet.params import PARAMS

CACHE_DIR = ".cache/windows"


@dataclass
class Analysed:
    """The model's view of one recording: N windows at i * 0.48 s."""

    duration_s: float
    scores: np.ndarray  # float32[N,521]
    embeddings: np.ndarray  # float32[N,1024]
    levels: np.ndarray  # float32[N] dBFS
    onsets: np.ndarray  # float32[N] stream time where the sound in window i starts (detector.onset_s)
    offsets: np.ndarray  # float32[N] ... and ends (detector.offset_s)
    patches: Optional[np.ndarray] = None  # float32[N,96,64], only when freshly computed

    @property
    def starts(self) -> np.ndarray:
        """float32[N] start time of each window."""
        return (np.arange(len(self.scores)) * PARAMS.patch_hop_seconds).astype(np.float32)

    def relative_db(self) -> np.ndarray:
        """float32[N] loudness above the running background, as the live pipeline computes it."""
        return BackgroundLevel().relative(self.levels.tolist())

    def head_probs(self, head: Optional[Head]) -> Optional[list[dict[str, float]]]:
        if head is None:
            return None
        return head.per_label(head.features(self.embeddings, self.scores, self.relative_db()))

    def windows(self, head: Optional[Head]) -> list[Window]:
        """Detector windows, replayed: no patch, the onsets and offsets computed from it when analysed."""
        given = self.head_probs(head)
        probs: list[Optional[dict[str, float]]] = list(given) if given is not None else [None] * len(self.scores)
        return [Window(float(t), self.scores[i], None, float(self.levels[i]), self.embeddings[i], probs[i],
                       onset=float(self.onsets[i]), offset=float(self.offsets[i]))
                for i, t in enumerate(self.starts)]


def analyse(wave: np.ndarray, backend: Backend, batch: int = 256) -> Analysed:
    """float32[samples] 16 kHz -> Analysed, with the same padding and steps as `classify`."""
    pts = frontend.patches(frontend.log_mel(wave, pad=True))  # float32[N,96,64]
    scores, emb = [], []
    for i in range(0, len(pts), batch):
        s, e = backend.infer(pts[i:i + batch])
        scores.append(s)
        emb.append(e)
    levels = np.array(window_levels(wave, len(pts)), np.float32)
    starts = np.arange(len(pts)) * PARAMS.patch_hop_seconds
    return Analysed(wave.size / PARAMS.sample_rate, np.concatenate(scores).astype(np.float32),
                    np.concatenate(emb).astype(np.float32), levels,
                    np.array([patch_onset_s(float(t), p) for t, p in zip(starts, pts)], np.float32),
                    np.array([patch_offset_s(float(t), p) for t, p in zip(starts, pts)], np.float32), pts)


def cached(wave: np.ndarray, backend: Backend, cache_dir: Optional[Path] = None) -> Analysed:
    """`analyse`, read from / written to the cache keyed by the audio's and the model's sha256."""
    folder = cache_dir or paths.model_dir() / CACHE_DIR
    key = hashlib.sha256(np.ascontiguousarray(wave, np.float32).tobytes()).hexdigest()[:20]
    path = folder / f"{key}-{backend.model_sha256[:12]}.npz"
    if path.is_file():
        with np.load(path) as z:
            return Analysed(float(z["duration_s"]), z["scores"], z["embeddings"].astype(np.float32), z["levels"],
                            z["onsets"], z["offsets"])
    a = analyse(wave, backend)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, duration_s=a.duration_s, scores=a.scores, embeddings=a.embeddings, levels=a.levels,
             onsets=a.onsets, offsets=a.offsets)
    tmp.replace(path)
    return a
