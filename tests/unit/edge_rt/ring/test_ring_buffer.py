"""RingBuffer behaviour, the same for the C ring and its Python twin: checks, order, overruns, overlap windows."""
from __future__ import annotations

import numpy as np
import pytest

from edge_rt.errors import EdgeRtError, RingBufferError
from edge_rt.ring import MAX_CAPACITY
from edgert.errors import InputShapeError


def seq(a, b):
    return np.arange(a, b, dtype=np.float32)


@pytest.mark.parametrize("capacity", [0, -1, 1.5, True, "10", None, MAX_CAPACITY + 1])
def test_a_bad_capacity_is_refused_at_construction(Ring, capacity):
    with pytest.raises(RingBufferError, match="capacity"):
        Ring(capacity)
    assert issubclass(RingBufferError, EdgeRtError)


@pytest.mark.parametrize("kwargs, word", [
    ({"window": 11}, "window"),       # a window larger than the ring could never fill
    ({"window": 0}, "window"),
    ({"window": 5, "hop": 0}, "hop"),
    ({"window": 5, "hop": 6}, "hop"),  # a hop beyond the window would skip samples
    ({"hop": 3}, "window"),            # a hop alone means nothing
    ({"window": 4.0}, "window"),
])
def test_bad_window_arguments_are_refused_at_construction(Ring, kwargs, word):
    with pytest.raises(RingBufferError, match=word):
        Ring(10, **kwargs)


def test_samples_come_out_in_order_across_the_wrap(Ring):
    r = Ring(10)
    assert r.capacity == 10
    assert r.write(seq(0, 7)) == 7
    assert np.array_equal(r.read(5), seq(0, 5))
    assert r.write(seq(7, 14)) == 7  # wraps around the end of the storage
    assert r.available == 9
    assert np.array_equal(r.read(), seq(5, 14))
    assert r.available == 0 and r.written == 14 and r.consumed == 14 and r.overruns == 0


def test_a_full_ring_keeps_what_fits_and_counts_the_rest_as_overruns(Ring):
    r = Ring(8)
    assert r.write(seq(0, 5)) == 5
    assert r.write(seq(5, 10)) == 3
    assert r.overruns == 2
    assert r.write(seq(10, 1000)) == 0  # never blocks, never overwrites unread samples
    assert r.overruns == 2 + 990
    assert np.array_equal(r.read(), seq(0, 8))


def test_read_limits_and_empty_reads(Ring):
    r = Ring(16)
    assert r.read().shape == (0,) and r.read().dtype == np.float32
    r.write(seq(0, 10))
    assert np.array_equal(r.read(3), seq(0, 3))
    assert np.array_equal(r.read(0), seq(0, 0))
    assert np.array_equal(r.read(100), seq(3, 10))
    with pytest.raises(RingBufferError):
        r.read(-1)


def test_read_into_moves_up_to_the_buffer_length(Ring):
    r = Ring(16)
    r.write(seq(0, 10))
    out = np.full(4, -1, np.float32)
    assert r.read_into(out) == 4 and np.array_equal(out, seq(0, 4))
    big = np.full(20, -1, np.float32)
    assert r.read_into(big) == 6 and np.array_equal(big[:6], seq(4, 10))
    with pytest.raises(InputShapeError):
        r.read_into(np.zeros(4, np.float64))
    with pytest.raises(InputShapeError):
        r.read_into(np.zeros(8, np.float32)[::2])


def test_read_window_returns_overlapping_windows(Ring):
    r = Ring(32, window=8, hop=3)
    assert (r.window, r.hop) == (8, 3)
    r.write(seq(0, 7))
    assert r.read_window() is None  # not enough yet, and nothing consumed
    assert r.available == 7
    r.write(seq(7, 20))
    windows = []
    while (w := r.read_window()) is not None:
        windows.append(w.copy())
    assert [list(w) for w in windows] == [list(seq(s, s + 8)) for s in (0, 3, 6, 9, 12)]
    assert r.available == 20 - 15  # the overlap stays for the next window


def test_read_window_with_hop_equal_to_window_is_back_to_back(Ring):
    r = Ring(32, window=4)
    assert r.hop == 4
    r.write(seq(0, 12))
    out = np.empty(4, np.float32)
    got = [r.read_window(out).copy() for _ in range(3)]
    assert np.array_equal(np.concatenate(got), seq(0, 12))
    assert r.read_window(out) is None


def test_read_window_needs_a_window_and_a_big_enough_out(Ring):
    with pytest.raises(RingBufferError, match="window"):
        Ring(8).read_window()
    r = Ring(8, window=4, hop=2)
    r.write(seq(0, 8))
    with pytest.raises(InputShapeError):
        r.read_window(np.empty(3, np.float32))


@pytest.mark.parametrize("bad", [np.zeros(4, np.float64), np.zeros(4, np.int16), np.zeros((2, 2), np.float32),
                                 [0.0, 1.0], 3.0])
def test_write_takes_only_float32_vectors(Ring, bad):
    r = Ring(8)
    with pytest.raises(InputShapeError, match="float32"):
        r.write(bad)
    assert r.written == 0 and r.overruns == 0


def test_write_accepts_strided_float32_and_empty_chunks(Ring):
    r = Ring(8)
    assert r.write(seq(0, 8)[::2]) == 4
    assert r.write(seq(0, 0)) == 0
    assert np.array_equal(r.read(), np.float32([0, 2, 4, 6]))


def test_repr_shows_the_state(Ring):
    r = Ring(8, window=4, hop=2)
    r.write(seq(0, 10))
    assert "capacity=8" in repr(r) and "overruns=2" in repr(r)




def test_the_c_ring_releases_the_gil_while_it_copies():
    import os
    import sys
    import threading
    import time

    try:
        from edge_rt.ring._cring import RingBuffer
    except ImportError:
        if os.environ.get("EDGE_RT_PUREPYTHON") == "1":
            pytest.skip("the C ring is not built in this pure-Python install")
        raise
    n = 1 << 25  # 128 MiB: a copy of tens of milliseconds
    ring, chunk = RingBuffer(n), np.ones(n, np.float32)
    done, ticks = threading.Event(), [0]

    def spin():
        while not done.is_set():
            ticks[0] += 1

    interval = sys.getswitchinterval()
    # With a long switch interval, a thread holding the GIL is not asked to drop it during the copy: the spinner
    # can only advance while write() runs if write() itself released the GIL.
    sys.setswitchinterval(0.5)
    spinner = threading.Thread(target=spin)
    try:
        spinner.start()
        while ticks[0] == 0:
            time.sleep(0.001)
        before = ticks[0]
        ring.write(chunk)
        after = ticks[0]
    finally:
        done.set()
        sys.setswitchinterval(interval)
        spinner.join()
    assert after > before, "no other thread ran while the ring copied 128 MiB: the GIL was held"
