"""Reviews of events, the devices' health history, and per-device pushed thresholds (the dashboard's tables).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""
from typing import TypedDict

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class MySQLTableOptions(TypedDict):
    mysql_engine: str
    mysql_charset: str
    mysql_collate: str


MYSQL: MySQLTableOptions = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("event_pk", Id, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("label", sa.String(64), nullable=True),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("note", sa.String(512), nullable=True),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
        sa.ForeignKeyConstraint(["event_pk"], ["events.id"], name="fk_reviews_event_pk_events", ondelete="CASCADE"),
        **MYSQL,
    )
    op.create_index("ix_reviews_event_pk_id", "reviews", ["event_pk", "id"])
    op.create_index("ix_reviews_created_ns", "reviews", ["created_ns"])
    op.create_table(
        "device_health",
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("ts_ns", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("figures", sa.JSON, nullable=False),
        sa.Column("outbox_depth", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("device_id", "ts_ns", name="pk_device_health"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], name="fk_device_health_device_id_devices"),
        **MYSQL,
    )
    op.create_table(
        "device_configs",
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("thresholds", sa.JSON, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("set_by", sa.String(128), nullable=False),
        sa.Column("set_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("device_id", name="pk_device_configs"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], name="fk_device_configs_device_id_devices"),
        **MYSQL,
    )


def downgrade() -> None:
    for table in ("device_configs", "device_health", "reviews"):
        op.drop_table(table)
