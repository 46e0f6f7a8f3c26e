"""The edge's Prometheus metrics and the heartbeat summary the uplink sends to the cloud."""
from __future__ import annotations

import os
import time
from typing import Optional

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


def peak_rss_bytes() -> Optional[int]:
    """This process's peak resident memory since it started (VmHWM), or None where /proc is absent.

    Unlike getrusage's ru_maxrss, VmHWM starts afresh at exec, so a parent's size never leaks into it.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """One registry per pipeline, so tests can run several side by side."""

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.rtf = Gauge("edge_rtf", "audio seconds processed per wall second", registry=r)
        self.audio_s = Counter("edge_audio_seconds_total", "audio analysed", registry=r)
        self.infer_ms = Histogram("edge_inference_ms", "model time per patch batch (ms)", registry=r,
                                  buckets=(0.5, 1, 2, 3, 5, 10, 20, 50, 100, 500))
        self.window_to_outbox = Histogram("edge_window_to_outbox_seconds",
                                          "last sample of a window to its event in the outbox", registry=r,
                                          buckets=LATENCY_BUCKETS)
        self.overruns = Gauge("edge_ring_overruns_samples", "samples dropped by the capture ring", registry=r)
        self.outbox_depth = Gauge("edge_outbox_depth", "records waiting for an ack", registry=r)
        self.outbox_dropped = Gauge("edge_outbox_dropped", "records dropped by the outbox bounds", registry=r)
        self.events = Counter("edge_events_total", "events started", ["label"], registry=r)
        self.alerts = Counter("edge_alerts_total", "alerts fired", ["rule"], registry=r)
        self.loop_errors = Counter("edge_loop_errors_total", "loop iterations that failed and were skipped",
                                   registry=r)
        self.capture_restarts = Counter("edge_capture_restarts_total", "capture restarts", registry=r)
        self.rss = Gauge("edge_rss_bytes", "resident memory", registry=r)
        self.cpu = Gauge("edge_cpu_percent", "process CPU use", registry=r)
        self._proc = psutil.Process(os.getpid())
        self._t0 = time.monotonic()
        self._last_ms: list[float] = []

    def serve(self, port: Optional[int]) -> Optional[int]:
        if port is None:
            return None
        server, _thread = start_http_server(port, registry=self.registry)
        return server.server_port

    def note_inference(self, ms: float, patches: int) -> None:
        self.infer_ms.observe(ms)
        self._last_ms.append(ms / max(patches, 1))
        del self._last_ms[:-200]

    def sample_process(self) -> None:
        self.rss.set(self._proc.memory_info().rss)
        self.cpu.set(self._proc.cpu_percent(interval=None))

    def heartbeat(self) -> dict:
        """The figures the heartbeat carries to the cloud."""
        self.sample_process()
        ms = sorted(self._last_ms)
        return {
            "uptime_s": round(time.monotonic() - self._t0, 1),
            "rtf": round(self.rtf._value.get(), 1),
            "inference_ms_per_patch_p50": round(ms[len(ms) // 2], 3) if ms else None,
            "ring_overruns": int(self.overruns._value.get()),
            "outbox_depth": int(self.outbox_depth._value.get()),
            "outbox_dropped": int(self.outbox_dropped._value.get()),
            "rss_bytes": int(self.rss._value.get()),
            "peak_rss_bytes": peak_rss_bytes(),
            "cpu_percent": round(self.cpu._value.get(), 1),
            "loop_errors": int(self.loop_errors._value.get()),
        }
