"""`python -m dashboard.demo`: the live system (a cloud, synth: devices in one city, the dashboard) comes up, stores
events from several devices with a fleet alert, and stops on SIGINT with exit status 0 and no child left behind."""
from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil

from dashboard import demo
from support import REPO, env_with_repo

DEMO_SECONDS = 60        # the demo stops by itself then, should the test not get to send SIGINT
URL_TIMEOUT_S = 40.0
EVENTS_TIMEOUT_S = 45.0  # from the URL line: the first round's distress is heard 5 s and 8 s into it
STOP_TIMEOUT_S = 30.0
URL_RE = re.compile(r"^==> open (http://\S+/)", re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Output:
    """The demo's stdout and stderr, read by a thread as it comes."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: re.Pattern, proc: subprocess.Popen, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = pattern.search(self.text)
            if m:
                return m
            assert proc.poll() is None, f"the demo exited with {proc.returncode}:\n{self.text}"
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern.pattern!r} within {timeout:g} s:\n{self.text}")


def status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status


def stored(db_url: str) -> tuple[dict[str, int], int]:
    """(events per device that has any, fleet alerts) in the demo's database, through the cloud's query layer."""
    from cloud_svc.store import Store

    store = Store.open(db_url)
    try:
        per = {d.device_id: d.events for d in store.queries.list_devices() if d.events}
        return per, len(store.queries.list_alerts(kind="fleet"))
    finally:
        store.close()


def test_demo_pair_hears_together_within_the_fleet_radius_and_the_third_device_stands_beyond_it():
    assert demo.distance_m(demo.LAMP_1, demo.LAMP_2) < demo.FLEET_RADIUS_M
    for d in (demo.LAMP_1, demo.LAMP_2):
        assert demo.distance_m(d, demo.LAMP_3) > 2 * demo.FLEET_RADIUS_M
    for group in demo.plan(3):
        assert all(len(r) == len(group.devices) for r in group.rounds)
    assert demo.PAIR.rounds[0] == (demo.DISTRESS, demo.DISTRESS)  # the first round makes a fleet alert
    assert [d.device_id for g in demo.plan(2) for d in g.devices] == ["lamp-1", "lamp-2"]


def test_demo_refuses_to_wipe_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    r = subprocess.run([sys.executable, "-m", "dashboard.demo", "--dir", str(tmp_path), "--seconds", "1"],
                       capture_output=True, text=True, cwd=REPO, env=env_with_repo(), timeout=60)
    assert r.returncode != 0 and "refusing to wipe" in r.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_demo_serves_the_dashboard_stores_events_of_several_devices_and_stops_cleanly_on_sigint(tmp_path: Path):
    folder = tmp_path / "demo"
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "dashboard.demo", "--seconds", str(DEMO_SECONDS), "--port",
                             str(port), "--dir", str(folder)], cwd=REPO, env=env_with_repo(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = Output(proc)
    children: list[psutil.Process] = []
    try:
        url = out.wait_for(URL_RE, proc, URL_TIMEOUT_S).group(1)
        assert url == f"http://127.0.0.1:{port}/"
        assert status(url) == 200
        assert status(url + "devices") == 200

        db_url = f"sqlite:///{folder / 'cloud.db'}"
        deadline = time.monotonic() + EVENTS_TIMEOUT_S
        per, fleet = stored(db_url)
        while (len(per) < 2 or not fleet) and time.monotonic() < deadline:
            assert proc.poll() is None, f"the demo exited with {proc.returncode}:\n{out.text}"
            time.sleep(0.5)
            per, fleet = stored(db_url)
        assert len(per) >= 2, f"events of {per} only:\n{out.text}"
        assert fleet >= 1, f"no fleet alert from the pair's shared distress; events {per}:\n{out.text}"

        children = psutil.Process(proc.pid).children(recursive=True)
        commands = [" ".join(c.cmdline()) for c in children]
        assert any("cloud_svc serve" in c for c in commands), commands
        assert any("-m dashboard --config" in c for c in commands), commands
        assert sum("edge_rt -v run" in c for c in commands) >= 2, commands
        assert proc.poll() is None, f"the demo ended before SIGINT:\n{out.text}"

        proc.send_signal(signal.SIGINT)
        t_stop = time.monotonic()
        rc = proc.wait(STOP_TIMEOUT_S)
        stop_s = time.monotonic() - t_stop
        assert rc == 0, out.text
        assert "stopped (Ctrl-C)" in out.text, out.text
        left = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert not left, f"children left after the demo exited: {[c.cmdline() for c in left]}"
        print(f"demo: URL, events of {sorted(per)} and {fleet} fleet alert(s) after "
              f"{t_stop - t0:.1f} s; stopped in {stop_s:.1f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for c in children:  # only on failure: what the demo did not stop
            try:
                c.kill()
            except psutil.NoSuchProcess:
                pass
