"""`python -m edge_rt evaluate` end to end on labelled clips: both systems side by side, JSON and figures."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from edgert.yamnet import paths

ROOT = Path(__file__).resolve().parents[2]


def test_evaluate_reports_raw_groups_beside_the_shipped_detector(tmp_path):
    data = paths.data_dir()
    with open(data / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    pick = []
    for label in ("glass_break", "scream", "shout_help", "background"):
        pick += [r for r in rows if r["label"] == label][:2]
    table = tmp_path / "clips.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label"])
        for r in pick:
            w.writerow([str(data / r["file"]), r["label"]])
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "edge_rt", "evaluate", str(table), "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "raw" in proc.stderr and "shipped" in proc.stderr
    result = json.loads((out / "evaluation.json").read_text())
    assert set(result["systems"]) == {"raw", "shipped"}
    assert result["data"]["clips"] == 8
    for sysname, s in result["systems"].items():
        glass = s["per_label"]["glass_break"]
        assert glass["tp"] + glass["fn"] == 2, sysname  # two glass clips are two truths
        assert "shout" in s["per_label"]  # shout_help is read as the detector's shout
    for png in ("prf.png", "false_per_hour.png", "det.png", "reliability.png", "confusion_raw.png",
                "confusion_shipped.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_evaluate_names_a_missing_input(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edge_rt", "evaluate", str(tmp_path / "nope.csv")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "nope.csv" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_names_an_unknown_stream_split():
    proc = subprocess.run([sys.executable, "-m", "edge_rt", "evaluate", "streams:bogus"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "bogus" in proc.stderr and "calib" in proc.stderr
    assert "Traceback" not in proc.stderr
