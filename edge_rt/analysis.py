"""Analysis steps of the edge's batch and real-time modes: patches -> detector windows (scores, loudness, head).

The loudness steps and whole-clip scoring are the shared YAMNet runtime's (`edgert.yamnet.analysis`), so the
cloud's verifier scores a clip as `classify` does."""
from __future__ import annotations

from typing import Optional

import numpy as np

from edge_rt.detector import Window
from edgert.labels import LabelScorer
from edgert.yamnet.analysis import BackgroundLevel, analyse_clip, head_probs, window_levels
from edgert.yamnet.backends import Backend
from edgert.yamnet.head import Head
from edgert.yamnet.params import PARAMS


def windows(patches: np.ndarray, scores: np.ndarray, embeddings: np.ndarray, levels: list[float],
            first_index: int, head: Optional[Head], background: BackgroundLevel,
            scorer: Optional[LabelScorer] = None) -> list[Window]:
    """Wrap a batch: patches float32[N,96,64], scores [N,521], embeddings [N,1024], levels N dBFS values.

    `background` carries the running level across batches of one stream (a new stream needs a new one). With
    the detector's `scorer`, the windows carry their float32[L] label scores, scored for the batch at once (a
    row's scores do not depend on the rows beside it)."""
    probs = head_probs(head, scores, embeddings, background.relative(levels))
    labels = scorer(scores, probs) if scorer is not None and len(patches) else None  # float32[N,L]
    return [Window(start_s=(first_index + i) * PARAMS.patch_hop_seconds, scores=scores[i], patch=patches[i],
                   dbfs=levels[i], embedding=embeddings[i], head=probs[i],
                   labels=None if labels is None else labels[i])
            for i in range(len(patches))]


def score_clip(waveform: np.ndarray, backend: Backend, head: Optional[Head], scorer) -> tuple[list[Window], np.ndarray]:
    """A whole clip as `classify` sees it: its windows and float32[N,L] label scores from `scorer` (a LabelScorer),
    by the shared `analyse_clip` that the cloud's verifier calls too."""
    a = analyse_clip(waveform, backend, head, scorer)
    wins = [Window(start_s=i * PARAMS.patch_hop_seconds, scores=a.scores[i], patch=a.patches[i], dbfs=a.levels[i],
                   embedding=a.embeddings[i], head=a.head[i], labels=a.labels[i]) for i in range(len(a.patches))]
    return wins, a.labels  # the windows carry their label scores: the detector reuses them rather than scoring again


def infer_windows(backend: Backend, patches: np.ndarray, waveform: np.ndarray, head: Optional[Head],
                  first_index: int = 0) -> list[Window]:
    """Run the model over float32[N,96,64] patches cut from float32[samples] `waveform` (window i at i*hop)."""
    scores, emb = backend.infer(patches)
    return windows(patches, scores, emb, window_levels(waveform, len(patches)), first_index, head, BackgroundLevel())
