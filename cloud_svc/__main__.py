"""`python -m cloud_svc`: the cloud's command line (serve, migrate, manage devices, query, verify, models)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from cloud_svc.errors import CloudError
from edgert.errors import CoreError

DEFAULT_SERVER = os.environ.get("CLOUD_SVC_SERVER", "127.0.0.1:50051")

EPILOG = textwrap.dedent("""\
    examples:
      python -m cloud_svc serve --db sqlite:///cloud.db --listen 0.0.0.0:50051
      python -m cloud_svc serve --db mysql+pymysql://edge@db/edgert --listen :50051 --verify-workers 2
      python -m cloud_svc db upgrade --db mysql+pymysql://root@127.0.0.1:3306/edgert
      python -m cloud_svc devices add lamp-17 --db sqlite:///cloud.db     # the token is the last line
      python -m cloud_svc devices revoke lamp-17 --db sqlite:///cloud.db
      python -m cloud_svc users add ann --role reader --db sqlite:///cloud.db  # a Query token, the last line
      export CLOUD_SVC_QUERY_TOKEN=erq_...                               # then events, alerts, clip, devices
      python -m cloud_svc devices --server 127.0.0.1:50051               # health table
      python -m cloud_svc events --server 127.0.0.1:50051 --label glass_break --since -1h --json
      python -m cloud_svc events --bbox 52.4,13.2,52.6,13.6 --verified disagree
      python -m cloud_svc alerts --follow
      python -m cloud_svc clip lamp-17 --seq 42 -o event.flac
      python -m cloud_svc verify --db mysql+pymysql://edge@db/edgert --verifier yamnet --workers 2
      python -m cloud_svc models fetch vggish
      python -m cloud_svc export-labels --db sqlite:///cloud.db --since 7d fleet-labels/
      python -m cloud_svc mqtt --db sqlite:///cloud.db --broker mqtt://ha.local:1883 --username edgert
      python -m edge_rt calibrate --extra fleet-labels/          # (on a build machine) learn from the reviews
    """)


# ---------------------------------------------------------------------------------------------- helpers
def parse_time(text: Optional[str]) -> int:
    """ns since the epoch from '1732550000000000000', '2025-11-25T17:00:00Z' or a relative '-15m' / '-2h'."""
    if not text:
        return 0
    t = text.strip()
    if re.fullmatch(r"\d{12,}", t):
        return int(t)
    m = re.fullmatch(r"-?(\d+(?:\.\d+)?)([smhd])", t)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return time.time_ns() - int(float(m.group(1)) * unit * 1e9)
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (ns, ISO 8601 or -15m/-2h/-1d)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1e9)


def when(text: str) -> int:
    """An argparse type: `parse_time` that refuses an empty value (it would mean "since 1970")."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty: give an ISO date/time (2025-11-25, 2025-11-25T17:00Z), ns since "
                                         "the epoch, or a duration ago (7d, 12h, 30m)")
    return parse_time(text)


def fmt_ns(ns: Optional[int]) -> str:
    if not ns:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A plain text table: columns are (header, key)."""
    cells = [[h for h, _ in columns]] + [[_cell(r.get(k)) for _, k in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, (list, tuple)):
        return ",".join(_cell(x) for x in v)
    return str(v)


def _bbox(text: str) -> tuple[float, float, float, float]:
    try:
        a, b, c, d = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("--bbox is MIN_LAT,MIN_LON,MAX_LAT,MAX_LON") from None
    return a, b, c, d


def _client(args):
    from cloud_svc.client import QueryClient

    tls = {k: v for k, v in (("ca", args.tls_ca), ("cert", args.tls_cert), ("key", args.tls_key)) if v}
    return QueryClient(args.server, token=args.token, **tls)


def _store(url: str):
    from cloud_svc.store import Store

    return Store.open(url)


# ---------------------------------------------------------------------------------------------- commands
def cmd_serve(args) -> int:
    from cloud_svc import config
    from cloud_svc.server import serve_forever

    cfg = config.load(args.config, {
        "db": args.db, "listen": args.listen, "clips": args.clips, "open_query": True if args.open_query else None,
        "verify.workers": args.verify_workers, "verify.verifier": args.verifier,
        "tls.cert": args.tls_cert, "tls.key": args.tls_key, "tls.client_ca": args.tls_client_ca,
        "fleet.process": True if args.fleet_process else None, "fleet.enabled": False if args.no_fleet else None,
        "notify.mqtt.broker": args.mqtt})
    if not cfg.open_query:
        _require_query_user(cfg.db, migrate=not args.no_migrate)
    host = cfg.listen.rsplit(":", 1)[0]
    # The bound port on its own line, so that scripts that asked for port 0 can find it.
    serve_forever(cfg, migrate=not args.no_migrate, procs=args.procs,
                  on_started=lambda port: print(f"listening on {host}:{port}", flush=True))
    return 0


def cmd_mqtt(args) -> int:
    import signal
    import threading

    from cloud_svc import config, notify
    from cloud_svc.errors import ConfigError
    from cloud_svc.store import Store

    cfg = config.load(args.config, {
        "db": args.db, "notify.mqtt.broker": args.broker, "notify.mqtt.prefix": args.prefix,
        "notify.mqtt.username": args.username, "notify.mqtt.password": args.password,
        "notify.mqtt.client_id": args.client_id, "notify.mqtt.tls_ca": args.tls_ca,
        "notify.mqtt.tls_cert": args.tls_cert, "notify.mqtt.tls_key": args.tls_key,
        "notify.mqtt.tls_insecure": True if args.tls_insecure else None, "notify.mqtt.link_base": args.link_base,
        "notify.webhook.url": args.webhook, "notify.webhook.secret": args.webhook_secret})
    if not notify.wanted(cfg):
        raise ConfigError("nothing to publish to: give --broker mqtt://HOST[:PORT] (or notify.mqtt.broker in "
                          "--config) and/or --webhook URL")
    store = Store.open(cfg.db, stale_after_s=cfg.ingest.stale_after_s)
    try:
        if not args.no_migrate:
            store.upgrade()
        bridge = notify.build_bridge(cfg, store)
        bridge.start()  # a refused login ends the command here, with one line naming the broker
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print(f"bridging {store.engine.url.render_as_string()} to {bridge.describe()}", flush=True)
        try:
            while not stop.wait(1.0) and bridge.alive:
                pass
        except KeyboardInterrupt:
            pass
        bridge.stop()
        print(f"stopped: {bridge.summary()}", flush=True)
        failed = [r.failed for r in bridge.relays if r.failed]
    finally:
        store.close()
    if failed and not stop.is_set():
        print(f"error: {failed[0]}", file=sys.stderr)
        return 1
    return 0


def _require_query_user(url: str, migrate: bool) -> None:
    """`serve` refuses to start while nobody could use the Query API (and it is not explicitly open)."""
    from cloud_svc.errors import ConfigError

    store = _store(url)
    try:
        if migrate:
            store.upgrade()
        n = store.users.active_count()
    finally:
        store.close()
    if not n:
        raise ConfigError("the Query API needs a credential and this database has no Query user: create one with "
                          "`python -m cloud_svc users add NAME --role reader --db URL` (the token is the last line), "
                          "or, for a test server on loopback only, start with --open-query")


def cmd_users(args) -> int:
    if not args.db:
        raise argparse.ArgumentTypeError(f"users {args.action} needs --db URL")
    if args.action != "list" and not args.name:
        raise argparse.ArgumentTypeError(f"users {args.action} needs a NAME")
    store = _store(args.db)
    try:
        store.upgrade()
        if args.action == "add":
            token = store.users.add(args.name, args.role)
            print(f"user {args.name} ({args.role}) added; its Query token (shown once, only a hash is stored):")
            print(token)
        elif args.action == "rotate":
            token = store.users.rotate(args.name)
            print(f"user {args.name}: new Query token (the old one no longer works):")
            print(token)
        elif args.action == "revoke":
            store.users.revoke(args.name)
            print(f"user {args.name} revoked")
        else:
            found = store.users.list()
            if args.json:
                print(json.dumps([{"name": u.name, "role": u.role, "created_ns": u.created_ns,
                                   "token_issued_ns": u.token_issued_ns, "revoked": u.revoked} for u in found]))
            else:
                print(table([{"name": u.name, "role": u.role, "created": fmt_ns(u.created_ns),
                              "issued": fmt_ns(u.token_issued_ns), "revoked": u.revoked} for u in found],
                            [("USER", "name"), ("ROLE", "role"), ("CREATED (UTC)", "created"),
                             ("TOKEN ISSUED (UTC)", "issued"), ("REVOKED", "revoked")]))
    finally:
        store.close()
    return 0


def cmd_db(args) -> int:
    from cloud_svc import db

    engine = db.make_engine(args.db)
    try:
        if args.action == "upgrade":
            rev = db.upgrade(engine)
            print(f"{engine.url.render_as_string()}: at revision {rev} (head {db.head_revision()})")
        else:
            print(db.current_revision(engine) or "(empty)")
    finally:
        engine.dispose()
    return 0


def cmd_devices(args) -> int:
    if args.action in ("add", "revoke", "rotate"):
        if not args.device_id:
            raise argparse.ArgumentTypeError(f"devices {args.action} needs a device id")
        from cloud_svc.servicer.convert import DEVICE_RE

        if not DEVICE_RE.match(args.device_id):
            raise argparse.ArgumentTypeError("a device id is 1-128 characters of [A-Za-z0-9._:-]")
        if not args.db:
            raise argparse.ArgumentTypeError(f"devices {args.action} needs --db URL")
        store = _store(args.db)
        try:
            store.upgrade()
            if args.action == "add":
                token = store.devices.add_device(args.device_id)
                print(f"device {args.device_id} added; its token (shown once, only a hash is stored):")
                print(token)
            elif args.action == "rotate":
                token = store.devices.rotate_token(args.device_id)
                print(f"device {args.device_id}: new token (the old one no longer works):")
                print(token)
            else:
                store.devices.revoke_device(args.device_id)
                print(f"device {args.device_id} revoked")
        finally:
            store.close()
        return 0
    with _client(args) as c:
        devs = c.devices()
    if args.json:
        print(json.dumps(devs, indent=None))
        return 0
    for d in devs:
        d["last_heartbeat"] = fmt_ns(d["last_heartbeat_ns"])
        d["rtf"] = d["figures"].get("rtf")
        d["depth"] = d["figures"].get("outbox_depth")
    print(table(devs, [("DEVICE", "device_id"), ("HEALTH", "health"), ("LAST HEARTBEAT (UTC)", "last_heartbeat"),
                       ("EVENTS", "events"), ("ACKED SEQ", "acked_seq"), ("RTF", "rtf"), ("OUTBOX", "depth"),
                       ("LAT", "lat"), ("LON", "lon"), ("REVOKED", "revoked")]))
    return 0


def cmd_events(args) -> int:
    with _client(args) as c:
        evs = c.events(start_ns=parse_time(args.since), end_ns=parse_time(args.until), labels=args.label or (),
                       device_ids=args.device or (), bbox=args.bbox, verified=args.verified, limit=args.limit,
                       after_id=args.after_id)
    if args.json:
        print(json.dumps(evs))
        return 0
    for e in evs:
        e["start"] = fmt_ns(e["start_ns"])
        e["dur_s"] = round((e["end_ns"] - e["start_ns"]) / 1e9, 2) if e["end_ns"] else None
        e["top"] = e["classes"][0][0] if e["classes"] else None
        e["clip_kb"] = round(e["clip"]["size"] / 1024, 1) if e["clip"] else None
        v = e["verification"]
        e["verified"] = None if v is None else (v["status"] if v["agree"] is None else
                                                f"{'agree' if v['agree'] else 'DISAGREE'} ({v['verifier']})")
    print(table(evs, [("ID", "id"), ("DEVICE", "device_id"), ("SEQ", "seq"), ("START (UTC)", "start"),
                      ("DUR s", "dur_s"), ("LABEL", "label"), ("SCORE", "score"), ("TOP CLASS", "top"),
                      ("CLIP kB", "clip_kb"), ("VERIFIED", "verified")]))
    return 0


def _alert_row(a: dict) -> dict:
    a = dict(a)
    a["start"] = fmt_ns(a["start_ns"])
    a["devices"] = a["device_id"] or f"{a['device_count']} devices"
    a["n_events"] = len(a["events"])
    return a


ALERT_COLUMNS = [("ID", "id"), ("KIND", "kind"), ("RULE", "rule"), ("LABELS", "labels"), ("START (UTC)", "start"),
                 ("DEVICES", "devices"), ("EVENTS", "n_events"), ("LAT", "lat"), ("LON", "lon")]


def cmd_alerts(args) -> int:
    with _client(args) as c:
        if args.follow:
            for a in c.follow_alerts(kind=args.kind or "", since_ns=parse_time(args.since)):
                if args.json:
                    print(json.dumps(a), flush=True)
                else:
                    r = _alert_row(a)
                    print("  ".join(f"{h}={_cell(r.get(k))}" for h, k in ALERT_COLUMNS), flush=True)
            return 0
        alerts = c.alerts(kind=args.kind or "", start_ns=parse_time(args.since), limit=args.limit)
    if args.json:
        print(json.dumps(alerts))
    else:
        print(table([_alert_row(a) for a in alerts], ALERT_COLUMNS))
    return 0


def cmd_agreement(args) -> int:
    with _client(args) as c:
        rows = c.agreement(parse_time(args.since), parse_time(args.until))
    print(json.dumps(rows) if args.json else table(rows, [("LABEL", "label"), ("VERIFIED", "verified"),
                                                          ("AGREED", "agreed"), ("RATE", "rate")]))
    return 0


def cmd_clip(args) -> int:
    with _client(args) as c:
        meta, data = c.clip(args.device_id, seq=args.seq, event_id=args.event_id)
    out = Path(args.output or f"{args.device_id}-{args.seq or args.event_id}.{meta.get('format') or 'bin'}")
    out.write_bytes(data)
    print(f"{out}: {len(data)} bytes, {meta.get('format')}, sha256 {meta.get('sha256')}")
    return 0


def cmd_correlate(args) -> int:
    import signal

    from cloud_svc import config
    from cloud_svc.store import Store
    from cloud_svc.workers import Correlator

    cfg = config.load(args.config, {"db": args.db})
    store = Store.open(cfg.db)
    store.upgrade()
    loop = Correlator(store.fleet, cfg.fleet)
    signal.signal(signal.SIGTERM, lambda *_: loop._stop.set())
    print(f"correlating {store.engine.url.render_as_string()}: radius {cfg.fleet.radius_m:g} m, window "
          f"{cfg.fleet.window_s:g} s, {cfg.fleet.min_devices} devices", flush=True)
    try:
        loop.run()
    except KeyboardInterrupt:
        pass
    store.close()
    print(f"stopped: {loop.alerts} fleet alerts made or extended")
    return 0


def cmd_verify(args) -> int:
    import signal

    from cloud_svc import config, verify
    from cloud_svc.clipstore import open_store
    from cloud_svc.store import Store
    from cloud_svc.workers import VerifyWorker

    cfg = config.load(args.config, {"db": args.db, "clips": args.clips, "verify.verifier": args.verifier})
    verifier = verify.load(cfg.verify.verifier)
    clips = open_store(cfg.clips, cfg.db)
    store = Store.open(cfg.db)
    store.upgrade()
    workers = [VerifyWorker(store.jobs, clips, verifier, cfg.verify, i) for i in range(args.workers)]
    if args.once:
        while workers[0].step():
            pass
        print(f"verified {workers[0].done}, failed {workers[0].failed}")
        return 0
    for w in workers:
        w.start()

    def on_sigterm(*_: object) -> None:  # each worker ends after its current step
        for w in workers:
            w._stop.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        while any(w.is_alive() for w in workers):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    for w in workers:
        w.stop()
    print(f"verified {sum(w.done for w in workers)}, failed {sum(w.failed for w in workers)}")
    return 0


def cmd_export_labels(args) -> int:
    from cloud_svc import export

    if args.until is not None and args.until <= args.since:
        raise argparse.ArgumentTypeError(f"--until ({fmt_ns(args.until)}) must be after --since ({fmt_ns(args.since)})")
    out = Path(args.out)
    export.previous_rows(out)  # refuse a folder that is not ours before reading anything
    store = export.open_database(args.db)
    try:
        clips = export.open_clips(args.clips, args.db)
        reviewed = store.reviews.reviewed_clips(args.since, args.until)
        r = export.export(reviewed, clips, out)
    finally:
        store.close()
    for s in r.skipped:
        print(f"skipped: device {s.device_id} event {s.event_id}: {s.reason}", file=sys.stderr)
    labels = ", ".join(f"{k} {v}" for k, v in sorted(r.labels.items())) or "none"
    print(f"{out}: {r.exported} clips of {len(reviewed)} events reviewed from {fmt_ns(args.since)} to "
          f"{fmt_ns(args.until) if args.until else 'now'} UTC ({labels}): {r.written} written, {r.unchanged} "
          f"unchanged, {r.moved} moved to a new label, {r.kept} kept from earlier exports, {len(r.skipped)} skipped "
          "(clip missing or unreadable)")
    return 0


def cmd_models(args) -> int:
    from cloud_svc.verify import vggish

    d = vggish.model_dir(args.dir)
    if args.action == "fetch":
        print(textwrap.dedent(f"""\
            VGGish's weights are Google's and are not shipped; this machine cannot download them. Fetch the
            official files (Apache-2.0, from tensorflow/models research/audioset/vggish) where you can:

              {vggish.CKPT_URL}
              {vggish.PCA_URL}

            and put them here:

              {d / vggish.CKPT_NAME}      (TF1 checkpoint; reading it needs tensorflow)
              {d / vggish.PCA_NAME}

            To run without tensorflow, convert the checkpoint once:
              python -m cloud_svc models export vggish --dir {d}
            Then build label prototypes from labelled clips (DIR/<label>/*.wav):
              python -m cloud_svc models prototypes vggish --clips DIR --dir {d}
            and verify with:  python -m cloud_svc verify --db URL --verifier vggish"""))
        found = vggish.find_checkpoint(d)
        print(f"\nnow in {d}: checkpoint {'found: ' + str(found) if found else 'missing'}, PCA params "
              f"{'found' if (d / vggish.PCA_NAME).is_file() else 'missing'}, prototypes "
              f"{'found' if (d / vggish.PROTOTYPES_NAME).is_file() else 'missing'}")
        return 0
    if args.action == "export":
        import numpy as np

        src = Path(args.ckpt) if args.ckpt else d / vggish.CKPT_NAME
        variables = vggish.load_variables(src)
        vggish.VggishModel(variables)  # checks names and shapes before writing
        out = d / vggish.NPZ_NAME
        # allow_pickle named: **variables must not set it (and these float weights are read back without pickle)
        np.savez(out, allow_pickle=False, **variables)
        print(f"{out}: {len(variables)} variables from {src}")
        return 0
    protos = vggish.build_prototypes(Path(args.clips), d, args.threshold)
    print(f"{d / vggish.PROTOTYPES_NAME}: prototypes for {', '.join(protos.labels)}")
    return 0


# ---------------------------------------------------------------------------------------------- parser
def _query_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default=DEFAULT_SERVER, help=f"HOST:PORT of cloud_svc (default {DEFAULT_SERVER}, "
                                                            "or $CLOUD_SVC_SERVER)")
    p.add_argument("--token", default=os.environ.get("CLOUD_SVC_QUERY_TOKEN"),
                   help="a Query user's token, from `users add` ($CLOUD_SVC_QUERY_TOKEN)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.add_argument("--tls-ca", help="PEM CA that signed the server's certificate (enables TLS)")
    p.add_argument("--tls-cert", help="PEM client certificate (mTLS)")
    p.add_argument("--tls-key", help="PEM client key (mTLS)")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog="python -m cloud_svc", description="The edge-rt cloud: gRPC ingest, storage, "
                                 "verification and queries.", epilog=EPILOG, formatter_class=fmt)
    ap.add_argument("-v", "--verbose", action="count", default=0)
    sub = ap.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="run the gRPC server (migrates the database first)", epilog=EPILOG,
                       formatter_class=fmt)
    s.add_argument("--db", help="sqlite:///FILE (default sqlite:///cloud.db) or mysql+pymysql://USER@HOST/DB")
    s.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:50051; port 0 picks a free one)")
    s.add_argument("--config", help="YAML file of CloudConfig keys")
    s.add_argument("--clips", help="clip store: a folder or s3://bucket/prefix")
    s.add_argument("--verify-workers", type=int, help="verification threads in this process (default 0)")
    s.add_argument("--verifier", help="yamnet | vggish")
    s.add_argument("--open-query", action="store_true",
                   help="let Query calls in without a user's token: only on a loopback --listen (tests, demos)")
    s.add_argument("--tls-cert")
    s.add_argument("--tls-key")
    s.add_argument("--tls-client-ca", help="require client certificates signed by this CA (mTLS)")
    s.add_argument("--no-migrate", action="store_true", help="do not run migrations on start")
    s.add_argument("--procs", type=int, default=1,
                   help="serving processes sharing the port (SO_REUSEPORT); replicas on one host (default 1)")
    fleet = s.add_mutually_exclusive_group()
    fleet.add_argument("--fleet-process", action="store_true",
                       help="run the fleet correlator in a child process, off the serving process's GIL")
    fleet.add_argument("--no-fleet", action="store_true",
                       help="no fleet correlator here (run `python -m cloud_svc correlate` elsewhere)")

    s.add_argument("--mqtt", metavar="URL", help="also run the MQTT bridge in this server: mqtt://[USER[:PASSWORD]@]HOST"
                                                 "[:PORT] (notify.mqtt in --config for the rest)")

    q = sub.add_parser("mqtt", help="publish stored events, alerts and device status to MQTT (Home Assistant "
                                    "discovery), and alerts to a webhook", epilog=EPILOG, formatter_class=fmt,
                       description="A bridge from the database to an MQTT broker: PREFIX/DEVICE/event (a note at "
                       "each event's start and end, and one when its verification is over), PREFIX/DEVICE/alert, "
                       "PREFIX/fleet/alert, PREFIX/DEVICE/status (retained: online/offline, RTF, backlog) and Home "
                       "Assistant discovery under homeassistant/. QoS 1; it resumes from a cursor stored in the "
                       "database after a broker outage or a restart. Several bridges (one per replica or host) may "
                       "follow one database: per prefix one relays, the others stand by and take over within "
                       "bridge.lease_s (10 s) when it dies, at once when it stops cleanly. The broker password may "
                       "also come from $CLOUD_SVC__NOTIFY__MQTT__PASSWORD, taken as typed.")
    q.add_argument("--db", required=True, help="the server's database URL")
    q.add_argument("--broker", help="mqtt://[USER[:PASSWORD]@]HOST[:PORT] or mqtts://...")
    q.add_argument("--prefix", help="topic root (default edgert)")
    q.add_argument("--username")
    q.add_argument("--password", help="(or $CLOUD_SVC__NOTIFY__MQTT__PASSWORD, which keeps it out of ps)")
    q.add_argument("--client-id", help="MQTT client id (default edgert-bridge-PREFIX-RANDOM; give each bridge its "
                                       "own)")
    q.add_argument("--tls-ca", help="PEM CA of the broker's certificate (enables TLS)")
    q.add_argument("--tls-cert", help="PEM client certificate")
    q.add_argument("--tls-key", help="PEM client key")
    q.add_argument("--tls-insecure", action="store_true", help="do not check the broker's host name")
    q.add_argument("--link-base", help="the dashboard's URL: an end note's clip.url is LINK_BASE/event/PK")
    q.add_argument("--webhook", metavar="URL", help="POST every alert here as JSON")
    q.add_argument("--webhook-secret", help="HMAC-SHA256 key of the X-Edgert-Signature header")
    q.add_argument("--config", help="YAML file of CloudConfig keys (notify.mqtt, notify.webhook, bridge, "
                                    "ingest.stale_after_s)")
    q.add_argument("--no-migrate", action="store_true", help="do not run migrations on start")

    f = sub.add_parser("correlate", help="run the fleet correlator on its own (one leader at a time per database)")
    f.add_argument("--db", required=True)
    f.add_argument("--config")

    d = sub.add_parser("db", help="database migrations")
    d.add_argument("action", choices=["upgrade", "current"])
    d.add_argument("--db", required=True)

    v = sub.add_parser("devices", help="add, revoke, rotate devices (--db), or list them (--server)", epilog=EPILOG,
                       formatter_class=fmt)
    v.add_argument("action", nargs="?", default="list", choices=["list", "add", "revoke", "rotate"])
    v.add_argument("device_id", nargs="?")
    v.add_argument("--db", help="database URL (add, revoke, rotate)")
    _query_opts(v)

    u = sub.add_parser("users", help="Query API users: add (the token is the last line), rotate, revoke, list",
                       epilog=EPILOG, formatter_class=fmt)
    u.add_argument("action", nargs="?", default="list", choices=["list", "add", "rotate", "revoke"])
    u.add_argument("name", nargs="?", metavar="NAME")
    u.add_argument("--role", choices=["reader", "admin"], default="reader", help="(add) default reader")
    u.add_argument("--db", help="database URL")
    u.add_argument("--json", action="store_true")

    e = sub.add_parser("events", help="list stored events", epilog=EPILOG, formatter_class=fmt)
    _query_opts(e)
    e.add_argument("--since", help="start at or after: ns, ISO 8601, or -15m / -2h / -1d")
    e.add_argument("--until", help="start before")
    e.add_argument("--label", action="append", help="repeatable")
    e.add_argument("--device", action="append", help="repeatable")
    e.add_argument("--bbox", type=_bbox, help="MIN_LAT,MIN_LON,MAX_LAT,MAX_LON")
    e.add_argument("--verified", default="any", choices=["any", "done", "agree", "disagree", "pending", "none"])
    e.add_argument("--limit", type=int, default=0)
    e.add_argument("--after-id", type=int, default=0, help="page on from this event id")

    a = sub.add_parser("alerts", help="list alerts, or --follow them live", epilog=EPILOG, formatter_class=fmt)
    _query_opts(a)
    a.add_argument("--follow", action="store_true", help="stream new alerts until interrupted")
    a.add_argument("--kind", choices=["device", "fleet"])
    a.add_argument("--since", help="alerts starting (with --follow: stored) since then")
    a.add_argument("--limit", type=int, default=0)

    g = sub.add_parser("agreement", help="verifier agreement rate per label")
    _query_opts(g)
    g.add_argument("--since")
    g.add_argument("--until")

    c = sub.add_parser("clip", help="download an event's clip")
    _query_opts(c)
    c.add_argument("device_id")
    key = c.add_mutually_exclusive_group(required=True)
    key.add_argument("--seq", type=int)
    key.add_argument("--event-id")
    c.add_argument("-o", "--output")

    w = sub.add_parser("verify", help="run verification workers (claim jobs with SKIP LOCKED)")
    w.add_argument("--db", required=True)
    w.add_argument("--config")
    w.add_argument("--clips", help="the clip store the server writes")
    w.add_argument("--verifier", help="yamnet (default) | vggish")
    w.add_argument("--workers", type=int, default=1)
    w.add_argument("--once", action="store_true", help="work through the queue once, then exit")

    x = sub.add_parser("export-labels", help="reviewed clips as a labelled pack for `edge_rt calibrate --extra`",
                       description="Write the clips of the events reviewed in a window as a labelled pack in the "
                       "layout of ../shared/data (audio/<label>/*.wav, labels.csv) with provenance.csv beside it. "
                       "A real event keeps the edge's label, a wrong label takes the reviewer's, a false alarm is "
                       "'background'. OUT must be new, empty, or an earlier export, which is merged into (the "
                       "same export twice leaves the same pack). A clip that is missing is skipped and reported.",
                       epilog=EPILOG, formatter_class=fmt)
    x.add_argument("out", metavar="OUT", help="the pack's folder")
    x.add_argument("--db", required=True, help="the server's database URL")
    x.add_argument("--clips", help="the clip store the server writes (default: clips/ beside a SQLite database)")
    x.add_argument("--since", required=True, type=when,
                   help="reviews made at or after: ISO date/time (UTC unless it says), ns, or a duration ago: 7d, 12h")
    x.add_argument("--until", type=when, help="reviews made before (default: now)")

    m = sub.add_parser("models", help="the VGGish verifier's weights")
    m.add_argument("action", choices=["fetch", "export", "prototypes"])
    m.add_argument("model", choices=["vggish"])
    m.add_argument("--dir", help="where the VGGish files live (default models/vggish or $CLOUD_SVC_VGGISH_DIR)")
    m.add_argument("--ckpt", help="export: the TF1 checkpoint prefix")
    m.add_argument("--clips", help="prototypes: DIR/<label>/*.wav")
    m.add_argument("--threshold", type=float, default=0.8, help="prototypes: similarity that counts as present")
    return ap


COMMANDS = {"correlate": cmd_correlate, "serve": cmd_serve, "mqtt": cmd_mqtt, "users": cmd_users, "db": cmd_db,
            "devices": cmd_devices, "events": cmd_events, "alerts": cmd_alerts, "agreement": cmd_agreement,
            "clip": cmd_clip, "verify": cmd_verify, "models": cmd_models, "export-labels": cmd_export_labels}


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.cmd not in ("db", "models"):
        from edgert import protos_build

        problem = protos_build.check_importable()
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(level if args.verbose > 1 else logging.WARNING)
    if args.cmd == "models" and args.action == "prototypes" and not args.clips:
        ap.error("models prototypes needs --clips DIR")
    try:
        return COMMANDS[args.cmd](args)
    except argparse.ArgumentTypeError as exc:
        ap.error(str(exc))
    except (CloudError, CoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
