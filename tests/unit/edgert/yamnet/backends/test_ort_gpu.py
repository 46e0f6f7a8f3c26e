"""The onnxruntime-gpu backend: a plugin keyed like the others, that refuses to be built where ONNX Runtime cannot
run it on CUDA (rather than running on the CPU under its name), and on a GPU scores as the CPU backend does.
The tests that need a GPU skip, saying why, where there is none."""
from __future__ import annotations

import numpy as np
import pytest

from edgert.errors import BackendUnavailableError
from edgert.yamnet import backends
from edgert.yamnet.backends.ort import CUDA_EP, OnnxRuntimeCudaBackend, cuda_unavailable

gpu_missing = cuda_unavailable  # why the GPU tests cannot run here, or None when they can

needs_gpu = pytest.mark.skipif(gpu_missing() is not None, reason=gpu_missing() or "")


def test_the_gpu_backend_is_a_plugin_under_its_own_name():
    assert "onnxruntime-gpu" in backends.names()
    assert backends.parse("onnxruntime-gpu") == ("onnxruntime-gpu", "fp32")
    assert backends.RUNTIMES.get("onnxruntime-gpu") is OnnxRuntimeCudaBackend
    assert backends.parse("tflite-fp16") == ("tflite", "fp16") and backends.parse("onnxruntime-int8")[1] == "int8"


def test_without_the_cuda_provider_it_fails_when_built_naming_what_to_install(model_dir, monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(BackendUnavailableError, match=r"CUDA execution provider.*pip install '\.\[gpu\]'"):
        backends.load("onnxruntime-gpu", model_dir)


@pytest.mark.skipif(gpu_missing() is None, reason="a GPU is here: the session does not fall back")
# The CPU-only wheel warns that it has no CUDA provider before the backend sees the session's providers.
@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider' is not in available provider names")
def test_a_session_that_would_fall_back_to_the_cpu_is_refused(model_dir, monkeypatch):
    import onnxruntime as ort

    available = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_EP, *available])
    with pytest.raises(BackendUnavailableError, match="could not use CUDA device 0.*would run on CPUExecutionProvider"):
        backends.load("onnxruntime-gpu", model_dir)


@needs_gpu
def test_on_a_gpu_it_scores_the_golden_patches_as_the_cpu_backend(model_dir, goldens):
    gpu, cpu = backends.load("onnxruntime-gpu", model_dir), backends.load("onnxruntime", model_dir)
    assert gpu._session.get_providers()[0] == CUDA_EP
    for name, g in goldens.items():
        (gs, ge), (cs, ce) = gpu.infer(g["patches"]), cpu.infer(g["patches"])
        assert np.max(np.abs(gs - cs)) <= 1e-3 and np.max(np.abs(ge - ce)) <= 1e-3, name
        np.testing.assert_array_equal(gs.argmax(1), cs.argmax(1), err_msg=name)


@needs_gpu
def test_on_a_gpu_a_large_batch_scores_each_window_as_it_alone(model_dir, goldens):
    gpu = backends.load("onnxruntime-gpu", model_dir)
    p = np.concatenate([g["patches"] for g in goldens.values()])
    whole, _ = gpu.infer(p)
    single = np.concatenate([gpu.infer(p[i:i + 1])[0] for i in range(len(p))])
    np.testing.assert_allclose(whole, single, atol=1e-4)
