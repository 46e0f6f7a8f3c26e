"""The SQL schema as SQLAlchemy Core tables; Alembic migrations (cloud_svc/migrations) create exactly this."""
from __future__ import annotations

from typing import TypedDict

import sqlalchemy as sa

metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

# Autoincrement ids: BIGINT on MySQL, INTEGER (the rowid alias) on SQLite.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class MySQLTableOptions(TypedDict):
    """The dialect keywords every table takes (a TypedDict, so that `**MYSQL` type-checks against Table's
    keyword parameters: a plain dict[str, str] would also be matched against its bool ones)."""
    mysql_engine: str
    mysql_charset: str
    mysql_collate: str


MYSQL: MySQLTableOptions = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

CELLS_PER_DEG = 10          # events.cell: a 0.1-degree grid, CELL_ROW cells to a row of latitude
CELL_ROW = 4000
CELL_SQL = sa.text(f"CAST((lat + 90) * {CELLS_PER_DEG} AS SIGNED INTEGER) * {CELL_ROW} "
                   f"+ CAST((lon + 180) * {CELLS_PER_DEG} AS SIGNED INTEGER)")

devices = sa.Table(
    "devices", metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=True, unique=True),  # sha256 hex of the bearer token
    sa.Column("token_issued_ns", sa.BigInteger, nullable=True),
    sa.Column("revoked_ns", sa.BigInteger, nullable=True),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("acked_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_heartbeat_ns", sa.BigInteger, nullable=True),
    sa.Column("health", sa.JSON, nullable=True),
    sa.Column("lat", sa.Double, nullable=True),
    sa.Column("lon", sa.Double, nullable=True),
    sa.Column("agent", sa.String(128), nullable=True),
    **MYSQL,
)

events = sa.Table(
    "events", metadata,  # one row per event, created by its start record (or by its end when the start was dropped)
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("device_id", sa.String(128), sa.ForeignKey("devices.id"), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),          # the outbox seq of the record that created it
    sa.Column("event_id", sa.String(32), nullable=False),
    sa.Column("label", sa.String(64), nullable=False),
    sa.Column("start_ns", sa.BigInteger, nullable=False),
    sa.Column("score", sa.Float, nullable=False),             # at the start (the final one is in event_ends)
    sa.Column("lat", sa.Double, nullable=True),
    sa.Column("lon", sa.Double, nullable=True),
    sa.Column("backend", sa.String(64), nullable=False, server_default=""),
    sa.Column("model_sha256", sa.String(64), nullable=False, server_default=""),
    sa.Column("inference_ms", sa.Float, nullable=True),
    sa.Column("created_ns", sa.BigInteger, nullable=False),   # when the edge put the record in its outbox
    sa.Column("received_ns", sa.BigInteger, nullable=False),  # when it was committed here
    sa.UniqueConstraint("device_id", "seq"),
    sa.UniqueConstraint("event_id", "device_id"),  # event_id first: ingest looks events up by it
    # Covering indexes (migration 0006): time-window aggregates read the first alone; label + time + box filters
    # (ListEvents, the fleet correlator's look-up) test the box on the second's entries before reading rows.
    sa.Index(None, "start_ns", "label", "device_id", "lat", "lon"),
    sa.Index(None, "label", "start_ns", "lat", "lon"),
    # The position's cell on a grid of 1/CELLS_PER_DEG degrees (migration 0008), computed by the database: a label,
    # time and box filter (ListEvents) reads the few cells under its box instead of every match of its labels and
    # time. Rounded on MySQL (CAST AS SIGNED), truncated on SQLite; the reads (cell_ranges) allow for both.
    sa.Column("cell", sa.Integer, sa.Computed(CELL_SQL), nullable=True),
    sa.Index(None, "label", "cell", "start_ns", "lat", "lon"),
    **MYSQL,
)

# Written once, never updated: ingest only ever inserts, which keeps it fast on InnoDB.
event_ends = sa.Table(
    "event_ends", metadata,  # how an event ended, from its event_end record
    sa.Column("event_pk", Id, sa.ForeignKey("events.id", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),          # the outbox seq of the event_end record
    sa.Column("end_ns", sa.BigInteger, nullable=False),
    sa.Column("score", sa.Float, nullable=False),             # the event's final score
    sa.Column("embedding_f16", sa.LargeBinary, nullable=True),  # YAMNet's mean embedding, 1024 x float16 LE
    sa.Column("clip_dropped", sa.String(128), nullable=True),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("received_ns", sa.BigInteger, nullable=False),
    sa.Index(None, "received_ns"),  # the notification bridge reads new ends by it (migration 0004)
    **MYSQL,
)

top_classes = sa.Table(
    "top_classes", metadata,  # the top AudioSet classes, as [[name, score], ...] best first
    sa.Column("event_pk", Id, sa.ForeignKey("events.id", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Column("final", sa.Boolean, primary_key=True, autoincrement=False),  # False: at the start; True: at the end
    sa.Column("classes", sa.Text, nullable=False),
    **MYSQL,
)

clips = sa.Table(
    "clips", metadata,
    sa.Column("event_pk", Id, sa.ForeignKey("events.id", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("sample_rate", sa.Integer, nullable=False),
    sa.Column("start_ns", sa.BigInteger, nullable=False),
    sa.Column("preroll_s", sa.Float, nullable=False),
    sa.Column("uri", sa.String(512), nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    **MYSQL,
)

verifications = sa.Table(
    "verifications", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("event_pk", Id, sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False, unique=True),
    sa.Column("reason", sa.String(16), nullable=False),       # distress | sample
    sa.Column("status", sa.String(16), nullable=False),       # pending | running | done | failed | skipped
    sa.Column("claim_token", sa.String(32), nullable=True),
    sa.Column("claimed_by", sa.String(128), nullable=True),
    sa.Column("claimed_ns", sa.BigInteger, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("verifier", sa.String(32), nullable=True),
    sa.Column("labels", sa.JSON, nullable=True),
    sa.Column("scores", sa.JSON, nullable=True),
    sa.Column("agree", sa.Boolean, nullable=True),
    sa.Column("error", sa.String(512), nullable=True),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("done_ns", sa.BigInteger, nullable=True),
    sa.Index(None, "status", "id"),
    sa.Index(None, "done_ns"),  # the notification bridge reads finished verifications by it (migration 0005)
    **MYSQL,
)

alerts = sa.Table(
    "alerts", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),         # device | fleet
    sa.Column("rule", sa.String(64), nullable=False),         # the edge rule, or "fleet"
    sa.Column("label", sa.String(64), nullable=True),         # the shared label of a fleet alert
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("device_id", sa.String(128), sa.ForeignKey("devices.id"), nullable=True),
    sa.Column("seq", sa.BigInteger, nullable=True),           # the outbox seq of a device alert
    sa.Column("start_ns", sa.BigInteger, nullable=False),
    sa.Column("end_ns", sa.BigInteger, nullable=False),
    sa.Column("lat", sa.Double, nullable=True),
    sa.Column("lon", sa.Double, nullable=True),
    sa.Column("device_count", sa.Integer, nullable=False, server_default="1"),
    sa.Column("event_ids", sa.JSON, nullable=False),          # the edge's event uuids, as it reported them
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("device_id", "seq"),
    sa.Index(None, "start_ns"),
    **MYSQL,
)

alert_events = sa.Table(
    "alert_events", metadata,
    sa.Column("alert_id", Id, sa.ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Column("event_pk", Id, sa.ForeignKey("events.id", ondelete="CASCADE"), primary_key=True,
              autoincrement=False),
    sa.Index(None, "event_pk"),
    **MYSQL,
)

rejects = sa.Table(
    "rejects", metadata,  # dead letters: invalid records, kept so their seqs count as settled
    sa.Column("device_id", sa.String(128), sa.ForeignKey("devices.id"), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("field", sa.String(256), nullable=False),
    sa.Column("reason", sa.String(512), nullable=False),
    sa.Column("received_ns", sa.BigInteger, nullable=False),
    **MYSQL,
)

cursors = sa.Table(
    "cursors", metadata,  # progress and leases of the workers that read every row once (fleet correlator, bridge)
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
    **MYSQL,
)

event_rollup = sa.Table(
    "event_rollup", metadata,  # counts of the events and their current reviews, kept by one follower (store/rollup.py)
    # A row of a level (cloud_svc.store.rollup.LEVELS: its time step and the keys it keeps) counts the events, and
    # their current reviews, whose start falls in [bucket_ns, bucket_ns + step) and whose device, label and position
    # are the row's; '' (device, label) and NO_POSITION (lat, lon) stand for "any". All time: bucket_ns 0.
    sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("bucket_ns", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("device_id", sa.String(128), primary_key=True),
    sa.Column("label", sa.String(64), primary_key=True),
    sa.Column("lat", sa.Double, primary_key=True, autoincrement=False),
    sa.Column("lon", sa.Double, primary_key=True, autoincrement=False),
    sa.Column("n", sa.BigInteger, nullable=False),            # events
    sa.Column("min_pk", sa.BigInteger, nullable=False),       # the smallest event id among them (a map cell's link)
    sa.Column("lat_sum", sa.Double, nullable=False),          # the sums of their lat and lon (the map grid's levels)
    sa.Column("lon_sum", sa.Double, nullable=False),
    sa.Column("rv_real", sa.BigInteger, nullable=False),      # their current reviews, by decision
    sa.Column("rv_fa", sa.BigInteger, nullable=False),
    sa.Column("rv_wl", sa.BigInteger, nullable=False),
    **MYSQL,
)

reviews = sa.Table(
    "reviews", metadata,  # a person's decision on an event; append-only, the latest per event is the current one
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("event_pk", Id, sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),     # real | false_alarm | wrong_label
    sa.Column("label", sa.String(64), nullable=True),         # the right label, for wrong_label
    sa.Column("reviewer", sa.String(128), nullable=False),
    sa.Column("note", sa.String(512), nullable=True),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Index(None, "event_pk", "id"),
    sa.Index(None, "created_ns"),
    **MYSQL,
)

device_health = sa.Table(
    "device_health", metadata,  # heartbeat samples, at most one per device per health_sample_s: the history
    sa.Column("device_id", sa.String(128), sa.ForeignKey("devices.id"), primary_key=True),
    sa.Column("ts_ns", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("figures", sa.JSON, nullable=False),
    sa.Column("outbox_depth", sa.BigInteger, nullable=False, server_default="0"),
    **MYSQL,
)

device_configs = sa.Table(
    "device_configs", metadata,  # detector thresholds pushed to one device (ConfigPush), set from the dashboard
    sa.Column("device_id", sa.String(128), sa.ForeignKey("devices.id"), primary_key=True),
    sa.Column("thresholds", sa.JSON, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("set_by", sa.String(128), nullable=False),
    sa.Column("set_ns", sa.BigInteger, nullable=False),
    **MYSQL,
)

users = sa.Table(
    "users", metadata,  # Query API credentials (people, dashboards, scripts); never a device
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),         # reader | admin
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # sha256 hex of the bearer token
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("token_issued_ns", sa.BigInteger, nullable=False),
    sa.Column("revoked_ns", sa.BigInteger, nullable=True),
    **MYSQL,
)
