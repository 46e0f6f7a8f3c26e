"""Keeping a live source running: re-run it after a failure or a dropped stream, with capped backoff and jitter."""
from __future__ import annotations

import random
import threading
import time

import numpy as np

from edge_rt.capture.base import POLL_SECONDS, Sink, Source, log
from edge_rt.errors import CaptureError, SourceSpecError
from edgert.backoff import Backoff
from edgert.errors import SettingsError

BACKOFF_S = (0.5, 30.0)  # (first wait, longest wait): doubling from one to the other
JITTER = 0.5  # each wait is drawn from [1 - JITTER, 1] x its step, so a fleet does not reconnect in lockstep
HEALTHY_RUN_S = 10.0  # a run that delivered audio for this long starts the backoff over


def _wait(src: Source, stop_event: threading.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True as soon as stop_event is set or the source is stopped."""
    deadline = time.monotonic() + seconds
    while not (stop_event.is_set() or src.stopped):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        stop_event.wait(min(left, POLL_SECONDS))
    return True


def run_supervised(src: Source, sink: Sink, stop_event: threading.Event,
                   backoff: tuple[float, float] = BACKOFF_S, rng: random.Random | None = None) -> None:
    """Run `src` into `sink` until stop_event is set (or src.stop()).

    A finite source runs once and its CaptureError propagates. A live source that fails (CaptureError) or ends
    is run again after min(backoff[1], backoff[0] * 2**(n-1)) seconds times a jitter factor, n counting the
    failures since audio last flowed for HEALTHY_RUN_S. Each failure is one warning line (no traceback) and one
    count in src.stats['reconnects']. Errors raised by the sink itself are not capture errors and propagate.
    """
    try:
        policy = Backoff(backoff[0], backoff[1], factor=2.0, jitter=JITTER)
    except SettingsError:
        raise SourceSpecError(f"backoff must be (first, longest) with 0 < first <= longest, got {backoff!r}") from None
    if src.finite:
        src.run(sink, stop_event)
        return
    rng = rng or random.Random()
    failures = 0
    down = False

    def watched(chunk: np.ndarray) -> None:
        nonlocal down
        if down:
            down = False
            log.info("capture %s: audio flowing again after %d failed attempts", src.description, failures)
        sink(chunk)

    while not (stop_event.is_set() or src.stopped):
        started, delivered = time.monotonic(), src.stats["samples"]
        try:
            src.run(watched, stop_event)
            reason = f"{src.description}: the stream ended"
        except CaptureError as err:
            reason = str(err) if str(err).startswith(src.description) else f"{src.description}: {err}"
        if stop_event.is_set() or src.stopped:
            return
        if src.stats["samples"] > delivered and time.monotonic() - started >= HEALTHY_RUN_S:
            failures = 0
        failures += 1
        down = True
        src.stats["reconnects"] += 1
        delay = policy.delay(failures - 1, rng)
        log.warning("capture failed: %s; retry %d in %.1f s", reason, failures, delay)
        if _wait(src, stop_event, delay):
            return
