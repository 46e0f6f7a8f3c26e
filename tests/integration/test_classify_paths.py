"""`python -m edge_rt classify --json` gives the same bytes by every path: the reference (one window per model
call, one process), the default batches across short files, other batch sizes and `--jobs 2`, for every CPU
backend, over the golden signals and the labelled pack. No speed-up may change a result."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from edge_rt.models import golden
from edgert.yamnet import paths

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["onnxruntime", "tflite", "tflite-fp16", "onnxruntime-int8", "tflite-int8"]
FULL_PACK = {"onnxruntime", "tflite", "tflite-fp16"}  # the others classify every 5th file of the pack


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, list[str]]:
    """The golden signals as 16 kHz float WAVs (the TF reference's own waveforms) and, where present, the
    labelled pack: backend-independent path lists, the pack whole and every 5th of its files."""
    files = golden.golden_files()
    if not files:
        pytest.fail(f"no golden files in {paths.golden_dir()}: run `make setup` first")
    folder = tmp_path_factory.mktemp("golden")
    for f in files:
        sf.write(folder / f"{f.stem}.wav", golden.load(f.stem)["waveform"], 16000, subtype="FLOAT")
    data = paths.data_dir()
    pack = sorted(str(p) for p in (data / "audio").rglob("*.wav")) if data is not None else []
    return {"whole": [str(folder), *pack], "fifth": [str(folder), *pack[::5]]}


def classify(backend: str, paths_: list[str], *flags: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "edge_rt", "classify", "--json", "--backend", backend, *flags,
                           *paths_], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_and_parallel_classify_print_the_reference_json_byte_for_byte(inputs, backend):
    files = inputs["whole" if backend in FULL_PACK else "fifth"]
    reference = classify(backend, files, "--batch", "1").stdout
    lines = reference.splitlines()
    assert len(lines) == len(golden.golden_files()) + len(files) - 1 and all(x.startswith('{"file": ') for x in lines)
    assert classify(backend, files).stdout == reference, "the default batches changed a result"
    assert classify(backend, files, "--jobs", "2", "--batch", "7").stdout == reference, \
        "--jobs 2 (batches of 7) changed a result"


def test_jobs_keep_the_order_and_the_failures_of_one_process(tmp_path, inputs):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + bytes(200))
    files = [*inputs["fifth"][:9], str(bad), *inputs["fifth"][9:14]]
    runs = [subprocess.run([sys.executable, "-m", "edge_rt", "classify", "--json", "--backend", "onnxruntime",
                            *flags, *files], cwd=ROOT, capture_output=True, text=True, timeout=600)
            for flags in ([], ["--jobs", "3"])]
    assert [r.returncode for r in runs] == [1, 1]
    assert runs[0].stdout == runs[1].stdout
    for r in runs:
        errors = [x for x in r.stderr.splitlines() if x.startswith("error:")]
        assert len(errors) == 1 and "bad.wav" in errors[0], r.stderr[-2000:]
