"""The compiled module and its numpy twin: the same names, signatures and bits on random input."""
from __future__ import annotations

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

PUBLIC = ["log_mel", "patches", "StreamingFrontend"]


def _params(obj):
    return [(p.name, p.kind, p.default) for p in inspect.signature(obj).parameters.values()]


def test_twins_export_the_same_names_with_the_same_signatures(compiled, numpy_twin):
    assert set(PUBLIC) <= set(compiled.__all__) and set(PUBLIC) <= set(numpy_twin.__all__)
    for name in ("log_mel", "patches"):
        assert _params(getattr(compiled, name)) == _params(getattr(numpy_twin, name)), name
    for method in ("push", "reset"):
        assert _params(getattr(compiled.StreamingFrontend, method)) == \
            _params(getattr(numpy_twin.StreamingFrontend, method)), method
    # A compiled class's __init__ has no introspectable signature: prove the same constructor by behaviour.
    for twin in (compiled, numpy_twin):
        twin.StreamingFrontend()
        twin.StreamingFrontend(sample_rate=16000)
        with pytest.raises(TypeError):
            twin.StreamingFrontend(16000)  # sample_rate is keyword-only in both


@pytest.mark.parametrize("seconds", [0.03, 0.5, 0.975, 3.7, 11.0])
@pytest.mark.parametrize("pad", [True, False])
def test_twins_give_identical_log_mel_on_random_input(compiled, numpy_twin, rng, seconds, pad, audio):
    x = audio(seconds, amplitude=float(rng.uniform(0.01, 1.0)))
    a, b = compiled.log_mel(x, pad=pad), numpy_twin.log_mel(x, pad=pad)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
    assert np.array_equal(a, b)  # same float32 operations in the same order: not just close, equal


def test_twins_give_identical_patches_and_streams(compiled, numpy_twin, rng, audio):
    x = audio(4.0)
    lm = compiled.log_mel(x)
    assert np.array_equal(compiled.patches(lm), numpy_twin.patches(lm))
    sizes = rng.integers(1, 9000, 200)
    outs = []
    for twin in (compiled, numpy_twin):
        s, at, got = twin.StreamingFrontend(), 0, []
        for n in sizes:
            got.append(s.push(x[at:at + n]))
            at += n
        outs.append(np.concatenate(got))
    assert np.array_equal(*outs)


def _implementation(env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("EDGE_RT_PUREPYTHON", "EDGE_RT_FRONTEND")}
    env.update(env_extra)
    code = "import edgert.yamnet.frontend as f, edge_rt.ring as r; print(f.IMPLEMENTATION, r.IMPLEMENTATION)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_purepython_env_forces_the_numpy_twins_even_with_the_build_present(compiled):
    assert _implementation({"EDGE_RT_PUREPYTHON": "1"}) == ["numpy", "python"]
    assert _implementation({}) == ["cython", "c"]


def test_cuda_is_chosen_only_when_requested_and_available(compiled):
    from edgert.errors import FrontendUnavailableError

    try:
        from edgert.yamnet.frontend import _cuda  # noqa: F401
        expected = "cuda"
    except FrontendUnavailableError:  # no CuPy, no device or no NVRTC: the compiled module stays
        expected = "cython"
    assert _implementation({"EDGE_RT_FRONTEND": "cuda"})[0] == expected
    assert _implementation({})[0] == "cython"
    assert _implementation({"EDGE_RT_FRONTEND": "numpy"})[0] == "numpy"


def test_implementation_names_the_module_in_use(fe):
    expected = "numpy" if os.environ.get("EDGE_RT_PUREPYTHON") == "1" else "cython"
    if os.environ.get("EDGE_RT_FRONTEND") == "cuda":
        pytest.skip("the CUDA choice is covered by test_cuda_is_chosen_only_when_requested_and_available")
    assert fe.IMPLEMENTATION == expected
    module = {"numpy": "edgert.yamnet.frontend.fallback", "cython": "edgert.yamnet.frontend._cfrontend"}[expected]
    assert fe.log_mel.__module__ == module or getattr(fe.log_mel, "__module__", None) == module


def test_twins_agree_even_when_an_absurdly_loud_input_overflows(compiled, numpy_twin, audio):
    x = audio(1.0) * np.float32(1e30)  # finite samples whose power overflows float32
    a, b = compiled.log_mel(x), numpy_twin.log_mel(x)
    assert not np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)  # the same inf and NaN positions
