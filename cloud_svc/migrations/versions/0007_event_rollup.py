"""The events' rollup (issue 14): counts per label per minute, 5 minutes and hour for the fleet; per device, label
and position per hour, 6 hours and day; per device per hour, 6 hours, day and all time; per label and cell of the
map's grid per hour, 6 hours and day; each with the current reviews' decisions. One follower
(cloud_svc.store.rollup) keeps it, so that the dashboard's aggregates read a bounded number of rows however large
the store grows. The follower fills it from the stored events on its first steps (its cursors start at 0).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_rollup",
        sa.Column("level", sa.SmallInteger, autoincrement=False, nullable=False),
        sa.Column("bucket_ns", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("lat", sa.Double, autoincrement=False, nullable=False),
        sa.Column("lon", sa.Double, autoincrement=False, nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.Column("min_pk", sa.BigInteger, nullable=False),
        sa.Column("lat_sum", sa.Double, nullable=False),
        sa.Column("lon_sum", sa.Double, nullable=False),
        sa.Column("rv_real", sa.BigInteger, nullable=False),
        sa.Column("rv_fa", sa.BigInteger, nullable=False),
        sa.Column("rv_wl", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("level", "bucket_ns", "device_id", "label", "lat", "lon", name="pk_event_rollup"),
        mysql_engine="InnoDB", mysql_charset="utf8mb4", mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table("event_rollup")
    op.execute("DELETE FROM cursors WHERE name LIKE 'rollup%'")
