"""Turns an evaluation result dict into a console table, a JSON file and PNG figures."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # matplotlib costs ~0.3 s to import; only the figures need it
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

BUDGET_PER_HOUR = 1.0  # the false-alert budget the detector is calibrated against
LOG_FLOOR_PER_HOUR = 0.01  # where a rate of 0 is drawn on a log axis, which cannot show 0
DPI = 110
MISSING = "—"
JSON_NAME = "evaluation.json"


# --------------------------------------------------------------------------- reading the result


def _systems(result: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    if not isinstance(result, Mapping):
        raise TypeError(f"an evaluation result must be a dict, got {type(result).__name__}")
    systems = result.get("systems") or {}
    return {str(name): (body or {}) for name, body in systems.items()}


def _labels(result: Mapping[str, Any], section: str = "per_label") -> list[str]:
    """Labels of `section` over every system, in the order they are first seen."""
    seen: dict[str, None] = {}
    for body in _systems(result).values():
        for label in body.get(section) or {}:
            seen.setdefault(str(label), None)
    return list(seen)


def _num(value: Any) -> Optional[float]:
    """A finite float, or None for None, NaN, Inf or anything not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _floats(values: Optional[Iterable[Any]], n: Optional[int] = None) -> np.ndarray:
    """`values` as float64 of shape (n,) (or (len(values),)), with NaN where a value is missing."""
    out = [np.nan if (v := _num(x)) is None else v for x in (values or [])]
    if n is not None:
        out = (out + [np.nan] * n)[:n]
    return np.asarray(out, dtype=np.float64)


def _metric(body: Mapping[str, Any], label: str, key: str) -> Optional[float]:
    return _num(((body.get("per_label") or {}).get(label) or {}).get(key))


def _fmt_prob(value: Any) -> str:
    v = _num(value)
    return MISSING if v is None else f"{v:.3f}"


def _fmt_rate(value: Any) -> str:
    v = _num(value)
    return MISSING if v is None else f"{v:.2f}"


def _filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "system"


# --------------------------------------------------------------------------- console


def table(result: Mapping[str, Any]) -> Table:
    """One row per label and P / R / F1 / FA-per-hour columns per system, then a distress-alert row."""
    systems = _systems(result)
    t = Table(title="Detector evaluation")
    t.add_column("label", no_wrap=True)
    for name in systems:
        for suffix in ("P", "R", "F1", "FA/h"):
            t.add_column(f"{name} {suffix}", justify="right")
    labels = _labels(result)
    for i, label in enumerate(labels):
        cells = [label]
        for body in systems.values():
            row = (body.get("per_label") or {}).get(label) or {}
            cells += [_fmt_prob(row.get("precision")), _fmt_prob(row.get("recall")),
                      _fmt_prob(row.get("f1")), _fmt_rate(row.get("false_per_hour"))]
        t.add_row(*cells, end_section=i == len(labels) - 1)
    alerts = ["distress alerts / h"]
    for body in systems.values():
        alerts += ["", "", "", _fmt_rate(body.get("distress_alerts_per_hour"))]
    t.add_row(*alerts)
    return t


def print_report(result: Mapping[str, Any], console: Optional[Console] = None) -> None:
    """Print the table and, per system, how much ordinary audio its false rates rest on."""
    # Wide enough for two systems side by side even where stderr is not a terminal (a log, CI).
    console = console or Console(stderr=True, width=max(150, Console(stderr=True).width))
    console.print(table(result))
    data = result.get("data") or {}
    if data:
        sources = ", ".join(map(str, data.get("sources") or [])) or MISSING
        console.print(f"data: {data.get('clips', MISSING)} clips, {data.get('streams', MISSING)} streams, "
                      f"{_fmt_rate(data.get('hours'))} h from {sources}")
    for name, body in _systems(result).items():
        console.print(f"{name}: {_fmt_rate(body.get('ordinary_hours'))} h of ordinary audio, "
                      f"{body.get('distress_alerts', MISSING)} distress alerts "
                      f"({_fmt_rate(body.get('distress_alerts_per_hour'))} / h)")


# --------------------------------------------------------------------------- figures


def _figure(width: float, height: float) -> "Figure":
    # A bare Figure on an Agg canvas never enters pyplot's global registry, so nothing leaks
    # between calls and the caller's interactive backend, if any, is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _no_data(ax: "Axes", what: str = "no data") -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, fontsize=12, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _write(fig: "Figure", path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    fig.clear()
    return path


def _label_ticks(ax: "Axes", labels: Sequence[str]) -> None:
    ax.set_xticks(np.arange(len(labels)))
    rotate = len(labels) > 4 or max((len(s) for s in labels), default=0) > 10
    ax.set_xticklabels(labels, rotation=30 if rotate else 0, ha="right" if rotate else "center")


def _prf_figure(result: Mapping[str, Any], path: Path) -> Path:
    systems = _systems(result)
    labels = _labels(result)
    n = max(len(systems), 1)
    fig = _figure(max(6.4, 1.3 * len(labels) + 2.5), 2.8 * n + 0.6)
    axes = fig.subplots(n, 1, squeeze=False, sharex=True, sharey=True)[:, 0]
    if not systems or not labels:
        _no_data(axes[0])
        axes[0].set_title("Precision, recall and F1 per label")
        return _write(fig, path)
    metrics = (("precision", "precision"), ("recall", "recall"), ("f1", "F1"))
    width = 0.8 / len(metrics)
    x = np.arange(len(labels))
    for ax, (name, body) in zip(axes, systems.items()):
        for j, (key, shown) in enumerate(metrics):
            values = [_metric(body, label, key) for label in labels]
            pos = x + (j - (len(metrics) - 1) / 2) * width
            ax.bar(pos, [0.0 if v is None else v for v in values], width, label=shown, color=f"C{j}")
            for p, v in zip(pos, values):
                # An undefined metric (no positives, or nothing detected) must not read as a score of 0.
                if v is None:
                    ax.text(p, 0.02, "n/a", ha="center", va="bottom", rotation=90, fontsize=7, color="0.35")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("score")
        ax.set_title(f"{name}: precision, recall and F1 per label")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    _label_ticks(axes[-1], labels)
    return _write(fig, path)


def _false_rate_figure(result: Mapping[str, Any], path: Path) -> Path:
    systems = _systems(result)
    labels = _labels(result)
    fig = _figure(max(6.4, 1.1 * len(labels) * max(len(systems), 1) ** 0.5 + 3.0), 4.6)
    ax = fig.subplots()
    ax.set_title("False events per hour of ordinary audio")
    if not systems or not labels:
        _no_data(ax)
        return _write(fig, path)
    width = 0.8 / len(systems)
    x = np.arange(len(labels))
    top = BUDGET_PER_HOUR
    for i, (name, body) in enumerate(systems.items()):
        values = [_metric(body, label, "false_per_hour") for label in labels]
        pos = x + (i - (len(systems) - 1) / 2) * width
        hours = _num(body.get("ordinary_hours"))
        shown = name if hours is None else f"{name} ({hours:.1f} h)"
        ax.bar(pos, [0.0 if v is None else v for v in values], width, label=shown, color=f"C{i}")
        for p, v in zip(pos, values):
            # The symlog axis squeezes large values, so the number itself is the reading.
            ax.text(p, 0.0 if v is None else v, "n/a" if v is None else f"{v:.2f}", ha="center",
                    va="bottom", fontsize=7)
            top = max(top, v or 0.0)
    ax.axhline(BUDGET_PER_HOUR, color="0.2", linestyle="--", linewidth=1,
               label=f"budget ({BUDGET_PER_HOUR:g} / h)")
    ax.set_yscale("symlog", linthresh=BUDGET_PER_HOUR)
    ax.set_ylim(0, top * 3)
    ax.set_ylabel("false events per hour (symlog)")
    ax.grid(axis="y", alpha=0.3)
    _label_ticks(ax, labels)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _write(fig, path)


def _det_points(curve: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of one DET curve, both float64 of shape (n,): false events per hour floored at
    LOG_FLOOR_PER_HOUR, and miss rate; points with either value missing are dropped."""
    rates = _floats(curve.get("false_per_hour"))
    misses = _floats(curve.get("miss_rate"))
    n = min(len(rates), len(misses))
    x, y = rates[:n], misses[:n]
    keep = np.isfinite(x) & np.isfinite(y)
    return np.maximum(x[keep], LOG_FLOOR_PER_HOUR), y[keep]


def _det_figure(result: Mapping[str, Any], path: Path) -> Path:
    systems = _systems(result)
    labels = _labels(result, "det")
    cols = min(3, max(len(labels), 1))
    rows = max(1, math.ceil(len(labels) / cols))
    fig = _figure(max(6.4, 4.2 * cols), 3.4 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    if not labels:
        _no_data(axes[0])
        axes[0].set_title("Detection error trade-off")
        return _write(fig, path)
    for ax, label in zip(axes, labels):
        drawn = False
        x_max = BUDGET_PER_HOUR
        for i, (name, body) in enumerate(systems.items()):
            x, y = _det_points((body.get("det") or {}).get(label) or {})
            if len(x):
                ax.plot(x, y, marker="o", markersize=3, linewidth=1.5, color=f"C{i}", label=name)
                x_max = max(x_max, float(x.max()))
                drawn = True
        ax.set_title(f"{label}: detection error trade-off", fontsize=10)
        if not drawn:
            _no_data(ax)
            continue
        ax.axvline(BUDGET_PER_HOUR, color="0.2", linestyle="--", linewidth=1, label=f"budget ({BUDGET_PER_HOUR:g} / h)")
        ax.set_xscale("log")
        ax.set_xlim(LOG_FLOOR_PER_HOUR / 2, x_max * 2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"false events per hour (log; 0 drawn at {LOG_FLOOR_PER_HOUR:g})", fontsize=8)
        ax.set_ylabel("miss rate")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper right")
    for ax in axes[len(labels):]:
        ax.set_visible(False)
    return _write(fig, path)


def _matrix(confusion: Mapping[str, Any]) -> np.ndarray:
    """The confusion counts as int64 of shape (len(truth), len(detected)); missing cells are 0."""
    truth = confusion.get("truth") or []
    detected = confusion.get("detected") or []
    out = np.zeros((len(truth), len(detected)), dtype=np.int64)
    for r, row in enumerate((confusion.get("matrix") or [])[: len(truth)]):
        for c, v in enumerate((row or [])[: len(detected)]):
            f = _num(v)
            out[r, c] = 0 if f is None else int(f)
    return out


def _confusion_figure(name: str, body: Mapping[str, Any], path: Path) -> Path:
    confusion = body.get("confusion") or {}
    truth = [str(s) for s in confusion.get("truth") or []]
    detected = [str(s) for s in confusion.get("detected") or []]
    fig = _figure(max(5.6, 0.9 * len(detected) + 3.0), max(4.4, 0.6 * len(truth) + 2.2))
    ax = fig.subplots()
    ax.set_title(f"{name}: event confusion (counts)")
    m = _matrix(confusion)
    if m.size == 0:
        _no_data(ax)
        return _write(fig, path)
    image = ax.imshow(m, cmap="Blues", aspect="auto", vmin=0, vmax=max(int(m.max()), 1))
    dark = m.max() / 2 if m.max() else 1
    for r in range(m.shape[0]):
        for c in range(m.shape[1]):
            ax.text(c, r, str(m[r, c]), ha="center", va="center", fontsize=9,
                    color="white" if m[r, c] > dark else "black")
    _label_ticks(ax, detected)
    ax.set_yticks(np.arange(len(truth)))
    ax.set_yticklabels(truth)
    ax.set_xlabel("detected")
    ax.set_ylabel("truth")
    fig.colorbar(image, ax=ax, label="events")
    return _write(fig, path)


def _reliability_figure(result: Mapping[str, Any], path: Path) -> Path:
    systems = _systems(result)
    labels = _labels(result, "reliability")
    n = max(len(systems), 1)
    fig = _figure(max(6.4, 4.0 * n + 1.8), 4.4)
    axes = fig.subplots(1, n, squeeze=False, sharey=True)[0]
    if not systems:
        _no_data(axes[0])
        axes[0].set_title("Reliability")
        return _write(fig, path)
    for ax, (name, body) in zip(axes, systems.items()):
        ax.set_title(f"{name}: reliability", fontsize=10)
        ax.plot([0, 1], [0, 1], color="0.5", linestyle=":", linewidth=1, label="perfectly calibrated")
        drawn = False
        for i, label in enumerate(labels):
            bins = (body.get("reliability") or {}).get(label) or {}
            counts = _floats(bins.get("count"))
            score = _floats(bins.get("mean_score"), len(counts))
            frac = _floats(bins.get("frac_positive"), len(counts))
            keep = (counts > 0) & np.isfinite(score) & np.isfinite(frac)  # an empty bin has no mean
            if keep.any():
                ax.plot(score[keep], frac[keep], marker="o", markersize=4, color=f"C{i}", label=label)
                drawn = True
        if not drawn:
            ax.text(0.5, 0.55, "no data", ha="center", va="center", transform=ax.transAxes, fontsize=12,
                    color="0.4", bbox={"facecolor": "white", "edgecolor": "none"})
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("mean score in bin")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction positive")
    # One legend for all panels, gathered from every panel: the last one may hold no curves.
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(text, handle)
    axes[-1].legend(list(handles.values()), list(handles), loc="upper left", bbox_to_anchor=(1.02, 1.0),
                    fontsize=8)
    return _write(fig, path)


def save(result: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write evaluation.json and the report's PNGs into `out_dir`; return every path written."""
    systems = _systems(result)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / JSON_NAME
    json_path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    written = [json_path,
               _prf_figure(result, out_dir / "prf.png"),
               _false_rate_figure(result, out_dir / "false_per_hour.png"),
               _det_figure(result, out_dir / "det.png")]
    used: set[str] = set()
    for name, body in systems.items():
        stem = _filename(name)
        # Two names can sanitise to the same stem; a second file must not overwrite the first.
        while stem in used:
            stem += "_"
        used.add(stem)
        written.append(_confusion_figure(name, body, out_dir / f"confusion_{stem}.png"))
    written.append(_reliability_figure(result, out_dir / "reliability.png"))
    return written
