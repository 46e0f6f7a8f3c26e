"""The CUDA front end against the Cython one (its CPU peer), side by side in one run, on a GPU machine.

    python bench/frontend_cuda.py [--seconds 60 600] [--rounds 15] [--markdown]

For each input length every contender runs once per round, in rotating order; the table shows medians and the
median of the per-round ratios. It also checks that the GPU's log-mel is bit for bit the CPU's (the kernel's
contract) and within 1e-4 of TF's golden chirp. Exits 2 with the reason when CuPy or a GPU is missing.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from edgert.errors import FrontendUnavailableError  # noqa: E402
from edgert.yamnet.frontend import fallback  # noqa: E402


def signal(seconds: int, seed: int = 7) -> np.ndarray:
    """Sweeps, noise bursts and near-silence: loud and quiet bands both."""
    rng = np.random.default_rng(seed)
    t = np.arange(seconds * 16000) / 16000
    x = 0.3 * np.sin(2 * np.pi * (200 + 3000 * (t % 5) / 5) * t)
    x += 0.2 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 0.3 * t) > 0)
    x[(t % 7) > 6] *= 1e-4
    return x.astype(np.float32)


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def stream(frontend_cls, x: np.ndarray, chunk: int) -> None:
    s = frontend_cls()
    for at in range(0, x.size, chunk):
        s.push(x[at:at + chunk])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, nargs="+", default=[60, 600])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    try:
        from edgert.yamnet.frontend import _cuda
    except FrontendUnavailableError as exc:
        print(f"bench/frontend_cuda.py needs a CUDA GPU and CuPy: {exc}", file=sys.stderr)
        return 2
    try:
        from edgert.yamnet.frontend import _cfrontend as cpu
        cpu_name = "Cython (1 CPU thread)"
    except ImportError:
        cpu, cpu_name = fallback, "numpy twin (Cython not built)"
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    gpu = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    print(f"GPU: {gpu}; CuPy {cupy.__version__}; CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}; "
          f"CPU peer: {cpu_name}; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")

    rows, checks = [], []
    for seconds in args.seconds:
        x = signal(seconds)
        gpu_out, cpu_out = _cuda.log_mel(x), cpu.log_mel(x)  # also warms up: compile, tables, first launch
        checks.append((f"{seconds} s: GPU log-mel bitwise equal to CPU", bool(np.array_equal(gpu_out, cpu_out))))
        times = {"gpu": [], "cpu": []}
        ratios = []
        for r in range(args.rounds):
            order = ["gpu", "cpu"] if r % 2 == 0 else ["cpu", "gpu"]
            got = {}
            for who in order:
                got[who] = timed((_cuda if who == "gpu" else cpu).log_mel, x)
                times[who].append(got[who])
            ratios.append(got["cpu"] / got["gpu"])
        rows.append((f"batch log_mel, {seconds} s", statistics.median(times["cpu"]) * 1e3,
                     statistics.median(times["gpu"]) * 1e3, statistics.median(ratios)))
    # Streaming: the edge pushes 0.48 s at a time; every push is one kernel launch on the GPU.
    x = signal(60)
    for chunk in (7680, 160):
        t_gpu = statistics.median(timed(stream, _cuda.StreamingFrontend, x, chunk) for _ in range(3))
        t_cpu = statistics.median(timed(stream, cpu.StreamingFrontend, x, chunk) for _ in range(3))
        rows.append((f"streaming 60 s in {chunk}-sample pushes", t_cpu * 1e3, t_gpu * 1e3, t_cpu / t_gpu))

    from edge_rt.models import golden

    try:
        g = golden.load("chirp_10s")
        err = float(np.abs(_cuda.log_mel(g["waveform"]) - g["log_mel"]).max())
        checks.append((f"GPU log-mel vs TF golden chirp: max |diff| {err:.1e} <= 1e-4", err <= 1e-4))
    except Exception as exc:  # goldens are made by `make setup`
        checks.append((f"TF golden chirp unavailable ({exc})", False))

    sep = " | " if args.markdown else "  "
    head = ("case", "CPU ms (median)", "GPU ms (median)", "GPU speed-up (median of ratios)")
    print(("| " if args.markdown else "") + sep.join(head) + (" |" if args.markdown else ""))
    if args.markdown:
        print("|" + "---|" * len(head))
    for case, c, g_ms, ratio in rows:
        cells = (case, f"{c:.2f}", f"{g_ms:.2f}", f"{ratio:.1f}x")
        print(("| " if args.markdown else "") + sep.join(cells) + (" |" if args.markdown else ""))
    for what, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {what}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
