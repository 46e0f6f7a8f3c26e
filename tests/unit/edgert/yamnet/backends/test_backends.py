"""The ONNX Runtime and TFLite backends against TF's hub YAMNet, and their errors."""
from __future__ import annotations

import numpy as np
import pytest

from edgert.errors import InputShapeError, ModelIntegrityError, ModelMissingError, SettingsError
from edgert.yamnet import backends
from edgert.yamnet.classmap import class_names

LOCAL = [("onnxruntime", 1e-4), ("tflite", 1e-4), ("tflite-fp16", 1e-2)]


@pytest.fixture(scope="module", params=[k for k, _ in LOCAL])
def backend(request, model_dir):
    return backends.load(request.param, model_dir)


def clip_ranking(scores: np.ndarray) -> list[str]:
    names = class_names()
    return [names[i] for i in np.argsort(scores.mean(axis=0))[::-1]]


def test_zeros_rank_silence_first(backend, goldens):
    scores, _ = backend.infer(goldens["zeros_3s"]["patches"])
    assert clip_ranking(scores)[0] == "Silence"


def test_seeded_noise_has_white_noise_in_top10(backend, goldens):
    scores, _ = backend.infer(goldens["noise_51773_3s"]["patches"])
    assert "White noise" in clip_ranking(scores)[:10]


def test_440hz_sine_has_sine_wave_in_top10(backend, goldens):
    scores, _ = backend.infer(goldens["sine_440_3s"]["patches"])
    assert "Sine wave" in clip_ranking(scores)[:10]


@pytest.mark.parametrize("key,tol", LOCAL)
def test_scores_match_tf_on_every_golden_file(key, tol, model_dir, goldens):
    be = backends.load(key, model_dir)
    for name, g in goldens.items():
        scores, emb = be.infer(g["patches"])
        assert scores.shape == g["scores"].shape and emb.shape == g["embeddings"].shape, name
        assert np.max(np.abs(scores - g["scores"])) <= tol, name
        np.testing.assert_array_equal(scores.argmax(1), g["scores"].argmax(1), err_msg=name)


def test_float_embeddings_match_tf(model_dir, goldens):
    be = backends.load("onnxruntime", model_dir)
    for name, g in goldens.items():
        np.testing.assert_allclose(be.infer(g["patches"])[1], g["embeddings"], atol=1e-4, err_msg=name)


def test_batch_results_equal_one_by_one(backend, goldens):
    p = goldens["chirp_10s"]["patches"][:5]
    whole, _ = backend.infer(p)
    single = np.concatenate([backend.infer(p[i:i + 1])[0] for i in range(len(p))])
    np.testing.assert_allclose(whole, single, atol=1e-5)


def test_backend_reports_name_and_model_sha(backend, model_dir):
    import json

    man = json.loads((model_dir / "manifest.json").read_text())
    assert backend.model_sha256 == man["artifacts"][backend.artifact]["sha256"]
    assert backend.artifact == backend.PRECISIONS[backend.precision]
    assert backends.parse(backend.name) == (backend.RUNTIME, backend.precision)


@pytest.mark.parametrize("shape", [(96, 64), (2, 64, 96), (2, 96, 64, 1), (96,)])
def test_wrong_input_shape_is_refused_with_the_expected_shape(backend, shape):
    with pytest.raises(InputShapeError, match=r"\[N,96,64\]"):
        backend.infer(np.zeros(shape, np.float32))


def test_integer_patches_are_refused(backend):
    with pytest.raises(InputShapeError, match="dtype"):
        backend.infer(np.zeros((1, 96, 64), np.int16))


def test_empty_batch_gives_empty_outputs(backend):
    scores, emb = backend.infer(np.zeros((0, 96, 64), np.float32))
    assert scores.shape == (0, 521) and emb.shape == (0, 1024)


def test_missing_model_says_how_to_build_it(tmp_path):
    with pytest.raises(ModelMissingError, match="make setup"):
        backends.load("onnxruntime", tmp_path)


def test_missing_artifact_with_manifest_present_is_named(model_copy):
    (model_copy / "yamnet_patch.onnx").unlink()
    with pytest.raises(ModelMissingError, match="yamnet_patch.onnx"):
        backends.load("onnxruntime", model_copy)


@pytest.mark.parametrize("key,artifact", [("onnxruntime", "yamnet_patch.onnx"), ("tflite", "yamnet_patch.tflite")])
def test_corrupted_artifact_fails_sha256_check(model_copy, key, artifact):
    path = model_copy / artifact
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        backends.load(key, model_copy)


def test_unknown_backend_lists_the_choices(model_dir):
    with pytest.raises(SettingsError, match="onnxruntime"):
        backends.load("coreml", model_dir)


def test_auto_picks_a_cpu_runtime_on_this_machine(model_dir, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="edgert.yamnet.backends")
    be = backends.load("auto", model_dir)
    assert be.name in ("onnxruntime", "tflite")
    assert any("backend auto ->" in r.message for r in caplog.records)


@pytest.mark.parametrize("name, precision, runtime, chosen", [
    ("tflite", None, "tflite", "fp32"), ("tflite", "fp16", "tflite", "fp16"), ("tflite-fp16", None, "tflite", "fp16"),
    ("tensorrt", None, "tensorrt", "fp16"), ("onnxruntime-int8", "int8", "onnxruntime", "int8")])
def test_precision_is_a_parameter_of_the_runtime_or_part_of_its_name(name, precision, runtime, chosen):
    assert backends.parse(name, precision) == (runtime, chosen)


@pytest.mark.parametrize("name, precision, why", [("tflite", "bf16", "no precision 'bf16'"),
                                                  ("onnxruntime-fp16", None, "no precision 'fp16'"),
                                                  ("tflite-fp16", "int8", "disagree"),
                                                  ("coreml-fp16", None, "unknown backend 'coreml-fp16'")])
def test_a_precision_the_runtime_lacks_is_named(name, precision, why):
    with pytest.raises(SettingsError, match=why):
        backends.parse(name, precision)


def test_tflite_at_fp16_by_parameter_is_the_fp16_model(model_dir):
    a = backends.load("tflite", model_dir, precision="fp16")
    b = backends.load("tflite-fp16", model_dir)
    assert a.name == b.name == "tflite-fp16" and a.model_sha256 == b.model_sha256 != backends.load(
        "tflite", model_dir).model_sha256
