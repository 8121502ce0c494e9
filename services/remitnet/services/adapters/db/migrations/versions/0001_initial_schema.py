"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 21:54:01.810188
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("net_debit_cap", sa.BigInteger(), nullable=False),
        sa.Column("unsettled_net", sa.BigInteger(), nullable=False),
        sa.Column("entry_count", sa.BigInteger(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_accounts_owner_currency"), ["owner", "currency"], unique=False
        )

    op.create_table(
        "banks",
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=140), nullable=False),
        sa.Column("home_region", sa.String(length=32), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_banks")),
    )
    op.create_table(
        "cycles",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("transfer_count", sa.BigInteger(), nullable=False),
        sa.Column("gross_value", sa.BigInteger(), nullable=False),
        sa.Column("net_value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cycles")),
        sa.UniqueConstraint("currency", "seq", name=op.f("uq_cycles_currency_seq")),
    )
    with op.batch_alter_table("cycles", schema=None) as batch_op:
        batch_op.create_index(
            "uq_cycles_open_currency",
            ["currency"],
            unique=True,
            postgresql_where=sa.text("state = 1"),
            sqlite_where=sa.text("state = 1"),
        )

    op.create_table(
        "ledger_entries",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("posting_id", sa.String(length=80), nullable=False),
        sa.Column("reference", sa.String(length=80), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "seq", name=op.f("pk_ledger_entries")),
    )
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ledger_entries_posting_id"), ["posting_id"], unique=False
        )

    op.create_table(
        "positions",
        sa.Column("cycle_id", sa.String(length=24), nullable=False),
        sa.Column("bank_code", sa.String(length=16), nullable=False),
        sa.Column("sent", sa.BigInteger(), nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("sent_count", sa.BigInteger(), nullable=False),
        sa.Column("received_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("cycle_id", "bank_code", name=op.f("pk_positions")),
    )
    op.create_table(
        "postings",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("owner", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=80), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_postings")),
    )
    op.create_table(
        "transfers",
        sa.Column("id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("debtor_bank", sa.String(length=16), nullable=False),
        sa.Column("creditor_bank", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remittance_info", sa.String(length=140), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("cycle_id", sa.String(length=24), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfers")),
    )
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_transfers_creditor_bank_accepted_at"),
            ["creditor_bank", "accepted_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_transfers_debtor_bank_accepted_at"),
            ["debtor_bank", "accepted_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transfers_debtor_bank_accepted_at"))
        batch_op.drop_index(batch_op.f("ix_transfers_creditor_bank_accepted_at"))

    op.drop_table("transfers")
    op.drop_table("postings")
    op.drop_table("positions")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_entries_posting_id"))

    op.drop_table("ledger_entries")
    with op.batch_alter_table("cycles", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_cycles_open_currency",
            postgresql_where=sa.text("state = 1"),
            sqlite_where=sa.text("state = 1"),
        )

    op.drop_table("cycles")
    op.drop_table("banks")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_owner_currency"))

    op.drop_table("accounts")
