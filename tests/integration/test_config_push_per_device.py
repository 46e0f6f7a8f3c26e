"""A device's own thresholds (set as the dashboard does, straight in the store) reach that device over a real
`cloud_svc serve`: on connect, and while it is connected; the edge applies them, keeps them and reports exactly
that version in its heartbeat, while a device without its own keeps the cloud-wide config."""
from __future__ import annotations

import json
import signal
import threading
import time

import yaml

from cloud_svc.servicer.ingest import CONFIG_POLL_S
from cloud_svc.store import Store
from cloud_svc.store.devices import DEVICE_VERSION_BASE
from edge_rt.pushed import FILE
from support import ServerProcess, edge_run, wait_for

CLOUD_WIDE = {"speech": 0.999}
CLOUD_VERSION = 7
HEARTBEAT_S = 0.3
SCENARIO = "synth:quiet,dur=120"   # paced in real time: far longer than the test; stopped with SIGTERM
CONNECT_S = 40.0                   # edge start-up (model load) and its first heartbeat after the push
POLL_WAIT_S = CONFIG_POLL_S + 10 * HEARTBEAT_S + 5.0


class Edge:
    """A real `python -m edge_rt run --realtime` whose output is read while it runs (a full pipe would stall it)."""

    def __init__(self, tmp_path, device_id: str, token: str, target: str):
        self.spool = tmp_path / f"spool-{device_id}"
        self.proc = edge_run(SCENARIO, self.spool, cloud=target, device_id=device_id, token=token, fast=False,
                             wait=False, env={"EDGE_RT__CLOUD__HEARTBEAT_S": str(HEARTBEAT_S)})
        self.out: list[str] = []
        self._reader = threading.Thread(target=lambda: self.out.extend(self.proc.communicate()), daemon=True)
        self._reader.start()

    def stop(self, timeout: float = 30.0) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self._reader.join(timeout)
        if self.proc.poll() is None:
            self.proc.kill()
            self._reader.join(10)
        return self.proc.wait(10), (self.out[1] if len(self.out) > 1 else "")

    def pushed(self) -> dict:
        return json.loads((self.spool / FILE).read_text())


def reported(store: Store) -> dict[str, tuple[float | None, str]]:
    """device -> (the config version its last heartbeat reported, its config_error)."""
    return {d.device_id: (d.figures.get("config_version"), d.info.get("config_error", ""))
            for d in store.queries.list_devices()}


def test_a_devices_own_thresholds_reach_it_on_connect_and_while_connected_and_others_keep_the_cloud_wide(
        tmp_path):
    t0 = time.monotonic()
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    cloud_cfg = tmp_path / "cloud.yaml"
    cloud_cfg.write_text(yaml.safe_dump({"edge_thresholds": CLOUD_WIDE, "edge_config_version": CLOUD_VERSION}))
    srv = ServerProcess(url, clips=str(tmp_path / "clips"), log_path=tmp_path / "server.log",
                        extra=("--config", str(cloud_cfg), "--no-fleet"))
    srv.start()  # migrates the database
    store = Store.open(url)
    edges: list[Edge] = []
    try:
        own_token, other_token = store.devices.add_device("lamp-own"), store.devices.add_device("lamp-other")
        # Set before the device connects, as the dashboard's form does: it gets this on Hello.
        first = store.devices.set_config("lamp-own", {"glass_break": 0.6}, "tester")
        assert first.version == DEVICE_VERSION_BASE + 1

        own = Edge(tmp_path, "lamp-own", own_token, srv.target)
        other = Edge(tmp_path, "lamp-other", other_token, srv.target)
        edges = [own, other]
        want = {"lamp-own": (float(first.version), ""), "lamp-other": (float(CLOUD_VERSION), "")}
        assert wait_for(lambda: reported(store) == want, CONNECT_S), \
            f"reported {reported(store)}; see {srv.log_path}"
        assert own.pushed() == {"version": first.version, "thresholds": {**CLOUD_WIDE, "glass_break": 0.6}}
        assert other.pushed() == {"version": CLOUD_VERSION, "thresholds": CLOUD_WIDE}

        # Changed while it is connected: the server looks it up within CONFIG_POLL_S, on a heartbeat.
        changed_at = time.monotonic()
        second = store.devices.set_config("lamp-own", {"glass_break": 0.55, "siren": 0.7, "speech": 0.9}, "tester")
        assert second.version == first.version + 1
        want["lamp-own"] = (float(second.version), "")
        arrived = wait_for(lambda: reported(store) == want, POLL_WAIT_S)
        took = time.monotonic() - changed_at
        assert arrived, f"after {took:.1f} s reported {reported(store)}; see {srv.log_path}"
        print(f"\nthe change was applied and reported {took:.1f} s after it was set")
        # the device's own value of speech wins over the cloud-wide one
        assert own.pushed() == {"version": second.version,
                                "thresholds": {"glass_break": 0.55, "siren": 0.7, "speech": 0.9}}
        # the other device, still connected through the same poll period, was pushed nothing new
        time.sleep(CONFIG_POLL_S + 3 * HEARTBEAT_S)
        assert reported(store)["lamp-other"] == (float(CLOUD_VERSION), "")
        assert other.pushed() == {"version": CLOUD_VERSION, "thresholds": CLOUD_WIDE}

        (own_rc, own_err), (other_rc, other_err) = own.stop(), other.stop()
        assert own_rc == 0, own_err[-3000:]
        assert other_rc == 0, other_err[-3000:]
        assert own_err.count(f"applied the cloud's config version {first.version}:") == 1
        assert own_err.count(f"applied the cloud's config version {second.version}:") == 1
        assert other_err.count("applied the cloud's config version") == 1
        assert f"applied the cloud's config version {CLOUD_VERSION}:" in other_err
        assert "refused the cloud's config" not in own_err + other_err
    finally:
        for e in edges:
            e.stop()
        store.close()
        srv.terminate()
    assert time.monotonic() - t0 < 60
