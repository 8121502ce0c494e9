"""The one party/account/headroom decision (domain/decision.py), and that
the batch path answers with it (issue 12)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from remitnet.services.domain.decision import (
    headroom_refusal,
    no_account,
    party_refusal,
    quote_refusal,
    refusal,
)
from remitnet.services.domain.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Reason,
    RemitnetError,
)
from remitnet.services.domain.fx import Quote, QuoteTerms
from remitnet.services.domain.model import HUB, BankStatus, Instruction, account_id
from remitnet.services.domain.netting import Accepted, AccountState, Rejected, clear_batch

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TID = "0b8f3a52-6f3e-4c1e-9a57-2d1f6f1c9e11"
QID = "5c1d0e2a-3b4c-4d5e-8f90-a1b2c3d4e5f6"
ACTIVE, SUSPENDED = BankStatus.ACTIVE, BankStatus.SUSPENDED


def item(debtor: str = "A", creditor: str = "B", amount: int = 100) -> Instruction:
    return Instruction(TID, debtor, creditor, "USD", amount, "")


def state(bank: str, balance: int = 100, cap: int = 0, net: int = 0) -> AccountState:
    return AccountState(account_id(bank, "USD"), bank, "USD", balance, cap, net)


def reason(error: RemitnetError | None) -> str | None:
    return None if error is None else error.reason


def test_a_party_is_known_and_active() -> None:
    assert party_refusal("A", ACTIVE) is None
    unknown = party_refusal("Z", None)
    assert isinstance(unknown, NotFound)
    assert (unknown.reason, unknown.message, unknown.metadata) == (
        Reason.UNKNOWN_PARTICIPANT,
        "no bank Z at the hub",
        {"bank": "Z"},
    )
    suspended = party_refusal("S", SUSPENDED)
    assert isinstance(suspended, FailedPrecondition)
    assert (suspended.reason, suspended.message, suspended.metadata) == (
        Reason.PARTICIPANT_SUSPENDED,
        "bank S is suspended",
        {"bank": "S"},
    )


def test_a_missing_account_is_named_as_each_path_names_it() -> None:
    netted = no_account(HUB, "EUR")
    gross = no_account("A", "EUR", named_bank=True)
    assert netted.reason == gross.reason == Reason.CURRENCY_NOT_SUPPORTED
    assert netted.message == "HUB holds no EUR account at the hub"
    assert gross.message == "bank A holds no EUR account at the hub"
    assert gross.metadata == {"bank": "A", "currency": "EUR"}


def test_the_amount_must_fit_the_debtor_headroom() -> None:
    payer = state("A", balance=60, cap=30, net=10)  # headroom 100
    assert headroom_refusal(item(amount=100), payer) is None
    err = headroom_refusal(item(amount=101), payer)
    assert isinstance(err, FailedPrecondition)
    assert (err.reason, err.message) == (
        Reason.INSUFFICIENT_LIQUIDITY,
        "amount 101 exceeds the headroom of A in USD, 100",
    )
    assert err.metadata == {"bank": "A", "currency": "USD", "headroom": "100", "amount": "101"}


def test_the_quote_step() -> None:
    terms = QuoteTerms("USD", "EUR", 100, 90, Decimal("0.9"), Decimal("0.9"), 0, 0, "USD/EUR")
    good = Quote(QID, "A", terms, NOW, NOW + timedelta(minutes=1), None, "P")
    paying = Instruction(TID, "A", "B", "USD", 100, "", QID)
    assert quote_refusal(good, paying, NOW, {}) is None
    missing = quote_refusal(None, paying, NOW, {})
    assert isinstance(missing, NotFound)
    assert (missing.reason, missing.message) == (Reason.QUOTE_NOT_FOUND, f"no quote {QID}")
    assert reason(quote_refusal(good, paying, NOW, {QID: "earlier"})) == Reason.QUOTE_USED
    assert reason(quote_refusal(good, paying._replace(amount=99), NOW, {})) == (
        Reason.QUOTE_MISMATCH
    )
    # Owned, used and expired come before the amount.
    stolen = quote_refusal(good, paying._replace(debtor="C", amount=99), NOW, {})
    assert isinstance(stolen, PermissionDenied)
    assert reason(
        quote_refusal(good, paying._replace(amount=99), NOW + timedelta(hours=1), {})
    ) == (Reason.QUOTE_EXPIRED)
    # A quote of the hub as dealer, before FX providers, is not usable.
    hubs = Quote(QID, "A", terms, NOW, NOW + timedelta(minutes=1), None)
    assert reason(quote_refusal(hubs, paying, NOW, {})) == Reason.QUOTE_EXPIRED


def test_refusal_takes_the_steps_in_order() -> None:
    banks = {"A": ACTIVE, "B": ACTIVE, "S": SUSPENDED}
    a, b = state("A"), state("B")
    quoted = no_account("X", "Y")  # any refusal standing for a quote's
    assert refusal(item(), banks, a, b, "USD") is None
    # Debtor before creditor, unknown or suspended.
    assert reason(refusal(item("Z", "S"), banks, a, b, "USD")) == Reason.UNKNOWN_PARTICIPANT
    err = refusal(item("S", "Z"), banks, a, b, "USD")
    assert err is not None and err.metadata == {"bank": "S"}
    err = refusal(item("A", "S"), banks, a, b, "USD")
    assert err is not None and err.metadata == {"bank": "S"}
    # Parties before the quote, the quote before the accounts.
    assert reason(refusal(item("A", "S"), banks, None, None, "USD", quoted)) == (
        Reason.PARTICIPANT_SUSPENDED
    )
    assert refusal(item(), banks, None, None, "USD", quoted) is quoted
    # Debtor's account, creditor's (in the credit currency), then the hub's.
    err = refusal(item(), banks, None, None, "EUR", None, "JPY")
    assert err is not None and err.metadata == {"bank": "A", "currency": "USD"}
    err = refusal(item(), banks, a, None, "EUR", None, "JPY")
    assert err is not None and err.metadata == {"bank": "B", "currency": "EUR"}
    err = refusal(item(), banks, a, b, "EUR", None, "JPY")
    assert err is not None and err.message == "HUB holds no JPY account at the hub"
    # Accounts before the headroom; the headroom last.
    assert reason(refusal(item(amount=101), banks, None, b, "USD")) == (
        Reason.CURRENCY_NOT_SUPPORTED
    )
    assert reason(refusal(item(amount=101), banks, a, b, "USD")) == Reason.INSUFFICIENT_LIQUIDITY
    err = refusal(item(), banks, a, None, "USD", named_bank=True)
    assert err is not None and err.message == "bank B holds no USD account at the hub"


BANKS = ["A", "B", "S", "Z"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(BANKS), max_size=4),
    st.lists(
        st.tuples(st.sampled_from(BANKS), st.sampled_from(BANKS), st.integers(1, 300)),
        min_size=1,
        max_size=20,
    ),
    st.booleans(),
)
def test_each_batch_refusal_is_the_decisions(
    held: list[str], flows: list[tuple[str, str, int]], cycle_open: bool
) -> None:
    """Every party, account or headroom refusal clear_batch gives is what
    `refusal` says for the item against the state the batch had reached."""
    banks = {"A": ACTIVE, "B": ACTIVE, "S": SUSPENDED}
    accounts = {(b, "USD"): state(b, balance=200) for b in held if b != "Z"}
    items = [
        Instruction(f"{k:08d}-0000-4000-8000-000000000000", d, c, "USD", amount, "")
        for k, (d, c, amount) in enumerate(flows)
        if d != c
    ]
    mirror = {k: state(v.bank, v.balance) for k, v in accounts.items()}
    cycles = {"USD": "USD-000001"} if cycle_open else {}
    result = clear_batch(
        items, existing={}, banks=banks, accounts=accounts, open_cycles=cycles, now=NOW
    )
    for i, outcome in zip(items, result.outcomes, strict=True):
        payer = mirror.get((i.debtor, "USD")) if cycle_open else None
        payee = mirror.get((i.creditor, "USD")) if cycle_open else None
        expected = refusal(i, banks, payer, payee, "USD")
        if expected is None:
            assert isinstance(outcome, Accepted)
            assert payer is not None and payee is not None
            payer.unsettled_net -= i.amount
            payee.unsettled_net += i.amount
        else:
            assert isinstance(outcome, Rejected)
            got = outcome.error
            assert (type(got), got.reason, got.message, got.metadata) == (
                type(expected),
                expected.reason,
                expected.message,
                expected.metadata,
            )
