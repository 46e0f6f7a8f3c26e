"""Initial schema: devices, events (+ their ends and top classes), clips, verifications, alerts, dead letters,
cursors.

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""
from typing import TypedDict

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class MySQLTableOptions(TypedDict):  # typed keywords for create_table (a dict[str, str] would meet its bool ones)
    mysql_engine: str
    mysql_charset: str
    mysql_collate: str


MYSQL: MySQLTableOptions = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=True),
        sa.Column("token_issued_ns", sa.BigInteger, nullable=True),
        sa.Column("revoked_ns", sa.BigInteger, nullable=True),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("acked_seq", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_heartbeat_ns", sa.BigInteger, nullable=True),
        sa.Column("health", sa.JSON, nullable=True),
        sa.Column("lat", sa.Double, nullable=True),
        sa.Column("lon", sa.Double, nullable=True),
        sa.Column("agent", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        sa.UniqueConstraint("token_hash", name="uq_devices_token_hash"),
        **MYSQL,
    )
    op.create_table(
        "events",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("lat", sa.Double, nullable=True),
        sa.Column("lon", sa.Double, nullable=True),
        sa.Column("backend", sa.String(64), nullable=False, server_default=""),
        sa.Column("model_sha256", sa.String(64), nullable=False, server_default=""),
        sa.Column("inference_ms", sa.Float, nullable=True),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("received_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], name="fk_events_device_id_devices"),
        sa.UniqueConstraint("device_id", "seq", name="uq_events_device_id_seq"),
        sa.UniqueConstraint("event_id", "device_id", name="uq_events_event_id_device_id"),
        **MYSQL,
    )
    op.create_index("ix_events_start_ns", "events", ["start_ns"])
    op.create_index("ix_events_label_start_ns", "events", ["label", "start_ns"])
    op.create_table(
        "event_ends",
        sa.Column("event_pk", Id, autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("end_ns", sa.BigInteger, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("embedding_f16", sa.LargeBinary, nullable=True),
        sa.Column("clip_dropped", sa.String(128), nullable=True),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("received_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("event_pk", name="pk_event_ends"),
        sa.ForeignKeyConstraint(["event_pk"], ["events.id"], name="fk_event_ends_event_pk_events",
                                ondelete="CASCADE"),
        **MYSQL,
    )
    op.create_table(
        "top_classes",
        sa.Column("event_pk", Id, autoincrement=False, nullable=False),
        sa.Column("final", sa.Boolean, autoincrement=False, nullable=False),
        sa.Column("classes", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("event_pk", "final", name="pk_top_classes"),
        sa.ForeignKeyConstraint(["event_pk"], ["events.id"], name="fk_top_classes_event_pk_events",
                                ondelete="CASCADE"),
        **MYSQL,
    )
    op.create_table(
        "clips",
        sa.Column("event_pk", Id, autoincrement=False, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("sample_rate", sa.Integer, nullable=False),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("preroll_s", sa.Float, nullable=False),
        sa.Column("uri", sa.String(512), nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("event_pk", name="pk_clips"),
        sa.ForeignKeyConstraint(["event_pk"], ["events.id"], name="fk_clips_event_pk_events", ondelete="CASCADE"),
        **MYSQL,
    )
    op.create_table(
        "verifications",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("event_pk", Id, nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
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
        sa.PrimaryKeyConstraint("id", name="pk_verifications"),
        sa.ForeignKeyConstraint(["event_pk"], ["events.id"], name="fk_verifications_event_pk_events",
                                ondelete="CASCADE"),
        sa.UniqueConstraint("event_pk", name="uq_verifications_event_pk"),
        **MYSQL,
    )
    op.create_index("ix_verifications_status_id", "verifications", ["status", "id"])
    op.create_table(
        "alerts",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("label", sa.String(64), nullable=True),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("device_id", sa.String(128), nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=True),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("end_ns", sa.BigInteger, nullable=False),
        sa.Column("lat", sa.Double, nullable=True),
        sa.Column("lon", sa.Double, nullable=True),
        sa.Column("device_count", sa.Integer, nullable=False, server_default="1"),
        sa.Column("event_ids", sa.JSON, nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], name="fk_alerts_device_id_devices"),
        sa.UniqueConstraint("device_id", "seq", name="uq_alerts_device_id_seq"),
        **MYSQL,
    )
    op.create_index("ix_alerts_start_ns", "alerts", ["start_ns"])
    op.create_table(
        "alert_events",
        sa.Column("alert_id", Id, autoincrement=False, nullable=False),
        sa.Column("event_pk", Id, autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("alert_id", "event_pk", name="pk_alert_events"),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name="fk_alert_events_alert_id_alerts",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["event_pk"], ["events.id"], name="fk_alert_events_event_pk_events",
                                ondelete="CASCADE"),
        **MYSQL,
    )
    op.create_index("ix_alert_events_event_pk", "alert_events", ["event_pk"])
    op.create_table(
        "rejects",
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("field", sa.String(256), nullable=False),
        sa.Column("reason", sa.String(512), nullable=False),
        sa.Column("received_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("device_id", "seq", name="pk_rejects"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], name="fk_rejects_device_id_devices"),
        **MYSQL,
    )
    op.create_table(
        "cursors",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_cursors"),
        **MYSQL,
    )


def downgrade() -> None:
    for table in ("cursors", "rejects", "alert_events", "alerts", "verifications", "clips", "top_classes",
                  "event_ends", "events",
                  "devices"):
        op.drop_table(table)
