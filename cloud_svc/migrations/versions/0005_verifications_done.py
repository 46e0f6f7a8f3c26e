"""An index on verifications.done_ns: the notification bridge follows finished verifications by the time they
finished (the "verified" note of an event).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_verifications_done_ns", "verifications", ["done_ns"])


def downgrade() -> None:
    op.drop_index("ix_verifications_done_ns", table_name="verifications")
