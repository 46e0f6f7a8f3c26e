"""Builds the Python code for protos/edgert/v1 into the git-ignored package `edgert` at the repo root.

`python -m cloud_svc.protos_build` (run by `make setup`) is idempotent: it rebuilds only when a .proto
changed since the last build (a sha256 stamp sits beside the generated code).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO / "protos"
PROTO_DIR = PROTO_ROOT / "edgert" / "v1"
OUT_ROOT = REPO  # generated modules are importable as edgert.v1.<name>_pb2
STAMP = ".protos.sha256"


class ProtoBuildError(RuntimeError):
    """protoc failed or is not installed."""


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def digest() -> str:
    h = hashlib.sha256()
    for p in proto_files():
        h.update(p.name.encode())
        h.update(p.read_bytes())
    try:
        import grpc_tools

        h.update(str(getattr(grpc_tools, "__version__", "")).encode())
    except ImportError:
        pass
    return h.hexdigest()


def is_current(out_root: Path = OUT_ROOT) -> bool:
    stamp = out_root / "edgert" / STAMP
    return stamp.is_file() and stamp.read_text().strip() == digest()


def build(out_root: Path = OUT_ROOT, force: bool = False) -> bool:
    """Generate edgert/v1/*_pb2.py and *_pb2_grpc.py; return True when something was rebuilt."""
    if not force and is_current(out_root):
        return False
    try:
        from grpc_tools import protoc
        from importlib import resources
    except ImportError as exc:
        raise ProtoBuildError("grpcio-tools is not installed: run `make setup`") from exc
    files = proto_files()
    if not files:
        raise ProtoBuildError(f"no .proto files in {PROTO_DIR}")
    pkg = out_root / "edgert"
    (pkg / "v1").mkdir(parents=True, exist_ok=True)
    for old in (pkg / "v1").glob("*_pb2*.py"):
        old.unlink()
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={out_root}",
            f"--pyi_out={out_root}", f"--grpc_python_out={out_root}", *[str(p) for p in files]]
    rc = protoc.main(args)
    if rc != 0:
        raise ProtoBuildError(f"protoc failed with exit status {rc}: {' '.join(args[1:])}")
    for d in (pkg, pkg / "v1"):
        (d / "__init__.py").write_text('"""Generated from protos/ by `python -m cloud_svc.protos_build`; '
                                       'never edit or commit."""\n')
    (pkg / STAMP).write_text(digest() + "\n")
    return True


def check_importable() -> str | None:
    """None when the generated code is importable and current, else what to do about it."""
    try:
        import edgert.v1.ingest_pb2  # noqa: F401
    except ImportError as exc:
        return f"the generated gRPC code is missing ({exc}): run `make setup` or `python -m cloud_svc.protos_build`"
    if OUT_ROOT.joinpath("edgert").is_dir() and proto_files() and not is_current():
        return "protos/ changed since the gRPC code was generated: run `python -m cloud_svc.protos_build`"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloud_svc.protos_build", description=__doc__)
    ap.add_argument("--force", action="store_true", help="rebuild even when the stamp is current")
    ap.add_argument("--out", type=Path, default=OUT_ROOT, help="folder that receives the edgert package")
    args = ap.parse_args(argv)
    try:
        rebuilt = build(args.out, args.force)
    except ProtoBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'built' if rebuilt else 'up to date:'} {args.out / 'edgert' / 'v1'} from {PROTO_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
