"""Engines and the serializable unit-of-work runner.

Every unit that moves money runs in one SERIALIZABLE transaction and is
retried whole on serialization failure, deadlock, CockroachDB restart errors,
SQLite lock contention and lost connections, with jittered exponential
backoff and a bound. Every unit is keyed (transfer id, posting id, cycle id),
and its first act is to look its key up, so re-running it after an ambiguous
commit (SQLSTATE 40003, or a connection lost during COMMIT) finds the first
run's effect instead of repeating it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError

from remitnet.services.adapters import metrics
from remitnet.services.adapters.db.cockroach import SET_TRANSACTION_FOLLOWER_READ
from remitnet.services.adapters.db.dialect import Dialect
from remitnet.services.adapters.db.quotes import QuoteTermsCache
from remitnet.services.adapters.db.unit_of_work import SqlUnitOfWork
from remitnet.services.domain.errors import (
    Aborted,
    Reason,
    RemitnetError,
    Unavailable,
    UnstorableValue,
)
from remitnet.services.service_layer.unit_of_work import Transactions

T = TypeVar("T")
log = logging.getLogger(__name__)

FaultHook = Callable[[Connection, str, int], None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 12
    base_delay_s: float = 0.002
    max_delay_s: float = 0.25

    def delay(self, attempt: int) -> float:
        # Full jitter: spreads retries of conflicting writers apart.
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))


def normalize_url(url: str) -> str:
    """Pick the psycopg 3 driver for postgresql:// and cockroachdb:// URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername == "cockroachdb":
        parsed = parsed.set(drivername="cockroachdb+psycopg")
    return parsed.render_as_string(hide_password=False)


class NotConnected(Exception):
    """The pool could not make a connection for a transaction: raised where
    the connection is made, before any statement, so it says by where it
    comes from, not by a driver's wording, that nothing was sent."""


def _connect(engine: Engine) -> Connection:
    try:
        return engine.connect()
    except DBAPIError as exc:
        raise NotConnected(str(exc)) from exc


def classify_retry(exc: BaseException) -> str | None:
    """Why a failed transaction may be re-run whole, or None if it may not.
    Errors come wrapped by SQLAlchemy, or raw from psycopg where the batch
    path talks to the driver directly (COPY)."""
    if isinstance(exc, NotConnected):
        # No connection was made (the server restarts, refuses, is not up
        # yet): nothing was sent, so the whole transaction may run again.
        return "connect"
    if isinstance(exc, DBAPIError):
        orig: object = exc.orig
        invalidated = exc.connection_invalidated
    elif isinstance(exc, psycopg.Error):
        orig = exc
        invalidated = isinstance(exc, psycopg.OperationalError)
    else:
        return None
    sqlstate = sqlstate_of(exc)
    message = str(orig).lower()
    if sqlstate == "40003" or "result is ambiguous" in message:
        return "ambiguous"
    if sqlstate == "40001":
        # Two writers of one row (PostgreSQL: "concurrent update";
        # CockroachDB: WriteTooOld) tell an operator of hot rows, as
        # against a read/write cycle (SSI) or another restart.
        if "concurrent update" in message or "concurrent delete" in message:
            return "write_conflict"
        if "restart transaction" in message:
            return (
                "write_conflict"
                if "writetooold" in message or "write_too_old" in message
                else "restart"
            )
        return "serialization"
    if sqlstate == "40P01":
        return "deadlock"
    if sqlstate == "23505":
        # A concurrent writer inserted the same key between our read and our
        # insert; the re-run reads it and answers from it.
        return "unique"
    if "database is locked" in message or "database table is locked" in message:
        return "locked"
    if invalidated:
        return "disconnect"
    return None


def exhausted(unit: str, attempt: int, reason: str) -> RemitnetError:
    """What a caller is told when a transaction's retries ran out: retry."""
    if reason == "connect":
        return Unavailable(
            Reason.DATABASE_UNAVAILABLE,
            f"{unit}: the database did not accept a connection in {attempt} attempts; retry",
        )
    return Aborted(
        Reason.RETRIES_EXHAUSTED,
        f"{unit} did not commit after {attempt} attempts ({reason}); retry",
    )


def sqlstate_of(exc: BaseException) -> str | None:
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(state) if state else None


def is_data_error(exc: BaseException) -> bool:
    """SQLSTATE class 22 (data exception: a value out of range, a character
    the type cannot hold) or 23514 (a CHECK constraint): the request's own
    values, so the same input fails the same way again. Other integrity
    violations (NOT NULL, foreign keys) would be the hub's bugs, not the
    caller's, and stay internal errors."""
    state = sqlstate_of(exc)
    if state is None:
        # No SQLSTATE from SQLite, nor from psycopg for what it refuses
        # client-side (NUL in text during COPY): the exception type tells.
        return isinstance(exc, (DataError, psycopg.DataError))
    return state[:2] == "22" or state == "23514"


def unstorable(exc: BaseException) -> UnstorableValue:
    state = sqlstate_of(exc) or "none"
    return UnstorableValue(
        Reason.UNSTORABLE_VALUE,
        f"the database refused a value of this request (SQLSTATE {state}); nothing was stored",
        sqlstate=state,
    )


class Database:
    """The engines of one database URL and the unit-of-work runner: the
    `Transactions` of the service layer. Each attempt's function gets a
    SqlUnitOfWork on that attempt's connection."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 8,
        retry: RetryPolicy | None = None,
        echo: bool = False,
    ) -> None:
        self.url = normalize_url(url)
        self.retry = retry or RetryPolicy()
        # Test and chaos hooks: called inside the transaction just before
        # COMMIT, and just after a successful COMMIT.
        self.fault_hook: FaultHook | None = None
        self.after_commit_hook: Callable[[str], None] | None = None
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        # What the database can do, decided once: the repositories of every
        # unit of work consult it (COPY, array parameters, follower reads).
        self.features = Dialect.named(self.dialect)
        # Quotes' rows change only in used_by: what was read once is not
        # read again in full (SqlQuotes.get_many).
        self.quotes_seen = QuoteTermsCache()
        kwargs: dict[str, Any] = {"echo": echo}
        if self.features.file_locks:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            self.engine = create_engine(self.url, **kwargs)
            self.read_engine = create_engine(self.url, **kwargs)
            _configure_sqlite(self.engine, begin="BEGIN IMMEDIATE")
            _configure_sqlite(self.read_engine, begin="BEGIN")
        else:
            # No ping at each checkout: it was a round trip before every
            # transaction (4% of the hub's samples on the FX batch path). A
            # pooled connection the server dropped fails the transaction's
            # first statement instead, SQLAlchemy then discards the whole
            # pool, and `write` and `read` re-run the transaction on a new
            # connection ("disconnect" in classify_retry): nothing had been
            # sent, so the re-run is safe.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size * 2)
            self.engine = create_engine(self.url, isolation_level="SERIALIZABLE", **kwargs)
            if self.features.snapshot_reads:
                # Reads are a consistent snapshot that can never fail with a
                # serialization error; money decisions never use them.
                self.read_engine = self.engine.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            else:
                self.read_engine = self.engine

    def write(self, unit: str, fn: Callable[[SqlUnitOfWork], T]) -> T:
        """Run `fn` in one serializable transaction, retried whole."""
        attempt = 0
        while True:
            attempt += 1
            try:
                with _connect(self.engine) as conn, conn.begin():
                    result = fn(SqlUnitOfWork(conn, self.features, self.quotes_seen))
                    if self.fault_hook is not None:
                        self.fault_hook(conn, unit, attempt)
            except (DBAPIError, psycopg.Error, NotConnected) as exc:
                reason = classify_retry(exc)
                if reason is None:
                    metrics.DB_TRANSACTIONS.labels(unit, "failed").inc()
                    if is_data_error(exc):
                        raise unstorable(exc) from exc
                    raise
                if attempt >= self.retry.max_attempts:
                    metrics.DB_TRANSACTIONS.labels(unit, "failed").inc()
                    raise exhausted(unit, attempt, reason) from exc
                metrics.DB_RETRIES.labels(unit, reason).inc()
                log.debug("retrying %s after %s (attempt %d)", unit, reason, attempt)
                time.sleep(self.retry.delay(attempt))
                continue
            metrics.DB_TRANSACTIONS.labels(unit, "committed").inc()
            if self.after_commit_hook is not None:
                self.after_commit_hook(unit)
            return result

    def read(self, fn: Callable[[SqlUnitOfWork], T], *, stale_ok: bool = False) -> T:
        """Run `fn` on a consistent snapshot, for status and reports. With
        stale_ok, CockroachDB serves it from the nearest replica as of a few
        seconds ago (follower reads): for dashboards and reports, never for a
        money decision or for resolving an ambiguous outcome."""
        attempt = 0
        while True:
            attempt += 1
            try:
                with _connect(self.read_engine) as conn, conn.begin():
                    if stale_ok and self.features.follower_reads:
                        conn.execute(SET_TRANSACTION_FOLLOWER_READ)
                    return fn(SqlUnitOfWork(conn, self.features, self.quotes_seen))
            except (DBAPIError, NotConnected) as exc:
                if is_data_error(exc):
                    # A key the database cannot even hold (NUL in an id) can
                    # match nothing: the caller's input, not the hub's fault.
                    raise unstorable(exc) from exc
                reason = classify_retry(exc)
                if reason is None:
                    raise
                if attempt >= self.retry.max_attempts:
                    # As `write` answers: the caller may retry (a restart of
                    # the database outlasted the attempts), not an internal
                    # error.
                    raise exhausted("a read", attempt, reason) from exc
                time.sleep(self.retry.delay(attempt))

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


def _transactions(db: Database) -> Transactions:
    """mypy --strict checks here that Database is the service layer's
    Transactions."""
    return db


def _configure_sqlite(engine: Engine, *, begin: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN IMMEDIATE takes the
        # write lock up front: SQLite's only way to be serializable without
        # lock-upgrade deadlocks.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)
