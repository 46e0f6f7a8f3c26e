"""The durable outbox: an fsync'd SQLite WAL queue that gives each record its device seq and keeps it until every
consumer of the run has acked it.

A record is its kind, its body (the serialized `edgert.v1.Record` that `edge_rt.records` built) and its clip.
A spool written before typed records (JSON bodies, format 1) is migrated on open, in one transaction.

Consumers (the cloud uplink, the MQTT publisher, the webhook) each read from their own mark, a `meta` row
('acked' for the cloud, the name tools and older spools know; 'acked:NAME' for the others) that `ack` raises in
the same transaction that deletes: a row goes once every consumer registered for this run has acked it. So a
kill -9 leaves each mark and the rows it still needs consistent, and each consumer resumes after its mark
(at-least-once). Registration is per run: a consumer that is no longer configured stops holding rows the next
time the process starts without it (its mark stays, for when it comes back). A consumer seen for the first time
starts from the oldest row still held, so it gets everything the outbox still has (bounded by max_age_s and
max_bytes); one that comes back after runs without it resumes after its mark, or from the oldest row held when
the rows after its mark are gone. With no consumer registered nothing is deleted but by the bounds, which drop
the oldest rows whoever has read them and count them in 'dropped'.
"""
from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from edge_rt.errors import OutboxError

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL,
    created_ns INTEGER NOT NULL,
    body       BLOB    NOT NULL,
    clip       BLOB,
    nbytes     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_created ON outbox (created_ns);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('next_seq', 1), ('dropped', 0), ('acked', 0);
"""
FORMAT = 2  # PRAGMA user_version: 2 = serialized Record bodies; 0 or 1 = JSON bodies (migrated on open)
log = logging.getLogger("edge_rt.outbox")
CLOUD = "cloud"  # the uplink's consumer name; its mark is meta 'acked'
_CONSUMER = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# Running totals kept beside the rows, in the same transactions, so that bounds and stats cost O(1), not a scan of
# a backlog that grows while the device is offline. An outbox from before they existed gets them counted once.
TOTALS = """
INSERT OR IGNORE INTO meta SELECT 'depth', COUNT(*) FROM outbox;
INSERT OR IGNORE INTO meta SELECT 'bytes', COALESCE(SUM(nbytes), 0) FROM outbox;
"""


def mark_key(consumer: str) -> str:
    """The `meta` key of `consumer`'s mark (the highest seq it acked)."""
    if not _CONSUMER.match(consumer):
        raise OutboxError(f"outbox consumer name {consumer!r} must be 1-32 of a-z, 0-9, '_' and '-', starting "
                          "with a letter")
    return "acked" if consumer == CLOUD else f"acked:{consumer}"


@dataclass(frozen=True)
class Record:
    seq: int
    kind: str  # "event" | "event_end" | "alert" | "heartbeat"
    created_ns: int
    body: bytes  # a serialized edgert.v1.Record without seq and created_ns (those are the columns above)
    clip: Optional[bytes]


class Outbox:
    """Records survive kill -9 once `put` returns. Bounded by bytes and age; drops of the oldest are counted.
    Until `register` says otherwise, the cloud is the one consumer (an outbox opened only to read is unaffected)."""

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
            self._upgrade()
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._consumers: tuple[str, ...] = (CLOUD,)

    def _upgrade(self) -> None:
        """Bring a spool of an older format to FORMAT in one transaction: a crash midway leaves it as it was."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == FORMAT:
            return
        if version > FORMAT:
            raise OutboxError(f"outbox {self.path} has format {version}, newer than this edge_rt understands "
                              f"({FORMAT}): run the newer edge_rt that wrote it until it drains, or move the file away")
        from edge_rt.records import from_legacy

        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            rows = cur.execute("SELECT seq, kind, body, clip FROM outbox ORDER BY seq").fetchall()
            unusable = 0
            for seq, kind, text, clip in rows:
                try:
                    body = from_legacy(kind, json.loads(text))
                except (KeyError, TypeError, ValueError) as exc:  # sent without a kind: the cloud dead-letters it
                    log.warning("outbox seq %d (%s) of the old format cannot be expressed (%s); it is kept and "
                                "will be dead-lettered by the cloud", seq, kind, exc)
                    body, unusable = b"", unusable + 1
                cur.execute("UPDATE outbox SET body=?, nbytes=? WHERE seq=?",
                            (body, len(body) + (len(clip) if clip else 0), seq))
            cur.execute("UPDATE meta SET value=(SELECT COALESCE(SUM(nbytes), 0) FROM outbox) WHERE key='bytes'")
            cur.execute(f"PRAGMA user_version={FORMAT}")
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        if rows:
            log.warning("outbox %s: migrated %d records of the JSON format to typed records (%d unusable)",
                        self.path, len(rows), unusable)

    def put(self, kind: str, body: bytes, clip: Optional[bytes] = None, now_ns: Optional[int] = None) -> int:
        """Append one record durably and return its seq (monotonic per device, never reused)."""
        return self.put_many([(kind, body, clip)], now_ns)[0]

    def put_many(self, records: list[tuple[str, bytes, Optional[bytes]]], now_ns: Optional[int] = None) -> list[int]:
        """Append (kind, body, clip) records in one fsync'd transaction (all or none); return their seqs in order."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        rows = []
        for kind, body, clip in records:
            if not isinstance(body, (bytes, bytearray)):
                raise OutboxError(f"an outbox body is the serialized record (bytes), not {type(body).__name__}")
            rows.append((kind, bytes(body), clip, len(body) + (len(clip) if clip else 0)))
        with self._lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                first = cur.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0]
                cur.executemany("INSERT INTO outbox VALUES (?,?,?,?,?,?)",
                                [(first + i, kind, now_ns, body, clip, n)
                                 for i, (kind, body, clip, n) in enumerate(rows)])
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
        return [Record(s, k, c, bytes(b), clip) for s, k, c, b, clip in rows]

    @property
    def consumers(self) -> tuple[str, ...]:
        """The consumers whose acks a row waits for, in this process."""
        return self._consumers

    def register(self, consumers: Iterable[str]) -> None:
        """Make `consumers` the ones a row waits for from now on (the run's configured uplink, MQTT, webhook...).
        A new one gets a mark just below the oldest row held; rows every one of them has acked already go now, in
        one transaction (those a consumer of an earlier run, not registered now, was still holding)."""
        names = tuple(dict.fromkeys(consumers))
        keys = [mark_key(c) for c in names]
        with self._lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                oldest = cur.execute("SELECT COALESCE(MIN(seq), (SELECT value FROM meta WHERE key='next_seq')) "
                                     "FROM outbox").fetchone()[0]
                cur.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", [(k, oldest - 1) for k in keys])
                self._consumers = names
                self._trim(cur)
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                cur.execute("ROLLBACK")
                raise OutboxError(f"outbox write failed ({self.path}): {exc}") from exc

    def _trim(self, cur: sqlite3.Cursor) -> int:
        """Delete the rows every registered consumer has acked (none when no consumer is registered)."""
        if not self._consumers:
            return 0
        keys = [mark_key(c) for c in self._consumers]
        floor = cur.execute(f"SELECT MIN(value), COUNT(*) FROM meta WHERE key IN ({','.join('?' * len(keys))})",
                            keys).fetchone()
        if floor[1] < len(keys):  # a consumer without a mark yet has acked nothing
            return 0
        return self._remove(cur, "seq <= ?", (floor[0],))

    def ack(self, upto_seq: int, consumer: str = CLOUD) -> int:
        """`consumer` has every record with seq <= upto_seq (the cloud committed them, the broker acknowledged
        them): raise its mark and delete what every registered consumer now has; return how many rows went."""
        key = mark_key(consumer)
        with self._lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                cur.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                            "value=MAX(value, excluded.value)", (key, upto_seq))
                n = self._trim(cur)
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                cur.execute("ROLLBACK")
                raise OutboxError(f"outbox write failed ({self.path}): {exc}") from exc
        return n

    def mark(self, consumer: str = CLOUD) -> int:
        """The highest seq `consumer` acked (0 when it never did); read the rest with pending(after_seq=mark)."""
        key = mark_key(consumer)
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def backlog(self, consumer: str = CLOUD) -> int:
        """How many records held are after `consumer`'s mark: what it still has to deliver."""
        key = mark_key(consumer)
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox WHERE seq > COALESCE((SELECT value FROM meta "
                                        "WHERE key=?), 0)", (key,)).fetchone()[0])

    def stats(self) -> dict[str, int]:
        with self._lock:
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        return {k: meta[k] for k in ("depth", "bytes", "dropped", "next_seq", "acked")}

    def close(self) -> None:
        with self._lock:
            self._db.close()
