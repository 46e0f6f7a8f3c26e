"""StreamingFrontend: any chunking gives exactly the batch patches, each frame computed once, patches on time."""
from __future__ import annotations

import numpy as np
import pytest

from edgert.yamnet.params import PARAMS

MAX_CHUNK = 10 * PARAMS.sample_rate  # the range: 1 sample to 10 s


def push_all(fe, x, sizes):
    s = fe.StreamingFrontend()
    out, at = [], 0
    for n in sizes:
        p = s.push(x[at:at + n])
        assert p.dtype == np.float32 and p.ndim == 3 and p.shape[1:] == (96, 64)
        out.append(p)
        at += n
    assert at == x.size
    return s, np.concatenate(out)


def random_chunking(rng, total):
    """Chunk sizes log-uniform in [1, 10 s], so one sample, one hop and many seconds all occur."""
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(np.exp(rng.uniform(0, np.log(MAX_CHUNK)))))
    sizes[-1] -= sum(sizes) - total
    return [n for n in sizes if n > 0]


def test_streaming_equals_batch_exactly_for_50_random_chunkings(fe, rng, audio):
    x = audio(12.3)
    batch = fe.patches(fe.log_mel(x, pad=False))
    assert batch.shape[0] == 24
    for _ in range(50):
        _, streamed = push_all(fe, x, random_chunking(rng, x.size))
        assert np.array_equal(streamed, batch)


def test_streaming_one_sample_at_a_time_equals_batch(fe, audio):
    x = audio(1.5)
    _, streamed = push_all(fe, x, [1] * x.size)
    assert np.array_equal(streamed, fe.patches(fe.log_mel(x, pad=False)))


def test_streaming_10_ms_hops_and_one_10_s_chunk_equal_batch(fe, audio):
    x = audio(10.0)
    batch = fe.patches(fe.log_mel(x, pad=False))
    _, hops = push_all(fe, x, [160] * (x.size // 160))
    _, whole = push_all(fe, x, [x.size])
    assert np.array_equal(hops, batch) and np.array_equal(whole, batch)


def test_each_stft_frame_is_computed_exactly_once(fe, rng, audio):
    x = audio(3.0)
    frames = 1 + (x.size - 400) // 160  # 298
    for sizes in (random_chunking(rng, x.size), [1] * 20000 + [x.size - 20000], [160] * (x.size // 160)):
        s, out = push_all(fe, x, sizes)
        # Frames are computed in whole groups of 8; the last 298 % 8 wait for more audio (no patch needs them).
        assert s.frames_computed == frames // 8 * 8
        assert s.patches_emitted == out.shape[0] == 1 + (frames - 96) // 48


def test_frames_are_computed_in_groups_as_soon_as_a_group_has_its_samples(fe, audio):
    x = audio(0.2)
    s = fe.StreamingFrontend()
    group_span = 7 * 160 + 400  # 8 frames read 1520 samples
    s.push(x[:group_span - 1])
    assert s.frames_computed == 0
    s.push(x[group_span - 1:group_span])
    assert s.frames_computed == 8
    s.push(x[group_span:group_span + 8 * 160])
    assert s.frames_computed == 16


def test_a_patch_is_emitted_as_soon_as_its_last_frame_exists(fe, audio):
    x = audio(2.0)
    s = fe.StreamingFrontend()
    first_patch = 95 * 160 + 400  # 96 frames need 15600 samples
    assert s.push(x[:first_patch - 1]).shape[0] == 0
    assert s.push(x[first_patch - 1:first_patch]).shape[0] == 1
    second_patch = first_patch + 48 * 160
    assert s.push(x[first_patch:second_patch - 1]).shape[0] == 0
    assert s.push(x[second_patch - 1:second_patch]).shape[0] == 1
    assert s.patches_emitted == 2


def test_reset_starts_a_fresh_stream(fe, audio):
    x = audio(2.0)
    s = fe.StreamingFrontend()
    s.push(audio(0.7))
    s.reset()
    assert s.frames_computed == 0 and s.patches_emitted == 0
    assert np.array_equal(s.push(x), fe.patches(fe.log_mel(x, pad=False)))


def test_an_empty_chunk_returns_no_patches_and_changes_nothing(fe, audio):
    x = audio(1.0)
    s = fe.StreamingFrontend()
    s.push(x[:1000])
    assert s.push(np.zeros(0, np.float32)).shape == (0, 96, 64)
    rest = s.push(x[1000:])
    assert np.array_equal(rest, fe.patches(fe.log_mel(x, pad=False)))


def test_a_rejected_chunk_leaves_the_stream_as_it_was(fe, audio):
    x = audio(1.2)
    s = fe.StreamingFrontend()
    s.push(x[:7000])
    bad = x[7000:9000].copy()
    bad[100] = np.nan
    with pytest.raises(ValueError):
        s.push(bad)
    assert np.array_equal(s.push(x[7000:]), fe.patches(fe.log_mel(x, pad=False)))


def test_streaming_keeps_no_view_of_the_callers_buffer(fe, audio):
    x = audio(1.0)
    s = fe.StreamingFrontend()
    buf = x[:15000].copy()
    s.push(buf)  # leaves a tail of samples inside the stream
    buf[:] = 0.0
    assert np.array_equal(s.push(x[15000:]), fe.patches(fe.log_mel(x, pad=False)))
