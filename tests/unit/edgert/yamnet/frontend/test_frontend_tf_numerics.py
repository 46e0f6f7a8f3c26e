"""Each building block rounds exactly like TF's float32 graph: window, mel matrix, real FFT, log.

These are what make the 1e-4 golden bound reachable: YAMNet's log(mel + 0.001) turns single-ulp differences in
quiet bands of loud frames into 1e-3 errors, so each block is checked bit for bit against TF itself.
"""
from __future__ import annotations

import numpy as np

from edgert.yamnet.frontend import _shared, fallback


def test_hann_window_is_bitwise_tf_periodic_hann_window(tf):
    ref = tf.signal.hann_window(400, periodic=True, dtype=tf.float32).numpy()
    assert np.array_equal(_shared.hann_window(), ref)


def test_mel_matrix_is_bitwise_tf_linear_to_mel_weight_matrix(tf):
    ref = tf.signal.linear_to_mel_weight_matrix(num_mel_bins=64, num_spectrogram_bins=257, sample_rate=16000,
                                                lower_edge_hertz=125.0, upper_edge_hertz=7500.0).numpy()
    ours = _shared.mel_matrix()
    assert ours.shape == (257, 64) and ours.dtype == np.float32
    assert np.array_equal(ours, ref)


def test_mel_bands_hold_every_nonzero_weight_of_the_matrix():
    m, bands = _shared.mel_matrix(), _shared.mel_bands()
    rebuilt = np.zeros_like(m)
    for b in range(64):
        s, n, o = bands.start[b], bands.length[b], bands.offset[b]
        rebuilt[s:s + n, b] = bands.weights[o:o + n]
    assert np.array_equal(rebuilt, m)
    assert bands.first_bin >= 1 and bands.end_bin <= 256  # DC and Nyquist carry no weight


def test_rfft_is_bitwise_tf_rfft_on_random_frames(tf, rng):
    frames = rng.standard_normal((300, 512)).astype(np.float32)
    half = fallback.rfft_halfcomplex(frames)
    ref = tf.signal.rfft(frames, fft_length=[512]).numpy()
    assert np.array_equal(half[:, 0], ref.real[:, 0])
    assert np.array_equal(half[:, 1:511:2], ref.real[:, 1:256])
    assert np.array_equal(half[:, 2:511:2], ref.imag[:, 1:256])
    assert np.array_equal(half[:, 511], ref.real[:, 256])


def test_rfft_matches_numpy_fft_on_random_input(rng):
    frames = rng.standard_normal((200, 512)).astype(np.float32)
    half = fallback.rfft_halfcomplex(frames).astype(np.float64)
    exact = np.fft.rfft(frames.astype(np.float64))
    ours = np.concatenate([half[:, :1], half[:, 1:511:2] + 1j * half[:, 2:511:2], half[:, 511:]], axis=1)
    scale = np.abs(exact).max()
    assert np.abs(ours - exact).max() <= 1e-6 * scale
    assert np.allclose(ours[:, [0, 256]].imag, 0)


def test_rfft_factors_follow_tf_order():
    assert _shared.rfft_factors(512) == [2, 4, 4, 4, 4]
    assert _shared.rfft_factors(256) == [4, 4, 4, 4]
    passes = _shared.rfft_passes(512)
    assert [(p.radix, p.l1, p.ido) for p in passes] == [(4, 128, 1), (4, 32, 4), (4, 8, 16), (4, 2, 64), (2, 1, 256)]


def test_log_is_bitwise_tf_log_on_log_mel_range(tf, rng):
    v = np.concatenate([np.float32(0.001) + rng.random(20000, dtype=np.float32) ** 4 * np.float32(300),
                        np.float32([0.001, 1.0, 2.0, 0.5, 1e-3 + 1e-9])]).astype(np.float32)
    v = v[:v.size // 8 * 8]  # whole SIMD packets, the way TF's kernel sees a [frames, 64] tensor
    assert np.array_equal(_shared.tf_log_f32(v), tf.math.log(v).numpy())


def test_cos_is_bitwise_tf_cos_on_window_angles(tf):
    angles = (np.float32(2 * np.pi) * np.arange(400, dtype=np.float32)) / np.float32(400)
    assert np.array_equal(_shared.tf_cos_f32(angles), tf.math.cos(angles).numpy())
