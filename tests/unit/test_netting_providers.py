"""The batch decision with FX providers (domain/netting.py, domain/decision.py
step 5): a cross-currency transfer's legs go debtor -> provider in the source
currency and provider -> creditor in the target currency; the provider must
be active, hold both accounts, and have the target-currency headroom, as
used by the earlier items of the same batch; a refused item leaves nothing
behind. And the pricing rule, stated for providers: the creditor gets the
quote's target amount exactly, and rounding is in the provider's favour."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remitnet.services.domain.bank import ParticipantRole
from remitnet.services.domain.decision import provider_refusal
from remitnet.services.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Reason,
    RemitnetError,
)
from remitnet.services.domain.fx import DerivedRate, Quote, QuoteTerms, price
from remitnet.services.domain.model import (
    HUB,
    BankStatus,
    Instruction,
    account_id,
)
from remitnet.services.domain.money import exponent
from remitnet.services.domain.netting import (
    Accepted,
    AccountState,
    BatchResult,
    PositionDelta,
    Rejected,
    clear_batch,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
A, B, P, Q = "BANKA", "BANKB", "FXP01", "FXP02"
CYCLES = {"USD": "USD-000001", "EUR": "EUR-000001"}
ACTIVE, SUSPENDED = BankStatus.ACTIVE, BankStatus.SUSPENDED
BOTH = ParticipantRole.BANK | ParticipantRole.FX_PROVIDER


def acct(owner: str, currency: str, balance: int, cap: int = 0) -> AccountState:
    return AccountState(account_id(owner, currency), owner, currency, balance, cap, 0)


def world(provider_eur: int = 1_000, provider_cap: int = 0) -> dict[tuple[str, str], AccountState]:
    """A and B hold 10,000 of each currency; P and Q hold `provider_eur`
    EUR (and a cap) and nothing in USD; the hub's FX accounts exist too."""
    out = {(o, c): acct(o, c, 10_000) for o in (A, B) for c in ("USD", "EUR")}
    for provider in (P, Q):
        out[(provider, "USD")] = acct(provider, "USD", 0)
        out[(provider, "EUR")] = acct(provider, "EUR", provider_eur, provider_cap)
    for c in ("USD", "EUR"):
        out[(HUB, c)] = AccountState(account_id(HUB, c, "FX"), HUB, c, 0, 0, 0)
    return out


def quote(target: int, *, provider: str | None = P, bank: str = A, source: int = 100) -> Quote:
    """A quote to sell `source` USD for `target` EUR, delivered by `provider`."""
    terms = QuoteTerms("USD", "EUR", source, target, Decimal("0.92"), Decimal("0.9"), 50, 2, "x")
    qid = str(uuid.uuid4())
    return Quote(qid, bank, terms, NOW, NOW + timedelta(minutes=1), None, provider)


def paying(q: Quote, debtor: str = A, creditor: str = B) -> Instruction:
    return Instruction(
        str(uuid.uuid4()), debtor, creditor, "USD", q.terms.source_amount, "", q.quote_id
    )


def run(
    quotes: list[Quote],
    items: list[Instruction] | None = None,
    *,
    accounts: dict[tuple[str, str], AccountState] | None = None,
    banks: dict[str, BankStatus] | None = None,
    roles: dict[str, ParticipantRole] | None = None,
) -> tuple[BatchResult, dict[tuple[str, str], AccountState]]:
    accts = world() if accounts is None else accounts
    statuses = {A: ACTIVE, B: ACTIVE, P: ACTIVE, Q: ACTIVE}
    statuses.update(banks or {})
    result = clear_batch(
        [paying(q) for q in quotes] if items is None else items,
        existing={},
        banks=statuses,
        accounts=accts,
        open_cycles=CYCLES,
        now=NOW,
        quotes={q.quote_id: q for q in quotes},
        roles={P: ParticipantRole.FX_PROVIDER, Q: ParticipantRole.FX_PROVIDER, **(roles or {})},
    )
    return result, accts


def reasons(result: BatchResult) -> list[str]:
    return [o.error.reason if isinstance(o, Rejected) else "" for o in result.outcomes]


def error_of(result: BatchResult, index: int = 0) -> RemitnetError:
    outcome = result.outcomes[index]
    assert isinstance(outcome, Rejected)
    return outcome.error


# Both legs through the provider ------------------------------------------------------


def test_an_accepted_item_moves_both_legs_through_its_provider() -> None:
    q = quote(90)
    result, accts = run([q])
    [outcome] = result.outcomes
    assert isinstance(outcome, Accepted)
    t = outcome.transfer
    assert (t.fx_provider, t.creditor_amount, t.fee) == (P, 90, 0)
    assert result.positions == {
        ("USD-000001", A): PositionDelta(sent=100, sent_count=1),
        ("USD-000001", P): PositionDelta(received=100, received_count=1),
        ("EUR-000001", P): PositionDelta(sent=90, sent_count=1),
        ("EUR-000001", B): PositionDelta(received=90, received_count=1),
    }
    assert result.account_deltas == {
        account_id(A, "USD"): -100,
        account_id(P, "USD"): 100,
        account_id(P, "EUR"): -90,
        account_id(B, "EUR"): 90,
    }
    assert (accts[(P, "EUR")].headroom, accts[(P, "USD")].headroom) == (910, 100)
    # The hub takes no position, and no fee is booked.
    assert all(owner != HUB for _, owner in result.positions)
    assert accts[(HUB, "USD")].unsettled_net == accts[(HUB, "EUR")].unsettled_net == 0
    assert result.used_quotes == {q.quote_id: t.transfer_id}


def test_transfers_draw_on_one_provider_within_a_batch_until_it_runs_out() -> None:
    """P holds 1,000 EUR and a cap of 50: 1,050 to deliver. Items are
    decided in order against what the earlier ones used; one that needs
    more than is left is refused, a later one that fits is accepted, and
    the other provider is unaffected."""
    quotes = [quote(400), quote(400), quote(300), quote(250), quote(300, provider=Q), quote(1)]
    result, accts = run(quotes, accounts=world(provider_cap=50))
    assert reasons(result) == [
        "",
        "",
        Reason.FX_PROVIDER_INSUFFICIENT_LIQUIDITY,
        "",
        "",
        Reason.FX_PROVIDER_INSUFFICIENT_LIQUIDITY,
    ]
    err = error_of(result, 2)
    assert isinstance(err, FailedPrecondition)
    assert err.message == (
        f"FX provider {P} cannot deliver 300 EUR: its headroom is 250; ask for a new quote"
    )
    assert err.metadata == {"provider": P, "currency": "EUR", "headroom": "250", "amount": "300"}
    assert error_of(result, 5).metadata["headroom"] == "0"
    # P delivered 400 + 400 + 250 = 1,050: its liquidity and its whole cap.
    assert accts[(P, "EUR")].unsettled_net == -1_050 and accts[(P, "EUR")].headroom == 0
    assert accts[(P, "EUR")].within_limit
    assert accts[(Q, "EUR")].unsettled_net == -300
    assert accts[(B, "EUR")].unsettled_net == 1_350
    assert accts[(P, "USD")].unsettled_net == 300  # three items' source amounts
    # The refused items' quotes stay unused; their transfers are not stored.
    refused = {quotes[2].quote_id, quotes[5].quote_id}
    assert refused.isdisjoint(result.used_quotes)
    assert len(result.new_transfers) == 4
    assert result.positions[("EUR-000001", P)] == PositionDelta(sent=1_050, sent_count=3)


def test_a_credit_to_the_provider_in_the_target_currency_funds_later_items() -> None:
    """Headroom is the working state's: B paying P 500 EUR in the batch
    (same-currency) lets P deliver it on to A's quote after."""
    q = quote(1_400)
    credit = Instruction(str(uuid.uuid4()), B, P, "EUR", 500, "")
    before, _ = run([q])
    assert reasons(before) == [Reason.FX_PROVIDER_INSUFFICIENT_LIQUIDITY]
    after, accts = run([q], [credit, paying(q)], roles={P: BOTH})
    assert reasons(after) == ["", ""]
    assert accts[(P, "EUR")].headroom == 100


# Each refusal, in order -----------------------------------------------------------------


def test_a_suspended_provider_delivers_nothing() -> None:
    result, accts = run([quote(90)], banks={P: SUSPENDED})
    err = error_of(result)
    assert isinstance(err, FailedPrecondition)
    assert (err.reason, err.message, err.metadata) == (
        Reason.FX_PROVIDER_SUSPENDED,
        f"FX provider {P} is suspended; ask for a new quote",
        {"provider": P},
    )
    assert_nothing_stored(result, accts)


def test_an_unknown_provider_delivers_nothing() -> None:
    q = quote(90, provider="GONE01")
    result, accts = run([q])
    err = error_of(result)
    assert isinstance(err, NotFound)
    assert (err.reason, err.metadata) == (Reason.FX_PROVIDER_UNKNOWN, {"provider": "GONE01"})
    assert_nothing_stored(result, accts)


@pytest.mark.parametrize("missing", ["USD", "EUR"])
def test_a_provider_without_an_account_in_either_currency_delivers_nothing(missing: str) -> None:
    accts = world()
    del accts[(P, missing)]
    result, _ = run([quote(90)], accounts=accts)
    err = error_of(result)
    assert isinstance(err, FailedPrecondition)
    assert (err.reason, err.message, err.metadata) == (
        Reason.FX_PROVIDER_NO_ACCOUNT,
        f"FX provider {P} holds no {missing} account at the hub",
        {"provider": P, "currency": missing},
    )
    assert_nothing_stored(result, accts)


def test_a_quote_of_the_hub_from_before_fx_providers_is_refused_as_expired() -> None:
    result, accts = run([quote(90, provider=None)])
    err = error_of(result)
    assert (err.reason, err.message) == (
        Reason.QUOTE_EXPIRED,
        "quoted by the hub before FX providers; ask for a new quote",
    )
    assert_nothing_stored(result, accts)


def test_the_debtors_own_checks_come_before_the_providers() -> None:
    """Parties, quote, the parties' accounts and the debtor's headroom are
    checked before the provider's status, accounts and headroom; the
    provider's in that order."""
    broke = {P: SUSPENDED}
    big = quote(90, source=20_000)  # beyond A's USD headroom
    no_usd = world()
    del no_usd[(P, "USD")]
    cases: list[tuple[list[Quote], dict[str, BankStatus], str]] = [
        ([big], broke, Reason.INSUFFICIENT_LIQUIDITY),
        ([quote(5_000)], broke, Reason.FX_PROVIDER_SUSPENDED),  # suspended before headroom
        ([quote(90, bank=B)], broke, Reason.QUOTE_NOT_OWNED),
    ]
    for quotes, banks, expected in cases:
        result, _ = run(quotes, banks=banks)
        assert reasons(result) == [expected]
    result, _ = run([quote(5_000)], accounts=no_usd)  # no account before headroom
    assert reasons(result) == [Reason.FX_PROVIDER_NO_ACCOUNT]
    accts = world()
    del accts[(B, "EUR")]  # the creditor's account before the provider's
    result, _ = run([quote(90)], accounts=accts, banks=broke)
    assert reasons(result) == [Reason.CURRENCY_NOT_SUPPORTED]
    # The parties first of all.
    result, _ = run([quote(90)], banks={B: SUSPENDED, P: SUSPENDED})
    assert reasons(result) == [Reason.PARTICIPANT_SUSPENDED]


def test_a_provider_only_participant_is_no_party_to_a_transfer() -> None:
    q = quote(90)
    as_creditor = paying(q, creditor=P)
    result, accts = run([q], [as_creditor])
    err = error_of(result)
    assert isinstance(err, InvalidArgument)
    assert (err.reason, err.metadata) == (Reason.NOT_A_BANK, {"bank": P})
    assert err.message == f"{P} is an FX provider, not a bank: it cannot send or receive transfers"
    assert_nothing_stored(result, accts)
    # Same-currency too, as debtor or creditor; a suspended one is still no bank.
    to_p = Instruction(str(uuid.uuid4()), A, P, "USD", 10, "")
    from_q = Instruction(str(uuid.uuid4()), Q, A, "EUR", 10, "")
    result, accts = run([], [to_p, from_q], banks={Q: SUSPENDED})
    assert reasons(result) == [Reason.NOT_A_BANK, Reason.NOT_A_BANK]
    assert_nothing_stored(result, accts)
    # With both roles it is a bank as well.
    result, _ = run([], [to_p], roles={P: BOTH})
    assert reasons(result) == [""]


def assert_nothing_stored(result: BatchResult, accts: dict[tuple[str, str], AccountState]) -> None:
    """A refused batch of one leaves no trace: no transfer, position, delta
    or used quote, and every account as it was."""
    assert not result.new_transfers and not result.positions and not result.account_deltas
    assert not result.used_quotes
    assert all(a.unsettled_net == 0 for a in accts.values())


# The creditor gets the quote's target amount; rounding favours the provider -------------

CURRENCIES = ["USD", "EUR", "JPY", "KWD", "CLF"]  # exponents 2, 2, 0, 3, 4
mids = st.decimals(
    min_value=Decimal("0.0001"), max_value=Decimal("20000"), places=4, allow_nan=False
).filter(lambda d: d > 0)


def _scale(source: str, target: str) -> Fraction:
    """Target minor units per (source minor unit x rate)."""
    return Fraction(10) ** (exponent(target) - exponent(source))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([(s, t) for s in CURRENCIES for t in CURRENCIES if s != t]),
    mids,
    st.integers(0, 500),
    st.lists(st.tuples(st.integers(1, 10**9), st.booleans()), min_size=1, max_size=12),
    st.integers(0, 10**11),
)
def test_the_creditor_gets_exactly_the_quotes_target_and_the_provider_never_gives_value_away(
    pair: tuple[str, str],
    mid: Decimal,
    bps: int,
    asks: list[tuple[int, bool]],
    liquidity: int,
) -> None:
    """Random asks priced for provider P and paid in one batch, P holding
    `liquidity` in the target currency: each accepted transfer credits B
    exactly the quote's target amount and P pays exactly that, P's account
    never goes past its liquidity, and at the stated all-in rate r the
    target T delivered for the source S P receives is never worth more:
    T <= S x r, by less than one target minor unit for a source-amount ask;
    and S is the smallest source amount worth T at r for a target-amount ask.
    So P's spread, and rounding, is in P's favour (see `fx.price`)."""
    source, target = pair
    accts = {
        (A, source): acct(A, source, 10**18),
        (B, target): acct(B, target, 0),
        (P, source): acct(P, source, 0),
        (P, target): acct(P, target, liquidity),
    }
    quotes: list[Quote] = []
    for amount, sell in asks:
        try:
            terms = price(
                DerivedRate(mid, "x", NOW),
                source_currency=source,
                target_currency=target,
                spread_bps=bps,
                **({"source_amount": amount} if sell else {"target_amount": amount}),
            )
        except InvalidArgument:
            continue  # too small to convert, or beyond int64
        if terms.source_amount > 10**15:
            continue
        rate, scale = Fraction(terms.rate), _scale(source, target)
        worth = terms.source_amount * rate * scale  # the target S buys at r
        assert terms.target_amount <= worth
        if sell:
            assert (terms.source_amount, terms.target_amount) == (amount, math.floor(worth))
        else:
            assert terms.target_amount == amount
            assert terms.source_amount == math.ceil(amount / (rate * scale))
        qid = str(uuid.uuid4())
        quotes.append(Quote(qid, A, terms, NOW, NOW + timedelta(minutes=1), None, P))
    cycles = {source: f"{source}-000001", target: f"{target}-000001"}
    items = [
        Instruction(str(uuid.uuid4()), A, B, source, q.terms.source_amount, "", q.quote_id)
        for q in quotes
    ]
    result = clear_batch(
        items,
        existing={},
        banks={A: ACTIVE, B: ACTIVE, P: ACTIVE},
        accounts=accts,
        open_cycles=cycles,
        now=NOW,
        quotes={q.quote_id: q for q in quotes},
        roles={P: ParticipantRole.FX_PROVIDER},
    )
    left = liquidity
    delivered = received = 0
    for q, outcome in zip(quotes, result.outcomes, strict=True):
        if q.terms.target_amount > left:
            assert isinstance(outcome, Rejected)
            assert outcome.error.reason == Reason.FX_PROVIDER_INSUFFICIENT_LIQUIDITY
            assert outcome.error.metadata["headroom"] == str(left)
            continue
        assert isinstance(outcome, Accepted)
        t = outcome.transfer
        assert (t.fx_provider, t.credit_amount, t.fee) == (P, q.terms.target_amount, 0)
        legs = t.legs()
        assert [(g.payer, g.payee, g.amount) for g in legs] == [
            (A, P, q.terms.source_amount),
            (P, B, q.terms.target_amount),
        ]
        left -= q.terms.target_amount
        delivered += q.terms.target_amount
        received += q.terms.source_amount
    assert accts[(B, target)].unsettled_net == delivered
    assert accts[(P, target)].unsettled_net == -delivered
    assert accts[(P, source)].unsettled_net == received
    assert accts[(P, target)].within_limit
    assert accts[(P, target)].headroom == left >= 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([A, B]), st.sampled_from([P, Q]), st.integers(1, 400)),
        min_size=1,
        max_size=25,
    ),
    st.integers(0, 2_000),
    st.sampled_from([ACTIVE, SUSPENDED]),
)
def test_each_provider_refusal_is_the_decisions_against_the_batchs_state(
    flows: list[tuple[str, str, int]], liquidity: int, q_status: BankStatus
) -> None:
    """Every provider refusal clear_batch gives is `provider_refusal` for the
    item against the state the batch had reached, and an accepted item is
    one it passes; the accepted items' legs are applied, the refused ones'
    are not."""
    accts = world(provider_eur=liquidity)
    mirror = {k: acct(v.bank, v.currency, v.balance, v.net_debit_cap) for k, v in accts.items()}
    statuses = {A: ACTIVE, B: ACTIVE, P: ACTIVE, Q: q_status}
    quotes, items = [], []
    for debtor, dealer, target in flows:
        q = quote(target, provider=dealer, bank=debtor)
        quotes.append(q)
        items.append(paying(q, debtor=debtor, creditor=B if debtor == A else A))
    result, _ = run(quotes, items, accounts=accts, banks=statuses)
    for item, q, outcome in zip(items, quotes, result.outcomes, strict=True):
        provider = q.provider
        assert provider is not None
        expected = provider_refusal(
            provider,
            statuses[provider],
            mirror[(provider, "USD")],
            mirror[(provider, "EUR")],
            "USD",
            "EUR",
            q.terms.target_amount,
        )
        if expected is None:
            assert isinstance(outcome, Accepted)
            mirror[(item.debtor, "USD")].unsettled_net -= q.terms.source_amount
            mirror[(provider, "USD")].unsettled_net += q.terms.source_amount
            mirror[(provider, "EUR")].unsettled_net -= q.terms.target_amount
            mirror[(item.creditor, "EUR")].unsettled_net += q.terms.target_amount
        else:
            assert isinstance(outcome, Rejected)
            got = outcome.error
            assert (type(got), got.reason, got.message, got.metadata) == (
                type(expected),
                expected.reason,
                expected.message,
                expected.metadata,
            )
    assert {k: a.unsettled_net for k, a in accts.items()} == {
        k: a.unsettled_net for k, a in mirror.items()
    }
    assert all(accts[(p, "EUR")].within_limit for p in (P, Q))
