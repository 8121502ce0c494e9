"""FX: mid rates, cross-rate derivation and quotes. Exact decimals only.

Rounding rule (the one rule): amounts are rounded half-even to the minor
unit of their currency, once, at the end of each computation.
A rate BASE/QUOTE is the number of QUOTE major units one BASE major unit buys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

from remitnet.services.domain.errors import FailedPrecondition, InvalidArgument, Reason
from remitnet.services.domain.money import (
    INT64_MAX,
    check_currency,
    check_positive_amount,
    exponent,
)

# 34 significant digits: far beyond any int64 amount times any sane rate.
CTX = Context(prec=34, rounding=ROUND_HALF_EVEN)
BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class Rate:
    base: str
    quote: str
    mid: Decimal
    as_of: datetime


def parse_rate(base: str, quote: str, text: str, as_of: datetime) -> Rate:
    check_currency(base)
    check_currency(quote)
    if base == quote:
        raise InvalidArgument(Reason.SAME_CURRENCY, f"{base}/{quote} is not a currency pair")
    try:
        mid = Decimal(text)
    except InvalidOperation:
        raise InvalidArgument(Reason.INVALID_RATE, f"rate {text[:40]!r} is not a decimal") from None
    if not mid.is_finite() or mid <= 0:
        raise InvalidArgument(Reason.INVALID_RATE, f"rate for {base}/{quote} must be positive")
    return Rate(base, quote, mid, as_of)


@dataclass(frozen=True, slots=True)
class DerivedRate:
    mid: Decimal
    derivation: str
    oldest: datetime


def derive(
    rates: Mapping[tuple[str, str], Rate], source: str, target: str, base: str
) -> DerivedRate:
    """source/target from a direct pair, its inverse, or through `base`."""

    def one(a: str, b: str) -> tuple[Decimal, str, datetime] | None:
        direct = rates.get((a, b))
        if direct is not None:
            return direct.mid, f"{a}/{b}", direct.as_of
        inverse = rates.get((b, a))
        if inverse is not None:
            return CTX.divide(Decimal(1), inverse.mid), f"1/({b}/{a})", inverse.as_of
        return None

    found = one(source, target)
    if found is not None:
        return DerivedRate(found[0], found[1], found[2])
    if base not in (source, target):
        first, second = one(source, base), one(base, target)
        if first is not None and second is not None:
            return DerivedRate(
                CTX.multiply(first[0], second[0]),
                f"{first[1]} x {second[1]} (cross via {base})",
                min(first[2], second[2]),
            )
    raise FailedPrecondition(
        Reason.RATE_NOT_AVAILABLE, f"no rate for {source}/{target}", pair=f"{source}/{target}"
    )


def to_minor(major: Decimal, currency: str) -> int:
    """Round half-even to the currency's minor unit."""
    value = CTX.multiply(major, Decimal(1).scaleb(exponent(currency)))
    return int(value.to_integral_value(rounding=ROUND_HALF_EVEN))


def to_major(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


@dataclass(frozen=True, slots=True)
class QuoteTerms:
    source_currency: str
    target_currency: str
    source_amount: int
    target_amount: int
    mid_rate: Decimal
    rate: Decimal  # all-in: mid less the spread
    spread_bps: int
    fee: int  # target at mid minus target delivered, target minor units
    derivation: str


def price(
    derived: DerivedRate,
    *,
    source_currency: str,
    target_currency: str,
    spread_bps: int,
    source_amount: int | None = None,
    target_amount: int | None = None,
) -> QuoteTerms:
    """Terms to sell `source_amount` or to deliver `target_amount`."""
    if (source_amount is None) == (target_amount is None):
        raise InvalidArgument(Reason.INVALID_AMOUNT, "give exactly one of source or target amount")
    if not 0 <= spread_bps < 10_000:
        raise InvalidArgument(Reason.INVALID_ARGUMENT, "spread must be 0 to 9999 basis points")
    rate = CTX.multiply(derived.mid, CTX.subtract(Decimal(1), CTX.divide(Decimal(spread_bps), BPS)))
    if source_amount is not None:
        check_positive_amount(source_amount, field="source_amount")
        target = to_minor(
            CTX.multiply(to_major(source_amount, source_currency), rate), target_currency
        )
        source = source_amount
    else:
        assert target_amount is not None
        check_positive_amount(target_amount, field="target_amount")
        source = to_minor(
            CTX.divide(to_major(target_amount, target_currency), rate), source_currency
        )
        target = target_amount
    if source <= 0 or target <= 0:
        raise InvalidArgument(Reason.INVALID_AMOUNT, "amount too small to convert")
    if source > INT64_MAX or target > INT64_MAX:
        raise InvalidArgument(Reason.AMOUNT_OUT_OF_RANGE, "converted amount exceeds int64")
    at_mid = to_minor(CTX.multiply(to_major(source, source_currency), derived.mid), target_currency)
    return QuoteTerms(
        source_currency,
        target_currency,
        source,
        target,
        derived.mid,
        rate,
        spread_bps,
        at_mid - target,
        derived.derivation,
    )


@dataclass(frozen=True, slots=True)
class Quote:
    quote_id: str
    bank: str
    terms: QuoteTerms
    created_at: datetime
    expires_at: datetime
    used_by: str | None


def check_fresh(derived: DerivedRate, now: datetime, max_age: timedelta) -> None:
    if now - derived.oldest > max_age:
        raise FailedPrecondition(
            Reason.RATE_STALE,
            f"the rate is {int((now - derived.oldest).total_seconds())} s old; "
            f"quotes need rates younger than {int(max_age.total_seconds())} s",
        )
