"""Two threads push 10^8 samples through the ring: nothing is reordered, duplicated, or lost uncounted.

Each sample carries its sequence number exactly, as the bits of a float32 (uint32 viewed as float32; the ring
only copies bits). The consumer starts only once the producer has written twice the capacity (so the overrun
path always runs); then the producer alternates paced stretches (like a capture device, so most samples get
through) with unpaced bursts (so the ring overflows again whenever the consumer lags). The consumer checks that
what it reads is strictly increasing;
at the end, samples received plus samples counted as overruns must equal samples pushed.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

TOTAL = 10**8
CAPACITY = 1 << 18
MAX_CHUNK = 1 << 16
BURST_EVERY = 20  # out of each BURST_EVERY chunks, the last few are written without pacing


@pytest.mark.timeout(120)
def test_ring_loses_nothing_uncounted_under_two_threads_and_10e8_samples(Ring):
    ring = Ring(CAPACITY)
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, MAX_CHUNK + 1, size=4 * TOTAL // MAX_CHUNK)  # mean MAX_CHUNK / 2: enough for TOTAL
    done = threading.Event()  # the producer has pushed everything
    failed = threading.Event()  # the consumer found a fault and stopped
    go = threading.Event()  # the consumer starts only after the producer has overfilled the ring once
    failure = []
    received = [0]

    def produce():
        at, i = 0, 0
        try:
            while at < TOTAL:
                n = int(min(sizes[i], TOTAL - at))
                chunk = np.arange(at, at + n, dtype=np.uint32).view(np.float32)
                ring.write(chunk)  # never blocks; what does not fit is counted
                at += n
                i += 1
                if at >= 2 * CAPACITY:
                    go.set()  # the ring has certainly overflowed by now, whatever the scheduler did
                if go.is_set() and i % BURST_EVERY < BURST_EVERY - 3:  # paced, like a device: let the consumer catch up
                    while ring.available > CAPACITY // 2 and not failed.is_set():
                        time.sleep(0.0001)
        finally:
            go.set()
            done.set()

    def consume():
        out = np.empty(MAX_CHUNK, np.float32)
        go.wait()
        last = -1
        reads = 0
        while True:
            finished = done.is_set()
            n = ring.read_into(out)
            if n:
                v = out[:n].view(np.uint32).astype(np.int64)
                if v[0] <= last or np.any(v[1:] <= v[:-1]):
                    failure.append(f"out of order or duplicated near sequence {last}")
                    failed.set()
                    return
                last = int(v[-1])
                received[0] += n
                reads += 1
                if reads % 97 == 0:
                    time.sleep(0.002)  # a slow inference step: the producer must not wait for it
            elif finished:
                return

    threads = [threading.Thread(target=produce, daemon=True), threading.Thread(target=consume, daemon=True)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=110)
    elapsed = time.perf_counter() - t0
    assert not any(t.is_alive() for t in threads), "the test hung"
    assert not failure, failure[0]
    assert received[0] + ring.overruns == TOTAL, (received[0], ring.overruns)
    assert ring.written == received[0] == ring.consumed
    assert ring.overruns > 0, "bursts never overflowed the ring: the overrun path went untested"
    assert received[0] > TOTAL // 4, "too few samples got through to prove the normal path"
    print(f"{type(ring).__module__}: {received[0]} received, {ring.overruns} overruns, {elapsed:.1f} s")
