"""The CUDA twin: the same API and bits as the CPU twins. GPU tests skip, with the reason, without CuPy/CUDA.

The kernel's arithmetic is also checked on the CPU by compiling cext/frontend.cu as C++ (one thread per block),
so a broken kernel is caught even on machines without a GPU.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgert.errors import FrontendUnavailableError, NonFiniteAudioError, SampleRateError
from edgert.yamnet.frontend import _shared
from edgert.yamnet.params import PARAMS

ROOT = Path(__file__).resolve().parents[5]
KERNEL = ROOT / "cext" / "frontend.cu"


@pytest.fixture(scope="module")
def cuda_fe():
    try:
        from edgert.yamnet.frontend import _cuda
    except FrontendUnavailableError as exc:
        pytest.skip(f"CUDA front end unavailable: {exc}")
    return _cuda


def test_cuda_log_mel_matches_tf_hub_goldens_within_1e_4(cuda_fe, goldens):
    for name, g in goldens.items():
        ours = cuda_fe.log_mel(g["waveform"])
        assert ours.shape == g["log_mel"].shape, name
        assert np.abs(ours - g["log_mel"]).max() <= 1e-4, name
        assert cuda_fe.patches(ours).shape == g["patches"].shape, name


def test_cuda_log_mel_is_bitwise_the_numpy_twin(cuda_fe, numpy_twin, audio):
    for seconds in (0.5, 3.3, 20.0):
        x = audio(seconds)
        assert np.array_equal(cuda_fe.log_mel(x), numpy_twin.log_mel(x))
        assert np.array_equal(cuda_fe.log_mel(x, pad=False), numpy_twin.log_mel(x, pad=False))


def test_cuda_streaming_equals_cuda_batch_for_random_chunkings(cuda_fe, rng, audio):
    x = audio(6.0)
    batch = cuda_fe.patches(cuda_fe.log_mel(x, pad=False))
    for _ in range(5):
        s, at, got = cuda_fe.StreamingFrontend(), 0, []
        for n in rng.integers(1, 40000, 100):
            got.append(s.push(x[at:at + n]))
            at += n
        got.append(s.push(x[at:]))
        assert np.array_equal(np.concatenate(got), batch)


def test_cuda_rejects_bad_input_like_the_cpu(cuda_fe):
    with pytest.raises(NonFiniteAudioError):
        cuda_fe.log_mel(np.full(1000, np.nan, np.float32))
    with pytest.raises(SampleRateError):
        cuda_fe.log_mel(np.zeros(1000, np.float32), sample_rate=44100)


@pytest.fixture(scope="module")
def host_kernel(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to run the CUDA kernel on the host")
    lib = tmp_path_factory.mktemp("cuda_host") / "libyk_host.so"
    cmd = [cxx, "-O1", "-std=c++14", "-ffp-contract=off", "-shared", "-fPIC", f"-DYK_NFFT={PARAMS.fft_length}",
           f"-I{KERNEL.parent}", str(Path(__file__).with_name("cuda_host_shim.cc")), "-o", str(lib)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(lib))


def _host_log_mel(lib, x: np.ndarray) -> np.ndarray:
    """float32[frames, 64] from the CUDA kernel run on the host."""
    n = _shared.num_frames(x.size)
    out = np.empty((n, _shared.NBANDS), np.float32)
    passes = _shared.rfft_passes(_shared.NFFT)
    bands = _shared.mel_bands()
    keep = {
        "window": np.ascontiguousarray(_shared.hann_window()),
        "radix": np.array([p.radix for p in passes], np.int32),
        "l1": np.array([p.l1 for p in passes], np.int32),
        "ido": np.array([p.ido for p in passes], np.int32),
        "wa_off": np.cumsum([0] + [p.twiddles.size for p in passes])[:-1].astype(np.int32),
        "twiddles": np.concatenate([p.twiddles for p in passes] + [np.zeros(1, np.float32)]),
        "start": np.ascontiguousarray(bands.start), "length": np.ascontiguousarray(bands.length),
        "offset": np.ascontiguousarray(bands.offset), "weights": np.ascontiguousarray(bands.weights),
    }
    ptr = {k: v.ctypes.data_as(ctypes.c_void_p) for k, v in keep.items()}
    lib.yk_host_log_mel(x.ctypes.data_as(ctypes.c_void_p), ctypes.c_longlong(n), ctypes.c_int(_shared.WINDOW),
                        ctypes.c_int(_shared.HOP), ptr["window"], ctypes.c_int(len(passes)), ptr["radix"],
                        ptr["l1"], ptr["ido"], ptr["wa_off"], ptr["twiddles"], ctypes.c_int(bands.first_bin),
                        ctypes.c_int(bands.end_bin), ctypes.c_int(_shared.NBANDS), ptr["start"], ptr["length"],
                        ptr["offset"], ptr["weights"], ctypes.c_float(PARAMS.log_offset),
                        out.ctypes.data_as(ctypes.c_void_p))
    return out


def test_cuda_kernel_run_on_the_host_is_bitwise_the_numpy_twin(host_kernel, numpy_twin, audio):
    x = audio(2.0)
    assert np.array_equal(_host_log_mel(host_kernel, x), numpy_twin.log_mel(x, pad=False))


def test_cuda_kernel_run_on_the_host_matches_the_tf_goldens(host_kernel, goldens):
    g = goldens["chirp_10s"]
    x = np.pad(g["waveform"], (0, _shared.padded_length(g["waveform"].size) - g["waveform"].size))
    assert np.abs(_host_log_mel(host_kernel, x) - g["log_mel"]).max() <= 1e-4


class _FakeDeviceArray:
    """Device memory stand-in: a host buffer."""

    def __init__(self, buf: np.ndarray):
        self.buf = buf


def _fake_cupy(lib):
    """A CuPy look-alike whose kernel is the host build of cext/frontend.cu, to test _cuda.py's glue code."""
    import contextlib
    import types

    pkg = types.ModuleType("cupy")
    runtime = types.SimpleNamespace(CUDARuntimeError=type("CUDARuntimeError", (RuntimeError,), {}),
                                    getDeviceCount=lambda: 1)
    driver = types.SimpleNamespace(CUDADriverError=type("CUDADriverError", (RuntimeError,), {}))
    compiler = types.SimpleNamespace(CompileException=type("CompileException", (Exception,), {}))
    pkg.cuda = types.SimpleNamespace(runtime=runtime, driver=driver, compiler=compiler,
                                     Device=lambda index: contextlib.nullcontext())
    pkg.asarray = lambda a: _FakeDeviceArray(np.array(a, copy=True))
    pkg.empty = lambda shape, dtype: _FakeDeviceArray(np.zeros(shape, dtype))
    pkg.asnumpy = lambda a: a.buf.copy()
    ctype = {np.dtype(np.int32): ctypes.c_int, np.dtype(np.int64): ctypes.c_longlong,
             np.dtype(np.float32): ctypes.c_float}

    def launch(grid, block, args):
        assert block[0] > 0 and grid[0] > 0
        for a in args:  # device pointers must be C-contiguous buffers of the kernel's element types
            assert not isinstance(a, np.ndarray), "a host array was passed to the kernel"
        cargs = [a.buf.ctypes.data_as(ctypes.c_void_p) if isinstance(a, _FakeDeviceArray) else ctype[a.dtype](a)
                 for a in args]
        assert len(cargs) == 20, "yk_log_mel takes 20 arguments"
        lib.yk_host_log_mel(*cargs)

    class RawModule:
        def __init__(self, code, options):
            assert "__global__ void yk_log_mel" in code
            assert "--fmad=false" in options and "--ftz=false" in options

        def get_function(self, name):
            assert name == "yk_log_mel"
            return launch

    pkg.RawModule = RawModule
    return pkg


def test_cuda_twin_glue_code_drives_the_kernel_correctly(host_kernel, numpy_twin, audio, monkeypatch):
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(host_kernel))
    monkeypatch.delitem(sys.modules, "edgert.yamnet.frontend._cuda", raising=False)
    cuda_twin = importlib.import_module("edgert.yamnet.frontend._cuda")
    try:
        x = audio(3.1)
        assert np.array_equal(cuda_twin.log_mel(x), numpy_twin.log_mel(x))
        assert np.array_equal(cuda_twin.log_mel(x, pad=False), numpy_twin.log_mel(x, pad=False))
        s, got, at = cuda_twin.StreamingFrontend(), [], 0
        for n in (1, 399, 1121, 160, 20000, 5000, 30000):
            got.append(s.push(x[at:at + n]))
            at += n
        assert np.array_equal(np.concatenate(got), numpy_twin.patches(numpy_twin.log_mel(x[:at], pad=False)))
    finally:  # never leave the fake-backed module behind, neither in sys.modules nor on the package
        sys.modules.pop("edgert.yamnet.frontend._cuda", None)
        import edgert.yamnet.frontend as package
        if getattr(package, "_cuda", None) is cuda_twin:
            delattr(package, "_cuda")
