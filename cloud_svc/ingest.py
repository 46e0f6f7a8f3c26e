"""The group committer: threads that commit the batches of many streams together and ack each after its commit."""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import zlib
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar, Union

from cloud_svc.clipstore import ClipStore
from cloud_svc.config import IngestConfig
from cloud_svc.domain import BatchIn, EventIn, HeartbeatIn
from cloud_svc.errors import CloudError, Draining, StorageUnavailable, WriteConflict
from cloud_svc.store import IngestStore
from cloud_svc.store.base import CONFLICT_BACKOFF
from edgert.backoff import Backoff

log = logging.getLogger("cloud_svc.ingest")
# A group commit that failed on the database (a lost connection, a Galera node that is not ready) is retried after
# 0.1, 0.2, 0.4 ... 2 s, each drawn from its upper half. One that lost a race (a deadlock, a Galera certification
# failure: WriteConflict) was rolled back whole and is run again sooner, at a fully random point of CONFLICT_BACKOFF,
# so the committers of several replicas that collided do not collide again in step.
COMMIT_BACKOFF = Backoff(0.1, 2.0, jitter=0.5)

CLIP_MISSING = "clip upload missing"
AnyFuture = Union[Future, "asyncio.Future"]
F = TypeVar("F", Future, "asyncio.Future")  # _enqueue hands back the kind of future it was given


def _set_all(items: list) -> None:
    for f, result, err in items:
        if not f.done():
            f.set_exception(err) if err is not None else f.set_result(result)


@dataclass
class _Item:
    batch: Optional[BatchIn]
    heartbeat: Optional[HeartbeatIn]
    future: Optional[AnyFuture]


class Committer:
    """`submit()`/`submit_async()` return a future of the batch's CommitResult, resolved only after the
    transaction that stored it committed.

    Batches that queue up while a commit runs go into the next one, so the commit rate adapts to load (many
    devices, one fsync). With several shards (MySQL), each device always goes to the same shard, so its
    batches are committed in submission order, while one shard builds its SQL as another waits for the
    database.
    """

    def __init__(self, ingest: IngestStore, store: ClipStore, cfg: IngestConfig,
                 on_alerts: Optional[Callable[[], None]] = None, shards: int = 1):
        self.ingest, self.store, self.cfg, self.on_alerts = ingest, store, cfg, on_alerts
        self.shards = max(1, shards)
        self._queues: list[queue.Queue] = [queue.Queue() for _ in range(self.shards)]
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._inflight = 0
        self._lock = threading.Lock()
        self.commits = 0
        self.records = 0
        self.failures = 0
        self.conflicts = 0  # commits that lost a race and were run again (counted per attempt)

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> "Committer":
        self._threads = [threading.Thread(target=self.run, args=(i,), name=f"committer-{i}", daemon=True)
                         for i in range(self.shards)]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Refuse new batches, commit what is queued, then end the threads."""
        self._closed = True
        for q in self._queues:
            q.put(None)
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))

    def pending(self) -> int:
        with self._lock:
            return self._inflight

    def _queue(self, device_id: str) -> queue.Queue:
        return self._queues[zlib.crc32(device_id.encode()) % self.shards if self.shards > 1 else 0]

    def _enqueue(self, batch: BatchIn, fut: F) -> F:
        if self._closed:
            fut.set_exception(Draining("server is shutting down"))
            return fut
        with self._lock:
            self._inflight += 1
        self._queue(batch.device_id).put(_Item(batch, None, fut))
        return fut

    def submit(self, batch: BatchIn) -> Future:
        """For threads: a concurrent.futures.Future of the batch's CommitResult."""
        return self._enqueue(batch, Future())

    def submit_async(self, batch: BatchIn) -> "asyncio.Future":
        """For the event loop (call it there): an asyncio.Future, resolved together with every other future of
        the same commit in one call_soon_threadsafe, so a commit of many small batches wakes the loop once."""
        return self._enqueue(batch, asyncio.get_running_loop().create_future())

    def submit_heartbeat(self, hb: HeartbeatIn) -> None:
        if not self._closed:
            self._queue(hb.device_id).put(_Item(None, hb, None))

    # ------------------------------------------------------------------------------------------ the loop
    def run(self, shard: int = 0) -> None:
        q = self._queues[shard]
        while True:
            item = q.get()
            if item is None:
                if q.empty():
                    return
                q.put(None)  # commit what is still queued, then come back to the sentinel
                continue
            group = [item]
            n = len(item.batch.records) if item.batch else 0
            deadline = time.perf_counter() + self.cfg.commit_linger_ms / 1e3
            while n < self.cfg.commit_max_records:
                try:
                    timeout = deadline - time.perf_counter()
                    nxt = q.get(timeout=timeout) if timeout > 0 else q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    q.put(None)
                    break
                group.append(nxt)
                n += len(nxt.batch.records) if nxt.batch else 0
            self._commit(group)

    def _commit(self, group: list[_Item]) -> None:
        batches = [i.batch for i in group if i.batch is not None]
        beats = {i.heartbeat.device_id: i.heartbeat for i in group if i.heartbeat is not None}  # latest wins
        err: Optional[BaseException] = None
        outcome = None
        try:
            for b in batches:
                self._store_clips(b)
        except CloudError as exc:
            err = exc
        for attempt in range(self.cfg.commit_retries + 1):
            if err is not None:
                break
            try:
                # Safe to run again whole: a failed attempt was rolled back (or, when the connection died in its
                # COMMIT, may have committed), and the next one reads each device's watermark afresh and inserts
                # every row by its natural key, ignoring the rows already there.
                outcome = self.ingest.commit(batches, list(beats.values()))
                break
            except WriteConflict as exc:  # deadlock, lock wait timeout, Galera certification failure
                with self._lock:
                    self.conflicts += 1
                if attempt == self.cfg.commit_retries:
                    err = exc
                    break
                log.info("commit of %d batches lost a write race (%s); retry %d", len(batches), exc, attempt + 1)
                time.sleep(CONFLICT_BACKOFF.delay(attempt))
            except StorageUnavailable as exc:  # connection lost, node not ready: try again
                if attempt == self.cfg.commit_retries:
                    err = exc
                    break
                log.warning("commit of %d batches failed (%s); retry %d", len(batches), exc, attempt + 1)
                time.sleep(COMMIT_BACKOFF.delay(attempt))
            except Exception as exc:  # noqa: BLE001 - a bug must fail the batches, not kill the committer
                log.exception("commit of %d batches failed", len(batches))
                err = StorageUnavailable(f"commit failed: {exc}")
                break
        futures = [i.future for i in group if i.future is not None]
        with self._lock:
            self._inflight -= len(futures)
            if err is None:
                self.commits += 1
                self.records += sum(len(b.records) for b in batches)
            else:
                self.failures += 1
        if err is not None:
            self._resolve([(f, None, err) for f in futures])
            return
        assert outcome is not None  # no error: a commit attempt succeeded (commit_retries >= 0)
        self._resolve([(f, r, None) for f, r in zip(futures, outcome.results)])
        if outcome.alerts and self.on_alerts is not None:
            self.on_alerts()

    @staticmethod
    def _resolve(done: list) -> None:
        by_loop: dict = {}
        for f, result, err in done:
            if isinstance(f, Future):
                if f.set_running_or_notify_cancel():  # False: the caller went away and cancelled it
                    f.set_exception(err) if err is not None else f.set_result(result)
            else:
                by_loop.setdefault(f.get_loop(), []).append((f, result, err))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_set_all, items)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def _store_clips(self, batch: BatchIn) -> None:
        """Inline clip bytes go into the clip store before the commit; references must already be there."""
        for r in batch.records:
            e = r.payload
            if not isinstance(e, EventIn) or e.clip is None:
                continue
            c = e.clip
            if c.data is not None:
                c.size = len(c.data)
                c.sha256 = self.store.put(c.data)
                c.data = None
            elif not self.store.exists(c.sha256):
                log.warning("%s seq %d: clip %s was never uploaded; storing the event without it",
                            batch.device_id, r.seq, c.sha256)
                e.clip, e.clip_dropped = None, CLIP_MISSING
