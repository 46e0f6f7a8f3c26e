"""ConfigPush for real: the cloud pushes versioned thresholds, the edge applies and keeps them, reports the version it
runs in its heartbeat, and its events change."""
from __future__ import annotations

import json

from cloud_svc import config
from cloud_svc.server import ServerThread
from edge_rt.outbox import Outbox
from edge_rt.pushed import FILE
from edge_rt.records import parse
from support import edge_run

FAST_BEAT = {"EDGE_RT__CLOUD__HEARTBEAT_S": "0.2"}


def labels_started(spool) -> list[str]:
    ob = Outbox(spool / "outbox.db")
    try:
        return [parse(r.body).event.label for r in ob.pending(limit=10_000) if r.kind == "event"]
    finally:
        ob.close()


def test_pushed_thresholds_are_applied_kept_reported_and_change_the_edges_events(tmp_path):
    # Without a push, the distress scenario's call for help is also heard as speech.
    own = tmp_path / "own"
    r = edge_run("synth:distress", own)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "speech" in labels_started(own)

    cfg = config.load(None, {"db": f"sqlite:///{tmp_path / 'cloud.db'}", "listen": "127.0.0.1:0",
                             "clips": str(tmp_path / "clips"), "fleet.enabled": False,
                             "edge_thresholds": {"speech": 0.999}, "edge_config_version": 7}, env={})
    spool = tmp_path / "pushed"
    with ServerThread(cfg) as srv:
        token = srv.app.store.devices.add_device("lamp-push")
        r = edge_run("synth:quiet", spool, cloud=f"127.0.0.1:{srv.port}", device_id="lamp-push", token=token,
                     env=FAST_BEAT)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "applied the cloud's config version 7" in r.stderr
        device = next(d for d in srv.app.store.queries.list_devices() if d.device_id == "lamp-push")
        assert device.figures.get("config_version") == 7.0  # the heartbeat says which config runs
    assert json.loads((spool / FILE).read_text()) == {"version": 7, "thresholds": {"speech": 0.999}}

    # The next run, offline, starts with the pushed config: the same scenario raises no speech event now.
    r = edge_run("synth:distress", spool)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "running the cloud's config version 7" in r.stderr
    started = labels_started(spool)
    assert "speech" not in started and "glass_break" in started
