# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled ring buffer: a C11 lock-free SPSC ring of float32 samples between capture and inference."""
from libc.stdint cimport uint64_t

import numpy as np

from edge_rt.ring import _shared

__all__ = ["RingBuffer"]


cdef extern from "ring.h" nogil:
    ctypedef struct edge_ring:
        pass
    edge_ring *edge_ring_new(uint64_t capacity)
    void edge_ring_free(edge_ring *r)
    uint64_t edge_ring_available(edge_ring *r)
    uint64_t edge_ring_overruns(edge_ring *r)
    uint64_t edge_ring_written(edge_ring *r)
    uint64_t edge_ring_consumed(edge_ring *r)
    uint64_t edge_ring_write(edge_ring *r, const float *src, uint64_t n)
    uint64_t edge_ring_read(edge_ring *r, float *dst, uint64_t n)
    int edge_ring_read_window(edge_ring *r, float *dst, uint64_t window, uint64_t hop)


cdef class RingBuffer:
    """A fixed-capacity ring of float32 samples for one producer thread (capture) and one consumer (inference).

    write() never blocks: what does not fit is dropped and counted in `overruns`. Reads never block either.
    With window/hop set at construction, read_window() returns overlapping windows (hop < window) or
    back-to-back ones (hop == window). Every call releases the GIL while it copies samples. A producer and a
    consumer may call concurrently; two producers (or two consumers) may not.
    """

    cdef edge_ring *_r
    cdef readonly uint64_t capacity
    cdef readonly uint64_t window
    cdef readonly uint64_t hop

    def __cinit__(self, capacity, *, window=None, hop=None):
        cap, win, step = _shared.check_shape(capacity, window, hop)
        self._r = edge_ring_new(cap)
        if self._r == NULL:
            raise MemoryError(f"could not allocate a ring of {cap} samples")
        self.capacity, self.window, self.hop = cap, win, step

    def __dealloc__(self):
        edge_ring_free(self._r)

    def write(self, samples):
        """Producer: append float32[n]; returns how many were kept (the rest count as overruns)."""
        x = _shared.check_samples(samples)
        cdef const float[::1] v = x
        cdef uint64_t n = v.shape[0], kept
        if n == 0:
            return 0
        with nogil:
            kept = edge_ring_write(self._r, &v[0], n)
        return kept

    def read(self, max_samples=None):
        """Consumer: take up to max_samples waiting samples (all of them when None): float32[k], k >= 0."""
        limit = _shared.check_max(max_samples)
        cdef uint64_t n = edge_ring_available(self._r)
        if limit is not None and limit < n:
            n = limit
        out = np.empty(n, np.float32)
        if n == 0:
            return out
        cdef float[::1] o = out
        with nogil:
            n = edge_ring_read(self._r, &o[0], n)
        return out

    def read_into(self, out):
        """Consumer: move up to len(out) waiting samples into float32[n] `out`; returns how many."""
        _shared.check_out(out)
        cdef float[::1] o = out
        cdef uint64_t got = 0
        if o.shape[0] == 0:
            return 0
        with nogil:
            got = edge_ring_read(self._r, &o[0], o.shape[0])
        return got

    def read_window(self, out=None):
        """Consumer: when `window` samples wait, return them (float32[window], into `out` when given) and consume
        `hop` of them, so consecutive windows overlap by window - hop; otherwise return None."""
        _shared.check_has_window(self.window)
        if out is None:
            out = np.empty(self.window, np.float32)
        else:
            _shared.check_out(out, self.window)
        cdef float[::1] o = out
        cdef int ok
        with nogil:
            ok = edge_ring_read_window(self._r, &o[0], self.window, self.hop)
        return out[:self.window] if ok else None

    @property
    def available(self):
        """Samples waiting to be read."""
        return edge_ring_available(self._r)

    @property
    def overruns(self):
        """Samples dropped because the ring was full when they arrived."""
        return edge_ring_overruns(self._r)

    @property
    def written(self):
        """Samples ever accepted by write()."""
        return edge_ring_written(self._r)

    @property
    def consumed(self):
        """Samples ever consumed by the reads."""
        return edge_ring_consumed(self._r)

    def __repr__(self):
        return (f"RingBuffer(capacity={self.capacity}, window={self.window or None}, hop={self.hop or None}, "
                f"available={self.available}, overruns={self.overruns})")
