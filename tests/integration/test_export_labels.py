"""The review round trip: an edge's events and clips reach a real cloud, people review them (real, false alarm,
wrong label, a changed mind), `python -m cloud_svc export-labels` writes them as a labelled pack in the layout
of ../shared/data, and `edge_rt calibrate --extra` learns from it: the reviewed false alarm stops being raised."""
from __future__ import annotations

import csv
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from cloud_svc import config
from cloud_svc.domain import EventFilter
from cloud_svc.server import ServerThread
from edge_rt.capture.files import read_clip
from edge_rt.config import CloudConfig, EdgeConfig
from edge_rt.outbox import Outbox
from edge_rt.pipeline import flac_bytes
from edge_rt.uplink import Uplink
from edgert import audio, pack
from edgert.yamnet import paths
from support import REPO, cloud_cli, env_with_repo, put_event, wait_for

FAST = dict(backoff_initial_s=0.05, backoff_max_s=0.5, poll_s=0.005, heartbeat_s=0.5, connect_timeout_s=2.0)
DATA = paths.data_dir()
NEGATIVES = REPO.parent / "shared" / "negatives"
# name: (the edge's label, the audio it heard). background_0005 is ordinary ambience that YAMNet's glass group
# scores at 1.0: the kind of false alarm a fleet reports and a reviewer catches.
CASES = {
    "real": ("glass_break", "audio/glass_break/glass_break_0001.wav"),
    "changed_mind": ("glass_break", "audio/background/background_0005.wav"),
    "wrong_label": ("alarm", "audio/siren/siren_0001.wav"),
    "false_alarm": ("scream", "speech"),
    "clip_lost": ("shout", "audio/scream/scream_0002.wav"),
    "unreviewed": ("baby_cry", "audio/baby_cry/baby_cry_0001.wav"),
}
EXPECTED = {"real": "glass_break", "changed_mind": "background", "wrong_label": "siren", "false_alarm": "background"}
PLAN = (("ordinary", 0.5),)  # a short calib stream beside the pack: the test is about the pack's part


def _audio(spec: str) -> np.ndarray:
    if spec == "speech":  # a few ordinary words of a calib-split speaker
        words = sorted((NEGATIVES / "audio" / "speech").glob("speech_jackson_*"))[:3]
        return np.concatenate([read_clip(p) for p in words])
    assert DATA is not None
    return read_clip(DATA / spec)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A cloud database and clip store holding the six events, with their reviews; the server is stopped."""
    if DATA is None:
        pytest.fail("the labelled pack ../shared/data is not present")
    tmp = tmp_path_factory.mktemp("fleet")
    db = f"sqlite:///{tmp / 'cloud.db'}"
    cfg = config.load(None, {"db": db, "listen": "127.0.0.1:0", "clips": str(tmp / "clips"), "fleet.enabled": False})
    clips, ids = {}, {}
    with ServerThread(cfg) as server:
        store = server.app.store
        token = store.devices.add_device("lamp:1")  # a ':' a file name should not hold
        ob = Outbox(tmp / "outbox.db")
        for name, (label, spec) in CASES.items():
            clips[name] = flac_bytes(_audio(spec))  # the edge's own clip encoder
            ids[name] = put_event(ob, label, clip=clips[name])[2]
        up = Uplink(ob, f"127.0.0.1:{server.port}", "lamp:1", token, options=CloudConfig(**FAST)).start()
        assert wait_for(up.drained)
        up.stop()
        pk = {e.event_id: e.id for e in store.queries.list_events(EventFilter())}
        assert set(pk) == set(ids.values()), "every event arrived"
        store.reviews.add(pk[ids["real"]], "real", "ann")
        store.reviews.add(pk[ids["changed_mind"]], "real", "ann")
        store.reviews.add(pk[ids["wrong_label"]], "wrong_label", "carol", label="siren")
        store.reviews.add(pk[ids["false_alarm"]], "false_alarm", "ann", note="a radio play")
        store.reviews.add(pk[ids["clip_lost"]], "real", "ann")
        store.reviews.add(pk[ids["changed_mind"]], "false_alarm", "bob", note="a bottle bank, not a window")
    lost = hashlib.sha256(clips["clip_lost"]).hexdigest()
    (tmp / "clips" / lost[:2] / lost).unlink()  # the clip store lost one clip (a disk, a retention policy)
    return {"db": db, "clips": str(tmp / "clips"), "bytes": clips, "ids": ids, "tmp": tmp}


def _export(fleet, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return cloud_cli("export-labels", "--db", fleet["db"], "--clips", fleet["clips"], "--since", "1h", str(out),
                     *extra, check=False)


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def exported(fleet):
    out = fleet["tmp"] / "pack"
    proc = _export(fleet, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_the_pack_has_the_layout_of_the_shared_data_and_the_reviewed_labels(fleet, exported):
    out, proc = exported
    assert "4 clips of 5 events" in proc.stdout and "1 skipped" in proc.stdout, proc.stdout
    with open(DATA / "labels.csv", newline="") as fh:
        assert next(csv.reader(fh)) == list(pack.COLUMNS)  # the shared pack's own columns
    rows = _csv(out / "labels.csv")
    assert list(rows[0]) == list(pack.COLUMNS)
    by_event = {r["event_id"]: r for r in _csv(out / "provenance.csv")}
    assert set(by_event) == {fleet["ids"][n] for n in EXPECTED}  # not the lost clip, not the unreviewed event
    for name, label in EXPECTED.items():
        p = by_event[fleet["ids"][name]]
        row = next(r for r in rows if r["file"] == p["file"])
        assert row["label"] == p["label"] == label, name
        assert p["file"] == f"audio/{label}/{label}_lamp-1_{fleet['ids'][name]}.wav"
        assert p["device_id"] == "lamp:1" and p["edge_label"] == CASES[name][0]
        assert p["clip_sha256"] == hashlib.sha256(fleet["bytes"][name]).hexdigest()
        wav = out / p["file"]
        info = sf.info(wav)
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
        assert row["sample_rate"] == "16000" and row["sha1"] == hashlib.sha1(wav.read_bytes()).hexdigest()
        got, _ = sf.read(wav, dtype="float32")
        np.testing.assert_array_equal(got, audio.decode(fleet["bytes"][name]))  # the clip's samples, exactly
        assert float(row["duration_s"]) == pytest.approx(got.size / 16000, abs=1e-3)
    mind = by_event[fleet["ids"]["changed_mind"]]
    assert (mind["decision"], mind["reviewer"]) == ("false_alarm", "bob")  # the latest review wins
    assert by_event[fleet["ids"]["wrong_label"]]["reviewer"] == "carol"
    assert sorted(str(p.relative_to(out)) for p in (out / "audio").rglob("*.wav")) == sorted(r["file"] for r in rows)
    assert f"event {fleet['ids']['clip_lost']}" in proc.stderr and "is not in" in proc.stderr  # named, not fatal


def test_exporting_again_leaves_the_same_pack(fleet, exported):
    out, _ = exported
    before = _tree(out)
    proc = _export(fleet, out)
    assert proc.returncode == 0, proc.stderr
    assert "0 written, 4 unchanged" in proc.stdout
    assert _tree(out) == before


def test_a_folder_that_is_not_an_export_is_refused_and_left_alone(fleet, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    proc = _export(fleet, tmp_path)
    assert proc.returncode == 2 and "not empty" in proc.stderr and str(tmp_path) in proc.stderr
    assert "Traceback" not in proc.stderr and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_calibrate_learns_from_the_pack_and_stops_the_reviewed_false_alarm(fleet, exported, tmp_path):
    from edge_rt import config as edge_config
    from edge_rt.evaluation import calibrate, score
    from edge_rt.evaluation.material import extra_recordings
    from edgert.settings import merge
    from edgert.yamnet import backends
    from edgert.yamnet.classmap import class_names
    from edgert.yamnet.head import Head

    out, _ = exported
    be, head, names = backends.load("onnxruntime", threads=1), Head.load_optional(), class_names()
    # The same pack without its false alarms, to see what they changed.
    plain = tmp_path / "plain"
    shutil.copytree(out, plain)
    keep = [r for r in _csv(out / "labels.csv") if r["label"] != pack.NON_EVENT_LABEL]
    with open(plain / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(pack.COLUMNS), lineterminator="\n")
        w.writeheader()
        w.writerows(keep)
    docs = {}
    for name, p in (("with", out), ("without", plain)):
        path, check = calibrate.main(be, head, names, tmp_path / f"{name}.yaml", extra=[p], plan=PLAN, progress=False)
        docs[name] = yaml.safe_load(path.read_text())
    extra = docs["with"]["calibration"]["material"]["extra"]
    assert [(x["pack"], x["clips"], x["events"], x["negatives"]) for x in extra] == [
        ("pack", 4, {"glass_break": 1, "siren": 1}, 2)]  # both false alarms counted as ordinary sound
    assert docs["without"]["calibration"]["material"]["extra"][0]["negatives"] == 0

    base = edge_config.load(calibrated=False, env={})
    fa = next(r for r in extra_recordings([out], be, base.detector.labels, progress=False)
              if Path(r.name).name.startswith("background_lamp-1_" + fleet["ids"]["changed_mind"]))
    raised = {}
    for name, doc in docs.items():
        cfg = EdgeConfig.model_validate(merge(edge_config.defaults(calibrated=False), {"detector": doc["detector"]}))
        [res] = score.run([fa], cfg, names, head)
        raised[name] = [d.label for d in res.detections]
        assert doc["calibration"]["choices"]["glass_break"]["found"] == 1, name  # the real break is still found
    assert "glass_break" in raised["without"]  # calibrated without the review, the bottle bank still alarms
    assert "glass_break" not in raised["with"], raised


def test_calibrate_names_a_pack_label_it_cannot_learn(tmp_path):
    bad = tmp_path / "bad"
    (bad / "audio" / "kazoo").mkdir(parents=True)
    sf.write(bad / "audio" / "kazoo" / "kazoo_1.wav", np.zeros(16000, np.float32), 16000)
    proc = subprocess.run([sys.executable, "-m", "edge_rt", "calibrate", "--extra", str(bad), "--out",
                           str(tmp_path / "c.yaml")], cwd=REPO, env=env_with_repo(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "kazoo" in proc.stderr and str(bad) in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "c.yaml").exists()
