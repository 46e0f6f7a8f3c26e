"""Inference backends as plugins: `load(name)` builds the one keyed `name`, or picks one by hardware for "auto"."""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgert.errors import BackendUnavailableError, SettingsError
from edgert.yamnet.backends.base import RUNTIMES, Backend, validate_patches
from edgert.yamnet.backends.fake import FakeBackend
from edgert.yamnet.backends.ort import OnnxRuntimeBackend, OnnxRuntimeCudaBackend
from edgert.yamnet.backends.tflite import TfliteBackend
from edgert.yamnet.backends.trt import TensorRtBackend

__all__ = ["Backend", "RUNTIMES", "load", "names", "parse", "choose", "Hardware", "validate_patches",
           "OnnxRuntimeBackend", "OnnxRuntimeCudaBackend", "TfliteBackend", "TensorRtBackend", "FakeBackend"]

log = logging.getLogger("edgert.yamnet.backends")

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")


def names() -> list[str]:
    """Every name `load()` takes besides "auto": each runtime at each of its precisions ("tflite-fp16")."""
    return sorted(n for runtime in RUNTIMES for n in RUNTIMES.get(runtime).names())


def parse(name: str, precision: str | None = None) -> tuple[str, str]:
    """(runtime, precision) of a backend name and an optional precision: "tflite" + "fp16", or "tflite-fp16"
    (a runtime's own name may hold a hyphen: "onnxruntime-gpu"). Raises SettingsError naming the choices for an
    unknown runtime or a precision the runtime does not have."""
    runtime, _, suffix = name.rpartition("-")
    if name in RUNTIMES:
        runtime, suffix = name, ""
    elif runtime not in RUNTIMES or not suffix:
        raise SettingsError(f"unknown backend {name!r}; choose one of: auto, {', '.join(names())}")
    if suffix and precision and suffix != precision:
        raise SettingsError(f"backend {name!r} and precision {precision!r} disagree")
    cls = RUNTIMES.get(runtime)
    chosen = precision or suffix or cls.DEFAULT_PRECISION
    if chosen not in cls.PRECISIONS:
        raise SettingsError(f"backend {runtime!r} has no precision {chosen!r}; choose one of: "
                            f"{', '.join(cls.PRECISIONS)}")
    return runtime, chosen


@dataclass(frozen=True)
class Hardware:
    """What `auto` looks at; built from the machine by `probe()`, or by hand in tests."""

    device_model: str = ""  # /proc/device-tree/model, e.g. "NVIDIA Jetson Nano Developer Kit"
    mem_total_mb: int = 0
    has_cuda_gpu: bool = False
    has_tensorrt: bool = False
    has_onnxruntime: bool = False
    has_tflite: bool = False

    @classmethod
    def probe(cls) -> "Hardware":
        model = ""
        try:
            model = DEVICE_TREE_MODEL.read_bytes().rstrip(b"\x00").decode(errors="replace").strip()
        except OSError:
            pass
        mem = 0
        try:
            mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
        except (ValueError, OSError):
            pass
        has_gpu = Path("/dev/nvidia0").exists() or Path("/dev/nvhost-gpu").exists() or bool(shutil.which("nvidia-smi"))
        spec = importlib.util.find_spec
        return cls(model, mem, has_gpu, spec("tensorrt") is not None and spec("cupy") is not None,
                   spec("onnxruntime") is not None, spec("ai_edge_litert") is not None)


def choose(hw: Hardware, engine_present: bool = True) -> tuple[str, str]:
    """Pick (backend name, reason) for this hardware."""
    model = hw.device_model.lower()
    if "jetson" in model:
        # A Nano 2GB cannot hold a TensorRT engine's workspace beside the rest of the stack.
        small = "2gb" in model.replace(" ", "") or (0 < hw.mem_total_mb < 3000)
        if small:
            if hw.has_tflite:
                return "tflite-fp16", f"{hw.device_model!r} has ~2 GB of memory: TFLite with float16 weights"
            raise BackendUnavailableError(f"{hw.device_model!r} needs ai-edge-litert (pip install ai-edge-litert)")
        if hw.has_tensorrt and engine_present:
            return "tensorrt", f"{hw.device_model!r} with TensorRT available"
        why = ("TensorRT is not installed" if not hw.has_tensorrt
               else "no engine built yet (python -m edge_rt.models trt)")
        if hw.has_onnxruntime:
            return "onnxruntime", f"{hw.device_model!r} but {why}: ONNX Runtime on the CPU"
        if hw.has_tflite:
            return "tflite", f"{hw.device_model!r} but {why}: TFLite on the CPU"
    elif hw.has_cuda_gpu and hw.has_tensorrt and engine_present:
        return "tensorrt", "NVIDIA GPU with TensorRT available"
    if hw.has_onnxruntime:
        return "onnxruntime", "no usable TensorRT GPU: ONNX Runtime on the CPU"
    if hw.has_tflite:
        return "tflite", "no ONNX Runtime installed: TFLite on the CPU"
    raise BackendUnavailableError("no inference runtime installed: pip install onnxruntime or ai-edge-litert")


def load(name: str = "auto", model_dir: str | os.PathLike | None = None, threads: int = 1,
         precision: str | None = None) -> Backend:
    """Build backend `name` ("auto" picks by hardware and logs why) at `precision` (default: the name's own, else
    the runtime's). Raises a clear CoreError on failure."""
    if name == "auto":
        from edgert.yamnet import paths

        engine = paths.model_dir(model_dir) / TensorRtBackend.PRECISIONS[TensorRtBackend.DEFAULT_PRECISION]
        name, reason = choose(Hardware.probe(), engine_present=engine.is_file())
        log.info("backend auto -> %s (%s)", name, reason)
    runtime, precision = parse(name, precision)
    backend = RUNTIMES.get(runtime)(model_dir=model_dir, threads=threads, precision=precision)
    log.info("loaded %r", backend)
    return backend
