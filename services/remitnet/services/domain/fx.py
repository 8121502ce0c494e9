"""FX: mid rates, cross-rate derivation and quotes. Exact decimals only.

A rate BASE/QUOTE is the number of QUOTE major units one BASE major unit buys.

Rounding rule (the one rule): every amount is computed exactly from the
stated rates and rounded once, to the minor unit of its currency, in the
favour of the counterparty of the conversion, the FX provider that quotes
and delivers it (the hub's FX book for quotes from before FX providers): the
amount it delivers (the target) is rounded down, the amount it charges (the
source) is rounded up. So at the quoted rate the provider never delivers
more value than it receives, and the creditor is credited exactly the
quote's target amount (the batch delivers `terms.target_amount`, no
rounding of its own); the provider's spread is its revenue. A source
amount too small to buy one target minor unit is refused (INVALID_AMOUNT),
never rounded up to one: the smallest amount a pair converts is what buys one minor
unit of the target at the quoted rate.
The rates themselves are stated, not rounded further: a fed mid rate has at
most `MAX_RATE_DIGITS` (20) significant digits. A derived mid (the inverse
of a fed rate, or a cross through the base currency, whichever legs it
takes) is computed exactly, as a ratio of the fed rates, and rounded once,
half-even, to `MAX_RATE_DIGITS` significant digits, so that a derived rate
states no more precision than a fed one (`derive`). The all-in rate (mid
less the spread) is exact for such a mid (at most 24 digits; stated to 34
significant digits, half-even), and the amounts follow exactly from what is
stated.
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import (
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    Overflow,
)
from fractions import Fraction
from typing import Final

from remitnet.services.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Reason,
    RemitnetError,
)
from remitnet.services.domain.model import DEFAULT_PROVIDER
from remitnet.services.domain.money import (
    INT64_MAX,
    check_currency,
    check_positive_amount,
    exponent,
)

# 34 significant digits for the stated all-in rate (exact for a mid of at
# most MAX_RATE_DIGITS digits; derived mids are rounded to MAX_RATE_DIGITS in
# `derive`).
CTX = Context(prec=34, rounding=ROUND_HALF_EVEN)
# Products of an amount (<= 19 digits) and a stated rate (<= 34 digits) are
# exact here; an inexact result would be a bug, so it traps.
EXACT = Context(prec=120, rounding=ROUND_HALF_EVEN, traps=[Inexact, InvalidOperation, Overflow])
BPS = Decimal(10_000)

# What a fed mid rate may be: plain ASCII decimal text (an exponent allowed),
# at most MAX_RATE_TEXT characters (the stored column is VARCHAR(48)), at
# most MAX_RATE_DIGITS significant digits once trailing zeros are dropped,
# and MIN_RATE <= rate <= MAX_RATE. Such a rate prices any int64 amount
# without overflow, and every derived rate fits the quote columns.
MAX_RATE_TEXT: Final = 48
MAX_RATE_DIGITS: Final = 20
MIN_RATE: Final = Decimal("1e-9")
MAX_RATE: Final = Decimal("1e9")
# How far in the future a rate's as-of time may lie (clock skew between the
# feed and the hub).
MAX_AS_OF_SKEW: Final = timedelta(seconds=60)
_RATE_TEXT = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?", re.ASCII)


@dataclass(frozen=True, slots=True)
class Rate:
    base: str
    quote: str
    mid: Decimal
    as_of: datetime
    # Whose rate it is (rates are per FX provider), and the provider's own
    # spread on the pair in basis points (None: the hub's FxConfig spread
    # for the corridor).
    provider: str = DEFAULT_PROVIDER
    spread_bps: int | None = None


def _bad_rate(pair: str, message: str, field: str = "mid_rate") -> InvalidArgument:
    return InvalidArgument(Reason.INVALID_RATE, f"{pair}: {message}", pair=pair, field=field)


def parse_rate(base: str, quote: str, text: str, as_of: datetime, *, now: datetime) -> Rate:
    """A fed mid rate, checked against the bounds above, and its as-of time
    (timezone-aware, at most MAX_AS_OF_SKEW after `now`). The mid is kept
    without trailing zeros ("56.10" -> 56.1, "1e3" -> 1000)."""
    check_currency(base)
    check_currency(quote)
    pair = f"{base}/{quote}"
    if base == quote:
        raise InvalidArgument(Reason.SAME_CURRENCY, f"{pair} is not a currency pair", pair=pair)
    if len(text) > MAX_RATE_TEXT:
        raise _bad_rate(pair, f"rate text is longer than {MAX_RATE_TEXT} characters")
    match = _RATE_TEXT.fullmatch(text)
    if match is None:
        raise _bad_rate(pair, f"rate {text!r} is not a plain positive decimal")
    if match.group(1) is not None and abs(int(match.group(1))) > 9999:
        raise _bad_rate(pair, f"rate {text!r} is outside {MIN_RATE:f} to {MAX_RATE:f}")
    wide = Context(prec=2 * MAX_RATE_TEXT)  # exact for any accepted text
    mid = Decimal(text).normalize(wide)
    if mid.is_zero():
        raise _bad_rate(pair, "rate must be positive")
    if len(mid.as_tuple().digits) > MAX_RATE_DIGITS:
        raise _bad_rate(pair, f"rate {text!r} has more than {MAX_RATE_DIGITS} significant digits")
    if not MIN_RATE <= mid <= MAX_RATE:
        raise _bad_rate(pair, f"rate {text!r} is outside {MIN_RATE:f} to {MAX_RATE:f}")
    if mid == mid.to_integral_value():
        mid = mid.quantize(Decimal(1), context=wide)  # 1E+3 -> 1000
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise _bad_rate(pair, "as_of must carry a timezone", field="as_of")
    if as_of - now > MAX_AS_OF_SKEW:
        raise _bad_rate(
            pair,
            f"as_of {as_of.isoformat()} is more than {int(MAX_AS_OF_SKEW.total_seconds())} s "
            "in the future",
            field="as_of",
        )
    return Rate(base, quote, mid, as_of)


@dataclass(frozen=True, slots=True)
class DerivedRate:
    mid: Decimal
    derivation: str
    oldest: datetime


def round_significant(value: Fraction, digits: int = MAX_RATE_DIGITS) -> Decimal:
    """A positive exact value rounded once, half-even, to `digits`
    significant digits, without trailing zeros ("1/3" -> 0.33333333333333333333
    at 20 digits; 5.5 -> 5.5; a value that rounds up to the next power of ten
    keeps one digit: 9.99...96 -> 10)."""
    if value <= 0:
        raise ValueError("a rate is positive")
    num, den = value.numerator, value.denominator
    # The exponent e of the leading digit: 10^e <= value < 10^(e+1).
    e = len(str(num)) - len(str(den))
    if num * 10 ** max(0, -e) < den * 10 ** max(0, e):
        e -= 1
    shift = digits - 1 - e  # value x 10^shift has `digits` integer digits
    scaled = value * (Fraction(10) ** shift)
    whole = round(scaled)  # Fraction.__round__: half to even, exact
    wide = Context(prec=digits + 2)
    return Decimal(whole).scaleb(-shift, wide).normalize(wide)


def _plain_integral(value: Decimal) -> Decimal:
    # 1E+3 -> 1000, as a fed rate is kept.
    if value == value.to_integral_value():
        return value.quantize(Decimal(1), context=Context(prec=MAX_RATE_DIGITS + 12))
    return value


def derive(
    rates: Mapping[tuple[str, str], Rate], source: str, target: str, base: str
) -> DerivedRate:
    """source/target from a direct pair, its inverse, or through `base`.

    A direct fed rate is used as fed. Otherwise the mid is the exact ratio of
    the fed rates it takes (1 / (target/source) for an inverse; the product of
    the two legs, each direct or inverse, for a cross) rounded once, half-even,
    to MAX_RATE_DIGITS significant digits (`round_significant`): never a
    rounding of a rounding, and never more digits than a fed rate."""

    def one(a: str, b: str) -> tuple[Decimal, bool, str, datetime] | None:
        direct = rates.get((a, b))
        if direct is not None:
            return direct.mid, False, f"{a}/{b}", direct.as_of
        inverse = rates.get((b, a))
        if inverse is not None:
            return inverse.mid, True, f"1/({b}/{a})", inverse.as_of
        return None

    def exact(leg: tuple[Decimal, bool, str, datetime]) -> Fraction:
        mid, inverted = leg[0], leg[1]
        if not mid.is_finite() or mid <= 0 or abs(mid.adjusted()) > 400:
            # Only a rate stored before rates were bounded.
            raise ArithmeticError(f"the stored rate {leg[2]} is out of range")
        value = Fraction(mid)
        return 1 / value if inverted else value

    found = one(source, target)
    if found is not None:
        if not found[1]:
            return DerivedRate(found[0], found[2], found[3])
        return DerivedRate(_plain_integral(round_significant(exact(found))), found[2], found[3])
    if base not in (source, target):
        first, second = one(source, base), one(base, target)
        if first is not None and second is not None:
            return DerivedRate(
                _plain_integral(round_significant(exact(first) * exact(second))),
                f"{first[2]} x {second[2]} (cross via {base})",
                min(first[3], second[3]),
            )
    raise FailedPrecondition(
        Reason.RATE_NOT_AVAILABLE, f"no rate for {source}/{target}", pair=f"{source}/{target}"
    )


def to_minor(major: Decimal, currency: str) -> int:
    """Round down (toward minus infinity) to the currency's minor unit, from
    the exact value: how an amount delivered is rounded."""
    value = EXACT.scaleb(major, exponent(currency))
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def to_major(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


def _divide_up(numerator: Decimal, denominator: Decimal) -> int:
    """numerator / denominator rounded up (toward plus infinity) to an
    integer, exactly (a Decimal division would round to the context precision
    first, and a second rounding can move a result that lies on an integer):
    how an amount charged is rounded."""
    n, d = numerator.as_tuple(), denominator.as_tuple()
    assert isinstance(n.exponent, int) and isinstance(d.exponent, int)
    num = int("".join(map(str, n.digits)) or "0")
    den = int("".join(map(str, d.digits)))
    shift = n.exponent - d.exponent
    if abs(shift) > 400:  # only a rate stored before rates were bounded
        raise ArithmeticError("the quotient is out of range")
    if shift >= 0:
        num *= 10**shift
    else:
        den *= 10**-shift
    if n.sign != d.sign:
        num = -num
    return -(-num // den)


@dataclass(frozen=True, slots=True)
class QuoteTerms:
    source_currency: str
    target_currency: str
    source_amount: int
    target_amount: int
    mid_rate: Decimal
    rate: Decimal  # all-in: mid less the spread
    spread_bps: int
    fee: int  # floor(source x mid) minus target delivered, target minor units
    derivation: str


def all_in_rate(mid: Decimal, spread_bps: int) -> Decimal:
    """mid x (1 - spread), stated to 34 significant digits half-even (exact
    for any mid `derive` gives: at most MAX_RATE_DIGITS digits)."""
    return CTX.multiply(mid, CTX.subtract(Decimal(1), CTX.divide(Decimal(spread_bps), BPS)))


def price(
    derived: DerivedRate,
    *,
    source_currency: str,
    target_currency: str,
    spread_bps: int,
    source_amount: int | None = None,
    target_amount: int | None = None,
) -> QuoteTerms:
    """Terms to sell `source_amount` or to deliver `target_amount`.

    With r the all-in rate (`all_in_rate`) and m the mid, both as stated,
    exact inputs and one rounding per amount, in the counterparty's favour
    (down for what it delivers, up for what it charges; see the module):

    - sell a source amount S: target T = floor(S x r), so
      0 <= S x r - T < 1 target minor unit; a T of 0 is refused
      (INVALID_AMOUNT: S is below the smallest amount the pair converts).
    - deliver a target amount T: source S = ceil(T / r), the smallest source
      amount worth at least T at r, so 0 <= S - T / r < 1 source minor unit.

    Either way T <= S x r <= S x m: the counterparty never delivers more
    value than it receives, at the quoted rate or at mid. fee = floor(S x m)
    - T (the target S buys at mid, rounded as a delivery, less the target
    delivered), so 0 <= fee, and fee is within one target minor unit of the
    value kept at mid, S x m - T.
    """
    if (source_amount is None) == (target_amount is None):
        raise InvalidArgument(Reason.INVALID_AMOUNT, "give exactly one of source or target amount")
    if not 0 <= spread_bps < 10_000:
        raise InvalidArgument(Reason.INVALID_ARGUMENT, "spread must be 0 to 9999 basis points")
    rate = all_in_rate(derived.mid, spread_bps)
    if source_amount is not None:
        check_positive_amount(source_amount, field="source_amount")
        target = to_minor(
            EXACT.multiply(to_major(source_amount, source_currency), rate), target_currency
        )
        source = source_amount
    else:
        assert target_amount is not None
        check_positive_amount(target_amount, field="target_amount")
        # S (source minor) = T x 10^-t / r x 10^s, rounded up once.
        source = _divide_up(
            EXACT.scaleb(to_major(target_amount, target_currency), exponent(source_currency)),
            rate,
        )
        target = target_amount
    if source <= 0 or target <= 0:
        raise InvalidArgument(Reason.INVALID_AMOUNT, "amount too small to convert")
    if source > INT64_MAX or target > INT64_MAX:
        raise InvalidArgument(Reason.AMOUNT_OUT_OF_RANGE, "converted amount exceeds int64")
    at_mid = to_minor(
        EXACT.multiply(to_major(source, source_currency), derived.mid), target_currency
    )
    if at_mid > INT64_MAX:
        raise InvalidArgument(Reason.AMOUNT_OUT_OF_RANGE, "the amount at mid exceeds int64")
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
    # The FX provider that prices and delivers it; None only for quotes the
    # hub gave as dealer before FX providers (migration 0008), which a
    # transfer can no longer use (QUOTE_EXPIRED).
    provider: str | None = None

    def visible_to(self, bank: str | None) -> bool:
        """The bank it was issued to, or the operator (None), may read it."""
        return bank is None or self.bank == bank

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at <= now

    def refusal(
        self, bank: str, now: datetime, used_here: Container[str] = ()
    ) -> RemitnetError | None:
        """Why `bank` may not pay with the quote at `now`, or None, checked in
        this order: it was issued to another bank (QUOTE_NOT_OWNED), it has
        been used, or is taken by an earlier transfer of the same batch
        (`used_here`, QUOTE_USED), it has expired, or was given by the hub
        as dealer before FX providers (`provider` None: QUOTE_EXPIRED, so
        that the hub never takes a new position)."""
        if self.bank != bank:
            return PermissionDenied(Reason.QUOTE_NOT_OWNED, "the quote was issued to another bank")
        if self.used_by is not None or self.quote_id in used_here:
            return FailedPrecondition(
                Reason.QUOTE_USED, "the quote has been used by another transfer"
            )
        if self.expires_at <= now:
            return FailedPrecondition(
                Reason.QUOTE_EXPIRED, "the quote has expired; ask for a new one"
            )
        if self.provider is None:
            return FailedPrecondition(
                Reason.QUOTE_EXPIRED,
                "quoted by the hub before FX providers; ask for a new quote",
            )
        return None

    def check_usable(self, bank: str, now: datetime) -> None:
        """`refusal`, raised."""
        error = self.refusal(bank, now)
        if error is not None:
            raise error

    def mismatch(self, currency: str, amount: int) -> InvalidArgument | None:
        """A transfer paying with the quote sells exactly what it quotes
        (QUOTE_MISMATCH), or None."""
        terms = self.terms
        if (terms.source_currency, terms.source_amount) != (currency, amount):
            return InvalidArgument(
                Reason.QUOTE_MISMATCH,
                f"the quote sells {terms.source_amount} {terms.source_currency}; "
                f"the transfer's amount must match",
            )
        return None


def check_fresh(derived: DerivedRate, now: datetime, max_age: timedelta) -> None:
    if now - derived.oldest > max_age:
        raise FailedPrecondition(
            Reason.RATE_STALE,
            f"the rate is {int((now - derived.oldest).total_seconds())} s old; "
            f"quotes need rates younger than {int(max_age.total_seconds())} s",
        )
