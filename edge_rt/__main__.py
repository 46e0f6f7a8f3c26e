"""`python -m edge_rt`: the edge runtime's command line."""
from __future__ import annotations

import argparse
import logging
import sys
import textwrap

from edge_rt.errors import EdgeRtError

EPILOG = textwrap.dedent("""\
    examples:
      python -m edge_rt demo                      # classify the golden signals with every backend
      python -m edge_rt.models verify             # check the model artifacts against TF
    """)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edge_rt", description="Edge acoustic event detection.",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("demo", help="classify the golden signals with every local backend")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.cmd == "demo":
            from edge_rt import demo

            return demo.run()
    except EdgeRtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
