"""room on each page for the rows every batch updates

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-22 10:00:00

Every batch updates its banks' `accounts`, `positions` and `feed_heads`
rows, and none of those updates changes an indexed column. With full pages
PostgreSQL writes each new version to another page and into every index,
and close and settlement then walk tens of thousands of dead versions:
after eight batches over 5,000 banks, 36,000 dead feed heads against 5,001
live ones. With half of each page free the update stays on its page (a HOT
update) and is pruned there: 4,900 dead, close 0.37-0.39 -> 0.23-0.27 s and
settlement 0.25-0.36 -> 0.18-0.19 s in the same session (issue 17).

PostgreSQL only: CockroachDB's storage has no pages to leave room in, and
SQLite has no such setting. It applies to pages written from now on.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TABLES = ("accounts", "positions", "feed_heads")
FILLFACTOR = 50


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
