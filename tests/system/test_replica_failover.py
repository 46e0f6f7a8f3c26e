"""The whole system as processes, a cloud replica failing: three `cloud_svc serve` replicas on one MariaDB, three
real edges in real time and a busy device (through the real outbox and uplink), each given every replica's
address. The replica that half of them are on is killed with SIGKILL mid-ingest and restarted: its devices fail
over to their next replicas (each its own, so they spread) and stay there, and in the end 0 records are lost,
0 rows duplicated, and every distress event is verified exactly once (tests/system/exactly_once.py)."""
from __future__ import annotations

import json
import re
import threading
import time

import sqlalchemy as sa
from busy_device import BusyDevice, every_tenth
from exactly_once import check_exactly_once

from edge_rt.config import CloudConfig
from edge_rt.uplink import rotation
from support import (
    ServerProcess,
    TempMariaDB,
    add_device,
    edge_run,
    env_with_repo,
    mariadb_available,
    wait_for,
)

# distress labels (verified) and others, one every 2 s of a 22 s scenario
PLAN = "dur=22," + ",".join(f"{lab}@{t}" for t, lab in zip(range(2, 20, 2), ["glass_break", "siren", "scream"] * 3))
LEASE_S = "10"  # a verification claimed by the killed replica is claimed again after this


def device_whose_order_starts(prefix: str, targets: tuple[str, ...], *first: str) -> str:
    """A device id whose rendezvous order over `targets` starts with `first` (the uplink's own `rotation`)."""
    return next(d for d in (f"{prefix}-{i}" for i in range(100000)) if rotation(targets, d)[:len(first)] == first)


def reported_address(engine, device: str) -> str | None:
    """The cloud address the device's last stored heartbeat names."""
    with engine.connect() as c:
        health = c.scalar(sa.text("SELECT health FROM devices WHERE id = :d"), {"d": device})
    if isinstance(health, str):
        health = json.loads(health)
    return ((health or {}).get("info") or {}).get("cloud_address")


def test_a_replica_killed_mid_ingest_hands_its_devices_to_the_others_and_nothing_is_lost_or_doubled(tmp_path):
    why = mariadb_available()
    assert why is None, why
    db = TempMariaDB()
    env = {**env_with_repo(), "CLOUD_SVC__VERIFY__LEASE_S": LEASE_S}
    replicas = [ServerProcess(db.url, clips=str(tmp_path / "clips"), log_path=tmp_path / f"server-{n}.log",
                              extra=("--verify-workers", "1"), env=env) for n in "abc"]
    engine = sa.create_engine(db.url)
    edges: dict = {}
    try:
        replicas[0].start()  # runs the migrations; the others start on the migrated database together
        later = [threading.Thread(target=r.start) for r in replicas[1:]]
        for t in later:
            t.start()
        for t in later:
            t.join()
        assert all(r.port for r in replicas), "a replica did not start"
        a, b, c = targets = tuple(r.target for r in replicas)
        every = ",".join(targets)
        # on the replica that will be killed: two edges whose next replicas differ, and the busy device
        plan = {device_whose_order_starts("edge-ab", targets, a, b): (a, b),
                device_whose_order_starts("edge-ac", targets, a, c): (a, c),
                device_whose_order_starts("edge-b", targets, b): (b, b)}
        busy = device_whose_order_starts("fire", targets, a, b)
        tokens: dict[str, str] = {}
        adders = [threading.Thread(target=lambda d=d: tokens.__setitem__(d, add_device(db.url, d)))
                  for d in [*plan, busy]]
        for t in adders:
            t.start()
        for t in adders:
            t.join()

        edge_env = {"EDGE_RT__RUNTIME__GRACE_S": "90", "EDGE_RT__CLOUD__HEARTBEAT_S": "1"}
        for i, device in enumerate(plan):
            edges[device] = edge_run(f"synth:{PLAN},seed={i}", tmp_path / device, cloud=every, device_id=device,
                                     token=tokens[device], fast=False, env=edge_env, wait=False)
        # the busy device: 20 events/s, every 10th a glass break (verified)
        with BusyDevice(tmp_path / busy, every, busy, tokens[busy], make=every_tenth("glass_break"),
                        heartbeat=lambda: {},
                        options=CloudConfig(backoff_initial_s=0.2, backoff_max_s=3.0, heartbeat_s=1.0)) as fire:
            up = fire.uplink
            # every device streaming to its first replica
            assert wait_for(lambda: all(reported_address(engine, d) == first for d, (first, _) in plan.items()), 60), \
                {d: reported_address(engine, d) for d in plan}
            assert wait_for(lambda: up.acked_seq > 100 and up.target == a, 20), up.stats()
            acked_before = up.acked_seq
            replicas[0].kill()  # mid-ingest: batches in flight, commits and acks under way
            killed_at = time.monotonic()
            # each of its devices is on its own next replica within seconds
            assert wait_for(lambda: up.target == b and up.acked_seq > acked_before + 40, 20), up.stats()
            assert wait_for(lambda: all(reported_address(engine, d) == then for d, (_, then) in plan.items()), 20), \
                {d: reported_address(engine, d) for d in plan}
            failover_s = time.monotonic() - killed_at
            replicas[0].start()  # back on its port: nobody returns to it (sticky)
            outs = {}
            for device, proc in edges.items():
                _, err = proc.communicate(timeout=150)
                outs[device] = err
                assert proc.returncode == 0, f"{device}: {err[-3000:]}"
            fire.drain(60)
        for device, (first, then) in plan.items():
            moves = 0 if first == then else 1
            summary = re.search(r"^cloud (\S+) \(of ([^;]+); (\d+) failovers\)", outs[device], re.M)
            assert summary, outs[device][-2000:]
            assert (summary[1], summary[2].split(", "), int(summary[3])) == (then, list(rotation(targets, device)),
                                                                            moves), summary[0]
            if moves:
                assert f"failing over to {then}" in outs[device]
        assert up.stats()["failovers"] == 1 and up.target == b
        assert all(reported_address(engine, d) == then for d, (_, then) in plan.items())
        assert all(r.proc is not None and r.proc.poll() is None for r in replicas)
        verdict = check_exactly_once(db.url, {d: tmp_path / d / "outbox.db" for d in [*plan, busy]})
        print(f"\nreplica killed mid-ingest, devices on their next replicas after {failover_s:.1f} s: {verdict}")
        assert verdict.verified >= 30 and verdict.events >= 100
    finally:
        for proc in edges.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        for r in replicas:
            r.terminate()
        engine.dispose()
        db.drop()
