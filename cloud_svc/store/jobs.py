"""The verification job queue: workers claim jobs under a lease, then finish or fail them."""
from __future__ import annotations

import time
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cloud_svc.domain import ClipView, VerifyJob, VerifyResult
from cloud_svc.errors import WriteConflict
from cloud_svc.schema import clips, events, verifications
from cloud_svc.store.base import Database


class JobStore:
    """Each job is verified once: a claim is one transaction that marks only rows that are still claimable, and
    the claim's attempt number fences it afterwards. A claim whose lease ran out is claimed again."""

    def __init__(self, db: Database):
        self.db = db

    def claim_jobs(self, worker: str, n: int, lease_s: float, max_attempts: int) -> list[VerifyJob]:
        """Claim up to n jobs (the oldest claimable first) and return them.

        One transaction locks the candidates (FOR UPDATE SKIP LOCKED on MySQL, so claimers on one server pass
        each other; on SQLite the IMMEDIATE transaction serializes claimers), marks those that are still pending
        (or whose claim expired) with a fresh claim token and one more attempt, and returns the rows that carry
        the token. On a Galera cluster row locks are local to a node, so claimers on two nodes may pick the same
        rows: only one of the two claims can commit, the other fails certification (WriteConflict) and is run
        again here on what is left, so it claims other jobs, or nothing when it keeps losing."""
        try:
            return self.db.transact(lambda conn: self._claim(conn, worker, n, lease_s, max_attempts))
        except WriteConflict:
            return []  # the other claimers have taken these jobs for now; the worker polls again

    @staticmethod
    def _claim(conn: Connection, worker: str, n: int, lease_s: float, max_attempts: int) -> list[VerifyJob]:
        v = verifications
        now = time.time_ns()
        stale = now - int(lease_s * 1e9)
        token = uuid.uuid4().hex
        conn.execute(v.update().where(v.c.status == "running", v.c.claimed_ns < stale,
                                      v.c.attempts >= max_attempts).values(
            status="failed", error="gave up: claimed too often without finishing", done_ns=now))
        claimable = sa.or_(v.c.status == "pending", sa.and_(v.c.status == "running", v.c.claimed_ns < stale))
        ids = conn.scalars(sa.select(v.c.id).where(claimable).order_by(v.c.id).limit(n)
                           .with_for_update(skip_locked=True)).all()
        if not ids:
            return []
        # `claimable` again: the rows are claimed only if no one else has claimed them since they were read
        conn.execute(v.update().where(v.c.id.in_(ids), claimable).values(
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

    @staticmethod
    def _held(job: VerifyJob):
        """The job's row while the claim that returned `job` holds it: every claim adds an attempt, so a claim
        that expired and was taken again (or was given up) no longer matches."""
        v = verifications
        return sa.and_(v.c.id == job.id, v.c.status == "running", v.c.attempts == job.attempts)

    def finish_job(self, job: VerifyJob, result: VerifyResult) -> bool:
        """Store the verdict; True when stored, False when this claim no longer holds the job (another
        claim's verdict counts, so each job gets exactly one)."""
        v = verifications
        values = dict(status="done" if result.agree is not None else "skipped", verifier=result.verifier,
                      labels=result.labels, scores={k: round(float(s), 5) for k, s in result.scores.items()},
                      agree=result.agree, error=(result.note or None) and result.note[:512],
                      done_ns=time.time_ns(), claim_token=None)
        return self.db.transact(lambda conn: conn.execute(v.update().where(self._held(job)).values(**values))
                                .rowcount == 1)

    def fail_job(self, job: VerifyJob, error: str, max_attempts: int) -> bool:
        """Put the job back (or mark it failed after max_attempts); False when this claim no longer holds it."""
        v = verifications
        status = "failed" if job.attempts >= max_attempts else "pending"
        values = dict(status=status, error=error[:512], claim_token=None,
                      done_ns=time.time_ns() if status == "failed" else None)
        return self.db.transact(lambda conn: conn.execute(v.update().where(self._held(job)).values(**values))
                                .rowcount == 1)
