"""An index on event_ends.received_ns: the notification bridge follows stored ends by the time they were stored.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_event_ends_received_ns", "event_ends", ["received_ns"])


def downgrade() -> None:
    op.drop_index("ix_event_ends_received_ns", table_name="event_ends")
