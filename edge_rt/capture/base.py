"""The capture source base class and the feed that carries a source's 16 kHz mono chunks to its sink."""
from __future__ import annotations

import abc
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgert.yamnet.params import PARAMS

log = logging.getLogger("edge_rt.capture")

Sink = Callable[[np.ndarray], None]
"""Takes one chunk: float32[k] mono at 16 kHz, C-contiguous, k > 0."""

CHUNK_SECONDS = 0.1
"""Audio per sink call when a stored source runs as fast as possible: few calls, little overhead."""
REALTIME_CHUNK_SECONDS = 0.02
"""Audio per sink call when paced to the wall clock: a microphone-like 20 ms latency."""
POLL_SECONDS = 0.05
"""The longest any wait inside a source goes without looking at its stop flags."""

STAT_KEYS = ("chunks", "samples", "nan_samples", "clipped_samples", "files", "files_skipped", "files_ignored",
             "truncated_files", "reconnects", "overflows")
"""Counters every source keeps in `Source.stats`; `samples` counts 16 kHz samples handed to the sink,
`nan_samples` and `clipped_samples` count input samples (before downmix and resampling) that were repaired,
`files_skipped` audio files that failed and `files_ignored` a folder's files that are not audio by their name."""
FULL_SCALE = 1.0
"""YAMNet hears float32 in [-FULL_SCALE, FULL_SCALE]; float input beyond it is clipped there, as an ADC would."""


@dataclass(frozen=True)
class GroundTruthEvent:
    """Where a known sound lies in a source's output stream (synth: only), in seconds from its first sample."""

    label: str
    start_s: float
    end_s: float
    clip: str = ""  # the pack file mixed in, or "synthetic:<label>" for a generated stand-in


def one_line(text: str, limit: int = 400) -> str:
    """Collapse whitespace so an error message stays on one log line, cut to `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class Source(abc.ABC):
    """One audio input. `run(sink, stop_event)` blocks and feeds float32[k] mono 16 kHz chunks to `sink`.

    `run` returns when a finite source ends or a stop flag is set, and raises a CaptureError subclass with a
    one-line message on failure. `stop()` is terminal: a stopped source's `run` returns at once.
    """

    def __init__(self, description: str, *, finite: bool, realtime: bool = False):
        self.description = description
        self.finite = bool(finite)
        self.realtime = bool(realtime)
        self.truth: list[GroundTruthEvent] = []
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self._stop = threading.Event()

    @property
    def chunk_seconds(self) -> float:
        return REALTIME_CHUNK_SECONDS if self.realtime else CHUNK_SECONDS

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self, sink: Sink, stop_event: threading.Event) -> None:
        """Feed `sink` until the source ends (return), a stop flag is set (return) or it fails (CaptureError)."""
        if self._stop.is_set() or stop_event.is_set():
            return
        self._produce(Feed(self, sink, stop_event))

    def stop(self) -> None:
        """Ask a running `run` to return promptly, from any thread; kills any child process."""
        self._stop.set()
        self._interrupt()

    def _interrupt(self) -> None:
        """Wake a `run` blocked outside the feed's waits (subclasses with child processes override)."""
        return None

    @abc.abstractmethod
    def _produce(self, feed: "Feed") -> None:
        """Read the input and hand audio to `feed.emit` until done or `feed.stopping()`."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"


class Feed:
    """One `run`: sanitizes and paces chunks, counts them in the source's stats and calls the sink."""

    def __init__(self, source: Source, sink: Sink, stop_event: threading.Event):
        self.source = source
        self.sink = sink
        self.stop_event = stop_event
        self.chunk_seconds = source.chunk_seconds
        self._realtime = source.realtime
        self._t0 = time.monotonic()
        self._emitted = 0
        self._warned: set[tuple[str, str]] = set()

    def stopping(self) -> bool:
        return self.stop_event.is_set() or self.source._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on either stop flag. True when a stop was asked."""
        deadline = time.monotonic() + seconds
        while not self.stopping():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.stop_event.wait(min(left, POLL_SECONDS))
        return True

    def sanitize(self, block: np.ndarray, where: str) -> np.ndarray:
        """Replace NaN/Inf with 0 and clip samples beyond full scale, counting both; warn once per kind and
        `where` (a file name or source). float32[...] -> float32[...], the same array when nothing is wrong."""
        if block.size == 0:
            return block
        lo, hi = float(block.min()), float(block.max())  # NaN propagates, so one comparison clears a clean block
        if -FULL_SCALE <= lo and hi <= FULL_SCALE:
            return block
        finite = np.isfinite(block)
        bad = int(block.size - np.count_nonzero(finite))
        if bad:
            self.source.stats["nan_samples"] += bad
            self._warn_once("nan", where, "%s: %d NaN/Inf samples replaced with 0 (further ones are counted in "
                            "stats, not logged)", bad)
            block = np.where(finite, block, np.float32(0)).astype(np.float32, copy=False)
        magnitude = np.abs(block)
        over = int(np.count_nonzero(magnitude > FULL_SCALE))
        if over:
            self.source.stats["clipped_samples"] += over
            self._warn_once("clip", where, "%s: %d samples beyond full scale (peak %.3g) clipped to [-1, 1] "
                            "(further ones are counted in stats, not logged)", over, float(magnitude.max()))
            block = np.clip(block, -FULL_SCALE, FULL_SCALE).astype(np.float32, copy=False)
        return block

    def _warn_once(self, kind: str, where: str, msg: str, *args) -> None:
        if (kind, where) not in self._warned:
            self._warned.add((kind, where))
            log.warning(msg, where, *args)

    def emit(self, chunk: np.ndarray) -> None:
        """Hand float32[k] mono 16 kHz audio to the sink; when realtime, not before the wall clock reaches its end."""
        if chunk.size == 0 or self.stopping():
            return
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        if self._realtime:
            due = self._t0 + (self._emitted + chunk.size) / PARAMS.sample_rate
            ahead = due - time.monotonic()
            if ahead > 0 and self.wait(ahead):
                return
        self._emitted += chunk.size
        self.source.stats["chunks"] += 1
        self.source.stats["samples"] += chunk.size
        self.sink(chunk)

    def emit_split(self, audio: np.ndarray) -> None:
        """Emit float32[n] in pieces of at most `chunk_seconds`, so pacing stays smooth for long blocks."""
        step = max(1, int(round(self.chunk_seconds * PARAMS.sample_rate)))
        for start in range(0, audio.size, step):
            if self.stopping():
                return
            self.emit(audio[start:start + step])
