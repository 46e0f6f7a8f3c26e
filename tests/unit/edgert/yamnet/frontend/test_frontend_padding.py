"""The hub's padding arithmetic: one whole patch at least, then whole patch hops."""
from __future__ import annotations

import numpy as np
import pytest

from edgert.yamnet.frontend import padded_length


@pytest.mark.parametrize("samples, padded", [
    (1, 15600),          # anything shorter than one patch becomes exactly one patch: 95 hops + a window
    (15600, 15600),      # exactly one patch: no padding
    (15601, 23280),      # one sample more starts a second patch hop (15600 + 7680)
    (23280, 23280),
    (48000, 54000),      # 3 s -> 336 frames, as the hub gives
    (160000, 161520),    # 10 s -> 1008 frames, 20 patches
])
def test_padded_length_matches_hand_computed_cases(samples, padded):
    assert padded_length(samples) == padded


def test_padded_length_frames_always_cut_into_whole_patches():
    for n in np.random.default_rng(0).integers(1, 20 * 16000, 200):
        frames = 1 + (padded_length(int(n)) - 400) // 160
        assert frames >= 96 and (frames - 96) % 48 == 0
        assert padded_length(int(n)) >= n


def test_log_mel_pads_short_input_to_one_patch(fe):
    out = fe.log_mel(np.zeros(100, np.float32))
    assert out.shape == (96, 64)
    assert np.all(out == np.float32(np.log(np.float32(0.001))))


def test_log_mel_without_padding_drops_the_incomplete_last_frame(fe):
    assert fe.log_mel(np.zeros(399, np.float32), pad=False).shape == (0, 64)
    assert fe.log_mel(np.zeros(400, np.float32), pad=False).shape == (1, 64)
    assert fe.log_mel(np.zeros(400 + 159, np.float32), pad=False).shape == (1, 64)
    assert fe.log_mel(np.zeros(400 + 160, np.float32), pad=False).shape == (2, 64)


def test_patches_of_fewer_than_96_frames_is_empty(fe):
    assert fe.patches(np.zeros((95, 64), np.float32)).shape == (0, 96, 64)
    assert fe.patches(np.zeros((96, 64), np.float32)).shape == (1, 96, 64)
    assert fe.patches(np.zeros((143, 64), np.float32)).shape == (1, 96, 64)
    assert fe.patches(np.zeros((144, 64), np.float32)).shape == (2, 96, 64)


def test_patches_hop_48_frames_and_copy_the_rows(fe):
    m = np.arange(200 * 64, dtype=np.float32).reshape(200, 64)
    p = fe.patches(m)
    assert p.shape == (3, 96, 64) and p.flags.c_contiguous
    for i in range(3):
        assert np.array_equal(p[i], m[48 * i:48 * i + 96])
    m[:] = 0
    assert p.any()  # a copy, not a view of the caller's array
