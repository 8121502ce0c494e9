"""Alembic migrations, run in-process (`remitnet db upgrade`, or at server
start for the embedded SQLite default)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from remitnet.services.adapters.db.cockroach import (
    RegionConfig,
    home_region_tables,
    is_cockroach,
    multi_region_ddl,
    read_region_columns,
)
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.schema import metadata

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _scripts() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def alembic_config(db: Database) -> Config:
    cfg = _scripts()
    cfg.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    cfg.attributes["database"] = db
    return cfg


def upgrade(db: Database, revision: str = "head", *, regions: str = "") -> None:
    command.upgrade(alembic_config(db), revision)
    if regions:
        apply_regions(db, regions)


def upgrade_at_start(db: Database) -> None:
    """`upgrade` as a hub starting runs it: when several start at once on a
    new database, one of them may fail creating what another has just
    created (PostgreSQL and CockroachDB run DDL in transactions that do
    not wait for each other's); that one goes on if the schema is at head
    now. (On SQLite the upgrade holds the file's write lock: they take
    turns.) In production a Job migrates and the services start with
    --no-migrate."""
    try:
        upgrade(db)
    except Exception:
        if current(db) != head():
            raise


def head() -> str | None:
    """The newest revision of the migrations."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_scripts()).get_current_head()


def apply_regions(db: Database, regions: str) -> list[str]:
    """CockroachDB multi-region layout: database regions, REGIONAL BY ROW
    per-bank tables, GLOBAL reference tables. Each statement on its own,
    outside a transaction, as CockroachDB requires for region changes.
    Idempotent: the per-bank tables' region columns are rebuilt only when
    missing or built for other regions."""
    if not is_cockroach(db.engine):
        raise SystemExit("--regions applies to cockroachdb:// databases only")
    config = RegionConfig.parse(make_url(db.url).database or "remitnet", regions)
    tables = metadata.sorted_tables
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        found = {t: read_region_columns(conn, t) for t in home_region_tables(tables)}
        statements = multi_region_ddl(config, tables, found)
        for statement in statements:
            conn.exec_driver_sql(statement)
    return statements


def current(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
