"""FX use cases: the operator's rate feed and the banks' quotes."""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from remitnet.services.domain.audit_trail import HUB_PRINCIPAL, Action, time_text
from remitnet.services.domain.decision import no_account, party_refusal
from remitnet.services.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Reason,
    RemitnetError,
)
from remitnet.services.domain.fx import Quote, Rate, check_fresh, derive, parse_rate, price
from remitnet.services.domain.model import AccountKind, canonical_uuid
from remitnet.services.domain.money import check_currency
from remitnet.services.service_layer.unit_of_work import Transactions, UnitOfWork

MAX_RATES = 10_000  # per UpdateRates call, as for the batch calls


class FxConfigError(InvalidArgument, ValueError):
    """A bad FX setting, found when the settings are built (the CLI reports
    it as an error line, not a traceback)."""


@dataclass(frozen=True, slots=True)
class FxConfig:
    """FX settings, checked when built: a bad spread, TTL or currency fails
    at start, not on the first quote."""

    base_currency: str = "USD"
    default_spread_bps: int = 50
    # (source, target) -> spread in basis points, 0 to 9999
    corridor_spread_bps: Mapping[tuple[str, str], int] = field(default_factory=dict)
    quote_ttl: timedelta = timedelta(seconds=60)
    max_rate_age: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        def bad(message: str) -> FxConfigError:
            return FxConfigError(Reason.INVALID_ARGUMENT, f"FX settings: {message}")

        def check_spread(what: str, bps: object) -> None:
            if not isinstance(bps, int) or isinstance(bps, bool) or not 0 <= bps < 10_000:
                raise bad(f"{what}: spread must be 0 to 9999 basis points, got {bps!r}")

        def check_code(what: str, code: object) -> None:
            try:
                check_currency(code)  # type: ignore[arg-type]
            except (InvalidArgument, TypeError):
                raise bad(f"{what}: {code!r} is not a currency the hub clears") from None

        check_code("base_currency", self.base_currency)
        check_spread("default_spread_bps", self.default_spread_bps)
        for key, bps in self.corridor_spread_bps.items():
            if not isinstance(key, tuple) or len(key) != 2:
                raise bad(f"corridor {key!r}: give (source, target)")
            source, target = key
            check_code(f"corridor {source}->{target}", source)
            check_code(f"corridor {source}->{target}", target)
            if source == target:
                raise bad(f"corridor {source}->{target}: a corridor joins two currencies")
            check_spread(f"corridor {source}->{target}", bps)
        if self.quote_ttl <= timedelta(0):
            raise bad(f"quote_ttl must be positive, got {self.quote_ttl}")
        if self.max_rate_age <= timedelta(0):
            raise bad(f"max_rate_age must be positive, got {self.max_rate_age}")
        # A copy of what was checked: the caller's dict may change later. (Typed
        # Mapping, read-only; a plain dict so that the config still pickles.)
        object.__setattr__(self, "corridor_spread_bps", dict(self.corridor_spread_bps))

    def spread(self, source: str, target: str) -> int:
        return self.corridor_spread_bps.get((source, target), self.default_spread_bps)


RateRow = tuple[str, str, str, datetime | None]


def _parse_rates(rows: Sequence[RateRow], now: datetime) -> list[Rate]:
    """Every row checked (`parse_rate`); as_of is required (a rate without
    it would look fresh whenever it arrived); a pair given twice, in either
    direction, is refused: one request states one mid per pair."""
    if not rows:
        raise InvalidArgument(Reason.EMPTY_BATCH, "no rates given")
    if len(rows) > MAX_RATES:
        raise InvalidArgument(
            Reason.BATCH_TOO_LARGE, f"at most {MAX_RATES} rates per call", limit=str(MAX_RATES)
        )
    parsed: list[Rate] = []
    seen: dict[frozenset[str], int] = {}
    for index, (base, quote, text, as_of) in enumerate(rows):
        try:
            if as_of is None:
                raise InvalidArgument(
                    Reason.MISSING_FIELD,
                    f"rate {index} ({base}/{quote}): as_of is required, the time the rate "
                    "was observed",
                    field="as_of",
                )
            rate = parse_rate(base, quote, text, as_of, now=now)
        except RemitnetError as err:
            err.metadata["index"] = str(index)
            raise
        key = frozenset((rate.base, rate.quote))
        if key in seen:
            pair = f"{rate.base}/{rate.quote}"
            raise InvalidArgument(
                Reason.DUPLICATE_RATE_PAIR,
                f"{pair} (or its inverse) is given twice, at {seen[key]} and {index}",
                pair=pair,
                index=str(index),
            )
        seen[key] = index
        parsed.append(rate)
    return parsed


def update_rates(
    db: Transactions,
    rates: Sequence[RateRow],
    *,
    keep_newer: bool = False,
    actor: str = HUB_PRINCIPAL,
) -> list[Rate]:
    """Replace the mid rates of the given pairs (base, quote, decimal text,
    as-of; as-of is required). A pair has one mid: storing X/Y removes a
    stored Y/X. A rate whose as-of is older than that of the rate stored for
    its pair (in either direction) is refused, RATE_OLDER_THAN_STORED, and
    the call stores nothing (all or nothing: one bad rate stores none); an
    equal as-of replaces (a correction). With `keep_newer` (a rates file
    loaded at start-up, which may predate the feed's later updates) such a
    rate is skipped instead and the others are stored. Returns the rates
    stored."""
    now = datetime.now(UTC)
    parsed = _parse_rates(rates, now)

    def unit(uow: UnitOfWork) -> list[Rate]:
        stored = uow.quotes.rates()
        fresh: list[Rate] = []
        for index, rate in enumerate(parsed):
            held = [
                r
                for r in (stored.get((rate.base, rate.quote)), stored.get((rate.quote, rate.base)))
                if r is not None
            ]
            newest = max((r.as_of for r in held), default=None)
            if newest is not None and rate.as_of < newest:
                if keep_newer:
                    continue
                pair = f"{rate.base}/{rate.quote}"
                raise FailedPrecondition(
                    Reason.RATE_OLDER_THAN_STORED,
                    f"{pair} as of {rate.as_of.isoformat()} is older than the stored rate for "
                    f"the pair, as of {newest.isoformat()}; nothing was stored",
                    pair=pair,
                    index=str(index),
                    as_of=rate.as_of.isoformat(),
                    stored_as_of=newest.isoformat(),
                )
            fresh.append(rate)
        inverses = [(r.quote, r.base) for r in fresh if (r.quote, r.base) in stored]
        uow.quotes.delete_rates(inverses)
        if fresh:
            uow.quotes.upsert_rates(fresh, now)
        if inverses or any(stored.get((r.base, r.quote)) != r for r in fresh):
            # The rates as parsed (mid as exact decimal text), in request
            # order. A call that stored nothing new (all skipped, or the
            # rates already held, as on a re-run after an ambiguous commit)
            # appends nothing.
            request = {
                "keep_newer": keep_newer,
                "rates": [
                    {
                        "base": r.base,
                        "quote": r.quote,
                        "mid_rate": str(r.mid),
                        "as_of": time_text(r.as_of),
                    }
                    for r in parsed
                ],
            }
            uow.trail.append(actor, Action.UPDATE_RATES, request, now)
        return fresh

    return db.write("update_rates", unit)


def list_rates(db: Transactions) -> list[Rate]:
    return sorted(db.read(lambda uow: uow.quotes.rates()).values(), key=lambda r: (r.base, r.quote))


def _file_error(path: Path, where: str, message: str) -> InvalidArgument:
    return InvalidArgument(
        Reason.INVALID_RATE, f"rates file {path}: {where}: {message}", file=str(path), where=where
    )


def _as_of(value: object) -> datetime | None:
    """An ISO 8601 time with its offset ("2026-01-01T12:00:00Z"). A naive
    time is refused, not guessed: the feed must say it means UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"as_of must be ISO 8601 text, got {value!r}")
    try:
        as_of = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"as_of {value!r} is not an ISO 8601 time") from None
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError(f"as_of {value!r} has no UTC offset (write ...Z or ...+00:00)")
    return as_of.astimezone(UTC)


def _rate_text(value: object) -> str:
    # JSON numbers arrive as Decimal (parse_float/parse_int), never float.
    if isinstance(value, Decimal):
        return str(value)  # "1E+999999999", not a billion digits; parse_rate bounds it
    if isinstance(value, str):
        return value.strip()
    raise ValueError(f"rate must be a decimal number or text, got {value!r}")


def _field(row: Mapping[str, Any], name: str) -> object:
    value = row.get(name)
    if value is None or value == "":
        raise ValueError(f"field {name!r} is missing")
    return value


def load_rates_file(path: Path) -> list[RateRow]:
    """Rates from CSV (header base,quote,rate,as_of) or JSON (a list of
    {"base", "quote", "rate", "as_of"}); JSON numbers are read as exact
    decimals. as_of is required, ISO 8601 with a UTC offset; a naive time is
    refused (not taken as local or UTC), and so is a row without one (it
    would look fresh whenever the file is loaded).
    Every row is checked as UpdateRates checks it, so a bad file is refused
    whole, with InvalidArgument INVALID_RATE naming the file and the line
    (CSV) or item (JSON) and field."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _file_error(path, "read", str(exc)) from None
    rows: list[tuple[str, Mapping[str, Any]]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text, parse_float=Decimal, parse_int=Decimal)
        except json.JSONDecodeError as exc:
            raise _file_error(path, f"line {exc.lineno} column {exc.colno}", exc.msg) from None
        if not isinstance(data, list):
            raise _file_error(path, "top level", "expected a JSON list of rate objects")
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                raise _file_error(path, f"item {index}", "expected an object")
            rows.append((f"item {index}", item))
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = {"base", "quote", "rate"} - set(reader.fieldnames or ())
        if missing:
            raise _file_error(path, "line 1", f"the header lacks {sorted(missing)}")
        try:
            for line in reader:
                if None in line:
                    raise _file_error(path, f"line {reader.line_num}", "too many fields")
                rows.append((f"line {reader.line_num}", line))
        except csv.Error as exc:
            raise _file_error(path, f"line {reader.line_num}", str(exc)) from None
    if not rows:
        raise _file_error(path, "rows", "the file holds no rates")
    out: list[RateRow] = []
    where_of: dict[frozenset[str], str] = {}
    now = datetime.now(UTC)
    for where, fields in rows:
        try:
            base, quote = str(_field(fields, "base")).strip(), str(_field(fields, "quote")).strip()
            entry = (
                base,
                quote,
                _rate_text(_field(fields, "rate")),
                _as_of(fields.get("as_of")),
            )
        except ValueError as exc:
            raise _file_error(path, where, str(exc)) from None
        try:
            parse_rate(entry[0], entry[1], entry[2], entry[3] or now, now=now)
        except RemitnetError as err:
            raise _file_error(path, where, f"{err.reason}: {err.message}") from None
        if entry[3] is None:
            raise _file_error(
                path, where, "field 'as_of' is missing: every rate states when it was observed"
            )
        key = frozenset((base, quote))
        if key in where_of:
            raise _file_error(path, where, f"{base}/{quote} already given at {where_of[key]}")
        where_of[key] = where
        out.append(entry)
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
    db: Transactions,
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


def _caller_refusal(uow: UnitOfWork, bank: str) -> tuple[RemitnetError | None, set[str]]:
    """Whether `bank` may ask for quotes at all, and the currencies it holds
    a liquidity account in (a quote sells the source currency, so the
    caller must hold it; the creditor, unknown at quote time, is checked
    when the transfer is cleared)."""
    row = uow.banks.get(bank)
    # Step 1 of the payment decision (`decision`), for the caller alone.
    refused = party_refusal(bank, None if row is None else row.status)
    if refused is not None:
        return refused, set()
    held = {a.currency for a in uow.accounts.of_owner(bank) if a.kind == AccountKind.LIQUIDITY}
    return None, held


def create_quotes(
    db: Transactions, config: FxConfig, bank: str, asks: Sequence[QuoteAsk]
) -> list[Quote | RemitnetError]:
    """Price every ask on one snapshot of the rates and store the quotes in
    one transaction; a refused ask stores nothing and does not stop the
    others. The caller must be a known, active bank holding an account in
    each ask's source currency."""
    refused: dict[int, RemitnetError] = {}
    for index, ask in enumerate(asks):
        try:
            _check_ask(ask)
        except RemitnetError as err:
            refused[index] = err

    # From a snapshot, outside the serializable unit: a quote moves no money
    # (clearing checks both parties again), and reading the bank's account
    # rows inside a unit that also writes quotes made it conflict with every
    # batch updating those accounts and reading quotes (SSI aborts).
    caller, held = db.read(lambda uow: _caller_refusal(uow, bank))
    if caller is not None:
        return [refused.get(index, caller) for index in range(len(asks))]

    def unit(uow: UnitOfWork) -> list[Quote | RemitnetError]:
        now = datetime.now(UTC)
        rates = uow.quotes.rates()
        ids = _random_uuids(len(asks))
        outcomes: list[Quote | RemitnetError] = []
        for index, ask in enumerate(asks):
            if index in refused:
                outcomes.append(refused[index])
                continue
            if ask.source_currency not in held:
                # Step 3 of the payment decision, for the debit side alone.
                outcomes.append(no_account(bank, ask.source_currency, named_bank=True))
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
            except ArithmeticError:
                # Only a rate stored before rates were bounded can get here:
                # refuse this ask, not the whole batch.
                pair = f"{ask.source_currency}/{ask.target_currency}"
                outcomes.append(
                    FailedPrecondition(
                        Reason.RATE_NOT_AVAILABLE,
                        f"the stored rate for {pair} cannot price this amount",
                        pair=pair,
                    )
                )
                continue
            outcomes.append(Quote(next(ids), bank, terms, now, now + config.quote_ttl, None))
        uow.quotes.add([q for q in outcomes if isinstance(q, Quote)])
        return outcomes

    return db.write("create_quotes", unit)


def get_quote(db: Transactions, bank: str | None, quote_id: str) -> Quote:
    qid = canonical_uuid(quote_id, "quote_id")

    def unit(uow: UnitOfWork) -> Quote:
        quote = uow.quotes.get_many([qid]).get(qid)
        if quote is None or not quote.visible_to(bank):
            raise NotFound(Reason.QUOTE_NOT_FOUND, f"no quote {qid}")
        return quote

    return db.read(unit)
