"""Build the packages and their Cython modules (beside their Python twins; C headers in cext/).

A failed C build fails the install; it never falls back silently. EDGE_RT_PUREPYTHON=1 skips the
compiled modules entirely, and edge_rt then uses the numpy twins.
"""
import os

import numpy
from setuptools import Extension, find_packages, setup

PURE = os.environ.get("EDGE_RT_PUREPYTHON") == "1"
# No -ffast-math and no FP contraction: the front end must round exactly like TF's float32 FFT (no FMA, no
# reassociation), or the hub's log-mel is missed by 4e-3 in quiet bands (see cext/tf_rfft.h). -fno-wrapv undoes
# CPython's -fwrapv, which blocks the kernels' loop optimisations (25% slower); no Cython or kernel code relies on it.
C_FLAGS = ["-O3", "-fno-wrapv", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-std=gnu11"]
if os.uname().machine == "x86_64":
    C_FLAGS.append("-march=x86-64-v3")

# (module, sources, libraries): each Cython module sits beside its numpy/Python twin; the C headers it includes
# (the kernels: FFT, frames, ring) live in cext/.
KERNELS = [
    ("edgert.yamnet.frontend._cfrontend", ["edgert/yamnet/frontend/_cfrontend.pyx"], []),
    ("edge_rt.ring._cring", ["edge_rt/ring/_cring.pyx"], []),
]


def x86_64(*requirements):
    """Requirements that only x86-64 has wheels for (NVIDIA's CUDA runtime wheels, onnxruntime-gpu)."""
    return [f"{r}; platform_machine == 'x86_64'" for r in requirements]


def extensions():
    if PURE or not KERNELS:
        return []
    from Cython.Build import cythonize

    exts = [Extension(name, sources, libraries=libs, include_dirs=[numpy.get_include(), "cext"],
                      extra_compile_args=C_FLAGS, define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])
            for name, sources, libs in KERNELS]
    return cythonize(exts, language_level=3, compiler_directives={"boundscheck": False, "wraparound": False})


setup(
    name="edge-rt",
    version="0.1.0",
    description="Edge acoustic event detection (YAMNet) with a gRPC cloud",
    packages=find_packages(include=["edge_rt*", "cloud_svc*", "dashboard*", "edgert*"]),
    package_data={"edge_rt": ["*.yaml", "config/*.yaml"], "edgert": ["*.yaml"]},
    ext_modules=extensions(),
    python_requires=">=3.10",
    # The GPU stacks: CuPy (the CUDA front end, TensorRT's buffers) and, on x86-64, onnxruntime-gpu (the
    # onnxruntime-gpu backend) with NVIDIA's runtime wheels, each for one CUDA major version; a Jetson (aarch64,
    # JetPack's CUDA) gets CuPy alone. onnxruntime-gpu 1.26.0 is the last built for CUDA 12 on PyPI. It installs the
    # same `onnxruntime` module as the CPU wheel of requirements.lock: uninstall that one first.
    extras_require={
        "gpu": ["cupy-cuda12x==14.2.0", *x86_64("onnxruntime-gpu==1.26.0", "nvidia-cuda-runtime-cu12==12.9.79",
                "nvidia-cuda-nvrtc-cu12==12.9.86", "nvidia-cublas-cu12==12.9.3.13", "nvidia-cufft-cu12==11.4.1.4",
                "nvidia-curand-cu12==10.3.10.19", "nvidia-cudnn-cu12==9.28.0.42", "nvidia-nvjitlink-cu12==12.9.86")],
        "gpu-cuda13": ["cupy-cuda13x==14.2.0", *x86_64("onnxruntime-gpu==1.31.1", "nvidia-cuda-runtime==13.5.37",
                       "nvidia-cuda-nvrtc==13.5.37", "nvidia-cublas==13.10.0.20", "nvidia-cufft==12.5.0.14",
                       "nvidia-curand==10.4.5.25", "nvidia-cudnn-cu13==9.28.1.4", "nvidia-nvjitlink==13.5.37")],
    },
    zip_safe=False,
)
