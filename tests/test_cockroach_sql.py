"""CockroachDB-specific SQL, compiled with the cockroachdb dialect (no cluster needed)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    select,
)
from sqlalchemy.engine import Dialect
from sqlalchemy_cockroachdb.base import CockroachDBDialect

ROOT = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    try:
        return importlib.import_module("remitnet.services.adapters.db.cockroach")
    except ImportError:
        # TODO: drop once the remitnet package is installed in every environment.
        name = "_remitnet_cockroach"
        spec = importlib.util.spec_from_file_location(
            name, ROOT / "services" / "adapters" / "db" / "cockroach.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module


crdb = _load()

# The hub's tables, reduced to the columns these statements touch.
md = MetaData()
banks = Table(
    "banks",
    md,
    Column("code", String(16), primary_key=True),
    Column("home_region", String(32)),
)
accounts = Table(
    "accounts",
    md,
    Column("id", String(64), primary_key=True),
    Column("owner", String(16)),
    Column("currency", String(3)),
)
ledger_entries = Table(
    "ledger_entries",
    md,
    Column("account_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("amount", BigInteger),
)
transfers = Table(
    "transfers",
    md,
    Column("id", String(36), primary_key=True),
    Column("debtor_bank", String(16)),
    Column("status", BigInteger),
)
HUB_TABLES = [
    "banks",
    "accounts",
    "ledger_entries",
    "postings",
    "cycles",
    "positions",
    "transfers",
    "fx_rates",
    "fx_quotes",
]
REGIONS = "us-east1,europe-west1,asia-southeast1"

COCKROACH = CockroachDBDialect()
POSTGRES: Dialect = create_engine("postgresql+psycopg://remitnet@localhost/remitnet").dialect
OTHERS: list[Dialect] = [POSTGRES, create_engine("sqlite://").dialect]


def sql(stmt: Any, dialect: Dialect) -> str:
    return " ".join(str(stmt.compile(dialect=dialect)).split())


def test_is_cockroach() -> None:
    assert crdb.is_cockroach(COCKROACH)
    assert not crdb.is_cockroach(POSTGRES)
    engine: Engine = create_engine("sqlite://")
    assert not crdb.is_cockroach(engine)
    with engine.connect() as conn:
        assert not crdb.is_cockroach(conn)
    engine.dispose()
    lazy = create_engine("cockroachdb+psycopg://root@localhost:26257/remitnet")
    assert crdb.is_cockroach(lazy)  # no connection is made
    lazy.dispose()


def test_three_regions_survive_region_failure() -> None:
    config = crdb.RegionConfig.parse("remitnet", REGIONS)
    assert crdb.database_regions_ddl(config) == [
        'ALTER DATABASE "remitnet" SET PRIMARY REGION "us-east1"',
        'ALTER DATABASE "remitnet" ADD REGION IF NOT EXISTS "europe-west1"',
        'ALTER DATABASE "remitnet" ADD REGION IF NOT EXISTS "asia-southeast1"',
        'ALTER DATABASE "remitnet" SURVIVE REGION FAILURE',
    ]


def test_fewer_regions_keep_zone_survival() -> None:
    config = crdb.RegionConfig.parse("remitnet", "us-east1, europe-west1")
    statements = crdb.database_regions_ddl(config)
    assert statements[0] == 'ALTER DATABASE "remitnet" SET PRIMARY REGION "us-east1"'
    assert not any("SURVIVE" in s for s in statements)
    single = crdb.database_regions_ddl(crdb.RegionConfig("remitnet", ("us-east1",)))
    assert single == ['ALTER DATABASE "remitnet" SET PRIMARY REGION "us-east1"']


@pytest.mark.parametrize(
    "regions", [(), ("us-east1", "us-east1"), ("us east1",), ('x"; DROP TABLE banks; --',)]
)
def test_bad_regions_are_refused(regions: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        crdb.RegionConfig("remitnet", regions)


def test_per_bank_tables_are_regional_by_row() -> None:
    statements = crdb.multi_region_ddl(crdb.RegionConfig.parse("remitnet", REGIONS), HUB_TABLES)
    for table in ("accounts", "transfers", "positions", "ledger_entries", "postings", "fx_quotes"):
        assert (
            f'ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS "crdb_region" crdb_internal_region '
            "NOT VISIBLE NOT NULL DEFAULT default_to_database_primary_region(gateway_region())"
            "::crdb_internal_region"
        ) in statements
        assert f'ALTER TABLE "{table}" SET LOCALITY REGIONAL BY ROW AS "crdb_region"' in statements
        add = statements.index(
            f'ALTER TABLE "{table}" SET LOCALITY REGIONAL BY ROW AS "crdb_region"'
        )
        rehome = next(i for i, s in enumerate(statements) if s.startswith(f'UPDATE "{table}"'))
        assert rehome > add


def test_reference_tables_are_global_when_present() -> None:
    statements = crdb.multi_region_ddl(crdb.RegionConfig.parse("remitnet", REGIONS), HUB_TABLES)
    assert 'ALTER TABLE "banks" SET LOCALITY GLOBAL' in statements
    assert 'ALTER TABLE "cycles" SET LOCALITY GLOBAL' in statements
    assert 'ALTER TABLE "fx_rates" SET LOCALITY GLOBAL' in statements
    # rates and currencies are not tables (yet): nothing is emitted for them.
    assert not any('"rates"' in s or '"currencies"' in s for s in statements)
    later = crdb.multi_region_ddl(
        crdb.RegionConfig.parse("remitnet", REGIONS), [*HUB_TABLES, "rates", "currencies"]
    )
    assert 'ALTER TABLE "rates" SET LOCALITY GLOBAL' in later
    assert 'ALTER TABLE "currencies" SET LOCALITY GLOBAL' in later


def test_database_regions_come_first() -> None:
    statements = crdb.multi_region_ddl(crdb.RegionConfig.parse("remitnet", REGIONS), HUB_TABLES)
    assert statements[:4] == crdb.database_regions_ddl(crdb.RegionConfig.parse("remitnet", REGIONS))
    # accounts are rehomed before the ledger entries that look their owner up.
    updates = [s.split()[1] for s in statements if s.startswith("UPDATE")]
    assert updates.index('"accounts"') < updates.index('"ledger_entries"')


def test_rows_are_rehomed_to_the_bank_home_region() -> None:
    transfer_sql = crdb.rehome_rows_sql("transfers", ("us-east1", "europe-west1"))
    assert transfer_sql == (
        'UPDATE "transfers" AS t SET "crdb_region" = b.home_region::crdb_internal_region '
        "FROM banks AS b WHERE b.code = t.debtor_bank "
        "AND b.home_region IN ('us-east1', 'europe-west1') "
        'AND t."crdb_region"::STRING != b.home_region'
    )
    ledger_sql = crdb.rehome_rows_sql("ledger_entries", ("us-east1",))
    assert "b.code = (SELECT a.owner FROM accounts AS a WHERE a.id = t.account_id)" in ledger_sql
    with pytest.raises(ValueError):
        crdb.rehome_rows_sql("banks", ("us-east1",))


def test_follower_read_renders_as_of_system_time_on_cockroach() -> None:
    stmt = (
        select(transfers.c.id, transfers.c.status)
        .where(transfers.c.debtor_bank == "BANKA")
        .order_by(transfers.c.id)
        .limit(50)
    )
    assert sql(crdb.follower_read(stmt), COCKROACH) == (
        "SELECT transfers.id, transfers.status FROM transfers "
        "AS OF SYSTEM TIME follower_read_timestamp() "
        "WHERE transfers.debtor_bank = %(debtor_bank_1)s ORDER BY transfers.id "
        "LIMIT %(param_1)s"
    )


def test_follower_read_after_a_join_and_before_where() -> None:
    stmt = (
        select(accounts.c.owner, func.sum(ledger_entries.c.amount))
        .select_from(accounts.join(ledger_entries, accounts.c.id == ledger_entries.c.account_id))
        .where(accounts.c.currency == "EUR")
        .group_by(accounts.c.owner)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no cartesian-product warning
        rendered = sql(crdb.follower_read(stmt), COCKROACH)
    assert rendered == (
        "SELECT accounts.owner, sum(ledger_entries.amount) AS sum_1 "
        "FROM accounts JOIN ledger_entries ON accounts.id = ledger_entries.account_id "
        "AS OF SYSTEM TIME follower_read_timestamp() "
        "WHERE accounts.currency = %(currency_1)s GROUP BY accounts.owner"
    )


@pytest.mark.parametrize("dialect", OTHERS, ids=lambda d: d.name)
def test_follower_read_renders_nothing_elsewhere(dialect: Dialect) -> None:
    stmts = [
        select(transfers.c.id).where(transfers.c.debtor_bank == "BANKA").limit(5),
        select(accounts.c.owner, func.sum(ledger_entries.c.amount))
        .select_from(accounts.join(ledger_entries, accounts.c.id == ledger_entries.c.account_id))
        .group_by(accounts.c.owner),
    ]
    for stmt in stmts:
        assert sql(crdb.follower_read(stmt), dialect) == sql(stmt, dialect)
        assert "SYSTEM TIME" not in sql(crdb.follower_read(stmt), dialect)


def test_follower_read_runs_on_sqlite() -> None:
    engine = create_engine("sqlite://")
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(transfers.insert(), [{"id": "t1", "debtor_bank": "BANKA", "status": 1}])
        rows = conn.execute(
            crdb.follower_read(select(transfers.c.id).where(transfers.c.debtor_bank == "BANKA"))
        ).all()
    engine.dispose()
    assert [r.id for r in rows] == ["t1"]


def test_follower_read_is_idempotent_and_cacheable() -> None:
    stmt = select(banks.c.code)
    once = crdb.follower_read(stmt)
    assert crdb.follower_read(once) is once
    assert once._generate_cache_key() == crdb.follower_read(stmt)._generate_cache_key()
    assert once._generate_cache_key() != stmt._generate_cache_key()


def test_follower_read_refuses_locking_and_comma_joins() -> None:
    with pytest.raises(ValueError, match="lock"):
        crdb.follower_read(select(banks.c.code).with_for_update())
    with pytest.raises(ValueError, match="one FROM"):
        crdb.follower_read(select(banks.c.code, accounts.c.id))


def test_set_transaction_follower_read() -> None:
    assert sql(crdb.SET_TRANSACTION_FOLLOWER_READ, COCKROACH) == (
        "SET TRANSACTION AS OF SYSTEM TIME follower_read_timestamp()"
    )
