"""The events' grid cell, for box filters (issue 14): `events.cell`, a virtual column the database computes from
lat and lon (a 0.1-degree grid), and an index (label, cell, start_ns, lat, lon). A ListEvents page with labels, a
time window and a box then reads the entries of the few cells under the box, instead of every event of its labels
in the window (443k index entries for a 7-day window at 10M events).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CELL_SQL = "CAST((lat + 90) * 10 AS SIGNED INTEGER) * 4000 + CAST((lon + 180) * 10 AS SIGNED INTEGER)"


def upgrade() -> None:
    op.add_column("events", sa.Column("cell", sa.Integer, sa.Computed(sa.text(CELL_SQL)), nullable=True))
    op.create_index("ix_events_label_cell_start_ns_lat_lon", "events", ["label", "cell", "start_ns", "lat", "lon"])


def downgrade() -> None:
    op.drop_index("ix_events_label_cell_start_ns_lat_lon", table_name="events")
    op.drop_column("events", "cell")
