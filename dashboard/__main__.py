"""`python -m dashboard --db URL [--port 8050] [--host 127.0.0.1]`: the web dashboard over the cloud's database.

`python -m dashboard hash-password` prints a password hash for auth.users in the config."""
from __future__ import annotations

import argparse
import getpass
import logging
import signal
import sys

from dashboard.errors import DashboardError

EPILOG = """examples:
  python -m dashboard --db sqlite:///cloud.db                       # http://127.0.0.1:8050
  python -m dashboard --db mysql+pymysql://reader@db/edgert --clips s3://bucket/clips
  python -m dashboard --config dashboard.yaml --host 0.0.0.0         # needs auth.users in the config
  python -m dashboard hash-password                                  # for auth.users: NAME: HASH
"""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m dashboard", description="The web dashboard: map, events, review, "
                                 "statistics, devices.", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML file (keys of dashboard.config.DashboardConfig); env DASHBOARD__KEY")
    ap.add_argument("--db", help="the cloud's database URL (sqlite:///cloud.db or mysql+pymysql://...)")
    ap.add_argument("--clips", help="the cloud's clip store (a folder or s3://bucket/prefix)")
    ap.add_argument("--host", help="listen address (default 127.0.0.1; anything else needs auth.users)")
    ap.add_argument("--port", type=int, help="listen port (default 8050; 0 picks a free one)")
    ap.add_argument("--refresh", type=float, dest="refresh_s", help="live-update period in seconds (default 5)")
    ap.add_argument("-v", "--verbose", action="count", default=0)
    return ap


def hash_password_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashboard hash-password",
                                 description="Read a password (twice, hidden; or one line from a pipe) and print its "
                                             "hash for auth.users.")
    ap.parse_args(argv)
    from dashboard.auth import hash_password

    if sys.stdin.isatty():
        pw = getpass.getpass("password: ")
        if pw != getpass.getpass("again: "):
            print("the two passwords differ", file=sys.stderr)
            return 2
    else:
        pw = sys.stdin.readline().rstrip("\r\n")
    if len(pw) < 8:
        print("a dashboard password needs at least 8 characters", file=sys.stderr)
        return 2
    print(hash_password(pw))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["hash-password"]:
        return hash_password_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from dashboard import config

    try:
        cfg = config.load(args.config, {"db": args.db, "clips": args.clips, "host": args.host, "port": args.port,
                                        "refresh_s": args.refresh_s})
        from dashboard.app import create_app

        app = create_app(cfg)
    except DashboardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from waitress import create_server

    server = create_server(app.server, host=cfg.host, port=cfg.port, threads=8, ident="edgert-dashboard")
    port = server.effective_port
    print(f"dashboard: http://{cfg.host}:{port}/  (database {cfg.db}; Ctrl-C stops)", flush=True)
    def _stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)  # a service manager's stop is a clean stop too
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        from dashboard import data

        data.get().close()
    print("dashboard: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
