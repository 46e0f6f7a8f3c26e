"""The TensorRT path: real on a GPU host, a clear refusal elsewhere."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgert.errors import BackendUnavailableError


def _trt_usable() -> str | None:
    """None when TensorRT + a CUDA GPU are usable, else the reason they are not."""
    from edgert.yamnet.backends.trt import require_tensorrt

    try:
        require_tensorrt()
    except BackendUnavailableError as exc:
        return str(exc)
    return None


REASON = _trt_usable()


@pytest.mark.skipif(REASON is None, reason="TensorRT is usable here; the refusal path cannot be observed")
def test_trt_command_without_tensorrt_fails_with_a_clear_message():
    proc = subprocess.run([sys.executable, "-m", "edge_rt.models", "trt", "--fp16"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "TensorRT" in proc.stderr or "CUDA" in proc.stderr or "CuPy" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(REASON is None, reason="TensorRT is usable here")
def test_tensorrt_backend_without_runtime_is_refused_at_construction(model_dir):
    from edgert.yamnet import backends

    with pytest.raises(BackendUnavailableError):
        backends.load("tensorrt", model_dir)


@pytest.mark.skipif(REASON is not None, reason=f"no TensorRT GPU here: {REASON}")
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-3), ("fp16", 1e-2)])
def test_engine_matches_tf_on_golden_patches(precision, tol, model_dir, goldens):
    from edge_rt.models.trt import build_engine
    from edgert.yamnet import backends
    from edgert.yamnet.backends.trt import engine_name

    if not (model_dir / engine_name(precision)).is_file():
        build_engine(model_dir, precision, max_batch=32)
    be = backends.load({"fp32": "tensorrt-fp32", "fp16": "tensorrt"}[precision], model_dir)
    for name, g in goldens.items():
        scores, _ = be.infer(g["patches"])
        assert np.max(np.abs(scores - g["scores"])) <= tol, name

