"""Verification jobs: claiming (SKIP LOCKED on MariaDB, IMMEDIATE transactions on SQLite), leases, retries, and one
verdict per job (a claim that ran out is fenced off). Claimers on different Galera nodes: tests/system."""
from __future__ import annotations

import threading
import time
import uuid

import sqlalchemy as sa

from cloud_svc.config import VerifyConfig
from cloud_svc.domain import BatchIn, EventIn, RecordIn, VerifyResult
from cloud_svc.schema import verifications
from cloud_svc.workers import VerifyWorker


def _events(store, n: int, label: str = "glass_break") -> list[str]:
    store.devices.add_device("d1")
    ids = [uuid.uuid4().hex for _ in range(n)]
    t = 10**18
    store.ingest.commit([BatchIn("d1", 1, [RecordIn(i + 1, t, "event_end",
                                                    EventIn(x, label, t, t + 1, 0.9, [("Glass", 0.9)]))
                                           for i, x in enumerate(ids)])])
    return ids


def test_concurrent_workers_claim_disjoint_jobs(store):
    _events(store, 60)
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def worker(name):
        barrier.wait()
        mine = []
        while True:
            jobs = store.jobs.claim_jobs(name, 3, lease_s=60, max_attempts=3)
            if not jobs:
                break
            mine += [j.id for j in jobs]
        claimed[name] = mine

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [i for ids in claimed.values() for i in ids]
    assert len(all_ids) == 60 and len(set(all_ids)) == 60


def test_a_claim_that_expires_is_claimed_again(store):
    _events(store, 1)
    [job] = store.jobs.claim_jobs("dead-worker", 5, lease_s=60, max_attempts=3)
    assert store.jobs.claim_jobs("other", 5, lease_s=60, max_attempts=3) == []
    time.sleep(0.05)
    [again] = store.jobs.claim_jobs("other", 5, lease_s=0.01, max_attempts=3)
    assert again.id == job.id and again.attempts == 2
    store.jobs.finish_job(again, VerifyResult("yamnet", ["glass_break"], {"glass_break": 0.9}, True))
    assert store.queries.verification_counts() == {"done": 1}


def test_a_failing_job_is_retried_then_marked_failed(store):
    _events(store, 1)
    for attempt in range(1, 4):
        [job] = store.jobs.claim_jobs("w", 5, lease_s=60, max_attempts=3)
        assert job.attempts == attempt
        store.jobs.fail_job(job, "boom", max_attempts=3)
    assert store.jobs.claim_jobs("w", 5, lease_s=60, max_attempts=3) == []
    assert store.queries.verification_counts() == {"failed": 1}


def test_a_job_without_a_clip_is_skipped_not_failed(store, tmp_path):
    from cloud_svc.clipstore import FileClipStore

    _events(store, 1)

    class Never:
        KEY = "never"

        def verify(self, *a):
            raise AssertionError("no clip: the verifier must not be called")

    w = VerifyWorker(store.jobs, FileClipStore(tmp_path), Never(), VerifyConfig(batch=5))
    w.step()
    assert store.queries.verification_counts() == {"skipped": 1}


def test_a_verdict_from_a_claim_that_ran_out_is_dropped_and_the_new_claims_counts(store):
    """A slow worker's lease runs out and another worker claims the job again: the slow one's verdict (or its
    failure) must not land on the job the other one holds, so each job gets exactly one verdict."""
    _events(store, 1)
    [slow] = store.jobs.claim_jobs("slow", 5, lease_s=60, max_attempts=3)
    time.sleep(0.05)
    [fast] = store.jobs.claim_jobs("fast", 5, lease_s=0.01, max_attempts=3)
    assert fast.id == slow.id and (slow.attempts, fast.attempts) == (1, 2)
    assert store.jobs.fail_job(slow, "timed out", max_attempts=3) is False
    assert store.jobs.finish_job(slow, VerifyResult("yamnet", ["scream"], {"scream": 0.1}, False)) is False
    assert store.jobs.finish_job(fast, VerifyResult("yamnet", ["glass_break"], {"glass_break": 0.9}, True)) is True
    assert store.jobs.finish_job(fast, VerifyResult("yamnet", [], {}, False)) is False  # once finished, done
    v = verifications
    with store.engine.connect() as c:
        row = c.execute(sa.select(v.c.status, v.c.agree, v.c.labels, v.c.claimed_by, v.c.attempts)).one()
    assert tuple(row) == ("done", True, ["glass_break"], "fast", 2)


def test_claims_of_the_same_jobs_by_many_workers_each_get_a_job_once(store):
    """Workers claim and finish in a loop until nothing is left: every job is handed out once and finished
    once (counted by the verdicts that were stored), none is left behind."""
    _events(store, 80)
    handed: list[int] = []
    stored: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def worker(name):
        barrier.wait()
        while True:
            jobs = store.jobs.claim_jobs(name, 2, lease_s=60, max_attempts=3)
            if not jobs:
                break
            for j in jobs:
                ok = store.jobs.finish_job(j, VerifyResult("fake", [j.label], {j.label: 0.9}, True))
                with lock:
                    handed.append(j.id)
                    if ok:
                        stored.append(j.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(handed) == len(set(handed)) == 80
    assert sorted(stored) == sorted(handed)
    assert store.queries.verification_counts() == {"done": 80}
