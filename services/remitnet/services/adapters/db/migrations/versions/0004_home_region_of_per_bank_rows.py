"""home region of per-bank rows

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 10:12:40.118204

Every accounts, positions and transfers row carries the home region of the
bank that owns it (a transfer: its debtor; the hub's own rows: 'HUB'), so
that CockroachDB can home the row in that region from its insertion on
(services/remitnet/services/adapters/db/cockroach.py). Existing rows are backfilled from
banks.home_region.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copies: a migration must not change when the code does.
OWNER_COLUMNS = {"accounts": "owner", "positions": "bank_code", "transfers": "debtor_bank"}
HUB = "HUB"
HUB_HOME_REGION = "HUB"


def _backfill() -> None:
    for table, owner in OWNER_COLUMNS.items():
        op.execute(
            f"UPDATE {table} SET home_region = "
            f"(SELECT banks.home_region FROM banks WHERE banks.code = {table}.{owner}) "
            "WHERE home_region IS NULL"
        )
        if table != "transfers":  # the hub owns accounts and positions, never debts
            op.execute(
                f"UPDATE {table} SET home_region = '{HUB_HOME_REGION}' "
                f"WHERE home_region IS NULL AND {owner} = '{HUB}'"
            )


def upgrade() -> None:
    for table in OWNER_COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("home_region", sa.String(length=32), nullable=True))

    if op.get_context().dialect.name == "cockroachdb":
        # CockroachDB cannot write a column in the transaction that adds it:
        # backfill in autocommit mode, then go on in a new transaction.
        with op.get_context().autocommit_block():
            _backfill()
    else:
        _backfill()

    for table in OWNER_COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("home_region", existing_type=sa.String(length=32), nullable=False)


def downgrade() -> None:
    for table in reversed(list(OWNER_COLUMNS)):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("home_region")
