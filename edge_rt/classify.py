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
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, TextIO

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
"""Windows (0.48 s apart, so 7.7 s of audio) of one recording analysed together: the head and the detector take
them as one group, and by default the model scores that many windows per call, across recordings when they are
short. Larger batches are no faster per window and cost the model's activations: 64 windows add ~110 MB.
`--batch` changes the model's calls only, never the groups: BLAS takes the head's product for a lone row by
another kernel than for several (1.5e-5 apart), so a group of another size could move a score."""
FILE_COST_S = 0.05
"""What opening and setting up one file costs, in seconds of audio it would take to classify (for `deal`)."""
PROCESS_CHUNKS = 16
"""`--jobs N` deals the files out in about N x this many runs of consecutive files, by size: enough that the last
run to finish leaves the other processes little idle time, few enough that each run batches its short files."""


def top_k(scores: np.ndarray, names, k: int) -> list[list]:
    """The contract's [[class, score] x k], scores to 4 decimals."""
    return [[n, round(s, 4)] for n, s in top_classes(scores, names, k)]


class Batcher:
    """The model's side of `classify`: windows of one or more recordings, `batch` per inference call, in order.

    A recording hands over each group of its windows with `submit(take, patches)`, float32[N,96,64]; `take(scores,
    embeddings)` gets their rows (float32[N,521], float32[N,1024]) once all of them are scored, groups in the order
    submitted. Calls hold exactly `batch` windows until `flush()` scores what is left. Every backend scores a window
    the same in any batch (tests/integration/test_classify_paths.py holds them to it), so batch 1, the plain path of
    one window per call, is the reference that the batched path and `--jobs` must match byte for byte.
    """

    def __init__(self, backend: Backend, batch: int = BATCH_WINDOWS):
        if batch < 1:
            raise ValueError(f"batch must be at least 1 window, got {batch}")
        self.backend, self.batch = backend, batch
        self._groups: deque[tuple[Callable[[np.ndarray, np.ndarray], None], int]] = deque()  # (take, windows)
        self._waiting: list[np.ndarray] = []  # float32[k,96,64] patches submitted and not yet scored
        self._n_waiting = 0
        self._scored: list[tuple[np.ndarray, np.ndarray]] = []  # rows scored but not yet handed back
        self._n_scored = 0
        self.calls = 0
        self.broken: Optional[BaseException] = None  # what the model raised; the groups waiting on it are dropped

    def submit(self, take: Callable[[np.ndarray, np.ndarray], None], patches: np.ndarray) -> None:
        """Queue float32[N,96,64] patches of one recording; `take` gets their scores and embeddings later."""
        self._groups.append((take, len(patches)))
        self._waiting.append(patches)
        self._n_waiting += len(patches)
        while self._n_waiting >= self.batch:
            self._score(self.batch)

    def flush(self) -> None:
        """Score every window still waiting and hand back every group."""
        while self._n_waiting:
            self._score(min(self._n_waiting, self.batch))

    def _score(self, n: int) -> None:
        waiting = self._waiting[0] if len(self._waiting) == 1 else np.concatenate(self._waiting)
        now, rest = waiting[:n], waiting[n:]  # float32[n,96,64], float32[waiting-n,96,64]
        self._waiting = [rest] if len(rest) else []
        self._n_waiting -= n
        try:
            scores, embeddings = self.backend.infer(now)  # float32[n,521], float32[n,1024]
        except BaseException as exc:
            self.broken = exc
            self._groups.clear()
            self._waiting, self._n_waiting, self._scored, self._n_scored = [], 0, [], 0
            raise
        self.calls += 1
        self._scored.append((scores, embeddings))
        self._n_scored += n
        while self._groups and self._groups[0][1] <= self._n_scored:
            take, k = self._groups.popleft()
            scores = self._scored[0][0] if len(self._scored) == 1 else np.concatenate([s for s, _ in self._scored])
            embeddings = self._scored[0][1] if len(self._scored) == 1 else np.concatenate([e for _, e in self._scored])
            self._scored = [(scores[k:], embeddings[k:])] if len(scores) > k else []
            self._n_scored -= k
            take(scores[:k], embeddings[:k])


class ClipClassifier:
    """One recording streamed through the front end, model, head and detector into the contract's dict.

    `push` float32[k] 16 kHz chunks of any size, then `finish()`. The result equals `classify_waveform` of the
    whole recording (the hub's end padding, the loudness of each window and its background, the head, the
    detector) while holding only a group of windows, the detector's state and the per-window top classes.

    The model scores through `batcher`, by default one of its own scoring `batch` windows per call; recordings
    that share one (see `classify_files`) are scored together, and then `close()` ends the recording's audio,
    the shared batcher's `flush()` scores the rest, and `result()` gives the dict.
    """

    def __init__(self, cfg: EdgeConfig, backend: Backend, names, head: Optional[Head], batch: int = BATCH_WINDOWS,
                 *, batcher: Optional[Batcher] = None):
        self.batcher = batcher or Batcher(backend, batch)
        self.backend, self.names, self.head = backend, list(names), head
        self.k = cfg.detector.top_k
        self.detector = Detector(cfg.detector, cfg.rules, self.names)
        self.samples = 0  # 16 kHz samples pushed (the recording, without the end padding)
        self._front = StreamingFrontend()
        self._background = BackgroundLevel()
        self._held: list[np.ndarray] = []  # the audio from sample `_held_from` on, for window loudness
        self._held_from = 0
        self._patches: list[np.ndarray] = []  # float32[96,64] patches not yet handed to the batcher
        self._next_window = 0  # index of the first window in _patches
        self._submitted = 0  # windows handed to the batcher
        self._taken = 0  # windows whose scores came back
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
        self.close()
        self.batcher.flush()
        return self.result()

    def close(self) -> None:
        """The recording's audio ended: pad it as the hub does and hand its last windows to the batcher."""
        if self.samples == 0:
            raise EmptySourceError("no audio after decoding")
        pad = padded_length(self.samples) - self.samples
        if pad:
            self._take(np.zeros(pad, np.float32))
        if self._patches:
            self._submit()

    @property
    def done(self) -> bool:
        """Every window handed to the batcher has come back scored."""
        return self._taken == self._submitted

    def result(self) -> dict:
        """The contract's dict (without "file") of a closed recording whose windows all came back."""
        assert self.done, "result() before the batcher scored every window"
        for ev in self.detector.flush().ended:
            self._close(ev)
        assert not self._open, "the detector's flush ends every event"
        return {
            "duration_s": round(self.samples / PARAMS.sample_rate, 3),
            "clip_top": top_k(self._score_sum / np.float32(self._taken), self.names, self.k),
            "frames": self._frames,
            "events": [e for _, _, e in sorted(self._events, key=lambda x: x[:2])],
            "alerts": self._alerts,
        }

    def _take(self, chunk: np.ndarray) -> None:
        self._held.append(chunk)
        self._patches.extend(self._front.push(chunk))
        if len(self._patches) >= BATCH_WINDOWS:
            self._submit()

    def _submit(self) -> None:
        """Hand the waiting windows to the batcher as one group, with their loudness (the audio goes)."""
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
        self._submitted += len(patches)
        self.batcher.submit(lambda scores, embeddings: self._analyse(first, patches, levels, scores, embeddings),
                            patches)

    def _analyse(self, first: int, patches: np.ndarray, levels: list[float], scores: np.ndarray,
                 embeddings: np.ndarray) -> None:
        """A group's windows from `first` on, scored: float32[N,96,64] patches, N dBFS levels, float32[N,521]
        scores and float32[N,1024] embeddings -> the head, the detector and the frames."""
        self._taken += len(patches)
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


def classify_file(path: Path, cfg: EdgeConfig, backend: Backend, names, head: Optional[Head],
                  batch: int = BATCH_WINDOWS) -> tuple[dict, Optional[str]]:
    """Stream one audio file through `ClipClassifier`: (the contract's dict without "file", None), or with the
    decoder's error when it failed mid-file: the dict then covers the audio before the failure.

    Raises the capture errors of `FileSource` when nothing could be classified (missing, empty, undecodable).
    """
    clf = ClipClassifier(cfg, backend, names, head, batch)
    failed = _decode(path, clf)
    clf.batcher.flush()
    return clf.result(), failed


def _decode(path: Path, clf: ClipClassifier) -> Optional[str]:
    """Stream `path` into `clf` and close it: None, or the decoder's error when it failed mid-file (the windows
    before the failure are kept). Raises the capture errors of `FileSource` when nothing could be classified."""
    from edge_rt.capture.files import FileSource, check_audio_file

    info = check_audio_file(path)
    source = FileSource(path, block_seconds=block_seconds(info.channels, info.samplerate))
    failed = None
    try:
        source.run(clf.push, threading.Event())
    except CaptureError as exc:
        if clf.samples == 0:
            raise
        failed = f"{exc}; the JSON covers the {clf.samples / PARAMS.sample_rate:.2f} s before it"
    try:
        clf.close()
    except EmptySourceError:
        raise EmptySourceError(f"{path} holds no audio after decoding "
                               f"({info.frames} frames at {info.samplerate} Hz)") from None
    return failed


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


@dataclass(frozen=True)
class Outcome:
    """What `classify` prints for one path, in path order: its line for stdout (None when it has none) and its
    lines for stderr; `failed` when it counts as a failure (exit status 1)."""

    path: str
    line: Optional[str]
    messages: tuple[str, ...] = ()
    failed: bool = False
    classified: bool = True  # an audio file (counted by the progress bar), not a skipped file or a folder's note


def classify_files(files: Iterable[str], cfg: EdgeConfig, backend: Backend, names, head: Optional[Head],
                   out: TextIO = sys.stdout, as_json: bool = True, *, batch: int = BATCH_WINDOWS, jobs: int = 1) -> int:
    """Classify each file (a folder: its audio files); one JSON line each (or a short text summary). Return the
    number of failures: files that could not be classified, or only in part, and folders without audio.

    The model scores `batch` windows per call, across files when they are short (1: one window per call, the
    reference path). `jobs` > 1 deals the files out to that many processes, each with its own backend built
    like `backend` on one thread; the output is the same, in the same order."""
    from tqdm import tqdm

    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    items = list(expand(files))
    todo = sum(why is None for _, why in items)
    bar = tqdm(total=todo, desc="classify", unit="file", disable=todo < 2, file=sys.stderr)
    if jobs == 1 or todo < 2:
        outcomes = classify_items(items, cfg, backend, names, head, as_json=as_json, batch=batch)
    else:
        outcomes = _in_processes(items, cfg, backend, names, head, as_json=as_json, batch=batch, jobs=jobs)
    failures = 0
    for o in outcomes:
        bar.update(o.classified)
        if o.line is not None:
            out.write(o.line)
            out.flush()
        for m in o.messages:
            tqdm.write(m, file=sys.stderr)
        failures += o.failed
    bar.close()
    return failures


def classify_items(items: Sequence[tuple[str, Optional[str]]], cfg: EdgeConfig, backend: Backend, names,
                   head: Optional[Head], *, as_json: bool = True, batch: int = BATCH_WINDOWS) -> Iterator[Outcome]:
    """The outcome of each of `expand`'s items, in order, the model scoring `batch` windows per call across
    files: a file's outcome comes once its last window is scored."""
    batcher = Batcher(backend, batch)
    waiting: deque[tuple[str, Optional[ClipClassifier], Optional[Outcome], Optional[str]]] = deque()

    def ready() -> Iterator[Outcome]:
        while waiting and (waiting[0][1] is None or waiting[0][1].done):
            path, clf, outcome, failed = waiting.popleft()
            if outcome is not None:
                yield outcome
                continue
            assert clf is not None
            msgs = () if failed is None else (_naming(path, failed),)
            yield Outcome(path, _format({"file": path, **clf.result()}, as_json), msgs, failed is not None)

    for path, why in items:
        if why is not None:
            waiting.append((path, None, Outcome(path, None, (why,), why.startswith("error:"), False), None))
        else:
            clf = ClipClassifier(cfg, backend, names, head, batcher=batcher)
            try:
                waiting.append((path, clf, None, _decode(Path(path), clf)))
            except (EdgeRtError, CoreError) as exc:
                waiting.append((path, None, Outcome(path, None, (_naming(path, str(exc)),), True), None))
                if batcher.broken is not None:  # the model failed: every file waiting on it fails with it
                    waiting = deque(_fail_unscored(waiting, batcher.broken))
                    batcher = Batcher(backend, batch)
        yield from ready()
    try:
        batcher.flush()
    except (EdgeRtError, CoreError) as exc:
        waiting = deque(_fail_unscored(waiting, exc))
    yield from ready()


def _fail_unscored(waiting, exc: BaseException):
    """The waiting items with each file whose windows were never scored turned into a failure naming `exc`."""
    for path, clf, outcome, failed in waiting:
        if clf is not None and not clf.done:
            yield path, None, Outcome(path, None, (_naming(path, f"the model failed: {exc}"),), True), None
        else:
            yield path, clf, outcome, failed


# ----------------------------------------------------------------------------------------- --jobs N
_worker: dict = {}  # the worker process's own parts, built once by _worker_start


def _in_processes(items, cfg: EdgeConfig, backend: Backend, names, head: Optional[Head], *, as_json: bool,
                  batch: int, jobs: int) -> Iterator[Outcome]:
    """`classify_items` spread over `jobs` processes: runs of consecutive items, each process with its own
    backend (the same runtime and precision, one thread, BLAS on one thread too), outcomes in item order.

    The processes are forked, so they start with this one's imports and parts, and each builds its own backend;
    where the backend holds a CUDA context, which a fork does not carry, they are forked from a fresh server
    process instead (multiprocessing's forkserver, with this module imported once)."""
    runs = deal(items, jobs * PROCESS_CHUNKS)
    spec = (backend.name, str(backend.model_dir), 1)
    ctx = worker_context(backend)
    with ctx.Pool(jobs, initializer=_worker_start, initargs=(cfg, spec, names, head, as_json, batch)) as pool:
        for outcomes in pool.imap(_worker_run, runs):
            yield from outcomes


def worker_context(backend: Backend):
    """The multiprocessing context of `--jobs` workers for `backend`: fork, or a forkserver where it uses CUDA."""
    import multiprocessing

    if not backend.USES_CUDA:
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["edge_rt.classify", "edgert.yamnet.backends"])
    return ctx


def deal(items: Sequence[tuple[str, Optional[str]]], runs: int) -> list[list[tuple[str, Optional[str]]]]:
    """Split items into at most `runs` runs of consecutive items of about equal work: a file's seconds of audio
    (what the model's time follows) and FILE_COST_S for opening it; skipped paths weigh nothing."""
    import soundfile as sf

    def weight(item: tuple[str, Optional[str]]) -> float:
        path, why = item
        if why is not None:
            return 0.0
        try:
            return sf.info(path).duration + FILE_COST_S
        except Exception:  # noqa: BLE001 - it fails later, with its message, where it is classified
            return FILE_COST_S

    weights = [weight(it) for it in items]
    share = max(sum(weights), 1e-9) / max(1, runs)
    out: list[list[tuple[str, Optional[str]]]] = [[]]
    held = 0.0
    for item, w in zip(items, weights):
        if out[-1] and held + w / 2 > share * len(out):
            out.append([])
        out[-1].append(item)
        held += w
    return out


def _worker_start(cfg: EdgeConfig, spec: tuple[str, str, int], names, head: Optional[Head], as_json: bool,
                  batch: int) -> None:
    from threadpoolctl import threadpool_limits

    from edgert.yamnet import backends

    _worker["blas"] = threadpool_limits(1)  # the head's matrix product: one thread, as the model
    name, model_dir, threads = spec
    try:
        _worker["backend"] = backends.load(name, model_dir, threads=threads)
    except (EdgeRtError, CoreError) as exc:  # reported per file: a pool whose initializer raises restarts forever
        _worker["error"] = exc
    _worker.update(cfg=cfg, names=names, head=head, as_json=as_json, batch=batch)


def _worker_run(items: list[tuple[str, Optional[str]]]) -> list[Outcome]:
    if "error" in _worker:
        return [Outcome(p, None, (_naming(p, str(_worker["error"])),), True) if why is None
                else Outcome(p, None, (why,), why.startswith("error:"), False) for p, why in items]
    return list(classify_items(items, _worker["cfg"], _worker["backend"], _worker["names"], _worker["head"],
                               as_json=_worker["as_json"], batch=_worker["batch"]))


def _format(result: dict, as_json: bool) -> str:
    """One file's line: its JSON object, or a short text summary."""
    if as_json:
        return json.dumps(result) + "\n"
    ev = ", ".join(f"{e['label']} {e['start_s']:.2f}-{e['end_s']:.2f}s ({e['score']:.2f})"
                   for e in result["events"]) or "no events"
    al = "; ".join(f"ALERT {a['rule']} {a['labels']}" for a in result["alerts"])
    top = ", ".join(f"{n} {s:.2f}" for n, s in result["clip_top"][:3])
    return f"{result['file']} ({result['duration_s']:.1f} s): {top} | {ev}{' | ' + al if al else ''}\n"
