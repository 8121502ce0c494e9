from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remitnet.services.domain.errors import InvalidArgument, Reason
from remitnet.services.domain.money import (
    CURRENCY_EXPONENTS,
    INT64_MAX,
    Money,
    check_positive_amount,
    exponent,
)


def test_iso_exponents_of_zero_two_and_three_decimal_currencies() -> None:
    assert (exponent("JPY"), exponent("USD"), exponent("KWD")) == (0, 2, 3)


def test_unknown_currency_is_refused_with_reason() -> None:
    with pytest.raises(InvalidArgument) as err:
        exponent("XXX")
    assert err.value.reason == Reason.UNKNOWN_CURRENCY


@pytest.mark.parametrize(
    ("currency", "text", "minor"),
    [("USD", "12.34", 1234), ("USD", "12", 1200), ("JPY", "100", 100), ("KWD", "1.234", 1234)],
)
def test_parse_major_units_exactly(currency: str, text: str, minor: int) -> None:
    assert Money.parse(currency, text).minor_units == minor


@pytest.mark.parametrize(
    ("currency", "text"), [("USD", "12.345"), ("JPY", "1.5"), ("USD", "NaN"), ("USD", "1e400x")]
)
def test_parse_refuses_more_decimals_than_the_currency_has(currency: str, text: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        Money.parse(currency, text)
    assert err.value.reason == Reason.INVALID_AMOUNT


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        (0, Reason.INVALID_AMOUNT),
        (-1, Reason.INVALID_AMOUNT),
        (INT64_MAX + 1, Reason.AMOUNT_OUT_OF_RANGE),
    ],
)
def test_amount_bounds(amount: int, reason: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        check_positive_amount(amount)
    assert err.value.reason == reason


def test_int64_max_is_a_valid_amount() -> None:
    assert check_positive_amount(INT64_MAX) == INT64_MAX


@given(st.sampled_from(sorted(CURRENCY_EXPONENTS)), st.integers(0, INT64_MAX))
def test_format_and_parse_round_trip(currency: str, minor: int) -> None:
    text = Money(currency, minor).format().split(" ")[0].replace(",", "")
    assert Money.parse(currency, text).minor_units == minor
