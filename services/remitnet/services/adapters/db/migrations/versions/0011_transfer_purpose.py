"""transfers' ISO 20022 purpose code

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-21 10:00:00

The ISO 20022 edge keeps a pacs.008 transaction's purpose (issue 15):

- `transfers.purpose`, the transaction's `Purp/Cd` (ExternalPurpose1Code,
  at most 4 characters), or one given to SubmitTransfer(s). NULL on every
  existing transfer and on one sent without a purpose. Nullable with no
  default, so adding it rewrites no rows on PostgreSQL or CockroachDB.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purpose", sa.String(length=4), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.drop_column("purpose")
