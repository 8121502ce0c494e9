"""operator audit trail

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 21:40:00

`operator_audit_log`: one hash-chained row per operator action that changed
state (services/remitnet/services/domain/audit_trail.py), appended in the action's
transaction. Actions before the migration are not in the trail: its first
row is the first action after it (seq 1, previous hash all zeros).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operator_audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("principal", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("request", sa.String(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_operator_audit_log")),
    )
    op.create_index(
        op.f("ix_operator_audit_log_subject_action"),
        "operator_audit_log",
        ["subject", "action"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_operator_audit_log_subject_action"), table_name="operator_audit_log")
    op.drop_table("operator_audit_log")
