"""What the database behind a URL can do, decided once per Database.

The repositories consult a `Dialect` instead of testing the connection's
dialect name inline: every fast path (COPY, array parameters) and every
database-specific statement is chosen from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import make_url

from remitnet.services.adapters.db.cockroach import DIALECT_NAME as COCKROACHDB

POSTGRESQL = "postgresql"
SQLITE = "sqlite"


@dataclass(frozen=True, slots=True)
class Dialect:
    """The capabilities of one database dialect.

    copy: COPY ... FROM STDIN through the psycopg connection, in the same
        transaction (PostgreSQL): the batch's transfers and quotes.
    arrays: array parameters (`unnest(CAST(:x AS T[]))`, `IN (SELECT unnest(:ids))`):
        one statement for N rows (PostgreSQL, CockroachDB). Without them a
        set is written with one executemany (one statement per row).
    follower_reads: bounded-stale reads from the nearest replica
        (`AS OF SYSTEM TIME follower_read_timestamp()`, CockroachDB).
    snapshot_reads: reads on a read-only REPEATABLE READ snapshot, which
        never fail with a serialization error (PostgreSQL).
    file_locks: one writer at a time on a database file, serializable by
        BEGIN IMMEDIATE taking the write lock up front (SQLite).
    """

    name: str
    copy: bool = False
    arrays: bool = False
    follower_reads: bool = False
    snapshot_reads: bool = False
    file_locks: bool = False

    @property
    def executemany(self) -> bool:
        """Sets go row by row in one executemany (no array parameters)."""
        return not self.arrays

    @classmethod
    def named(cls, name: str) -> Dialect:
        """The capabilities of the SQLAlchemy backend `name`."""
        if name == POSTGRESQL:
            return cls(name, copy=True, arrays=True, snapshot_reads=True)
        if name == COCKROACHDB:
            return cls(name, arrays=True, follower_reads=True)
        if name == SQLITE:
            return cls(name, file_locks=True)
        return cls(name)

    @classmethod
    def of_url(cls, url: str) -> Dialect:
        return cls.named(make_url(url).get_backend_name())
