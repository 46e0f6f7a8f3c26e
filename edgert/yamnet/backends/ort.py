"""ONNX Runtime backends: the float patch model on CPU (the default on x86), and on an NVIDIA GPU through the CUDA
execution provider of onnxruntime-gpu (`pip install '.[gpu]'`)."""
from __future__ import annotations

import os
import shutil
from typing import Optional

import numpy as np

from edgert.errors import BackendUnavailableError, SettingsError
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


CUDA_EP = "CUDAExecutionProvider"
GPU_INSTALL = ("pip uninstall -y onnxruntime && pip install '.[gpu]' (onnxruntime-gpu and NVIDIA's CUDA 12 and cuDNN "
               "wheels; '.[gpu-cuda13]' for CUDA 13)")


def cuda_unavailable() -> Optional[str]:
    """Why ONNX Runtime cannot run on CUDA here (no NVIDIA driver, no runtime, a CPU-only wheel), or None."""
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU here (nvidia-smi is absent)"
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    if CUDA_EP not in ort.get_available_providers():
        return f"onnxruntime {ort.__version__} has no CUDA execution provider: {GPU_INSTALL}"
    return None


@RUNTIMES.register("onnxruntime-gpu")
class OnnxRuntimeCudaBackend(OnnxRuntimeBackend):
    """The float patch model on CUDA device `device` (0) through onnxruntime-gpu's CUDA execution provider, for
    batch classification; beside the TensorRT backend, which runs engines built on a Jetson. It fails when built
    where the provider cannot run (no onnxruntime-gpu, no CUDA libraries, no GPU), never by falling back to the
    CPU as ONNX Runtime itself would."""

    RUNTIME = "onnxruntime-gpu"
    PRECISIONS = {"fp32": paths.PATCH_ONNX}
    USES_CUDA = True

    def __init__(self, model_dir=None, threads: int = 1, precision=None, *, device: int = 0):
        if device < 0:
            raise SettingsError(f"CUDA device must be 0 or more, got {device}")
        self.device = device
        super().__init__(model_dir, threads, precision)

    @classmethod
    def _check_runtime(cls) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError(f"backend {cls.RUNTIME!r} needs onnxruntime-gpu: {GPU_INSTALL} ({exc})"
                                          ) from exc
        if CUDA_EP not in ort.get_available_providers():
            raise BackendUnavailableError(
                f"backend {cls.RUNTIME!r} needs ONNX Runtime's CUDA execution provider, and this onnxruntime "
                f"{ort.__version__} has only {', '.join(ort.get_available_providers())}: {GPU_INSTALL}")

    def _load(self) -> None:
        import onnxruntime as ort

        preload = getattr(ort, "preload_dlls", None)  # NVIDIA's pip wheels' CUDA and cuDNN, without LD_LIBRARY_PATH
        if preload is not None:
            preload()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads  # what stays on the CPU (nothing, for this graph)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(self.model_path), opts,
                                                 providers=[(CUDA_EP, {"device_id": self.device})])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own types (Fail, RuntimeException...)
            raise BackendUnavailableError(f"backend {self.RUNTIME!r} could not start on CUDA device {self.device}: "
                                          f"{exc}") from exc
        if self._session.get_providers()[:1] != [CUDA_EP]:
            raise BackendUnavailableError(
                f"backend {self.RUNTIME!r}: ONNX Runtime could not use CUDA device {self.device} (no GPU, or its CUDA "
                f"or cuDNN libraries did not load; see the ONNX Runtime error above) and would run on "
                f"{', '.join(self._session.get_providers())}: {GPU_INSTALL}")


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
