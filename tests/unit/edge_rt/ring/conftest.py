"""Ring buffer fixtures: every test runs against the C ring and its pure-Python twin."""
from __future__ import annotations

import os

import pytest


def _c_ring():
    try:
        from edge_rt.ring._cring import RingBuffer
    except ImportError as exc:
        if os.environ.get("EDGE_RT_PUREPYTHON") == "1":
            pytest.skip(f"the C ring is not built in this pure-Python install ({exc})")
        raise
    return RingBuffer


def _python_ring():
    from edge_rt.ring.fallback import RingBuffer

    return RingBuffer


@pytest.fixture(params=["c", "python"])
def Ring(request):
    return _c_ring() if request.param == "c" else _python_ring()
