"""The system tests' one verdict: after a failure, every record a device's outbox handed out is stored exactly
once (0 lost, 0 duplicate rows), and every event the cloud had to verify is verified exactly once."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from edgert import labels

VERIFY_WAIT_S = 180.0


@dataclass
class Verdict:
    records: int          # outbox records handed out, over all devices
    events: int           # event rows
    verified: int         # distress events with their one verification (done; skipped when they had no clip)
    lost: int
    duplicates: int
    unended: int = 0      # events whose edge died before their end (no end record was ever made)


def outbox_seqs(spool_db: Path) -> tuple[int, dict]:
    """(last seq the outbox handed out, its stats); the outbox must be drained and have dropped nothing."""
    from edge_rt.outbox import Outbox

    ob = Outbox(spool_db)
    try:
        st = ob.stats()
    finally:
        ob.close()
    return int(st["next_seq"]) - 1, st


def check_exactly_once(url: str, outboxes: dict[str, Path]) -> Verdict:
    """`outboxes`: device id -> its outbox.db. Waits (bounded) for pending verifications, then asserts."""
    engine = sa.create_engine(url)
    distress = labels.distress_labels()
    try:
        deadline = time.monotonic() + VERIFY_WAIT_S
        while True:
            with engine.connect() as c:
                pending = c.scalar(sa.text("SELECT COUNT(*) FROM verifications WHERE status IN ('pending', "
                                           "'running')"))
            if not pending:
                break
            assert time.monotonic() < deadline, f"{pending} verifications still pending after {VERIFY_WAIT_S:g} s"
            time.sleep(0.5)
        total = lost = dups = 0
        with engine.connect() as c:
            for device, path in outboxes.items():
                last, st = outbox_seqs(path)
                assert st["depth"] == 0 and st["acked"] == last, f"{device}: outbox not drained: {st}"
                assert st["dropped"] == 0, f"{device}: the outbox dropped records: {st}"
                seen: list[int] = []
                for q in ("SELECT seq FROM events WHERE device_id = :d",
                          "SELECT e.seq FROM event_ends e JOIN events v ON v.id = e.event_pk WHERE v.device_id = :d",
                          "SELECT seq FROM alerts WHERE device_id = :d AND kind = 'device'",
                          "SELECT seq FROM rejects WHERE device_id = :d"):
                    seen += [int(s) for s in c.execute(sa.text(q), {"d": device}).scalars()]
                rejected = c.execute(sa.text("SELECT seq, field, reason FROM rejects WHERE device_id = :d"),
                                     {"d": device}).all()
                assert not rejected, f"{device}: valid records were dead-lettered: {rejected[:5]}"
                want = set(range(1, last + 1))
                lost += len(want - set(seen))
                dups += len(seen) - len(set(seen))
                total += last
                acked = c.scalar(sa.text("SELECT acked_seq FROM devices WHERE id = :d"), {"d": device})
                assert int(acked) == last, f"{device}: the cloud's watermark {acked} is not the outbox's {last}"
            rows = c.execute(sa.text("SELECT device_id, seq, event_id, label, id FROM events")).all()
            dups += len(rows) - len({(r.device_id, r.event_id) for r in rows})
            ended = {int(pk) for pk in c.execute(sa.text("SELECT event_pk FROM event_ends")).scalars()}
            # an event is verified once it has ended (its end brings the clip); one whose edge died before its
            # end has no end record at all, in the outbox or here, and nothing to verify
            must = [r.id for r in rows if r.label in distress and r.id in ended]
            unended = sum(1 for r in rows if r.id not in ended)
            ver = {int(r.event_pk): r for r in c.execute(sa.text(
                "SELECT event_pk, status, agree FROM verifications"))}
            with_clip = {int(pk) for pk in c.execute(sa.text("SELECT event_pk FROM clips")).scalars()}
        assert lost == 0, f"{lost} records lost"
        assert dups == 0, f"{dups} duplicate rows"
        # one verdict row per event (a unique key); with a clip it must be a verdict, without one a 'skipped'
        unverified = [pk for pk in must if pk not in ver
                      or ver[pk].status != ("done" if pk in with_clip else "skipped")]
        assert not unverified, f"{len(unverified)} distress events not verified: {[ver.get(p) for p in unverified][:5]}"
        return Verdict(total, len(rows), len(must), lost, dups, unended)
    finally:
        engine.dispose()
