"""The browser tests' harness (not shipped): headless Chromium with its network log, a cloud seeded by real edges,
the dashboard as a subprocess, and bulk synthetic events for load tests. The fixtures in conftest.py wrap these."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Optional, Sequence
from urllib.parse import urlsplit

from support import REPO, ServerProcess, add_device, edge_run, env_with_repo

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1400, 1000)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Schemes that never leave the machine: inline data, the page's own blobs, the browser's internal pages (its
# new-tab page loads chrome:// resources at start) and the error page of a failed navigation.
NON_NETWORK_SCHEMES = frozenset({"data", "blob", "about", "chrome", "chrome-error", "chrome-untrusted",
                                 "chrome-extension", "devtools", "file", "javascript"})
NETWORK_EVENTS = {"Network.requestWillBeSent": lambda p: p["request"]["url"],
                  "Network.webSocketCreated": lambda p: p["url"]}


# ---------------------------------------------------------------------------------------------------- browser
def missing_browser() -> Optional[str]:
    """None when Chromium and its driver are installed, else what is missing and how to get it."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not (p.is_file() and os.access(p, os.X_OK))]
    if not missing:
        return None
    return (f"{' and '.join(missing)} missing: the browser tests drive Debian's Chromium; `make setup` installs "
            f"it (Debian packages chromium, chromium-driver)")


def start_chrome(user_data_dir: Path):
    """Headless Chromium (Debian's, driven by its own chromedriver: Selenium Manager never runs, nothing is
    downloaded), WINDOW-sized, with the performance log (every request the page makes) and the console log on."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    args = ["--headless=new", f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--user-data-dir={user_data_dir}",
            "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            # the browser's own traffic (updates, safe browsing, metrics) is not the page's and would only be noise
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--metrics-recording-only", "--disable-features=Translate,OptimizationHints,MediaRouter"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
    for a in args:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))


def is_local(url: str) -> bool:
    """True when fetching `url` stays on this machine (loopback hosts, or a scheme that is no request at all)."""
    parts = urlsplit(url)
    if parts.scheme.lower() in NON_NETWORK_SCHEMES:
        return True
    return (parts.hostname or "").lower() in LOCAL_HOSTS


class NetworkLog:
    """Every URL a page requested (documents, scripts, images, XHR/fetch, WebSockets), from the driver's
    performance log. That log is consumed when read, so one NetworkLog per driver accumulates it; what the
    browser logged before the NetworkLog was made (its start-up page) is dropped."""

    def __init__(self, driver):
        self.driver = driver
        self._urls: list[str] = []
        self.drain()
        self._urls.clear()

    def drain(self) -> list[str]:
        """Read what the browser logged since the last read; returns the URLs that were new."""
        new = []
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            url_of = NETWORK_EVENTS.get(msg.get("method"))
            if url_of is not None:
                new.append(url_of(msg["params"]))
        self._urls += new
        return new

    def clear(self) -> None:
        """Forget everything so far (e.g. between two page loads that are checked apart)."""
        self.drain()
        self._urls.clear()

    def urls(self) -> list[str]:
        """Every URL requested so far, in order, repeats kept."""
        self.drain()
        return list(self._urls)

    def non_local(self) -> list[str]:
        """The requested URLs that would leave the machine (each once, in order): any host other than
        127.0.0.1, localhost and ::1; data:, blob: and the browser's internal schemes are not requests."""
        return list(dict.fromkeys(u for u in self.urls() if not is_local(u)))

    def wait_for(self, predicate, timeout: float = 10.0) -> list[str]:
        """Drain until some requested URL satisfies `predicate`; returns the URLs; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            urls = self.urls()
            if any(predicate(u) for u in urls):
                return urls
            if time.monotonic() > deadline:
                raise TimeoutError(f"no request matched within {timeout:g} s; requested: {urls}")
            time.sleep(0.05)


def console_errors(driver) -> list[str]:
    """The SEVERE entries of the browser's console log since the last read (JS errors, failed loads)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


# ------------------------------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@contextmanager
def run_dashboard(db_url: str, clips: str, extra_args: Sequence[str] = (), *, log_dir: Path,
                  timeout: float = 60.0, stop_timeout: float = 15.0,
                  launcher: Sequence[str] = ("-m", "dashboard")) -> Iterator[str]:
    """`python -m dashboard --db URL --clips SPEC --host 127.0.0.1 --port FREE` until the block ends; yields its
    base URL once `GET /` answers 200. Stopped with SIGINT (then killed); not exiting on SIGINT is a failure.
    `launcher` replaces `-m dashboard` (the harness's self-test runs a stand-in script)."""
    port = free_port()
    cmd = [sys.executable, *launcher, "--db", db_url, "--clips", str(clips), "--host", "127.0.0.1",
           "--port", str(port), *extra_args]
    log_dir.mkdir(parents=True, exist_ok=True)
    err_path, out_path = log_dir / f"dashboard-{port}.err", log_dir / f"dashboard-{port}.out"
    with open(err_path, "wb") as err, open(out_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env_with_repo(), stdout=out, stderr=err)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"`{' '.join(cmd[1:])}` exited with {proc.returncode} before serving; "
                                   f"stderr:\n{_tail(err_path)}")
            try:
                with urllib.request.urlopen(base + "/", timeout=5) as r:
                    if r.status == 200:
                        break
                    last = f"HTTP {r.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise TimeoutError(f"the dashboard did not answer GET / with 200 within {timeout:g} s ({last}); "
                                   f"stderr:\n{_tail(err_path)}")
            time.sleep(0.1)
        yield base
    finally:
        _stop(proc, cmd, err_path, stop_timeout)


def _stop(proc: subprocess.Popen, cmd: list[str], err_path: Path, timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"`{' '.join(cmd[1:])}` did not exit within {timeout:g} s of SIGINT and was killed; "
                             f"stderr:\n{_tail(err_path)}") from None


# ----------------------------------------------------------------------------------------------- seeded cloud
@dataclass(frozen=True)
class SeededDevice:
    device_id: str
    lat: float
    lon: float
    scenario: str


@dataclass(frozen=True)
class SeededCloud:
    """A cloud database that real edges streamed into, with its clip store; the server is stopped."""
    db_url: str
    db_path: Path
    clips: str                   # the clip store spec (a folder) for `--clips`
    devices: tuple[SeededDevice, ...]
    events: int                  # events in the store
    seconds: float               # how long seeding took
    labels: dict[str, dict[str, int]] = field(default_factory=dict)  # device -> label -> events

    def copy_to(self, folder: Path) -> "SeededCloud":
        """A private copy (database file and clips) for a test that writes, so the shared one stays as seeded."""
        folder.mkdir(parents=True, exist_ok=True)
        db_path = folder / self.db_path.name
        for suffix in ("", "-wal", "-shm"):  # WAL mode: a reader may still hold the log open
            src = Path(str(self.db_path) + suffix)
            if src.exists():
                shutil.copy2(src, str(db_path) + suffix)
        clips = folder / "clips"
        shutil.copytree(self.clips, clips, dirs_exist_ok=True)
        return replace(self, db_url=f"sqlite:///{db_path}", db_path=db_path, clips=str(clips))


SEED_DEVICES = (
    SeededDevice("lamp-berlin", 52.52, 13.405, "synth:distress,seed=1"),  # glass, then a shout: an alert
    SeededDevice("lamp-paris", 48.857, 2.352, "synth:tour,seed=2"),       # glass, scream, shout, siren, cry: an alert
)
VERIFY_TERMINAL = ("done", "skipped", "failed")


def seed_cloud(folder: Path, devices: Sequence[SeededDevice] = SEED_DEVICES, *, verify_timeout: float = 120.0,
               edge_timeout: float = 300.0) -> SeededCloud:
    """Serve a cloud on a SQLite file in `folder` (one verification worker in the server), register `devices`,
    run their `synth:` edges side by side into it, wait until every record is acked and every verification job
    has finished, then stop the server."""
    from cloud_svc.store import Store
    from edge_rt.outbox import Outbox

    t0 = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    db_path = folder / "cloud.db"
    db_url = f"sqlite:///{db_path}"
    clips = folder / "clips"
    srv = ServerProcess(db_url, clips=str(clips), log_path=folder / "server.log", extra=("--verify-workers", "1"))
    srv.start()
    try:
        tokens = {d.device_id: add_device(db_url, d.device_id) for d in devices}
        runs = {d.device_id: edge_run(d.scenario, folder / f"spool-{d.device_id}", cloud=srv.target,
                                      device_id=d.device_id, token=tokens[d.device_id], lat=d.lat, lon=d.lon,
                                      wait=False) for d in devices}
        try:
            deadline = time.monotonic() + edge_timeout
            for device_id, proc in runs.items():
                try:
                    _, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise RuntimeError(f"edge {device_id} ran past {edge_timeout:g} s") from None
                if proc.returncode != 0:
                    raise RuntimeError(f"edge {device_id} exited with {proc.returncode}; stderr:\n{err[-4000:]}")
                ob = Outbox(folder / f"spool-{device_id}" / "outbox.db")
                st = ob.stats()
                ob.close()
                if st["depth"] or st["acked"] != st["next_seq"] - 1:
                    raise RuntimeError(f"edge {device_id} exited with records unacked ({st}); "
                                       f"stderr:\n{err[-4000:]}")
        finally:
            for proc in runs.values():  # the others, when one failed
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()

        store = Store.open(db_url)
        try:
            deadline = time.monotonic() + verify_timeout
            while True:
                counts = store.queries.verification_counts()
                if all(s in VERIFY_TERMINAL for s in counts):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"verification jobs not finished after {verify_timeout:g} s: {counts}; "
                                       f"see {srv.log_path}")
                time.sleep(0.2)
            _wait_correlated(store, verify_timeout, srv.log_path)
        finally:
            store.close()
    finally:
        srv.terminate()

    store = Store.open(db_url)
    try:
        n = store.queries.count_events()
        labels: dict[str, dict[str, int]] = {}
        for d in devices:
            per: dict[str, int] = {}
            for e in store.queries.list_events(_filter(device_ids=[d.device_id], limit=100_000)):
                per[e.label] = per.get(e.label, 0) + 1
            labels[d.device_id] = dict(sorted(per.items()))
    finally:
        store.close()
    return SeededCloud(db_url, db_path, str(clips), tuple(devices), n, time.monotonic() - t0, labels)


def _wait_correlated(store, timeout: float, log_path) -> None:
    """Until the fleet correlator's cursor has passed every stored event (it waits for events to settle)."""
    import sqlalchemy as sa

    from cloud_svc.schema import cursors, events

    deadline = time.monotonic() + timeout
    while True:
        with store.engine.connect() as conn:
            last = conn.scalar(sa.select(sa.func.max(events.c.id))) or 0
            pos = conn.scalar(sa.select(cursors.c.value).where(cursors.c.name == "fleet")) or 0
        if pos >= last:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the fleet correlator is at event {pos} of {last} after {timeout:g} s; see {log_path}")
        time.sleep(0.2)


def _filter(**kw):
    from cloud_svc.domain import EventFilter

    return EventFilter(**kw)


# ------------------------------------------------------------------------------------------------ bulk events
@dataclass(frozen=True)
class BulkSeeded:
    device_ids: tuple[str, ...]
    positions: dict[str, tuple[float, float]]   # device -> (lat, lon)
    events: int
    start_ns: int                               # the span the events' starts lie in
    end_ns: int
    seconds: float


BULK_DAYS = 30.0
BULK_COMMIT_EVENTS = 10_000        # events per store transaction
BULK_JITTER_DEG = 0.002            # an event's position strays ~200 m from its device's
BULK_MODEL_SHA = "b0" * 32


def bulk_events(db_url: str, n: int, devices: int, *, seed: int = 0, days: float = BULK_DAYS,
                prefix: str = "bulk", verify_distress: bool = False) -> BulkSeeded:
    """Store `n` synthetic events (each a start and its end, so it has an end time, score and top classes)
    spread over `devices` devices named PREFIX-NNNN at random positions around the world, with starts spread
    over the last `days` days, through the store's ingest path (IngestStore.commit, the committer's bulk SQL).
    The schema is migrated first; devices that exist already get their events after their watermark. Each
    device gets a heartbeat, so its health is "ok". With `verify_distress`, distress events get pending
    verification jobs as the server would queue them. Labels are the taxonomy's, ordinary ones more often."""
    from cloud_svc.domain import BatchIn, EventIn, HeartbeatIn, RecordIn
    from cloud_svc.store import Store
    from edgert import labels as taxonomy

    t0 = time.monotonic()
    rng = random.Random(seed)
    distress = taxonomy.distress_labels() if verify_distress else []
    store = Store.open(db_url, distress_labels=distress)
    try:
        store.upgrade()
        ids = tuple(f"{prefix}-{i:04d}" for i in range(devices))
        known = {d.device_id: d.acked_seq for d in store.queries.list_devices()}
        new = [d for d in ids if d not in known]
        if new:
            store.devices.add_devices(new)
        # latitudes uniform in area, away from the poles' empty map edges
        positions = {d: (round(_uniform_lat(rng, -60.0, 72.0), 5), round(rng.uniform(-180.0, 180.0), 5)) for d in ids}
        names = list(taxonomy.scoring(calibrated=False).labels)
        weights = [1.0 if lb in taxonomy.distress_labels() else 4.0 for lb in names]
        now = time.time_ns()
        span = int(days * 86400e9)
        starts = sorted(now - rng.randrange(span) for _ in range(n))
        dev_of = [rng.randrange(devices) for _ in range(n)]
        label_of = rng.choices(names, weights, k=n)
        seq = {d: known.get(d, 0) for d in ids}
        for lo in range(0, n, BULK_COMMIT_EVENTS):
            batches: dict[str, list] = {}
            for i in range(lo, min(n, lo + BULK_COMMIT_EVENTS)):
                d = ids[dev_of[i]]
                lat, lon = positions[d]
                lat += rng.uniform(-BULK_JITTER_DEG, BULK_JITTER_DEG)
                lon += rng.uniform(-BULK_JITTER_DEG, BULK_JITTER_DEG)
                score = round(rng.uniform(0.3, 0.99), 3)
                start = starts[i]
                end = start + rng.randrange(500_000_000, 8_000_000_000)
                label = label_of[i]
                classes = [(label, score), ("Speech", round(score / 3, 3)), ("Silence", 0.01)]
                ev = EventIn(uuid.UUID(int=rng.getrandbits(128), version=4).hex, label, start, None, score, classes,
                             lat, lon, "onnxruntime", BULK_MODEL_SHA, 2.0)
                recs = batches.setdefault(d, [])
                recs.append(RecordIn(seq[d] + 1, start, "event", ev))
                recs.append(RecordIn(seq[d] + 2, end, "event_end", replace(ev, end_ns=end)))
                seq[d] += 2
            heartbeats = []
            if lo + BULK_COMMIT_EVENTS >= n:
                heartbeats = [HeartbeatIn(d, now, 0, 0, {"events": float(seq[d] // 2)}, {"agent": "bulk_events"})
                              for d in ids]
            store.ingest.commit([BatchIn(d, recs[0].seq, recs) for d, recs in batches.items()], heartbeats)
        if n == 0:
            store.ingest.commit([], [HeartbeatIn(d, now, 0, 0) for d in ids])
    finally:
        store.close()
    return BulkSeeded(ids, positions, n, now - span, now, time.monotonic() - t0)


def _uniform_lat(rng: random.Random, lo: float, hi: float) -> float:
    """A latitude drawn uniformly over the sphere's area between lo and hi degrees."""
    import math

    a, b = math.sin(math.radians(lo)), math.sin(math.radians(hi))
    return math.degrees(math.asin(rng.uniform(a, b)))
