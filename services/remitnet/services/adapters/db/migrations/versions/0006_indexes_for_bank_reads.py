"""indexes for the reads a bank can make

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 21:10:00

Every read a bank can call is bounded by an index it reads in order, never by
a scan of the bank's (or the hub's) whole history:

- ListTransfers reads the debtor side and the creditor side each in
  (bank, accepted_at, id) order, newest first, and merges the two pages; with
  a counterparty, the pair index (debtor_bank, creditor_bank, accepted_at, id)
  serves both directions. The (bank, accepted_at) indexes they replace could
  not give the id tie-break order.
- GetReconciliation recomputes a cycle from its transfers: by cycle_id, and
  by creditor_cycle_id for the target legs of cross-currency transfers (a
  partial index: the column is NULL on every same-currency transfer).
- ListTransfers with status CANCELLED reads two small partial indexes of the
  cancelled transfers only (status 4), per side, in the same order.
- ListCycles pages cycles newest first, per currency or over all.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Frozen copy of TransferStatus.CANCELLED: a migration must not change when
# the code does.
CANCELLED = 4


def upgrade() -> None:
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.drop_index("ix_transfers_debtor_bank_accepted_at")
        batch_op.drop_index("ix_transfers_creditor_bank_accepted_at")
        batch_op.create_index(
            "ix_transfers_debtor_bank_accepted_at_id", ["debtor_bank", "accepted_at", "id"]
        )
        batch_op.create_index(
            "ix_transfers_creditor_bank_accepted_at_id", ["creditor_bank", "accepted_at", "id"]
        )
        batch_op.create_index(
            "ix_transfers_debtor_bank_creditor_bank_accepted_at_id",
            ["debtor_bank", "creditor_bank", "accepted_at", "id"],
        )
        for side in ("debtor_bank", "creditor_bank"):
            batch_op.create_index(
                f"ix_transfers_cancelled_{side}_accepted_at_id",
                [side, "accepted_at", "id"],
                postgresql_where=sa.text(f"status = {CANCELLED}"),
                sqlite_where=sa.text(f"status = {CANCELLED}"),
            )
        batch_op.create_index("ix_transfers_cycle_id", ["cycle_id"])
        batch_op.create_index(
            "ix_transfers_creditor_cycle_id",
            ["creditor_cycle_id"],
            postgresql_where=sa.text("creditor_cycle_id IS NOT NULL"),
            sqlite_where=sa.text("creditor_cycle_id IS NOT NULL"),
        )
    with op.batch_alter_table("cycles", schema=None) as batch_op:
        batch_op.create_index("ix_cycles_opened_at_id", ["opened_at", "id"])
        batch_op.create_index("ix_cycles_currency_opened_at_id", ["currency", "opened_at", "id"])


def downgrade() -> None:
    with op.batch_alter_table("cycles", schema=None) as batch_op:
        batch_op.drop_index("ix_cycles_currency_opened_at_id")
        batch_op.drop_index("ix_cycles_opened_at_id")
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.drop_index("ix_transfers_creditor_cycle_id")
        batch_op.drop_index("ix_transfers_cycle_id")
        batch_op.drop_index("ix_transfers_cancelled_creditor_bank_accepted_at_id")
        batch_op.drop_index("ix_transfers_cancelled_debtor_bank_accepted_at_id")
        batch_op.drop_index("ix_transfers_debtor_bank_creditor_bank_accepted_at_id")
        batch_op.drop_index("ix_transfers_creditor_bank_accepted_at_id")
        batch_op.drop_index("ix_transfers_debtor_bank_accepted_at_id")
        batch_op.create_index(
            "ix_transfers_creditor_bank_accepted_at", ["creditor_bank", "accepted_at"]
        )
        batch_op.create_index(
            "ix_transfers_debtor_bank_accepted_at", ["debtor_bank", "accepted_at"]
        )
