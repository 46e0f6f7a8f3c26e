"""run_supervised: live sources come back after failures with capped, jittered backoff; finite ones run once."""
from __future__ import annotations

import logging
import re
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from edge_rt.capture import open_source, run_supervised, supervise
from edge_rt.errors import PipelineError, SourceSpecError

SR = 16000


def supervise_in_thread(src, sink, stop, **kw) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def target():
        try:
            run_supervised(src, sink, stop, **kw)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            result["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def retry_delays(caplog) -> list[float]:
    return [float(m.group(1)) for r in caplog.records
            if (m := re.search(r"retry \d+ in (\d+\.\d+) s", r.getMessage()))]


def test_a_dead_rtsp_stream_is_retried_with_growing_capped_backoff_and_stops_promptly(caplog):
    src = open_source("rtsp://127.0.0.1:9/stream")
    stop = threading.Event()
    with caplog.at_level(logging.WARNING, logger="edge_rt.capture"):
        thread, result = supervise_in_thread(src, lambda c: None, stop, backoff=(0.05, 0.2))
        time.sleep(1.5)
        stop.set()
        t0 = time.monotonic()
        thread.join(2.0)
    assert not thread.is_alive() and time.monotonic() - t0 < 0.5 and "error" not in result
    failures = [r for r in caplog.records if "capture failed" in r.getMessage()]
    assert src.stats["reconnects"] == len(failures) >= 4
    for record in failures:  # one clear line each, no traceback
        assert record.exc_info is None and "\n" not in record.getMessage()
        assert "rtspsrc0: Could not open resource" in record.getMessage()
    delays = retry_delays(caplog)
    steps = [min(0.2, 0.05 * 2 ** i) for i in range(len(delays))]
    assert all(0.5 * step - 0.05 <= d <= step + 0.05 for d, step in zip(delays, steps)), delays
    assert max(delays) <= 0.25


def test_a_live_pipeline_that_keeps_ending_is_restarted_and_its_audio_keeps_flowing(caplog):
    src = open_source("gst:audiotestsrc num-buffers=5", finite=False)
    stop = threading.Event()
    got = []

    def sink(chunk):
        got.append(chunk.size)
        if src.stats["reconnects"] >= 3:
            stop.set()

    with caplog.at_level(logging.INFO, logger="edge_rt.capture"):
        thread, result = supervise_in_thread(src, sink, stop, backoff=(0.02, 0.05))
        thread.join(10)
    assert not thread.is_alive() and "error" not in result
    assert sum(got) >= 3 * 5 * 1024
    assert "the stream ended" in caplog.text and "audio flowing again" in caplog.text


def test_backoff_starts_over_after_a_healthy_run(caplog, monkeypatch):
    monkeypatch.setattr(supervise, "HEALTHY_RUN_S", 0.0)
    src = open_source("gst:audiotestsrc num-buffers=2", finite=False)
    stop = threading.Event()
    with caplog.at_level(logging.WARNING, logger="edge_rt.capture"):
        thread, _ = supervise_in_thread(src, lambda c: None, stop, backoff=(0.01, 10.0))
        time.sleep(1.0)
        stop.set()
        thread.join(2)
    assert "retry 1 in" in caplog.text and "retry 2 in" not in caplog.text
    assert src.stats["reconnects"] >= 3


def test_a_missing_microphone_is_retried_until_stopped(caplog):
    src = open_source("mic:no-such-microphone-here")
    stop = threading.Event()
    with caplog.at_level(logging.WARNING, logger="edge_rt.capture"):
        thread, result = supervise_in_thread(src, lambda c: None, stop, backoff=(0.05, 0.1))
        time.sleep(0.5)
        stop.set()
        thread.join(2)
    assert not thread.is_alive() and "error" not in result
    assert src.stats["reconnects"] >= 2 and "no audio input device" in caplog.text


def test_source_stop_ends_supervision_during_a_backoff_wait():
    src = open_source("rtsp://127.0.0.1:9/stream")
    thread, _ = supervise_in_thread(src, lambda c: None, threading.Event(), backoff=(30.0, 30.0))
    time.sleep(0.5)
    t0 = time.monotonic()
    src.stop()
    thread.join(2)
    assert not thread.is_alive() and time.monotonic() - t0 < 0.5


def test_a_finite_source_runs_once_and_its_error_propagates():
    src = open_source("gst:nosuchelement", finite=True)
    with pytest.raises(PipelineError, match="no element"):
        run_supervised(src, lambda c: None, threading.Event())
    assert src.stats["reconnects"] == 0


def test_a_finite_file_is_played_once(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(SR, np.float32), SR)
    got = []
    src = open_source(f"file:{tmp_path / 'a.wav'}")
    run_supervised(src, lambda c: got.append(c.size), threading.Event())
    assert sum(got) == SR and src.stats["reconnects"] == 0


def test_an_error_raised_by_the_sink_is_not_retried():
    src = open_source("gst:audiotestsrc", finite=False)

    def sink(chunk):
        raise ZeroDivisionError("the consumer's own bug")

    with pytest.raises(ZeroDivisionError):
        run_supervised(src, sink, threading.Event())
    assert src.stats["reconnects"] == 0


def test_a_nonsense_backoff_is_rejected():
    src = open_source("rtsp://127.0.0.1:9/x")
    with pytest.raises(SourceSpecError):
        run_supervised(src, lambda c: None, threading.Event(), backoff=(5.0, 1.0))
