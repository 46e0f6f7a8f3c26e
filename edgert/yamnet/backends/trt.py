"""TensorRT backend: a serialized engine built on the target GPU by `python -m edge_rt.models trt`."""
from __future__ import annotations

import numpy as np

from edgert.errors import BackendUnavailableError, ModelError
from edgert.yamnet import paths
from edgert.yamnet.backends.base import RUNTIMES, Backend
from edgert.yamnet.params import PARAMS

ENGINE_TEMPLATE = "yamnet_patch_{precision}.engine"
PRECISIONS = ("fp32", "fp16", "int8")


def engine_name(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"TensorRT precision must be one of {PRECISIONS}, got {precision!r}")
    return ENGINE_TEMPLATE.format(precision=precision)


def require_tensorrt():
    """Import tensorrt and CuPy, or raise a clear error saying what is missing and how to get it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            "TensorRT is not importable here: on a Jetson it ships with JetPack (python3-libnvinfer); "
            f"on an x86 GPU host `pip install tensorrt` ({exc})") from exc
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailableError(f"the TensorRT backend needs CuPy for GPU memory: pip install '.[gpu]' ({exc})"
                                      ) from exc
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            raise BackendUnavailableError("TensorRT needs a CUDA GPU and none is visible")
    except cupy.cuda.runtime.CUDARuntimeError as exc:  # no driver / no device
        raise BackendUnavailableError(f"CUDA is not usable here: {exc}") from exc
    return trt, cupy


def gpu_name() -> str:
    """The name of CUDA device 0, for the manifest."""
    import cupy

    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


ENGINES = {p: engine_name(p) for p in PRECISIONS}  # precision -> engine file


@RUNTIMES.register("tensorrt")
class TensorRtBackend(Backend):
    """A serialized engine per precision, built on the target GPU; fp16 by default."""

    RUNTIME = "tensorrt"
    PRECISIONS = ENGINES
    DEFAULT_PRECISION = "fp16"
    USES_CUDA = True

    @classmethod
    def _check_runtime(cls) -> None:
        require_tensorrt()

    def _load(self) -> None:
        trt, cupy = require_tensorrt()
        self._cupy = cupy
        self._device = cupy.cuda.Device(0)
        with self._device:
            self._logger = trt.Logger(trt.Logger.WARNING)
            runtime = trt.Runtime(self._logger)
            self._engine = runtime.deserialize_cuda_engine(self.model_path.read_bytes())
            if self._engine is None:
                raise ModelError(f"TensorRT could not deserialize {self.model_path}; it was built for another "
                                 "GPU or TensorRT version: rebuild with `python -m edge_rt.models trt`")
            self._context = self._engine.create_execution_context()
            self._stream = cupy.cuda.Stream(non_blocking=True)
            names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
            missing = {paths.INPUT_NAME, *paths.OUTPUT_NAMES} - set(names)
            if missing:
                raise ModelError(f"{self.model_path} lacks tensors {sorted(missing)}; it has {names}")
            self._max_batch = self._engine.get_tensor_profile_shape(paths.INPUT_NAME, 0)[2][0]
            self._alloc(self._max_batch)

    def _alloc(self, n: int) -> None:
        import cupyx

        cupy = self._cupy
        shapes = {
            paths.INPUT_NAME: (n, *PARAMS.patch_shape),
            paths.OUTPUT_NAMES[0]: (n, PARAMS.num_classes),
            paths.OUTPUT_NAMES[1]: (n, PARAMS.embedding_size),
        }
        self._host = {k: cupyx.empty_pinned(shape, np.float32) for k, shape in shapes.items()}  # page-locked
        self._dev = {k: cupy.empty(shape, np.float32) for k, shape in shapes.items()}
        for k, buf in self._dev.items():
            self._context.set_tensor_address(k, buf.data.ptr)

    def _infer(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outs_s, outs_e = [], []
        with self._device:
            for start in range(0, patches.shape[0], self._max_batch):
                chunk = patches[start:start + self._max_batch]
                n = chunk.shape[0]
                self._host[paths.INPUT_NAME][:n] = chunk
                self._context.set_input_shape(paths.INPUT_NAME, (n, *PARAMS.patch_shape))
                self._dev[paths.INPUT_NAME][:n].set(self._host[paths.INPUT_NAME][:n], stream=self._stream)
                if not self._context.execute_async_v3(self._stream.ptr):
                    raise ModelError("TensorRT execution failed")
                for name in paths.OUTPUT_NAMES:
                    self._dev[name][:n].get(stream=self._stream, out=self._host[name][:n])
                self._stream.synchronize()
                outs_s.append(self._host[paths.OUTPUT_NAMES[0]][:n].copy())
                outs_e.append(self._host[paths.OUTPUT_NAMES[1]][:n].copy())
        return np.concatenate(outs_s), np.concatenate(outs_e)
