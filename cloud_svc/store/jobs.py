"""The verification job queue: workers claim jobs under a lease, then finish or fail them."""
from __future__ import annotations

import time
import uuid

import sqlalchemy as sa

from cloud_svc.domain import ClipView, VerifyJob, VerifyResult
from cloud_svc.schema import clips, events, verifications
from cloud_svc.store.base import Database


class JobStore:
    """Claims are safe between workers and processes; a claim whose lease ran out is claimed again."""

    def __init__(self, db: Database):
        self.db = db

    def claim_jobs(self, worker: str, n: int, lease_s: float, max_attempts: int) -> list[VerifyJob]:
        """Claim up to n jobs: FOR UPDATE SKIP LOCKED on MySQL; on SQLite the IMMEDIATE transaction serializes
        claimers, which is the same guarantee. Jobs whose claim expired (a worker died) are claimed again."""
        v = verifications
        now = time.time_ns()
        stale = now - int(lease_s * 1e9)
        token = uuid.uuid4().hex
        with self.db.write() as conn:
            conn.execute(v.update().where(v.c.status == "running", v.c.claimed_ns < stale,
                                          v.c.attempts >= max_attempts).values(
                status="failed", error="gave up: claimed too often without finishing", done_ns=now))
            q = (sa.select(v.c.id).where(sa.or_(v.c.status == "pending",
                                                sa.and_(v.c.status == "running", v.c.claimed_ns < stale)))
                 .order_by(v.c.id).limit(n).with_for_update(skip_locked=True))
            ids = conn.scalars(q).all()
            if not ids:
                return []
            conn.execute(v.update().where(v.c.id.in_(ids)).values(
                status="running", claim_token=token, claimed_by=worker[:128], claimed_ns=now,
                attempts=v.c.attempts + 1))
            rows = conn.execute(
                sa.select(v.c.id, v.c.event_pk, v.c.reason, v.c.attempts, events.c.device_id, events.c.event_id,
                          events.c.label, clips.c.format, clips.c.sample_rate, clips.c.sha256, clips.c.size,
                          clips.c.uri, clips.c.start_ns, clips.c.preroll_s)
                .join(events, events.c.id == v.c.event_pk).outerjoin(clips, clips.c.event_pk == v.c.event_pk)
                .where(v.c.claim_token == token).order_by(v.c.id)).all()
        return [VerifyJob(r.id, r.event_pk, r.device_id, r.event_id, r.label, r.reason, r.attempts,
                          ClipView(r.format, r.sample_rate, r.sha256, r.size, r.uri, r.start_ns, r.preroll_s)
                          if r.sha256 else None) for r in rows]

    def finish_job(self, job: VerifyJob, result: VerifyResult) -> None:
        v = verifications
        status = "done" if result.agree is not None else "skipped"
        with self.db.write() as conn:
            conn.execute(v.update().where(v.c.id == job.id, v.c.status == "running").values(
                status=status, verifier=result.verifier, labels=result.labels,
                scores={k: round(float(s), 5) for k, s in result.scores.items()}, agree=result.agree,
                error=(result.note or None) and result.note[:512], done_ns=time.time_ns(), claim_token=None))

    def fail_job(self, job: VerifyJob, error: str, max_attempts: int) -> None:
        v = verifications
        status = "failed" if job.attempts >= max_attempts else "pending"
        with self.db.write() as conn:
            conn.execute(v.update().where(v.c.id == job.id, v.c.status == "running").values(
                status=status, error=error[:512], claim_token=None,
                done_ns=time.time_ns() if status == "failed" else None))
