"""Where the edge's time goes: `run --fast` and `classify`, per CPU backend, pinned to one core, sampled by py-spy.

Each command runs on core 0 (taskset) under `py-spy record` (on core 1 where there is one, so that sampling does
not take the measured core), at 250 Hz, Python frames only: a native call (the model's run, FLAC, SQLite) counts
to the Python function that made it. Every sample of every thread that is not idle is put in the first category
whose function is on its stack, in the order of CATEGORIES; samples outside the loop (imports, loading the model,
the config) are start-up, and samples of threads blocked in a wait (IDLE) are left out. Prints, per command and
backend, the share of each category and the top functions by their own time, as Markdown for BENCHMARKS.md.

    .venv/bin/python bench/edge_profile.py [--seconds 600] [--backends onnxruntime tflite tflite-fp16]
        [--root DIR]   # profile another checkout (e.g. an older commit's) with this one's scenario and tables

Needs py-spy (requirements.lock); it says so and stops where it is missing.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RATE_HZ = 250
# (category, functions that put a sample in it when any of them is on its stack), first match wins.
CATEGORIES = [
    ("model (backend infer)", ("Backend.infer",)),
    ("clip encoding (FLAC)", ("flac_bytes",)),
    ("outbox writes (SQLite, fsync)", ("Outbox.put_many", "Outbox.stats")),
    ("decode, resample, ring write (capture)", ("play_file", "Pipeline._capture", "FileSource._produce")),
    ("detector", ("Detector.push", "Detector.flush")),
    ("head + label scores", ("head_probs", "LabelScorer.__call__", "Head.")),
    ("window loudness", ("dbfs", "levels_of")),
    ("records (protobuf) and log lines", ("RecordBuilder.", "Pipeline._commit", "Pipeline._ended")),
    ("per-window top classes and JSON", ("top_k", "_format", "top_classes")),
]
LOOP = {"run": "Pipeline.run", "classify": "classify_files"}
# A thread whose innermost frame is one of these is blocked, not running (py-spy cannot always tell): the loop
# waiting for audio, the capture for room, the clip encoder for work, tqdm's monitor.
IDLE = ("Condition.wait", "Event.wait", "_worker", "Thread.join", "Thread._wait_for_tstate_lock")
STARTUP = "start-up (imports, config, model load) and exit"
REST = "the rest of the loop (front end, batching, glue)"


def frames(stack: str) -> list[str]:
    """'f (file.py:12);g (file.py:3)' -> ['f', 'g'] (outermost first)."""
    return [re.sub(r" \(.*\)$", "", f) for f in stack.split(";")]


def profile(cmd: list[str], root: Path, out: Path) -> list[tuple[list[str], int]]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    pin_spy = ["taskset", "-c", "1"] if len(os.sched_getaffinity(0)) > 1 else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    subprocess.run([*pin_spy, spy, "record", "-r", str(RATE_HZ), "-f", "raw", "-o", str(out), "--",
                    "taskset", "-c", "0", *cmd], cwd=root, env=env, check=True, capture_output=True)
    samples = []
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        samples.append((frames(stack), int(n)))
    return samples


def categorize(samples: list[tuple[list[str], int]], loop: str) -> tuple[dict[str, int], collections.Counter, int]:
    shares: dict[str, int] = collections.defaultdict(int)
    own: collections.Counter = collections.Counter()
    total = 0
    for fs, n in samples:
        if fs[-1] in IDLE:
            continue
        total += n
        own[fs[-1] or "(no Python frame)"] += n
        if loop not in fs and "Thread._bootstrap" not in fs:
            shares[STARTUP] += n
            continue
        for name, funcs in CATEGORIES:
            if any(f.startswith(x) or f == x for f in fs for x in funcs):
                shares[name] += n
                break
        else:
            shares[REST] += n
    return shares, own, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600.0, help="scenario length for run --fast (default 600 s)")
    ap.add_argument("--backends", nargs="*", default=["onnxruntime", "tflite", "tflite-fp16"])
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout to profile (default this one)")
    ap.add_argument("--top", type=int, default=8, help="functions by own time, per command and backend")
    args = ap.parse_args()
    if not (shutil.which("py-spy") or Path(sys.executable).with_name("py-spy").exists()):
        print("py-spy is not installed (it is in requirements.lock: make setup)")
        return 1
    from bench.edge_pipeline import scenario_file

    root = args.root.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        wav = scenario_file(args.seconds, Path(tmp))
        golden = Path(tmp) / "golden"
        golden.mkdir()
        import soundfile as sf

        from edge_rt.models import golden as goldens
        from edgert.yamnet import paths

        for f in goldens.golden_files():
            sf.write(golden / f"{f.stem}.wav", goldens.load(f.stem)["waveform"], 16000, subtype="FLOAT")
        data = paths.data_dir()
        pack = [str(golden)] + ([str(data / "audio")] if data is not None else [])
        commands = {
            "run": lambda b, i: [sys.executable, "-m", "edge_rt", "run", "--source", f"file:{wav}", "--fast",
                                 "--backend", b, "--threads", "1", "--spool", str(Path(tmp) / f"spool-{i}")],
            "classify": lambda b, i: [sys.executable, "-m", "edge_rt", "classify", "--json", "--backend", b, *pack],
        }
        for what, make in commands.items():
            inputs = f"a {args.seconds:g} s scenario, --fast" if what == "run" else "the golden signals and the pack"
            print(f"\n#### `{what}` ({inputs}), one core, py-spy {RATE_HZ} Hz\n")
            table: dict[str, dict[str, float]] = {}
            tops = {}
            for i, backend in enumerate(args.backends):
                samples = profile(make(backend, i), root, Path(tmp) / f"{what}-{backend}.raw")
                shares, own, total = categorize(samples, LOOP[what])
                table[backend] = {k: 100.0 * v / total for k, v in shares.items()}
                tops[backend] = [(f, 100.0 * n / total) for f, n in own.most_common(args.top)]
            names = [c for c, _ in CATEGORIES] + [REST, STARTUP]
            print("| share of samples | " + " | ".join(args.backends) + " |")
            print("|---|" + "---:|" * len(args.backends))
            for name in names:
                if any(table[b].get(name, 0.0) for b in args.backends):
                    print(f"| {name} | " + " | ".join(f"{table[b].get(name, 0.0):.1f}%" for b in args.backends) + " |")
            for backend in args.backends:
                print(f"\ntop functions by own time, `{what}`, {backend}: "
                      + "; ".join(f"{f} {p:.1f}%" for f, p in tops[backend]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
