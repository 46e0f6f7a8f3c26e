"""VGGish: front end, network shapes, the official checkpoint layout (written here with TF), PCA post-processing."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from cloud_svc.errors import CheckpointError, VerifierUnavailable
from cloud_svc.verify import vggish
from cloud_svc.verify.vggish import PARAMS, Postprocessor, VggishModel, VggishParams

SMALL = VggishParams(conv=(4, 8, 8, 8, 16, 16), fc=32)  # the official layout, narrower


def random_variables(p: VggishParams, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s, dtype=np.float32) * np.float32(np.sqrt(2.0 / max(1, np.prod(s[:-1]))))
            for k, s in p.variable_shapes().items()}


def write_tf1_checkpoint(prefix, variables: dict[str, np.ndarray]) -> None:
    """A name-based TF checkpoint with the official variable names (what tf.compat.v1.train.Saver writes for
    the vggish/ scope; SaveV2 directly, which skips building a graph of 72 M parameters)."""
    tf = pytest.importorskip("tensorflow")
    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(variables[n]) for n in names])


def test_the_official_variable_layout():
    shapes = PARAMS.variable_shapes()
    assert shapes["vggish/conv1/weights"] == (3, 3, 1, 64)
    assert shapes["vggish/conv3/conv3_2/weights"] == (3, 3, 256, 256)
    assert shapes["vggish/conv4/conv4_2/biases"] == (512,)
    assert shapes["vggish/fc1/fc1_1/weights"] == (6 * 4 * 512, 4096)  # 96x64 pooled four times, 512 channels
    assert shapes["vggish/fc1/fc1_2/weights"] == (4096, 4096)
    assert shapes["vggish/fc2/weights"] == (4096, 128)
    assert len(shapes) == 18
    assert sum(int(np.prod(s)) for s in shapes.values()) == 72_141_184  # VGGish's published parameter count


def test_front_end_frames_a_second_of_audio_into_one_example():
    wave = np.sin(2 * np.pi * 1000 * np.arange(16000 * 2) / 16000).astype(np.float32) * 0.5
    lm = vggish.log_mel(wave)
    assert lm.shape == (1 + (32000 - 400) // 160, 64) and lm.dtype == np.float32
    ex = vggish.examples(wave)
    assert ex.shape == (2, 96, 64)  # 198 frames -> 2 non-overlapping 0.96 s examples
    m = vggish.mel_matrix()
    assert m.shape == (257, 64) and np.all(m[0] == 0) and np.all(m >= 0)
    peak_band = int(np.argmax(lm[10]))
    centers = np.linspace(vggish.hertz_to_mel(125.0), vggish.hertz_to_mel(7500.0), 66)[1:-1]
    assert abs(peak_band - int(np.argmin(abs(centers - vggish.hertz_to_mel(1000.0))))) <= 1
    assert vggish.examples(np.zeros(1000, np.float32)).shape == (0, 96, 64)


def test_the_network_maps_examples_to_128_d_embeddings():
    model = VggishModel(random_variables(SMALL), SMALL)
    x = np.random.default_rng(1).standard_normal((3, 96, 64)).astype(np.float32)
    emb = model(x)
    assert emb.shape == (3, 128) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert np.allclose(model(x[1:2]), emb[1:2], atol=1e-5)  # examples are independent
    with pytest.raises(ValueError):
        model(x[:, :95])


def test_a_checkpoint_with_a_missing_or_misshapen_variable_is_refused():
    v = random_variables(SMALL)
    del v["vggish/fc2/biases"]
    with pytest.raises(CheckpointError, match="lacks"):
        VggishModel(v, SMALL)
    v = random_variables(SMALL)
    v["vggish/conv2/weights"] = v["vggish/conv2/weights"][..., :3]
    with pytest.raises(CheckpointError, match="shapes"):
        VggishModel(v, SMALL)


def test_the_official_tf1_checkpoint_layout_loads_at_full_size(tmp_path):
    variables = random_variables(PARAMS, seed=3)
    write_tf1_checkpoint(tmp_path / "vggish_model.ckpt", variables)
    assert vggish.find_checkpoint(tmp_path) == tmp_path / "vggish_model.ckpt"
    loaded = vggish.load_variables(tmp_path / "vggish_model.ckpt")
    assert set(loaded) == set(PARAMS.variable_shapes())
    assert all(np.array_equal(loaded[k], variables[k]) for k in ("vggish/conv1/weights", "vggish/fc2/biases"))
    model = VggishModel(loaded)
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 3).astype(np.float32)
    emb = model(vggish.examples(wave))
    assert emb.shape == (3, 128)


def test_pca_postprocessing_clips_and_quantizes_like_the_release():
    rng = np.random.default_rng(2)
    vectors = np.linalg.qr(rng.standard_normal((128, 128)))[0]
    means = rng.standard_normal((128, 1))
    post = Postprocessor(vectors, means)
    emb = rng.standard_normal((4, 128)).astype(np.float32) * 3
    q = post(emb)
    expect = np.clip((vectors @ (emb.T - means)).T, -2.0, 2.0)
    assert q.dtype == np.uint8 and q.shape == (4, 128)
    assert np.array_equal(q, ((expect + 2.0) * (255.0 / 4.0)).astype(np.uint8))
    assert q.min() == 0 and q.max() == 255  # values beyond +-2 saturate
    with pytest.raises(CheckpointError):
        Postprocessor(vectors[:, :64], means)


def test_the_verifier_needs_the_weights_and_says_where_to_get_them(tmp_path):
    with pytest.raises(VerifierUnavailable, match="models fetch vggish"):
        vggish.VggishVerifier(tmp_path)


def test_the_verifier_runs_on_a_clip_with_an_npz_export_and_prototypes(tmp_path):
    import io

    import soundfile as sf

    np.savez(tmp_path / vggish.NPZ_NAME, **random_variables(SMALL))
    rng = np.random.default_rng(4)
    np.savez(tmp_path / vggish.PCA_NAME, pca_eigen_vectors=np.eye(128), pca_means=np.zeros((128, 1)))
    clips = tmp_path / "clips"
    for label, freq in (("glass_break", 3000.0), ("siren", 700.0)):
        (clips / label).mkdir(parents=True)
        t = np.arange(16000 * 2) / 16000
        sf.write(clips / label / "a.wav", (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
    protos = vggish.build_prototypes(clips, tmp_path, threshold=0.5, p=SMALL)
    assert protos.labels == ["glass_break", "siren"] and protos.centroids.shape == (2, 128)
    v = vggish.VggishVerifier(tmp_path, params=SMALL)
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 3000.0 * np.arange(16000 * 2) / 16000)).astype(np.float32), 16000,
             format="FLAC")
    r = v.verify(buf.getvalue(), "flac", "glass_break")
    assert r.verifier == "vggish" and set(r.scores) == {"glass_break", "siren"}
    assert r.scores["glass_break"] == pytest.approx(1.0, abs=1e-4) and r.agree is True
    _ = rng


def test_models_fetch_vggish_documents_the_official_files(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cloud_svc", "models", "fetch", "vggish", "--dir", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    assert vggish.CKPT_URL in out and vggish.PCA_URL in out and str(tmp_path / "vggish_model.ckpt") in out
