"""The artifact manifest: sha256 of every model file, where it came from, and its parity at build time."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from edgert.errors import ModelIntegrityError, ModelMissingError
from edgert.yamnet import paths


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def load(model_dir: Path) -> dict[str, Any]:
    path = model_dir / paths.MANIFEST
    if not path.is_file():
        raise ModelMissingError(f"no model manifest at {path}: {paths.BUILD_HINT}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelIntegrityError(f"model manifest {path} is not valid JSON ({exc}): {paths.BUILD_HINT}") from exc


def save(model_dir: Path, manifest: dict[str, Any]) -> None:
    path = model_dir / paths.MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def load_lock() -> dict[str, list[str]]:
    """artifact -> the sha256 values a reproducible build may produce.

    The TFLite converter folds constants with the build CPU's own vector kernels, so an AVX2 and an AVX-512
    host each reproduce their own bytes exactly; the lock lists one value per such CPU family.
    """
    path = paths.REPO_ROOT / "models" / paths.LOCK
    if not path.is_file():
        return {}
    return {n: [v] if isinstance(v, str) else list(v) for n, v in json.loads(path.read_text())["sha256"].items()}


def lock_mismatches(lock: dict[str, list[str]], shas: dict[str, str]) -> list[str]:
    """Names in `shas` whose sha256 the lock lists but does not accept."""
    return [n for n, sha in shas.items() if n in lock and sha not in lock[n]]


def check_artifact(model_dir: Path, name: str, manifest: dict[str, Any] | None = None) -> str:
    """Return the sha256 of artifact `name`, raising a clear error if it is missing or not the built one."""
    path = model_dir / name
    if not path.is_file():
        raise ModelMissingError(f"model file {path} does not exist: {paths.BUILD_HINT}")
    manifest = manifest if manifest is not None else load(model_dir)
    entry = manifest.get("artifacts", {}).get(name)
    if entry is None:
        raise ModelIntegrityError(f"{name} is not listed in {model_dir / paths.MANIFEST}: {paths.BUILD_HINT}")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise ModelIntegrityError(
            f"{path} is corrupted or was replaced: sha256 {actual[:16]}… but the manifest says "
            f"{entry['sha256'][:16]}…; rebuild with `python -m edge_rt.models build --force`"
        )
    return actual


def calibration_entry(model_dir: Path) -> dict[str, Any]:
    """The shipped detector calibration (edgert/calibration.yaml): its sha256 and the head it was made for,
    set against the head built in `model_dir`."""
    from edgert.labels import CALIBRATION_FILE, calibration_path
    from edgert.settings import parse_yaml

    ref = calibration_path()
    if not ref.is_file():
        return {"file": CALIBRATION_FILE, "present": False}
    text = ref.read_bytes()
    prov = (parse_yaml(text) or {}).get("calibration", {})
    head = model_dir / "distress_head.npz"
    built = sha256_file(head) if head.is_file() else None
    return {"file": CALIBRATION_FILE, "present": True, "sha256": hashlib.sha256(text).hexdigest(),
            "seed": prov.get("seed"), "head_sha256": prov.get("head_sha256"), "built_head_sha256": built,
            "matches_head": prov.get("head_sha256") == built}
