"""The capture-to-inference ring buffer, and the one-time choice of its implementation (C or pure Python).

`RingBuffer` is the compiled C11 lock-free ring (`_cring`) unless EDGE_RT_PUREPYTHON=1 forces the pure-Python
twin (`fallback`). The choice is made once, at import; `IMPLEMENTATION` says which ("c" or "python").
"""
from __future__ import annotations

import importlib
import os

from edge_rt.ring._shared import MAX_CAPACITY

if os.environ.get("EDGE_RT_PUREPYTHON") == "1":
    _impl = importlib.import_module("edge_rt.ring.fallback")
    IMPLEMENTATION = "python"
else:
    try:
        _impl = importlib.import_module("edge_rt.ring._cring")
    except ImportError as exc:  # a missing build is an install error, never a silent slowdown
        raise ImportError("edge_rt.ring._cring is not built: run `make setup` (or pip install -e .), "
                          "or set EDGE_RT_PUREPYTHON=1 to use the pure-Python ring") from exc
    IMPLEMENTATION = "c"

RingBuffer = _impl.RingBuffer

__all__ = ["RingBuffer", "IMPLEMENTATION", "MAX_CAPACITY"]
