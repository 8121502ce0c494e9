"""CockroachDB-only SQL, used when the database URL is ``cockroachdb://``.

Everything here is plain SQLAlchemy and renders nothing CockroachDB-specific
on the other dialects, so callers can use it unconditionally:

* :func:`multi_region_ddl` returns the statements that make the database
  multi-region: PRIMARY REGION and ADD REGION, SURVIVE REGION FAILURE with
  three or more regions, GLOBAL for the reference tables and REGIONAL BY ROW
  for the per-bank tables. A per-bank table with a ``home_region`` column
  (accounts, positions, transfers: found in the SQLAlchemy metadata) is homed
  on a region column computed from it, so each row lives in its bank's region
  from its insertion on; the others (postings, fx_quotes, ledger_entries) take
  the gateway's region and are moved by a backfill. Region changes cannot run
  inside a multi-statement transaction: run each statement on its own (for
  Alembic: inside ``op.get_context().autocommit_block()``).
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

from sqlalchemy import Connection, Engine, Select, Table, TextClause, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.selectable import FromClause, FromGrouping

DIALECT_NAME = "cockroachdb"

#: The column of REGIONAL BY ROW tables that holds the row's home region.
REGION_COLUMN = "crdb_region"

#: The column of the per-bank tables that holds the owning bank's home region
#: (schema.py); REGION_COLUMN is computed from it.
HOME_REGION_COLUMN = "home_region"

#: Per-bank tables without a HOME_REGION_COLUMN yet, homed in the region of
#: the bank that owns the row by a backfill (:func:`rehome_rows_sql`). The
#: value is a SQL expression over the table aliased ``t`` giving that bank's
#: code; the backfill looks the code up in ``banks.home_region``.
REHOMED_TABLES: Mapping[str, str] = {
    "postings": "t.owner",
    "fx_quotes": "t.bank_code",
    "ledger_entries": "(SELECT a.owner FROM accounts AS a WHERE a.id = t.account_id)",
}

#: Reference data, read everywhere and written rarely: served locally in every
#: region (GLOBAL tables trade slower writes for fast, consistent local reads).
#: banks holds a home_region too, but is reference data, not a per-bank table.
GLOBAL_TABLES: Sequence[str] = (
    "banks",
    "cycles",
    "fx_rates",
    "currencies",
    "rates",
    # Written by rare operator actions (with cycles, in the same transaction),
    # read from every region: the chain head of a settled cycle in GetCycle.
    "operator_audit_log",
)

_REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

# Names the computed region column goes by while it is replaced (see
# region_column_ddl).
_NEW = REGION_COLUMN + "_new"
_PREV = REGION_COLUMN + "_prev"


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


def home_region_tables(tables: Iterable[Table]) -> list[str]:
    """The per-bank tables homed by their own HOME_REGION_COLUMN: every table
    of the metadata that has one, except the GLOBAL reference tables."""
    return [t.name for t in tables if HOME_REGION_COLUMN in t.c and t.name not in GLOBAL_TABLES]


def region_expression(config: RegionConfig) -> str:
    """The home region of a row, as a database region: the row's
    HOME_REGION_COLUMN when it is one of the database's regions, the primary
    region otherwise: a bank may live in a region the cluster does not have,
    and the hub's own rows hold schema.HUB_HOME_REGION, never a region."""
    whens = " ".join(f"WHEN {_region_literal(r)} THEN {_region_literal(r)}" for r in config.regions)
    return f"CASE {HOME_REGION_COLUMN} {whens} ELSE {_region_literal(config.primary)} END"


def region_mapping_comment(config: RegionConfig) -> str:
    """The comment a computed region column carries: the mapping it was built
    for, so that a later run can tell whether it must be rebuilt."""
    return f"remitnet: {HOME_REGION_COLUMN} in ({', '.join(config.regions)}), else {config.primary}"


def region_column_ddl(
    table: str, config: RegionConfig, columns: Mapping[str, str] | None = None
) -> list[str]:
    """Make `table` REGIONAL BY ROW on a REGION_COLUMN computed from its
    HOME_REGION_COLUMN (:func:`region_expression`).

    The CockroachDB documentation (ALTER TABLE ... SET LOCALITY, "Set the
    table locality to REGIONAL BY ROW"): "you can specify any column definition
    you like for the REGIONAL BY ROW AS column, as long as the column is of type
    crdb_internal_region and is not nullable", for example one generated as
    ``crdb_internal_region AS (CASE ... END) STORED``; a row given no region
    otherwise takes ``gateway_region()``, which is what this replaces.

    `columns` are the table's present REGION_COLUMN* columns with their
    comments ('' when none), as :func:`read_region_columns` finds them: none
    on a fresh table; REGION_COLUMN with no comment on a table made REGIONAL BY
    ROW by the gateway-default layout of earlier versions; with another
    mapping's comment after the regions changed. A computed column's
    expression cannot be altered in place; the documentation's way to change
    the mapping ("alter the formula for a computed column") is to add a new
    region column with the new expression, swap the names atomically, point
    the locality at it and drop the previous one, which is what is done then.
    A table is up to date (no statements) when REGION_COLUMN carries this
    mapping's comment and no rebuild is half done; a run interrupted at any
    step is completed by the next.
    """
    t = _quote_ident(table)
    col, new, prev = _quote_ident(REGION_COLUMN), _quote_ident(_NEW), _quote_ident(_PREV)
    present = dict(columns or {})
    mapping = region_mapping_comment(config)
    expression = region_expression(config)
    definition = f"crdb_internal_region NOT VISIBLE NOT NULL AS ({expression}) STORED"
    locality = f"ALTER TABLE {t} SET LOCALITY REGIONAL BY ROW AS {col}"
    statements = []
    if _NEW in present:  # an interrupted rebuild's; never the locality column
        statements.append(f"ALTER TABLE {t} DROP COLUMN {new}")
    if _PREV in present:  # an interrupted rebuild had swapped the names
        statements += [locality, f"ALTER TABLE {t} DROP COLUMN {prev}"]
    if REGION_COLUMN not in present:
        # The comment last: it marks the table done.
        return [
            *statements,
            f"ALTER TABLE {t} ADD COLUMN {col} {definition}",
            locality,
            f"COMMENT ON COLUMN {t}.{col} IS '{mapping}'",
        ]
    if present[REGION_COLUMN] == mapping:
        return statements
    return [
        *statements,
        f"ALTER TABLE {t} ADD COLUMN {new} {definition}",
        f"COMMENT ON COLUMN {t}.{new} IS '{mapping}'",
        f"ALTER TABLE {t} RENAME COLUMN {col} TO {prev}, RENAME COLUMN {new} TO {col}",
        locality,
        f"ALTER TABLE {t} DROP COLUMN {prev}",
    ]


def read_region_columns(conn: Connection, table: str) -> dict[str, str]:
    """The table's REGION_COLUMN* columns with their comments ('' when none):
    the `columns` of :func:`region_column_ddl`. CockroachDB only."""
    rows = conn.exec_driver_sql(f"SHOW COLUMNS FROM {_quote_ident(table)} WITH COMMENT")
    out: dict[str, str] = {}
    for row in rows:
        m = row._mapping
        name = str(m["column_name"])
        if name in (REGION_COLUMN, _NEW, _PREV):
            out[name] = str(m["comment"] or "")
    return out


def regional_by_row_ddl(table: str) -> list[str]:
    """Add the region column and make `table` (one of REHOMED_TABLES)
    REGIONAL BY ROW on it.

    Until the backfill (:func:`rehome_rows_sql`) sets it, a row's region is the
    region of the gateway node that inserted it.
    """
    if table not in REHOMED_TABLES:
        raise ValueError(f"{table} is not a per-bank table homed by backfill")
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
    """Move each row of a per-bank table of REHOMED_TABLES to its bank's home
    region.

    Idempotent; only rows whose region differs are written, and banks whose
    home region is not a database region are left where they are.
    """
    if table not in REHOMED_TABLES:
        raise ValueError(f"{table} is not a per-bank table homed by backfill")
    owner = REHOMED_TABLES[table]
    allowed = ", ".join(_region_literal(r) for r in regions)
    col = _quote_ident(REGION_COLUMN)
    return (
        f"UPDATE {_quote_ident(table)} AS t "
        f"SET {col} = b.home_region::crdb_internal_region "
        f"FROM banks AS b "
        f"WHERE b.code = {owner} AND b.home_region IN ({allowed}) "
        f"AND t.{col}::STRING != b.home_region"
    )


def multi_region_ddl(
    config: RegionConfig,
    tables: Iterable[Table],
    region_columns: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Every statement, in order, for the tables that exist (`tables`, the
    SQLAlchemy metadata's). `region_columns` is what :func:`read_region_columns`
    found for each table of :func:`home_region_tables` (absent: nothing)."""
    present = list(tables)
    names = {t.name for t in present}
    found = region_columns or {}
    statements = database_regions_ddl(config)
    statements += [global_table_ddl(t) for t in GLOBAL_TABLES if t in names]
    for table in home_region_tables(present):
        statements += region_column_ddl(table, config, found.get(table))
    rehomed = [t for t in REHOMED_TABLES if t in names]
    for table in rehomed:
        statements += regional_by_row_ddl(table)
    statements += [rehome_rows_sql(t, config.regions) for t in rehomed]
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
