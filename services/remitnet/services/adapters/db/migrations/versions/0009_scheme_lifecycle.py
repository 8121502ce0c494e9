"""scheme lifecycle

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-15 10:00:00

Payee confirmation, expiry, returns and recalls (issue 14):

- `banks.requires_confirmation` (0/1, every existing participant 0): the
  operator setting that makes a bank's incoming transfers RESERVED until it
  confirms them.
- `accounts.reserved` (0 on every existing account): what the owner's
  transfers awaiting confirmation hold.
- `transfers.deadline`, `resolved_at`, `reason`, `return_of`, `returned_by`,
  NULL on every existing transfer (each was netted at once, none is a
  return nor returned), with a partial index of the reservations by
  deadline (status 5, for the expirer), a partial unique index on
  `return_of` (a transfer is returned at most once) and partial indexes of
  the resolved transfers per side by `resolved_at` (the feed's RESOLVED
  events).
- `recalls`: one per transfer at most, homed with the debtor's rows, with a
  partial index of the open ones (state 1) by deadline.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Frozen copies of TransferStatus.RESERVED and RecallState.REQUESTED: a
# migration must not change when the code does.
RESERVED = 5
REQUESTED = 1
SIDES = ("debtor_bank", "creditor_bank")


def _transfer_indexes() -> None:
    """The indexes over the transfers' new columns."""
    op.create_index(
        "ix_transfers_reserved_deadline",
        "transfers",
        ["deadline"],
        postgresql_where=sa.text(f"status = {RESERVED}"),
        sqlite_where=sa.text(f"status = {RESERVED}"),
    )
    op.create_index(
        "uq_transfers_return_of",
        "transfers",
        ["return_of"],
        unique=True,
        postgresql_where=sa.text("return_of IS NOT NULL"),
        sqlite_where=sa.text("return_of IS NOT NULL"),
    )
    for side in SIDES:
        op.create_index(
            f"ix_transfers_{side}_resolved_at",
            "transfers",
            [side, "resolved_at"],
            postgresql_where=sa.text("resolved_at IS NOT NULL"),
            sqlite_where=sa.text("resolved_at IS NOT NULL"),
        )


def upgrade() -> None:
    with op.batch_alter_table("banks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "requires_confirmation", sa.SmallInteger(), server_default="0", nullable=False
            )
        )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reserved", sa.BigInteger(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deadline", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.String(length=140), nullable=True))
        batch_op.add_column(sa.Column("return_of", sa.Uuid(as_uuid=False), nullable=True))
        batch_op.add_column(sa.Column("returned_by", sa.Uuid(as_uuid=False), nullable=True))
    op.create_table(
        "recalls",
        sa.Column("id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("transfer_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("debtor_bank", sa.String(length=16), nullable=False),
        sa.Column("creditor_bank", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=4), nullable=False),
        sa.Column("info", sa.String(length=105), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer_reason", sa.String(length=4), nullable=True),
        sa.Column("return_id", sa.Uuid(as_uuid=False), nullable=True),
        sa.Column("home_region", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recalls")),
        sa.UniqueConstraint("transfer_id", name=op.f("uq_recalls_transfer_id")),
    )
    op.create_index(
        "ix_recalls_requested_deadline",
        "recalls",
        ["deadline"],
        postgresql_where=sa.text(f"state = {REQUESTED}"),
        sqlite_where=sa.text(f"state = {REQUESTED}"),
    )
    for side in SIDES:
        op.create_index(f"ix_recalls_{side}_requested_at", "recalls", [side, "requested_at"])

    if op.get_context().dialect.name == "cockroachdb":
        # CockroachDB cannot key a table on a column in the transaction that
        # adds it: the transfers' new indexes come after that one commits.
        with op.get_context().autocommit_block():
            _transfer_indexes()
    else:
        _transfer_indexes()


def downgrade() -> None:
    for side in SIDES:
        op.drop_index(f"ix_transfers_{side}_resolved_at", table_name="transfers")
    op.drop_index("uq_transfers_return_of", table_name="transfers")
    op.drop_index("ix_transfers_reserved_deadline", table_name="transfers")
    for side in reversed(SIDES):
        op.drop_index(f"ix_recalls_{side}_requested_at", table_name="recalls")
    op.drop_index("ix_recalls_requested_deadline", table_name="recalls")
    op.drop_table("recalls")
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.drop_column("returned_by")
        batch_op.drop_column("return_of")
        batch_op.drop_column("reason")
        batch_op.drop_column("resolved_at")
        batch_op.drop_column("deadline")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("reserved")
    with op.batch_alter_table("banks", schema=None) as batch_op:
        batch_op.drop_column("requires_confirmation")
