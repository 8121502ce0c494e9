"""Money: integer minor units of an ISO 4217 currency. Never floats."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Final

from remitnet.services.domain.errors import InvalidArgument, Reason

INT64_MAX: Final = 2**63 - 1
INT64_MIN: Final = -(2**63)

# ISO 4217 minor-unit exponents of the currencies the hub clears. A currency
# missing here is refused rather than guessed: a wrong exponent moves money
# by a factor of 10.
CURRENCY_EXPONENTS: Final[dict[str, int]] = {
    "AED": 2, "AUD": 2, "BDT": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CLP": 0,
    "CNY": 2, "COP": 2, "CZK": 2, "DKK": 2, "EGP": 2, "EUR": 2, "GBP": 2, "GHS": 2,
    "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "ISK": 0, "JOD": 3, "JPY": 0,
    "KES": 2, "KRW": 0, "KWD": 3, "LKR": 2, "MAD": 2, "MXN": 2, "MYR": 2, "NGN": 2,
    "NOK": 2, "NPR": 2, "NZD": 2, "OMR": 3, "PEN": 2, "PHP": 2, "PKR": 2, "PLN": 2,
    "QAR": 2, "RON": 2, "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TND": 3, "TRY": 2,
    "TWD": 2, "UGX": 0, "USD": 2, "VND": 0, "XAF": 0, "XOF": 0, "ZAR": 2,
}  # fmt: skip


def exponent(currency: str) -> int:
    """The ISO 4217 exponent of a currency, or InvalidArgument UNKNOWN_CURRENCY."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise InvalidArgument(
            Reason.UNKNOWN_CURRENCY,
            f"currency {currency!r} is not an ISO 4217 code the hub clears",
            currency=currency[:8],
        ) from None


def check_currency(currency: str) -> str:
    exponent(currency)
    return currency


def check_positive_amount(amount: int, *, field: str = "amount") -> int:
    """A transfer or posting amount: 0 < amount <= int64 max."""
    if amount <= 0:
        raise InvalidArgument(
            Reason.INVALID_AMOUNT, f"{field} must be positive, got {amount}", field=field
        )
    if amount > INT64_MAX:
        raise InvalidArgument(
            Reason.AMOUNT_OUT_OF_RANGE, f"{field} exceeds the int64 range", field=field
        )
    return amount


@dataclass(frozen=True, slots=True)
class Money:
    currency: str
    minor_units: int

    def __post_init__(self) -> None:
        check_currency(self.currency)
        if not INT64_MIN <= self.minor_units <= INT64_MAX:
            raise InvalidArgument(Reason.AMOUNT_OUT_OF_RANGE, "amount exceeds the int64 range")

    @classmethod
    def parse(cls, currency: str, major: str) -> Money:
        """Parse a decimal amount in major units ("12.34" USD) exactly.

        More decimals than the currency has are refused, never rounded: a
        person typing 12.345 USD made a mistake the hub must not hide.
        """
        exp = exponent(currency)
        try:
            value = Decimal(major)
        except InvalidOperation:
            raise InvalidArgument(
                Reason.INVALID_AMOUNT, f"not a decimal amount: {major!r}"
            ) from None
        if not value.is_finite():
            raise InvalidArgument(Reason.INVALID_AMOUNT, f"not a finite amount: {major!r}")
        scaled = value.scaleb(exp)
        if scaled != scaled.to_integral_value():
            raise InvalidArgument(
                Reason.INVALID_AMOUNT, f"{currency} has {exp} decimals; {major!r} has more"
            )
        return cls(currency, int(scaled))

    def to_decimal(self) -> Decimal:
        return Decimal(self.minor_units).scaleb(-exponent(self.currency))

    def format(self) -> str:
        exp = exponent(self.currency)
        quantum = Decimal(1).scaleb(-exp)
        return f"{self.to_decimal().quantize(quantum, rounding=ROUND_HALF_EVEN):,} {self.currency}"


def format_minor(currency: str, minor_units: int) -> str:
    return Money(currency, minor_units).format()
