"""Batch mode: classify recordings and folders of them, streaming each file, and print the contract's JSON object per
file.

What `classify` does with awkward input (each message names the file):
  - a file of any length is decoded, resampled and analysed in blocks, so memory does not grow with its size;
  - any rate and channel count become 16 kHz mono (soxr, channel mean), as `run` and the cloud hear them;
  - NaN/Inf samples become 0 and samples beyond full scale are clipped to [-1, 1], each with a warning;
  - a WAV cut short is classified as far as it goes, with a warning (as `run` plays it);
  - a file that cannot be decoded at all, or is empty, is an error and gets no JSON;
  - a decoder failure mid-file (a cut FLAC) is an error, after the JSON of the audio before it;
  - a folder is classified file by file (its audio files by name, as `run --source dir:` plays them); its other
    files are skipped with a warning each, and only a folder without audio files is an error.
The exit status is 1 when any named file or audio file in a named folder failed, else 0.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from typing import Iterable, Iterator, Optional, TextIO

import numpy as np

from edge_rt.analysis import score_clip
from edge_rt.config import EdgeConfig
from edge_rt.detector import Detector, Event, Window
from edge_rt.errors import CaptureError, EdgeRtError, EmptySourceError
from edge_rt.frontend import StreamingFrontend, padded_length
from edgert.errors import CoreError
from edgert.yamnet.analysis import HOP_SAMPLES, WINDOW_SAMPLES, BackgroundLevel, dbfs, head_probs
from edgert.yamnet.backends import Backend
from edgert.yamnet.classmap import top_classes
from edgert.yamnet.head import Head
from edgert.yamnet.params import PARAMS

log = logging.getLogger("edge_rt.classify")

BLOCK_SECONDS = 10.0
"""Audio resampled per block. A clip up to this long is resampled in one call, exactly as the core's one-shot
`edgert.audio.decode` (the cloud verifier's) resamples it; longer files agree with it to ~1e-6."""
BLOCK_SAMPLES = 1 << 21
"""At most this many decoded samples (frames x channels: 8 MB of float32) per block, whatever the file's rate
and channel count; 10 s of 44.1 kHz stereo fit, 96 kHz x 6 channels gets 3.6 s blocks."""
BATCH_WINDOWS = 16
"""Windows (0.48 s apart, so 7.7 s of audio) per inference call. Larger batches are no faster per window and
cost the model's activations: 64 windows add ~110 MB. Every backend scores a window the same in any batch."""


def top_k(scores: np.ndarray, names, k: int) -> list[list]:
    """The contract's [[class, score] x k], scores to 4 decimals."""
    return [[n, round(s, 4)] for n, s in top_classes(scores, names, k)]


class ClipClassifier:
    """One recording streamed through the front end, model, head and detector into the contract's dict.

    `push` float32[k] 16 kHz chunks of any size, then `finish()`. The result equals `classify_waveform` of the
    whole recording (the hub's end padding, the loudness of each window and its background, the head, the
    detector) while holding only a batch of windows, the detector's state and the per-window top classes.
    """

    def __init__(self, cfg: EdgeConfig, backend: Backend, names, head: Optional[Head], batch: int = BATCH_WINDOWS):
        if batch < 1:
            raise ValueError(f"batch must be at least 1 window, got {batch}")
        self.backend, self.names, self.head, self.batch = backend, list(names), head, batch
        self.k = cfg.detector.top_k
        self.detector = Detector(cfg.detector, cfg.rules, self.names)
        self.samples = 0  # 16 kHz samples pushed (the recording, without the end padding)
        self._front = StreamingFrontend()
        self._background = BackgroundLevel()
        self._held: list[np.ndarray] = []  # the audio from sample `_held_from` on, for window loudness
        self._held_from = 0
        self._patches: list[np.ndarray] = []  # float32[96,64] patches waiting for the model
        self._next_window = 0
        self._score_sum = np.zeros(0, np.float32)  # float32[521], summed window by window (as np.mean sums)
        self._frames: list[dict] = []
        self._open: dict[str, tuple[int, Event]] = {}  # started events not yet ended, with their start order
        self._events: list[tuple[float, int, dict]] = []  # (start_s, start order, event dict) of ended events
        self._started = 0
        self._alerts: list[dict] = []

    def push(self, chunk: np.ndarray) -> None:
        """Add float32[k] mono 16 kHz audio (finite, as capture delivers it)."""
        self.samples += chunk.size
        self._take(chunk)

    def finish(self) -> dict:
        """Pad the end as the hub does, analyse what is left and return the contract's dict (without "file")."""
        if self.samples == 0:
            raise EmptySourceError("no audio after decoding")
        pad = padded_length(self.samples) - self.samples
        if pad:
            self._take(np.zeros(pad, np.float32))
        if self._patches:
            self._analyse()
        for ev in self.detector.flush().ended:
            self._close(ev)
        assert not self._open, "the detector's flush ends every event"
        return {
            "duration_s": round(self.samples / PARAMS.sample_rate, 3),
            "clip_top": top_k(self._score_sum / np.float32(self._next_window), self.names, self.k),
            "frames": self._frames,
            "events": [e for _, _, e in sorted(self._events, key=lambda x: x[:2])],
            "alerts": self._alerts,
        }

    def _take(self, chunk: np.ndarray) -> None:
        self._held.append(chunk)
        self._patches.extend(self._front.push(chunk))
        if len(self._patches) >= self.batch:
            self._analyse()

    def _analyse(self) -> None:
        patches = np.stack(self._patches)  # float32[N,96,64]
        self._patches = []
        first = self._next_window
        audio = np.concatenate(self._held)  # float32[held]: from _held_from to at least the end of window first+N-1
        starts = [(first + i) * HOP_SAMPLES - self._held_from for i in range(len(patches))]
        levels = [dbfs(audio[s:s + WINDOW_SAMPLES]) for s in starts]
        self._next_window = first + len(patches)
        keep = self._next_window * HOP_SAMPLES - self._held_from
        self._held = [audio[keep:].copy()]
        self._held_from += keep
        scores, embeddings = self.backend.infer(patches)  # float32[N,521], float32[N,1024]
        probs = head_probs(self.head, scores, embeddings, self._background.relative(levels))
        labels = self.detector.scorer(scores, probs)  # float32[N,L]
        if self._score_sum.size == 0:
            self._score_sum = np.zeros(scores.shape[1], np.float32)
        for i in range(len(patches)):
            w = Window(start_s=(first + i) * PARAMS.patch_hop_seconds, scores=scores[i], patch=patches[i],
                       dbfs=levels[i], embedding=embeddings[i], head=probs[i], labels=labels[i])
            self._score_sum += w.scores
            self._frames.append({"t": round(w.start_s, 2), "top": top_k(w.scores, self.names, self.k)})
            out = self.detector.push(w)
            for ev in out.started:
                self._open[ev.event_id] = (self._started, ev)
                self._started += 1
            for ev in out.ended:
                self._close(ev)
            self._alerts.extend(a.as_dict() for a in out.alerts)

    def _close(self, ev: Event) -> None:
        order, _ = self._open.pop(ev.event_id)
        self._events.append((ev.start_s, order, ev.as_dict()))  # the dict, not the event: it holds a window


def classify_waveform(wave: np.ndarray, cfg: EdgeConfig, backend: Backend, names, head: Optional[Head]) -> dict:
    """float32[samples] at 16 kHz, whole in memory -> the contract's dict (without "file"), by the shared
    `analyse_clip` that the cloud's verifier runs; `classify_file` streams a file to the same result."""
    det = Detector(cfg.detector, cfg.rules, names)
    wins, _ = score_clip(wave, backend, head, det.scorer)
    events, alerts = [], []
    for w in wins:
        out = det.push(w)
        alerts.extend(out.alerts)
        events.extend(out.started)
    det.flush()
    k = cfg.detector.top_k
    scores = np.stack([w.scores for w in wins])
    return {
        "duration_s": round(wave.size / PARAMS.sample_rate, 3),
        "clip_top": top_k(scores.mean(axis=0), names, k),
        "frames": [{"t": round(w.start_s, 2), "top": top_k(w.scores, names, k)} for w in wins],
        "events": [e.as_dict() for e in sorted(events, key=lambda e: e.start_s)],
        "alerts": [a.as_dict() for a in alerts],
    }


def block_seconds(channels: int, samplerate: int) -> float:
    """Seconds of a file per decoded block: BLOCK_SECONDS, fewer where that would exceed BLOCK_SAMPLES."""
    return min(BLOCK_SECONDS, BLOCK_SAMPLES / (channels * samplerate))


def classify_file(path: Path, cfg: EdgeConfig, backend: Backend, names, head: Optional[Head]
                  ) -> tuple[dict, Optional[str]]:
    """Stream one audio file through `ClipClassifier`: (the contract's dict without "file", None), or with the
    decoder's error when it failed mid-file: the dict then covers the audio before the failure.

    Raises the capture errors of `FileSource` when nothing could be classified (missing, empty, undecodable).
    """
    from edge_rt.capture.files import FileSource, check_audio_file

    info = check_audio_file(path)
    source = FileSource(path, block_seconds=block_seconds(info.channels, info.samplerate))
    clf = ClipClassifier(cfg, backend, names, head)
    try:
        source.run(clf.push, threading.Event())
    except CaptureError as exc:
        if clf.samples == 0:
            raise
        return clf.finish(), f"{exc}; the JSON covers the {clf.samples / PARAMS.sample_rate:.2f} s before it"
    try:
        return clf.finish(), None
    except EmptySourceError:
        raise EmptySourceError(f"{path} holds no audio after decoding "
                               f"({info.frames} frames at {info.samplerate} Hz)") from None


def expand(paths: Iterable[str]) -> Iterator[tuple[str, Optional[str]]]:
    """Each named file, and each audio file in a named folder, in path order: (path, None). A folder's other
    files come as (path, why it is skipped) and a folder without audio files as (folder, the error)."""
    from edge_rt.capture.files import AUDIO_SUFFIXES, scan_folder

    for name in paths:
        folder = Path(name).expanduser()
        if not folder.is_dir():
            yield name, None
            continue
        try:
            audio, others = scan_folder(folder)
        except CaptureError as exc:
            yield name, f"error: {exc}"
            continue
        for p in others:
            yield str(p), f"warning: skipping {p}: not an audio file by its name (audio is {' '.join(AUDIO_SUFFIXES)})"
        if not audio:
            yield name, f"error: no audio files ({' '.join(AUDIO_SUFFIXES)}) in {folder}"
        yield from ((str(p), None) for p in audio)


def _naming(path: str, text: str) -> str:
    """The error line for a file: the message names it once."""
    return f"error: {text}" if path in text else f"error: {path}: {text}"


def classify_files(files: Iterable[str], cfg: EdgeConfig, backend: Backend, names, head: Optional[Head],
                   out: TextIO = sys.stdout, as_json: bool = True) -> int:
    """Classify each file (a folder: its audio files); one JSON line each (or a short text summary). Return the
    number of failures: files that could not be classified, or only in part, and folders without audio."""
    from tqdm import tqdm

    items = list(expand(files))
    failures = 0
    todo = sum(why is None for _, why in items)
    bar = tqdm(total=todo, desc="classify", unit="file", disable=todo < 2, file=sys.stderr)
    for path, why in items:
        if why is not None:
            failures += why.startswith("error:")
            tqdm.write(why, file=sys.stderr)
            continue
        bar.update(1)
        try:
            result, failed = classify_file(Path(path), cfg, backend, names, head)
        except (EdgeRtError, CoreError) as exc:
            failures += 1
            tqdm.write(_naming(path, str(exc)), file=sys.stderr)
            continue
        _write({"file": path, **result}, out, as_json)
        if failed is not None:
            failures += 1
            tqdm.write(_naming(path, failed), file=sys.stderr)
    bar.close()
    return failures


def _write(result: dict, out: TextIO, as_json: bool) -> None:
    if as_json:
        out.write(json.dumps(result) + "\n")
    else:
        ev = ", ".join(f"{e['label']} {e['start_s']:.2f}-{e['end_s']:.2f}s ({e['score']:.2f})"
                       for e in result["events"]) or "no events"
        al = "; ".join(f"ALERT {a['rule']} {a['labels']}" for a in result["alerts"])
        top = ", ".join(f"{n} {s:.2f}" for n, s in result["clip_top"][:3])
        out.write(f"{result['file']} ({result['duration_s']:.1f} s): {top} | {ev}{' | ' + al if al else ''}\n")
    out.flush()
