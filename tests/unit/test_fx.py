"""FX arithmetic: exact decimals, rounding to each currency's minor unit in
the FX counterparty's favour (what it delivers down, what it charges up),
bounded rates, the rate-file loaders and the FX settings.

The property tests recompute every amount independently with exact
fractions (`Fraction`, with floor and ceil) from the quote's stated rates,
rather than calling the pricing code again."""

from __future__ import annotations

import itertools
import math
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remitnet.services.domain.errors import FailedPrecondition, InvalidArgument, Reason
from remitnet.services.domain.fx import (
    CTX,
    MAX_RATE,
    MIN_RATE,
    DerivedRate,
    Quote,
    QuoteTerms,
    Rate,
    check_fresh,
    derive,
    parse_rate,
    price,
    to_minor,
)
from remitnet.services.domain.model import (
    HUB,
    BankStatus,
    Instruction,
    position_account_id,
)
from remitnet.services.domain.money import INT64_MAX, exponent
from remitnet.services.domain.netting import Accepted, AccountState, clear_batch
from remitnet.services.service_layer.fx import FxConfig, load_rates_file

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def rates(**pairs: str) -> dict[tuple[str, str], Rate]:
    return {(k[:3], k[3:]): Rate(k[:3], k[3:], Decimal(v), NOW) for k, v in pairs.items()}


def test_delivered_amounts_round_down_to_the_minor_unit() -> None:
    assert to_minor(Decimal("1.005"), "USD") == 100
    assert to_minor(Decimal("1.0199"), "USD") == 101
    assert to_minor(Decimal("100.5"), "JPY") == 100
    assert to_minor(Decimal("101.999"), "JPY") == 101
    assert to_minor(Decimal("1.0005"), "KWD") == 1000
    assert to_minor(Decimal("1.0019"), "KWD") == 1001
    assert to_minor(Decimal("7"), "JPY") == 7  # exact values are kept


@pytest.mark.parametrize(
    ("source", "target", "amount", "mid", "expected_target"),
    [
        ("USD", "JPY", 10_000, "151.37", 15_061),  # 100 USD at 151.37 less 50 bps
        ("JPY", "USD", 1_000_000, "0.0066", 656_700),  # 1,000,000 JPY -> 6,567.00 USD
        ("KWD", "USD", 1_000, "3.2551", 323),  # 1 KWD: 323.88 cents, rounded down
        ("USD", "KWD", 100_000, "0.30721", 305_673),  # 1,000 USD -> 305,673.95 fils
    ],
)
def test_quotes_on_zero_two_and_three_decimal_currencies(
    source: str, target: str, amount: int, mid: str, expected_target: int
) -> None:
    derived = DerivedRate(Decimal(mid), f"{source}/{target}", NOW)
    terms = price(
        derived, source_currency=source, target_currency=target, spread_bps=50, source_amount=amount
    )
    assert terms.target_amount == expected_target
    assert terms.rate == Decimal(mid) * Decimal("0.995")
    at_mid = to_minor(
        Decimal(amount).scaleb(-{"USD": 2, "JPY": 0, "KWD": 3}[source]) * Decimal(mid), target
    )
    assert terms.fee == at_mid - terms.target_amount >= 0


@pytest.mark.parametrize(
    ("source", "target", "mid", "kwargs", "expected"),
    [
        # 0.01 USD x 250 = 2.5 JPY exactly: delivered, so rounded down -> 2;
        # 3.5 -> 3.
        ("USD", "JPY", "250", {"source_amount": 1}, (1, 2, 0)),
        ("USD", "JPY", "350", {"source_amount": 1}, (1, 3, 0)),
        # Selling 1 JPY at 0.00667 USD/JPY buys 0.667 cents: below one cent,
        # refused rather than delivered as 1 cent (issue 18).
        ("JPY", "USD", "0.00667", {"source_amount": 1}, None),
        # ... 2 JPY buy 1.334 cents: 1 cent delivered, 0.334 kept.
        ("JPY", "USD", "0.00667", {"source_amount": 2}, (2, 1, 0)),
        # 0.001 KWD x 2.5 = 0.0025 USD = 0.25 cents -> 0: too small to convert.
        ("KWD", "USD", "2.5", {"source_amount": 1}, None),
        # Deliver 0.01 USD at 0.004 USD/JPY: 2.5 JPY charged, so rounded up
        # -> 3 JPY; at mid 3 JPY buy 1.2 cents -> 1: fee 0.
        ("JPY", "USD", "0.004", {"target_amount": 1}, (3, 1, 0)),
        # ... and 0.006: 1.666.. JPY -> 2, worth 1.2 cents at mid -> 1: fee 0.
        ("JPY", "USD", "0.006", {"target_amount": 1}, (2, 1, 0)),
        # ... and 0.005: exactly 2 JPY, no rounding.
        ("JPY", "USD", "0.005", {"target_amount": 1}, (2, 1, 0)),
        # Deliver 0.001 KWD at 0.004 KWD/JPY: 0.25 JPY -> 1 JPY charged, worth
        # 4 fils at mid: fee 3 (the smallest charge is one source minor unit).
        ("JPY", "KWD", "0.004", {"target_amount": 1}, (1, 1, 3)),
    ],
)
def test_rounding_ties_and_too_small_amounts(
    source: str,
    target: str,
    mid: str,
    kwargs: dict[str, int],
    expected: tuple[int, int, int] | None,
) -> None:
    derived = DerivedRate(Decimal(mid), "x", NOW)
    if expected is None:
        with pytest.raises(InvalidArgument) as err:
            price(derived, source_currency=source, target_currency=target, spread_bps=0, **kwargs)
        assert err.value.reason == Reason.INVALID_AMOUNT
        return
    terms = price(derived, source_currency=source, target_currency=target, spread_bps=0, **kwargs)
    assert (terms.source_amount, terms.target_amount, terms.fee) == expected


def test_deliver_a_target_amount() -> None:
    derived = DerivedRate(Decimal("56.1"), "USD/PHP", NOW)
    terms = price(
        derived, source_currency="USD", target_currency="PHP", spread_bps=100, target_amount=500_000
    )
    assert terms.target_amount == 500_000
    # 5,000.00 PHP / (56.1 * 0.99) = 90.0261... USD -> 90.03
    assert terms.source_amount == 9_003


def test_cross_rate_derivation_is_stated() -> None:
    book = rates(USDEUR="0.92", USDINR="83.2")
    derived = derive(book, "EUR", "INR", "USD")
    assert "cross via USD" in derived.derivation
    # The exact ratio rounded once, half-even, to 20 significant digits.
    assert derived.mid == Decimal("90.434782608695652174")
    assert derive(book, "INR", "USD", "USD").derivation == "1/(USD/INR)"
    with pytest.raises(FailedPrecondition) as err:
        derive(book, "EUR", "NGN", "USD")
    assert err.value.reason == Reason.RATE_NOT_AVAILABLE


def test_stale_rates_are_refused() -> None:
    derived = DerivedRate(Decimal(1), "A/B", NOW - timedelta(minutes=11))
    with pytest.raises(FailedPrecondition) as err:
        check_fresh(derived, NOW, timedelta(minutes=10))
    assert err.value.reason == Reason.RATE_STALE


# Rates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mid"),
    [
        ("56.10", "56.1"),
        ("1e3", "1000"),
        ("0.000000001", "1E-9"),  # the bounds are included
        ("1000000000", "1000000000"),
        ("0.12345678901234567890", "0.1234567890123456789"),  # 19 digits once normalized
        ("12345678.901234567890", "12345678.90123456789"),  # 19 digits
        ("1.5E-3", "0.0015"),
        ("5.", "5"),
        ("0." + "0" * 8 + "1" + "0" * 30, "1E-9"),  # 40 characters, 1 digit
    ],
)
def test_accepted_rates_are_kept_exactly(text: str, mid: str) -> None:
    rate = parse_rate("USD", "PHP", text, NOW, now=NOW)
    assert rate.mid == Decimal(mid) and str(rate.mid) == mid


@pytest.mark.parametrize(
    "text",
    [
        "1e999999999",  # stored, it would overflow every later quote on the pair
        "1e-99999999999999999999",
        "0.0000000009",  # below 1e-9
        "1000000000.1",  # above 1e9
        "1.23456789012345678901",  # 21 significant digits
        "1." + "0" * 47,  # 49 characters: longer than the stored column
        "0",
        "0.000",
        "-1",
        "+1",
        "NaN",
        "Infinity",
        "1_000",  # Python's Decimal takes these; a rate feed should not
        "١٢",
        " 1.5",
        "",
        "1,5",
    ],
)
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_rate("USD", "PHP", text, NOW, now=NOW)
    assert err.value.reason == Reason.INVALID_RATE
    assert err.value.metadata["pair"] == "USD/PHP"


def test_rate_as_of_must_be_aware_and_not_in_the_future() -> None:
    assert parse_rate("USD", "PHP", "56.1", NOW + timedelta(seconds=60), now=NOW)
    for as_of in (NOW + timedelta(seconds=61), NOW.replace(tzinfo=None)):
        with pytest.raises(InvalidArgument) as err:
            parse_rate("USD", "PHP", "56.1", as_of, now=NOW)
        assert (err.value.reason, err.value.metadata["field"]) == (Reason.INVALID_RATE, "as_of")


def test_extreme_rates_price_without_overflow() -> None:
    """At the bounds, any int64 amount is priced or refused with a reason,
    never a decimal overflow."""
    for mid in (MIN_RATE, MAX_RATE, MIN_RATE * MIN_RATE, MAX_RATE * MAX_RATE):
        for kwargs in (
            {"source_amount": INT64_MAX},
            {"target_amount": INT64_MAX},
            {"source_amount": 1},
            {"target_amount": 1},
        ):
            try:
                price(
                    DerivedRate(mid, "x", NOW),
                    source_currency="JPY",
                    target_currency="KWD",
                    spread_bps=9999,
                    **kwargs,
                )
            except InvalidArgument as err:
                assert err.reason in (Reason.INVALID_AMOUNT, Reason.AMOUNT_OUT_OF_RANGE)


# FX settings ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"default_spread_bps": -1},
        {"default_spread_bps": 10_000},
        {"corridor_spread_bps": {("USD", "PHP"): -5}},
        {"corridor_spread_bps": {("USD", "PHP"): 10_000}},
        {"corridor_spread_bps": {("USD", "PHP"): True}},
        {"corridor_spread_bps": {("USD", "USD"): 10}},
        {"corridor_spread_bps": {("USD", "XXX"): 10}},
        {"base_currency": "XXX"},
        {"quote_ttl": timedelta(0)},
        {"max_rate_age": timedelta(seconds=-1)},
    ],
)
def test_fx_config_is_checked_when_built(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError) as err:
        FxConfig(**kwargs)  # type: ignore[arg-type]
    assert isinstance(err.value, InvalidArgument)  # the CLI prints it as an error line
    assert err.value.message.startswith("FX settings: ")


def test_corridor_spread_overrides_the_default() -> None:
    corridors = {("USD", "PHP"): 0, ("USD", "JPY"): 9999}
    config = FxConfig(default_spread_bps=50, corridor_spread_bps=corridors)
    corridors[("USD", "PHP")] = 10_000  # the config keeps the checked copy
    assert config.spread("USD", "PHP") == 0
    assert config.spread("USD", "JPY") == 9999
    assert config.spread("PHP", "USD") == 50  # a corridor has a direction


# Rate files -----------------------------------------------------------------


def test_json_rates_are_exact_decimals(tmp_path: Path) -> None:
    path = tmp_path / "rates.json"
    path.write_text(
        '[{"base": "USD", "quote": "PHP", "rate": 0.12345678901234567890,'
        ' "as_of": "2026-01-01T12:00:00Z"},\n'
        ' {"base": "USD", "quote": "JPY", "rate": "151.37", "as_of": "2026-01-01T12:00:00Z"},\n'
        ' {"base": "KWD", "quote": "USD", "rate": 3, "as_of": "2026-01-01T13:00:00+01:00"}]'
    )
    rows = load_rates_file(path)
    noon = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert rows == [
        ("USD", "PHP", "0.12345678901234567890", noon),
        ("USD", "JPY", "151.37", noon),
        ("KWD", "USD", "3", noon),
    ]
    # A float would have kept 17 digits: 0.12345678901234568.
    assert Decimal(rows[0][2]) == Decimal("0.12345678901234567890")


def test_csv_rates(tmp_path: Path) -> None:
    path = tmp_path / "rates.csv"
    path.write_text(
        "base,quote,rate,as_of\nUSD,PHP,56.10,2026-01-01T12:00:00+08:00\n\n"
        " USD , JPY , 151.37 , 2026-01-01T04:00:00Z \n"
    )
    assert load_rates_file(path) == [
        ("USD", "PHP", "56.10", datetime(2026, 1, 1, 4, tzinfo=UTC)),
        ("USD", "JPY", "151.37", datetime(2026, 1, 1, 4, tzinfo=UTC)),
    ]


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("r.json", '[{"base": "USD", "quote": "PHP", "rate": 56.1,}]', "line 1 column"),
        ("r.json", '{"base": "USD"}', "top level"),
        ("r.json", "[]", "rows"),
        ("r.json", '[{"base": "USD", "quote": "PHP", "rate": 56.1}, 7]', "item 1"),
        ("r.json", '[{"base": "USD", "quote": "PHP"}]', "item 0: field 'rate' is missing"),
        ("r.json", '[{"base": "USD", "quote": "PHP", "rate": 1e999999999}]', "item 0: INVALID"),
        ("r.json", '[{"base": "USD", "quote": "PHP", "rate": true}]', "item 0: rate must"),
        ("r.json", '[{"base": "USD", "quote": "PHP", "rate": NaN}]', "item 0: rate must"),
        (
            "r.json",
            '[{"base": "USD", "quote": "PHP", "rate": 1, "as_of": "2026-01-01T12:00:00"}]',
            "item 0: as_of '2026-01-01T12:00:00' has no UTC offset",
        ),
        ("r.csv", "base,quote\nUSD,PHP\n", "line 1: the header lacks ['rate']"),
        (
            "r.csv",
            "base,quote,rate,as_of\nUSD,PHP,56.1,2026-01-01T12:00:00Z\nUSD,JPY\n",
            "line 3: field 'rate' is missing",
        ),
        ("r.csv", "base,quote,rate\nUSD,PHP,56.1,extra\n", "line 2: too many fields"),
        ("r.csv", "base,quote,rate\nUSD,PHP,abc\n", "line 2: INVALID_RATE"),
        (
            "r.csv",
            "base,quote,rate,as_of\nUSD,PHP,56.1,2026-01-01T12:00:00Z\n"
            "PHP,USD,0.0178,2026-01-01T12:00:00Z\n",
            "line 3: PHP/USD already given at line 2",
        ),
        # as_of is required: a rate without it would look fresh whenever loaded.
        ("r.csv", "base,quote,rate\nUSD,PHP,56.1\n", "line 2: field 'as_of' is missing"),
        ("r.csv", "base,quote,rate,as_of\nUSD,PHP,56.1,\n", "line 2: field 'as_of' is missing"),
        ("r.json", '[{"base": "USD", "quote": "PHP", "rate": 1}]', "item 0: field 'as_of'"),
        ("r.csv", "base,quote,rate\nUSD,XXX,1\n", "line 2: UNKNOWN_CURRENCY"),
        ("r.csv", "base,quote,rate,as_of\nUSD,PHP,1,yesterday\n", "line 2: as_of 'yesterday'"),
        ("r.csv", "base,quote,rate\n", "rows"),
    ],
)
def test_bad_rate_files_name_the_file_and_the_place(
    tmp_path: Path, name: str, content: str, where: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InvalidArgument) as err:
        load_rates_file(path)
    assert err.value.reason == Reason.INVALID_RATE
    assert str(path) in err.value.message and where in err.value.message, err.value.message


def test_unreadable_rate_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.csv"
    with pytest.raises(InvalidArgument) as err:
        load_rates_file(missing)
    assert str(missing) in err.value.message
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe[")
    with pytest.raises(InvalidArgument):
        load_rates_file(binary)


# Properties of the arithmetic ---------------------------------------------

CURRENCIES = ["JPY", "USD", "KWD"]  # 0, 2 and 3 decimals
# Two currencies of each exponent, so that the pairs cover every ordered
# pair of exponents (0, 2, 3), equal exponents included.
BY_EXPONENT = {0: ("JPY", "KRW"), 2: ("USD", "EUR"), 3: ("KWD", "BHD")}
PAIRS = [
    (BY_EXPONENT[a][0], BY_EXPONENT[b][1 if a == b else 0])
    for a, b in itertools.product(BY_EXPONENT, repeat=2)
] + list(itertools.permutations(CURRENCIES, 2))


PAIR_CURRENCIES = sorted({c for pair in PAIRS for c in pair})


def test_the_pairs_cover_every_pair_of_exponents() -> None:
    assert all(exponent(c) == e for e, cs in BY_EXPONENT.items() for c in cs)
    covered = {(exponent(a), exponent(b)) for a, b in PAIRS if a != b}
    assert covered == set(itertools.product((0, 2, 3), repeat=2))


@st.composite
def mids(draw: st.DrawFn) -> Decimal:
    """A fed mid (1 to 20 significant digits, 1e-9 to 1e9) or a derived one
    (its inverse, stated to 34 digits)."""
    digits = draw(st.integers(1, 20))
    coefficient = draw(st.integers(10 ** (digits - 1), 10**digits - 1))
    adjusted = draw(st.integers(-9, 8))
    fed = Decimal(coefficient).scaleb(adjusted - digits + 1)
    assert MIN_RATE <= fed < MAX_RATE
    return CTX.divide(Decimal(1), fed) if draw(st.booleans()) else fed


amounts = st.one_of(st.integers(1, 1_000), st.integers(1, 10**12), st.integers(1, INT64_MAX))
spreads = st.one_of(st.sampled_from([0, 1, 50, 9_999]), st.integers(0, 9_999))


def _scale(source: str, target: str) -> Fraction:
    """Source minor units to target minor units, per major unit of rate."""
    return Fraction(10 ** exponent(target), 10 ** exponent(source))


def stated_rate(mid: Decimal, bps: int) -> Fraction:
    """The all-in rate as the rule states it: mid x (10000 - bps) / 10000,
    rounded half-even to 34 significant digits (the division by 10^4 is a
    shift, so it commutes with that rounding)."""
    with localcontext(Context(prec=34, rounding=ROUND_HALF_EVEN)):
        stated = (mid * (10_000 - bps)).scaleb(-4)
    exact = Fraction(mid) * (10_000 - bps) / 10_000
    assert abs(Fraction(stated) - exact) <= exact / 10**33
    return Fraction(stated)


def _check_terms(terms: QuoteTerms, mid: Decimal, bps: int, rate: Fraction) -> None:
    assert Fraction(terms.rate) == rate
    assert terms.mid_rate == mid and terms.spread_bps == bps


def _never_gives_value_away(terms: QuoteTerms, rate: Fraction, mid: Decimal) -> None:
    """The counterparty receives S source minor units and delivers T target
    minor units: at the quoted (all-in) rate, and so at mid, T is worth no
    more than S; and the fee it records is never negative."""
    scale = _scale(terms.source_currency, terms.target_currency)
    received_at_rate = terms.source_amount * rate * scale
    assert terms.target_amount <= received_at_rate
    assert terms.target_amount <= terms.source_amount * Fraction(mid) * scale
    assert terms.fee >= 0


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(PAIRS), amounts, mids(), spreads)
def test_selling_a_source_amount(
    pair: tuple[str, str], source: int, mid: Decimal, bps: int
) -> None:
    """T = floor(S x r): 0 <= S x r - T < 1, so the counterparty never
    delivers more than it receives; fee = floor(S x m) - T >= 0, within one
    minor unit of the exact spread S x (m - r); or refused with the reason
    the exact values call for (nothing to deliver: INVALID_AMOUNT)."""
    src, tgt = pair
    scale = _scale(src, tgt)
    rate = stated_rate(mid, bps)
    exact_target = source * rate * scale
    exact_at_mid = source * Fraction(mid) * scale
    derived = DerivedRate(mid, "x", NOW)
    call = {"source_currency": src, "target_currency": tgt, "spread_bps": bps}
    expected_target = math.floor(exact_target)
    if expected_target == 0 or expected_target > INT64_MAX:
        with pytest.raises(InvalidArgument) as err:
            price(derived, source_amount=source, **call)  # type: ignore[arg-type]
        assert err.value.reason == (
            Reason.INVALID_AMOUNT if expected_target == 0 else Reason.AMOUNT_OUT_OF_RANGE
        )
        return
    if math.floor(exact_at_mid) > INT64_MAX:
        with pytest.raises(InvalidArgument) as err:
            price(derived, source_amount=source, **call)  # type: ignore[arg-type]
        assert err.value.reason == Reason.AMOUNT_OUT_OF_RANGE
        return
    terms = price(derived, source_amount=source, **call)  # type: ignore[arg-type]
    _check_terms(terms, mid, bps, rate)
    assert terms.source_amount == source
    assert terms.target_amount == expected_target
    assert 0 <= exact_target - terms.target_amount < 1
    assert terms.fee == math.floor(exact_at_mid) - terms.target_amount
    assert abs(terms.fee - source * (Fraction(mid) - rate) * scale) <= 1
    _never_gives_value_away(terms, rate, mid)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(PAIRS), amounts, mids(), spreads)
def test_delivering_a_target_amount(
    pair: tuple[str, str], target: int, mid: Decimal, bps: int
) -> None:
    """The source is charged, so rounded up: S = ceil(T / r), the smallest
    source amount worth T at r (0 <= S - T / r < 1); fee = floor(S x m) - T
    >= 0, within one target minor unit plus one source minor unit valued at
    mid of the exact spread T x (m/r - 1). Never refused as too small: the
    least a delivery costs is one source minor unit."""
    src, tgt = pair
    scale = _scale(src, tgt)
    rate = stated_rate(mid, bps)
    exact_source = target / (rate * scale)
    derived = DerivedRate(mid, "x", NOW)
    call = {"source_currency": src, "target_currency": tgt, "spread_bps": bps}
    expected_source = math.ceil(exact_source)
    assert expected_source >= 1
    at_mid = math.floor(expected_source * Fraction(mid) * scale)
    if expected_source > INT64_MAX or at_mid > INT64_MAX:
        with pytest.raises(InvalidArgument) as err:
            price(derived, target_amount=target, **call)  # type: ignore[arg-type]
        assert err.value.reason == Reason.AMOUNT_OUT_OF_RANGE
        return
    terms = price(derived, target_amount=target, **call)  # type: ignore[arg-type]
    _check_terms(terms, mid, bps, rate)
    assert terms.target_amount == target
    assert terms.source_amount == expected_source
    assert 0 <= terms.source_amount - exact_source < 1
    assert terms.fee == at_mid - target
    exact_fee = target * (Fraction(mid) / rate - 1)
    assert abs(terms.fee - exact_fee) <= 1 + Fraction(mid) * scale
    _never_gives_value_away(terms, rate, mid)


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("bps", [0, 50])
def test_a_batch_of_tiny_quotes_never_loses_value(pair: tuple[str, str], bps: int) -> None:
    """The attack of issue 18: many quotes of the smallest amounts, each of
    them rounded in the counterparty's favour, keep at least their value."""
    src, tgt = pair
    scale = _scale(src, tgt)
    for mid in (Decimal("0.00667"), Decimal("149.93"), Decimal("3.2551"), Decimal("1")):
        derived = DerivedRate(mid, "x", NOW)
        rate = stated_rate(mid, bps)
        given_away = Fraction(0)
        for amount in range(1, 200):
            for kwargs in ({"source_amount": amount}, {"target_amount": amount}):
                try:
                    terms = price(
                        derived, source_currency=src, target_currency=tgt, spread_bps=bps, **kwargs
                    )
                except InvalidArgument as err:
                    assert err.reason == Reason.INVALID_AMOUNT and "source_amount" in kwargs
                    continue
                _never_gives_value_away(terms, rate, mid)
                given_away += terms.target_amount - terms.source_amount * rate * scale
        assert given_away <= 0


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(PAIRS),
            st.integers(1, 10**12),
            mids(),
            spreads,
            st.booleans(),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_clearing_books_each_leg_at_the_quoted_amounts(
    flows: list[tuple[tuple[str, str], int, Decimal, int, bool]],
) -> None:
    """Random cross-currency transfers from A to B through the pure clearing
    code, priced and delivered by the FX provider P: per currency, A's
    position is minus what A sold, B's is plus exactly what B was quoted, P
    holds the difference, and no fee is booked anywhere: P's spread is what
    it keeps, the fees recomputed from the stated rates. Valued at mid, what
    P keeps of each transfer is its fee plus less than one minor unit; the
    hub takes no position."""
    banks = {"A": BankStatus.ACTIVE, "B": BankStatus.ACTIVE, "P": BankStatus.ACTIVE}
    # P may deliver up to int64 in each currency (its liquidity plus its cap).
    room = {"A": 0, "B": 0, "P": INT64_MAX - 10**17}
    accounts = {
        (owner, c): AccountState(position_account_id(owner, c), owner, c, 10**17, room[owner], 0)
        for owner in ("A", "B", "P")
        for c in PAIR_CURRENCIES
    }
    cycles = {c: f"{c}-000001" for c in PAIR_CURRENCIES}
    quotes: dict[str, Quote] = {}
    items: list[Instruction] = []
    for (source, target), amount, mid, bps, sell in flows:
        try:
            terms = price(
                DerivedRate(mid, "x", NOW),
                source_currency=source,
                target_currency=target,
                spread_bps=bps,
                **({"source_amount": amount} if sell else {"target_amount": amount}),
            )
        except InvalidArgument:
            continue  # too small to convert, or beyond int64: refused, not rounded
        if terms.source_amount > 10**15:
            continue
        qid = str(uuid.uuid4())
        quotes[qid] = Quote(qid, "A", terms, NOW, NOW + timedelta(minutes=1), None, "P")
        items.append(Instruction(str(uuid.uuid4()), "A", "B", source, terms.source_amount, "", qid))
    result = clear_batch(
        items,
        existing={},
        banks=banks,
        accounts=accounts,
        open_cycles=cycles,
        now=NOW,
        quotes=quotes,
    )
    assert all(isinstance(o, Accepted) for o in result.outcomes)
    for stored in result.new_transfers:
        assert stored.fx_provider == "P" and stored.fee == 0
        assert stored.credit_amount == quotes[stored.quote_id or ""].terms.target_amount
    sold: dict[str, int] = defaultdict(int)
    bought: dict[str, int] = defaultdict(int)
    fees: dict[str, int] = defaultdict(int)
    for q in quotes.values():
        t = q.terms
        sold[t.source_currency] += t.source_amount
        bought[t.target_currency] += t.target_amount
        scale = _scale(t.source_currency, t.target_currency)
        fee = math.floor(t.source_amount * Fraction(t.mid_rate) * scale) - t.target_amount
        fees[t.target_currency] += fee
        kept_at_mid = t.source_amount * Fraction(t.mid_rate) * scale - t.target_amount
        assert 0 <= kept_at_mid - fee < 1
    for currency in PAIR_CURRENCIES:
        cid = cycles[currency]
        net = {b: p.net for (c, b), p in result.positions.items() if c == cid}
        assert net.get("A", 0) == -sold[currency]
        assert net.get("B", 0) == bought[currency]
        assert net.get("P", 0) == sold[currency] - bought[currency]
        assert HUB not in net
        assert all(p.fee == 0 for (c, _b), p in result.positions.items() if c == cid)
        assert fees[currency] >= 0
