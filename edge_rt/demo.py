"""`python -m edge_rt demo`: the golden signals through every backend, then a distress scenario end to end."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from edge_rt.models import golden
from edgert.errors import BackendUnavailableError
from edgert.yamnet import backends
from edgert.yamnet.classmap import class_names, top_classes

SCENARIO = "synth:tour"


def top(scores: np.ndarray, names: tuple[str, ...], k: int = 3) -> str:
    """Top-k classes of the clip (mean over patches) as 'name score' text."""
    return ", ".join(f"{n} {s:.2f}" for n, s in top_classes(scores.mean(axis=0), names, k))


def golden_table(console: Console, backend_names=("onnxruntime", "tflite", "tflite-fp16")) -> None:
    names = class_names()
    loaded = []
    for key in backend_names:
        try:
            loaded.append(backends.load(key))
        except BackendUnavailableError as exc:
            console.print(f"[yellow]skipping {key}:[/] {exc}")
    table = Table(title="1. YAMNet on the golden signals (features: TF's log-mel patches)")
    table.add_column("signal")
    table.add_column("TF reference: top 3")
    for be in loaded:
        table.add_column(f"{be.name}: top 3")
    for path in golden.golden_files():
        g = golden.load(path.stem)
        table.add_row(path.stem, top(g["scores"], names), *[top(be.infer(g["patches"])[0], names) for be in loaded])
    console.print(table)


def scenario_run(console: Console, spec: str = SCENARIO) -> None:
    """Run `spec` through the whole edge pipeline into a throw-away outbox and show what came out."""
    from edge_rt import config
    from edge_rt.capture import open_source
    from edge_rt.outbox import Outbox
    from edge_rt.pipeline import Pipeline
    from edge_rt.records import parse
    from edgert.yamnet.head import Head

    with tempfile.TemporaryDirectory() as tmp:
        cfg = config.load(overrides={"device_id": "demo-1", "lat": 52.52, "lon": 13.405})
        source = open_source(spec, realtime=False)
        outbox = Outbox(Path(tmp) / "outbox.db")
        pipe = Pipeline(cfg, source, backends.load(cfg.backend, precision=cfg.precision), outbox,
                        head=Head.load_optional())
        summary = pipe.run()
        t0 = pipe.records.t0_ns  # the wall time of scenario second 0
        records = outbox.pending(limit=10000)
        outbox.close()
    truth = Table(title=f"2. The scenario {spec}: what was played")
    for col in ("label", "start s", "end s", "clip"):
        truth.add_column(col)
    for t in source.truth:
        truth.add_row(t.label, f"{t.start_s:.2f}", f"{t.end_s:.2f}", t.clip)
    console.print(truth)
    found = Table(title="3. What the edge put in its outbox (seq, kind, label, times in scenario seconds)")
    for col in ("seq", "kind", "label / rule", "start s", "end s", "score", "top classes"):
        found.add_column(col)
    for r in records:
        rec = parse(r.body)
        b = getattr(rec, rec.WhichOneof("kind"))
        start = (b.start_ns - t0) / 1e9
        end = f"{(b.end_ns - t0) / 1e9:.2f}" if b.end_ns else ""
        if r.kind == "alert":
            what, score, classes = f"[bold red]{b.rule}[/]: {'+'.join(b.labels)}", "", ""
        else:
            what, score = b.label, f"{b.score:.2f}"
            classes = ", ".join(f"{c.name} {c.score:.2f}" for c in b.classes[:3])
        found.add_row(str(r.seq), r.kind, what, f"{start:.2f}", end, score, classes)
    console.print(found)
    console.print(f"{summary.audio_s:.0f} s of audio analysed in {summary.wall_s:.2f} s "
                  f"(real-time factor {summary.rtf:.0f}x); {summary.events} events, {summary.alerts} alerts.")


def run() -> int:
    console = Console(width=150)
    golden_table(console)
    scenario_run(console)
    return 0
