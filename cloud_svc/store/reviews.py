"""Reviews: a person's decision on an event (real, false alarm, or the right label), kept with who and when.

Append-only: a changed mind is a new row, and the latest row per event is its review state."""
from __future__ import annotations

import time
from typing import Iterable, Optional, Sequence

import sqlalchemy as sa

from cloud_svc.domain import Decision, ReviewedClip, ReviewView
from cloud_svc.errors import InvalidMessage, NotFound
from cloud_svc.schema import clips, event_ends, events, reviews
from cloud_svc.store.base import Database, chunks

MAX_REVIEWER = 128
MAX_NOTE = 512


def _view(r) -> ReviewView:
    return ReviewView(int(r.id), int(r.event_pk), r.decision, r.label, r.reviewer, r.note, int(r.created_ns))


def latest_review_ids():
    """SELECT max(id) per event: the current review of each reviewed event (a subquery)."""
    return sa.select(sa.func.max(reviews.c.id).label("id")).group_by(reviews.c.event_pk).subquery()


def is_current(r):
    """True for a row of `r` (an alias of reviews) that is its event's current review: no later review of the same
    event exists. The same rows as `r.id IN latest_review_ids()`, but a probe of ix_reviews_event_pk_id per joined
    review instead of grouping every review ever made on each query."""
    later = reviews.alias("later")
    return ~sa.exists().where(later.c.event_pk == r.c.event_pk, later.c.id > r.c.id)


class ReviewStore:
    def __init__(self, db: Database, *, known_labels: Iterable[str] = ()):
        self.db = db
        self.known_labels = frozenset(known_labels)

    def add(self, event_pk: int, decision: str, reviewer: str, *, label: Optional[str] = None,
            note: Optional[str] = None) -> ReviewView:
        """Store a decision on event `event_pk`. A wrong label needs the right one, which the taxonomy must name."""
        try:
            d = Decision(decision)
        except ValueError:
            raise InvalidMessage("decision", f"{decision!r} is not one of {[x.value for x in Decision]}") from None
        reviewer = (reviewer or "").strip()
        if not reviewer:
            raise InvalidMessage("reviewer", "who reviewed is required")
        if len(reviewer) > MAX_REVIEWER:
            raise InvalidMessage("reviewer", f"longer than {MAX_REVIEWER} characters")
        if note is not None and len(note) > MAX_NOTE:
            raise InvalidMessage("note", f"longer than {MAX_NOTE} characters")
        if d is Decision.WRONG_LABEL:
            if not label:
                raise InvalidMessage("label", "'wrong label' needs the right label")
            if self.known_labels and label not in self.known_labels:
                raise InvalidMessage("label", f"{label!r} is not a label of the taxonomy: {sorted(self.known_labels)}")
        else:
            label = None
        now = time.time_ns()
        with self.db.write() as conn:
            if conn.scalar(sa.select(events.c.id).where(events.c.id == event_pk)) is None:
                raise NotFound(f"no event {event_pk}")
            res = conn.execute(reviews.insert().values(event_pk=event_pk, decision=d.value, label=label,
                                                       reviewer=reviewer, note=note, created_ns=now))
            pk = res.inserted_primary_key[0] if res.inserted_primary_key else 0
        return ReviewView(int(pk), event_pk, d.value, label, reviewer, note, now)

    def history(self, event_pk: int) -> list[ReviewView]:
        """Every review of one event, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(reviews).where(reviews.c.event_pk == event_pk).order_by(reviews.c.id))
            return [_view(r) for r in rows]

    def latest(self, event_pks: Sequence[int]) -> dict[int, ReviewView]:
        """The current review of each of these events that has one."""
        out: dict[int, ReviewView] = {}
        with self.db.read() as conn:
            for part in chunks(list(event_pks)):
                ids = (sa.select(sa.func.max(reviews.c.id)).where(reviews.c.event_pk.in_(part))
                       .group_by(reviews.c.event_pk))
                for r in conn.execute(sa.select(reviews).where(reviews.c.id.in_(ids))):
                    out[int(r.event_pk)] = _view(r)
        return out

    def reviewed_clips(self, since_ns: int = 0, until_ns: Optional[int] = None) -> list[ReviewedClip]:
        """Events whose current review was made in [since_ns, until_ns) and that have a stored clip, oldest
        review first: what `export-labels` writes."""
        cur = latest_review_ids()
        q = (sa.select(reviews, events.c.device_id, events.c.event_id, events.c.label.label("edge_label"),
                       events.c.start_ns, event_ends.c.end_ns, clips.c.sha256.label("clip_sha256"),
                       clips.c.format.label("clip_format"), clips.c.sample_rate.label("clip_rate"),
                       clips.c.preroll_s.label("clip_preroll_s"))
             .select_from(reviews.join(cur, cur.c.id == reviews.c.id)
                          .join(events, events.c.id == reviews.c.event_pk)
                          .join(clips, clips.c.event_pk == events.c.id)
                          .outerjoin(event_ends, event_ends.c.event_pk == events.c.id))
             .where(reviews.c.created_ns >= since_ns).order_by(reviews.c.created_ns, reviews.c.id))
        if until_ns is not None:
            q = q.where(reviews.c.created_ns < until_ns)
        with self.db.read() as conn:
            return [ReviewedClip(int(r.event_pk), r.device_id, r.event_id, r.edge_label, _view(r), r.clip_sha256,
                                 r.clip_format, int(r.clip_rate), float(r.clip_preroll_s), int(r.start_ns),
                                 None if r.end_ns is None else int(r.end_ns))
                    for r in conn.execute(q)]
