"""`models verify`: every artifact's sha256 against the manifest and its parity against TF's golden files."""
from __future__ import annotations

import sys

from rich.console import Console

from edge_rt.errors import EdgeRtError
from edgert.errors import CoreError
from edge_rt.models import golden, parity
from edgert.yamnet import manifest, paths


def verify(model_dir=None) -> int:
    """Print the sha256 and parity tables; return 0 when everything holds, 1 otherwise."""
    console = Console(width=110)
    model_dir = paths.model_dir(model_dir)
    man = manifest.load(model_dir)
    problems: list[str] = []
    lock = manifest.load_lock()
    for name in paths.ARTIFACTS:
        try:
            sha = manifest.check_artifact(model_dir, name, man)
            lock_note = "  (differs from artifacts.lock.json)" if manifest.lock_mismatches(lock, {name: sha}) else ""
            if lock_note:
                problems.append(f"{name}: sha256 differs from models/artifacts.lock.json")
            console.print(f"[green]ok[/]  {name:26s} sha256 {sha[:16]}…  {man['artifacts'][name]['bytes']:>11,d} B{lock_note}")
        except (EdgeRtError, CoreError) as exc:
            problems.append(str(exc))
            console.print(f"[red]BAD[/] {name}: {exc}")
    cal = manifest.calibration_entry(model_dir)
    if cal["present"] and not cal["matches_head"]:
        problems.append(f"the shipped detector calibration (edgert/{cal['file']}) was made for the head "
                        f"{str(cal['head_sha256'])[:16]}… but the built head is {str(cal['built_head_sha256'])[:16]}…: "
                        f"rerun `python -m edge_rt calibrate` (and commit the YAML)")
    elif cal["present"]:
        console.print(f"[green]ok[/]  calibration {cal['file']:14s} sha256 {cal['sha256'][:16]}…  "
                      f"(seed {cal['seed']}, made for this head)")
    if not golden.golden_files():
        problems.append(f"no golden files in {paths.golden_dir()}: {paths.BUILD_HINT}")
    if problems:
        for p in problems:
            console.print(f"[red]error:[/] {p}")
        return 1
    par = parity.measure(model_dir, paths.golden_dir())
    console.print(parity.table(par))
    bad = parity.failures(par)
    for b in bad:
        console.print(f"[red]parity failure:[/] {b}")
    if not bad:
        console.print("[green]all artifacts match their manifest and TF's golden outputs[/]")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(verify())
