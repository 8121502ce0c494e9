"""CockroachDB-only SQL, used when the database URL is ``cockroachdb://``.

Everything here is plain SQLAlchemy and renders nothing CockroachDB-specific
on the other dialects, so callers can use it unconditionally:

* :func:`multi_region_ddl` returns the statements that make the database
  multi-region: PRIMARY REGION and ADD REGION, SURVIVE REGION FAILURE with
  three or more regions, REGIONAL BY ROW for the per-bank tables (rows homed
  in the bank's home region) and GLOBAL for the reference tables. Region
  changes cannot run inside a multi-statement transaction: run each statement
  on its own (for Alembic: inside ``op.get_context().autocommit_block()``).
* :func:`follower_read` marks a SELECT for a bounded-stale follower read
  (``AS OF SYSTEM TIME follower_read_timestamp()``), for status, report and
  dashboard queries; never for a money decision.
  :data:`SET_TRANSACTION_FOLLOWER_READ` does the same for a whole read-only
  transaction (first statement of the transaction).
* :func:`is_cockroach` tells whether an engine, connection or dialect is
  CockroachDB.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Select, TextClause, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.selectable import FromClause, FromGrouping

DIALECT_NAME = "cockroachdb"

#: The hidden column of REGIONAL BY ROW tables that holds the row's home region.
REGION_COLUMN = "crdb_region"

#: Per-bank tables, homed in the region of the bank that owns the row. The
#: value is a SQL expression over the table aliased ``t`` giving that bank's
#: code; the backfill looks the code up in ``banks.home_region``.
REGIONAL_BY_ROW_TABLES: Mapping[str, str] = {
    "accounts": "t.owner",
    "transfers": "t.debtor_bank",
    "positions": "t.bank_code",
    "postings": "t.owner",
    "fx_quotes": "t.bank_code",
    "ledger_entries": "(SELECT a.owner FROM accounts AS a WHERE a.id = t.account_id)",
}

#: Reference data, read everywhere and written rarely: served locally in every
#: region (GLOBAL tables trade slower writes for fast, consistent local reads).
GLOBAL_TABLES: Sequence[str] = ("banks", "cycles", "fx_rates", "currencies", "rates")

_REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def is_cockroach(bind: Engine | Connection | Dialect) -> bool:
    """True when `bind` (an engine, a connection or a dialect) is CockroachDB."""
    dialect = bind if isinstance(bind, Dialect) else bind.dialect
    return dialect.name == DIALECT_NAME


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _region(name: str) -> str:
    if not _REGION_RE.match(name):
        raise ValueError(f"not a region name: {name!r}")
    return _quote_ident(name)


def _region_literal(name: str) -> str:
    _region(name)
    return "'" + name + "'"


@dataclass(frozen=True, slots=True)
class RegionConfig:
    """The database's regions; the first is the primary region."""

    database: str
    regions: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.regions:
            raise ValueError("at least one region is needed")
        if len(set(self.regions)) != len(self.regions):
            raise ValueError(f"duplicate regions: {self.regions}")
        for region in self.regions:
            _region(region)

    @classmethod
    def parse(cls, database: str, regions: str) -> RegionConfig:
        """From a comma-separated list such as ``us-east1,europe-west1``."""
        return cls(database, tuple(r.strip() for r in regions.split(",") if r.strip()))

    @property
    def primary(self) -> str:
        return self.regions[0]

    @property
    def survive_region_failure(self) -> bool:
        return len(self.regions) >= 3


def database_regions_ddl(config: RegionConfig) -> list[str]:
    """PRIMARY REGION, ADD REGION, and SURVIVE REGION FAILURE with 3+ regions."""
    db = _quote_ident(config.database)
    statements = [f"ALTER DATABASE {db} SET PRIMARY REGION {_region(config.primary)}"]
    statements += [
        f"ALTER DATABASE {db} ADD REGION IF NOT EXISTS {_region(region)}"
        for region in config.regions[1:]
    ]
    if config.survive_region_failure:
        statements.append(f"ALTER DATABASE {db} SURVIVE REGION FAILURE")
    return statements


def regional_by_row_ddl(table: str) -> list[str]:
    """Add the region column and make `table` REGIONAL BY ROW on it.

    Until the backfill (:func:`rehome_rows_sql`) sets it, a row's region is the
    region of the gateway node that inserted it, which is the bank's home
    region when banks reach the hub through their own region.
    """
    if table not in REGIONAL_BY_ROW_TABLES:
        raise ValueError(f"{table} is not a per-bank table")
    t = _quote_ident(table)
    col = _quote_ident(REGION_COLUMN)
    return [
        f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {col} crdb_internal_region NOT VISIBLE "
        "NOT NULL DEFAULT default_to_database_primary_region(gateway_region())"
        "::crdb_internal_region",
        f"ALTER TABLE {t} SET LOCALITY REGIONAL BY ROW AS {col}",
    ]


def global_table_ddl(table: str) -> str:
    return f"ALTER TABLE {_quote_ident(table)} SET LOCALITY GLOBAL"


def rehome_rows_sql(table: str, regions: Collection[str]) -> str:
    """Move each row of a per-bank table to its bank's home region.

    Idempotent; only rows whose region differs are written, and banks whose
    home region is not a database region are left where they are.
    """
    if table not in REGIONAL_BY_ROW_TABLES:
        raise ValueError(f"{table} is not a per-bank table")
    owner = REGIONAL_BY_ROW_TABLES[table]
    allowed = ", ".join(_region_literal(r) for r in regions)
    col = _quote_ident(REGION_COLUMN)
    return (
        f"UPDATE {_quote_ident(table)} AS t "
        f"SET {col} = b.home_region::crdb_internal_region "
        f"FROM banks AS b "
        f"WHERE b.code = {owner} AND b.home_region IN ({allowed}) "
        f"AND t.{col}::STRING != b.home_region"
    )


def multi_region_ddl(config: RegionConfig, tables: Iterable[str]) -> list[str]:
    """Every statement, in order, for the tables that exist (`tables`)."""
    present = set(tables)
    statements = database_regions_ddl(config)
    statements += [global_table_ddl(t) for t in GLOBAL_TABLES if t in present]
    regional = [t for t in REGIONAL_BY_ROW_TABLES if t in present]
    for table in regional:
        statements += regional_by_row_ddl(table)
    # accounts first: ledger_entries looks its owner up there.
    statements += [rehome_rows_sql(t, config.regions) for t in regional]
    return statements


# Follower reads.

FOLLOWER_READ_CLAUSE = "AS OF SYSTEM TIME follower_read_timestamp()"

#: First statement of a read-only transaction that should read from followers.
SET_TRANSACTION_FOLLOWER_READ: TextClause = text(f"SET TRANSACTION {FOLLOWER_READ_CLAUSE}")


class FollowerReadFrom(FromGrouping):
    """The FROM clause of a SELECT, followed by AS OF SYSTEM TIME on CockroachDB.

    CockroachDB takes the clause at the end of the FROM clause (before WHERE),
    so it wraps the statement's single FROM element (a table or a join) and
    hides it from the statement's FROM list.
    """

    __visit_name__ = "remitnet_follower_read_from"
    inherit_cache = True

    @property
    def _hide_froms(self) -> Iterable[FromClause]:
        return [self.element, *self.element._hide_froms]

    @property
    def _from_objects(self) -> list[FromClause]:
        return [self]


@compiles(FollowerReadFrom)
def _follower_read_default(element: FollowerReadFrom, compiler: SQLCompiler, **kw: Any) -> str:
    rendered: str = element.element._compiler_dispatch(compiler, **kw)
    return rendered


@compiles(FollowerReadFrom, DIALECT_NAME)
def _follower_read_cockroach(element: FollowerReadFrom, compiler: SQLCompiler, **kw: Any) -> str:
    rendered: str = element.element._compiler_dispatch(compiler, **kw)
    return f"{rendered} {FOLLOWER_READ_CLAUSE}"


def follower_read(stmt: Select[Any]) -> Select[Any]:
    """`stmt` as a bounded-stale follower read on CockroachDB (unchanged elsewhere).

    The statement must have one FROM element (join the tables explicitly), must
    not lock rows (FOR UPDATE), and must run outside an explicit read-write
    transaction: in autocommit, or in a transaction whose first statement is
    :data:`SET_TRANSACTION_FOLLOWER_READ`.
    """
    if stmt._for_update_arg is not None:
        raise ValueError("a follower read cannot lock rows (FOR UPDATE)")
    froms = stmt.get_final_froms()
    if len(froms) != 1:
        raise ValueError(f"a follower read needs exactly one FROM element, got {len(froms)}")
    (only,) = froms
    if isinstance(only, FollowerReadFrom):
        return stmt
    return stmt.select_from(FollowerReadFrom(only))
