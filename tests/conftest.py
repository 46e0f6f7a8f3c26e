"""Shared fixtures: the built model folder and the golden files (both made by `make setup`)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge_rt.models import golden
from edgert.yamnet import paths


@pytest.fixture(scope="session")
def model_dir() -> Path:
    d = paths.model_dir()
    if not (d / paths.MANIFEST).is_file():
        pytest.fail(f"no built models in {d}: run `make setup` first")
    return d


@pytest.fixture(scope="session")
def goldens() -> dict:
    files = golden.golden_files()
    if not files:
        pytest.fail(f"no golden files in {paths.golden_dir()}: run `make setup` first")
    return {p.stem: golden.load(p.stem) for p in files}


@pytest.fixture
def model_copy(model_dir, tmp_path) -> Path:
    """A private copy of the manifest and patch models, safe to corrupt."""
    for name in (paths.MANIFEST, paths.CLASS_MAP, paths.PATCH_ONNX, paths.PATCH_TFLITE):
        shutil.copy2(model_dir / name, tmp_path / name)
    return tmp_path
