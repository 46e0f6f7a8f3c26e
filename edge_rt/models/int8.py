"""Static int8 patch models, calibrated on real clips through our own front end (ONNX Q/DQ and full-integer TFLite)."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_rt.models import paths

log = logging.getLogger("edge_rt.models.int8")

INT8_ONNX = "yamnet_patch_int8.onnx"
INT8_TFLITE = "yamnet_patch_int8.tflite"
CALIBRATION_PATCHES = 384
SEED = 7


def calibration_set(patches: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """float32[<=384,96,64]: an even draw over the pack's labels, so rare classes shape the ranges too."""
    rng = np.random.default_rng(SEED)
    per = CALIBRATION_PATCHES // len(np.unique(labels))
    picks = []
    for label in sorted(np.unique(labels)):
        idx = np.flatnonzero(labels == label)
        picks.append(rng.choice(idx, size=min(per, idx.size), replace=False))
    return patches[np.sort(np.concatenate(picks))]


def quantize_onnx(src: Path, dst: Path, calib: np.ndarray) -> None:
    """ONNX Runtime static quantization: Q/DQ format, per-channel int8 weights, uint8 activations (U8S8 kernels)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._i = 0

        def get_next(self):
            if self._i >= len(calib):
                return None
            batch = calib[self._i:self._i + 16]
            self._i += 16
            return {paths.INPUT_NAME: batch}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)


def quantize_tflite(patch_fn, dst: Path, calib: np.ndarray) -> None:
    """TFLite full-integer conversion with float32 input/output tensors (quantize/dequantize at the edges)."""
    import tensorflow as tf

    def representative():
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([patch_fn])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    dst.write_bytes(conv.convert())


def agreement(model_dir: Path, patches: np.ndarray) -> dict[str, Any]:
    """Top-1 agreement of each int8 backend with the float ONNX model on float32[N,96,64] patches."""
    from edge_rt import backends

    ref, _ = backends.load("onnxruntime", model_dir).infer(patches)
    out = {}
    for key in ("onnxruntime-int8", "tflite-int8"):
        scores, _ = backends.load(key, model_dir).infer(patches)
        out[key] = {"top1_agree": int(np.sum(scores.argmax(1) == ref.argmax(1))), "patches": int(len(patches)),
                    "max_abs_score_diff": float(np.max(np.abs(scores - ref)))}
    return out
