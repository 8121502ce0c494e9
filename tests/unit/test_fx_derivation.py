"""Derived (inverse and cross) mid rates: the exact ratio of the fed rates,
rounded once, half-even, to 20 significant digits (a fed rate's precision);
a fed rate is used as fed."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remitnet.services.domain.fx import MAX_RATE_DIGITS, Rate, derive, round_significant

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def book(**pairs: str) -> dict[tuple[str, str], Rate]:
    return {(k[:3], k[3:]): Rate(k[:3], k[3:], Decimal(v), NOW) for k, v in pairs.items()}


def digits(value: Decimal) -> int:
    return len(value.normalize().as_tuple().digits)


def test_a_fed_rate_is_used_as_fed() -> None:
    derived = derive(book(USDPHP="56.123456789012345678"), "USD", "PHP", "USD")
    assert (derived.mid, derived.derivation) == (Decimal("56.123456789012345678"), "USD/PHP")


def test_an_inverse_is_rounded_once_to_20_digits() -> None:
    derived = derive(book(USDPHP="56.1"), "PHP", "USD", "USD")
    assert derived.derivation == "1/(USD/PHP)"
    assert derived.mid == Decimal("0.017825311942959001783")
    assert digits(derived.mid) == MAX_RATE_DIGITS
    # An exact inverse keeps its few digits.
    assert derive(book(USDEUR="0.8"), "EUR", "USD", "USD").mid == Decimal("1.25")
    assert derive(book(USDJPY="0.001"), "JPY", "USD", "USD").mid == Decimal("1000")


def test_a_cross_of_two_inverses_is_rounded_once_not_twice() -> None:
    rates = book(USDPHP="3", USDEUR="7")
    derived = derive(rates, "PHP", "EUR", "USD")
    assert derived.derivation == "1/(USD/PHP) x USD/EUR (cross via USD)"
    assert derived.mid == round_significant(Fraction(7, 3))
    derived = derive(book(PHPUSD="3", USDEUR="7"), "EUR", "PHP", "USD")
    assert derived.derivation == "1/(USD/EUR) x 1/(PHP/USD) (cross via USD)"
    exact = Fraction(1, 21)
    assert derived.mid == round_significant(exact) == Decimal("0.047619047619047619048")
    # Rounding 1/7 then 1/3 separately would differ in the last digit.
    twice = round_significant(Fraction(round_significant(Fraction(1, 7))) / 3)
    assert twice != derived.mid


def test_half_even_on_a_tie() -> None:
    # 21 significant digits ending in 5: ties go to the even neighbour.
    assert round_significant(Fraction("1.00000000000000000005")) == Decimal("1")
    assert round_significant(Fraction("1.00000000000000000015")) == Decimal("1.0000000000000000002")
    assert round_significant(Fraction("9.99999999999999999995")) == Decimal("1E+1")


def test_a_legacy_out_of_range_rate_is_refused_not_expanded() -> None:
    with pytest.raises(ArithmeticError):
        derive(book(USDJPY="1E+999999999"), "JPY", "USD", "USD")


@given(
    st.decimals(min_value=Decimal("1e-9"), max_value=Decimal("1e9"), places=12),
    st.decimals(min_value=Decimal("1e-9"), max_value=Decimal("1e9"), places=12),
)
def test_every_derived_rate_is_the_exact_ratio_to_20_digits(a: Decimal, b: Decimal) -> None:
    if a <= 0 or b <= 0:
        return
    rates = {("USD", "PHP"): Rate("USD", "PHP", a, NOW), ("EUR", "USD"): Rate("EUR", "USD", b, NOW)}
    for source, target, exact in (
        ("PHP", "USD", 1 / Fraction(a)),
        ("EUR", "PHP", Fraction(b) * Fraction(a)),
        ("PHP", "EUR", 1 / (Fraction(a) * Fraction(b))),
    ):
        mid = derive(rates, source, target, "USD").mid
        assert digits(mid) <= MAX_RATE_DIGITS
        # Within half a unit of the 20th digit of the exact value.
        error = abs(Fraction(mid) - exact) / exact
        assert error <= Fraction(1, 2 * 10 ** (MAX_RATE_DIGITS - 1)), (source, target, mid)
