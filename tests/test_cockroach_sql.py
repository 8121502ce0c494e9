"""CockroachDB-specific SQL, compiled with the cockroachdb dialect (no cluster needed)."""

from __future__ import annotations

import importlib
import importlib.util
import io
import sys
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    MetaData,
    Select,
    String,
    Table,
    create_engine,
    func,
    select,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateTable
from sqlalchemy_cockroachdb.base import CockroachDBDialect

ROOT = Path(__file__).resolve().parents[1]


def _load(module: str, path: Path) -> ModuleType:
    try:
        return importlib.import_module(f"remitnet.services.adapters.db.{module}")
    except ImportError:
        # TODO: drop once the remitnet package is installed in every environment.
        return _load_file(f"_remitnet_{module}", path)


def _load_file(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


DB = ROOT / "services" / "remitnet" / "services" / "adapters" / "db"
crdb = _load("cockroach", DB / "cockroach.py")
schema = _load("schema", DB / "schema.py")  # the real tables
MIGRATION_0004 = _load_file(
    "_remitnet_migration_0004", next((DB / "migrations" / "versions").glob("0004_*.py"))
)
MIGRATION_0008 = _load_file(
    "_remitnet_migration_0008", next((DB / "migrations" / "versions").glob("0008_*.py"))
)
MIGRATION_0009 = _load_file(
    "_remitnet_migration_0009", next((DB / "migrations" / "versions").glob("0009_*.py"))
)

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
HUB_TABLES: list[Table] = list(schema.metadata.sorted_tables)
REGIONS = "us-east1,europe-west1,asia-southeast1"
CONFIG = crdb.RegionConfig.parse("remitnet", REGIONS)
HOMED = ["accounts", "positions", "transfers"]  # homed by migration 0004
FEED = ["feed_heads", "events"]  # created homed by migration 0005
LIFECYCLE = ["recalls", "iso_messages"]  # created homed by migrations 0009, 0010

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


EXPRESSION = (
    "CASE home_region WHEN 'us-east1' THEN 'us-east1' WHEN 'europe-west1' THEN 'europe-west1' "
    "WHEN 'asia-southeast1' THEN 'asia-southeast1' ELSE 'us-east1' END"
)
COLUMN = f"crdb_internal_region NOT VISIBLE NOT NULL AS ({EXPRESSION}) STORED"
MAPPING = "remitnet: home_region in (us-east1, europe-west1, asia-southeast1), else us-east1"


def test_regional_by_row_tables_come_from_the_metadata() -> None:
    """Every table of schema.py with a home_region column, other than the
    GLOBAL reference tables, is REGIONAL BY ROW on it; every table has a
    locality, so a new table cannot be forgotten."""
    with_column = {t.name for t in HUB_TABLES if "home_region" in t.c}
    assert with_column == {"banks", *HOMED, *FEED, *LIFECYCLE}
    assert crdb.home_region_tables(HUB_TABLES) == [
        t.name for t in HUB_TABLES if t.name in (*HOMED, *FEED, *LIFECYCLE)
    ]
    statements = crdb.multi_region_ddl(CONFIG, HUB_TABLES)
    by_row = {s.split('"')[1] for s in statements if "SET LOCALITY REGIONAL BY ROW" in s}
    global_ = {s.split('"')[1] for s in statements if s.endswith("SET LOCALITY GLOBAL")}
    assert by_row == {*HOMED, *FEED, *LIFECYCLE, *crdb.REHOMED_TABLES}
    assert not by_row & global_
    assert by_row | global_ == {t.name for t in HUB_TABLES}
    # A table added with a home_region column is homed by it too.
    extra = Table("remittance_docs", MetaData(), Column("id", String(8)), Column("home_region"))
    assert crdb.home_region_tables([*HUB_TABLES, extra])[-1] == "remittance_docs"


@pytest.mark.parametrize("table", HOMED)
def test_per_bank_rows_are_homed_by_a_computed_region_column(table: str) -> None:
    assert crdb.region_expression(CONFIG) == EXPRESSION
    assert crdb.region_column_ddl(table, CONFIG) == [
        f'ALTER TABLE "{table}" ADD COLUMN "crdb_region" {COLUMN}',
        f'ALTER TABLE "{table}" SET LOCALITY REGIONAL BY ROW AS "crdb_region"',
        f'COMMENT ON COLUMN "{table}"."crdb_region" IS \'{MAPPING}\'',
    ]
    # multi_region_ddl has exactly these for the table: no gateway default, no backfill.
    statements = crdb.multi_region_ddl(CONFIG, HUB_TABLES)
    assert [s for s in statements if f'"{table}"' in s] == crdb.region_column_ddl(table, CONFIG)


def test_single_region_maps_everything_to_it() -> None:
    single = crdb.RegionConfig("remitnet", ("europe-west1",))
    assert crdb.region_expression(single) == (
        "CASE home_region WHEN 'europe-west1' THEN 'europe-west1' ELSE 'europe-west1' END"
    )


def _region_of(home_region: str | None) -> str:
    """Evaluate the computed column's CASE (SQLite runs the same simple
    CASE ... WHEN ... ELSE ... END)."""
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        value = conn.exec_driver_sql(
            f"SELECT {crdb.region_expression(CONFIG)} FROM (SELECT ? AS home_region)",
            (home_region,),
        ).scalar_one()
    engine.dispose()
    return str(value)


@pytest.mark.parametrize(
    ("home_region", "region"),
    [
        ("us-east1", "us-east1"),
        ("europe-west1", "europe-west1"),
        ("asia-southeast1", "asia-southeast1"),
        ("asia-south1", "us-east1"),  # not a database region: the primary
        (schema.HUB_HOME_REGION, "us-east1"),  # the hub's own rows
        (None, "us-east1"),
    ],
)
def test_regions_the_database_lacks_map_to_the_primary(home_region: str, region: str) -> None:
    assert _region_of(home_region) == region


def test_an_up_to_date_table_gets_no_statements() -> None:
    done = {"crdb_region": MAPPING}
    assert crdb.region_column_ddl("transfers", CONFIG, done) == []
    statements = crdb.multi_region_ddl(CONFIG, HUB_TABLES, {t: done for t in HOMED})
    assert not any(f'"{t}"' in s for s in statements for t in HOMED)


@pytest.mark.parametrize(
    "comment",
    [
        "",  # the gateway-default column of the earlier layout
        "remitnet: home_region in (us-east1, europe-west1), else us-east1",  # a region added
        "remitnet: home_region in (europe-west1, us-east1, asia-southeast1), else europe-west1",
    ],
)
def test_another_region_column_is_replaced_the_documented_way(comment: str) -> None:
    assert crdb.region_column_ddl("positions", CONFIG, {"crdb_region": comment}) == [
        f'ALTER TABLE "positions" ADD COLUMN "crdb_region_new" {COLUMN}',
        f'COMMENT ON COLUMN "positions"."crdb_region_new" IS \'{MAPPING}\'',
        'ALTER TABLE "positions" RENAME COLUMN "crdb_region" TO "crdb_region_prev", '
        'RENAME COLUMN "crdb_region_new" TO "crdb_region"',
        'ALTER TABLE "positions" SET LOCALITY REGIONAL BY ROW AS "crdb_region"',
        'ALTER TABLE "positions" DROP COLUMN "crdb_region_prev"',
    ]


def test_an_interrupted_replacement_is_completed() -> None:
    locality = 'ALTER TABLE "accounts" SET LOCALITY REGIONAL BY ROW AS "crdb_region"'
    # Stopped after adding the new column: it is dropped and the work redone.
    redo = crdb.region_column_ddl("accounts", CONFIG, {"crdb_region": "", "crdb_region_new": ""})
    assert redo[0] == 'ALTER TABLE "accounts" DROP COLUMN "crdb_region_new"'
    assert redo[1:] == crdb.region_column_ddl("accounts", CONFIG, {"crdb_region": ""})
    # Stopped after the swap: point the locality at the new column, drop the old.
    swapped = {"crdb_region": MAPPING, "crdb_region_prev": ""}
    assert crdb.region_column_ddl("accounts", CONFIG, swapped) == [
        locality,
        'ALTER TABLE "accounts" DROP COLUMN "crdb_region_prev"',
    ]
    # Stopped before the comment of a fresh table: rebuilt under the comment.
    fresh = crdb.region_column_ddl("accounts", CONFIG, {"crdb_region": ""})
    assert fresh[-2:] == [locality, 'ALTER TABLE "accounts" DROP COLUMN "crdb_region_prev"']


def test_database_regions_come_first() -> None:
    statements = crdb.multi_region_ddl(CONFIG, HUB_TABLES)
    assert statements[:4] == crdb.database_regions_ddl(CONFIG)
    # Only the tables without a home_region column are rehomed by a backfill.
    updates = [s.split()[1] for s in statements if s.startswith("UPDATE")]
    assert updates == ['"postings"', '"fx_quotes"', '"ledger_entries"']


def test_rows_without_a_home_region_column_are_rehomed() -> None:
    postings_sql = crdb.rehome_rows_sql("postings", ("us-east1", "europe-west1"))
    assert postings_sql == (
        'UPDATE "postings" AS t SET "crdb_region" = b.home_region::crdb_internal_region '
        "FROM banks AS b WHERE b.code = t.owner "
        "AND b.home_region IN ('us-east1', 'europe-west1') "
        'AND t."crdb_region"::STRING != b.home_region'
    )
    ledger_sql = crdb.rehome_rows_sql("ledger_entries", ("us-east1",))
    assert "b.code = (SELECT a.owner FROM accounts AS a WHERE a.id = t.account_id)" in ledger_sql
    for table in ("banks", *HOMED):
        with pytest.raises(ValueError):
            crdb.rehome_rows_sql(table, ("us-east1",))
    assert crdb.regional_by_row_ddl("postings")[-1] == (
        'ALTER TABLE "postings" SET LOCALITY REGIONAL BY ROW AS "crdb_region"'
    )


def test_the_tables_have_a_home_region_column_on_cockroach() -> None:
    for table in HOMED:
        ddl = sql(CreateTable(schema.metadata.tables[table]), COCKROACH)
        assert "home_region VARCHAR(32) NOT NULL" in ddl, ddl


def test_migration_0004_backfills_before_not_null_outside_the_transaction() -> None:
    """On CockroachDB a column cannot be written in the transaction that adds
    it: the backfill runs between two transactions."""
    buffer = io.StringIO()
    context = MigrationContext.configure(
        dialect=COCKROACH,
        opts={"as_sql": True, "output_buffer": buffer, "transactional_ddl": True},
    )
    with Operations.context(context), context.begin_transaction():
        MIGRATION_0004.upgrade()
    script = [s.strip() for s in buffer.getvalue().split(";") if s.strip()]
    add = [f"ALTER TABLE {t} ADD COLUMN home_region VARCHAR(32)" for t in HOMED]
    not_null = [f"ALTER TABLE {t} ALTER COLUMN home_region SET NOT NULL" for t in HOMED]
    assert script[: len(add) + 2] == ["BEGIN", *add, "COMMIT"]
    assert script[-len(not_null) - 2 :] == ["BEGIN", *not_null, "COMMIT"]
    backfill = script[len(add) + 2 : -len(not_null) - 2]
    assert backfill == [
        "UPDATE accounts SET home_region = (SELECT banks.home_region FROM banks "
        "WHERE banks.code = accounts.owner) WHERE home_region IS NULL",
        "UPDATE accounts SET home_region = 'HUB' WHERE home_region IS NULL AND owner = 'HUB'",
        "UPDATE positions SET home_region = (SELECT banks.home_region FROM banks "
        "WHERE banks.code = positions.bank_code) WHERE home_region IS NULL",
        "UPDATE positions SET home_region = 'HUB' WHERE home_region IS NULL AND bank_code = 'HUB'",
        "UPDATE transfers SET home_region = (SELECT banks.home_region FROM banks "
        "WHERE banks.code = transfers.debtor_bank) WHERE home_region IS NULL",
    ]


def _script(migration: ModuleType, dialect: Dialect) -> list[str]:
    buffer = io.StringIO()
    context = MigrationContext.configure(
        dialect=dialect,
        opts={"as_sql": True, "output_buffer": buffer, "transactional_ddl": True},
    )
    with Operations.context(context), context.begin_transaction():
        migration.upgrade()
    return [" ".join(s.split()) for s in buffer.getvalue().split(";") if s.strip()]


REKEY_RATES = (
    "ALTER TABLE fx_rates DROP CONSTRAINT pk_fx_rates, "
    "ADD CONSTRAINT pk_fx_rates PRIMARY KEY (provider, base, quote)"
)


def test_migration_0008_rekeys_rates_and_adds_the_default_provider_after_its_columns() -> None:
    """On CockroachDB the new columns commit first; the rates' new key (one
    statement: the old key leaves no unique index behind) and the default
    provider's rows, which write the new columns, come after, outside that
    transaction. PostgreSQL runs it all in one."""
    added = [
        "ALTER TABLE banks ADD COLUMN roles SMALLINT DEFAULT '1' NOT NULL",
        "ALTER TABLE fx_rates ADD COLUMN provider VARCHAR(16) DEFAULT 'FXHUB' NOT NULL",
        "ALTER TABLE fx_rates ADD COLUMN spread_bps INTEGER",
        "ALTER TABLE fx_quotes ADD COLUMN provider VARCHAR(16)",
        "ALTER TABLE transfers ADD COLUMN fx_provider VARCHAR(16)",
    ]
    script = _script(MIGRATION_0008, COCKROACH)
    assert script[: len(added) + 2] == ["BEGIN", *added, "COMMIT"]
    after = script[len(added) + 2 :]
    assert after[0] == REKEY_RATES
    inserts = [s.split(" (")[0] for s in after[1:4]]
    assert inserts == ["INSERT INTO banks", "INSERT INTO feed_heads", "INSERT INTO accounts"]
    assert "'FXHUB', 'Hub FX provider', 'HUB', 1, CURRENT_TIMESTAMP, 2" in after[1]
    assert "FROM (SELECT DISTINCT currency FROM accounts WHERE owner = 'HUB')" in after[3]
    assert after[4:] == ["BEGIN", "COMMIT"]
    postgres = _script(MIGRATION_0008, POSTGRES)
    assert postgres[0] == "BEGIN" and postgres[-1] == "COMMIT"
    assert postgres.count("BEGIN") == 1 and REKEY_RATES in postgres


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


# The repository's insert paths, run against a stand-in connection that
# records what they would send.


class _Result:
    def tuples(self) -> _Result:
        return self

    def all(self) -> list[Any]:
        return []

    def __iter__(self) -> Iterator[Any]:
        return iter(())


class _Copy:
    def __init__(self, sink: list[tuple[str, list[tuple[Any, ...]]]], sql: str) -> None:
        self.rows: list[tuple[Any, ...]] = []
        sink.append((sql, self.rows))

    def __enter__(self) -> _Copy:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write(self, data: str) -> None:
        """COPY's text format: a row a line, tab-separated columns."""
        self.rows.extend(tuple(line.split("\t")) for line in data.splitlines())


class _Cursor(_Copy):
    def __init__(self, sink: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        self.sink = sink

    def copy(self, sql: str) -> _Copy:
        return _Copy(self.sink, sql)


class _Recorder:
    """A Connection on `dialect` that records statements instead of running them."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.executed: list[tuple[Any, Any]] = []
        self.copies: list[tuple[str, list[tuple[Any, ...]]]] = []
        self.connection = SimpleNamespace(
            driver_connection=SimpleNamespace(cursor=lambda: _Cursor(self.copies))
        )

    def execute(self, statement: Any, parameters: Any = None) -> _Result:
        self.executed.append((statement, parameters))
        return _Result()


REGIONS_OF = {"BANKUS01": "us-east1", "BANKPH01": "asia-southeast1"}


def _writes(dialect: Dialect) -> _Recorder:
    uow = pytest.importorskip("remitnet.services.adapters.db.unit_of_work")
    features = pytest.importorskip("remitnet.services.adapters.db.dialect")
    netting = pytest.importorskip("remitnet.services.domain.netting")
    model = pytest.importorskip("remitnet.services.domain.model")
    conn = _Recorder(dialect)
    repos = uow.SqlUnitOfWork(conn, features.Dialect.named(dialect.name))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    repos.accounts.add(
        "BANKPH01/USD/LIQUIDITY", "BANKPH01", "USD", "LIQUIDITY", now,
        home_region="asia-southeast1",
    )  # fmt: skip
    delta = netting.PositionDelta(5, 0, 1, 0, 0)
    repos.positions.add(
        {("USD-000001", "BANKUS01"): delta, ("USD-000001", model.HUB): delta}, REGIONS_OF
    )
    transfer = model.StoredTransfer(
        "3b1f0a5e-0000-4000-8000-000000000001", "BANKPH01", "BANKUS01", "USD", 5, "",
        model.TransferStatus.ACCEPTED, "USD-000001", now,
    )  # fmt: skip
    repos.transfers.add([transfer], REGIONS_OF)
    return conn


def test_inserts_write_the_home_region_on_cockroach() -> None:
    conn = _writes(COCKROACH)
    assert not [s for s, _ in conn.executed if isinstance(s, Select)]  # no region lookups
    (account, account_params), (upsert, upsert_params), (insert_transfers, rows) = conn.executed
    # The INSERT is built once; the row's values go with each execution.
    assert "home_region" in sql(account, COCKROACH)
    assert account_params["home_region"] == "asia-southeast1"
    upsert_sql = sql(upsert, COCKROACH)
    assert upsert_sql.startswith(
        "INSERT INTO positions (cycle_id, bank_code, sent, received, sent_count, "
        "received_count, fee, home_region) SELECT * FROM unnest("
    )
    assert "CAST(%(h)s AS VARCHAR[])) ON CONFLICT (cycle_id, bank_code) DO UPDATE" in upsert_sql
    assert "home_region =" not in upsert_sql.split("DO UPDATE")[1]  # never moved
    # Codes go as array literals (adapters/db/arrays.py): '{"A","B"}'.
    banks, homes = (upsert_params[k].strip("{}").replace('"', "").split(",") for k in "bh")
    assert dict(zip(banks, homes, strict=True)) == {
        "BANKUS01": "us-east1",
        "HUB": schema.HUB_HOME_REGION,
    }
    transfers_sql = str(insert_transfers.compile(dialect=COCKROACH, column_keys=list(rows[0])))
    assert "home_region" in transfers_sql
    assert [r["home_region"] for r in rows] == ["asia-southeast1"]  # the debtor's


def test_copy_writes_the_home_region_on_postgresql() -> None:
    conn = _writes(POSTGRES)
    ((copy_sql, rows),) = conn.copies
    assert copy_sql.startswith("COPY transfers (") and copy_sql.endswith(
        ", home_region) FROM STDIN"
    )
    assert [r[-1] for r in rows] == ["asia-southeast1"]


def test_copy_rows_carry_the_fx_provider_in_its_column() -> None:
    transfers_mod = pytest.importorskip("remitnet.services.adapters.db.transfers")
    model = pytest.importorskip("remitnet.services.domain.model")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    same = model.StoredTransfer(
        "3b1f0a5e-0000-4000-8000-000000000001", "BANKPH01", "BANKUS01", "USD", 5, "",
        model.TransferStatus.ACCEPTED, "USD-000001", now,
    )  # fmt: skip
    cross = same._replace(
        transfer_id="3b1f0a5e-0000-4000-8000-000000000002",
        quote_id="5c1d0e2a-3b4c-4d5e-8f90-a1b2c3d4e5f6",
        creditor_currency="PHP",
        creditor_amount=280,
        creditor_cycle_id="PHP-000001",
        fx_provider="FXHUB",
    )
    hub_era = cross._replace(transfer_id="3b1f0a5e-0000-4000-8000-000000000003", fx_provider=None)
    text = transfers_mod.copy_text_rows([same, cross, hub_era], REGIONS_OF)
    columns = list(transfers_mod._COPY_COLUMNS)
    rows = [dict(zip(columns, line.split("\t"), strict=True)) for line in text.splitlines()]
    assert [r["fx_provider"] for r in rows] == ["\\N", "FXHUB", "\\N"]
    assert [r["creditor_amount"] for r in rows] == ["\\N", "280", "280"]
    assert [r["home_region"] for r in rows] == ["asia-southeast1"] * 3
    # The row mapper reads the column back in the field's place.
    rows_mod = pytest.importorskip("remitnet.services.adapters.db.rows")
    assert rows_mod.TRANSFER_COLUMNS[14].name == "fx_provider"
    values = (*cross[:9], cross.quote_id, "PHP", 280, "PHP-000001", 0, "FXHUB")
    assert rows_mod.transfer_of((*values, None, None, None, None, None, None)) == cross


def test_the_operator_audit_trail_is_global() -> None:
    """Written by rare operator actions (in the transaction that closes or
    settles a cycle, GLOBAL too) and read from every region (a settled
    cycle's audit chain head in GetCycle): reference-like, not per bank."""
    assert "home_region" not in schema.operator_audit_log.c
    statements = crdb.multi_region_ddl(CONFIG, HUB_TABLES)
    assert 'ALTER TABLE "operator_audit_log" SET LOCALITY GLOBAL' in statements
    assert not any("operator_audit_log" in s and "REGIONAL" in s for s in statements)


# The scheme lifecycle (issue 14, migration 0009).

TRANSFER_INDEXES_0009 = [
    "CREATE INDEX ix_transfers_reserved_deadline ON transfers (deadline) WHERE status = 5",
    "CREATE UNIQUE INDEX uq_transfers_return_of ON transfers (return_of) "
    "WHERE return_of IS NOT NULL",
    "CREATE INDEX ix_transfers_debtor_bank_resolved_at ON transfers (debtor_bank, resolved_at) "
    "WHERE resolved_at IS NOT NULL",
    "CREATE INDEX ix_transfers_creditor_bank_resolved_at ON transfers "
    "(creditor_bank, resolved_at) WHERE resolved_at IS NOT NULL",
]


def test_migration_0009_indexes_the_new_transfer_columns_after_they_commit() -> None:
    """On CockroachDB the new columns (and the recalls table) commit first;
    the partial indexes over the transfers' new columns are built after,
    outside that transaction. PostgreSQL runs it all in one."""
    added = [
        "ALTER TABLE banks ADD COLUMN requires_confirmation SMALLINT DEFAULT '0' NOT NULL",
        "ALTER TABLE accounts ADD COLUMN reserved BIGINT DEFAULT '0' NOT NULL",
        "ALTER TABLE transfers ADD COLUMN deadline TIMESTAMP WITH TIME ZONE",
        "ALTER TABLE transfers ADD COLUMN resolved_at TIMESTAMP WITH TIME ZONE",
        "ALTER TABLE transfers ADD COLUMN reason VARCHAR(140)",
        "ALTER TABLE transfers ADD COLUMN return_of UUID",
        "ALTER TABLE transfers ADD COLUMN returned_by UUID",
    ]
    script = _script(MIGRATION_0009, COCKROACH)
    assert script[: len(added) + 1] == ["BEGIN", *added]
    commit = script.index("COMMIT")
    recalls = script[len(added) + 1 : commit]
    assert recalls[0].startswith("CREATE TABLE recalls (")
    assert "home_region VARCHAR(32) NOT NULL" in recalls[0]
    assert "CONSTRAINT uq_recalls_transfer_id UNIQUE (transfer_id)" in recalls[0]
    assert recalls[1:] == [
        "CREATE INDEX ix_recalls_requested_deadline ON recalls (deadline) WHERE state = 1",
        "CREATE INDEX ix_recalls_debtor_bank_requested_at ON recalls (debtor_bank, requested_at)",
        "CREATE INDEX ix_recalls_creditor_bank_requested_at ON recalls "
        "(creditor_bank, requested_at)",
    ]
    assert script[commit + 1 :] == [*TRANSFER_INDEXES_0009, "BEGIN", "COMMIT"]
    postgres = _script(MIGRATION_0009, POSTGRES)
    assert postgres[0] == "BEGIN" and postgres[-1] == "COMMIT" and postgres.count("BEGIN") == 1
    assert postgres[-len(TRANSFER_INDEXES_0009) - 1 : -1] == TRANSFER_INDEXES_0009


def test_recalls_are_homed_with_their_debtor() -> None:
    """The recalls table has a home_region (the debtor's): REGIONAL BY ROW
    on a region computed from it, like transfers."""
    assert crdb.region_column_ddl("recalls", CONFIG) == [
        f'ALTER TABLE "recalls" ADD COLUMN "crdb_region" {COLUMN}',
        'ALTER TABLE "recalls" SET LOCALITY REGIONAL BY ROW AS "crdb_region"',
        f'COMMENT ON COLUMN "recalls"."crdb_region" IS \'{MAPPING}\'',
    ]
    statements = crdb.multi_region_ddl(CONFIG, HUB_TABLES)
    assert [s for s in statements if '"recalls"' in s] == crdb.region_column_ddl("recalls", CONFIG)


def _lifecycle_writes(dialect: Dialect) -> list[tuple[str, Any]]:
    """Every new write and read of the lifecycle repositories, as the
    dialect compiles them (with their parameters)."""
    uow = pytest.importorskip("remitnet.services.adapters.db.unit_of_work")
    features = pytest.importorskip("remitnet.services.adapters.db.dialect")
    model = pytest.importorskip("remitnet.services.domain.model")
    lifecycle = pytest.importorskip("remitnet.services.domain.lifecycle")
    conn = _Recorder(dialect)
    repos = uow.SqlUnitOfWork(conn, features.Dialect.named(dialect.name))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    held = model.StoredTransfer(
        "3b1f0a5e-0000-4000-8000-000000000001", "BANKPH01", "BANKUS01", "USD", 5, "",
        model.TransferStatus.RESERVED, "", now, deadline=now,
    )  # fmt: skip
    recall = lifecycle.Recall(
        "3b1f0a5e-0000-4000-8000-0000000000aa", held.transfer_id, "BANKPH01", "BANKUS01", "DUPL",
        "", lifecycle.RecallState.REQUESTED, now, now,
    )  # fmt: skip
    repos.accounts.add_reserved({"BANKPH01/USD/LIQUIDITY": 5})
    repos.transfers.resolve([held.resolved(model.TransferStatus.ACCEPTED, now, cycle_id="USD-1")])
    repos.transfers.mark_returned({held.transfer_id: "3b1f0a5e-0000-4000-8000-000000000002"})
    repos.transfers.due(now, 5_000)
    repos.transfers.cancel(held.transfer_id, now, "operator")
    repos.recalls.update([recall.answered(lifecycle.RecallState.EXPIRED, now)])
    repos.recalls.due(now, 5_000)
    repos.recalls.of_transfers([held.transfer_id])
    repos.banks.set_requires_confirmation("BANKUS01", True)
    repos.transfers.add([held], REGIONS_OF)
    return [(sql(s, dialect), p) for s, p in conn.executed]


def test_the_lifecycle_statements_compile_on_cockroach() -> None:
    """With array parameters (CockroachDB, as PostgreSQL): one statement
    per set; the expirer's reads are ranges of the partial indexes, in
    their order, their predicates literals."""
    (
        (reserve, reserve_params),
        (resolve, resolve_params),
        (returned, returned_params),
        (due, _),
        (cancel, _),
        (recalls, recalls_params),
        (recalls_due, _),
        (of_transfers, _),
        (confirm, _),
        (insert_transfer, rows),
    ) = _lifecycle_writes(COCKROACH)
    assert reserve.startswith(
        "UPDATE accounts SET reserved = accounts.reserved + v.delta FROM unnest("
    )
    assert reserve_params == {"ids": '{"BANKPH01/USD/LIQUIDITY"}', "deltas": "{5}"}
    assert resolve.startswith("UPDATE transfers SET status = v.status, cycle_id = v.cycle_id")
    assert "CAST(%(resolved)s AS TIMESTAMPTZ[])" in resolve
    assert resolve_params["statuses"] == [1] and resolve_params["ccycles"] == [None]
    assert returned.startswith("UPDATE transfers SET returned_by = v.returned_by FROM unnest(")
    assert list(returned_params) == ["ids", "returns"]
    assert "WHERE transfers.status = 5 AND transfers.deadline <= %(deadline_1)s" in due
    assert due.endswith("ORDER BY transfers.deadline LIMIT %(param_1)s")
    assert cancel == (
        "UPDATE transfers SET status=%(status)s, cancelled_at=%(cancelled_at)s, "
        "resolved_at=CASE WHEN (transfers.status = %(status_1)s) THEN %(param_1)s "
        "ELSE transfers.resolved_at END, reason=%(reason)s WHERE transfers.id = %(id_1)s::UUID"
    )
    assert recalls.startswith("UPDATE recalls SET state = v.state, answered_at = v.answered_at")
    assert recalls_params["states"] == [4] and recalls_params["returns"] == [None]
    assert "WHERE recalls.state = 1 AND recalls.deadline <= %(deadline_1)s" in recalls_due
    assert recalls_due.endswith("ORDER BY recalls.deadline LIMIT %(param_1)s")
    assert "recalls.transfer_id IN (SELECT unnest(CAST(%(param_1)s AS UUID[]))" in of_transfers
    assert confirm.startswith("UPDATE banks SET requires_confirmation=")
    # No COPY on CockroachDB: the lifecycle columns go in the INSERT.
    assert insert_transfer.startswith("INSERT INTO transfers (")
    assert rows[0]["deadline"] is not None and rows[0]["return_of"] is None


def test_the_lifecycle_writes_are_executemany_on_sqlite() -> None:
    sqlite = create_engine("sqlite://").dialect
    written = _lifecycle_writes(sqlite)
    assert not any("unnest" in s for s, _ in written)
    updates = [(s, p) for s, p in written if s.startswith("UPDATE")]
    assert [p is not None and isinstance(p, list) for _, p in updates[:3]] == [True] * 3


def test_copy_rows_carry_the_lifecycle_columns() -> None:
    """A reserved cross-currency transfer has no creditor leg cycle yet
    (NULL, not "None"); a return carries its original and reason."""
    transfers_mod = pytest.importorskip("remitnet.services.adapters.db.transfers")
    model = pytest.importorskip("remitnet.services.domain.model")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    held = model.StoredTransfer(
        "3b1f0a5e-0000-4000-8000-000000000001", "BANKPH01", "BANKUS01", "USD", 5, "",
        model.TransferStatus.RESERVED, "", now, "5c1d0e2a-3b4c-4d5e-8f90-a1b2c3d4e5f6", "PHP",
        280, None, 0, "FXHUB", now,
    )  # fmt: skip
    back = model.StoredTransfer(
        "3b1f0a5e-0000-4000-8000-000000000002", "BANKUS01", "BANKPH01", "USD", 5, "",
        model.TransferStatus.ACCEPTED, "USD-000001", now, reason="AC04\tx",
        return_of=held.transfer_id,
    )  # fmt: skip
    text = transfers_mod.copy_text_rows([held, back], REGIONS_OF)
    columns = list(transfers_mod._COPY_COLUMNS)
    assert columns[-5:] == ["deadline", "reason", "return_of", "purpose", "home_region"]
    rows = [dict(zip(columns, line.split("\t"), strict=True)) for line in text.splitlines()]
    assert [r["creditor_cycle_id"] for r in rows] == ["\\N", "\\N"]
    assert [r["deadline"] for r in rows] == [now.isoformat(), "\\N"]
    assert [r["reason"] for r in rows] == ["\\N", "AC04\\tx"]
    assert [r["return_of"] for r in rows] == ["\\N", held.transfer_id]
    rows_mod = pytest.importorskip("remitnet.services.adapters.db.rows")
    assert [c.name for c in rows_mod.TRANSFER_COLUMNS] == [
        "id", "debtor_bank", "creditor_bank", "currency", "amount", "remittance_info", "status",
        "cycle_id", "accepted_at", "quote_id", "creditor_currency", "creditor_amount",
        "creditor_cycle_id", "fee", "fx_provider", "deadline", "resolved_at", "reason",
        "return_of", "returned_by", "purpose",
    ]  # fmt: skip
    assert len(model.StoredTransfer._fields) == len(rows_mod.TRANSFER_COLUMNS)


@pytest.mark.parametrize(
    "module, name, writes",
    [
        ("feed", "_PUBLISH_ARRAYS", ("UPDATE feed_heads ", "INSERT INTO events ")),
        ("ledger", "_POST_ARRAYS", ("UPDATE accounts ", "INSERT INTO ledger_entries ")),
    ],
)
def test_one_statement_closes_and_settles_writing_each_table_once(
    module: str, name: str, writes: tuple[str, str]
) -> None:
    """A close's or a settlement's events and a posting's entries go with
    their heads' and accounts' advance in one statement: CockroachDB refuses
    one that modifies a table in two subqueries, and reads in it see the
    table as it was before it (as on PostgreSQL)."""
    mod = pytest.importorskip(f"remitnet.services.adapters.db.{module}")
    stmt = getattr(mod, name)
    text = sql(stmt, COCKROACH)
    assert [text.count(w) for w in writes] == [1, 1], text
    assert text.count("UPDATE ") + text.count("INSERT ") == 2, text
    # Keys are joined to unnest(), never `= ANY` (a generic plan's filter).
    assert "= ANY" not in text and "unnest(CAST(" in text
    assert "%(" in text  # bound parameters, psycopg-style
