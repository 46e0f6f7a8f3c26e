"""The whole system as processes, failing: an edge killed with SIGKILL 20 times at random moments, and the one
MariaDB killed and restarted under a cloud taking a busy stream. In each case 0 records lost, 0 duplicate rows,
and every distress event verified exactly once (tests/system/exactly_once.py)."""
from __future__ import annotations

import random
import signal
import time

from busy_device import BusyDevice, every_tenth
from exactly_once import check_exactly_once
from mariadb_server import PrivateMariaDB

from edge_rt.config import CloudConfig
from support import ServerProcess, TempMariaDB, add_device, edge_run, mariadb_available

KILLS = 20
PLAN = ",".join(f"{lab}@{t}" for t, lab in zip(range(2, 19, 2), ["glass_break", "siren", "scream"] * 3))


def test_an_edge_killed_20_times_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    why = mariadb_available()
    assert why is None, why
    db = TempMariaDB()
    srv = ServerProcess(db.url, clips=str(tmp_path / "clips"), log_path=tmp_path / "server.log",
                        extra=("--verify-workers", "1"))
    srv.start()
    try:
        token = add_device(db.url, "lamp-k")
        spool = tmp_path / "spool"
        rng = random.Random(20)
        env = {"EDGE_RT__RUNTIME__GRACE_S": "20", "PYTHONUNBUFFERED": "1"}
        for i in range(KILLS):
            p = edge_run(f"synth:dur=20,seed={i},{PLAN}", spool, cloud=srv.target, device_id="lamp-k",
                         token=token, env=env, wait=False)
            time.sleep(rng.uniform(0.5, 7.0))  # in start-up, mid-stream, mid-upload or waiting for acks
            p.send_signal(signal.SIGKILL)
            p.communicate(timeout=30)
        last = edge_run(f"synth:dur=20,seed={KILLS},{PLAN}", spool, cloud=srv.target, device_id="lamp-k",
                        token=token, env=env, timeout=240)
        assert last.returncode == 0, last.stderr[-3000:]
        verdict = check_exactly_once(db.url, {"lamp-k": spool / "outbox.db"})
        print(f"\nedge killed {KILLS} times: {verdict}")
        assert verdict.events >= 9  # at least the last run's events
    finally:
        srv.terminate()
        db.drop()


def test_the_database_killed_and_restarted_mid_ingest_loses_and_duplicates_nothing(tmp_path):
    mdb = PrivateMariaDB(tmp_path / "mariadb")
    mdb.start()
    srv = ServerProcess(mdb.url, clips=str(tmp_path / "clips"), log_path=tmp_path / "server.log",
                        extra=("--verify-workers", "1"))
    srv.start()
    try:
        tok_edge, tok_fire = add_device(mdb.url, "edge-1"), add_device(mdb.url, "fire-1")
        # a real edge in real time (the tour: glass, scream, shout, siren, a cry), its grace outlasting the outage
        edge = edge_run("synth:tour", tmp_path / "spool-edge", cloud=srv.target, device_id="edge-1",
                        token=tok_edge, fast=False, env={"EDGE_RT__RUNTIME__GRACE_S": "120"}, wait=False)
        # and a busy device: 20 events/s, every 10th a glass break (verified), through the real outbox and uplink
        with BusyDevice(tmp_path / "fire", srv.target, "fire-1", tok_fire, make=every_tenth("glass_break"),
                        options=CloudConfig(backoff_initial_s=0.2, backoff_max_s=3.0, heartbeat_s=2.0)) as fire:
            try:
                time.sleep(6.0)
                assert fire.uplink.acked_seq > 0, "nothing was acked before the database went down"
                mdb.kill()  # the database host crashes mid-commit
                time.sleep(15.0)
                assert fire.outbox.stats()["depth"] > 0, "the outbox did not hold the records while the database " \
                                                         "was down"
                mdb.start()  # InnoDB recovers; the cloud's pool reconnects, devices resend what was not acked
                time.sleep(4.0)
                fire.drain()
                _, err = edge.communicate(timeout=180)
                assert edge.returncode == 0, err[-3000:]
                assert srv.proc is not None and srv.proc.poll() is None, "the cloud died with its database"
            finally:
                if edge.poll() is None:
                    edge.kill()
        verdict = check_exactly_once(mdb.url, {"edge-1": tmp_path / "spool-edge" / "outbox.db",
                                               "fire-1": tmp_path / "fire" / "outbox.db"})
        print(f"\ndatabase killed and restarted: {verdict}")
        assert verdict.verified >= 10
    finally:
        srv.terminate()
        mdb.stop()
