#!/usr/bin/env bash
# The GPU checks, in one go on a CUDA machine, from the repo root: build the Cython kernels for this Python, run the
# front-end tests (the CUDA ones run instead of skipping) and benchmark the CUDA front end against the Cython one.
# Needs numpy, scipy, Cython, pytest and CuPy (pip install '.[gpu]'), and the golden files made by `make setup`
# (tests/golden). Logs go to $OUT (default /tmp/gpu_check).
set -uo pipefail
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi -L
$PY -c "import sys, numpy, cupy; print('python', sys.version.split()[0], 'numpy', numpy.__version__, 'cupy', cupy.__version__)"
if ! $PY setup.py -q build_ext --inplace >"$OUT/build.log" 2>&1; then
    tail -20 "$OUT/build.log"; echo "Cython build failed; the CPU peer falls back to the numpy twin"
fi
$PY -m pytest -q -p no:cacheprovider -rs tests/unit/edgert/yamnet/frontend 2>&1 | tee "$OUT/pytest.log"
rc=${PIPESTATUS[0]}
$PY bench/frontend_cuda.py --markdown 2>&1 | tee "$OUT/bench.md"
brc=${PIPESTATUS[0]}
echo "pytest rc=$rc bench rc=$brc"
exit $(( rc != 0 || brc != 0 ))
