"""The cloud's storage, the only code that opens database connections: one engine, split by concern.

Callers use the part they need: `store.devices` (registry, tokens), `store.ingest` (the committer's writes),
`store.queries` (read models), `store.reviews` (people's decisions on events), `store.users` (Query
credentials), `store.jobs` (verification claims), `store.fleet` (the correlator's storage, kept beside its
algorithm in cloud_svc.fleet) and `store.outbound` (what the notification bridge reads, and its cursors). The
schema belongs to cloud_svc/migrations.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cloud_svc.db import make_engine
from cloud_svc.db import upgrade as upgrade_schema
from cloud_svc.store.base import Database
from cloud_svc.store.devices import DeviceStore
from cloud_svc.store.ingest import IngestStore
from cloud_svc.store.jobs import JobStore
from cloud_svc.store.outbound import OutboundStore
from cloud_svc.store.queries import QueryStore
from cloud_svc.store.reviews import ReviewStore
from cloud_svc.store.rollup import RollupStore
from cloud_svc.store.users import UserStore

if TYPE_CHECKING:  # imported where the Store is built: the fleet's storage builds on this package (its leases)
    from cloud_svc.fleet.store import FleetStore

__all__ = ["DeviceStore", "IngestStore", "JobStore", "OutboundStore", "QueryStore", "ReviewStore", "Store",
           "UserStore"]


def _taxonomy_labels() -> list[str]:
    from edgert import labels

    return list(labels.scoring(calibrated=False).labels)


class Store:
    """Owns one engine and every part of the store over it. Thread-safe (a connection per call)."""

    def __init__(self, engine: Engine, *, distress_labels: Iterable[str] = (), sample_rate: float = 0.0,
                 stale_after_s: float = 120.0, clip_uri: Optional[Callable[[str], str]] = None,
                 known_labels: Optional[Iterable[str]] = None, health_sample_s: float = 60.0):
        from cloud_svc.fleet.store import FleetStore

        self.engine = engine
        self.db = Database(engine)
        self.sqlite = self.db.sqlite
        self.devices = DeviceStore(self.db)
        self.ingest = IngestStore(self.db, distress_labels=distress_labels, sample_rate=sample_rate,
                                  clip_uri=clip_uri, health_sample_s=health_sample_s)
        self.queries = QueryStore(self.db, stale_after_s=stale_after_s)
        self.reviews = ReviewStore(self.db, known_labels=_taxonomy_labels() if known_labels is None else known_labels)
        self.jobs = JobStore(self.db)
        self.users = UserStore(self.db)
        self.fleet: FleetStore = FleetStore(self.db)
        self.outbound = OutboundStore(self.db)
        self.rollup = RollupStore(self.db)

    @classmethod
    def open(cls, url: str, **kw) -> "Store":
        return cls(make_engine(url), **kw)

    def close(self) -> None:
        self.engine.dispose()

    def upgrade(self) -> str | None:
        return upgrade_schema(self.engine)

    def ping(self) -> None:
        with self.db.read() as conn:
            conn.execute(sa.text("SELECT 1"))
