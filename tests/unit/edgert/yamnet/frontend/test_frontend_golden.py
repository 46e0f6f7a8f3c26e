"""The front end against TF-Hub YAMNet's own outputs (golden files written by TF, never by us)."""
from __future__ import annotations

import numpy as np
import pytest

from edge_rt.models import golden

TOLERANCE = 1e-4  # the acceptance bound on |ours - TF| in log-mel units
NAMES = [p.stem for p in golden.golden_files()]


def test_golden_files_cover_the_synthetic_and_real_signals():
    assert {"zeros_3s", "noise_51773_3s", "sine_440_3s", "chirp_10s"} <= set(NAMES), NAMES


@pytest.mark.parametrize("name", NAMES)
def test_log_mel_matches_tf_hub_log_mel_within_1e_4(fe, goldens, name):
    g = goldens[name]
    ours = fe.log_mel(g["waveform"])
    assert ours.dtype == np.float32
    assert ours.shape == g["log_mel"].shape  # the hub's padding, reproduced
    assert np.abs(ours - g["log_mel"]).max() <= TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_patches_match_tf_hub_patches_in_shape_count_and_value(fe, goldens, name):
    g = goldens[name]
    ours = fe.patches(fe.log_mel(g["waveform"]))
    assert ours.dtype == np.float32
    assert ours.shape == g["patches"].shape
    assert np.abs(ours - g["patches"]).max() <= TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_padded_length_gives_the_hub_frame_count(fe, goldens, name):
    g = goldens[name]
    padded = fe.padded_length(g["waveform"].size)
    assert 1 + (padded - 400) // 160 == g["log_mel"].shape[0]
