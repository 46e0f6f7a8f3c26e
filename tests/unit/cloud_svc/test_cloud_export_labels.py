"""`export-labels`: --since/--until parsing, the errors it names (a bad time, a database that is not there or not
migrated, a folder that is not an export), and the pack it writes from reviewed clips: labels by decision,
skipped clips counted, merging into an earlier export (a changed mind moves the file), the same bytes twice."""
from __future__ import annotations

import csv
import hashlib
import io
import time
from datetime import datetime

import numpy as np
import pytest
import soundfile as sf

from cloud_svc import export
from cloud_svc.__main__ import build_parser, main
from cloud_svc.clipstore import FileClipStore
from cloud_svc.domain import ReviewedClip, ReviewView
from cloud_svc.errors import ExportError
from edgert import pack

SR = 16000


def _since(*argv: str) -> int:
    args = build_parser().parse_args(["export-labels", "--db", "sqlite:///x.db", *argv, "out"])
    return args.since


@pytest.mark.parametrize("text, ago_s", [("7d", 7 * 86400), ("12h", 12 * 3600), ("30m", 1800), ("1.5h", 5400)])
def test_since_takes_a_duration_ago(text, ago_s):
    got = _since("--since", text)
    assert abs((time.time_ns() - got) / 1e9 - ago_s) < 5


@pytest.mark.parametrize("text, iso", [
    ("2025-11-25", "2025-11-25T00:00:00+00:00"),  # a date is midnight UTC
    ("2025-11-25T17:00:00Z", "2025-11-25T17:00:00+00:00"),
    ("2025-11-25T17:00:00+01:00", "2025-11-25T16:00:00+00:00"),
    ("2025-11-25 17:30", "2025-11-25T17:30:00+00:00"),
])
def test_since_takes_an_iso_date_or_time_utc_unless_it_says(text, iso):
    assert _since("--since", text) == int(datetime.fromisoformat(iso).timestamp()) * 10**9


def test_since_takes_nanoseconds_since_the_epoch():
    assert _since("--since", "1764090000000000000") == 1764090000000000000


@pytest.mark.parametrize("text, why", [("yesterday", "not a time"), ("7 days", "not a time"), (" ", "empty")])
def test_a_bad_since_is_refused_naming_the_option(text, why, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["export-labels", "--db", "sqlite:///x.db", "--since", text, "out"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "argument --since" in err and why in err


def test_since_is_required(capsys):
    with pytest.raises(SystemExit):
        main(["export-labels", "--db", "sqlite:///x.db", "out"])
    assert "--since" in capsys.readouterr().err


def test_until_must_come_after_since(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["export-labels", "--db", f"sqlite:///{tmp_path / 'c.db'}", "--since", "2025-11-25", "--until",
              "2025-11-24", str(tmp_path / "out")])
    assert exit_.value.code == 2 and "--until (2025-11-24" in capsys.readouterr().err


def _run(capsys, db: str, out, *extra: str) -> tuple[int, str]:
    rc = main(["export-labels", "--db", db, "--since", "1d", str(out), *extra])
    return rc, capsys.readouterr().err


def test_a_missing_sqlite_database_is_named_and_not_created(tmp_path, capsys):
    rc, err = _run(capsys, f"sqlite:///{tmp_path / 'nope.db'}", tmp_path / "out")
    assert rc == 2 and f"no database at {tmp_path / 'nope.db'}" in err
    assert not (tmp_path / "nope.db").exists() and not (tmp_path / "out").exists()


def test_an_unreachable_database_is_named(tmp_path, capsys):
    rc, err = _run(capsys, "mysql+pymysql://edge:secret@127.0.0.1:1/edgert", tmp_path / "out")
    assert rc == 2 and "cannot reach the database mysql+pymysql://edge:***@127.0.0.1:1/edgert" in err
    assert "secret" not in err and not (tmp_path / "out").exists()


def test_a_database_without_the_reviews_schema_says_to_upgrade(tmp_path, capsys):
    (tmp_path / "old.db").write_bytes(b"")  # an empty SQLite database: no migrations run
    rc, err = _run(capsys, f"sqlite:///{tmp_path / 'old.db'}", tmp_path / "out")
    assert rc == 2 and "db upgrade" in err and "(none)" in err


def test_a_missing_clip_store_is_named(tmp_path, capsys):
    from cloud_svc.store import Store

    s = Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    s.upgrade()
    s.close()
    rc, err = _run(capsys, f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "out", "--clips", str(tmp_path / "nope"))
    assert rc == 2 and f"no clip store at {tmp_path / 'nope'}" in err and not (tmp_path / "nope").exists()


def test_an_empty_window_writes_an_empty_pack(tmp_path, capsys):
    from cloud_svc.store import Store

    s = Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    s.upgrade()
    s.close()
    (tmp_path / "clips").mkdir()
    rc = main(["export-labels", "--db", f"sqlite:///{tmp_path / 'c.db'}", "--since", "1d", str(tmp_path / "out")])
    assert rc == 0 and "0 clips of 0 events" in capsys.readouterr().out
    assert (tmp_path / "out" / "labels.csv").read_text().strip() == ",".join(pack.COLUMNS)


# ---------------------------------------------------------------------------------------------- the pack itself
def _flac(seconds: float, seed: int) -> bytes:
    """An edge clip: 16-bit FLAC at 16 kHz."""
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * SR)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _reviewed(n: int, edge_label: str, decision: str, sha: str, *, label=None, reviewer="ann", review_id=None,
              device="lamp-1") -> ReviewedClip:
    eid = f"{n:032x}"
    rid = review_id or n
    return ReviewedClip(n, device, eid, edge_label, ReviewView(rid, n, decision, label, reviewer, None,
                                                               1_764_090_000_000_000_000 + rid), sha, "flac", SR,
                        1.0, 1_764_000_000_000_000_000, None)


@pytest.fixture
def clips(tmp_path):
    return FileClipStore(tmp_path / "clips")


def _rows(out) -> list[dict[str, str]]:
    with open(out / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _tree(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_labels_follow_the_decision(clips, tmp_path):
    sha = clips.put(_flac(1.0, 0))
    got = [export.exported_label(_reviewed(1, "glass_break", d, sha, label=lab))
           for d, lab in (("real", None), ("false_alarm", None), ("wrong_label", "siren"))]
    assert got == ["glass_break", pack.NON_EVENT_LABEL, "siren"]


def test_missing_and_undecodable_clips_are_skipped_counted_and_named(clips, tmp_path):
    good = clips.put(_flac(1.0, 0))
    garbage = clips.put(b"not audio at all")
    rows = [_reviewed(1, "scream", "real", good), _reviewed(2, "scream", "real", "ab" * 32),
            _reviewed(3, "shout", "false_alarm", garbage)]
    r = export.export(rows, clips, tmp_path / "out", progress=False)
    assert r.labels == {"scream": 1} and r.written == 1
    assert [(s.event_id, s.clip_sha256) for s in r.skipped] == [(f"{2:032x}", "ab" * 32), (f"{3:032x}", garbage)]
    assert "is not in" in r.skipped[0].reason and "could not be decoded" in r.skipped[1].reason
    assert [x["file"] for x in _rows(tmp_path / "out")] == [f"audio/scream/scream_lamp-1_{1:032x}.wav"]


def test_the_samples_of_a_16_bit_clip_come_through_exactly(clips, tmp_path):
    data = _flac(2.5, 1)
    sha = clips.put(data)
    export.export([_reviewed(1, "siren", "real", sha)], clips, tmp_path / "out", progress=False)
    got, rate = sf.read(tmp_path / "out" / _rows(tmp_path / "out")[0]["file"], dtype="float32")
    want, _ = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == SR and np.array_equal(got, want)


def test_full_scale_is_clipped_not_wrapped():
    got, _ = sf.read(io.BytesIO(export.wav_bytes(np.array([1.0, -1.0, 0.5], np.float32))), dtype="int16")
    assert got.tolist() == [32767, -32768, 16384]


def test_the_same_export_twice_leaves_the_same_bytes(clips, tmp_path):
    rows = [_reviewed(1, "scream", "real", clips.put(_flac(1.0, 0))),
            _reviewed(2, "shout", "false_alarm", clips.put(_flac(0.7, 1)))]
    out = tmp_path / "out"
    export.export(rows, clips, out, progress=False)
    before = _tree(out)
    time.sleep(1.1)  # a timestamp written into any file would show
    r = export.export(rows, clips, out, progress=False)
    assert (r.written, r.unchanged, r.moved, r.kept) == (0, 2, 0, 0)
    assert _tree(out) == before


def test_a_later_window_merges_and_a_changed_mind_moves_the_file(clips, tmp_path):
    a, b = clips.put(_flac(1.0, 0)), clips.put(_flac(1.0, 1))
    out = tmp_path / "out"
    export.export([_reviewed(1, "glass_break", "real", a), _reviewed(2, "scream", "real", b)], clips, out,
                  progress=False)
    old = out / f"audio/glass_break/glass_break_lamp-1_{1:032x}.wav"
    assert old.is_file()
    # The next window: event 1 was looked at again and is a false alarm after all; event 2 was not reviewed again.
    r = export.export([_reviewed(1, "glass_break", "false_alarm", a, reviewer="bob", review_id=9)], clips, out,
                      progress=False)
    assert (r.written, r.moved, r.kept) == (1, 1, 1)
    assert not old.exists()
    rows = {x["file"]: x for x in _rows(out)}
    assert set(rows) == {f"audio/background/background_lamp-1_{1:032x}.wav", f"audio/scream/scream_lamp-1_{2:032x}.wav"}
    files = {str(p.relative_to(out)) for p in (out / "audio").rglob("*.wav")}
    assert files == set(rows)  # no file left behind under the old label
    with open(out / "provenance.csv", newline="") as fh:
        prov = {x["event_id"]: x for x in csv.DictReader(fh)}
    assert (prov[f"{1:032x}"]["decision"], prov[f"{1:032x}"]["reviewer"], prov[f"{1:032x}"]["review_id"]) == (
        "false_alarm", "bob", "9")
    assert prov[f"{1:032x}"]["reviewed_at"] == "2025-11-25T17:00:00.000000009Z"
    assert rows[f"audio/scream/scream_lamp-1_{2:032x}.wav"]["sha1"] == hashlib.sha1(
        (out / f"audio/scream/scream_lamp-1_{2:032x}.wav").read_bytes()).hexdigest()


def test_a_folder_that_is_not_an_export_is_refused(clips, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "labels.csv").write_text("file,label\n")
    with pytest.raises(ExportError, match="not empty and holds no pack of export-labels"):
        export.export([], clips, tmp_path / "out", progress=False)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export.export([], clips, tmp_path / "afile", progress=False)


def test_device_ids_become_safe_file_names():
    assert pack.clip_file("siren", "site:7/a", "ff") == "audio/siren/siren_site-7-a_ff.wav"


def test_an_interrupted_first_export_is_merged_into_not_refused(clips, tmp_path, monkeypatch):
    out = tmp_path / "out"
    sha = clips.put(_flac(1.0, 0))
    rows = [_reviewed(1, "scream", "real", sha), _reviewed(2, "scream", "real", sha)]
    real_decode, calls = export.audio.decode, []

    def decode_then_interrupt(data, what=None):  # Ctrl-C while the second clip is decoded
        calls.append(what)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_decode(data, what)

    monkeypatch.setattr(export.audio, "decode", decode_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        export.export(rows, clips, out, progress=False)
    monkeypatch.undo()
    assert len(list(out.rglob("*.wav"))) == 1
    r = export.export(rows, clips, out, progress=False)
    assert r.labels == {"scream": 2} and r.unchanged == 1 and len(_rows(out)) == 2
