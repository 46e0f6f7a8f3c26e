"""The committer's storage: batches of records in one transaction each, idempotent by natural keys."""
from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass
from typing import AbstractSet, Callable, Iterable, Optional, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_svc.domain import AlertIn, BatchIn, CommitResult, EventIn, HeartbeatIn, RecordIn, RejectIn
from cloud_svc.schema import alert_events, alerts, device_health, devices, events
from cloud_svc.store.base import Database, chunks

EVENT_COLUMNS = ("device_id", "seq", "event_id", "label", "start_ns", "score", "lat", "lon", "backend",
                 "model_sha256", "inference_ms", "created_ns", "received_ns")
PK_CACHE_SIZE = 200_000  # (device_id, event_id) -> pk pairs kept per process: some tens of MB at most
END_COLUMNS = ("event_pk", "seq", "end_ns", "score", "embedding_f16", "clip_dropped", "created_ns", "received_ns")
_quote = json.encoder.encode_basestring  # C: a JSON string literal


def _json(classes: list[tuple[str, float]]) -> str:
    """[[name, score], ...] as compact JSON, by hand: several times faster than json.dumps for this shape."""
    return "[" + ",".join(f"[{_quote(n)},{float(s)!r}]" for n, s in classes) + "]"


def sampled(event_id: str, rate: float) -> bool:
    """The random verification sample, decided by the event's uuid so that replays decide the same."""
    if rate <= 0.0:
        return False
    try:
        return int(event_id[:8], 16) / float(1 << 32) < rate
    except ValueError:
        return False


@dataclass(frozen=True)
class CommitOutcome:
    results: list[CommitResult]
    alerts: int  # device alerts stored (Subscribe listeners are woken when > 0)


class IngestStore:
    """Stores events, their ends, top classes, clips, device alerts, rejects and heartbeats, and queues the
    verification jobs (distress labels and a random sample). Remembers the event pks it committed."""

    def __init__(self, db: Database, *, distress_labels: Iterable[str] = (), sample_rate: float = 0.0,
                 clip_uri: Optional[Callable[[str], str]] = None, health_sample_s: float = 60.0):
        self.db = db
        self.health_sample_ns = int(health_sample_s * 1e9)
        self._sampled_ns: dict[str, int] = {}  # device -> when its last health sample was written (this process)
        self.clip_uri = clip_uri  # sha256 -> where the clip store keeps it
        self.distress_labels = frozenset(distress_labels)
        self.sample_rate = sample_rate
        self._pk_cache: dict[tuple[str, str], int] = {}
        self._pk_lock = threading.Lock()

    def commit(self, batches: Sequence[BatchIn], heartbeats: Sequence[HeartbeatIn] = ()) -> CommitOutcome:
        """Store a group of batches (from any devices) in one transaction and return each batch's watermark.

        Per device: records at or below the stored watermark are replays and skipped; the watermark then
        advances over every seq that is stored now or lies below the batch's low_water (dropped on the
        edge). Every row is inserted with its natural key and duplicates are ignored, so anything that still
        slips through is a no-op; nothing on this path is ever updated but the device rows.
        """
        now = time.time_ns()
        with self.db.write() as conn:
            ids = sorted({b.device_id for b in batches} | {h.device_id for h in heartbeats})
            marks: dict[str, int] = {}
            for part in chunks(ids):  # in id order, so that concurrent committers cannot deadlock
                marks.update((d, int(m)) for d, m in self.db.bulk.select_in(conn, "devices", ("id", "acked_seq"), "id",
                                                                            part, for_update=True))
            recs: list[tuple[str, RecordIn, EventIn]] = []
            alert_recs: list[tuple[str, int, AlertIn]] = []
            reject_rows: list[tuple[str, int, str, str, int]] = []
            results: list[CommitResult] = []
            positions: dict[str, tuple[float, float]] = {}
            before = dict(marks)
            for b in batches:
                if b.device_id not in marks:  # deleted while connected: nothing to attach records to
                    results.append(CommitResult(0, 0, len(b.records)))
                    continue
                w = marks[b.device_id]
                settled = max(w, b.low_water - 1)
                stored = dup = 0
                for r in b.records:
                    if r.seq <= w:
                        dup += 1
                        continue
                    if r.seq <= settled + 1:
                        settled = max(settled, r.seq)
                    stored += 1
                    p = r.payload  # convert.batch_in pairs each kind with its payload type
                    if r.kind in ("event", "event_end"):
                        assert isinstance(p, EventIn), r.kind
                        recs.append((b.device_id, r, p))
                    elif r.kind == "alert":
                        assert isinstance(p, AlertIn), r.kind
                        alert_recs.append((b.device_id, r.seq, p))
                    elif r.kind == "reject":
                        assert isinstance(p, RejectIn), r.kind
                        reject_rows.append((b.device_id, r.seq, p.field[:256], p.reason[:512], now))
                    if isinstance(p, (EventIn, AlertIn)) and p.lat is not None and p.lon is not None:
                        positions[b.device_id] = (p.lat, p.lon)
                marks[b.device_id] = settled
                results.append(CommitResult(settled, stored, dup))
            learned: dict[tuple[str, str], int] = {}
            if recs:
                learned = self._events(conn, recs, now)
            n_alerts = self._device_alerts(conn, alert_recs, now) if alert_recs else 0
            self.db.bulk.insert(conn, "rejects", ("device_id", "seq", "field", "reason", "received_ns"), reject_rows,
                                ignore=True)
            changed = {d: m for d, m in marks.items() if m != before[d]}
            self.db.bulk.update_by_key(conn, "devices", "id", {
                "acked_seq": changed, "lat": {d: p[0] for d, p in positions.items()},
                "lon": {d: p[1] for d, p in positions.items()}})
            samples: list[tuple[str, dict]] = []
            for h in heartbeats:
                if h.device_id in marks:
                    conn.execute(devices.update().where(devices.c.id == h.device_id).values(
                        last_heartbeat_ns=now, health={"figures": h.figures, "info": h.info,
                                                       "outbox_depth": h.outbox_depth,
                                                       "outbox_dropped": h.outbox_dropped, "sent_ns": h.sent_ns}))
                    if now - self._sampled_ns.get(h.device_id, 0) >= self.health_sample_ns:
                        samples.append((h.device_id, {"device_id": h.device_id, "ts_ns": now, "figures": h.figures,
                                                       "outbox_depth": int(h.outbox_depth)}))
            if samples:  # the health history the dashboard draws, thinned to one sample per health_sample_s
                conn.execute(self.db.insert_ignore(device_health), [row for _, row in samples])
        for device_id, _ in samples:
            self._sampled_ns[device_id] = now
        # only now: a rolled-back transaction's pks never existed; an event whose end is stored needs none again
        self._remember_pks(learned, {(b.device_id, r.payload.event_id) for b in batches for r in b.records
                                     if r.kind == "event_end" and isinstance(r.payload, EventIn)})
        return CommitOutcome(results, n_alerts)

    def _remember_pks(self, learned: dict[tuple[str, str], int],
                      ended: AbstractSet[tuple[str, str]] = frozenset()) -> None:
        """Keep committed (device_id, event_id) -> pk pairs (never changed once stored), so an event's end,
        which usually comes to the same server seconds after its start, needs no lookup; forget those whose end
        is stored (the cache holds the events in progress, not every event). Bounded, oldest out."""
        if not learned and not ended:
            return
        with self._pk_lock:
            cache = self._pk_cache
            cache.update((k, v) for k, v in learned.items() if k not in ended)
            for key in ended:
                cache.pop(key, None)
            excess = len(cache) - PK_CACHE_SIZE
            if excess > 0:
                for key in list(itertools.islice(cache, excess)):
                    del cache[key]

    def _events(self, conn: Connection, recs: list[tuple[str, RecordIn, EventIn]],
                now: int) -> dict[tuple[str, str], int]:
        """Event starts -> events; ends -> event_ends (creating the event when its start never came);
        top classes, clips and verification jobs beside them. Returns the event pks this call learned from the
        database, for the cache once the transaction commits."""
        bulk = self.db.bulk
        new = bulk.insert(conn, "events", EVENT_COLUMNS,
                          [self._event_row(d, r, e, now) for d, r, e in recs if r.kind == "event"], ignore=True,
                          returning=("id", "device_id", "event_id"))
        pks = {(d, e): pk for pk, d, e in new}  # rows this statement inserted (MariaDB; MySQL, SQLite: none)
        fresh = dict(pks)
        unknown: set[str] = set()
        for d, _, e in recs:  # ends of events stored by earlier commits: their pks are usually remembered
            key = (d, e.event_id)
            if key not in pks:
                pk = self._pk_cache.get(key)
                if pk is None:
                    unknown.add(e.event_id)
                else:
                    pks[key] = pk

        def look_up(event_ids: set[str]) -> None:
            found = self._event_pks(conn, sorted(event_ids))
            pks.update(found)
            fresh.update(found)

        if unknown:
            look_up(unknown)

        orphans = [(d, r, e) for d, r, e in recs if r.kind == "event_end" and (d, e.event_id) not in pks]
        if orphans:
            bulk.insert(conn, "events", EVENT_COLUMNS, [self._event_row(d, r, e, now) for d, r, e in orphans],
                        ignore=True)
            look_up({e.event_id for _, _, e in orphans})
        end_rows, class_rows, clip_rows, jobs = [], [], [], []
        for d, r, e in recs:
            pk = pks.get((d, e.event_id))
            if pk is None:
                continue
            final = r.kind == "event_end"
            class_rows.append((pk, final, _json(e.classes)))
            if not final:
                continue
            end_rows.append((pk, r.seq, e.end_ns, e.score, e.embedding, e.clip_dropped, r.created_ns, now))
            if e.clip is not None and e.clip.sha256:
                c = e.clip
                clip_rows.append((pk, c.sha256, c.size, c.format, c.sample_rate, c.start_ns, c.preroll_s,
                                  self._clip_uri(c.sha256), now))
            reason = "distress" if e.label in self.distress_labels else (
                "sample" if sampled(e.event_id, self.sample_rate) else None)
            if reason:
                jobs.append((pk, reason, "pending", 0, now))
        bulk.insert(conn, "event_ends", END_COLUMNS, end_rows, ignore=True)
        bulk.insert(conn, "top_classes", ("event_pk", "final", "classes"), class_rows, ignore=True)
        bulk.insert(conn, "clips", ("event_pk", "sha256", "size", "format", "sample_rate", "start_ns", "preroll_s",
                                    "uri", "created_ns"), clip_rows, ignore=True)
        bulk.insert(conn, "verifications", ("event_pk", "reason", "status", "attempts", "created_ns"), jobs,
                    ignore=True)
        return fresh

    @staticmethod
    def _event_row(device_id: str, r: RecordIn, e: EventIn, now: int) -> tuple:
        return (device_id, r.seq, e.event_id, e.label, e.start_ns, e.score, e.lat, e.lon, e.backend, e.model_sha256,
                e.inference_ms, r.created_ns, now)

    def _event_pks(self, conn: Connection, event_ids: list[str]) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for part in chunks(event_ids):
            for pk, device_id, event_id in self.db.bulk.select_in(conn, "events", ("id", "device_id", "event_id"),
                                                                  "event_id", part):
                out[(device_id, event_id)] = pk
        return out

    def _clip_uri(self, sha256: str) -> str:
        return self.clip_uri(sha256) if self.clip_uri else f"sha256:{sha256}"

    def _device_alerts(self, conn: Connection, recs: list[tuple[str, int, AlertIn]], now: int) -> int:
        n = 0
        for device_id, seq, a in recs:
            res = conn.execute(self.db.insert_ignore(alerts).values(
                kind="device", rule=a.rule, label=None, labels=a.labels, device_id=device_id, seq=seq,
                start_ns=a.start_ns, end_ns=a.end_ns, lat=a.lat, lon=a.lon, device_count=1, event_ids=a.event_ids,
                created_ns=now))
            if not res.rowcount:
                continue
            n += 1
            alert_id = res.inserted_primary_key[0] if res.inserted_primary_key else None
            if alert_id is None:
                alert_id = conn.scalar(sa.select(alerts.c.id).where(alerts.c.device_id == device_id,
                                                                    alerts.c.seq == seq))
            if a.event_ids:
                pks = conn.scalars(sa.select(events.c.id).where(events.c.event_id.in_(a.event_ids),
                                                                events.c.device_id == device_id)).all()
                if pks:
                    conn.execute(self.db.insert_ignore(alert_events), [{"alert_id": alert_id, "event_pk": pk}
                                                                       for pk in pks])
        return n
