"""The evaluation report: console table, JSON and PNG figures from a synthetic result."""
from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from edge_rt.evaluation import report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LABELS = ("scream", "glass_break", "smoke_alarm")  # smoke_alarm has no positive truth
THRESHOLDS = [0.1, 0.3, 0.5, 0.7, 0.9]


def _system(description: str, shift: float) -> dict:
    per_label = {
        "scream": {"tp": 18, "fp": 3, "fn": 2, "precision": 0.857, "recall": 0.9, "f1": 0.878,
                   "false_per_hour": 1.5 - shift},
        "glass_break": {"tp": 7, "fp": 0, "fn": 5, "precision": 1.0, "recall": 0.583, "f1": 0.737,
                        "false_per_hour": 0.0},
        "smoke_alarm": {"tp": 0, "fp": 4, "fn": 0, "precision": None, "recall": None, "f1": None,
                        "false_per_hour": 12.0 - 10 * shift},
    }
    det = {
        label: {"thresholds": list(THRESHOLDS),
                "false_per_hour": [(30.0 - 10 * shift) / (k + 1), 8.0 / (k + 1) - 2 * shift, 2.0 - shift, 0.5, 0.0],
                "miss_rate": [0.02, 0.05 + shift / 10, 0.15 + k / 20, 0.4 - shift / 4, 0.8 - k / 10]}
        for k, label in enumerate(LABELS)
    }
    truth = list(LABELS) + ["none"]
    detected = list(LABELS) + ["missed"]
    matrix = [[18, 1, 0, 2], [0, 7, 0, 5], [0, 0, 0, 0], [3, 0, 4, 0]]
    reliability = {
        label: {"bin_lo": [0.0, 0.25, 0.5, 0.75], "bin_hi": [0.25, 0.5, 0.75, 1.0],
                "mean_score": [0.1, 0.4, 0.6, 0.9],
                "frac_positive": [0.05 + k / 20, 0.3 + shift / 5 - k / 10, 0.7, 0.95 - shift / 5 - k / 10],
                "count": [120, 40, 0, 25]}
        for k, label in enumerate(LABELS)
    }
    return {"description": description, "per_label": per_label, "distress_alerts": 3 + int(10 * shift),
            "distress_alerts_per_hour": 0.25 + shift, "ordinary_hours": 12.0, "det": det,
            "confusion": {"truth": truth, "detected": detected, "matrix": matrix}, "reliability": reliability}


def make_result() -> dict:
    return {
        "systems": {"raw": _system("AudioSet groups alone", 0.0),
                    "shipped": _system("calibrated detector", 0.5)},
        "data": {"clips": 420, "streams": 6, "hours": 12.0, "sources": ["esc50", "synth:tour"]},
        "command": "python -m edge_rt evaluate --out /tmp/x",
        "created": "2025-01-01T00:00:00Z",
    }


EXPECTED_FILES = ("evaluation.json", "prf.png", "false_per_hour.png", "det.png",
                  "confusion_raw.png", "confusion_shipped.png", "reliability.png")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, list[Path]]:
    # Rendering takes about a second; the read-only checks below share one save.
    result, out = make_result(), tmp_path_factory.mktemp("report")
    return result, out, report.save(result, out)


def test_save_writes_and_returns_every_file(saved) -> None:
    _, out, paths = saved
    assert sorted(p.name for p in paths) == sorted(EXPECTED_FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPECTED_FILES)
    for p in paths:
        assert p.parent == out and p.is_file()


@pytest.mark.parametrize("name", [n for n in EXPECTED_FILES if n.endswith(".png")])
def test_each_figure_is_a_real_png_of_readable_size(saved, name: str) -> None:
    from matplotlib.image import imread

    path = saved[1] / name
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size > 10_000  # a blank canvas compresses to a few kB
    image = imread(path)
    height, width = image.shape[:2]
    assert width >= 400 and height >= 300
    assert image[..., :3].std() > 0.05  # something is drawn, not a flat colour


def test_json_round_trips_to_the_input(saved) -> None:
    result, out, _ = saved
    assert json.loads((out / "evaluation.json").read_text()) == result


def test_table_has_a_row_per_label_plus_the_alert_row_and_columns_per_system() -> None:
    t = report.table(make_result())
    assert t.row_count == len(LABELS) + 1
    headers = [str(c.header) for c in t.columns]
    assert headers[0] == "label"
    assert headers[1:5] == ["raw P", "raw R", "raw F1", "raw FA/h"]
    assert headers[5:] == ["shipped P", "shipped R", "shipped F1", "shipped FA/h"]
    labels = list(t.columns[0].cells)
    assert labels == [*LABELS, "distress alerts / h"]


def test_table_formats_none_as_dash_and_numbers_to_fixed_decimals() -> None:
    t = report.table(make_result())
    row = {str(c.header): list(c.cells) for c in t.columns}
    smoke = LABELS.index("smoke_alarm")
    assert row["raw P"][smoke] == "—"
    assert row["raw R"][smoke] == "—"
    assert row["raw F1"][smoke] == "—"
    assert row["raw FA/h"][smoke] == "12.00"
    assert row["shipped P"][0] == "0.857"
    assert row["shipped FA/h"][0] == "1.00"
    assert row["shipped FA/h"][-1] == "0.75"  # distress alerts per hour


def test_print_report_shows_table_and_per_system_hours() -> None:
    buf = io.StringIO()
    report.print_report(make_result(), Console(file=buf, width=200, color_system=None))
    text = buf.getvalue()
    assert "shipped FA/h" in text and "glass_break" in text
    assert "raw: 12.00 h of ordinary audio, 3 distress alerts (0.25 / h)" in text
    assert "shipped: 12.00 h of ordinary audio, 8 distress alerts (0.75 / h)" in text


def _det_pixels(result: dict, out: Path):
    from matplotlib.image import imread

    report.save(result, out)
    return imread(out / "det.png")


def test_det_figure_depends_on_the_curves(tmp_path: Path) -> None:
    base = make_result()
    same = _det_pixels(base, tmp_path / "a")
    again = _det_pixels(copy.deepcopy(base), tmp_path / "b")
    # Same input, same pixels: so a difference below comes from the data, not from rendering noise.
    assert same.shape == again.shape and (same == again).all()

    changed = copy.deepcopy(base)
    changed["systems"]["shipped"]["det"]["scream"]["miss_rate"] = [0.5, 0.6, 0.7, 0.8, 0.9]
    other = _det_pixels(changed, tmp_path / "c")
    assert same.shape != other.shape or (same != other).any()


def test_missing_and_none_parts_still_write_every_figure(tmp_path: Path) -> None:
    result = make_result()
    shipped = result["systems"]["shipped"]
    shipped["det"] = {}
    shipped["reliability"] = None
    shipped["confusion"] = {}
    shipped["per_label"]["scream"]["false_per_hour"] = None
    shipped["distress_alerts_per_hour"] = None
    result["systems"]["empty"] = {}
    paths = report.save(result, tmp_path)
    names = {p.name for p in paths}
    assert {"det.png", "reliability.png", "confusion_shipped.png", "confusion_empty.png"} <= names
    for p in paths:
        assert p.stat().st_size > 0
    t = report.table(result)
    assert t.row_count == len(LABELS) + 1
    cells = {str(c.header): list(c.cells) for c in t.columns}
    assert cells["shipped FA/h"][0] == "—"
    assert cells["empty P"] == ["—"] * len(LABELS) + [""]


def test_a_result_without_systems_still_writes_no_data_figures(tmp_path: Path) -> None:
    paths = report.save({"systems": {}, "data": {}, "command": "", "created": ""}, tmp_path)
    assert sorted(p.name for p in paths) == sorted(
        ["evaluation.json", "prf.png", "false_per_hour.png", "det.png", "reliability.png"])
    assert report.table({"systems": {}}).row_count == 1


def test_importing_the_module_does_not_import_matplotlib() -> None:
    import subprocess
    import sys

    code = "import sys, edge_rt.evaluation.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
