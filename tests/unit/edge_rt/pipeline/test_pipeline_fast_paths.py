"""The loop's fast paths change nothing but speed: records written together while it is behind, clips encoded on
a worker thread and label scores taken per batch give the records, in the order, of writing each batch at once."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from edge_rt import config
from edge_rt.capture import open_source
from edge_rt.outbox import Outbox
from edge_rt.pipeline import Pipeline
from edge_rt.records import parse
from edgert.yamnet import backends
from edgert.yamnet.backends import FakeBackend


def _names() -> list[str]:
    from edgert import labels

    named = sorted({c for lc in labels.scoring().labels.values() for c in lc.classes})
    return named + [f"class {i}" for i in range(521 - len(named))]


def normalized(outbox: Outbox, t0_ns: int) -> list[tuple]:
    """The outbox's records without what differs between runs (event ids, the wall clock): (kind, fields...)."""
    ids: dict[str, int] = {}
    out = []
    for r in outbox.pending(limit=100000):
        rec = parse(r.body)
        m = getattr(rec, rec.WhichOneof("kind"))
        if r.kind == "alert":
            out.append((r.kind, m.rule, m.start_ns - t0_ns, m.end_ns - t0_ns, tuple(m.labels),
                        tuple(ids.setdefault(e, len(ids)) for e in m.event_ids)))
            continue
        clip = sf.read(io.BytesIO(r.clip), dtype="int16")[0].tobytes() if r.clip else b""
        out.append((r.kind, ids.setdefault(m.event_id, len(ids)), m.label, m.start_ns - t0_ns,
                    (m.end_ns - t0_ns) if m.end_ns else 0, m.score, tuple((c.name, c.score) for c in m.classes),
                    m.embedding_f16, m.clip_dropped, m.clip.start_ns - t0_ns if r.clip else 0, clip))
    return out


def run(tmp_path, name: str, source: str, backend, names=None, head=None, **runtime
        ) -> tuple[list[tuple], Pipeline, list[int]]:
    cfg = config.load(env={}, overrides={f"runtime.{k}": v for k, v in runtime.items()})
    outbox = Outbox(tmp_path / f"{name}.db")
    writes: list[int] = []
    put_many = outbox.put_many
    outbox.put_many = lambda recs, *a: (writes.append(len(recs)), put_many(recs, *a))[1]  # type: ignore[method-assign]
    pipe = Pipeline(cfg, open_source(source, realtime=False), backend, outbox, names=names, head=head)
    pipe.run()
    return normalized(outbox, pipe.records.t0_ns), pipe, writes


@pytest.fixture(scope="module")
def distress(tmp_path_factory) -> str:
    """synth:distress three times over (60 s: events, ends with clips, alerts), as a file played fast."""
    import threading

    chunks: list[np.ndarray] = []
    open_source("synth:distress").run(chunks.append, threading.Event())
    path = tmp_path_factory.mktemp("audio") / "distress3.wav"
    sf.write(path, np.tile(np.concatenate(chunks), 3), 16000, subtype="FLOAT")
    return f"file:{path}"


def test_writing_batches_together_while_behind_gives_the_records_of_writing_each_at_once(tmp_path, model_dir,
                                                                                      distress):
    from edgert.yamnet.head import Head

    be, head = backends.load("onnxruntime", model_dir), Head.load_optional(model_dir)
    each, _, each_writes = run(tmp_path, "each", distress, be, head=head, commit_s=0.0)
    grouped, _, grouped_writes = run(tmp_path, "grouped", distress, be, head=head, commit_s=1.0)
    assert len({r[0] for r in each}) == 3 and any(r[-1] for r in each), "events, ends with clips and alerts"
    assert grouped == each
    assert sum(grouped_writes) == sum(each_writes) == len(each)
    assert len(grouped_writes) < len(each_writes) / 2, (grouped_writes, each_writes)


def test_one_window_per_call_gives_the_records_of_batches_without_a_head(tmp_path, monkeypatch):
    """Without the head every step of a window's scores is row by row, so the batch size cannot matter (the
    head's matrix product is another matter: BLAS takes one row by another kernel than several)."""
    rng = np.random.default_rng(3)
    wave = (1e-4 * rng.standard_normal(30 * 16000)).astype(np.float32)
    for at in (4, 12, 21):
        wave[at * 16000:int((at + 1.5) * 16000)] = (0.5 * rng.standard_normal(int(1.5 * 16000))).astype(np.float32)
    sf.write(tmp_path / "bursts.wav", wave, 16000, subtype="FLOAT")
    names = _names()
    be = FakeBackend(loud_class=names.index("Glass"))
    one, _, _ = run(tmp_path, "one", f"file:{tmp_path / 'bursts.wav'}", be, names, max_batch=1, commit_s=0.0)
    many, _, _ = run(tmp_path, "many", f"file:{tmp_path / 'bursts.wav'}", be, names, max_batch=16)
    assert [r[0] for r in one].count("event") == 3 and many == one


def test_a_clip_that_cannot_be_encoded_leaves_its_event_end_without_it(tmp_path, monkeypatch):
    from edge_rt import pipeline

    def broken(audio):
        raise RuntimeError("no FLAC today")

    monkeypatch.setattr(pipeline, "flac_bytes", broken)
    wave = np.zeros(10 * 16000, np.float32)
    wave[4 * 16000:int(5.5 * 16000)] = 0.5 * np.random.default_rng(1).standard_normal(int(1.5 * 16000))
    sf.write(tmp_path / "burst.wav", wave, 16000, subtype="FLOAT")
    names = _names()
    be = FakeBackend(loud_class=names.index("Glass"))
    recs, pipe, _ = run(tmp_path, "broken", f"file:{tmp_path / 'burst.wav'}", be, names)
    assert [r[0] for r in recs] == ["event", "event_end"] and pipe.summary.loop_errors == 0
    assert recs[1][8] == "encoding failed: no FLAC today" and recs[1][-1] == b""


def test_window_loudness_from_the_history_in_place_equals_each_window_measured_alone():
    from edge_rt.pipeline import AudioHistory, levels_of
    from edgert.yamnet.analysis import HOP_SAMPLES, WINDOW_SAMPLES, dbfs

    rng = np.random.default_rng(7)
    hist = AudioHistory(8.0)
    audio = (rng.standard_normal(20 * 16000) * np.linspace(0, 0.8, 20 * 16000)).astype(np.float32)
    audio[5 * 16000:6 * 16000] = 0.0
    for at in range(0, audio.size, 12345):
        hist.append(audio[at:at + 12345])
    first, n = 30, 8  # windows 30..37: all still in the 8 s history (from 12 s on)
    want = [dbfs(audio[(first + i) * HOP_SAMPLES:(first + i) * HOP_SAMPLES + WINDOW_SAMPLES]) for i in range(n)]
    assert levels_of(hist, first, n) == want  # bit for bit
    assert levels_of(hist, 0, 2) == [dbfs(hist.get(0, WINDOW_SAMPLES)), dbfs(hist.get(HOP_SAMPLES, HOP_SAMPLES +
                                                                                      WINDOW_SAMPLES))]


@pytest.mark.parametrize("seed", range(4))
def test_window_loudness_per_half_window_sums_is_bit_for_bit_dbfs(seed):
    """levels_of sums each hop's squares once: every level still equals `dbfs` of its window alone, over levels
    from near silence to full scale, digital silence and every batch size up to max_batch."""
    from edge_rt.pipeline import AudioHistory, levels_of
    from edgert.yamnet.analysis import HOP_SAMPLES, WINDOW_SAMPLES, dbfs

    rng = np.random.default_rng(seed)
    seconds = 30
    gain = 10.0 ** rng.uniform(-6, 0, seconds * 16000 // HOP_SAMPLES + 1).repeat(HOP_SAMPLES)[:seconds * 16000]
    audio = (rng.standard_normal(seconds * 16000) * gain).clip(-1, 1).astype(np.float32)
    audio[3 * HOP_SAMPLES:6 * HOP_SAMPLES] = 0.0
    hist = AudioHistory(5.0)  # wraps every 5 s: spans that wrap and spans that do not
    first = 0
    while True:
        n = int(rng.integers(1, 9))
        end = (first + n - 1) * HOP_SAMPLES + WINDOW_SAMPLES
        if end > audio.size:
            break
        hist.append(audio[hist.total:end + int(rng.integers(0, HOP_SAMPLES))])
        want = [dbfs(audio[(first + i) * HOP_SAMPLES:(first + i) * HOP_SAMPLES + WINDOW_SAMPLES]) for i in range(n)]
        assert levels_of(hist, first, n) == want, (first, n)
        first += n


@pytest.mark.parametrize("seed", range(3))
def test_window_loudness_summed_hop_by_hop_as_audio_arrives_is_bit_for_bit_dbfs(seed):
    """The loop sums each hop's squares when the hop reaches the history (HopSquares): every window's level is
    still `dbfs` of the window alone, for chunks of any size; where a hop is no longer kept it says so (None)."""
    from edge_rt.pipeline import AudioHistory, HopSquares
    from edgert.yamnet.analysis import HOP_SAMPLES, WINDOW_SAMPLES, dbfs

    rng = np.random.default_rng(seed)
    audio = (rng.standard_normal(40 * 16000) * 10.0 ** rng.uniform(-6, 0, 40 * 16000 // 4000 + 1).repeat(4000)
             [:40 * 16000]).clip(-1, 1).astype(np.float32)
    audio[7 * HOP_SAMPLES:10 * HOP_SAMPLES] = 0.0
    hist, hops = AudioHistory(5.0), HopSquares(40)
    first = 0
    while hist.total < audio.size:
        hist.append(audio[hist.total:hist.total + int(rng.choice([320, 1600, 16000, 8 * HOP_SAMPLES]))])
        hops.update(hist)
        while (first + 1) * HOP_SAMPLES + WINDOW_SAMPLES <= hist.total:  # the windows the audio completed so far
            n = min(int(rng.integers(1, 9)), (hist.total - WINDOW_SAMPLES) // HOP_SAMPLES + 1 - first)
            want = [dbfs(audio[(first + i) * HOP_SAMPLES:(first + i) * HOP_SAMPLES + WINDOW_SAMPLES])
                    for i in range(n)]
            assert hops.levels(first, n) == want, (first, n)
            first += n
    assert hops.levels(0, 1) is None  # long gone
    assert hops.levels(hops.done - 1, 1) is None  # its second hop is not there yet
