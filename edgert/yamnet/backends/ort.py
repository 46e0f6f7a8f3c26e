"""ONNX Runtime backend: the float patch model on CPU (the default on x86)."""
from __future__ import annotations

import numpy as np

from edgert.yamnet.backends.base import Backend
from edgert.errors import BackendUnavailableError
from edgert.yamnet import paths


class OnnxRuntimeBackend(Backend):
    KEY = "onnxruntime"
    ARTIFACT = paths.PATCH_ONNX

    @classmethod
    def _check_runtime(cls) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailableError(f"backend {cls.KEY!r} needs onnxruntime: pip install onnxruntime ({exc})")

    def _load(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(self.model_path), opts, providers=["CPUExecutionProvider"])

    def _infer(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, emb = self._session.run(list(paths.OUTPUT_NAMES), {paths.INPUT_NAME: patches})
        return scores, emb


class OnnxRuntimeInt8Backend(OnnxRuntimeBackend):
    """Static int8 (Q/DQ, per-channel weights) calibrated on the clip pack; built by `models build`."""

    KEY = "onnxruntime-int8"
    ARTIFACT = "yamnet_patch_int8.onnx"
