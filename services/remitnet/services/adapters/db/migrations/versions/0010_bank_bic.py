"""banks' BICs and the ISO 20022 message log

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-20 10:00:00

The ISO 20022 edge (issue 15):

- `banks.bic`, NULL on every existing participant (onboarded without one),
  with a unique index: two participants never share a BIC, and NULLs never
  collide in it on SQLite, PostgreSQL or CockroachDB.
- `iso_messages`: the answer to each ISO 20022 message a bank sent, keyed
  by the bank and the message's MsgId (natural keys, no sequence), homed
  with the bank's rows, so a duplicate MsgId is answered as the first time.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _bic_index() -> None:
    op.create_index("uq_banks_bic", "banks", ["bic"], unique=True)


def upgrade() -> None:
    with op.batch_alter_table("banks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bic", sa.String(length=11), nullable=True))
    op.create_table(
        "iso_messages",
        sa.Column("bank", sa.String(length=16), nullable=False),
        sa.Column("msg_id", sa.String(length=35), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("answer", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("home_region", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("bank", "msg_id", name=op.f("pk_iso_messages")),
    )
    if op.get_context().dialect.name == "cockroachdb":
        # CockroachDB cannot index a column in the transaction that adds it
        # (as in 0009).
        with op.get_context().autocommit_block():
            _bic_index()
    else:
        _bic_index()


def downgrade() -> None:
    op.drop_index("uq_banks_bic", table_name="banks")
    op.drop_table("iso_messages")
    with op.batch_alter_table("banks", schema=None) as batch_op:
        batch_op.drop_column("bic")
