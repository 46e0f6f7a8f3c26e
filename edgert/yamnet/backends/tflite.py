"""TFLite (ai-edge-litert) backends: float32, and float16 weights for memory-tight devices like a Nano 2GB."""
from __future__ import annotations

import numpy as np

from edgert.errors import BackendUnavailableError, ModelError
from edgert.yamnet import paths
from edgert.yamnet.backends.base import RUNTIMES, Backend
from edgert.yamnet.params import PARAMS


@RUNTIMES.register("tflite")
class TfliteBackend(Backend):
    """fp32; fp16 weights for memory-tight devices (a Nano 2GB); int8: full-integer with float32 input/output,
    calibrated on the clip pack, built by `models build`."""

    RUNTIME = "tflite"
    PRECISIONS = {"fp32": paths.PATCH_TFLITE, "fp16": paths.PATCH_TFLITE_FP16, "int8": "yamnet_patch_int8.tflite"}

    @classmethod
    def _check_runtime(cls) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailableError(
                f"backend {cls.RUNTIME!r} needs ai-edge-litert: pip install ai-edge-litert ({exc})") from exc

    def _load(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interp = Interpreter(model_path=str(self.model_path), num_threads=self.threads)
        self._in = self._interp.get_input_details()[0]["index"]
        self._batch = -1
        self._resize(1)
        by_width = {d["shape"][-1]: d["index"] for d in self._interp.get_output_details()}
        try:
            self._scores, self._emb = by_width[PARAMS.num_classes], by_width[PARAMS.embedding_size]
        except KeyError as exc:
            raise ModelError(f"{self.model_path} does not output scores and embeddings: {by_width}") from exc

    def _resize(self, n: int) -> None:
        if n != self._batch:
            self._interp.resize_tensor_input(self._in, [n, *PARAMS.patch_shape], strict=True)
            self._interp.allocate_tensors()
            self._batch = n

    def _infer(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._resize(patches.shape[0])
        self._interp.set_tensor(self._in, patches)
        self._interp.invoke()
        # Copies: the interpreter reuses its output buffers on the next invoke.
        return self._interp.get_tensor(self._scores).copy(), self._interp.get_tensor(self._emb).copy()
