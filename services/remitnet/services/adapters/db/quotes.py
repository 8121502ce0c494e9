"""The FX repository: the FX providers' mid rates and the quotes banks take."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, text, tuple_, update

from remitnet.services.adapters.db.arrays import text_array
from remitnet.services.adapters.db.copy import code_field, copy_rows, text_field, time_field
from remitnet.services.adapters.db.dialect import Dialect
from remitnet.services.adapters.db.rows import utc
from remitnet.services.adapters.db.schema import fx_quotes, fx_rates
from remitnet.services.domain.fx import Quote, QuoteTerms, Rate

_QUOTE_COLUMNS = (
    "id", "bank_code", "source_currency", "target_currency", "source_amount", "target_amount",
    "mid_rate", "rate", "spread_bps", "fee", "derivation", "created_at", "expires_at",
    "provider",
)  # fmt: skip
_COPY_QUOTES = f"COPY fx_quotes ({', '.join(_QUOTE_COLUMNS)}) FROM STDIN"

# The ids as text: the driver's UUID objects cost a str() each after.
_QUOTES_ARRAYS = text(
    f"SELECT CAST(id AS TEXT), {', '.join(_QUOTE_COLUMNS[1:])}, CAST(used_by AS TEXT) "
    "FROM fx_quotes WHERE id IN (SELECT unnest(CAST(:ids AS UUID[])))"
)


# The same columns for the IN-list read (SQLite), so one converter reads both.
_QUOTE_ROW = (*(fx_quotes.c[name] for name in _QUOTE_COLUMNS), fx_quotes.c.used_by)


def _quote_of(r: Sequence[Any]) -> Quote:
    """A quote row: `_QUOTE_COLUMNS`, then used_by."""
    return Quote(
        str(r[0]),
        r[1],
        QuoteTerms(r[2], r[3], r[4], r[5], Decimal(r[6]), Decimal(r[7]), r[8], r[9], r[10]),
        utc(r[11]),
        utc(r[12]),
        None if r[14] is None else str(r[14]),
        r[13],
    )


_USED_BY_ARRAYS = text(
    "SELECT CAST(id AS TEXT), CAST(used_by AS TEXT) FROM fx_quotes "
    "WHERE id IN (SELECT unnest(CAST(:ids AS UUID[])))"
)

_MARK_QUOTES_USED_ARRAYS = text(
    "UPDATE fx_quotes SET used_by = v.tid, used_at = :now "
    "FROM unnest(CAST(:qids AS UUID[]), CAST(:tids AS UUID[])) AS v(qid, tid) "
    "WHERE fx_quotes.id = v.qid AND fx_quotes.used_by IS NULL"
)


def _copy_text(quotes: Sequence[Quote]) -> str:
    """The quotes as one COPY text payload: several times cheaper than the
    driver's row-by-row dumpers (as for a batch's transfers). The
    derivation is the only text not validated as a code."""
    stamps: dict[datetime, str] = {}
    lines = []
    for q in quotes:
        t = q.terms
        created, expires = time_field(stamps, q.created_at), time_field(stamps, q.expires_at)
        lines.append(
            f"{q.quote_id}\t{q.bank}\t{t.source_currency}\t{t.target_currency}\t"
            f"{t.source_amount}\t{t.target_amount}\t{t.mid_rate}\t{t.rate}\t{t.spread_bps}\t"
            f"{t.fee}\t{text_field(t.derivation)}\t{created}\t{expires}\t"
            f"{code_field(q.provider)}\n"
        )
    return "".join(lines)


class QuoteTermsCache:
    """The quotes one Database has stored or read, by id, as last seen: a
    quote's row never changes once stored but for `used_by`, and is never
    removed, so a read of quotes it holds need only ask which of them exist
    and whether they are used (`SqlQuotes.get_many`). The hub reads every
    quote twice a batch (decided ahead, then in its transaction), after
    storing it in CreateQuotes. An entry whose insert rolled back does no
    harm: a quote is returned only for a row the read finds. Bounded: the
    oldest entries go first; a miss costs only the full read."""

    def __init__(self, limit: int = 32_768) -> None:
        self._limit = limit
        self._quotes: dict[str, Quote] = {}
        self._lock = threading.Lock()  # unit-of-work threads share it

    def get(self, ids: Collection[str]) -> dict[str, Quote]:
        quotes = self._quotes
        with self._lock:
            return {i: q for i in ids if (q := quotes.get(i)) is not None}

    def put(self, quotes: Iterable[Quote]) -> None:
        held = self._quotes
        with self._lock:
            for q in quotes:
                held[q.quote_id] = q
            extra = len(held) - self._limit
            if extra > 0:
                for oldest in list(itertools.islice(held, extra)):
                    del held[oldest]


class SqlQuotes:
    """QuoteRepository over a Connection; `cache`: the Database's quotes
    seen (None: every read reads every column)."""

    __slots__ = ("cache", "conn", "dialect")

    def __init__(
        self, conn: Connection, dialect: Dialect, cache: QuoteTermsCache | None = None
    ) -> None:
        self.conn = conn
        self.dialect = dialect
        self.cache = cache

    def upsert_rates(self, rates: list[Rate], now: datetime) -> None:
        """Each rate as its provider's for its pair (mid, as_of and spread
        replaced together: a rate without a spread takes the hub's)."""
        if not rates:
            return
        conn = self.conn
        key = tuple_(fx_rates.c.provider, fx_rates.c.base, fx_rates.c.quote)
        present = set(
            conn.execute(
                select(fx_rates.c.provider, fx_rates.c.base, fx_rates.c.quote).where(
                    key.in_([(r.provider, r.base, r.quote) for r in rates])
                )
            ).tuples()
        )
        for r in rates:
            values = {
                "mid": str(r.mid),
                "as_of": r.as_of,
                "updated_at": now,
                "spread_bps": r.spread_bps,
            }
            if (r.provider, r.base, r.quote) in present:
                conn.execute(
                    update(fx_rates)
                    .where(
                        fx_rates.c.provider == r.provider,
                        fx_rates.c.base == r.base,
                        fx_rates.c.quote == r.quote,
                    )
                    .values(**values)
                )
            else:
                conn.execute(
                    insert(fx_rates).values(
                        provider=r.provider, base=r.base, quote=r.quote, **values
                    )
                )

    def delete_rates(self, keys: Collection[tuple[str, str, str]]) -> None:
        """Remove the stored rates keyed (provider, base, quote), if any."""
        if keys:
            key = tuple_(fx_rates.c.provider, fx_rates.c.base, fx_rates.c.quote)
            self.conn.execute(delete(fx_rates).where(key.in_(list(keys))))

    def rates(self) -> dict[tuple[str, str, str], Rate]:
        """Every provider's rates, keyed (provider, base, quote)."""
        rows = self.conn.execute(
            select(
                fx_rates.c.provider,
                fx_rates.c.base,
                fx_rates.c.quote,
                fx_rates.c.mid,
                fx_rates.c.as_of,
                fx_rates.c.spread_bps,
            )
        )
        return {
            (p, b, q): Rate(b, q, Decimal(m), utc(a), p, spread) for p, b, q, m, a, spread in rows
        }

    def add(self, quotes: Sequence[Quote]) -> None:
        if not quotes:
            return
        if self.cache is not None:
            self.cache.put(quotes)
        if self.dialect.copy:
            copy_rows(self.conn, _COPY_QUOTES, (_copy_text(quotes),))
            return
        self.conn.execute(
            insert(fx_quotes),
            [
                {
                    "id": q.quote_id,
                    "bank_code": q.bank,
                    "source_currency": q.terms.source_currency,
                    "target_currency": q.terms.target_currency,
                    "source_amount": q.terms.source_amount,
                    "target_amount": q.terms.target_amount,
                    "mid_rate": str(q.terms.mid_rate),
                    "rate": str(q.terms.rate),
                    "spread_bps": q.terms.spread_bps,
                    "fee": q.terms.fee,
                    "derivation": q.terms.derivation,
                    "created_at": q.created_at,
                    "expires_at": q.expires_at,
                    "provider": q.provider,
                }
                for q in quotes
            ],
        )

    def get_many(self, ids: Collection[str]) -> dict[str, Quote]:
        cache = self.cache
        if cache is None:
            return self._read(ids)
        known = cache.get(ids)
        if not known:
            found = self._read(ids)
            cache.put(found.values())
            return found
        # Which exist, and who used them: two columns, not fourteen.
        used = self._used_by(ids)
        quotes: dict[str, Quote] = {}
        unknown: list[str] = []
        for qid, used_by in used.items():
            quote = known.get(qid)
            if quote is None:
                unknown.append(qid)
            else:
                quotes[qid] = quote if quote.used_by == used_by else replace(quote, used_by=used_by)
        if unknown:
            rest = self._read(unknown)
            cache.put(rest.values())
            quotes.update(rest)
        return quotes

    def _read(self, ids: Collection[str]) -> dict[str, Quote]:
        if self.dialect.arrays:
            # A cross-currency batch reads a quote per item: one array
            # parameter and plain tuples instead of an IN list of a thousand
            # parameters and row mappings (a tenth of the hub's time).
            rows = self.conn.execute(_QUOTES_ARRAYS, {"ids": text_array(ids)}).all()
            return {r[0]: _quote_of(r) for r in rows}
        found = self.conn.execute(select(*_QUOTE_ROW).where(fx_quotes.c.id.in_(ids))).all()
        return {str(r[0]): _quote_of(r) for r in found}

    def _used_by(self, ids: Collection[str]) -> dict[str, str | None]:
        if self.dialect.arrays:
            rows = self.conn.execute(_USED_BY_ARRAYS, {"ids": text_array(ids)}).all()
            return {r[0]: r[1] for r in rows}
        found = self.conn.execute(
            select(fx_quotes.c.id, fx_quotes.c.used_by).where(fx_quotes.c.id.in_(ids))
        ).all()
        return {str(r[0]): None if r[1] is None else str(r[1]) for r in found}

    def mark_used(self, used: Mapping[str, str], now: datetime) -> None:
        """quote id -> the transfer id that used it."""
        if used and self.dialect.arrays:
            self.conn.execute(
                _MARK_QUOTES_USED_ARRAYS,
                {"qids": text_array(used), "tids": text_array(used.values()), "now": now},
            )
        elif used:
            self.conn.execute(
                update(fx_quotes)
                .where(fx_quotes.c.id == bindparam("qid"), fx_quotes.c.used_by.is_(None))
                .values(used_by=bindparam("tid"), used_at=now),
                [{"qid": q, "tid": t} for q, t in used.items()],
            )
