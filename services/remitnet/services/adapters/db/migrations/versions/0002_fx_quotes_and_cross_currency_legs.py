"""fx quotes and cross-currency legs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 22:05:53.058088
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fx_quotes",
        sa.Column("id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("bank_code", sa.String(length=16), nullable=False),
        sa.Column("source_currency", sa.String(length=3), nullable=False),
        sa.Column("target_currency", sa.String(length=3), nullable=False),
        sa.Column("source_amount", sa.BigInteger(), nullable=False),
        sa.Column("target_amount", sa.BigInteger(), nullable=False),
        sa.Column("mid_rate", sa.String(length=48), nullable=False),
        sa.Column("rate", sa.String(length=48), nullable=False),
        sa.Column("spread_bps", sa.Integer(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("derivation", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_by", sa.Uuid(as_uuid=False), nullable=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fx_quotes")),
    )
    op.create_table(
        "fx_rates",
        sa.Column("base", sa.String(length=3), nullable=False),
        sa.Column("quote", sa.String(length=3), nullable=False),
        sa.Column("mid", sa.String(length=48), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("base", "quote", name=op.f("pk_fx_rates")),
    )
    with op.batch_alter_table("positions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fee", sa.BigInteger(), server_default="0", nullable=False))

    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quote_id", sa.Uuid(as_uuid=False), nullable=True))
        batch_op.add_column(sa.Column("creditor_currency", sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column("creditor_amount", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("creditor_cycle_id", sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column("fee", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.drop_column("fee")
        batch_op.drop_column("creditor_cycle_id")
        batch_op.drop_column("creditor_amount")
        batch_op.drop_column("creditor_currency")
        batch_op.drop_column("quote_id")

    with op.batch_alter_table("positions", schema=None) as batch_op:
        batch_op.drop_column("fee")

    op.drop_table("fx_rates")
    op.drop_table("fx_quotes")
