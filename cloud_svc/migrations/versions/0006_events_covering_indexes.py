"""Covering indexes on events for the reads that must stay fast as the store grows (issue 14).

- (label, start_ns, lat, lon) replaces (label, start_ns): ListEvents' label + time + bounding box filter and the
  fleet correlator's neighbour look-up test the box on the index entries (index condition pushdown) and read only
  the rows inside it;
- (start_ns, label, device_id, lat, lon) replaces (start_ns): the dashboard's aggregates over a time window
  (timeline, map cells, counts, per device) read the index alone, never the rows.

The new indexes are built before the old ones go, so the reads keep an index throughout.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_label_start_ns_lat_lon", "events", ["label", "start_ns", "lat", "lon"])
    op.create_index("ix_events_start_ns_label_device_id_lat_lon", "events",
                    ["start_ns", "label", "device_id", "lat", "lon"])
    op.drop_index("ix_events_label_start_ns", table_name="events")
    op.drop_index("ix_events_start_ns", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_start_ns", "events", ["start_ns"])
    op.create_index("ix_events_label_start_ns", "events", ["label", "start_ns"])
    op.drop_index("ix_events_start_ns_label_device_id_lat_lon", table_name="events")
    op.drop_index("ix_events_label_start_ns_lat_lon", table_name="events")
