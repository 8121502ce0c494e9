"""COPY ... FROM STDIN on PostgreSQL (psycopg), in the unit's transaction:
for the statements that write thousands of rows at once (a batch's
transfers, a cycle's events, a settlement's ledger entries), several times
cheaper than a multi-row INSERT and its thousands of parameters."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection

NULL = "\\N"

# COPY's text format: tab-separated columns, \N for NULL, and backslash,
# tab, newline and carriage return escaped inside a value.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def text_field(value: str | None) -> str:
    """Free text (a reference, a reason) as a COPY field."""
    return NULL if value is None else value.translate(_ESCAPES)


def code_field(value: str | None) -> str:
    """A validated code, UUID or cycle id: nothing in it to escape."""
    return NULL if value is None else value


def time_field(stamps: dict[datetime, str], at: datetime) -> str:
    """`at` as a COPY field, formatted once per payload (`stamps`): the rows
    of one batch share a few times."""
    text = stamps.get(at)
    if text is None:
        text = stamps[at] = at.isoformat()
    return text


def copy_rows(conn: Connection, statement: str, lines: Iterable[str]) -> None:
    """Send `lines` (each a row ending in a newline) to `statement`, a
    COPY ... FROM STDIN, on the connection's own transaction."""
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write("".join(lines))
