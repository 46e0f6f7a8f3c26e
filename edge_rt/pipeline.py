"""The real-time loop: capture thread -> ring buffer -> streaming front end -> backend -> detector -> outbox.

The loop does only what the model cannot do without: it reads the ring into one reused buffer, scores the
labels of a batch of windows at once, encodes clips on a worker thread and, while it is behind, writes the
records of consecutive batches in one transaction. Caught up (a live source), each batch is written at once.
"""
from __future__ import annotations

import io
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import numpy as np

from edge_rt.analysis import windows
from edge_rt.config import DetectorConfig, EdgeConfig
from edge_rt.detector import Alert, Detector, Event, Output
from edge_rt.metrics import Metrics
from edge_rt.outbox import Outbox
from edge_rt.records import ClipInfo, RecordBuilder, Staged
from edge_rt.ring import RingBuffer
from edgert.yamnet import frontend
from edgert.yamnet.analysis import HOP_SAMPLES, WINDOW_SAMPLES, BackgroundLevel, dbfs, dbfs_of_hop_sums
from edgert.yamnet.backends import Backend
from edgert.yamnet.classmap import class_names
from edgert.yamnet.head import Head
from edgert.yamnet.params import PARAMS

log = logging.getLogger("edge_rt.pipeline")

SR = PARAMS.sample_rate
POLL_S = 0.004  # how long the loop sleeps when the ring is empty
ROOM_WAIT_S = 0.1  # a fast file's capture waits this long at most for the loop to make room (it is woken at once)


class AudioHistory:
    """The last `seconds` of raw 16 kHz audio, addressed by absolute sample index (for loudness and clips)."""

    def __init__(self, seconds: float):
        self.cap = int(seconds * SR)
        self.buf = np.zeros(self.cap, np.float32)
        self.total = 0  # samples ever appended

    def append(self, chunk: np.ndarray) -> None:
        n = chunk.size
        m = min(n, self.cap)  # a chunk longer than the history keeps only its tail
        a = (self.total + n - m) % self.cap
        first = min(m, self.cap - a)
        self.buf[a:a + first] = chunk[n - m:n - m + first]
        self.buf[:m - first] = chunk[n - m + first:]
        self.total += n

    def get(self, start: int, end: int) -> np.ndarray:
        """float32 samples [start, end) that are still retained (clipped to what exists)."""
        view = self.view(start, end)
        return view.copy() if view.base is self.buf else view

    def view(self, start: int, end: int) -> np.ndarray:
        """Like `get`, but a view of the history where the span does not wrap (valid until the next append)."""
        start, end = max(start, self.total - self.cap, 0), min(end, self.total)
        if end <= start:
            return np.zeros(0, np.float32)
        a, b = start % self.cap, (end - 1) % self.cap + 1
        if a < b:
            return self.buf[a:b]
        return np.concatenate([self.buf[a:], self.buf[:b]])


@dataclass
class RunSummary:
    audio_s: float = 0.0
    wall_s: float = 0.0
    model_s: float = 0.0  # of wall_s, in the backend's infer
    events: int = 0
    alerts: int = 0
    loop_errors: int = 0
    latencies_s: list[float] = field(default_factory=list)

    @property
    def rtf(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    def latency_ms(self, q: float) -> Optional[float]:
        return float(np.percentile(self.latencies_s, q) * 1e3) if self.latencies_s else None


def pcm16(audio: np.ndarray) -> Optional[np.ndarray]:
    """float32[n] -> int16[n] as libsndfile (1.2) converts float to 16-bit FLAC: scaled by 32768, clipped to
    [-32768, 32767], rounded half to even; None where a sample is NaN (libsndfile's conversion is undefined there)."""
    x = np.multiply(audio, np.float32(32768.0), dtype=np.float32)  # float32[n], exact (a power of two)
    np.clip(x, -32768.0, 32767.0, out=x)
    np.rint(x, out=x)
    if np.isnan(x.sum()):  # +-inf were clipped, so only NaN makes the sum non-finite
        return None
    return x.astype(np.int16)


def flac_bytes(audio: np.ndarray) -> bytes:
    """16-bit FLAC of float32[n] 16 kHz audio. The samples are converted to int16 here, in numpy (0.02 ms for a
    2.5 s clip), rather than by libsndfile (0.2 ms of a 1 ms encoding); the bytes are the same."""
    import soundfile as sf

    pcm = pcm16(audio)
    buf = io.BytesIO()
    sf.write(buf, audio if pcm is None else pcm, SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


@dataclass
class _Ending:
    """An ended event whose clip the encoder thread is still making; it becomes its record when written."""

    event: Event
    clip: Optional["Future[bytes]"]
    info: Optional[ClipInfo]
    dropped: str


def levels_of(history: AudioHistory, first: int, n: int) -> list[float]:
    """dBFS of windows first..first+n-1 (window i at i*hop), measured on the history in place."""
    start, end = first * HOP_SAMPLES, (first + n - 1) * HOP_SAMPLES + WINDOW_SAMPLES
    span = history.view(start, end)  # float32[end-start] when all of it is retained
    if span.size == end - start and WINDOW_SAMPLES == 2 * HOP_SAMPLES:
        # Each sample squared once, each hop's squares summed once; each level is still `dbfs`'s own.
        return dbfs_of_hop_sums(np.square(span, dtype=np.float64).reshape(n + 1, HOP_SAMPLES).sum(axis=1))
    return [dbfs(history.view((first + i) * HOP_SAMPLES, (first + i) * HOP_SAMPLES + WINDOW_SAMPLES))
            for i in range(n)]


class HopSquares:
    """The float64 sum of squares of each hop of the stream (hop b: samples [b*hop, (b+1)*hop)), taken as the hop
    arrives in the history, while its samples are still in cache, for the last `keep` hops. A window is two hops,
    and numpy's pairwise sum of a window's 15360 squares is the sum of its halves' pairwise sums: `levels` gives
    each window's `dbfs`, bit for bit, without reading the window's samples again after the model ran."""

    def __init__(self, keep: int):
        self.keep = keep
        self.sums = np.zeros(keep, np.float64)
        self.done = 0  # hops summed so far
        self.known = 0  # the first hop whose sum is known (a span no longer retained is skipped, not summed)

    def update(self, history: AudioHistory) -> None:
        """Sum the hops that the history completed since the last call."""
        end = history.total // HOP_SAMPLES
        if end <= self.done:
            return
        start = max(self.done, end - self.keep)
        span = history.view(start * HOP_SAMPLES, end * HOP_SAMPLES)
        if span.size != (end - start) * HOP_SAMPLES:  # part of it no longer retained: levels_of measures those
            self.done = self.known = end
            return
        if start > self.done:
            self.known = start
        sums = np.square(span, dtype=np.float64).reshape(end - start, HOP_SAMPLES).sum(axis=1)
        self.sums[np.arange(start, end) % self.keep] = sums
        self.done = end

    def levels(self, first: int, n: int) -> Optional[list[float]]:
        """dBFS of windows first..first+n-1, or None when a hop they span is not summed here."""
        if WINDOW_SAMPLES != 2 * HOP_SAMPLES or first < max(self.known, self.done - self.keep) or \
                first + n + 1 > self.done:
            return None
        return dbfs_of_hop_sums(self.sums[np.arange(first, first + n + 1) % self.keep])


class Pipeline:
    """Runs one source to the outbox. `run()` blocks until the source ends or `stop()`; never dies on one bad window."""

    def __init__(self, cfg: EdgeConfig, source, backend: Backend, outbox: Outbox, *, head: Optional[Head] = None,
                 backend_reason: str = "", drained: Optional[Callable[[], bool]] = None,
                 names: Optional[Sequence[str]] = None, detector: Optional[Detector] = None,
                 front=None, records: Optional[RecordBuilder] = None, metrics: Optional[Metrics] = None):
        """The parts: capture `source`, the front end `front` (a StreamingFrontend), the `backend` (and `head`),
        the `detector`, the record builder `records` and the `outbox`. Those left out are built from `cfg`;
        `names` (the backend's class names) default to the built model's class map."""
        self.cfg, self.source, self.backend, self.outbox, self.head = cfg, source, backend, outbox, head
        self.backend_reason = backend_reason
        self.drained = drained  # set when consumers (uplink, MQTT, webhook) drain the outbox; finite runs wait for it
        self.names = list(names) if names is not None else class_names()
        self.detector = detector or Detector(cfg.detector, cfg.rules, self.names)
        self.front = front or frontend.StreamingFrontend()
        self.records = records or RecordBuilder(backend=backend.name, model_sha256=backend.model_sha256,
                                                lat=cfg.lat, lon=cfg.lon, t0_ns=time.time_ns())
        self.metrics = metrics or Metrics()
        self.ring_capacity = int(cfg.runtime.ring_seconds * SR)
        self.ring = RingBuffer(self.ring_capacity)
        self.history = AudioHistory(cfg.detector.max_event_s + cfg.clips.preroll_s + 2 * PARAMS.patch_window_seconds)
        self.background = BackgroundLevel()
        self._read_max = cfg.runtime.max_batch * HOP_SAMPLES
        self._chunk = np.empty(self._read_max, np.float32)  # the loop's read buffer: history and front end copy it
        self._hops = HopSquares(max(64, 4 * cfg.runtime.max_batch))  # windows' loudness, hop by hop as audio comes
        # Records not yet written, in order, each with the line it logs once it is on disk (an ended event waits
        # for its clip); when each event's window was ready; and when the oldest of them was staged.
        self._staged: list[tuple[Union[Staged, _Ending], str]] = []
        self._staged_ready: list[float] = []
        self._staged_at: Optional[float] = None
        self._clips: Optional[ThreadPoolExecutor] = None  # the clip encoder, while run() runs
        self.summary = RunSummary()
        self._stop = threading.Event()
        self._room = threading.Event()  # set by the loop after each read: a waiting capture may write again
        self._capture_done = threading.Event()
        self._capture_error: Optional[BaseException] = None
        self._patch_index = 0  # index of the next patch the front end will emit
        # Patches the front end gave and the model has not scored: float32[k,96,64] each, with the time their
        # last sample was ready.
        self._pending: deque[tuple[np.ndarray, float]] = deque()
        self._retune_lock = threading.Lock()
        self._retune_to: Optional[DetectorConfig] = None

    # ----------------------------------------------------------------------------------------- lifecycle
    def stop(self) -> None:
        self._stop.set()
        self._room.set()
        stop = getattr(self.source, "stop", None)
        if callable(stop):
            stop()

    def _sink(self):
        """The capture sink: a live source never waits (the ring counts what it drops); a file played as fast
        as possible waits for room instead, since nothing is lost by reading it a little later."""
        if self.source.realtime or not self.source.finite:
            return self.ring.write

        def wait_for_room(chunk: np.ndarray) -> None:
            done = 0
            while done < chunk.size and not self._stop.is_set():
                self._room.clear()  # before the write: a read after it wakes the wait below at once
                done += self.ring.write(chunk[done:done + self._ring_free()])
                if done < chunk.size:
                    self._room.wait(ROOM_WAIT_S)

        return wait_for_room

    def _ring_free(self) -> int:
        return self.ring_capacity - self.ring.available

    def _capture(self) -> None:
        from edge_rt.capture import run_supervised

        try:
            run_supervised(self.source, self._sink(), self._stop)
        except BaseException as exc:  # noqa: BLE001 - reported by run()
            self._capture_error = exc
        finally:
            self._capture_done.set()

    def run(self) -> RunSummary:
        port = self.metrics.serve(self.cfg.runtime.metrics_port)
        if port:
            log.info("Prometheus metrics on :%d/metrics", port)
        log.info("source %s, backend %s%s", getattr(self.source, "description", self.source), self.backend.name,
                 f" ({self.backend_reason})" if self.backend_reason else "")
        self._warm()
        cap = threading.Thread(target=self._capture, name="capture", daemon=True)
        self._clips = ThreadPoolExecutor(1, thread_name_prefix="clip-encoder")
        t_start = time.perf_counter()
        self.records.t0_ns = time.time_ns()  # stream second 0 is now
        cap.start()
        last_beat = t_start
        try:
            while not self._stop.is_set():
                n = self.ring.read_into(self._chunk)
                self._room.set()
                if n == 0:
                    if self._staged:
                        self._commit()  # nothing to analyse: write what waited at once
                    if self._capture_done.is_set() and self.ring.available == 0:
                        break
                    self._stop.wait(POLL_S)
                    continue
                self._step(self._chunk[:n])
                now = time.perf_counter()
                self.summary.wall_s = now - t_start
                self.metrics.rtf.set(self.summary.rtf)
                if now - last_beat >= self.cfg.cloud.heartbeat_s:  # the one heartbeat setting, also logged
                    last_beat = now
                    log.info("heartbeat %s", self.heartbeat())
            self._finish()
        finally:
            self._stop.set()
            self._room.set()
            cap.join(timeout=5.0)
            self._clips.shutdown(wait=True)
            self._clips = None
            self.summary.wall_s = time.perf_counter() - t_start
        if self._capture_error is not None and not isinstance(self._capture_error, KeyboardInterrupt):
            raise self._capture_error
        self._wait_drained()
        return self.summary

    def _warm(self) -> None:
        """Run the model once at the batch sizes the loop uses (one window; max_batch when it is behind), so that
        no window waits for the runtime's first-call allocations."""
        for n in sorted({1, self.cfg.runtime.max_batch}):
            self.backend.infer(np.zeros((n, *PARAMS.patch_shape), np.float32))

    def _wait_drained(self) -> None:
        if self.drained is None:
            return
        deadline = time.monotonic() + self.cfg.runtime.grace_s
        while not self.drained() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.drained():
            log.warning("the outbox's consumers (%s) did not take everything within %.0f s; %d records stay in the "
                        "outbox for next time", ", ".join(self.outbox.consumers) or "none",
                        self.cfg.runtime.grace_s, self.outbox.stats()["depth"])

    # ----------------------------------------------------------------------------------------- the loop
    def _step(self, chunk: np.ndarray) -> None:
        try:
            self.history.append(chunk)
            self._hops.update(self.history)
            self.summary.audio_s += chunk.size / SR
            self.metrics.audio_s.inc(chunk.size / SR)
            new = self.front.push(chunk)  # float32[k,96,64]
            if len(new):
                self._pending.append((new, time.perf_counter()))
            while self._pending:
                self._analyse(*self._next_batch())
            if self._staged and (self.ring.available < HOP_SAMPLES
                                 or time.perf_counter() - (self._staged_at or 0.0) >= self.cfg.runtime.commit_s):
                self._commit()  # caught up, or behind for long enough: write what the batches staged
        except Exception:  # noqa: BLE001 - one bad iteration must not kill the loop
            self.summary.loop_errors += 1
            self.metrics.loop_errors.inc()
            log.exception("loop iteration failed (%d so far); continuing", self.summary.loop_errors)
        self.metrics.overruns.set(self.ring.overruns)

    def _next_batch(self) -> tuple[np.ndarray, list[float]]:
        """Up to max_batch pending patches, float32[n,96,64] (a view when they came from one push), and the time
        each was ready."""
        want = self.cfg.runtime.max_batch
        parts, ready = [], []
        while self._pending and want:
            patches, t = self._pending[0]
            take = patches[:want]
            if len(take) < len(patches):
                self._pending[0] = (patches[want:], t)
            else:
                self._pending.popleft()
            parts.append(take)
            ready.extend([t] * len(take))
            want -= len(take)
        return (parts[0] if len(parts) == 1 else np.concatenate(parts)), ready

    def retune(self, detector: DetectorConfig) -> None:
        """New operating points for the detector, from any thread (the uplink's, for a pushed config); they take
        effect between two batches, keeping open events."""
        with self._retune_lock:
            self._retune_to = detector

    def _analyse(self, pts: np.ndarray, ready: list[float]) -> None:
        """One batch: float32[N,96,64] patches and when each was ready -> the model, the detector, staged records."""
        with self._retune_lock:
            pending, self._retune_to = self._retune_to, None
        if pending is not None:
            self.detector.retune(pending)
            self.cfg = self.cfg.model_copy(update={"detector": pending})
        t = time.perf_counter()
        scores, emb = self.backend.infer(pts)
        ms = (time.perf_counter() - t) * 1e3
        self.summary.model_s += ms / 1e3
        self.metrics.note_inference(ms, len(pts))
        first = self._patch_index
        self._patch_index += len(pts)
        levels = self._hops.levels(first, len(pts))
        if levels is None:
            levels = levels_of(self.history, first, len(pts))
        wins = windows(pts, scores, emb, levels, first, self.head, self.background, self.detector.scorer)
        for w, at in zip(wins, ready):
            out = self.detector.push(w)
            if out:
                self._emit(out, at, ms / len(pts))

    def _finish(self) -> None:
        self._emit(self.detector.flush(), None, 0.0)
        self._commit()

    def _commit(self) -> None:
        """Write every staged record in one fsync'd transaction (group commit), then account for it."""
        if not self._staged:
            return
        staged = [(self._ended(r) if isinstance(r, _Ending) else r, line) for r, line in self._staged]
        self.outbox.put_many([(r.kind, r.body, r.clip) for r, _ in staged])
        now = time.perf_counter()
        for r, line in staged:  # logged only once durable: "written" in the log means on disk
            (log.warning if r.kind == "alert" else log.info)("%s", line)
        for ready in self._staged_ready:
            self.summary.latencies_s.append(now - ready)
            self.metrics.window_to_outbox.observe(now - ready)
        self._staged, self._staged_ready, self._staged_at = [], [], None
        st = self.outbox.stats()
        self.metrics.outbox_depth.set(st["depth"])
        self.metrics.outbox_dropped.set(st["dropped"])

    def _ended(self, end: _Ending) -> Staged:
        """The record of an ended event, with its clip once the encoder made it (without one, saying why, when
        it could not)."""
        clip, dropped = None, end.dropped
        if end.clip is not None:
            try:
                clip = end.clip.result()
            except Exception as exc:  # noqa: BLE001 - the event is kept, without its clip
                log.warning("clip of event %s could not be encoded: %s", end.event.event_id, exc)
                dropped = f"encoding failed: {exc}"
        return self.records.ended(end.event, embedding=end.event.mean_embedding, clip=clip,
                                  clip_info=end.info if clip else None, clip_dropped=dropped)

    def _stage(self, record: Union[Staged, _Ending], line: str) -> None:
        if not self._staged:
            self._staged_at = time.perf_counter()
        self._staged.append((record, line))

    # ----------------------------------------------------------------------------------------- records
    def _emit(self, out: Output, ready: Optional[float], infer_ms: float) -> None:
        for ev in out.started:
            self._stage(self.records.started(ev, infer_ms),
                        f"event {ev.label} starts at {ev.start_s:.2f} s (score {ev.score:.2f})")
            self.summary.events += 1
            self.metrics.events.labels(ev.label).inc()
            if ready is not None:
                self._staged_ready.append(ready)
        for al in out.alerts:
            self._put_alert(al)
        for ev in out.ended:
            self._put_end(ev)

    def _put_alert(self, al: Alert) -> None:
        self._stage(self.records.alert(al), f"ALERT {al.rule}: {'+'.join(al.labels)}")
        self.summary.alerts += 1
        self.metrics.alerts.labels(al.rule).inc()

    def _put_end(self, ev: Event) -> None:
        clip, info, dropped = None, None, ""
        c = self.cfg.clips
        if c.enabled:
            if c.privacy_drop_speech and ev.speech_max >= c.speech_threshold:
                dropped = "privacy: speech"
            else:
                start = max(0, int((ev.start_s - c.preroll_s) * SR))
                end = min(int((ev.end_s or ev.start_s) * SR), start + int((c.max_s + c.preroll_s) * SR))
                audio = self.history.get(start, end)  # a copy: the encoder reads it while the history moves on
                if audio.size:
                    clip = self._encode(audio)
                    info = ClipInfo("flac", SR, self.records.ns(start / SR), c.preroll_s)
        self._stage(_Ending(ev, clip, info, dropped), f"event {ev.label} ends at {(ev.end_s or ev.start_s):.2f} s")

    def _encode(self, audio: np.ndarray) -> "Future[bytes]":
        """FLAC of float32[n] audio, made on the encoder thread (here, when the loop runs without one)."""
        if self._clips is not None:
            return self._clips.submit(flac_bytes, audio)
        done: Future[bytes] = Future()
        done.set_result(flac_bytes(audio))
        return done

    def heartbeat(self) -> dict:
        st = self.outbox.stats()
        self.metrics.outbox_depth.set(st["depth"])
        self.metrics.outbox_dropped.set(st["dropped"])
        return {"device_id": self.cfg.device_id, "backend": self.backend.name, "backend_reason": self.backend_reason,
                "model_sha256": self.backend.model_sha256, "heartbeat_s": self.cfg.cloud.heartbeat_s,
                "source": getattr(self.source, "description", ""), **self.metrics.heartbeat()}
