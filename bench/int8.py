"""Static int8 benchmark: per-patch latency on one core of float vs int8 (ONNX Runtime and TFLite), and top-1
agreement of each int8 model with the float ONNX model on the clip pack's patches.

    taskset -c 0 .venv/bin/python bench/int8.py [--reps 300] [--batch 1] [--pack-cache /tmp/pack.pkl]

Every backend is loaded through `edgert.yamnet.backends.load(..., threads=1)` (so the manifest's sha256 is checked),
and the four are timed round-robin on the same patches, so that load from other processes hits them alike;
medians are reported, with each int8 model's ratio to its own float peer. Without `../shared/data` the
agreement falls back to the golden files' patches and says so.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import pickle  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_rt.models import golden  # noqa: E402
from edgert.yamnet import backends, paths  # noqa: E402

PAIRS = (("onnxruntime", "onnxruntime-int8"), ("tflite", "tflite-int8"))  # (float peer, int8)
BUDGET_MS = 1.2
BUDGET_AGREE = 0.95
WARMUP = 20
INFER_BATCH = 64  # patches per call when measuring agreement (speed is timed at --batch)


def load_patches(cache: Path | None) -> tuple[np.ndarray, str]:
    """(float32[N,96,64] patches, where they came from): the clip pack (cached if asked), else the goldens."""
    if paths.data_dir() is None:
        return np.concatenate([golden.load(p.stem)["patches"] for p in golden.golden_files()]), "golden files"
    if cache is not None and cache.is_file():
        return pickle.loads(cache.read_bytes()).patches, f"clip pack (cached {cache})"
    from edge_rt.models.dataset import load_pack

    pack = load_pack()
    if cache is not None:
        cache.write_bytes(pickle.dumps(pack))
    return pack.patches, "clip pack"


def top1(backend, patches: np.ndarray) -> np.ndarray:
    """int64[N]: the index of each patch's best class."""
    return np.concatenate([backend.infer(patches[i:i + INFER_BATCH])[0].argmax(1)
                           for i in range(0, len(patches), INFER_BATCH)])


def time_round_robin(models: dict, x: np.ndarray, reps: int) -> dict[str, list[float]]:
    """ms per patch of each model's infer on float32[B,96,64] x, interleaved rep by rep."""
    for m in models.values():
        for _ in range(WARMUP):
            m.infer(x)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(reps):
        for key, m in models.items():
            t0 = time.perf_counter()
            m.infer(x)
            times[key].append((time.perf_counter() - t0) * 1e3 / len(x))
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=300, help="timed calls per model (default 300)")
    ap.add_argument("--batch", type=int, default=1, help="patches per timed call (default 1)")
    ap.add_argument("--pack-cache", type=Path, default=None, help="pickle the clip pack's features here")
    args = ap.parse_args()
    console = Console()
    keys = [k for pair in PAIRS for k in pair]
    models = {k: backends.load(k, threads=1) for k in keys}
    patches, source = load_patches(args.pack_cache)
    x = patches[np.random.default_rng(0).choice(len(patches), args.batch, replace=False)]
    times = time_round_robin(models, x, args.reps)
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = top1(models["onnxruntime"], patches)

    table = Table(title=f"YAMNet patch model, one thread, batch {args.batch}, {args.reps} reps "
                        f"(agreement on {len(patches)} patches from the {source})")
    for col in ("model", "ms/patch (median)", "p10–p90", "vs float peer", "top-1 agree vs float ONNX", "budget"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=col == "model")
    for peer, q in PAIRS:
        for key in (peer, q):
            p10, p90 = np.percentile(times[key], [10, 90])
            agree = float(np.mean(top1(models[key], patches) == ref))
            ratio = med[key] / med[peer]
            ok = "" if key == peer else ("[green]met[/]" if med[key] <= BUDGET_MS and agree >= BUDGET_AGREE
                                         else "[red]missed[/]")
            table.add_row(key, f"{med[key]:.3f}", f"{p10:.3f}–{p90:.3f}", f"{ratio:.2f}×", f"{agree:.1%}", ok)
    console.print(table)
    console.print(f"{platform.processor() or platform.machine()}, python {platform.python_version()}, "
                  f"pinned CPUs {sorted(os.sched_getaffinity(0))}; budget ≤{BUDGET_MS} ms and ≥{BUDGET_AGREE:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
