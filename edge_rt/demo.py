"""`python -m edge_rt demo`: classify Google's test signals and two real clips with every local backend."""
from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from edge_rt import backends
from edge_rt.errors import BackendUnavailableError
from edge_rt.models import golden
from edge_rt.models.classmap import class_names


def top(scores: np.ndarray, names: tuple[str, ...], k: int = 3) -> str:
    """Top-k classes of the clip (mean over patches) as 'name score' text."""
    mean = scores.mean(axis=0)
    idx = np.argsort(mean)[::-1][:k]
    return ", ".join(f"{names[i]} {mean[i]:.2f}" for i in idx)


def run(backend_names=("onnxruntime", "tflite", "tflite-fp16")) -> int:
    console = Console(width=140)
    names = class_names()
    loaded = []
    for key in backend_names:
        try:
            loaded.append(backends.load(key))
        except BackendUnavailableError as exc:
            console.print(f"[yellow]skipping {key}:[/] {exc}")
    table = Table(title="YAMNet on the golden signals (features: TF's log-mel patches)")
    table.add_column("signal")
    table.add_column("TF reference: top 3")
    for be in loaded:
        table.add_column(f"{be.name}: top 3")
    for path in golden.golden_files():
        g = golden.load(path.stem)
        row = [path.stem, top(g["scores"], names)]
        row += [top(be.infer(g["patches"])[0], names) for be in loaded]
        table.add_row(*row)
    console.print(table)
    return 0
