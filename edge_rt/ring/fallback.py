"""The pure-Python twin of the compiled ring buffer: the same class, names and errors, over a numpy array.

It relies on the GIL instead of C11 atomics: the producer copies samples before it publishes the new write
position, and the consumer copies before it publishes the new read position, each a single attribute store.
"""
from __future__ import annotations

import numpy as np

from edge_rt.ring import _shared

__all__ = ["RingBuffer"]


class RingBuffer:
    """A fixed-capacity ring of float32 samples for one producer thread (capture) and one consumer (inference).

    write() never blocks: what does not fit is dropped and counted in `overruns`. Reads never block either.
    With window/hop set at construction, read_window() returns overlapping windows (hop < window) or
    back-to-back ones (hop == window). A producer and a consumer may call concurrently; two producers (or two
    consumers) may not.
    """

    def __init__(self, capacity, *, window=None, hop=None):
        cap, win, step = _shared.check_shape(capacity, window, hop)
        self._data = np.empty(cap, np.float32)
        self._write_pos = 0  # samples ever accepted; stored by the producer only
        self._read_pos = 0  # samples ever consumed; stored by the consumer only
        self._overruns = 0
        self.capacity, self.window, self.hop = cap, win, step

    def write(self, samples):
        """Producer: append float32[n]; returns how many were kept (the rest count as overruns)."""
        x = _shared.check_samples(samples)
        w = self._write_pos
        take = min(x.shape[0], self.capacity - (w - self._read_pos))
        at = w % self.capacity
        first = min(self.capacity - at, take)
        self._data[at:at + first] = x[:first]
        self._data[:take - first] = x[first:take]
        self._write_pos = w + take  # publish only after the copy
        if take < x.shape[0]:
            self._overruns += x.shape[0] - take
        return take

    def _peek(self, out: np.ndarray, n: int) -> int:
        r = self._read_pos
        take = min(n, self._write_pos - r)
        at = r % self.capacity
        first = min(self.capacity - at, take)
        out[:first] = self._data[at:at + first]
        out[first:take] = self._data[:take - first]
        return take

    def read(self, max_samples=None):
        """Consumer: take up to max_samples waiting samples (all of them when None): float32[k], k >= 0."""
        limit = _shared.check_max(max_samples)
        n = self.available if limit is None else min(limit, self.available)
        out = np.empty(n, np.float32)
        self._read_pos += self._peek(out, n)
        return out

    def read_into(self, out):
        """Consumer: move up to len(out) waiting samples into float32[n] `out`; returns how many."""
        _shared.check_out(out)
        got = self._peek(out, out.shape[0])
        self._read_pos += got
        return got

    def read_window(self, out=None):
        """Consumer: when `window` samples wait, return them (float32[window], into `out` when given) and consume
        `hop` of them, so consecutive windows overlap by window - hop; otherwise return None."""
        _shared.check_has_window(self.window)
        if out is None:
            out = np.empty(self.window, np.float32)
        else:
            _shared.check_out(out, self.window)
        if self._write_pos - self._read_pos < self.window:
            return None
        self._peek(out, self.window)
        self._read_pos += self.hop
        return out[:self.window]

    @property
    def available(self):
        """Samples waiting to be read."""
        return self._write_pos - self._read_pos

    @property
    def overruns(self):
        """Samples dropped because the ring was full when they arrived."""
        return self._overruns

    @property
    def written(self):
        """Samples ever accepted by write()."""
        return self._write_pos

    @property
    def consumed(self):
        """Samples ever consumed by the reads."""
        return self._read_pos

    def __repr__(self):
        return (f"RingBuffer(capacity={self.capacity}, window={self.window or None}, hop={self.hop or None}, "
                f"available={self.available}, overruns={self.overruns})")
