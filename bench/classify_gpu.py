"""Batch `classify` on an NVIDIA GPU against one CPU core, in the same run, and the real-time loop's latency there.

A folder of one hour of audio (60 synth scenes of 60 s with events) is classified by
  - `classify --backend onnxruntime` pinned to one core (taskset -c 0), the peer, and
  - `classify --backend onnxruntime-gpu --batch B --jobs J` with the CuPy front end (EDGE_RT_FRONTEND=cuda): J
    processes share the GPU so that decoding and the detector (on the CPU) keep it fed;
throughput is hours of audio per second of the whole command; the budget is GPU >= 20x one CPU core. Then the
real-time loop (`run`, paced to the wall clock) runs a 30 s scene on the GPU and on one core; its
window->outbox p99 is reported beside the CPU's. The two backends' JSON is compared (same clip top class).

Without a GPU (no nvidia-smi, or onnxruntime without its CUDA execution provider: `pip install '.[gpu]'`) it says
why and measures nothing; `--dry-run` runs every step with the CPU backend in the GPU's place to check the script
itself, and prints no GPU figure and no verdict.

    .venv/bin/python bench/classify_gpu.py [--batch 256] [--jobs 8] [--minutes 60] [--frontend cuda] [--dry-run]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGET_SPEEDUP = 20.0
GPU_BACKEND = "onnxruntime-gpu"
LATENCY = re.compile(r"window->outbox p50 ([\d.]+) ms p99 ([\d.]+) ms")
LABELS = ["glass_break", "shout_help", "siren", "scream", "baby_cry"]
LIVE_SECONDS = 30


def gpu_missing() -> str | None:
    """Why no GPU figure can be measured here, or None."""
    from edgert.yamnet.backends.ort import cuda_unavailable

    why = cuda_unavailable()
    if why is not None:
        return why
    code = f"from edgert.yamnet import backends; backends.load({GPU_BACKEND!r})"
    probe = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    if probe.returncode != 0:
        return f"the {GPU_BACKEND} backend cannot be built here: {probe.stderr.strip().splitlines()[-1:]}"
    return None


def gpu_name() -> str:
    out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown GPU"


def scenes(folder: Path, minutes: float, seconds: float = 60.0) -> list[Path]:
    """`minutes` of audio as synth scenes of `seconds`, each with an event every 6 s (made once)."""
    from edge_rt.capture import open_source

    out = []
    for i in range(int(round(minutes * 60 / seconds))):
        events = ",".join(f"{LABELS[(i + k) % len(LABELS)]}@{t:g}" for k, t in enumerate(np.arange(3, seconds - 3, 6)))
        chunks: list[np.ndarray] = []
        open_source(f"synth:dur={seconds:g},seed={i},{events}", realtime=False).run(chunks.append, threading.Event())
        path = folder / f"scene_{i:03d}.wav"
        sf.write(path, np.concatenate(chunks), 16000, subtype="FLOAT")
        out.append(path)
    return out


def classify(folder: Path, backend: str, *, cores: str | None, jobs: int, batch: int | None,
             env: dict[str, str]) -> tuple[float, list[dict]]:
    """(wall seconds, the JSON objects) of one `classify --json` over `folder`."""
    cmd = (["taskset", "-c", cores] if cores else []) + [sys.executable, "-m", "edge_rt", "classify", "--json",
                                                         "--backend", backend, "--jobs", str(jobs)]
    cmd += (["--batch", str(batch)] if batch else []) + [str(folder)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall, [json.loads(x) for x in proc.stdout.splitlines()]


def realtime_latency(wav: Path, backend: str, *, cores: str | None, env: dict[str, str], spool: Path
                     ) -> tuple[float, float]:
    """(p50, p99) window->outbox ms of `run` paced to the wall clock over `wav`."""
    cmd = (["taskset", "-c", cores] if cores else []) + [sys.executable, "-m", "edge_rt", "run", "--source",
                                                         f"file:{wav}", "--realtime", "--backend", backend,
                                                         "--spool", str(spool)]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
    m = LATENCY.search(proc.stderr)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return float(m.group(1)), float(m.group(2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0, help="audio to classify (default 60 minutes)")
    ap.add_argument("--batch", type=int, default=256, help="windows per GPU call (default 256)")
    ap.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1),
                    help="processes sharing the GPU (default: min(8, CPUs))")
    ap.add_argument("--frontend", choices=["cuda", "cython"], default="cuda",
                    help="the GPU run's front end (EDGE_RT_FRONTEND; default cuda, the CuPy twin)")
    ap.add_argument("--dry-run", action="store_true", help="no GPU: run every step with the CPU backend in its place "
                                                           "(checks the script; prints no GPU figure, no verdict)")
    args = ap.parse_args()
    console = Console(width=160)
    why = gpu_missing()
    if why and not args.dry_run:
        console.print(f"skipped: {why}; no GPU figure measured")
        return 0
    gpu_backend = "onnxruntime" if args.dry_run else GPU_BACKEND
    gpu_env = {} if args.dry_run else {"EDGE_RT_FRONTEND": args.frontend}
    one_core = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "hour"
        folder.mkdir()
        files = scenes(folder, args.minutes)
        cpu_wall, cpu_out = classify(folder, "onnxruntime", cores="0", jobs=1, batch=None, env=one_core)
        gpu_wall, gpu_out = classify(folder, gpu_backend, cores=None, jobs=args.jobs, batch=args.batch, env=gpu_env)
        audio_h = sum(x["duration_s"] for x in cpu_out) / 3600
        same_top = sum(a["clip_top"][0][0] == b["clip_top"][0][0] for a, b in zip(cpu_out, gpu_out))
        live = Path(tmp) / "live.wav"  # the first 30 s of the first scene, played in real time
        sf.write(live, sf.read(files[0], dtype="float32")[0][:LIVE_SECONDS * 16000], 16000, subtype="FLOAT")
        cpu_lat = realtime_latency(live, "onnxruntime", cores="0", env=one_core, spool=Path(tmp) / "s1")
        gpu_lat = realtime_latency(live, gpu_backend, cores=None, env=gpu_env, spool=Path(tmp) / "s2")
    label = ("CPU standing in for the GPU (dry run)" if args.dry_run
             else f"{GPU_BACKEND} ({gpu_name()}), {args.frontend} front end")
    t = Table(title=f"classify over {audio_h * 60:.0f} min of audio ({len(files)} files): GPU against one CPU core")
    for col in ("path", "command", "wall s", "audio h/s", "vs one core", "realtime loop p50 ms", "p99 ms"):
        t.add_column(col, justify="left" if col in ("path", "command") else "right")
    t.add_row("one CPU core", "taskset -c 0 classify --backend onnxruntime --jobs 1", f"{cpu_wall:.2f}",
              f"{audio_h / cpu_wall:.3f}", "1.00x", f"{cpu_lat[0]:.2f}", f"{cpu_lat[1]:.2f}")
    t.add_row(label, f"classify --backend {gpu_backend} --batch {args.batch} --jobs {args.jobs}", f"{gpu_wall:.2f}",
              f"{audio_h / gpu_wall:.3f}", f"{cpu_wall / gpu_wall:.2f}x", f"{gpu_lat[0]:.2f}", f"{gpu_lat[1]:.2f}")
    console.print(t)
    console.print(f"clip top class the same on both for {same_top} of {len(cpu_out)} files")
    if args.dry_run:
        console.print(f"dry run: no GPU ({why}); the figures above are CPU's, no verdict")
        return 0
    speedup = cpu_wall / gpu_wall
    console.print(f"verdict: batch classify on the GPU >= {BUDGET_SPEEDUP:.0f}x one CPU core, same run: "
                  f"{'met' if speedup >= BUDGET_SPEEDUP else 'MISSED'} ({speedup:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
