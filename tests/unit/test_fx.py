"""FX arithmetic: exact decimals, half-even rounding to each currency's
minor unit, and books that balance per currency whatever the rates."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remitnet.services.domain.errors import FailedPrecondition, InvalidArgument, Reason
from remitnet.services.domain.fx import (
    DerivedRate,
    Quote,
    Rate,
    check_fresh,
    derive,
    price,
    to_minor,
)
from remitnet.services.domain.ledger import fx_revenue_posting, settlement_posting
from remitnet.services.domain.model import (
    HUB,
    BankStatus,
    Instruction,
    account_id,
    position_account_id,
)
from remitnet.services.domain.netting import Accepted, AccountState, clear_batch

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def rates(**pairs: str) -> dict[tuple[str, str], Rate]:
    return {(k[:3], k[3:]): Rate(k[:3], k[3:], Decimal(v), NOW) for k, v in pairs.items()}


def test_half_even_to_the_minor_unit() -> None:
    assert to_minor(Decimal("1.005"), "USD") == 100  # half to even: 100.5 -> 100
    assert to_minor(Decimal("1.015"), "USD") == 102
    assert to_minor(Decimal("100.5"), "JPY") == 100
    assert to_minor(Decimal("101.5"), "JPY") == 102
    assert to_minor(Decimal("1.0005"), "KWD") == 1000
    assert to_minor(Decimal("1.0015"), "KWD") == 1002


@pytest.mark.parametrize(
    ("source", "target", "amount", "mid", "expected_target"),
    [
        ("USD", "JPY", 10_000, "151.37", 15_061),  # 100 USD at 151.37 less 50 bps
        ("JPY", "USD", 1_000_000, "0.0066", 656_700),  # 1,000,000 JPY -> 6,567.00 USD
        ("KWD", "USD", 1_000, "3.2551", 324),  # 1 KWD
        ("USD", "KWD", 100_000, "0.30721", 305_674),  # 1,000 USD -> KWD fils
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
    assert abs(derived.mid - Decimal("83.2") / Decimal("0.92")) < Decimal("1e-25")
    assert derive(book, "INR", "USD", "USD").derivation == "1/(USD/INR)"
    with pytest.raises(FailedPrecondition) as err:
        derive(book, "EUR", "NGN", "USD")
    assert err.value.reason == Reason.RATE_NOT_AVAILABLE


def test_stale_rates_are_refused() -> None:
    derived = DerivedRate(Decimal(1), "A/B", NOW - timedelta(minutes=11))
    with pytest.raises(FailedPrecondition) as err:
        check_fresh(derived, NOW, timedelta(minutes=10))
    assert err.value.reason == Reason.RATE_STALE


CURRENCIES = ["USD", "JPY", "KWD", "EUR"]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(CURRENCIES),
            st.sampled_from(CURRENCIES),
            st.integers(1, 10**12),
            st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("5000"), places=6),
            st.integers(0, 500),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_books_balance_per_currency_and_revenue_equals_spreads(
    flows: list[tuple[str, str, int, Decimal, int]],
) -> None:
    """Random cross-currency transfers through the pure clearing and
    settlement code: every currency's postings sum to zero and the hub's
    revenue equals the sum of the quotes' spreads, exactly."""
    banks = {"A": BankStatus.ACTIVE, "B": BankStatus.ACTIVE}
    accounts = {
        (owner, c): AccountState(position_account_id(owner, c), owner, c, 10**15, 0, 0)
        for owner in ("A", "B", HUB)
        for c in CURRENCIES
    }
    cycles = {c: f"{c}-000001" for c in CURRENCIES}
    quotes: dict[str, Quote] = {}
    items: list[Instruction] = []
    for source, target, amount, mid, bps in flows:
        if source == target:
            continue
        try:
            terms = price(
                DerivedRate(mid, "x", NOW),
                source_currency=source,
                target_currency=target,
                spread_bps=bps,
                source_amount=amount,
            )
        except InvalidArgument:
            continue  # too small to convert, or beyond int64: refused, not rounded
        qid = str(uuid.uuid4())
        quotes[qid] = Quote(qid, "A", terms, NOW, NOW + timedelta(minutes=1), None)
        items.append(Instruction(str(uuid.uuid4()), "A", "B", source, amount, "", qid))
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
    totals: dict[str, int] = defaultdict(int)
    revenue: dict[str, int] = defaultdict(int)
    for currency in CURRENCIES:
        cid = cycles[currency]
        nets = {bank: p.net for (c, bank), p in result.positions.items() if c == cid}
        fee = sum(p.fee for (c, _b), p in result.positions.items() if c == cid)
        for posting in (
            settlement_posting(cid, currency, nets),
            fx_revenue_posting(cid, currency, fee),
        ):
            for leg in posting.legs:
                totals[currency] += leg.amount
                if leg.account_id == account_id(HUB, currency, "FX_REVENUE"):
                    revenue[currency] += leg.amount
    assert all(v == 0 for v in totals.values())
    expected: dict[str, int] = defaultdict(int)
    for q in quotes.values():
        expected[q.terms.target_currency] += q.terms.fee
    assert {k: v for k, v in revenue.items() if v} == {k: v for k, v in expected.items() if v}
