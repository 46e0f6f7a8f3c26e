"""Outage: the cloud (on MariaDB) is killed mid-stream and stays down for 60 s; every record still arrives exactly
once (0 lost, 0 duplicate rows) and every distress event is verified once, from a real edge process and from a
busy simulated device with large clips."""
from __future__ import annotations

import hashlib
import os
import re
import time

import sqlalchemy as sa
from busy_device import BusyDevice
from exactly_once import check_exactly_once

from cloud_svc.client import QueryClient
from edge_rt.config import CloudConfig
from support import ServerProcess, TempMariaDB, add_device, edge_run, mariadb_available, put_event

OUTAGE_S = 60.0


def test_the_cloud_down_for_60_seconds_loses_nothing_and_duplicates_nothing(tmp_path):
    why = mariadb_available()
    assert why is None, why
    db = TempMariaDB()
    try:
        _outage(db.url, tmp_path)
    finally:
        db.drop()


def _outage(mariadb_url: str, tmp_path) -> None:
    srv = ServerProcess(mariadb_url, clips=str(tmp_path / "clips"), log_path=tmp_path / "server.log",
                        extra=("--verify-workers", "1"))
    srv.start()
    tok_edge, tok_fire = add_device(mariadb_url, "edge-1"), add_device(mariadb_url, "fire-1")

    # A real edge, paced in real time; its grace period outlasts the outage.
    edge = edge_run("synth:tour", tmp_path / "spool-edge", cloud=srv.target, device_id="edge-1",
                    token=tok_edge, fast=False, env={"EDGE_RT__RUNTIME__GRACE_S": "150"}, wait=False)

    # A busy device: 20 events/s (start + end records), every 25th end with a 600 kB clip sent in chunks.
    starts: dict[int, str] = {}
    clips: dict[str, str] = {}

    def make(ob, n):
        clip = os.urandom(600_000) if n % 25 == 0 else None
        s1, _, event_id = put_event(ob, "dog_bark", clip=clip)
        starts[s1] = event_id
        if clip is not None:
            clips[event_id] = hashlib.sha256(clip).hexdigest()

    options = CloudConfig(backoff_initial_s=0.2, backoff_max_s=5.0, inline_clip_bytes=100_000,
                          chunk_bytes=128 << 10, heartbeat_s=2.0)
    try:
        with BusyDevice(tmp_path / "fire", srv.target, "fire-1", tok_fire, make=make, options=options) as fire:
            time.sleep(6.0)
            assert fire.uplink.acked_seq > 0, "nothing was acked before the outage"
            srv.kill()  # mid-stream: commits may have happened whose acks never left
            down_at = time.monotonic()
            time.sleep(OUTAGE_S)
            assert time.monotonic() - down_at >= OUTAGE_S
            backlog = fire.outbox.stats()["depth"]
            assert backlog > 0 and fire.uplink.retries > 0
            srv.start()  # same port
            time.sleep(4.0)
            fire.drain(60)
        out, err = edge.communicate(timeout=180)
        assert edge.returncode == 0, err
        made = int(re.search(r"audio in .*?: (\d+) events", err).group(1))
        assert made >= 2, err  # the 34 s tour detects several, most of them while the server is down
    finally:
        if edge.poll() is None:
            edge.kill()

    try:
        verdict = check_exactly_once(mariadb_url, {"edge-1": tmp_path / "spool-edge" / "outbox.db",
                                                   "fire-1": tmp_path / "fire" / "outbox.db"})
        print(f"\ncloud down {OUTAGE_S:g} s: {verdict}")
        engine = sa.create_engine(mariadb_url)
        with engine.connect() as c:
            rows = c.execute(sa.text("SELECT device_id, seq, event_id FROM events")).all()
            n_ends = c.scalar(sa.text("SELECT COUNT(*) FROM event_ends e JOIN events v ON v.id = e.event_pk "
                                      "WHERE v.device_id = 'fire-1'"))
            dup_alerts = c.scalar(sa.text("SELECT COUNT(*) - COUNT(DISTINCT device_id, seq) FROM alerts "
                                          "WHERE kind = 'device'"))
        engine.dispose()
        fire = {seq: eid for d, seq, eid in rows if d == "fire-1"}
        assert len(rows) == len({(d, s) for d, s, _ in rows}) == len({(d, e) for d, _, e in rows})  # 0 duplicates
        assert fire == starts  # 0 lost: every start seq, with its event, exactly once
        assert n_ends == len(starts)
        assert dup_alerts == 0
        assert sum(1 for d, _, _ in rows if d == "edge-1") == made  # the real edge: every event it detected
        with QueryClient(srv.target) as q:
            for event_id, sha in clips.items():
                meta, data = q.clip("fire-1", event_id=event_id)
                assert hashlib.sha256(data).hexdigest() == sha == meta["sha256"]
    finally:
        srv.terminate()
