"""FX use cases: the FX providers' rate feeds and the banks' quotes from them."""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from remitnet.services.domain.audit_trail import HUB_PRINCIPAL, Action, time_text
from remitnet.services.domain.bank import Bank
from remitnet.services.domain.decision import no_account, party_refusal
from remitnet.services.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Reason,
    RemitnetError,
)
from remitnet.services.domain.fx import (
    DerivedRate,
    Quote,
    QuoteTerms,
    Rate,
    all_in_rate,
    check_fresh,
    derive,
    parse_rate,
    price,
)
from remitnet.services.domain.model import (
    DEFAULT_PROVIDER,
    AccountKind,
    account_id,
    canonical_uuid,
    check_bank_code,
)
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


# (base, quote, decimal text, as-of) and optionally the provider's spread
# for the pair in basis points (None or absent: the hub's FxConfig spread).
RateRow = tuple[str, str, str, datetime | None] | tuple[str, str, str, datetime | None, int | None]


def _spread_of(row: RateRow) -> int | None:
    return row[4] if len(row) == 5 else None


def check_spread_bps(pair: str, bps: object) -> int | None:
    """A rate's own spread: None, or 0 to 9999 basis points
    (INVALID_ARGUMENT INVALID_RATE, field spread_bps)."""
    if bps is None:
        return None
    if not isinstance(bps, int) or isinstance(bps, bool) or not 0 <= bps < 10_000:
        raise InvalidArgument(
            Reason.INVALID_RATE,
            f"{pair}: spread_bps must be 0 to 9999 basis points, got {bps!r}",
            pair=pair,
            field="spread_bps",
        )
    return bps


def _parse_rates(rows: Sequence[RateRow], now: datetime, provider: str) -> list[Rate]:
    """Every row checked (`parse_rate`, `check_spread_bps`), as `provider`'s;
    as_of is required (a rate without it would look fresh whenever it
    arrived); a pair given twice, in either direction, is refused: one
    request states one mid per pair."""
    if not rows:
        raise InvalidArgument(Reason.EMPTY_BATCH, "no rates given")
    if len(rows) > MAX_RATES:
        raise InvalidArgument(
            Reason.BATCH_TOO_LARGE, f"at most {MAX_RATES} rates per call", limit=str(MAX_RATES)
        )
    parsed: list[Rate] = []
    seen: dict[frozenset[str], int] = {}
    for index, row in enumerate(rows):
        base, quote, text, as_of = row[0], row[1], row[2], row[3]
        try:
            if as_of is None:
                raise InvalidArgument(
                    Reason.MISSING_FIELD,
                    f"rate {index} ({base}/{quote}): as_of is required, the time the rate "
                    "was observed",
                    field="as_of",
                )
            rate = parse_rate(base, quote, text, as_of, now=now)
            spread = check_spread_bps(f"{base}/{quote}", _spread_of(row))
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
        parsed.append(replace(rate, provider=provider, spread_bps=spread))
    return parsed


def provider_refusal(code: str, row: Bank | None, *, active: bool = True) -> RemitnetError | None:
    """Why `code` cannot act as an FX provider now, or None: no participant
    of that code (NOT_FOUND FX_PROVIDER_UNKNOWN), one without the
    FX_PROVIDER role (NOT_AN_FX_PROVIDER), and with `active` a suspended
    one (FX_PROVIDER_SUSPENDED)."""
    if row is None:
        return NotFound(
            Reason.FX_PROVIDER_UNKNOWN, f"no FX provider {code} at the hub", provider=code
        )
    if not row.is_provider:
        return FailedPrecondition(
            Reason.NOT_AN_FX_PROVIDER,
            f"participant {code} does not have the FX provider role",
            provider=code,
        )
    if active and not row.is_active:
        return FailedPrecondition(
            Reason.FX_PROVIDER_SUSPENDED, f"FX provider {code} is suspended", provider=code
        )
    return None


def update_rates(
    db: Transactions,
    rates: Sequence[RateRow],
    *,
    provider: str = DEFAULT_PROVIDER,
    by_provider: bool = False,
    keep_newer: bool = False,
    actor: str = HUB_PRINCIPAL,
) -> list[Rate]:
    """Replace `provider`'s mid rates of the given pairs (base, quote,
    decimal text, as-of, optionally the provider's spread in basis points;
    as-of is required). The provider must be a participant with the
    FX_PROVIDER role (FX_PROVIDER_UNKNOWN, NOT_AN_FX_PROVIDER); publishing
    its own rates (`by_provider`: the call is the provider's) it must be
    active (FX_PROVIDER_SUSPENDED); the operator may set a suspended
    provider's rates. Rates are per provider: a pair has one mid per
    provider, and storing X/Y removes the provider's stored Y/X. A rate
    whose as-of is older than that of the rate the provider holds for its
    pair (in either direction) is refused, RATE_OLDER_THAN_STORED, and the
    call stores nothing (all or nothing: one bad rate stores none); an equal
    as-of replaces (a correction). With `keep_newer` (a rates file loaded at
    start-up, which may predate the feed's later updates) such a rate is
    skipped instead and the others are stored. Returns the rates stored."""
    check_bank_code(provider, field="provider")
    now = datetime.now(UTC)
    parsed = _parse_rates(rates, now, provider)

    def unit(uow: UnitOfWork) -> list[Rate]:
        refused = provider_refusal(provider, uow.banks.get(provider), active=by_provider)
        if refused is not None:
            raise refused
        stored = uow.quotes.rates()
        fresh: list[Rate] = []
        for index, rate in enumerate(parsed):
            held = [
                r
                for r in (
                    stored.get((provider, rate.base, rate.quote)),
                    stored.get((provider, rate.quote, rate.base)),
                )
                if r is not None
            ]
            newest = max((r.as_of for r in held), default=None)
            if newest is not None and rate.as_of < newest:
                if keep_newer:
                    continue
                pair = f"{rate.base}/{rate.quote}"
                raise FailedPrecondition(
                    Reason.RATE_OLDER_THAN_STORED,
                    f"{pair} as of {rate.as_of.isoformat()} is older than {provider}'s stored "
                    f"rate for the pair, as of {newest.isoformat()}; nothing was stored",
                    pair=pair,
                    index=str(index),
                    as_of=rate.as_of.isoformat(),
                    stored_as_of=newest.isoformat(),
                    provider=provider,
                )
            fresh.append(rate)
        inverses = [
            (provider, r.quote, r.base) for r in fresh if (provider, r.quote, r.base) in stored
        ]
        uow.quotes.delete_rates(inverses)
        if fresh:
            uow.quotes.upsert_rates(fresh, now)
        if inverses or any(stored.get((provider, r.base, r.quote)) != r for r in fresh):
            # The rates as parsed (mid as exact decimal text), in request
            # order. A call that stored nothing new (all skipped, or the
            # rates already held, as on a re-run after an ambiguous commit)
            # appends nothing.
            request = {
                "keep_newer": keep_newer,
                "provider": provider,
                "rates": [_rate_record(r) for r in parsed],
            }
            uow.trail.append(actor, Action.UPDATE_RATES, request, now)
        return fresh

    return db.write("update_rates", unit)


def _rate_record(r: Rate) -> dict[str, str | int]:
    record: dict[str, str | int] = {
        "base": r.base,
        "quote": r.quote,
        "mid_rate": str(r.mid),
        "as_of": time_text(r.as_of),
    }
    if r.spread_bps is not None:
        record["spread_bps"] = r.spread_bps
    return record


def list_rates(db: Transactions, provider: str | None = None) -> list[Rate]:
    """The stored rates (of `provider` alone when given), by provider, base
    and quote."""
    rates = db.read(lambda uow: uow.quotes.rates()).values()
    return sorted(
        (r for r in rates if provider is None or r.provider == provider),
        key=lambda r: (r.provider, r.base, r.quote),
    )


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
    """Rates from CSV (header base,quote,rate,as_of and optionally
    spread_bps) or JSON (a list of {"base", "quote", "rate", "as_of"} and
    optionally "spread_bps"); JSON numbers are read as exact decimals. A row
    with a spread_bps is a 5-tuple, one without a 4-tuple. as_of is
    required, ISO 8601 with a UTC offset; a naive time is refused (not
    taken as local or UTC), and so is a row without one (it would look
    fresh whenever the file is loaded).
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
            rate_text, as_of = _rate_text(_field(fields, "rate")), _as_of(fields.get("as_of"))
            spread = _spread_field(fields.get("spread_bps"))
        except ValueError as exc:
            raise _file_error(path, where, str(exc)) from None
        try:
            parse_rate(base, quote, rate_text, as_of or now, now=now)
            check_spread_bps(f"{base}/{quote}", spread)
        except RemitnetError as err:
            raise _file_error(path, where, f"{err.reason}: {err.message}") from None
        if as_of is None:
            raise _file_error(
                path, where, "field 'as_of' is missing: every rate states when it was observed"
            )
        key = frozenset((base, quote))
        if key in where_of:
            raise _file_error(path, where, f"{base}/{quote} already given at {where_of[key]}")
        where_of[key] = where
        entry: RateRow = (
            (base, quote, rate_text, as_of)
            if spread is None
            else (base, quote, rate_text, as_of, spread)
        )
        out.append(entry)
    return out


def _spread_field(value: object) -> int | None:
    """A file's optional spread_bps: empty or absent for none, else a whole
    number of basis points (JSON numbers arrive as Decimal)."""
    if value is None or value == "":
        return None
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ValueError(f"spread_bps must be a whole number of basis points, got {value!r}")


@dataclass(frozen=True, slots=True)
class QuoteAsk:
    """What a bank asks a quote for: a source amount to sell or a target
    amount to deliver (exactly one), from a named FX provider or (None) the
    best of those that quote the pair and can cover it."""

    source_currency: str
    target_currency: str
    source_amount: int | None = None
    target_amount: int | None = None
    provider: str | None = None


def create_quote(
    db: Transactions,
    config: FxConfig,
    bank: str,
    source_currency: str,
    target_currency: str,
    *,
    source_amount: int | None = None,
    target_amount: int | None = None,
    provider: str | None = None,
) -> Quote:
    ask = QuoteAsk(source_currency, target_currency, source_amount, target_amount, provider)
    [outcome] = create_quotes(db, config, bank, [ask])
    if isinstance(outcome, RemitnetError):
        raise outcome
    return outcome


def _check_ask(ask: QuoteAsk) -> None:
    check_currency(ask.source_currency)
    check_currency(ask.target_currency)
    if ask.source_currency == ask.target_currency:
        raise InvalidArgument(Reason.SAME_CURRENCY, "a quote converts between two currencies")
    if ask.provider is not None:
        check_bank_code(ask.provider, field="provider")


def _random_uuids(n: int) -> Iterator[str]:
    # One read of the OS's randomness for the whole batch: uuid4() reads it
    # once per id, which was a tenth of the batch quote path's time.
    raw = os.urandom(16 * n)
    return (str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, 16 * n, 16))


@dataclass(frozen=True, slots=True)
class Market:
    """What pricing a batch of asks reads, in one snapshot: the caller's
    refusal (or None) and the currencies it holds a liquidity account in;
    every participant with the FX_PROVIDER role, and the participants the
    asks name (None: no such participant); each provider's rates keyed
    (base, quote); and the headroom of each provider's liquidity account
    by (provider, currency), absent where it holds none."""

    caller: RemitnetError | None
    held: frozenset[str]
    participants: Mapping[str, Bank | None]
    rates: Mapping[str, Mapping[tuple[str, str], Rate]]
    headroom: Mapping[tuple[str, str], int]
    # (provider, source, target) -> its fresh rate for the pair and its
    # spread: the asks of one call share a few pairs, and a cross rate is
    # exact rational arithmetic, so each is derived once per call.
    rated: dict[tuple[str, str, str], tuple[DerivedRate, int]] = field(default_factory=dict)
    # (source, target, named provider) -> the candidates from the best rate
    # down: the same for every ask of the pair in the call.
    ranked: dict[tuple[str, str, str | None], list[str]] = field(default_factory=dict)
    # The active FX providers by code, computed once per call: every ask
    # that names no provider starts from them.
    active: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        active = sorted(
            code
            for code, row in self.participants.items()
            if row is not None and row.is_provider and row.is_active
        )
        object.__setattr__(self, "active", tuple(active))


def _caller_refusal(row: Bank | None, bank: str) -> RemitnetError | None:
    """Whether `bank` may ask for quotes at all: step 1 of the payment
    decision (`decision`) for the caller alone, and it must have the BANK
    role (NOT_A_BANK: an FX provider only sends no transfers)."""
    if row is None:
        return party_refusal(bank, None)
    return party_refusal(bank, row.status, () if row.is_bank else (bank,))


def read_market(uow: UnitOfWork, bank: str, asks: Sequence[QuoteAsk]) -> Market:
    """The `Market` for `bank`'s asks (the caller, a quote sells the
    source currency, so the caller must hold it; the creditor, unknown at
    quote time, is checked when the transfer is cleared)."""
    row = uow.banks.get(bank)
    caller = _caller_refusal(row, bank)
    if caller is not None:
        return Market(caller, frozenset(), {}, {}, {})
    held = frozenset(
        a.currency for a in uow.accounts.of_owner(bank) if a.kind == AccountKind.LIQUIDITY
    )
    participants: dict[str, Bank | None] = {p.code: p for p in uow.banks.providers()}
    for ask in asks:
        if ask.provider is not None and ask.provider not in participants:
            participants[ask.provider] = uow.banks.get(ask.provider)
    rates: dict[str, dict[tuple[str, str], Rate]] = {}
    for (provider, base, quote), rate in uow.quotes.rates().items():
        rates.setdefault(provider, {})[(base, quote)] = rate
    currencies = {c for ask in asks for c in (ask.source_currency, ask.target_currency)}
    ids = {
        account_id(code, currency): (code, currency)
        for code, p in participants.items()
        if p is not None and p.is_provider
        for currency in currencies
    }
    states = uow.accounts.states(list(ids))
    headroom = {ids[aid]: state.headroom for aid, state in states.items() if aid in ids}
    return Market(None, held, participants, rates, headroom)


# How far pricing got with one provider, for the refusal of an ask none can
# take: the furthest stage any provider reached answers.
_NO_RATE, _STALE, _PRICE, _COVER = range(4)


def _spread(
    rates: Mapping[tuple[str, str], Rate], source: str, target: str, config: FxConfig
) -> int:
    """The provider's own spread on the pair (its direct or inverse rate's
    spread_bps), else the hub's corridor spread (also for a cross)."""
    row = rates.get((source, target)) or rates.get((target, source))
    if row is not None and row.spread_bps is not None:
        return row.spread_bps
    return config.spread(source, target)


def _offer(
    market: Market, provider: str, ask: QuoteAsk, config: FxConfig, now: datetime
) -> QuoteTerms | tuple[int, RemitnetError]:
    """`provider`'s terms for `ask`, or how far it got and why not."""
    source, target = ask.source_currency, ask.target_currency
    pair = f"{source}/{target}"
    try:
        derived, spread_bps = _rated(market, provider, source, target, config, now)
    except RemitnetError as err:
        err.metadata["provider"] = provider
        return (_STALE if err.reason == Reason.RATE_STALE else _NO_RATE), err
    except ArithmeticError:
        return _NO_RATE, _unpriceable(pair, provider)
    try:
        terms = price(
            derived,
            source_currency=source,
            target_currency=target,
            spread_bps=spread_bps,
            source_amount=ask.source_amount,
            target_amount=ask.target_amount,
        )
    except RemitnetError as err:
        return _PRICE, err
    except ArithmeticError:
        # Only a rate stored before rates were bounded can get here:
        # refuse this ask, not the whole batch.
        return _PRICE, _unpriceable(pair, provider)
    room = market.headroom.get((provider, target))
    if (provider, source) not in market.headroom or room is None or room < terms.target_amount:
        why = (
            f"holds no {source} account to take the source amount"
            if (provider, source) not in market.headroom
            else f"holds no {target} account"
            if room is None
            else f"has {room} {target} minor units of headroom"
        )
        return _COVER, FailedPrecondition(
            Reason.FX_PROVIDER_INSUFFICIENT_LIQUIDITY,
            f"FX provider {provider} cannot deliver {terms.target_amount} {target}: it {why}",
            provider=provider,
            currency=target,
            amount=str(terms.target_amount),
            headroom=str(room or 0),
        )
    return terms


def _rated(
    market: Market, provider: str, source: str, target: str, config: FxConfig, now: datetime
) -> tuple[DerivedRate, int]:
    """`provider`'s fresh rate for source/target and its spread, derived
    once per call (`Market.rated`); raises as `derive` and `check_fresh` do
    (refusals are not kept: each ask gets an error of its own)."""
    key = (provider, source, target)
    found = market.rated.get(key)
    if found is None:
        rates = market.rates.get(provider, {})
        derived = derive(rates, source, target, config.base_currency)
        check_fresh(derived, now, config.max_rate_age)
        found = market.rated[key] = (derived, _spread(rates, source, target, config))
    return found


def _unpriceable(pair: str, provider: str) -> FailedPrecondition:
    return FailedPrecondition(
        Reason.RATE_NOT_AVAILABLE,
        f"the stored rate for {pair} cannot price this amount",
        pair=pair,
        provider=provider,
    )


def choose(
    market: Market, ask: QuoteAsk, config: FxConfig, now: datetime
) -> tuple[str, QuoteTerms] | RemitnetError:
    """The provider and terms for `ask` (the named provider's, or the best
    price of the active providers that can price and cover it: the best
    all-in rate, equal rates to the smallest code), or the refusal: the
    named provider's standing
    (FX_PROVIDER_UNKNOWN, NOT_AN_FX_PROVIDER, FX_PROVIDER_SUSPENDED), else
    the refusal of the provider that got furthest (no rate:
    RATE_NOT_AVAILABLE; stale: RATE_STALE; the amount: INVALID_AMOUNT...;
    cover: FX_PROVIDER_INSUFFICIENT_LIQUIDITY), the first by code among
    equals."""
    source, target = ask.source_currency, ask.target_currency
    if ask.provider is not None:
        refused = provider_refusal(ask.provider, market.participants.get(ask.provider))
        if refused is not None:
            return refused
        candidates: Sequence[str] = (ask.provider,)
    else:
        candidates = market.active
    # The amounts follow the all-in rate monotonically (more target for a
    # source amount, less source for a target amount, at a higher rate), so
    # the providers are tried from the best rate down (equal rates by code)
    # and the first that prices and covers the ask is the best price: one
    # pricing per ask, not one per provider.
    key = (source, target, ask.provider)
    ranked = market.ranked.get(key)
    if ranked is None:
        rate_of: dict[str, Decimal] = {}
        for provider in candidates:
            try:
                derived, spread_bps = _rated(market, provider, source, target, config, now)
                rate_of[provider] = all_in_rate(derived.mid, spread_bps)
            except (RemitnetError, ArithmeticError):
                continue  # `_offer` below answers why
        ranked = sorted(candidates, key=lambda p: (p not in rate_of, -rate_of.get(p, 0), p))
        market.ranked[key] = ranked
    failed: dict[str, tuple[int, RemitnetError]] = {}
    for provider in ranked:
        found = _offer(market, provider, ask, config, now)
        if not isinstance(found, tuple):
            return provider, found
        failed[provider] = found
    furthest: tuple[int, RemitnetError] | None = None
    for provider in candidates:  # by code: the first of the furthest answers
        if furthest is None or failed[provider][0] > furthest[0]:
            furthest = failed[provider]
    if furthest is not None:
        stage, err = furthest
        if stage == _COVER and ask.provider is None:
            pair = f"{ask.source_currency}/{ask.target_currency}"
            return FailedPrecondition(
                Reason.FX_PROVIDER_INSUFFICIENT_LIQUIDITY,
                f"no FX provider quoting {pair} can deliver the amount now ({err.message})",
                pair=pair,
                currency=ask.target_currency,
                amount=err.metadata.get("amount", ""),
            )
        return err
    pair = f"{ask.source_currency}/{ask.target_currency}"
    return FailedPrecondition(Reason.RATE_NOT_AVAILABLE, f"no FX provider quotes {pair}", pair=pair)


def create_quotes(
    db: Transactions, config: FxConfig, bank: str, asks: Sequence[QuoteAsk]
) -> list[Quote | RemitnetError]:
    """Price every ask on one snapshot of the rates, the providers and
    their headroom (`read_market`, `choose`) and store the quotes in one
    transaction; a refused ask stores nothing and does not stop the others.
    The caller must be a known, active bank holding an account in each
    ask's source currency. Each ask is priced on its own: two quotes of one
    call may both count on the same headroom (a quote reserves nothing;
    clearing checks the provider's headroom again, in order)."""
    refused: dict[int, RemitnetError] = {}
    for index, ask in enumerate(asks):
        try:
            _check_ask(ask)
        except RemitnetError as err:
            refused[index] = err

    # From a snapshot, outside the serializable unit: a quote moves no money
    # (clearing checks the parties and the provider again), and reading the
    # bank's or the providers' account rows inside a unit that also writes
    # quotes made it conflict with every batch updating those accounts and
    # reading quotes (SSI aborts).
    valid = [ask for index, ask in enumerate(asks) if index not in refused]
    market = db.read(lambda uow: read_market(uow, bank, valid))
    if market.caller is not None:
        caller = market.caller
        return [refused.get(index, caller) for index in range(len(asks))]
    now = datetime.now(UTC)
    ids = _random_uuids(len(asks))
    outcomes: list[Quote | RemitnetError] = []
    for index, ask in enumerate(asks):
        if index in refused:
            outcomes.append(refused[index])
            continue
        if ask.source_currency not in market.held:
            # Step 3 of the payment decision, for the debit side alone.
            outcomes.append(no_account(bank, ask.source_currency, named_bank=True))
            continue
        chosen = choose(market, ask, config, now)
        if isinstance(chosen, RemitnetError):
            outcomes.append(chosen)
            continue
        provider, terms = chosen
        outcomes.append(Quote(next(ids), bank, terms, now, now + config.quote_ttl, None, provider))
    issued = [q for q in outcomes if isinstance(q, Quote)]
    if issued:
        db.write("create_quotes", lambda uow: uow.quotes.add(issued))
    return outcomes


def get_quote(db: Transactions, bank: str | None, quote_id: str) -> Quote:
    qid = canonical_uuid(quote_id, "quote_id")

    def unit(uow: UnitOfWork) -> Quote:
        quote = uow.quotes.get_many([qid]).get(qid)
        if quote is None or not quote.visible_to(bank):
            raise NotFound(Reason.QUOTE_NOT_FOUND, f"no quote {qid}")
        return quote

    return db.read(unit)
