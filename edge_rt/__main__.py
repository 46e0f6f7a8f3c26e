"""`python -m edge_rt`: the edge runtime's command line (classify recordings, run live, demo)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import textwrap
from pathlib import Path

from edge_rt.errors import EdgeRtError
from edgert.errors import CoreError

EPILOG = textwrap.dedent("""\
    examples:
      python -m edge_rt classify clip.wav other.flac --json      # one JSON object per file
      python -m edge_rt classify recordings/                     # every audio file under a folder
      python -m edge_rt run --source synth:distress              # 20 s scenario: glass, then a shout
      python -m edge_rt run --source file:street.wav --lat 52.52 --lon 13.40
      python -m edge_rt run --source 'gst:audiotestsrc wave=sine' --metrics-port 9100
      python -m edge_rt run --source rtsp://camera.local/stream1 --cloud cloud.example:7443 \\
          --device-id lamp-17 --token $TOKEN
      python -m edge_rt run --source mic: --cloud ingest-a:7443,ingest-b:7443 \\
          --device-id lamp-17 --token $TOKEN                     # two replicas: fails over between them
      python -m edge_rt run --source mic:hw:1,0 --backend tflite-fp16
      python -m edge_rt run --source mic: --mqtt mqtt://user:pass@homeassistant.local:1883   # home, no cloud
      python -m edge_rt run --source mic: --webhook https://hooks.example/edgert --webhook-secret $SECRET
      python -m edge_rt demo                                     # the golden signals through every backend
      python -m edge_rt evaluate streams:test ../shared/negatives --out eval/   # raw groups vs shipped detector
      python -m edge_rt calibrate                                # re-choose thresholds/fusion, write the YAML
      python -m edge_rt calibrate --extra fleet-labels/          # ... learning from reviewed fleet clips too
    """)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file overriding the shipped defaults (edge_rt/config/defaults.yaml)")
    p.add_argument("--backend", help="auto | onnxruntime | tflite | tensorrt | onnxruntime-gpu (CUDA: pip install "
                                     "'.[gpu]'), optionally -PRECISION (tflite-fp16, onnxruntime-int8, "
                                     "tensorrt-fp32...)")
    p.add_argument("--precision", help="fp32 | fp16 | int8 (default: the backend name's own, else the runtime's)")
    p.add_argument("--model-dir", help="model artifacts (default $EDGE_RT_MODEL_DIR or <repo>/models)")
    p.add_argument("--threads", type=int, help="inference threads (default 1)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m edge_rt", description="Edge acoustic event detection with YAMNet.",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug (what the model hears)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("classify", help="classify recordings or folders of them (WAV, FLAC, OGG...; any rate, "
                       "channel count and length)", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("paths", nargs="+", metavar="PATH",
                   help="an audio file, or a folder: its audio files by name (other files are skipped with a "
                        "warning). Exit status 1 when any file could not be classified, or only in part")
    c.add_argument("--json", action="store_true", help="one JSON object per input file on stdout")
    c.add_argument("--jobs", type=_positive, default=1, metavar="N",
                   help="spread the files over N processes, each with its own model on one thread (default 1); "
                        "the output is the same, in the same order")
    c.add_argument("--batch", type=_positive, default=None, metavar="W",
                   help="windows the model scores per call, across short files (default: a head group, 16); 1 is "
                        "the reference path, one window per call, that every batch size matches byte for byte")
    _common(c)
    r = sub.add_parser("run", help="run in real time from a source into the outbox (and the cloud)", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--source", required=True,
                   help="file:P | dir:P | mic:[DEV] | gst:PIPELINE | rtsp://... | synth:SCENARIO")
    r.add_argument("--cloud", metavar="HOST:PORT[,HOST:PORT...]",
                   help="stream events to this cloud_svc; several replicas comma-separated: the edge stays on one "
                        "and fails over to the next when it is unreachable (config cloud.address)")
    r.add_argument("--device-id", help="this device's id (default from config)")
    r.add_argument("--token", help="device token from `python -m cloud_svc devices add` (config cloud.token; "
                   "keep it off the command line with EDGE_RT__CLOUD__TOKEN)")
    r.add_argument("--tls", action="store_true", default=None,
                   help="TLS to the cloud with the system's root certificates (cloud.tls)")
    r.add_argument("--tls-ca", metavar="PEM", help="CA of the cloud's certificate; enables TLS (cloud.tls_ca)")
    r.add_argument("--tls-cert", metavar="PEM", help="this device's client certificate, for mTLS (cloud.tls_cert)")
    r.add_argument("--tls-key", metavar="PEM", help="this device's client key, for mTLS (cloud.tls_key)")
    r.add_argument("--mqtt", metavar="URL",
                   help="publish events, alerts, status and Home Assistant discovery to this broker: "
                        "mqtt://[user:pass@]host[:port] or mqtts://... (config notify.mqtt.broker; with or without "
                        "--cloud)")
    r.add_argument("--mqtt-prefix", metavar="P", help="MQTT topic root, PREFIX/DEVICE/event... (default edgert; "
                   "notify.mqtt.prefix)")
    r.add_argument("--webhook", metavar="URL", help="POST each alert as signed JSON to this http(s) URL "
                   "(notify.webhook.url)")
    r.add_argument("--webhook-secret", metavar="S", help="HMAC key of the webhook's signature header "
                   "(notify.webhook.secret; keep it off the command line with EDGE_RT__NOTIFY__WEBHOOK__SECRET)")
    r.add_argument("--spool", metavar="DIR", help="folder of the durable outbox (default ./spool)")
    r.add_argument("--lat", type=float)
    r.add_argument("--lon", type=float)
    r.add_argument("--realtime", dest="realtime", action="store_true", default=None,
                   help="pace file/dir/synth sources to the wall clock")
    r.add_argument("--fast", dest="realtime", action="store_false", help="as fast as possible (files' default)")
    r.add_argument("--loop", action="store_true", help="dir: sources play forever instead of once")
    r.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    _common(r)
    sub.add_parser("demo", help="classify the golden signals with every local backend")
    e = sub.add_parser("evaluate", help="raw AudioSet groups vs the shipped detector on labelled data: table, "
                       "JSON and figures", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("data", nargs="+", metavar="DATA",
                   help="streams:SPLIT (generated streams: calib or test) | a CSV (file,label) | a folder with "
                        "labels.csv | a folder of label folders | a folder of saved streams")
    e.add_argument("--out", default="evaluation", help="folder for evaluation.json and the PNG figures")
    _common(e)
    k = sub.add_parser("calibrate", help="choose per-label thresholds, minimum hits and fusion on the calib split "
                       "and write them as the shipped detector YAML", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    k.add_argument("--seed", type=int, default=None, help="stream seed (default: the shipped one)")
    k.add_argument("--out", help="write the YAML here instead of edgert/calibration.yaml")
    k.add_argument("--extra", action="append", default=[], metavar="PACK",
                   help="a labelled pack whose clips join the material (repeatable): its event labels as events to "
                        "find, its ordinary sound (background: reviewed false alarms) as audio where every event is "
                        "false; e.g. from `python -m cloud_svc export-labels`")
    _common(k)
    return ap


def _config(args):
    from edge_rt import config

    overrides = {"backend": args.backend, "precision": getattr(args, "precision", None), "threads": args.threads,
                 "runtime.model_dir": args.model_dir}
    if args.cmd == "run":
        overrides.update({"device_id": args.device_id, "lat": args.lat, "lon": args.lon,
                          "runtime.metrics_port": args.metrics_port, "cloud.address": args.cloud,
                          "cloud.token": args.token, "cloud.tls": args.tls, "cloud.tls_ca": args.tls_ca,
                          "cloud.tls_cert": args.tls_cert, "cloud.tls_key": args.tls_key,
                          "notify.mqtt.broker": args.mqtt, "notify.mqtt.prefix": args.mqtt_prefix,
                          "notify.webhook.url": args.webhook, "notify.webhook.secret": args.webhook_secret})
        if args.spool:
            overrides["outbox.path"] = str(Path(args.spool) / "outbox.db")
    return config.load(args.config, overrides)


def _backend(cfg):
    from edgert.yamnet import backends

    return backends.load(cfg.backend, cfg.runtime.model_dir, threads=cfg.threads, precision=cfg.precision)


def cmd_classify(args) -> int:
    from edge_rt.classify import BATCH_WINDOWS, classify_files
    from edgert.yamnet.classmap import class_names
    from edgert.yamnet.head import Head

    cfg = _config(args)
    be = _backend(cfg)
    model_dir = cfg.runtime.model_dir
    failures = classify_files(args.paths, cfg, be, class_names(model_dir), Head.load_optional(model_dir),
                              as_json=args.json, batch=args.batch or BATCH_WINDOWS, jobs=args.jobs)
    return 1 if failures else 0


def cmd_run(args) -> int:
    from edge_rt import __version__
    from edge_rt.capture import open_source
    from edge_rt.outbox import CLOUD, Outbox
    from edge_rt.pipeline import Pipeline
    from edge_rt.pushed import Push, PushedConfig
    from edgert.yamnet.head import Head

    cfg = _config(args)
    pushed = PushedConfig(Path(cfg.outbox.path).parent, cfg)  # the cloud's last config, kept beside the outbox
    cfg = pushed.startup()
    source = open_source(args.source, realtime=args.realtime, loop=args.loop)
    be = _backend(cfg)
    outbox = Outbox(cfg.outbox.path, cfg.outbox.max_bytes, cfg.outbox.max_age_s)

    def figures() -> dict:  # the heartbeat's figures: to the cloud, and in the MQTT status
        return {**pipe.heartbeat(), **pushed.heartbeat()}

    uplink = None
    if cfg.cloud.address:
        from edge_rt.uplink import Uplink

        uplink = Uplink(outbox, cfg.cloud.address, cfg.device_id, cfg.cloud.token or "", heartbeat=figures,
                        on_config=lambda c: pushed.offer(Push.from_message(c)), options=cfg.cloud)
    notifiers: list = []
    if cfg.notify.mqtt.broker:
        from edge_rt.notify import MqttNotifier

        mqtt = MqttNotifier(outbox, cfg.notify.mqtt, cfg.device_id, figures=figures,
                            all_labels=list(cfg.detector.labels), sw_version=f"edge_rt {__version__}")
        notifiers.append(mqtt)
        mqtt.connect()  # a refused login ends the run here, before capture starts; an absent broker does not
    if cfg.notify.webhook.url:
        from edge_rt.notify import WebhookNotifier

        notifiers.append(WebhookNotifier(outbox, cfg.notify.webhook, cfg.device_id))
    # this run's consumers: a row goes once all of them have it; one configured before but not now holds nothing
    outbox.register(([CLOUD] if uplink else []) + [n.name for n in notifiers])
    consumers = ([uplink] if uplink else []) + notifiers

    def drained() -> bool:
        return all(c.failed is not None or c.drained() for c in consumers)

    pipe = Pipeline(cfg, source, be, outbox, head=Head.load_optional(cfg.runtime.model_dir),
                    drained=drained if consumers else None)
    pushed.bind(pipe.retune)

    def _on_signal(signum, _frame):
        logging.getLogger("edge_rt").info("signal %d: stopping", signum)
        pipe.stop()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    for c in consumers:
        c.start()
    try:
        s = pipe.run()
    finally:
        for c in consumers:
            c.stop()
    st = outbox.stats()
    p50, p99 = s.latency_ms(50), s.latency_ms(99)
    lat = f", window->outbox p50 {p50:.1f} ms p99 {p99:.1f} ms" if p50 is not None else ""
    from edge_rt.metrics import peak_rss_bytes

    peak = peak_rss_bytes()
    lat += f", peak RSS {peak / 2**20:.1f} MB" if peak else ""
    print(f"{s.audio_s:.1f} s of audio in {s.wall_s:.3f} s (RTF {s.rtf:.0f}x, model {s.model_s:.3f} s): "
          f"{s.events} events, {s.alerts} alerts"
          f"{lat}; outbox {cfg.outbox.path}: {st['depth']} waiting, {st['dropped']} dropped"
          f"{f'; {s.loop_errors} loop errors' if s.loop_errors else ''}", file=sys.stderr)
    failed = []
    if uplink is not None:
        u = uplink.stats()
        where = u["cloud_address"]
        if len(u["cloud_addresses"]) > 1:
            where += f" (of {', '.join(u['cloud_addresses'])}; {u['failovers']} failovers)"
        print(f"cloud {where}: acked up to seq {u['acked_seq']}, {u['connects']} connects, "
              f"{u['rejects']} rejected, {u['clip_rejects']} clips dropped", file=sys.stderr)
    for n in notifiers:
        m = n.stats()
        what = (f"mqtt {m['broker']}: {m['events']} event notes, {m['alerts']} alerts, {m['connections']} connects"
                if n.name == "mqtt" else
                f"webhook {m['url']}: {m['alerts']} alerts{'' if m['signed'] else ' (unsigned)'}")
        print(f"{what}; acked up to seq {m['acked_seq']}, {m['backlog']} waiting", file=sys.stderr)
    outbox.close()
    for c in consumers:
        if c.failed is not None:
            print(f"error: {c.failed}", file=sys.stderr)
            failed.append(c)
    return 2 if failed else 0


def _float_backend(args):
    """Calibration and evaluation run the float model the head was trained on, unless told otherwise."""
    from edgert.yamnet import backends

    return backends.load(args.backend or "onnxruntime", args.model_dir, threads=args.threads or 1)


def cmd_evaluate(args) -> int:
    from edge_rt.evaluation.evaluate import evaluate
    from edgert.yamnet.classmap import class_names
    from edgert.yamnet.head import Head

    cfg = _config(args)
    evaluate(args.data, cfg, _float_backend(args), Head.load_optional(args.model_dir), class_names(args.model_dir),
             Path(args.out), command="python -m edge_rt " + " ".join(sys.argv[1:]))
    return 0


def cmd_calibrate(args) -> int:
    from edge_rt.evaluation import calibrate
    from edge_rt.evaluation.material import STREAM_SEED
    from edgert.yamnet.classmap import class_names
    from edgert.yamnet.head import Head

    path, check = calibrate.main(_float_backend(args), Head.load_optional(args.model_dir),
                                 class_names(args.model_dir), Path(args.out) if args.out else None,
                                 seed=STREAM_SEED if args.seed is None else args.seed, model_dir=args.model_dir,
                                 extra=[Path(p) for p in args.extra])
    for x in check["extra"]:
        print(f"extra pack {x['pack']}: {x['clips']} clips, events "
              + (", ".join(f"{k} {v}" for k, v in x["events"].items()) or "none")
              + f", {x['negatives']} of ordinary sound (every event on them false)", file=sys.stderr)
    print(f"wrote {path}: distress alerts {check['distress_alerts_per_hour']}/h on the calib split; false events/h "
          + ", ".join(f"{k} {v}" for k, v in check["false_per_hour"].items() if v), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.cmd == "classify":
            return cmd_classify(args)
        if args.cmd == "run":
            return cmd_run(args)
        if args.cmd == "evaluate":
            return cmd_evaluate(args)
        if args.cmd == "calibrate":
            return cmd_calibrate(args)
        if args.cmd == "demo":
            from edge_rt import demo

            return demo.run()
    except (EdgeRtError, CoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
