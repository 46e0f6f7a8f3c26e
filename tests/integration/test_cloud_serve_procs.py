"""`serve --procs 2`: two processes share one port (SO_REUSEPORT); devices on either are stored once; SIGTERM stops
both cleanly."""
from __future__ import annotations

import time

from edge_rt.config import CloudConfig
from edge_rt.outbox import Outbox
from edge_rt.uplink import Uplink
from support import ServerProcess, add_device, put_event


def test_two_serving_processes_share_the_port_and_stop_on_sigterm(tmp_path):
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    srv = ServerProcess(url, clips=str(tmp_path / "clips"), log_path=tmp_path / "server.log",
                        extra=("--procs", "2"))
    srv.start()
    try:
        uplinks = []
        for i in range(6):
            token = add_device(url, f"lamp-{i}")
            ob = Outbox(tmp_path / f"ob{i}.db")
            for _ in range(20):
                put_event(ob)
            uplinks.append(Uplink(ob, srv.target, f"lamp-{i}", token,
                                  options=CloudConfig(backoff_initial_s=0.1, poll_s=0.005)).start())
        deadline = time.monotonic() + 30
        while not all(u.drained() for u in uplinks) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(u.drained() for u in uplinks)
        for u in uplinks:
            u.stop()
    finally:
        assert srv.terminate() == 0
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as c:
        assert c.scalar(sa.text("SELECT COUNT(*) FROM events")) == 120
        assert c.scalar(sa.text("SELECT COUNT(DISTINCT device_id) FROM events")) == 6
    engine.dispose()
    assert "2 processes serving port" in (tmp_path / "server.log").read_text()
