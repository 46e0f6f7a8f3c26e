"""The real-time loop's own parts: the raw-audio history, and no audio lost when a file is played fast."""
from __future__ import annotations

import numpy as np
import soundfile as sf

from edge_rt import config
from edge_rt.capture import open_source
from edge_rt.outbox import Outbox
from edge_rt.pipeline import AudioHistory, Pipeline
from edgert.yamnet import backends


def test_history_returns_exactly_the_retained_samples():
    rng = np.random.default_rng(0)
    hist = AudioHistory(0.01)  # 160 samples
    chunks = []
    for _ in range(300):
        c = rng.standard_normal(int(rng.integers(1, 400))).astype(np.float32)
        hist.append(c)
        chunks.append(c)
    every = np.concatenate(chunks)
    for _ in range(300):
        end = int(rng.integers(0, hist.total + 50))
        start = int(rng.integers(max(0, end - 400), end + 1))
        lo, hi = max(start, hist.total - hist.cap, 0), min(end, hist.total)
        np.testing.assert_array_equal(hist.get(start, end), every[lo:hi] if hi > lo else np.zeros(0, np.float32))


def test_a_fast_file_longer_than_the_ring_is_analysed_whole(tmp_path, model_dir):
    seconds = 40.0
    wave = (0.05 * np.random.default_rng(1).standard_normal(int(seconds * 16000))).astype(np.float32)
    sf.write(tmp_path / "long.wav", wave, 16000, subtype="FLOAT")
    cfg = config.load(overrides={"runtime.ring_seconds": 4.0})
    pipe = Pipeline(cfg, open_source(f"file:{tmp_path / 'long.wav'}", realtime=False),
                    backends.load("onnxruntime", model_dir), Outbox(tmp_path / "o.db"))
    summary = pipe.run()
    assert abs(summary.audio_s - seconds) < 1e-6
    assert pipe.ring.overruns == 0
    assert pipe._patch_index == int((seconds - 0.96) // 0.48) + 1  # every window of the file was analysed


def _names() -> list[str]:
    """521 class names holding every class the shipped taxonomy names (no class map file needed)."""
    from edgert import labels

    named = sorted({c for lc in labels.scoring().labels.values() for c in lc.classes})
    return named + [f"class {i}" for i in range(521 - len(named))]


def test_the_pipeline_runs_from_parts_with_the_fake_backend_and_no_model_files(tmp_path, monkeypatch):
    from edge_rt.records import parse
    from edgert.yamnet.backends import FakeBackend

    monkeypatch.setenv("EDGE_RT_MODEL_DIR", str(tmp_path / "no-models"))  # nothing may be read from there
    rng = np.random.default_rng(3)
    wave = (1e-4 * rng.standard_normal(10 * 16000)).astype(np.float32)
    wave[4 * 16000:int(5.5 * 16000)] = (0.5 * rng.standard_normal(int(1.5 * 16000))).astype(np.float32)
    sf.write(tmp_path / "burst.wav", wave, 16000, subtype="FLOAT")
    names = _names()
    cfg = config.load(env={}, calibrated=False, overrides={"lat": 48.1, "lon": 11.6})
    outbox = Outbox(tmp_path / "o.db")
    pipe = Pipeline(cfg, open_source(f"file:{tmp_path / 'burst.wav'}", realtime=False),
                    FakeBackend(loud_class=names.index("Glass")), outbox, names=names)
    summary = pipe.run()
    recs = [(r, parse(r.body)) for r in outbox.pending()]
    assert [r.kind for r, _ in recs] == ["event", "event_end"] and summary.events == 1
    (_, start), (end, stop) = recs
    assert start.event.label == stop.event_end.label == "glass_break"
    assert start.event.event_id == stop.event_end.event_id and start.event.backend == "fake"
    assert abs((start.event.start_ns - pipe.records.t0_ns) / 1e9 - 4.0) <= 0.5
    assert stop.event_end.position.lat == 48.1 and stop.event_end.clip.format == "flac" and end.clip
