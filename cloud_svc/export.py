"""`python -m cloud_svc export-labels`: reviewed events' clips as a labelled pack in the layout of ../shared/data
(edgert.pack), so that `python -m edge_rt calibrate --extra PACK` learns from a fleet's own false alarms.

The label of a clip is the edge's for a "real" event, the reviewer's for a "wrong label", and the pack's
non-event label (background) for a "false alarm". Clips are decoded as both sides decode audio (edgert.audio:
16 kHz mono, soxr) and written as 16-bit PCM WAV, the pack's own encoding: the edge sends 16-bit clips at
16 kHz, so their samples come through exactly, and the bytes of a WAV do not depend on when it was written.

OUT is new, empty, or a pack an earlier export wrote (it has provenance.csv); anything else is refused. An
earlier pack is merged into: an event exported again is rewritten where its current review puts it (a changed
mind moves its file to the new label), events outside this window stay. So the same export twice leaves the
same bytes, and exports of consecutive windows add up to one pack. A clip that cannot be read or decoded is
skipped, counted and named; it never stops the export.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from cloud_svc.clipstore import ClipStore
from cloud_svc.domain import Decision, ReviewedClip
from cloud_svc.errors import ClipStoreError, ExportError
from edgert import audio, pack
from edgert.errors import CoreError

PROVENANCE_CSV = "provenance.csv"
PROVENANCE_COLUMNS = ("file", "device_id", "event_id", "edge_label", "decision", "label", "reviewer",
                      "reviewed_at", "review_id", "clip_sha256")
README = "README.md"
LICENSE = "fleet recording, internal use"
PCM_FULL_SCALE = 32768  # 16-bit PCM: float sample x is the integer x * 32768, as libsndfile reads it back
Key = tuple[str, str]  # (device_id, event_id)


@dataclass(frozen=True)
class Skipped:
    device_id: str
    event_id: str
    clip_sha256: str
    reason: str


@dataclass
class ExportResult:
    out: Path
    labels: dict[str, int]  # label -> clips of this window in the pack
    written: int = 0  # files (re)written
    unchanged: int = 0  # files already there with the same bytes
    moved: int = 0  # earlier files of an event whose label changed, removed
    kept: int = 0  # rows of earlier exports outside this window
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def exported(self) -> int:
        return sum(self.labels.values())


def exported_label(rc: ReviewedClip) -> str:
    """The pack label of one reviewed event (see the module docstring)."""
    d = Decision(rc.review.decision)
    if d is Decision.REAL:
        return rc.edge_label
    if d is Decision.WRONG_LABEL:
        if not rc.review.label:
            raise ExportError(f"review {rc.review.id} of event {rc.event_id} says 'wrong label' without the right one")
        return rc.review.label
    return pack.NON_EVENT_LABEL


def wav_bytes(wave: np.ndarray) -> bytes:
    """float32[n] mono at 16 kHz -> a 16-bit PCM WAV file's bytes (deterministic: no timestamped chunk)."""
    import soundfile as sf

    pcm = np.clip(np.round(wave.astype(np.float64) * PCM_FULL_SCALE), -PCM_FULL_SCALE, PCM_FULL_SCALE - 1)
    buf = io.BytesIO()
    sf.write(buf, pcm.astype(np.int16), audio.SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def iso_ns(ns: int) -> str:
    """'2025-11-25T17:00:00.123456789Z': UTC to the nanosecond, without float rounding."""
    s, frac = divmod(int(ns), 1_000_000_000)
    return datetime.fromtimestamp(s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _csv_bytes(columns: Sequence[str], rows: Sequence[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def previous_rows(out: Path) -> dict[Key, dict[str, str]]:
    """The rows of the pack an earlier export wrote into `out` (none for a new or empty folder); refuses a
    folder that holds anything else."""
    if not out.exists():
        return {}
    if not out.is_dir():
        raise ExportError(f"{out} is a file, not a folder")
    prov = out / PROVENANCE_CSV
    if not prov.is_file():
        if any(out.iterdir()):
            raise ExportError(f"{out} is not empty and holds no pack of export-labels (no {PROVENANCE_CSV}): give a "
                              "new or empty folder, or the folder of an earlier export to merge into")
        return {}
    rows = _read_csv(prov)
    if rows and not set(PROVENANCE_COLUMNS) <= set(rows[0]):
        raise ExportError(f"{prov}: not the provenance file of export-labels (columns {', '.join(PROVENANCE_COLUMNS)})")
    labels = {r["file"]: r for r in _read_csv(out / pack.LABELS_CSV)} if (out / pack.LABELS_CSV).is_file() else {}
    return {(r["device_id"], r["event_id"]): {**labels.get(r["file"], {}), **r} for r in rows}


def readme(rows: Sequence[dict[str, str]]) -> str:
    counts = Counter(r["label"] for r in rows)
    table = "\n".join(f"| {lab} | {n} |" for lab, n in sorted(counts.items()))
    return (
        "# Reviewed fleet clips (written by `python -m cloud_svc export-labels`)\n\n"
        f"{len(rows)} clips in `{pack.AUDIO_DIR}/<label>/`, 16 kHz mono 16-bit PCM WAV, decoded from the clips "
        "the devices uploaded.\n"
        f"`{pack.LABELS_CSV}` has the columns of ../shared/data/labels.csv; `{PROVENANCE_CSV}` says where each clip "
        "came from and who decided its label: device_id, event_id, edge_label, decision, label, reviewer, "
        "reviewed_at (UTC), review_id, clip_sha256.\n\n"
        f"Labels: a real event keeps the edge's label, a wrong label takes the reviewer's, a false alarm is "
        f"`{pack.NON_EVENT_LABEL}` (ordinary sound: any event raised on it is false).\n"
        "Use: `python -m edge_rt calibrate --extra THIS_FOLDER`. Exporting again into this folder merges.\n\n"
        f"| label | clips |\n|---|---|\n{table}\n")


def export(reviewed: Sequence[ReviewedClip], clips: ClipStore, out: Path, progress: Optional[bool] = None
           ) -> ExportResult:
    """Write (or merge) the pack of `reviewed` into `out`. `progress` None: a bar only on a terminal."""
    from tqdm import tqdm

    out = Path(out)
    rows = previous_rows(out)
    if not (out / PROVENANCE_CSV).is_file():  # mark the folder first, so that a run cut short is merged into
        _write_atomic(out / PROVENANCE_CSV, _csv_bytes(PROVENANCE_COLUMNS, []))
    result = ExportResult(out, {})
    done: set[Key] = set()
    for rc in tqdm(reviewed, desc="export-labels", unit="clip", disable=None if progress is None else not progress):
        key = (rc.device_id, rc.event_id)
        label = exported_label(rc)
        try:
            wave = audio.decode(clips.get(rc.clip_sha256), what=f"clip {rc.clip_sha256}")  # float32[n] 16 kHz
        except (ClipStoreError, CoreError) as exc:
            result.skipped.append(Skipped(rc.device_id, rc.event_id, rc.clip_sha256, str(exc)))
            continue
        data = wav_bytes(wave)
        file = pack.clip_file(label, rc.device_id, rc.event_id)
        dest = out / file
        if dest.is_file() and dest.read_bytes() == data:
            result.unchanged += 1
        else:
            _write_atomic(dest, data)
            result.written += 1
        old = rows.get(key)
        if old is not None and old["file"] != file:
            (out / old["file"]).unlink(missing_ok=True)
            result.moved += 1
        rows[key] = {
            "file": file, "label": label, "source": f"fleet:{rc.device_id}",
            "original_path": f"{rc.device_id}/{rc.event_id}.{rc.clip_format}", "license": LICENSE,
            "sha1": hashlib.sha1(data).hexdigest(), "duration_s": f"{wave.size / audio.SAMPLE_RATE:.3f}",
            "sample_rate": str(audio.SAMPLE_RATE),
            "device_id": rc.device_id, "event_id": rc.event_id, "edge_label": rc.edge_label,
            "decision": rc.review.decision, "reviewer": rc.review.reviewer, "reviewed_at": iso_ns(rc.review.created_ns),
            "review_id": str(rc.review.id), "clip_sha256": rc.clip_sha256,
        }
        done.add(key)
        result.labels[label] = result.labels.get(label, 0) + 1
    result.kept = len(set(rows) - done)
    ordered = sorted(rows.values(), key=lambda r: r["file"])
    _write_atomic(out / pack.LABELS_CSV, _csv_bytes(pack.COLUMNS, ordered))
    _write_atomic(out / README, readme(ordered).encode())
    _write_atomic(out / PROVENANCE_CSV, _csv_bytes(PROVENANCE_COLUMNS, ordered))
    return result


def open_database(url: str):
    """The Store of `url`, checked to be there, reachable and at the schema this code reads (no migration:
    an export only reads)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from cloud_svc import db
    from cloud_svc.errors import StorageUnavailable
    from cloud_svc.store import Store

    try:
        u = make_url(url)
    except sa.exc.ArgumentError:
        raise ExportError(f"--db: not a database URL: {url!r}") from None
    shown = u.render_as_string(hide_password=True)
    if u.get_backend_name() == "sqlite":
        if not u.database or u.database == ":memory:":
            raise ExportError(f"--db {shown}: an in-memory database holds no reviews; give the server's database")
        if not Path(u.database).expanduser().is_file():
            raise ExportError(f"no database at {Path(u.database).expanduser()} (--db {shown})")
    store = Store.open(url)
    try:
        store.ping()
        rev = db.current_revision(store.engine)
    except (StorageUnavailable, sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        store.close()
        why = getattr(exc, "orig", None) or exc
        raise ExportError(f"cannot reach the database {shown}: {why}") from None
    head = db.head_revision()
    if rev != head:
        store.close()
        raise ExportError(f"the database {shown} is at schema revision {rev or '(none)'}, and export-labels reads "
                          f"{head}: run `python -m cloud_svc db upgrade --db URL` first")
    return store


def open_clips(spec: Optional[str], db_url: str) -> ClipStore:
    """The clip store the server writes (as `serve --clips`), refused when its folder is not there."""
    from urllib.parse import urlparse

    from cloud_svc.clipstore import default_root, open_store

    if not (spec and spec.startswith("s3://")):
        root = Path(urlparse(spec).path if spec and spec.startswith("file://") else (spec or default_root(db_url)))
        if not root.expanduser().is_dir():
            raise ExportError(f"no clip store at {root.expanduser()} " + (
                "(--clips)" if spec else "(the default beside the database; give --clips, as to `serve`)"))
    return open_store(spec, db_url)
