"""What the benches measure of processes: CPU seconds and resident memory of a process tree, and the database's
processes. Imported by the bench scripts (`make bench` skips files whose names start with _)."""
from __future__ import annotations

import threading
import time
from typing import Iterable, Optional

import psutil


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU seconds (user + system) used so far by these processes and their children."""
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc] + proc.children(recursive=True):
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
    return total


def rss_bytes(pid: int) -> Optional[int]:
    """Resident memory of a process and its children, or None when it is gone."""
    try:
        proc = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [proc] + proc.children(recursive=True))
    except psutil.Error:
        return None


def machine_busy_seconds() -> float:
    """CPU seconds all cores of this machine have been busy so far (user, nice, system, interrupts): the part that
    the watched processes do not account for is load from outside the run."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def mariadb_pids() -> list[int]:
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] in ("mariadbd", "mysqld")]


def measure_cpu(watched: dict[str, list[int]], seconds: float, mariadb: Optional[dict] = None) -> dict:
    """Sleep `seconds` and say what the machine did meanwhile: `cpu_s`, the CPU seconds of each group of processes;
    `cpu_other_s`, those its cores were busy with anything else; with `mariadb` (pymysql.connect keywords, the run's
    own database among them), `db_others`, the share of quarter-second looks at MariaDB's process list that found a
    statement of another database running (other work on the shared server, counted in its CPU)."""
    looks: list[bool] = []
    stop = threading.Event()
    watcher = None
    if mariadb is not None:
        watcher = threading.Thread(target=_watch_mariadb, args=(mariadb, stop, looks), daemon=True)
        watcher.start()
    cpu0, m0 = {k: cpu_seconds(v) for k, v in watched.items()}, machine_busy_seconds()
    time.sleep(seconds)
    cpu = {k: round(cpu_seconds(v) - cpu0[k], 2) for k, v in watched.items()}
    out = {"cpu_s": cpu, "cpu_other_s": round(max(0.0, machine_busy_seconds() - m0 - sum(cpu.values())), 2)}
    if watcher is not None:
        stop.set()
        watcher.join(5)
        out["db_others"] = round(sum(looks) / len(looks), 2) if looks else None
    return out


def _watch_mariadb(params: dict, stop: threading.Event, looks: list[bool]) -> None:
    import pymysql

    conn = pymysql.connect(connect_timeout=3, autocommit=True, **params)
    try:
        with conn.cursor() as cur:
            while not stop.wait(0.25):
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND NOT IN "
                            "('Sleep', 'Daemon', 'Binlog Dump') AND ID <> CONNECTION_ID() "
                            "AND (DB IS NULL OR DB <> DATABASE())")
                row = cur.fetchone()
                looks.append(bool(row and row[0]))
    finally:
        conn.close()
