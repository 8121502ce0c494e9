"""Quote reads through the Database's cache of quotes seen
(`QuoteTermsCache`) answer as a full read does, on SQLite and PostgreSQL:
used_by as stored now, a quote whose insert rolled back absent, and ones
the cache has not seen read in full."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from remitnet.services.adapters.db import migrate
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.quotes import QuoteTermsCache
from remitnet.services.adapters.db.unit_of_work import SqlUnitOfWork
from remitnet.services.domain.fx import Quote, QuoteTerms
from remitnet.services.domain.model import DEFAULT_PROVIDER


def _quote(now: datetime) -> Quote:
    terms = QuoteTerms(
        "USD", "EUR", 10_000, 9_150, Decimal("0.92"), Decimal("0.9154"), 50, 46, "USD/EUR"
    )
    return Quote(
        str(uuid.uuid4()),
        "BANKUS01",
        terms,
        now,
        now + timedelta(minutes=1),
        None,
        DEFAULT_PROVIDER,
    )


class _RolledBack(Exception):
    pass


def test_cached_quote_reads_answer_as_full_reads(db_url: str) -> None:
    db = Database(db_url)
    try:
        migrate.upgrade(db)
        now = datetime.now(UTC).replace(microsecond=0)
        unused, used, lost = _quote(now), _quote(now), _quote(now)
        transfer = str(uuid.uuid4())
        db.write("add", lambda uow: uow.quotes.add([unused, used]))

        def add_then_fail(uow: SqlUnitOfWork) -> None:
            uow.quotes.add([lost])
            raise _RolledBack

        with pytest.raises(_RolledBack):
            db.write("add", add_then_fail)
        assert db.quotes_seen.get([lost.quote_id])  # seen, but never stored
        ids = [unused.quote_id, used.quote_id, lost.quote_id, str(uuid.uuid4())]
        before = db.read(lambda uow: uow.quotes.get_many(ids))
        assert before == {unused.quote_id: unused, used.quote_id: used}
        db.write("use", lambda uow: uow.quotes.mark_used({used.quote_id: transfer}, now))
        cached = db.read(lambda uow: uow.quotes.get_many(ids))
        # Without the cache: every column from the rows.
        full = db.read(lambda uow: SqlUnitOfWork(uow.conn, db.features).quotes.get_many(ids))
        assert cached == full
        assert cached[used.quote_id].used_by == transfer
        assert cached[unused.quote_id].used_by is None
        # A cache that has seen none of them reads them in full, and keeps them.
        db.quotes_seen = QuoteTermsCache()
        assert db.read(lambda uow: uow.quotes.get_many(ids)) == full
        assert set(db.quotes_seen.get(ids)) == set(full)
    finally:
        db.dispose()


def test_the_cache_keeps_the_newest_within_its_bound() -> None:
    cache = QuoteTermsCache(limit=3)
    now = datetime.now(UTC)
    quotes = [_quote(now) for _ in range(5)]
    cache.put(quotes[:2])
    cache.put(quotes[2:])
    assert list(cache.get([q.quote_id for q in quotes])) == [q.quote_id for q in quotes[2:]]
