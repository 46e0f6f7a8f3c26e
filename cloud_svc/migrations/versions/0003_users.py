"""Query API users: reader and admin bearer tokens, stored hashed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""
from typing import TypedDict

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


class MySQLTableOptions(TypedDict):
    mysql_engine: str
    mysql_charset: str
    mysql_collate: str


MYSQL: MySQLTableOptions = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("token_issued_ns", sa.BigInteger, nullable=False),
        sa.Column("revoked_ns", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_users"),
        sa.UniqueConstraint("token_hash", name="uq_users_token_hash"),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("users")
