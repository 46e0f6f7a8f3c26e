"""Soak: 200 devices stream to one real `cloud_svc serve` for EDGERT_SOAK_S seconds (default 600; 3600 makes it
the hour), and the server's RSS, the edges' RSS and the outbox depth stay flat.

The 200 devices: REAL_EDGES real `python -m edge_rt run` processes, each looping a rendered 60 s scenario (a
sound every 6 s) through `dir:` in real time with ONNX Runtime; and 197 simulated devices in one process
(`bench/system.py fleet`), each the edge's own Outbox (an fsync'd SQLite file) and Uplink (its thread, its own
gRPC connection), putting an event (start, then its end with the 2 KiB embedding) every PERIOD_S s on average and
a heartbeat every 30 s. 200 real edges would need 200 x 200 MB and about 10 cores; the simulated ones run the
edge's delivery code (where records, connections and acks pile up if anything does) without the model.

Every SAMPLE_S s the test samples the server's RSS (psutil), each real edge's RSS, the simulated fleet's RSS and
the depth of all 200 outboxes. After the warm-up, a straight line is fitted through each series (numpy.polyfit);
its drift (slope x the fitted span) must stay within the series' noise bound (see `bound`). It prints the table
of figures, and fails naming the series that grew.

    EDGERT_SOAK_S=60 .venv/bin/python -m pytest -s tests/system/test_soak.py   # a quick look (about 2 min)
    EDGERT_SOAK_S=3600 EDGERT_SOAK_DB=mariadb .venv/bin/python -m pytest -s -m soak tests/system
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from support import REPO, ServerProcess, TempMariaDB, mariadb_available

SOAK_S = float(os.environ.get("EDGERT_SOAK_S", "600"))
SOAK_DB = os.environ.get("EDGERT_SOAK_DB", "sqlite")  # sqlite | mariadb
DEVICES = 200
REAL_EDGES = 3
PERIOD_S = 10.0          # a simulated device's mean seconds between events: 20 events (40 records) per second in all
SIM_POLL_S = 0.2         # the simulated uplinks' idle poll_s (the edge's 0.01 x 197 threads would cost a core; only
                         # latency depends on it, and the soak does not measure latency)
SAMPLE_S = min(10.0, max(2.0, SOAK_S / 120))
WARMUP_S = min(90.0, max(15.0, 0.15 * SOAK_S))  # imports, caches and connection buffers settle first
MB = 2 ** 20
RSS_FLOOR_MB = 4.0       # see `bound`
RSS_FRACTION = 0.05
DEPTH_BACKLOG_S = 5.0    # see `bound`
SCENARIO = "dur=60,seed={seed},glass_break@3,siren@9,scream@15,shout_help@21,glass_break@27,siren@33,scream@39," \
           "shout_help@45,glass_break@51"


def _bench_system():
    """bench/system.py (the fleet, the real edge and the samplers it shares with the system bench)."""
    spec = importlib.util.spec_from_file_location("bench_system", REPO / "bench" / "system.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_system"] = mod  # its dataclasses look their module up while it loads
    spec.loader.exec_module(mod)
    return mod


@dataclass
class Verdict:
    name: str
    unit: str
    mean: float
    first: float      # mean of the first minute after the warm-up (or of its first fifth, if shorter)
    last: float       # ... and of the last
    slope_per_min: float
    drift: float      # slope x fitted span
    bound: float

    @property
    def flat(self) -> bool:
        return abs(self.drift) <= self.bound

    def row(self) -> str:
        return (f"| {self.name} | {self.mean:,.1f} | {self.first:,.1f} | {self.last:,.1f} | "
                f"{self.slope_per_min:+,.3f} | {self.drift:+,.2f} | {self.bound:,.2f} | "
                f"{'flat' if self.flat else 'GROWS'} |")


def bound(kind: str, mean: float, records_per_s: float = 0.0) -> float:
    """How far a flat series may drift over the fitted span.

    RSS (MB): max(5% of its mean, 4 MB). A process's resident memory moves in allocator steps (CPython's 1 MB
    arenas, glibc returning heap only above its 128 KB trim threshold, SQLite's 2 MB page cache per connection,
    ONNX Runtime's arena) that do not fall on a line, and a line through a few such steps drifts by about one
    of them. 5% of the mean scales that with the process. What it catches: a server leaking 1 KB per event (12 MB
    in 10 min at 20 events/s), the fleet leaking 1 KB per record or heartbeat across its 197 devices, an edge
    leaking 10 KB per second of audio; an hour's run (the same bound over 6x the time) catches 6x smaller leaks.

    Outbox depth (records): max(5% of its mean, the records all devices put in 5 s). When the cloud keeps up the
    depth stays at what is in flight (about the record rate x the ack latency); a drift of 5 s of production over
    the whole run means the cloud fell 5 s behind."""
    if kind == "rss":
        return max(RSS_FRACTION * mean, RSS_FLOOR_MB)
    return max(RSS_FRACTION * mean, DEPTH_BACKLOG_S * records_per_s)


def judge(name: str, unit: str, ts: np.ndarray, ys: np.ndarray, limit: float) -> Verdict:
    """Fit y = a t + b through the samples (t in seconds) and measure its drift over their span."""
    slope = float(np.polyfit(ts, ys, 1)[0])
    span = float(ts[-1] - ts[0])
    edge = max(1, min(len(ts) // 5, int(np.searchsorted(ts, ts[0] + 60.0))))
    return Verdict(name, unit, float(ys.mean()), float(ys[:edge].mean()), float(ys[-edge:].mean()),
                   slope * 60.0, slope * span, limit)


def test_judge_tells_a_leak_from_allocator_noise():
    """The flatness check itself: steps and noise of a flat process pass; a 1 KB-per-event leak does not."""
    rng = np.random.default_rng(0)
    ts = np.arange(0.0, 510.0, 5.0)
    steps = 150.0 + np.where(ts > 200, 1.0, 0.0) + np.where(ts > 380, -1.0, 0.0) + rng.normal(0, 0.3, ts.size)
    assert judge("flat", "MB", ts, steps, bound("rss", 150.0)).flat
    leak = steps + ts * 20 * 1024 / MB  # 20 events/s, 1 KB each: 10 MB over the span
    assert not judge("leak", "MB", ts, leak, bound("rss", 150.0)).flat
    backlog = 30 + ts * 0.8 + rng.normal(0, 5, ts.size)  # the cloud falls 0.02 s behind every second
    assert not judge("depth", "records", ts, backlog, bound("depth", 40.0, records_per_s=40.0)).flat


@pytest.fixture
def soak_db(tmp_path):
    if SOAK_DB == "sqlite":
        yield f"sqlite:///{tmp_path / 'cloud.db'}"
        return
    if SOAK_DB != "mariadb":
        pytest.fail(f"EDGERT_SOAK_DB must be sqlite or mariadb, not {SOAK_DB!r}")
    why = mariadb_available()
    if why:
        pytest.fail(why)
    db = TempMariaDB()
    try:
        yield db.url
    finally:
        db.drop()


def _render_scenarios(tmp_path: Path) -> list[Path]:
    """One folder per real edge holding its 60 s scenario as a WAV, which `dir:` plays in a loop."""
    import soundfile as sf

    from edge_rt.capture.synth import SynthSource

    dirs = []
    for i in range(REAL_EDGES):
        d = tmp_path / f"audio-{i}"
        d.mkdir()
        sf.write(d / "scenario.wav", SynthSource(SCENARIO.format(seed=i + 1)).render(), 16000, subtype="PCM_16")
        dirs.append(d)
    return dirs


@pytest.mark.soak
@pytest.mark.timeout(int(SOAK_S + 900))
def test_200_devices_keep_server_and_edge_rss_and_outbox_depth_flat(soak_db, tmp_path, capsys):
    from cloud_svc.store import Store

    bs = _bench_system()
    ids = [f"edge-{i}" for i in range(REAL_EDGES)] + [f"sim-{i:03d}" for i in range(DEVICES - REAL_EDGES)]
    store = Store.open(soak_db)
    store.upgrade()
    tokens = store.devices.add_devices(ids)
    store.close()
    audio = _render_scenarios(tmp_path)
    srv = ServerProcess(soak_db, clips=str(tmp_path / "clips"), log_path=tmp_path / "server.log")
    srv.start()
    fleet = bs.Fleet(srv.target, [(d, tokens[d]) for d in ids[REAL_EDGES:]], tmp_path / "fleet",
                     period_s=PERIOD_S, poll_s=SIM_POLL_S)
    edges = []
    try:
        connected = fleet.start()
        assert connected == DEVICES - REAL_EDGES, f"only {connected} simulated devices connected:\n{fleet.tail()}"
        edges = [bs.RealEdge(ids[i], tokens[ids[i]], f"dir:{audio[i]}", tmp_path / ids[i], srv.target,
                             loop=True).start() for i in range(REAL_EDGES)]
        watched = {"server": srv.proc.pid, "fleet": fleet.proc.pid, **{e.device_id: e.proc.pid for e in edges}}
        cpu0 = {k: bs.cpu_seconds([pid]) for k, pid in watched.items()}
        outboxes = [e.outbox for e in edges] + fleet.outboxes()
        assert len(outboxes) == DEVICES
        samples: list[dict] = []
        t0 = time.monotonic()
        while (now := time.monotonic() - t0) < SOAK_S:
            for name, proc in (("server", srv.proc), ("fleet", fleet.proc), *((e.device_id, e.proc) for e in edges)):
                if proc.poll() is not None:
                    log = srv.log_path.read_text()[-3000:] if name == "server" else \
                        fleet.tail() if name == "fleet" else next(e for e in edges if e.device_id == name).tail()
                    pytest.fail(f"{name} exited with {proc.returncode} after {now:.0f} s:\n{log}")
            s = {"t": now, **{k: (bs.rss_bytes(pid) or 0) / MB for k, pid in watched.items()}}
            depths = [bs.outbox_depth(p) for p in outboxes]
            s["depth"] = float(sum(d or 0 for d in depths))
            s["depth_real"] = float(sum(d or 0 for d in depths[:REAL_EDGES]))
            samples.append(s)
            time.sleep(max(0.0, SAMPLE_S - (time.monotonic() - t0 - now)))
        cpu = {k: bs.cpu_seconds([pid]) - cpu0[k] for k, pid in watched.items()}
        edge_rc = [e.stop() for e in edges]
        sim = fleet.stop()
        stored = _stored_events(soak_db, ids[:REAL_EDGES])
    finally:
        for e in edges:
            if e.proc.poll() is None:
                e.stop()
        if fleet.proc is not None and fleet.proc.poll() is None:
            fleet.proc.kill()
        srv.terminate()

    (tmp_path / "samples.json").write_text(json.dumps(samples))  # every sample, for a closer look at a failure
    ts = np.array([s["t"] for s in samples])
    keep = ts >= WARMUP_S
    ts = ts[keep]
    assert ts.size >= 5, f"only {ts.size} samples after the {WARMUP_S:.0f} s warm-up; EDGERT_SOAK_S is too short"
    series = {k: np.array([s[k] for s in samples])[keep] for k in samples[0] if k != "t"}
    records_per_s = (DEVICES - REAL_EDGES) * 2 / PERIOD_S
    verdicts = [judge("server RSS", "MB", ts, series["server"], bound("rss", series["server"].mean())),
                *(judge(f"edge RSS ({e.device_id})", "MB", ts, series[e.device_id],
                        bound("rss", series[e.device_id].mean())) for e in edges),
                judge(f"simulated fleet RSS ({DEVICES - REAL_EDGES} devices)", "MB", ts, series["fleet"],
                      bound("rss", series["fleet"].mean())),
                judge(f"outbox depth (all {DEVICES})", "records", ts, series["depth"],
                      bound("depth", series["depth"].mean(), records_per_s))]
    span = ts[-1] - ts[0]
    acks = sim["acks"]["ms"]
    thirds = np.array_split(acks, 3) if acks.size >= 3 else [acks]
    lines = [
        "", f"Soak: {DEVICES} devices ({REAL_EDGES} real edges, {DEVICES - REAL_EDGES} simulated, one event per "
        f"{PERIOD_S:g} s each), {SOAK_S:g} s on {SOAK_DB}; {len(samples)} samples every {SAMPLE_S:g} s, fitted over "
        f"{span:.0f} s after a {WARMUP_S:g} s warm-up (samples: {tmp_path / 'samples.json'}).", "",
        "| series | mean | first minute | last minute | slope per minute | drift over the fit | bound | verdict |",
        "|---|---|---|---|---|---|---|---|",
        *(v.row().replace(f"| {v.name} |", f"| {v.name}, {v.unit} |", 1) for v in verdicts), "",
        f"simulated devices: {sim['records_put']} records put, {sim['records_acked']} acked, {sim['retries']} "
        f"reconnects, {len(sim['failed'])} failed, {sim['depth_at_end']} left at the end; outbox -> ack p50/p99 "
        + " then ".join(f"{np.percentile(a, 50):.1f}/{np.percentile(a, 99):.1f} ms" for a in thirds if a.size)
        + " (first, middle, last third)",
        f"real edges: {stored} events stored; exit codes after SIGTERM {edge_rc}; real outboxes' depth at the last "
        f"sample {series['depth_real'][-1]:.0f}",
        "CPU seconds over the run: " + ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())
        + f" (of {SOAK_S * (os.cpu_count() or 1):.0f} on {os.cpu_count()} CPUs); load average {os.getloadavg()[0]:.1f}",
    ]
    with capsys.disabled():
        print("\n".join(lines))
    grown = [f"{v.name} drifted {v.drift:+.2f} {v.unit} over {span:.0f} s (bound {v.bound:.2f})"
             for v in verdicts if not v.flat]
    assert not grown, "not flat: " + "; ".join(grown)
    assert not sim["failed"], f"simulated uplinks failed: {sim['failed'][:3]}"
    assert sim["depth_at_end"] == 0 and sim["records_acked"] == sim["records_put"], \
        f"{sim['records_put'] - sim['records_acked']} simulated records never acked"
    assert edge_rc == [0] * REAL_EDGES, f"real edges exited with {edge_rc}"
    per_edge = SOAK_S / 60 * 9  # 9 sounds a minute in each edge's scenario
    assert stored >= 0.5 * per_edge * REAL_EDGES, f"only {stored} events of the real edges stored"


def _stored_events(url: str, device_ids: list[str]) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT COUNT(*) FROM events WHERE device_id IN :ids")
                                    .bindparams(sa.bindparam("ids", expanding=True)), {"ids": device_ids}).scalar())
    finally:
        engine.dispose()
