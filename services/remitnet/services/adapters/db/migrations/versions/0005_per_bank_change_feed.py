"""per-bank change feed

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 21:20:00

The status stream tails `events`, numbered per bank by `feed_heads.seq`
(services/remitnet/services/adapters/db/feed.py) instead of polling transfers and cycles with a
look-back window. Every existing bank gets a head at seq 0; history before
the migration is not replayed into the feed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feed_heads",
        sa.Column("bank_code", sa.String(length=16), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("home_region", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("bank_code", name=op.f("pk_feed_heads")),
    )
    op.create_table(
        "events",
        sa.Column("bank_code", sa.String(length=16), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("transfer_id", sa.Uuid(as_uuid=False), nullable=True),
        sa.Column("cycle_id", sa.String(length=24), nullable=True),
        sa.Column("other_cycle_id", sa.String(length=24), nullable=True),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("home_region", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("bank_code", "seq", name=op.f("pk_events")),
    )
    op.create_index(op.f("ix_events_bank_code_at"), "events", ["bank_code", "at"], unique=False)
    # A cycle's cross-currency source legs alone, for LEGS events.
    op.create_index(
        "ix_transfers_fx_cycle_id",
        "transfers",
        ["cycle_id"],
        postgresql_where=sa.text("creditor_cycle_id IS NOT NULL"),
        sqlite_where=sa.text("creditor_cycle_id IS NOT NULL"),
    )
    # Banks already onboarded start their feed now: the audit holds the feed
    # to account for what happens from then on.
    op.execute(
        "INSERT INTO feed_heads (bank_code, seq, last_at, started_at, home_region) "
        "SELECT code, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, home_region FROM banks"
    )


def downgrade() -> None:
    op.drop_index("ix_transfers_fx_cycle_id", table_name="transfers")
    op.drop_index(op.f("ix_events_bank_code_at"), table_name="events")
    op.drop_table("events")
    op.drop_table("feed_heads")
