"""Static int8 patch models, calibrated on real clips through our own front end (ONNX Q/DQ and full-integer TFLite).

The ONNX path first equalizes activation ranges across channels (cross-layer equalization, Nagel et al. 2019,
driven by calibration activations rather than weights), because ONNX Runtime quantizes activations per tensor:
without it one loud channel sets the step for all of them. ReLU is positively homogeneous, so dividing a conv's
output channel by s > 0 and multiplying the next conv's matching input weights by s leaves the float model as it
was. It then quantizes with `reduce_range` (7-bit weights), because the U8S8 kernels on AVX2 without VNNI sum
pairs of u8 x s8 products in int16 (vpmaddubsw) and saturate with full-range weights.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgert.yamnet import paths

log = logging.getLogger("edge_rt.models.int8")

INT8_ONNX = "yamnet_patch_int8.onnx"
INT8_TFLITE = "yamnet_patch_int8.tflite"
CALIBRATION_PATCHES = 384
CALIBRATION_BATCH = 16  # patches per calibration run
SEED = 7
# Before a pointwise conv, the scale moves range from the activation into that conv's weight columns, which
# share a per-output-channel step with every other column: s_c = act_c^ALPHA / col_c^(1 - ALPHA) balances the
# two (0.25 / 0.5 / 0.75 / 1.0 gave 64.7 / 66.5 / 64.0 / 55.7 % top-1 agreement on the pack, see BENCHMARKS.md).
EQUALIZE_ALPHA = 0.5
# A channel whose calibration maximum is below this fraction of the layer's largest is treated as dead and
# left alone (dividing by ~0 would blow the next weights up for nothing).
DEAD_CHANNEL_FRACTION = 1e-3


def calibration_set(patches: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """float32[<=384,96,64]: an even draw over the pack's labels, so rare classes shape the ranges too."""
    rng = np.random.default_rng(SEED)
    per = CALIBRATION_PATCHES // len(np.unique(labels))
    picks = []
    for label in sorted(np.unique(labels)):
        idx = np.flatnonzero(labels == label)
        picks.append(rng.choice(idx, size=min(per, idx.size), replace=False))
    return patches[np.sort(np.concatenate(picks))]


def conv_chain(model) -> list[tuple[Any, Any]]:
    """[(Conv node, the Relu that consumes it)] in graph order: YAMNet's 27 conv layers, BN folded."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    chain = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        nxt = consumers.get(node.output[0], [])
        if len(nxt) != 1 or nxt[0].op_type != "Relu":
            raise ValueError(f"conv {node.name} does not feed exactly one Relu; equalization assumes it does")
        chain.append((node, nxt[0]))
    return chain


def _group(node) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def channel_maxima(model, calib: np.ndarray) -> list[np.ndarray]:
    """float32[C_i] per conv layer i: the largest post-ReLU value of each channel over float32[N,96,64] calib."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = [relu.output[0] for _, relu in conv_chain(probe)]
    for name in names:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    maxima = [np.zeros(0, np.float32)] * len(names)
    for i in range(0, len(calib), CALIBRATION_BATCH):
        outs = sess.run(names, {paths.INPUT_NAME: calib[i:i + CALIBRATION_BATCH]})
        maxima = [np.maximum(m, o.max(axis=(0, 2, 3))) if m.size else o.max(axis=(0, 2, 3))
                  for m, o in zip(maxima, outs)]
    return maxima


def equalization_scales(act_max: np.ndarray, next_weights: np.ndarray, depthwise_next: bool) -> np.ndarray:
    """float32[C]: divide channel c of an activation by s_c (and its producer's weights, bias), multiply the
    consumer's input c by s_c. act_max float32[C]; next_weights float32[O,I,kh,kw] (O = C for a depthwise)."""
    act = act_max.astype(np.float64)
    live = act > DEAD_CHANNEL_FRACTION * act.max()
    if depthwise_next:
        # A depthwise filter is one channel, quantized on its own step: scaling it costs nothing, so bring
        # every live channel up to the largest range.
        s = act / act.max()
    else:
        col = np.abs(next_weights).max(axis=(0, 2, 3)).astype(np.float64)
        s = act ** EQUALIZE_ALPHA / np.maximum(col, np.finfo(np.float32).tiny) ** (1 - EQUALIZE_ALPHA)
        s = s / np.median(s[live])  # the overall level is free; keep weights near their float magnitudes
    return np.where(live, s, 1.0).astype(np.float32)


def equalize(model, calib: np.ndarray):
    """A copy of the float ONNX model whose 26 conv-to-conv activations have equalized channel ranges on calib
    (float32[N,96,64]); its outputs equal the input model's to float rounding."""
    import onnx
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name: t for t in out.graph.initializer}
    weights = {name: numpy_helper.to_array(t).copy() for name, t in inits.items()}
    chain = conv_chain(out)
    maxima = channel_maxima(out, calib)
    for i in range(len(chain) - 1):
        this, nxt = chain[i][0], chain[i + 1][0]
        w1, b1, w2 = weights[this.input[1]], weights[this.input[2]], weights[nxt.input[1]]
        depthwise = _group(nxt) > 1
        s = equalization_scales(maxima[i], w2, depthwise)
        w1 /= s[:, None, None, None]
        b1 /= s
        w2 *= s[:, None, None, None] if depthwise else s[None, :, None, None]
    for name in {n for conv, _ in chain for n in conv.input[1:3]}:
        inits[name].CopyFrom(numpy_helper.from_array(weights[name], name))
    return out


def quantize_onnx(src: Path, dst: Path, calib: np.ndarray) -> None:
    """ONNX Runtime static quantization of the equalized model: Q/DQ format, per-channel 7-bit-range int8
    weights, uint8 activations (U8S8 kernels), MinMax ranges on calib float32[N,96,64]."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._i = 0

        def get_next(self):
            if self._i >= len(calib):
                return None
            batch = calib[self._i:self._i + CALIBRATION_BATCH]
            self._i += CALIBRATION_BATCH
            return {paths.INPUT_NAME: batch}

    with tempfile.TemporaryDirectory() as tmp:
        pre, eq = Path(tmp) / "pre.onnx", Path(tmp) / "equalized.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        onnx.save(equalize(onnx.load(str(pre)), calib), str(eq))
        quantize_static(str(eq), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
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
    from edgert.yamnet import backends

    ref, _ = backends.load("onnxruntime", model_dir).infer(patches)
    out = {}
    for key in ("onnxruntime-int8", "tflite-int8"):
        scores, _ = backends.load(key, model_dir).infer(patches)
        out[key] = {"top1_agree": int(np.sum(scores.argmax(1) == ref.argmax(1))), "patches": int(len(patches)),
                    "max_abs_score_diff": float(np.max(np.abs(scores - ref)))}
    return out
