"""FX use cases: the operator's rate feed and the banks' quotes."""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection

from remitnet.services.adapters.db import repository as repo
from remitnet.services.adapters.db.database import Database
from remitnet.services.domain.errors import InvalidArgument, NotFound, Reason, RemitnetError
from remitnet.services.domain.fx import Quote, Rate, check_fresh, derive, parse_rate, price
from remitnet.services.domain.model import canonical_uuid
from remitnet.services.domain.money import check_currency


@dataclass(frozen=True, slots=True)
class FxConfig:
    base_currency: str = "USD"
    default_spread_bps: int = 50
    # (source, target) -> spread in basis points
    corridor_spread_bps: dict[tuple[str, str], int] = field(default_factory=dict)
    quote_ttl: timedelta = timedelta(seconds=60)
    max_rate_age: timedelta = timedelta(minutes=10)

    def spread(self, source: str, target: str) -> int:
        return self.corridor_spread_bps.get((source, target), self.default_spread_bps)


def update_rates(db: Database, rates: list[tuple[str, str, str, datetime | None]]) -> list[Rate]:
    """Replace the mid rates of the given pairs (base, quote, decimal text, as-of)."""
    if not rates:
        raise InvalidArgument(Reason.INVALID_ARGUMENT, "no rates given")
    now = datetime.now(UTC)
    parsed = [parse_rate(b, q, text, as_of or now) for b, q, text, as_of in rates]
    if len({(r.base, r.quote) for r in parsed}) != len(parsed):
        raise InvalidArgument(Reason.INVALID_RATE, "a currency pair appears twice")

    def unit(conn: Connection) -> list[Rate]:
        repo.upsert_rates(conn, parsed, now)
        return parsed

    return db.write("update_rates", unit)


def list_rates(db: Database) -> list[Rate]:
    return sorted(db.read(repo.load_rates).values(), key=lambda r: (r.base, r.quote))


def load_rates_file(path: Path) -> list[tuple[str, str, str, datetime | None]]:
    """Rates from CSV (base,quote,rate[,as_of]) or JSON ([{base,quote,rate,as_of?}])."""
    text = path.read_text()
    is_json = path.suffix == ".json"
    rows: list[dict[str, str]] = (
        json.loads(text) if is_json else list(csv.DictReader(io.StringIO(text)))
    )
    out: list[tuple[str, str, str, datetime | None]] = []
    for row in rows:
        as_of = row.get("as_of")
        out.append(
            (
                row["base"].strip(),
                row["quote"].strip(),
                str(row["rate"]).strip(),
                datetime.fromisoformat(as_of) if as_of else None,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class QuoteAsk:
    """What a bank asks a quote for: a source amount to sell or a target
    amount to deliver (exactly one)."""

    source_currency: str
    target_currency: str
    source_amount: int | None = None
    target_amount: int | None = None


def create_quote(
    db: Database,
    config: FxConfig,
    bank: str,
    source_currency: str,
    target_currency: str,
    *,
    source_amount: int | None = None,
    target_amount: int | None = None,
) -> Quote:
    ask = QuoteAsk(source_currency, target_currency, source_amount, target_amount)
    [outcome] = create_quotes(db, config, bank, [ask])
    if isinstance(outcome, RemitnetError):
        raise outcome
    return outcome


def _check_ask(ask: QuoteAsk) -> None:
    check_currency(ask.source_currency)
    check_currency(ask.target_currency)
    if ask.source_currency == ask.target_currency:
        raise InvalidArgument(Reason.SAME_CURRENCY, "a quote converts between two currencies")


def _random_uuids(n: int) -> Iterator[str]:
    # One read of the OS's randomness for the whole batch: uuid4() reads it
    # once per id, which was a tenth of the batch quote path's time.
    raw = os.urandom(16 * n)
    return (str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, 16 * n, 16))


def create_quotes(
    db: Database, config: FxConfig, bank: str, asks: Sequence[QuoteAsk]
) -> list[Quote | RemitnetError]:
    """Price every ask on one snapshot of the rates and store the quotes in
    one transaction; a refused ask stores nothing and does not stop the others."""
    refused: dict[int, RemitnetError] = {}
    for index, ask in enumerate(asks):
        try:
            _check_ask(ask)
        except RemitnetError as err:
            refused[index] = err

    def unit(conn: Connection) -> list[Quote | RemitnetError]:
        now = datetime.now(UTC)
        rates = repo.load_rates(conn)
        ids = _random_uuids(len(asks))
        outcomes: list[Quote | RemitnetError] = []
        for index, ask in enumerate(asks):
            if index in refused:
                outcomes.append(refused[index])
                continue
            try:
                derived = derive(
                    rates, ask.source_currency, ask.target_currency, config.base_currency
                )
                check_fresh(derived, now, config.max_rate_age)
                terms = price(
                    derived,
                    source_currency=ask.source_currency,
                    target_currency=ask.target_currency,
                    spread_bps=config.spread(ask.source_currency, ask.target_currency),
                    source_amount=ask.source_amount,
                    target_amount=ask.target_amount,
                )
            except RemitnetError as err:
                outcomes.append(err)
                continue
            outcomes.append(Quote(next(ids), bank, terms, now, now + config.quote_ttl, None))
        repo.insert_quotes(conn, [q for q in outcomes if isinstance(q, Quote)])
        return outcomes

    return db.write("create_quotes", unit)


def get_quote(db: Database, bank: str | None, quote_id: str) -> Quote:
    qid = canonical_uuid(quote_id, "quote_id")

    def unit(conn: Connection) -> Quote:
        quote = repo.load_quotes(conn, [qid]).get(qid)
        if quote is None or (bank is not None and quote.bank != bank):
            raise NotFound(Reason.QUOTE_NOT_FOUND, f"no quote {qid}")
        return quote

    return db.read(unit)
