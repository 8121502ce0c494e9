"""fx providers

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00

FX providers are participants: `banks.roles` (1 bank, 2 FX provider, 3
both; every existing participant a bank). Rates are per provider
(`fx_rates.provider`, part of the primary key, with the provider's own
`spread_bps`, NULL for the hub's corridor spread); quotes and cross-currency
transfers name theirs (`fx_quotes.provider`, `transfers.fx_provider`, NULL
for those made by the hub as dealer before this migration, whose legs keep
going through HUB).

The hub's former dealer role becomes the default provider FXHUB: a
provider-only participant homed with the hub's own rows, active, with a feed
head and a liquidity account (balance 0, cap 0) in every currency the hub
clears (each currency with a HUB account); the existing rates become its
rates. It sells nothing until the operator funds it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Frozen copies: a migration must not change when the code does.
FXHUB = "FXHUB"
FXHUB_NAME = "Hub FX provider"
HUB = "HUB"
HUB_HOME_REGION = "HUB"
BANK, FX_PROVIDER = 1, 2
ACTIVE = 1
NEW_KEY = ("provider", "base", "quote")


def _fx_rates(key: tuple[str, ...]) -> sa.Table:
    """fx_rates after the columns are added, keyed on `key`."""
    return sa.Table(
        "fx_rates",
        sa.MetaData(),
        sa.Column("base", sa.String(length=3), nullable=False),
        sa.Column("quote", sa.String(length=3), nullable=False),
        sa.Column("mid", sa.String(length=48), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provider", sa.String(length=16), server_default=FXHUB, nullable=False),
        sa.Column("spread_bps", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint(*key, name="pk_fx_rates"),
    )


def _rekey_rates(dialect: str) -> None:
    """fx_rates' primary key becomes (provider, base, quote). One ALTER on
    PostgreSQL and CockroachDB (dropping and adding the key in the same
    statement: CockroachDB keeps no unique index on the old key then, which
    would still allow one rate per pair); a table rebuild on SQLite."""
    if dialect == "sqlite":
        # Rebuilt as this frozen copy of the new table, its rows copied over.
        with op.batch_alter_table("fx_rates", copy_from=_fx_rates(NEW_KEY), recreate="always"):
            pass
        return
    op.execute(
        "ALTER TABLE fx_rates DROP CONSTRAINT pk_fx_rates, "
        f"ADD CONSTRAINT pk_fx_rates PRIMARY KEY ({', '.join(NEW_KEY)})"
    )


def _default_provider() -> None:
    """FXHUB, its feed head and its liquidity accounts (none that exist)."""
    op.execute(
        "INSERT INTO banks (code, name, home_region, status, created_at, roles) "
        f"SELECT '{FXHUB}', '{FXHUB_NAME}', '{HUB_HOME_REGION}', {ACTIVE}, CURRENT_TIMESTAMP, "
        f"{FX_PROVIDER} WHERE NOT EXISTS (SELECT 1 FROM banks WHERE code = '{FXHUB}')"
    )
    op.execute(
        "INSERT INTO feed_heads (bank_code, seq, last_at, started_at, home_region) "
        f"SELECT '{FXHUB}', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '{HUB_HOME_REGION}' "
        f"WHERE NOT EXISTS (SELECT 1 FROM feed_heads WHERE bank_code = '{FXHUB}')"
    )
    op.execute(
        "INSERT INTO accounts (id, owner, currency, kind, balance, net_debit_cap, "
        "unsettled_net, entry_count, opened_at, home_region) "
        f"SELECT '{FXHUB}/' || c.currency || '/LIQUIDITY', '{FXHUB}', c.currency, 'LIQUIDITY', "
        f"0, 0, 0, 0, CURRENT_TIMESTAMP, '{HUB_HOME_REGION}' "
        f"FROM (SELECT DISTINCT currency FROM accounts WHERE owner = '{HUB}') AS c "
        "WHERE NOT EXISTS (SELECT 1 FROM accounts AS a "
        f"WHERE a.id = '{FXHUB}/' || c.currency || '/LIQUIDITY')"
    )


def upgrade() -> None:
    with op.batch_alter_table("banks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("roles", sa.SmallInteger(), server_default=str(BANK), nullable=False)
        )
    with op.batch_alter_table("fx_rates", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("provider", sa.String(length=16), server_default=FXHUB, nullable=False)
        )
        batch_op.add_column(sa.Column("spread_bps", sa.Integer(), nullable=True))
    with op.batch_alter_table("fx_quotes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provider", sa.String(length=16), nullable=True))
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fx_provider", sa.String(length=16), nullable=True))

    dialect = op.get_context().dialect.name
    if dialect == "cockroachdb":
        # CockroachDB cannot write a column, or key a table on it, in the
        # transaction that adds it: the rest runs after that one commits.
        with op.get_context().autocommit_block():
            _rekey_rates(dialect)
            _default_provider()
    else:
        _rekey_rates(dialect)
        _default_provider()


def downgrade() -> None:
    # FXHUB's rows stay (a funded provider's ledger is history, not schema):
    # it is an ordinary participant after. Only one provider's rates, FXHUB's,
    # fit the old key.
    op.execute(f"DELETE FROM fx_rates WHERE provider <> '{FXHUB}'")
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        key = ("base", "quote")
        with op.batch_alter_table("fx_rates", copy_from=_fx_rates(key), recreate="always"):
            pass
    else:
        op.execute(
            "ALTER TABLE fx_rates DROP CONSTRAINT pk_fx_rates, "
            "ADD CONSTRAINT pk_fx_rates PRIMARY KEY (base, quote)"
        )
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.drop_column("fx_provider")
    with op.batch_alter_table("fx_quotes", schema=None) as batch_op:
        batch_op.drop_column("provider")
    with op.batch_alter_table("fx_rates", schema=None) as batch_op:
        batch_op.drop_column("spread_bps")
        batch_op.drop_column("provider")
    with op.batch_alter_table("banks", schema=None) as batch_op:
        batch_op.drop_column("roles")
