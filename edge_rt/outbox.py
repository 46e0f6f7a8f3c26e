"""The durable outbox: an fsync'd SQLite WAL queue that gives each record its device seq and keeps it until acked."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from edge_rt.errors import OutboxError

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL,
    created_ns INTEGER NOT NULL,
    body       TEXT    NOT NULL,
    clip       BLOB,
    nbytes     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_created ON outbox (created_ns);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('next_seq', 1), ('dropped', 0), ('acked', 0);
"""
# Running totals kept beside the rows, in the same transactions, so that bounds and stats cost O(1), not a scan of
# a backlog that grows while the device is offline. An outbox from before they existed gets them counted once.
TOTALS = """
INSERT OR IGNORE INTO meta SELECT 'depth', COUNT(*) FROM outbox;
INSERT OR IGNORE INTO meta SELECT 'bytes', COALESCE(SUM(nbytes), 0) FROM outbox;
"""


@dataclass(frozen=True)
class Record:
    seq: int
    kind: str  # "event" | "event_end" | "alert" | "heartbeat"
    created_ns: int
    body: dict[str, Any]
    clip: Optional[bytes]


class Outbox:
    """Records survive kill -9 once `put` returns. Bounded by bytes and age; drops of the oldest are counted."""

    def __init__(self, path: str | Path, max_bytes: int = 64 << 20, max_age_s: float = 7 * 86400):
        self.path = Path(path)
        self.max_bytes, self.max_age_ns = int(max_bytes), int(max_age_s * 1e9)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit
            self._db.executescript(SCHEMA)
            self._db.executescript(f"BEGIN IMMEDIATE; {TOTALS} COMMIT;")
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def put(self, kind: str, body: dict[str, Any], clip: Optional[bytes] = None, now_ns: Optional[int] = None) -> int:
        """Append one record durably and return its seq (monotonic per device, never reused)."""
        return self.put_many([(kind, body, clip)], now_ns)[0]

    def put_many(self, records: list[tuple[str, dict[str, Any], Optional[bytes]]],
                 now_ns: Optional[int] = None) -> list[int]:
        """Append records in one fsync'd transaction (all or none); return their seqs in order."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        rows = []
        for kind, body, clip in records:
            text = json.dumps(body, separators=(",", ":"), allow_nan=False)
            rows.append((kind, text, clip, len(text) + (len(clip) if clip else 0)))
        with self._lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                first = cur.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0]
                cur.executemany("INSERT INTO outbox VALUES (?,?,?,?,?,?)",
                                [(first + i, kind, now_ns, text, clip, n) for i, (kind, text, clip, n) in enumerate(rows)])
                cur.execute("UPDATE meta SET value=value+? WHERE key='next_seq'", (len(rows),))
                cur.execute("UPDATE meta SET value=value+? WHERE key='depth'", (len(rows),))
                cur.execute("UPDATE meta SET value=value+? WHERE key='bytes'", (sum(r[3] for r in rows),))
                self._enforce_bounds(cur, now_ns)
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                cur.execute("ROLLBACK")
                raise OutboxError(f"outbox write failed ({self.path}): {exc}") from exc
        return list(range(first, first + len(rows)))

    @staticmethod
    def _remove(cur: sqlite3.Cursor, where: str, args: tuple) -> int:
        """Delete the rows matching `where` and keep the running totals right; return how many went."""
        n, nbytes = cur.execute(f"SELECT COUNT(*), COALESCE(SUM(nbytes),0) FROM outbox WHERE {where}", args).fetchone()
        if n:
            cur.execute(f"DELETE FROM outbox WHERE {where}", args)
            cur.execute("UPDATE meta SET value=value-? WHERE key='depth'", (n,))
            cur.execute("UPDATE meta SET value=value-? WHERE key='bytes'", (nbytes,))
        return n

    def _enforce_bounds(self, cur: sqlite3.Cursor, now_ns: int) -> None:
        dropped = self._remove(cur, "created_ns < ?", (now_ns - self.max_age_ns,))
        total = cur.execute("SELECT value FROM meta WHERE key='bytes'").fetchone()[0]
        while total > self.max_bytes:
            row = cur.execute("SELECT seq, nbytes FROM outbox ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                break
            self._remove(cur, "seq = ?", (row[0],))
            total -= row[1]
            dropped += 1
        if dropped:
            cur.execute("UPDATE meta SET value=value+? WHERE key='dropped'", (dropped,))

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[Record]:
        with self._lock:
            rows = self._db.execute("SELECT seq, kind, created_ns, body, clip FROM outbox WHERE seq > ? ORDER BY seq "
                                    "LIMIT ?", (after_seq, limit)).fetchall()
        return [Record(s, k, c, json.loads(b), clip) for s, k, c, b, clip in rows]

    def ack(self, upto_seq: int) -> int:
        """Delete every record with seq <= upto_seq (the cloud committed them); return how many went."""
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            n = self._remove(cur, "seq <= ?", (upto_seq,))
            cur.execute("UPDATE meta SET value=MAX(value, ?) WHERE key='acked'", (upto_seq,))
            cur.execute("COMMIT")
        return n

    def stats(self) -> dict[str, int]:
        with self._lock:
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        return {"depth": meta["depth"], "bytes": meta["bytes"], "dropped": meta["dropped"], "next_seq": meta["next_seq"],
                "acked": meta["acked"]}

    def close(self) -> None:
        with self._lock:
            self._db.close()
