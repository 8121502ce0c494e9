"""Which database errors re-run a unit whole, which are the request's own
fault (refused with a reason), and which propagate."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, ProgrammingError

from remitnet.services.adapters.db.database import (
    Database,
    NotConnected,
    RetryPolicy,
    classify_retry,
    is_data_error,
)
from remitnet.services.domain.errors import Reason, Unavailable


class _Orig(Exception):
    def __init__(self, sqlstate: str | None, message: str = "") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            OperationalError("s", None, _Orig("40001", "could not serialize access")),
            "serialization",
        ),
        (
            OperationalError(
                "s",
                None,
                _Orig("40001", "restart transaction: TransactionRetryWithProtoRefreshError"),
            ),
            "restart",
        ),
        (
            OperationalError(
                "s", None, _Orig("40001", "could not serialize access due to concurrent update")
            ),
            "write_conflict",
        ),
        (
            OperationalError(
                "s",
                None,
                _Orig(
                    "40001",
                    "restart transaction: TransactionRetryWithProtoRefreshError: "
                    "TransactionRetryError: retry txn (RETRY_WRITE_TOO_OLD - WriteTooOld flag "
                    "converted to WriteTooOldError)",
                ),
            ),
            "write_conflict",
        ),
        (OperationalError("s", None, _Orig("40003", "result is ambiguous")), "ambiguous"),
        (
            OperationalError("s", None, _Orig(None, "result is ambiguous (lost quorum)")),
            "ambiguous",
        ),
        (OperationalError("s", None, _Orig("40P01", "deadlock detected")), "deadlock"),
        (IntegrityError("s", None, _Orig("23505", "duplicate key")), "unique"),
        (OperationalError("s", None, _Orig(None, "database is locked")), "locked"),
        (DataError("s", None, _Orig("22003", "bigint out of range")), None),
        (ProgrammingError("s", None, _Orig("42P01", "relation does not exist")), None),
        (ValueError("not a database error"), None),
    ],
)
def test_classify_retry(error: BaseException, reason: str | None) -> None:
    assert classify_retry(error) == reason


def test_lost_connection_is_retried_and_raw_driver_errors_are_classified() -> None:
    lost = OperationalError("COMMIT", None, _Orig(None, "server closed the connection"))
    lost.connection_invalidated = True
    assert classify_retry(lost) == "disconnect"
    assert classify_retry(psycopg.OperationalError("connection lost")) == "disconnect"
    assert classify_retry(psycopg.errors.SerializationFailure("conflict")) == "serialization"


def test_a_connection_never_made_is_retried_and_then_answered_unavailable() -> None:
    # What SQLAlchemy raises when the server restarts or is not up: nothing
    # was sent, so the transaction may run again; out of attempts, the
    # caller is told UNAVAILABLE DATABASE_UNAVAILABLE (retry).
    refused = psycopg.OperationalError(
        'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
        "FATAL:  the database system is shutting down"
    )
    made = OperationalError("select 1", None, refused)
    assert classify_retry(NotConnected(made)) == "connect"
    # Told by where it was raised (making the connection), not by the
    # driver's words: the same error from a statement is not retried.
    assert classify_retry(made) is None
    db = Database(
        "postgresql://postgres@127.0.0.1:1/none", retry=RetryPolicy(max_attempts=2, base_delay_s=0)
    )
    try:
        with pytest.raises(Unavailable) as read:
            db.read(lambda uow: None)
        with pytest.raises(Unavailable) as write:
            db.write("w", lambda uow: None)
        assert read.value.reason == write.value.reason == Reason.DATABASE_UNAVAILABLE
    finally:
        db.dispose()


@pytest.mark.parametrize(
    ("error", "data"),
    [
        (DataError("s", None, _Orig("22003", "bigint out of range")), True),
        (DataError("s", None, _Orig("22021", "invalid byte sequence")), True),
        (IntegrityError("s", None, _Orig("23514", "check constraint")), True),
        (IntegrityError("s", None, _Orig("23505", "duplicate key")), False),
        (psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), True),
        (IntegrityError("s", None, _Orig("23502", "null value violates not-null")), False),
        (IntegrityError("s", None, _Orig("23503", "foreign key violation")), False),
        (IntegrityError("s", None, Exception("NOT NULL constraint failed: t.x")), False),
        (OperationalError("s", None, _Orig("40001")), False),
        (OperationalError("s", None, _Orig("08006", "connection failure")), False),
    ],
)
def test_data_errors_are_the_requests_own(error: BaseException, data: bool) -> None:
    assert is_data_error(error) is data
