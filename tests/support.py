"""Helpers of the tests and benchmarks (not shipped): throwaway MariaDB databases, the server and the edge as
subprocesses, and events built by the edge's own record builder."""
from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
MARIADB_HOST = os.environ.get("CLOUD_SVC_TEST_MYSQL_HOST", "127.0.0.1")
MARIADB_PORT = int(os.environ.get("CLOUD_SVC_TEST_MYSQL_PORT", "3306"))
MARIADB_USER = os.environ.get("CLOUD_SVC_TEST_MYSQL_USER", "root")
LISTEN_RE = re.compile(r"^listening on [^\s]+:(\d+)$", re.M)


def mariadb_available() -> Optional[str]:
    """None when MariaDB answers, else why not."""
    try:
        import pymysql

        pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user=MARIADB_USER, connect_timeout=3).close()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"MariaDB at {MARIADB_HOST}:{MARIADB_PORT} does not answer ({exc}); `make mariadb` starts it"


class TempMariaDB:
    """A uniquely named database (test_edgert_<hex>) that is dropped again; `test` stays untouched."""

    def __init__(self, prefix: str = "test_edgert"):
        import pymysql

        self.name = f"{prefix}_{secrets.token_hex(4)}"
        self._pymysql = pymysql
        with self._admin() as cur:
            cur.execute(f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        self.url = f"mysql+pymysql://{MARIADB_USER}@{MARIADB_HOST}:{MARIADB_PORT}/{self.name}"

    def _admin(self):
        conn = self._pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user=MARIADB_USER, autocommit=True)

        class _Cur:
            def __enter__(s):
                s.cur = conn.cursor()
                return s.cur

            def __exit__(s, *exc):
                s.cur.close()
                conn.close()

        return _Cur()

    def drop(self) -> None:
        with self._admin() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{self.name}`")


def env_with_repo() -> dict[str, str]:
    """The environment for a subprocess that must import edge_rt, cloud_svc and the generated edgert package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


class ServerProcess:
    """`python -m cloud_svc serve` as a child process; `start()` waits for its port (0 picks one)."""

    def __init__(self, db_url: str, *, listen: str = "127.0.0.1:0", clips: Optional[str] = None,
                 log_path: Optional[Path] = None, extra: tuple[str, ...] = (), env: Optional[dict] = None,
                 open_query: bool = True):
        # open_query: Query without a user's token (loopback only); the auth tests turn it off and add users
        self.db_url, self.listen, self.clips = db_url, listen, clips
        self.extra = (*extra, "--open-query") if open_query else extra
        self.log_path = log_path
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> int:
        listen = self.listen if not self.port else f"{self.listen.rsplit(':', 1)[0]}:{self.port}"
        cmd = [sys.executable, "-m", "cloud_svc", "-v", "serve", "--db", self.db_url, "--listen", listen,
               *(("--clips", self.clips) if self.clips else ()), *self.extra]
        if self.log_path is None:
            import tempfile

            self.log_path = Path(tempfile.mkstemp(prefix="cloud_svc-", suffix=".log")[1])
        out_path = Path(str(self.log_path) + ".out")
        with open(self.log_path, "ab") as log, open(out_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=log, cwd=REPO, env=self.env or env_with_repo())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = LISTEN_RE.search(out_path.read_text(errors="replace"))
            if m:
                self.port = int(m.group(1))
                return self.port
            if self.proc.poll() is not None:
                raise RuntimeError(f"cloud_svc serve exited with {self.proc.returncode}; see {self.log_path}")
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"cloud_svc serve did not start listening; see {self.log_path}")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM: the graceful path (drain, then exit)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, acks in flight are lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_for(pred, timeout: float = 30.0, every: float = 0.05) -> bool:
    """Poll `pred` until it is true or `timeout` seconds pass; its last answer."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(every)
    return pred()


def event_records(label: str = "glass_break", *, start_ns: Optional[int] = None, lat: Optional[float] = 52.52,
                  lon: Optional[float] = 13.40, event_id: Optional[str] = None, clip: Optional[bytes] = None):
    """The two outbox records of one event, built by the edge's own record builder: its start and its end
    0.7 s later (with `clip` as a FLAC clip when given). Returns (start, end), each an edge_rt.records.Staged."""
    from edge_rt.detector import Event
    from edge_rt.records import ClipInfo, RecordBuilder

    start_ns = start_ns or time.time_ns()
    build = RecordBuilder(backend="onnxruntime", model_sha256="ab" * 32, lat=lat, lon=lon, t0_ns=start_ns)
    ev = Event(label=label, start_s=0.0, score=0.81, event_id=event_id or uuid.uuid4().hex, end_s=0.7,
               classes=[("Glass", 0.81), ("Shatter", 0.4), ("Breaking", 0.2), ("Smash, crash", 0.1), ("Speech", 0.05)])
    start = build.started(ev, inference_ms=1.9)
    end = build.ended(ev, clip=clip, clip_info=ClipInfo("flac", 16000, start_ns, 1.0) if clip else None)
    return start, end


def put_event(outbox, label: str = "glass_break", *, clip: Optional[bytes] = None, **kw) -> tuple[int, int, str]:
    """Put one event (start and end) into an edge outbox; returns (start seq, end seq, event_id)."""
    from edge_rt.records import parse

    start, end = event_records(label, clip=clip, **kw)
    s1 = outbox.put(start.kind, start.body)
    s2 = outbox.put(end.kind, end.body, clip=end.clip)
    return s1, s2, parse(start.body).event.event_id


def event_id_of(body: bytes) -> str:
    """The event_id of an outbox record's body (an event or its end)."""
    from edge_rt.records import parse

    rec = parse(body)
    return getattr(rec, rec.WhichOneof("kind")).event_id


def wipe(engine) -> None:
    """Delete every row of every cloud table (children first); the schema and its revision stay."""
    from cloud_svc.schema import metadata

    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


def cloud_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloud_svc", *args], capture_output=True, text=True, cwd=REPO,
                          env=env_with_repo(), check=check, timeout=120)


def add_device(db_url: str, device_id: str) -> str:
    """`devices add` through the CLI; the token is the last line of its output (the DESIGN contract)."""
    return cloud_cli("devices", "add", device_id, "--db", db_url).stdout.strip().splitlines()[-1]


def edge_run(source: str, spool: Path, *, cloud: str | None = None, device_id: str = "edge-dev",
             token: str | None = None, lat: float | None = None, lon: float | None = None, fast: bool = True,
             env: dict | None = None, timeout: float = 300, wait: bool = True, extra: tuple[str, ...] = ()):
    cmd = [sys.executable, "-m", "edge_rt", "-v", "run", "--source", source, "--spool", str(spool),
           "--device-id", device_id, "--backend", "onnxruntime", *extra]
    cmd += ["--fast"] if fast else ["--realtime"]
    if cloud:
        cmd += ["--cloud", cloud, "--token", token or ""]
    if lat is not None:
        cmd += ["--lat", str(lat), "--lon", str(lon)]
    e = env_with_repo()
    e.update(env or {})
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=REPO, env=e, capture_output=True, text=True, timeout=timeout)
