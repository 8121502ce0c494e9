"""The quote repository's two reads agree on SQLite and PostgreSQL: a
batch decided ahead reads only whether its quotes are used (`used_by`),
and gets what a full read (`get_many`) would have told it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from remitnet.services.adapters.db import migrate
from remitnet.services.adapters.db.database import Database
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


def test_used_by_reads_what_get_many_reads(db_url: str) -> None:
    db = Database(db_url)
    try:
        migrate.upgrade(db)
        now = datetime.now(UTC).replace(microsecond=0)
        unused, used = _quote(now), _quote(now)
        transfer = str(uuid.uuid4())
        db.write("add", lambda uow: uow.quotes.add([unused, used]))
        db.write("use", lambda uow: uow.quotes.mark_used({used.quote_id: transfer}, now))
        absent = str(uuid.uuid4())
        ids = [unused.quote_id, used.quote_id, absent]
        full = db.read(lambda uow: uow.quotes.get_many(ids))
        narrow = db.read(lambda uow: uow.quotes.used_by(ids))
        assert narrow == {unused.quote_id: None, used.quote_id: transfer}
        assert narrow == {qid: q.used_by for qid, q in full.items()}
    finally:
        db.dispose()
