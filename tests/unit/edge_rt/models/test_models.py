"""The model pipeline's products: golden references from TF, the wave model, the class map, `verify`."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgert.yamnet import paths
from edgert.yamnet.classmap import class_names
from edge_rt.models.parity import WaveModel


def test_class_map_has_521_audioset_names_in_model_order():
    names = class_names()
    assert len(names) == 521
    assert names[0] == "Speech" and names[494] == "Silence"


def test_golden_files_hold_consistent_tf_outputs(goldens):
    assert {"zeros_3s", "noise_51773_3s", "sine_440_3s", "chirp_10s"} <= set(goldens)
    for name, g in goldens.items():
        n = g["patches"].shape[0]
        assert g["patches"].shape[1:] == (96, 64) and g["scores"].shape == (n, 521)
        assert g["embeddings"].shape == (n, 1024) and g["log_mel"].shape[1] == 64
        # The hub frames its patches from its own log-mel: patch i starts at frame 48*i.
        np.testing.assert_array_equal(g["patches"][-1], g["log_mel"][48 * (n - 1):48 * (n - 1) + 96], err_msg=name)


def test_golden_real_clips_present_when_the_data_pack_is():
    if paths.data_dir() is None:
        pytest.skip("../shared/data is not present")
    assert (paths.golden_dir() / "clip_glass_break.npz").is_file()
    assert (paths.golden_dir() / "clip_scream.npz").is_file()


def test_wave_model_matches_tf_scores_and_log_mel(model_dir, goldens):
    wave = WaveModel(model_dir)
    for name, g in goldens.items():
        out = wave(g["waveform"])
        assert out["scores"].shape == g["scores"].shape, name
        assert np.max(np.abs(out["scores"] - g["scores"])) <= 1e-3, name
        # TFLite's RFFT2D rounds differently from TF's FFT: ~1e-4 in mel magnitude, which log(mel + 0.001)
        # magnifies to a few 1e-3 in near-silent bands (measured 4.4e-3 on the chirp).
        assert np.max(np.abs(np.exp(out["log_mel"]) - np.exp(g["log_mel"]))) <= 1e-4, name
        assert np.max(np.abs(out["log_mel"] - g["log_mel"])) <= 1e-2, name


def test_fp16_model_is_about_half_the_float_size(model_dir):
    full = (model_dir / paths.PATCH_TFLITE).stat().st_size
    half = (model_dir / paths.PATCH_TFLITE_FP16).stat().st_size
    assert 6.5e6 < half < 8.5e6 and half < 0.55 * full


def test_manifest_records_source_sha_and_parity(model_dir):
    man = json.loads((model_dir / paths.MANIFEST).read_text())
    assert man["source"]["wheel_sha256"] == paths.WHEEL_SHA256
    assert set(paths.ARTIFACTS) <= set(man["artifacts"])
    assert set(man["parity"]) == {paths.PATCH_ONNX, paths.PATCH_TFLITE, paths.PATCH_TFLITE_FP16, paths.WAVE_TFLITE}


def test_build_is_reproducible_against_the_committed_lock(model_dir):
    from edgert.yamnet import manifest

    lock = manifest.load_lock()
    man = json.loads((model_dir / paths.MANIFEST).read_text())
    assert set(lock) <= set(man["artifacts"])
    built = {k: man["artifacts"][k]["sha256"] for k in lock}
    assert manifest.lock_mismatches(lock, built) == []
    assert set(manifest.lock_mismatches(lock, {k: "0" * 64 for k in lock})) == set(lock)  # a wrong sha is caught


def _verify(env_model_dir=None):
    env = dict(os.environ)
    if env_model_dir is not None:
        env["EDGE_RT_MODEL_DIR"] = str(env_model_dir)
    return subprocess.run([sys.executable, "-m", "edge_rt.models", "verify"], capture_output=True, text=True,
                          env=env, timeout=300)


def test_verify_prints_the_parity_table_and_passes():
    proc = _verify()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "max |Δscore|" in proc.stdout and "yamnet_patch_fp16.tflite" in proc.stdout


def test_verify_exits_nonzero_on_a_corrupted_artifact(model_dir, tmp_path):
    for name in paths.ARTIFACTS + (paths.MANIFEST,):
        shutil.copy2(model_dir / name, tmp_path / name)
    target = tmp_path / paths.PATCH_TFLITE_FP16
    data = bytearray(target.read_bytes())
    data[1000] ^= 0x01
    target.write_bytes(bytes(data))
    proc = _verify(tmp_path)
    assert proc.returncode == 1
    assert "yamnet_patch_fp16.tflite" in proc.stdout and "sha256" in proc.stdout


def test_verify_without_models_says_how_to_build(tmp_path):
    proc = _verify(tmp_path)
    assert proc.returncode == 2
    assert "make setup" in proc.stderr and "Traceback" not in proc.stderr
