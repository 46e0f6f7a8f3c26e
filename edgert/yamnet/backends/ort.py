"""ONNX Runtime backend: the float patch model on CPU (the default on x86)."""
from __future__ import annotations

import os

import numpy as np

from edgert.errors import BackendUnavailableError
from edgert.yamnet import paths
from edgert.yamnet.backends.base import RUNTIMES, Backend


@RUNTIMES.register("onnxruntime")
class OnnxRuntimeBackend(Backend):
    """fp32: the float patch model; int8: static int8 (Q/DQ, per-channel weights) calibrated on the clip pack,
    built by `models build`."""

    RUNTIME = "onnxruntime"
    PRECISIONS = {"fp32": paths.PATCH_ONNX, "int8": "yamnet_patch_int8.onnx"}

    @classmethod
    def _check_runtime(cls) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailableError(
                f"backend {cls.RUNTIME!r} needs onnxruntime: pip install onnxruntime ({exc})") from exc

    def _load(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        for key, value in session_config(self.threads, usable_cores()).items():
            opts.add_session_config_entry(key, value)
        self._session = ort.InferenceSession(str(self.model_path), opts, providers=["CPUExecutionProvider"])

    def _infer(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, emb = self._session.run(list(paths.OUTPUT_NAMES), {paths.INPUT_NAME: patches})
        return scores, emb


def usable_cores() -> int:
    """CPUs this process may run on (its affinity: `taskset -c 0` makes it 1), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def session_config(threads: int, cores: int) -> dict[str, str]:
    """ONNX Runtime session config entries for `threads` intra-op threads in a process allowed `cores` CPUs.

    ORT's pool threads spin between operators by default. Where they have no core of their own (as many threads
    as cores or more: one core pinned, or the capture and clip threads beside them) they spin against the very
    threads they wait for, so they block instead. The inter-op pool never runs work (sequential execution) and
    never spins."""
    spin = "1" if threads < cores else "0"
    return {"session.intra_op.allow_spinning": spin, "session.inter_op.allow_spinning": "0"}
