"""The fleet correlator out of the serving process: `serve --fleet-process` (a child that ends with its server)
and `python -m cloud_svc correlate` (on its own), on SQLite and MariaDB."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import psutil

from cloud_svc import config
from cloud_svc.domain import BatchIn, EventIn, RecordIn
from cloud_svc.server import ServerThread
from cloud_svc.store import Store
from support import REPO, ServerProcess, env_with_repo


def _two_devices_hear_a_gunshot(store: Store, prefix: str) -> None:
    t = time.time_ns()
    batches = []
    for i, d in enumerate((f"{prefix}-a", f"{prefix}-b")):
        store.devices.add_device(d)
        e = EventIn(uuid.uuid4().hex, "gunshot", t + i * 10**9, None, 0.9, [("Gunshot, gunfire", 0.9)],
                    52.52 + i * 1e-4, 13.40, "onnxruntime", "ab" * 32, 2.0)
        batches.append(BatchIn(d, 1, [RecordIn(1, t, "event", e)]))
    store.ingest.commit(batches)


def _wait_fleet_alert(store: Store, timeout: float = 30.0) -> list:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        alerts = store.queries.list_alerts(kind="fleet")
        if alerts:
            return alerts
        time.sleep(0.2)
    return []


def test_serve_with_a_fleet_process_links_events_and_the_child_ends_with_the_server(cloud_db, tmp_path):
    cfg = config.load(None, {"db": cloud_db, "listen": "127.0.0.1:0", "clips": str(tmp_path / "clips"),
                             "fleet.process": True, "fleet.settle_s": 0.0, "fleet.poll_s": 0.2})
    srv = ServerThread(cfg)
    srv.start()
    try:
        [child] = [w for w in srv.app.workers if hasattr(w, "process")]
        assert child.process.is_alive() and child.process.pid != os.getpid()
        _two_devices_hear_a_gunshot(srv.app.store, "fp")
        [alert] = _wait_fleet_alert(srv.app.store)
        assert alert.device_count == 2 and alert.labels == ["gunshot"]
    finally:
        srv.stop()
    child.process.join(10)
    assert not child.process.is_alive()


def test_a_fleet_process_does_not_outlive_a_killed_server(tmp_path):
    db = f"sqlite:///{tmp_path / 'cloud.db'}"
    srv = ServerProcess(db, clips=str(tmp_path / "clips"), log_path=tmp_path / "server.log",
                        extra=("--fleet-process",))
    srv.start()
    kids = []
    try:
        deadline = time.monotonic() + 30
        while not kids and time.monotonic() < deadline:
            kids = [p for p in psutil.Process(srv.proc.pid).children(recursive=True)
                    if "multiprocessing" in " ".join(p.cmdline())]
            time.sleep(0.2)
        assert kids, "serve --fleet-process started no child"
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        gone, alive = psutil.wait_procs(kids, timeout=10)
        assert not alive, f"orphaned correlator processes: {alive}"
    finally:
        for p in kids:
            if p.is_running():
                p.kill()


def test_the_correlate_command_links_events_and_stops_on_sigterm(cloud_db):
    store = Store.open(cloud_db)
    store.upgrade()
    try:
        _two_devices_hear_a_gunshot(store, "cc")
        env = {**env_with_repo(), "CLOUD_SVC__FLEET__SETTLE_S": "0", "CLOUD_SVC__FLEET__POLL_S": "0.2"}
        proc = subprocess.Popen([sys.executable, "-m", "cloud_svc", "correlate", "--db", cloud_db], cwd=REPO,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            [alert] = _wait_fleet_alert(store)
            assert alert.device_count == 2
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err[-2000:]
        assert "1 fleet alerts made or extended" in out
    finally:
        store.close()


def test_a_server_whose_fleet_process_died_still_stops_promptly(tmp_path):
    cfg = config.load(None, {"db": f"sqlite:///{tmp_path / 'c.db'}", "listen": "127.0.0.1:0",
                             "clips": str(tmp_path / "clips"), "fleet.process": True})
    srv = ServerThread(cfg)
    srv.start()
    [child] = [w for w in srv.app.workers if hasattr(w, "process")]
    time.sleep(1.0)  # let it settle into its wait
    os.kill(child.process.pid, signal.SIGKILL)
    child.process.join(10)
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 15 and not srv._thread.is_alive()
