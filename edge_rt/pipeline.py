"""The real-time loop: capture thread -> ring buffer -> streaming front end -> backend -> detector -> outbox."""
from __future__ import annotations

import io
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from edge_rt.analysis import windows
from edge_rt.config import DetectorConfig, EdgeConfig
from edge_rt.detector import Alert, Detector, Event, Output
from edge_rt.metrics import Metrics
from edge_rt.outbox import Outbox
from edge_rt.records import ClipInfo, RecordBuilder, Staged
from edge_rt.ring import RingBuffer
from edgert.yamnet import frontend
from edgert.yamnet.analysis import HOP_SAMPLES, WINDOW_SAMPLES, BackgroundLevel, dbfs
from edgert.yamnet.backends import Backend
from edgert.yamnet.classmap import class_names
from edgert.yamnet.head import Head
from edgert.yamnet.params import PARAMS

log = logging.getLogger("edge_rt.pipeline")

SR = PARAMS.sample_rate
POLL_S = 0.004  # how long the loop sleeps when the ring is empty


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
        start, end = max(start, self.total - self.cap, 0), min(end, self.total)
        if end <= start:
            return np.zeros(0, np.float32)
        a, b = start % self.cap, (end - 1) % self.cap + 1
        if a < b:
            return self.buf[a:b].copy()
        return np.concatenate([self.buf[a:], self.buf[:b]])


@dataclass
class RunSummary:
    audio_s: float = 0.0
    wall_s: float = 0.0
    events: int = 0
    alerts: int = 0
    loop_errors: int = 0
    latencies_s: list[float] = field(default_factory=list)

    @property
    def rtf(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    def latency_ms(self, q: float) -> Optional[float]:
        return float(np.percentile(self.latencies_s, q) * 1e3) if self.latencies_s else None


def flac_bytes(audio: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


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
        # Records of one batch of windows, written together by _commit() (each with the line it logs once it is on
        # disk); and when each event's window was ready.
        self._staged: list[tuple[Staged, str]] = []
        self._staged_ready: list[float] = []
        self.summary = RunSummary()
        self._stop = threading.Event()
        self._capture_done = threading.Event()
        self._capture_error: Optional[BaseException] = None
        self._patch_index = 0  # index of the next patch the front end will emit
        self._pending: list[tuple[np.ndarray, float]] = []  # (patch, time its last sample was ready)
        self._retune_lock = threading.Lock()
        self._retune_to: Optional[DetectorConfig] = None

    # ----------------------------------------------------------------------------------------- lifecycle
    def stop(self) -> None:
        self._stop.set()
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
                done += self.ring.write(chunk[done:done + self._ring_free()])
                if done < chunk.size:
                    self._stop.wait(POLL_S)

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
        cap = threading.Thread(target=self._capture, name="capture", daemon=True)
        t_start = time.perf_counter()
        self.records.t0_ns = time.time_ns()  # stream second 0 is now
        cap.start()
        last_beat = t_start
        try:
            while not self._stop.is_set():
                chunk = self.ring.read(self._read_max)
                if chunk.size == 0:
                    if self._capture_done.is_set() and self.ring.available == 0:
                        break
                    self._stop.wait(POLL_S)
                    continue
                self._step(chunk)
                now = time.perf_counter()
                self.summary.wall_s = now - t_start
                self.metrics.rtf.set(self.summary.rtf)
                if now - last_beat >= self.cfg.cloud.heartbeat_s:  # the one heartbeat setting, also logged
                    last_beat = now
                    log.info("heartbeat %s", self.heartbeat())
            self._finish()
        finally:
            self._stop.set()
            cap.join(timeout=5.0)
            self.summary.wall_s = time.perf_counter() - t_start
        if self._capture_error is not None and not isinstance(self._capture_error, KeyboardInterrupt):
            raise self._capture_error
        self._wait_drained()
        return self.summary

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
            self.summary.audio_s += chunk.size / SR
            self.metrics.audio_s.inc(chunk.size / SR)
            new = self.front.push(chunk)
            ready = time.perf_counter()
            self._pending.extend((p, ready) for p in new)
            while self._pending:
                batch = self._pending[: self.cfg.runtime.max_batch]
                del self._pending[: len(batch)]
                self._analyse(batch)
        except Exception:  # noqa: BLE001 - one bad iteration must not kill the loop
            self.summary.loop_errors += 1
            self.metrics.loop_errors.inc()
            log.exception("loop iteration failed (%d so far); continuing", self.summary.loop_errors)
        self.metrics.overruns.set(self.ring.overruns)

    def retune(self, detector: DetectorConfig) -> None:
        """New operating points for the detector, from any thread (the uplink's, for a pushed config); they take
        effect between two batches, keeping open events."""
        with self._retune_lock:
            self._retune_to = detector

    def _analyse(self, batch: list[tuple[np.ndarray, float]]) -> None:
        with self._retune_lock:
            pending, self._retune_to = self._retune_to, None
        if pending is not None:
            self.detector.retune(pending)
            self.cfg = self.cfg.model_copy(update={"detector": pending})
        pts = np.stack([p for p, _ in batch])
        t = time.perf_counter()
        scores, emb = self.backend.infer(pts)
        ms = (time.perf_counter() - t) * 1e3
        self.metrics.note_inference(ms, len(pts))
        first = self._patch_index
        self._patch_index += len(pts)
        levels = [dbfs(self.history.get((first + i) * HOP_SAMPLES, (first + i) * HOP_SAMPLES + WINDOW_SAMPLES))
                  for i in range(len(pts))]
        for w, (_, ready) in zip(windows(pts, scores, emb, levels, first, self.head, self.background), batch):
            self._emit(self.detector.push(w), ready, ms / len(pts))
        self._commit()

    def _finish(self) -> None:
        self._emit(self.detector.flush(), None, 0.0)
        self._commit()

    def _commit(self) -> None:
        """Write every record the batch staged in one fsync'd transaction (group commit), then account for it."""
        if not self._staged:
            return
        self.outbox.put_many([(st.kind, st.body, st.clip) for st, _ in self._staged])
        now = time.perf_counter()
        for staged, line in self._staged:  # logged only once durable: "written" in the log means on disk
            (log.warning if staged.kind == "alert" else log.info)("%s", line)
        for ready in self._staged_ready:
            self.summary.latencies_s.append(now - ready)
            self.metrics.window_to_outbox.observe(now - ready)
        self._staged, self._staged_ready = [], []
        st = self.outbox.stats()
        self.metrics.outbox_depth.set(st["depth"])
        self.metrics.outbox_dropped.set(st["dropped"])

    # ----------------------------------------------------------------------------------------- records
    def _emit(self, out: Output, ready: Optional[float], infer_ms: float) -> None:
        for ev in out.started:
            self._staged.append((self.records.started(ev, infer_ms),
                                 f"event {ev.label} starts at {ev.start_s:.2f} s (score {ev.score:.2f})"))
            self.summary.events += 1
            self.metrics.events.labels(ev.label).inc()
            if ready is not None:
                self._staged_ready.append(ready)
        for al in out.alerts:
            self._put_alert(al)
        for ev in out.ended:
            self._put_end(ev)

    def _put_alert(self, al: Alert) -> None:
        self._staged.append((self.records.alert(al), f"ALERT {al.rule}: {'+'.join(al.labels)}"))
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
                audio = self.history.get(start, end)
                if audio.size:
                    clip = flac_bytes(audio)
                    info = ClipInfo("flac", SR, self.records.ns(start / SR), c.preroll_s)
        staged = self.records.ended(ev, embedding=ev.mean_embedding, clip=clip, clip_info=info, clip_dropped=dropped)
        self._staged.append((staged, f"event {ev.label} ends at {(ev.end_s or ev.start_s):.2f} s"))

    def heartbeat(self) -> dict:
        st = self.outbox.stats()
        self.metrics.outbox_depth.set(st["depth"])
        self.metrics.outbox_dropped.set(st["dropped"])
        return {"device_id": self.cfg.device_id, "backend": self.backend.name, "backend_reason": self.backend_reason,
                "model_sha256": self.backend.model_sha256, "heartbeat_s": self.cfg.cloud.heartbeat_s,
                "source": getattr(self.source, "description", ""), **self.metrics.heartbeat()}
