"""What the benches measure of processes: CPU seconds and resident memory of a process tree, and the database's
processes. Imported by the bench scripts (`make bench` skips files whose names start with _)."""
from __future__ import annotations

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


def mariadb_pids() -> list[int]:
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] in ("mariadbd", "mysqld")]
