"""Fixtures: databases (SQLite files and PostgreSQL databases cloned from a
migrated template) and running hubs with real gRPC clients."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from remitnet.services.adapters.db import migrate
from remitnet.services.adapters.db.database import Database
from tests.support import HubHandle, start_hub

PG_HOST = os.environ.get("REMITNET_TEST_PG_HOST", "127.0.0.1")
PG_ADMIN_DSN = f"host={PG_HOST} port=5432 user=postgres dbname=postgres connect_timeout=5"


def pg_url(name: str) -> str:
    return f"postgresql://postgres@{PG_HOST}:5432/{name}"


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.encode())


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    try:
        _admin("SELECT 1")
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {PG_HOST}:5432 does not answer: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = f"remitnet_tpl_{os.getpid()}"
    _admin(f"DROP DATABASE IF EXISTS {name}")
    _admin(f"CREATE DATABASE {name}")
    db = Database(pg_url(name))
    migrate.upgrade(db)
    db.dispose()
    yield name
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_url(pg_template: str) -> Iterator[str]:
    name = f"remitnet_t_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    yield pg_url(name)
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def empty_postgres_url(pg_template: str) -> Iterator[str]:
    """A new PostgreSQL database with no schema yet (`pg_template`: only
    for its check that PostgreSQL answers)."""
    name = f"remitnet_e_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name}")
    yield pg_url(name)
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'remitnet.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A Database on `db_url` at the schema's head (a fresh SQLite file is
    migrated; PostgreSQL's copy of the template is there already)."""
    database = Database(db_url)
    migrate.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
async def hub(db_url: str) -> AsyncIterator[HubHandle]:
    handle = await start_hub(db_url)
    try:
        yield handle
    finally:
        await handle.stop()


@pytest.fixture
async def pg_hub(postgres_url: str) -> AsyncIterator[HubHandle]:
    handle = await start_hub(postgres_url)
    try:
        yield handle
    finally:
        await handle.stop()
