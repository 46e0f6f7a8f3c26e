"""Backend choice by hardware, with fake device-tree model strings."""
from __future__ import annotations

import pytest

from edgert.errors import BackendUnavailableError
from edgert.yamnet.backends import Hardware, choose

ALL = dict(has_cuda_gpu=True, has_tensorrt=True, has_onnxruntime=True, has_tflite=True)


@pytest.mark.parametrize("model,mem,expected", [
    ("NVIDIA Jetson Xavier NX Developer Kit", 7800, "tensorrt"),
    ("NVIDIA Jetson TX2", 7800, "tensorrt"),
    ("NVIDIA Jetson Nano Developer Kit", 3950, "tensorrt"),
    ("NVIDIA Jetson Nano 2GB Developer Kit", 1980, "tflite-fp16"),
    ("NVIDIA Jetson Nano Developer Kit", 1980, "tflite-fp16"),  # a 2GB board with a generic model string
])
def test_jetson_boards_get_their_backend(model, mem, expected):
    name, reason = choose(Hardware(device_model=model, mem_total_mb=mem, **ALL))
    assert name == expected
    assert model in reason


def test_jetson_without_engine_falls_back_to_cpu_and_says_why():
    name, reason = choose(Hardware("NVIDIA Jetson Xavier NX Developer Kit", 7800, **ALL), engine_present=False)
    assert name == "onnxruntime" and "engine" in reason


def test_x86_gpu_with_tensorrt_gets_tensorrt():
    assert choose(Hardware("", 64000, **ALL))[0] == "tensorrt"


def test_x86_without_gpu_gets_onnxruntime():
    hw = Hardware("", 24000, has_cuda_gpu=False, has_tensorrt=False, has_onnxruntime=True, has_tflite=True)
    assert choose(hw) == ("onnxruntime", "no usable TensorRT GPU: ONNX Runtime on the CPU")


def test_only_tflite_installed_gets_tflite():
    assert choose(Hardware("", 24000, has_tflite=True))[0] == "tflite"


def test_no_runtime_at_all_is_a_clear_error():
    with pytest.raises(BackendUnavailableError, match="onnxruntime"):
        choose(Hardware())
