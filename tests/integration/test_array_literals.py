"""Keys and amounts sent as one array literal (adapters/db/arrays.py) reach
PostgreSQL as the very lists they were: a code spelled NULL stays a string,
and a quote or backslash in a key survives."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from remitnet.services.adapters.db.arrays import int_array, nullable_text_array, text_array
from remitnet.services.adapters.db.database import Database


@pytest.fixture
def db(postgres_url: str) -> Any:
    database = Database(postgres_url)
    yield database
    database.dispose()


@pytest.mark.parametrize(
    "keys",
    [[], ["B00001"], ["NULL", "B00002/USD/liquidity", "A,B", "{x}", " pad "], ['a"b', "c\\d"]],
)
def test_text_arrays_arrive_as_sent(db: Database, keys: list[str]) -> None:
    with db.engine.connect() as conn:
        got = conn.execute(
            text("SELECT CAST(:k AS VARCHAR[])"), {"k": text_array(keys)}
        ).scalar_one()
    assert got == keys


def test_int_arrays_arrive_as_sent(db: Database) -> None:
    values = [0, -1, 2**63 - 1, -(2**63)]
    with db.engine.connect() as conn:
        got = conn.execute(text("SELECT CAST(:v AS BIGINT[])"), {"v": int_array(values)})
        assert got.scalar_one() == values
        empty = conn.execute(text("SELECT CAST(:v AS BIGINT[])"), {"v": int_array([])})
        assert empty.scalar_one() == []


@pytest.mark.parametrize(
    "values",
    [[], [None], [None, None], ["NULL", "x"], [None, "NULL", 'a"b', "c\\d", None, "A,B"]],
)
def test_nullable_text_arrays_arrive_as_sent(db: Database, values: list[str | None]) -> None:
    with db.engine.connect() as conn:
        got = conn.execute(
            text("SELECT CAST(:v AS VARCHAR[])"), {"v": nullable_text_array(values)}
        ).scalar_one()
    assert got == values
