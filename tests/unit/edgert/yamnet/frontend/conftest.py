"""Front-end fixtures: the implementation under test (chosen by the environment), the two CPU twins, and TF."""
from __future__ import annotations

import os

import numpy as np
import pytest

SR = 16000


@pytest.fixture(scope="session")
def fe():
    """edgert.yamnet.frontend as the environment chose it: Cython normally, numpy under EDGE_RT_PUREPYTHON=1."""
    import edgert.yamnet.frontend as frontend

    return frontend


@pytest.fixture(scope="session")
def numpy_twin():
    from edgert.yamnet.frontend import fallback

    return fallback


@pytest.fixture(scope="session")
def compiled():
    """The compiled module itself, even under EDGE_RT_PUREPYTHON=1 (it is built by `make setup` regardless)."""
    try:
        from edgert.yamnet.frontend import _cfrontend
    except ImportError as exc:
        if os.environ.get("EDGE_RT_PUREPYTHON") == "1":
            pytest.skip(f"the compiled front end is not built in this pure-Python install ({exc})")
        raise
    return _cfrontend


@pytest.fixture(scope="session")
def tf():
    """TensorFlow on one thread: the reference the golden files came from (installed by `make setup`)."""
    tensorflow = pytest.importorskip("tensorflow", reason="TF is the reference for bit-exactness checks")
    try:
        tensorflow.config.threading.set_intra_op_parallelism_threads(1)
        tensorflow.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised by an earlier test
    return tensorflow


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


@pytest.fixture
def audio(rng):
    """audio(seconds, amplitude=0.3) -> float32[seconds * 16 kHz]: noise plus a tone, loud and quiet bands both."""
    def make(seconds: float, amplitude: float = 0.3) -> np.ndarray:
        n = int(round(seconds * SR))
        t = np.arange(n) / SR
        return (amplitude * (0.5 * rng.standard_normal(n) + np.sin(2 * np.pi * 1000.0 * t))).astype(np.float32)

    return make
