"""The static int8 models: activation equalization is exact in float, and the built int8 artifacts load and
agree with the float model at least as well as measured when they were made (BENCHMARKS.md, issue 4)."""
from __future__ import annotations

import numpy as np
import pytest

from edgert.yamnet import backends
from edge_rt.models import int8
from edgert.yamnet import paths

# Top-1 agreement with float ONNX on the patches of the first 8 clips of each label folder of the pack (323
# patches through our front end), measured on the built artifact: 0.551 (the whole pack: 57.2%; the plain Q/DQ
# recipe this replaced measured 46% on the pack). The floor leaves room for a rebuild's rounding, not for a
# regression to the older recipe. (20 patches of two golden clips, used before, moved by 0.1 with one
# resampler change: too few to guard anything.)
SAMPLE_CLIPS_PER_LABEL = 8
ONNX_INT8_AGREE_FLOOR = 0.50
FLOAT_TOLERANCE = 1e-4  # equalization only reorders float rounding


@pytest.fixture(scope="module")
def float_model(model_dir):
    import onnx

    return onnx.load(str(model_dir / paths.PATCH_ONNX))


def _run(model, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return tuple(sess.run(list(paths.OUTPUT_NAMES), {paths.INPUT_NAME: patches}))


def test_equalization_scales_fill_a_depthwise_input_and_leave_dead_channels_alone():
    act = np.array([4.0, 1.0, 0.0, 2.0], np.float32)
    s = int8.equalization_scales(act, np.ones((4, 1, 3, 3), np.float32), depthwise_next=True)
    np.testing.assert_allclose(s, [1.0, 0.25, 1.0, 0.5])
    np.testing.assert_allclose((act / s)[act > 0], 4.0)


def test_equalization_scales_before_a_pointwise_balance_activation_and_weight_column():
    act = np.array([4.0, 1.0], np.float32)
    w = np.array([[[[1.0]], [[4.0]]]], np.float32)  # [O=1, I=2, 1, 1]: column 1 is four times column 0
    s = int8.equalization_scales(act, w, depthwise_next=False)
    col = np.abs(w).max(axis=(0, 2, 3))
    # With ALPHA = 0.5 the activation range and the weight column range end in the same proportion on every
    # channel (the common level is free), so here both channels end with equal ranges on both sides.
    assert int8.EQUALIZE_ALPHA == 0.5
    ratio = (act / s) / (col * s)
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)
    np.testing.assert_allclose(act / s, (act / s)[0], rtol=1e-6)


def test_equalization_leaves_the_float_outputs_unchanged(float_model, goldens):
    calib = goldens["chirp_10s"]["patches"]
    eq = int8.equalize(float_model, calib)
    probe = np.concatenate([goldens["noise_51773_3s"]["patches"], calib[:4]])
    for before, after in zip(_run(float_model, probe), _run(eq, probe)):
        np.testing.assert_allclose(after, before, atol=FLOAT_TOLERANCE)
    weights_changed = sum(not np.array_equal(a.raw_data, b.raw_data)
                          for a, b in zip(float_model.graph.initializer, eq.graph.initializer))
    assert weights_changed >= 2 * (len(int8.conv_chain(eq)) - 1)


def test_equalization_gives_every_live_depthwise_input_channel_the_same_range(float_model, goldens):
    calib = goldens["chirp_10s"]["patches"]
    eq = int8.equalize(float_model, calib)
    chain = int8.conv_chain(eq)
    maxima = int8.channel_maxima(eq, calib)
    checked = 0
    for i in range(len(chain) - 1):
        if next((a.i for a in chain[i + 1][0].attribute if a.name == "group"), 1) > 1:
            m = maxima[i]
            live = m > int8.DEAD_CHANNEL_FRACTION * m.max()
            np.testing.assert_allclose(m[live], m.max(), rtol=1e-4, err_msg=f"layer {i}")
            checked += 1
    assert checked == 13  # YAMNet has 13 depthwise layers


@pytest.mark.parametrize("key", ["onnxruntime-int8", "tflite-int8"])
def test_int8_backend_loads_and_scores_patches_like_the_float_one(model_dir, goldens, key):
    patches = goldens["chirp_10s"]["patches"][:3]
    scores, emb = backends.load(key, model_dir).infer(patches)
    assert scores.shape == (3, 521) and emb.shape == (3, 1024)
    assert scores.dtype == np.float32 and np.all((scores >= 0) & (scores <= 1))


def test_onnx_int8_agrees_with_float_on_real_clips_at_least_as_measured(model_dir):
    from edgert.yamnet import frontend
    from edge_rt.capture.files import read_clip

    data = paths.data_dir()
    if data is None:
        pytest.skip("../shared/data is absent: no real clips to measure agreement on")
    files = [f for d in sorted((data / "audio").iterdir()) if d.is_dir()
             for f in sorted(d.iterdir())[:SAMPLE_CLIPS_PER_LABEL]]
    patches = np.concatenate([frontend.patches(frontend.log_mel(read_clip(f))) for f in files])
    ref, _ = backends.load("onnxruntime", model_dir).infer(patches)
    got, _ = backends.load("onnxruntime-int8", model_dir).infer(patches)
    agree = float(np.mean(got.argmax(1) == ref.argmax(1)))
    assert agree >= ONNX_INT8_AGREE_FLOOR, f"{agree:.3f} of {len(patches)} patches"
