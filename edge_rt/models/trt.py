"""`models trt`: build a TensorRT engine for this GPU from yamnet_patch.onnx with the TensorRT Python API.

Works with TensorRT 8.6/10 (JetPack 5/6: precision builder flags) and 11 (strong typing only: the
precision is carried by the ONNX itself, float16 weights or explicit Q/DQ int8 nodes).
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from edgert.yamnet.backends.trt import engine_name, gpu_name, require_tensorrt
from edgert.errors import ModelError
from edge_rt.models import golden
from edgert.yamnet import manifest, paths
from edgert.yamnet.params import PARAMS

log = logging.getLogger("edge_rt.models.trt")

WORKSPACE_BYTES = 1 << 30
ENGINE_TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2}  # int8 is judged by top-1 agreement (>= 95%)
INT8_MIN_TOP1 = 0.95


def calibration_patches(limit: int = 512) -> np.ndarray:
    """float32[N,96,64] patches for int8 calibration: TF's own patches from every golden file."""
    batches = [golden.load(p.stem)["patches"] for p in golden.golden_files()]
    if not batches:
        raise ModelError(f"int8 calibration needs the golden files: {paths.BUILD_HINT}")
    return np.concatenate(batches)[:limit].astype(np.float32)


def fp16_onnx(src: Path, dst: Path) -> Path:
    """A copy of the patch model with float16 weights and float32 inputs/outputs (for strongly typed builds)."""
    import onnx
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return dst


def int8_qdq_onnx(src: Path, dst: Path) -> Path:
    """Static int8 with explicit Q/DQ nodes, per-channel weights, calibrated on real patches (ONNX Runtime tools)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self, patches: np.ndarray):
            self._it = iter(patches[i:i + 1] for i in range(patches.shape[0]))

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {paths.INPUT_NAME: batch}

    quantize_static(str(src), str(dst), Reader(calibration_patches()), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    return dst


def build_engine(model_dir=None, precision: str = "fp16", max_batch: int = 32) -> Path:
    trt, _cuda = require_tensorrt()  # fails loudly and clearly where TensorRT or a GPU is absent
    model_dir = paths.model_dir(model_dir)
    onnx_path = model_dir / paths.PATCH_ONNX
    manifest.check_artifact(model_dir, paths.PATCH_ONNX)
    major = int(trt.__version__.split(".")[0])
    weak_typing = hasattr(trt.BuilderFlag, "FP16")  # gone in TensorRT 11

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    with tempfile.TemporaryDirectory() as tmp:
        source = onnx_path
        if precision == "int8":
            source = int8_qdq_onnx(onnx_path, Path(tmp) / "int8_qdq.onnx")
        elif precision == "fp16" and not weak_typing:
            source = fp16_onnx(onnx_path, Path(tmp) / "fp16.onnx")
        if not weak_typing and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(source.read_bytes()):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelError(f"TensorRT could not parse {source.name}: {errs}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if weak_typing:
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # Q/DQ nodes carry the scales; no calibrator needed
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # parity with TF's float32 scores
    profile = builder.create_optimization_profile()
    shape = PARAMS.patch_shape
    profile.set_shape(paths.INPUT_NAME, (1, *shape), (min(8, max_batch), *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)

    t0 = time.monotonic()
    log.info("building %s TensorRT %s engine (max batch %d); this takes a few minutes", precision, trt.__version__,
             max_batch)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise ModelError("TensorRT failed to build the engine (see its log above)")
    out = model_dir / engine_name(precision)
    out.write_bytes(bytes(blob))
    log.info("wrote %s (%.1f MB) in %.0f s", out, out.stat().st_size / 1e6, time.monotonic() - t0)

    man = manifest.load(model_dir)
    man["artifacts"][out.name] = {"sha256": manifest.sha256_file(out), "bytes": out.stat().st_size,
                                  "tensorrt": trt.__version__, "gpu": gpu_name(), "max_batch": max_batch}
    man.setdefault("engine_parity", {})[out.name] = engine_parity(model_dir, precision)
    manifest.save(model_dir, man)
    return out


def engine_parity(model_dir: Path, precision: str) -> dict:
    """Run the new engine on every golden file; raise if it strays from TF beyond its tolerance."""
    from edgert.yamnet import backends
    from edge_rt.models.parity import compare

    key = {"fp16": "tensorrt", "fp32": "tensorrt-fp32", "int8": "tensorrt-int8"}[precision]
    be = backends.load(key, model_dir)
    result, agree, total = {}, 0, 0
    for p in golden.golden_files():
        g = golden.load(p.stem)
        result[p.stem] = compare(be.infer(g["patches"])[0], g["scores"])
        agree += result[p.stem]["top1_agree"]
        total += result[p.stem]["patches"]
        log.info("%s on %s: max |dscore| %.2e, top-1 %d/%d", precision, p.stem,
                 result[p.stem]["max_abs_score_diff"], result[p.stem]["top1_agree"], result[p.stem]["patches"])
    if precision in ENGINE_TOLERANCE:
        worst = max(r["max_abs_score_diff"] for r in result.values())
        if worst > ENGINE_TOLERANCE[precision]:
            raise ModelError(f"{precision} engine strays from TF by {worst:.2e} > {ENGINE_TOLERANCE[precision]}")
    elif agree < INT8_MIN_TOP1 * total:
        raise ModelError(f"int8 engine agrees with TF's top-1 on only {agree}/{total} patches")
    return result
