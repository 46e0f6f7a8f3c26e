"""Edge pipeline benchmark: file-mode real-time factor per backend on one core, against the model's own ceiling.

Every backend runs the same scenario file in its own process (`python -m edge_rt run --fast`) pinned to one
CPU, so peak RSS is that process's alone. Each repeat also times the backend alone, pinned the same way, at the
batch the loop infers when it is behind (runtime.max_batch): the model-only ceiling. The budget is a ratio
measured in the same run: RTF / ceiling >= 0.9 for every CPU backend. Where it is missed, the table shows the
bound: per patch, the model alone, the model inside the loop (slower by what the capture and clip-encoder
threads take from the same core while it runs) and the loop's own work beside it; `bench/edge_profile.py`
says what that work is. It also reports window->outbox latency, RSS, and times the distress head with its
extra features per patch beside the model in one process (<= 0.1 ms).

    .venv/bin/python bench/edge_pipeline.py [--seconds 120] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BACKENDS = ["onnxruntime", "tflite", "tflite-fp16", "onnxruntime-int8", "tflite-int8"]
SUMMARY = re.compile(r"([\d.]+) s of audio in ([\d.]+) s \(RTF (\d+)x, model ([\d.]+) s\): (\d+) events.*?"
                     r"(?:p50 ([\d.]+) ms p99 ([\d.]+) ms)?(?:, peak RSS ([\d.]+) MB)?;")
BUDGET_RTF, BUDGET_P99_MS, BUDGET_RSS_MB = 200.0, 30.0, 150.0
BUDGET_CEILING = 0.9  # RTF / model-only ceiling, every CPU backend, one core, same run


def scenario_file(seconds: float, folder: Path) -> Path:
    """A WAV of the synth scenario with an event every few seconds (made once, reused by every backend)."""
    from edge_rt.capture import open_source

    events = ",".join(f"{lab}@{t}" for t, lab in zip(np.arange(3.0, seconds - 3, 4.0),
                                                    ["glass_break", "shout_help", "siren", "scream", "baby_cry"] * 99))
    src = open_source(f"synth:dur={seconds:g},seed=3,{events}", realtime=False)
    chunks = []
    import threading

    src.run(chunks.append, threading.Event())
    path = folder / "scenario.wav"
    sf.write(path, np.concatenate(chunks), 16000, subtype="FLOAT")
    return path


def run_once(backend: str, wav: Path, spool: Path, extra_env: dict[str, str] | None = None) -> dict:
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "edge_rt", "run", "--source", f"file:{wav}", "--fast",
           "--backend", backend, "--threads", "1", "--spool", str(spool)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **(extra_env or {})}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{backend} failed ({proc.returncode}):\n{err[-2000:]}")
    m = SUMMARY.search(err)
    if not m:
        raise RuntimeError(f"no summary from {backend}:\n{err[-2000:]}")
    audio, wall = float(m.group(1)), float(m.group(2))
    return {"rtf": audio / wall, "wall_s": wall, "model_s": float(m.group(4)), "events": int(m.group(5)),
            "p50": float(m.group(6) or "nan"), "p99": float(m.group(7) or "nan"),
            # The child's own VmHWM: wait4's ru_maxrss would count this (bigger) parent's pages from before exec.
            "rss_mb": float(m.group(8)) if m.group(8) else usage.ru_maxrss / 1024.0}


MODEL_ONLY = """
import sys, time, numpy as np
from edgert.yamnet import backends
be = backends.load(sys.argv[1], threads=1)
n = int(sys.argv[3])
x = np.random.default_rng(0).standard_normal((n, 96, 64)).astype(np.float32)
for _ in range(5):
    be.infer(x)
t = []
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter(); be.infer(x); t.append((time.perf_counter() - t0) / n)
print(float(np.median(t)))
"""


def model_only_ms(backend: str, batch: int, reps: int = 40) -> float:
    """Median ms per patch of the backend alone (batches of `batch`, as the loop infers when it is behind), pinned
    the same way: the ceiling the whole pipeline can approach, 0.48 s of audio per patch."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", MODEL_ONLY, backend, str(reps), str(batch)],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1]) * 1e3


HEAD_COST = """
import sys, time, numpy as np
from edgert.yamnet import backends
from edgert.yamnet.analysis import BackgroundLevel
from edgert.yamnet.head import Head
be = backends.load(sys.argv[1], threads=1)
head = Head.load()
rng = np.random.default_rng(0)
x = rng.standard_normal((8, 96, 64)).astype(np.float32)
scores, emb = be.infer(x)
levels = rng.uniform(-60, -20, 8).tolist()
bg = BackgroundLevel()
def extra():
    head.per_label(head.features(emb, scores, bg.relative(levels)))
def model():
    be.infer(x)
for f in (extra, model):
    for _ in range(5):
        f()
res = []
for f in (extra, model):
    t = []
    for _ in range(int(sys.argv[2])):
        t0 = time.perf_counter(); f(); t.append((time.perf_counter() - t0) / 8)
    res.append(float(np.median(t)))
print(res[0], res[1])
"""
BUDGET_HEAD_MS = 0.1


def head_cost_ms(backend: str, reps: int = 200) -> tuple[float, float]:
    """(ms per patch of the head and its extra features, ms per patch of the model) in one pinned process:
    what the trained head adds to each window beside what the model costs, measured together."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", HEAD_COST, backend, str(reps)], cwd=ROOT,
                         env=env, capture_output=True, text=True, check=True).stdout
    head, model = (float(v) * 1e3 for v in out.split()[-2:])
    return head, model


def main() -> int:
    from edge_rt import config
    from edgert.yamnet.params import PARAMS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120.0, help="scenario length (default 120 s)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", nargs="*", default=BACKENDS)
    args = ap.parse_args()
    console = Console(width=180)
    batch = config.load().runtime.max_batch
    hop_ms = PARAMS.patch_hop_seconds * 1e3
    with tempfile.TemporaryDirectory() as tmp:
        wav = scenario_file(args.seconds, Path(tmp))
        samples = int(args.seconds * PARAMS.sample_rate)
        frames = 1 + (samples - PARAMS.window_length_samples) // PARAMS.hop_length_samples
        patches = (frames - PARAMS.patch_frames) // PARAMS.patch_hop_frames + 1  # a stream is not padded
        rows = {}
        for backend in args.backends:
            runs = []
            for r in range(args.repeats):  # the pipeline and the model alone in turn: same machine state for both
                spool = Path(tmp) / f"spool-{backend}-{r}"
                one = run_once(backend, wav, spool)
                one["model_ms"] = model_only_ms(backend, batch)
                one["ratio"] = one["rtf"] / (hop_ms / one["model_ms"])
                runs.append(one)
            rows[backend] = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
            console.print(f"{backend}: {rows[backend]}")
    t = Table(title=f"Edge pipeline, file mode, one core ({args.seconds:g} s scenario, {patches} windows, median of "
                    f"{args.repeats}; the model alone in batches of {batch}, as the loop when behind)")
    for col in ("backend", "RTF", "vs budget 200x", "model ms/patch", "model-only ceiling", "RTF / ceiling",
                "model in loop ms/patch", "rest of loop ms/patch", "events", "fast-mode window->outbox p50 ms",
                "p99 ms", "peak RSS MB"):
        t.add_column(col, justify="right" if col != "backend" else "left")
    for b, r in rows.items():
        ceiling = hop_ms / r["model_ms"]
        t.add_row(b, f"{r['rtf']:.0f}x", f"{r['rtf'] / BUDGET_RTF:.2f}", f"{r['model_ms']:.3f}", f"{ceiling:.0f}x",
                  f"{r['ratio']:.2f}", f"{r['model_s'] / patches * 1e3:.3f}",
                  f"{(r['wall_s'] - r['model_s']) / patches * 1e3:.3f}", f"{r['events']:.0f}", f"{r['p50']:.2f}",
                  f"{r['p99']:.2f}", f"{r['rss_mb']:.0f}")
    console.print(t)
    head_ms, model_ms = head_cost_ms(args.backends[0])
    console.print(f"distress head + extra features (loudness above background, YAMNet voice scores): "
                  f"{head_ms:.4f} ms per patch beside {model_ms:.2f} ms for the model ({args.backends[0]}), "
                  f"{head_ms / model_ms:.1%} of it; budget {BUDGET_HEAD_MS} ms: "
                  f"{'met' if head_ms <= BUDGET_HEAD_MS else 'MISSED'}")
    console.print(f"budgets: RTF >= {BUDGET_RTF:.0f}x, p99 <= {BUDGET_P99_MS:.0f} ms in real time (fast mode is always "
                  f"behind: its latency holds a batch and up to runtime.commit_s of grouped writes), "
                  f"RSS (tflite) <= {BUDGET_RSS_MB:.0f} MB")
    missed = [b for b, r in rows.items() if r["ratio"] < BUDGET_CEILING]
    console.print(f"verdict: RTF / model-only ceiling >= {BUDGET_CEILING} for every CPU backend, one core, same run: "
                  f"{'MISSED' if missed else 'met'} ("
                  + ", ".join(f"{b} {r['ratio']:.2f}" for b, r in rows.items()) + ")")
    if missed:  # what the events' clips cost: the same runs without them (clips.enabled false), in turn with them
        b = args.backends[0]
        on, off = [], []
        with tempfile.TemporaryDirectory() as tmp:
            wav = scenario_file(args.seconds, Path(tmp))
            for r in range(args.repeats):
                on.append(run_once(b, wav, Path(tmp) / f"on-{r}")["wall_s"])
                off.append(run_once(b, wav, Path(tmp) / f"off-{r}", {"EDGE_RT__CLIPS__ENABLED": "false"})["wall_s"])
        clip_ms = (statistics.median(on) - statistics.median(off)) / patches * 1e3
        console.print(f"  clips ({b}): the events' clips (FLAC on the encoder thread, their bytes written and fsync'd) "
                      f"cost {clip_ms:.3f} ms per patch, {clip_ms / rows[b]['model_ms']:.0%} of the model's time "
                      f"(wall {statistics.median(on):.3f} s with them, {statistics.median(off):.3f} s without); the "
                      f"budget leaves {1 / BUDGET_CEILING - 1:.0%} for everything but the model")
    for b in missed:
        r = rows[b]
        alone, inside = r["model_ms"], r["model_s"] / patches * 1e3
        rest = (r["wall_s"] - r["model_s"]) / patches * 1e3
        console.print(f"  bound ({b}): per patch the model alone takes {alone:.3f} ms; in the loop {inside:.3f} ms "
                      f"(+{inside - alone:.3f} ms: the capture and clip threads share the core while it runs) and "
                      f"the loop's own work {rest:.3f} ms beside it, so RTF / ceiling = {alone:.3f} / "
                      f"{inside + rest:.3f} = {alone / (inside + rest):.2f}; without the loop's own work at all it "
                      f"would be {alone / inside:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
