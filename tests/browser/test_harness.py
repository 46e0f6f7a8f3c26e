"""The browser harness checks itself without the dashboard: the network log sees (and flags) an external request,
bulk_events seeds what it says, and the seeded cloud holds both edges' events at their positions."""
from __future__ import annotations

import base64
import functools
import http.server
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from browser.harness import bulk_events, console_errors, is_local, run_dashboard

from cloud_svc.domain import EventFilter
from cloud_svc.store import Store

# a 1x1 transparent PNG
DOT_PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5E"
                           "rkJggg==")
EXTERNAL = "http://example.invalid/x.png"
PAGE = f"""<!doctype html>
<html><head><title>harness</title></head><body>
<img id="local" src="/dot.png">
<img id="external" src="{EXTERNAL}">
<script>new WebSocket("ws://" + location.host + "/socket");</script>
</body></html>
"""


# A stand-in for `python -m dashboard` with the same command line: --mode picks how it behaves.
FAKE_DASHBOARD = """
import argparse, http.server, signal, sys
p = argparse.ArgumentParser()
for flag in ("--db", "--clips", "--host", "--port", "--mode"):
    p.add_argument(flag)
a = p.parse_args()
if a.mode == "crash":
    sys.exit("boom: cannot open " + a.db)
if a.mode == "stubborn":
    signal.signal(signal.SIGINT, signal.SIG_IGN)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(f"{a.db} {a.clips}".encode())

    def log_message(self, *args):
        pass

http.server.HTTPServer((a.host, int(a.port)), Handler).serve_forever()
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def local_site(tmp_path):
    """A page on 127.0.0.1 that loads a local image, an image from example.invalid and opens a local WebSocket."""
    (tmp_path / "index.html").write_text(PAGE)
    (tmp_path / "dot.png").write_bytes(DOT_PNG)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


@pytest.mark.parametrize("url, local", [
    ("http://127.0.0.1:8050/_dash-layout", True),
    ("http://localhost:8050/", True),
    ("ws://[::1]:8050/_push", True),
    ("data:image/png;base64,AAAA", True),
    ("blob:http://127.0.0.1:8050/4f1c", True),
    ("chrome://resources/js/util.js", True),
    ("about:blank", True),
    ("https://unpkg.com/leaflet@1.9.4/dist/leaflet.js", False),
    ("https://a.tile.openstreetmap.org/3/4/2.png", False),
    ("http://127.0.0.2/", False),
    ("wss://example.com/socket", False),
])
def test_is_local_accepts_only_loopback_hosts_and_non_request_schemes(url, local):
    assert is_local(url) is local


def test_network_log_records_every_request_and_flags_exactly_the_external_one(browser, network_log, local_site):
    browser.get(local_site + "/index.html")
    urls = network_log.wait_for(lambda u: u == EXTERNAL)
    urls = network_log.wait_for(lambda u: u.startswith("ws://"))
    assert browser.execute_script("return document.getElementById('local').naturalWidth") == 1
    ws = "ws://" + local_site.removeprefix("http://") + "/socket"
    for want in (local_site + "/index.html", local_site + "/dot.png", EXTERNAL, ws):
        assert want in urls, f"{want} not in {urls}"
    assert network_log.non_local() == [EXTERNAL]
    assert any(EXTERNAL in m for m in console_errors(browser))  # the failed load shows in the console log too

    network_log.clear()
    browser.get(local_site + "/dot.png")
    network_log.wait_for(lambda u: u.endswith("/dot.png"))
    assert network_log.non_local() == []


def test_bulk_events_spreads_n_events_over_the_devices_positions_and_30_days(tmp_path):
    url = f"sqlite:///{tmp_path / 'bulk.db'}"
    seeded = bulk_events(url, 3000, 7, seed=3)
    store = Store.open(url)
    try:
        q = store.queries
        assert q.count_events() == seeded.events == 3000
        per_device = {d: q.count_events(d) for d in seeded.device_ids}
        assert len(per_device) == 7 and sum(per_device.values()) == 3000 and min(per_device.values()) > 0
        devs = {d.device_id: d for d in q.list_devices()}
        for d, (lat, lon) in seeded.positions.items():
            assert (devs[d].lat, devs[d].lon) != (None, None) and devs[d].health == "ok"
            assert abs(devs[d].lat - lat) < 0.01 and abs(devs[d].lon - lon) < 0.01
            assert devs[d].acked_seq == 2 * per_device[d]  # every start and end committed, watermark at the last
        events = q.list_events(EventFilter(limit=10_000))
        assert len(events) == 3000
        for e in events:
            lat, lon = seeded.positions[e.device_id]
            assert abs(e.lat - lat) < 0.01 and abs(e.lon - lon) < 0.01
            assert seeded.start_ns <= e.start_ns <= seeded.end_ns and e.end_ns > e.start_ns and e.classes
        assert max(e.start_ns for e in events) - min(e.start_ns for e in events) > 25 * 86400e9
        assert len({e.label for e in events}) >= 8
        assert len({round(p[1], -1) for p in seeded.positions.values()}) > 3  # spread in longitude, not one spot
    finally:
        store.close()

    more = bulk_events(url, 100, 7, seed=4)  # again on the same devices: appended after their watermarks
    store = Store.open(url)
    try:
        assert store.queries.count_events() == 3100 and more.device_ids == seeded.device_ids
    finally:
        store.close()


def test_seeded_cloud_has_both_edges_events_at_their_positions_with_an_alert_and_clips(seeded_cloud):
    store = Store.open(seeded_cloud.db_url)
    try:
        q = store.queries
        assert q.count_events() == seeded_cloud.events
        assert seeded_cloud.events == sum(sum(v.values()) for v in seeded_cloud.labels.values())
        for d in seeded_cloud.devices:
            events = q.list_events(EventFilter(device_ids=[d.device_id], limit=10_000))
            assert events, f"no events from {d.device_id}"
            assert {(e.lat, e.lon) for e in events} == {(d.lat, d.lon)}
            assert all(e.end_ns is not None for e in events)
        alerts = q.list_alerts()
        assert any(a.rule == "distress" and a.device_id == "lamp-berlin" for a in alerts), alerts
        clipped = [e for e in q.list_events(EventFilter(limit=10_000)) if e.clip is not None]
        assert clipped
        for e in clipped:
            assert (Path(seeded_cloud.clips) / e.clip.sha256[:2] / e.clip.sha256).stat().st_size == e.clip.size
        assert set(q.verification_counts()) <= {"done", "skipped", "failed"}
    finally:
        store.close()


def test_a_copy_of_the_seeded_cloud_is_private(seeded_cloud, tmp_path):
    copy = seeded_cloud.copy_to(tmp_path / "copy")
    bulk_events(copy.db_url, 10, 1)
    for cloud, n in ((copy, seeded_cloud.events + 10), (seeded_cloud, seeded_cloud.events)):
        store = Store.open(cloud.db_url)
        try:
            assert store.queries.count_events() == n
        finally:
            store.close()
    assert sorted(p.name for p in Path(copy.clips).rglob("*") if p.is_file()) == \
        sorted(p.name for p in Path(seeded_cloud.clips).rglob("*") if p.is_file())


@pytest.fixture
def fake_dashboard(tmp_path) -> tuple[str, ...]:
    path = tmp_path / "fake_dashboard.py"
    path.write_text(FAKE_DASHBOARD)
    return (str(path),)


def test_dashboard_server_passes_db_and_clips_and_returns_a_url_that_answers(dashboard_server, fake_dashboard):
    url = dashboard_server("sqlite:///x.db", "/clips", ("--mode", "ok"), launcher=fake_dashboard)
    with urllib.request.urlopen(url + "/", timeout=5) as r:
        assert r.read() == b"sqlite:///x.db /clips"
    assert url.startswith("http://127.0.0.1:")


def test_run_dashboard_stops_the_server_with_sigint_when_the_block_ends(tmp_path, fake_dashboard):
    with run_dashboard("sqlite:///x.db", "/clips", ("--mode", "ok"), log_dir=tmp_path, launcher=fake_dashboard) as url:
        urllib.request.urlopen(url + "/", timeout=5).close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/", timeout=5)


def test_run_dashboard_fails_with_the_stderr_of_a_dashboard_that_exits(tmp_path, fake_dashboard):
    with pytest.raises(RuntimeError, match="boom: cannot open sqlite:///x.db"):
        with run_dashboard("sqlite:///x.db", "/c", ("--mode", "crash"), log_dir=tmp_path, launcher=fake_dashboard):
            pass


def test_run_dashboard_fails_when_the_dashboard_ignores_sigint(tmp_path, fake_dashboard):
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match="did not exit within 1 s of SIGINT"):
        with run_dashboard("sqlite:///x.db", "/c", ("--mode", "stubborn"), log_dir=tmp_path, launcher=fake_dashboard,
                           stop_timeout=1.0):
            pass
    assert time.monotonic() - t0 < 20


def test_bulk_events_seeds_50k_events_well_within_a_minute(tmp_path):
    url = f"sqlite:///{tmp_path / 'load.db'}"
    seeded = bulk_events(url, 50_000, 200)
    store = Store.open(url)
    try:
        assert store.queries.count_events() == 50_000
    finally:
        store.close()
    assert seeded.seconds < 30, f"50k events took {seeded.seconds:.1f} s"


def test_a_missing_browser_fails_with_how_to_install_it(monkeypatch, tmp_path):
    from browser import harness

    assert harness.missing_browser() is None
    monkeypatch.setattr(harness, "CHROMEDRIVER", tmp_path / "chromedriver")
    why = harness.missing_browser()
    assert why and "chromedriver" in why and "make setup" in why and "chromium-driver" in why
