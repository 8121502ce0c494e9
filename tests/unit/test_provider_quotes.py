"""Quotes among FX providers on the in-memory fake: which provider prices an
ask (the best price among the active providers that quote the pair and can
deliver it, a tie to the smallest code; or the one named), which spread it
takes, every refusal, and rates kept per provider."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from remitnet.services.domain.audit_trail import Action
from remitnet.services.domain.bank import ParticipantRole
from remitnet.services.domain.errors import RemitnetError
from remitnet.services.domain.fx import Quote
from remitnet.services.domain.model import DEFAULT_PROVIDER, BankStatus
from remitnet.services.service_layer.fx import (
    FxConfig,
    QuoteAsk,
    create_quote,
    create_quotes,
    list_rates,
    update_rates,
)
from tests.fakes import FakeTransactions, seed_bank, seed_funds, seed_provider, seed_rates

US, PH = "USBANK01", "PHBANK01"
A, B, C = "FXPA0001", "FXPB0001", "FXPC0001"  # in code order
CONFIG = FxConfig()  # 50 bps, base USD
PLENTY = 10**12


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def tx() -> FakeTransactions:
    """Banks US (USD) and PH (PHP, USD); providers A and B funded in PHP
    and INR; FXHUB's rates but no funds."""
    tx = FakeTransactions()
    seed_bank(tx, US, ["USD"], deposit=PLENTY)
    seed_bank(tx, PH, ["PHP", "USD"], region="asia-southeast1")
    for code in (A, B):
        seed_provider(tx, code, ["USD", "PHP", "INR"])
        seed_funds(tx, code, {"PHP": PLENTY, "INR": PLENTY})
    seed_rates(tx, {("USD", "PHP"): "56.10", ("USD", "INR"): "83.2"})  # FXHUB's
    return tx


def _publish(
    tx: FakeTransactions, provider: str, rates: dict[tuple[str, str], str], bps: int | None = None
) -> None:
    update_rates(
        tx,
        [(b, q, mid, _now(), bps) for (b, q), mid in rates.items()],
        provider=provider,
        by_provider=True,
        actor=f"fxp:{provider}",
    )


def _quote(tx: FakeTransactions, **ask: object) -> Quote | RemitnetError:
    [outcome] = create_quotes(tx, CONFIG, US, [QuoteAsk("USD", "PHP", **ask)])  # type: ignore[arg-type]
    return outcome


def _reason(outcome: Quote | RemitnetError) -> str:
    assert isinstance(outcome, RemitnetError), outcome
    return outcome.reason


def _provider(outcome: Quote | RemitnetError) -> str | None:
    assert isinstance(outcome, Quote), outcome
    return outcome.provider


# Choosing the provider ------------------------------------------------------------------


def test_the_largest_target_wins_a_source_amount_ask(tx: FakeTransactions) -> None:
    _publish(tx, A, {("USD", "PHP"): "56.10"}, bps=40)
    _publish(tx, B, {("USD", "PHP"): "56.20"}, bps=60)  # a better mid, a wider spread
    quote = _quote(tx, source_amount=100_000)
    assert isinstance(quote, Quote)
    # A: 1,000 x 56.10 x 0.996 = 55,875.60; B: 1,000 x 56.20 x 0.994 = 55,862.80.
    assert (quote.provider, quote.terms.target_amount, quote.terms.spread_bps) == (
        A,
        5_587_560,
        40,
    )
    assert tx.store.quotes[quote.quote_id].provider == A


def test_the_smallest_source_wins_a_target_amount_ask(tx: FakeTransactions) -> None:
    _publish(tx, A, {("USD", "PHP"): "56.10"}, bps=40)
    _publish(tx, B, {("USD", "PHP"): "56.30"}, bps=50)
    quote = _quote(tx, target_amount=1_000_000)
    assert isinstance(quote, Quote) and quote.provider == B
    named = create_quote(tx, CONFIG, US, "USD", "PHP", target_amount=1_000_000, provider=A)
    assert quote.terms.source_amount < named.terms.source_amount


def test_a_tie_goes_to_the_smallest_code(tx: FakeTransactions) -> None:
    _publish(tx, B, {("USD", "PHP"): "56.10"}, bps=40)
    _publish(tx, A, {("USD", "PHP"): "56.10"}, bps=40)
    assert _provider(_quote(tx, source_amount=100_000)) == A
    assert _provider(_quote(tx, target_amount=100_000)) == A


def test_only_providers_that_can_deliver_compete(tx: FakeTransactions) -> None:
    _publish(tx, A, {("USD", "PHP"): "56.10"}, bps=40)
    _publish(tx, B, {("USD", "PHP"): "56.10"}, bps=10)
    seed_rates(tx, {("USD", "PHP"): "56.10"}, provider=DEFAULT_PROVIDER, spread_bps=0)
    # FXHUB's price is the best, but it holds no PHP.
    assert _provider(_quote(tx, source_amount=100_000)) == B
    seed_funds(tx, DEFAULT_PROVIDER, {"PHP": 10_000_000})
    assert _provider(_quote(tx, source_amount=100_000)) == DEFAULT_PROVIDER
    # Beyond FXHUB's 100,000.00 PHP, B again.
    assert _provider(_quote(tx, target_amount=10_000_001)) == B


def test_coverage_is_headroom_and_needs_both_accounts(tx: FakeTransactions) -> None:
    seed_provider(tx, C, ["PHP"], deposit=100_000, cap=50_000)  # no USD account
    _publish(tx, C, {("USD", "PHP"): "56.10"}, bps=0)
    assert _reason(_quote(tx, source_amount=10, provider=C)) == (
        "FX_PROVIDER_INSUFFICIENT_LIQUIDITY"
    )
    seed_funds(tx, C, {"USD": 0})
    # Its headroom: 1,000.00 PHP and a 500.00 PHP cap.
    assert _provider(_quote(tx, source_amount=10, provider=C)) == C
    assert _provider(_quote(tx, target_amount=150_000, provider=C)) == C
    assert _reason(_quote(tx, target_amount=150_001, provider=C)) == (
        "FX_PROVIDER_INSUFFICIENT_LIQUIDITY"
    )
    # Competing, C wins at 0 bps while it can deliver, then A takes over.
    _publish(tx, A, {("USD", "PHP"): "56.10"}, bps=40)
    assert _provider(_quote(tx, target_amount=150_000)) == C
    assert _provider(_quote(tx, target_amount=150_001)) == A


def test_a_suspended_provider_does_not_compete(tx: FakeTransactions) -> None:
    _publish(tx, A, {("USD", "PHP"): "56.10"}, bps=40)
    _publish(tx, B, {("USD", "PHP"): "56.10"}, bps=10)
    tx.write("suspend", lambda uow: uow.banks.set_status(B, BankStatus.SUSPENDED))
    assert _provider(_quote(tx, source_amount=100_000)) == A
    assert _reason(_quote(tx, source_amount=100_000, provider=B)) == "FX_PROVIDER_SUSPENDED"


def test_a_provider_prices_from_its_own_rates_only(tx: FakeTransactions) -> None:
    # A quotes USD/INR only: PHP/INR needs a cross of A's own rates.
    _publish(tx, A, {("USD", "INR"): "83.2"}, bps=20)
    _publish(tx, B, {("USD", "PHP"): "56.10", ("USD", "INR"): "83.0"}, bps=20)
    seed_funds(tx, PH, {"PHP": PLENTY})
    seed_funds(tx, B, {"USD": PLENTY})
    [quote] = create_quotes(tx, CONFIG, PH, [QuoteAsk("PHP", "INR", source_amount=100_000)])
    assert isinstance(quote, Quote) and quote.provider == B
    assert "cross via USD" in quote.terms.derivation
    # A cross takes the hub's corridor spread, not a row's own.
    assert quote.terms.spread_bps == CONFIG.spread("PHP", "INR")
    # An inverse takes the row's spread.
    [back] = create_quotes(
        tx, CONFIG, PH, [QuoteAsk("PHP", "USD", source_amount=100_000, provider=B)]
    )
    assert isinstance(back, Quote) and back.terms.spread_bps == 20
    assert back.terms.derivation == "1/(USD/PHP)"


def test_without_a_spread_of_its_own_a_provider_takes_the_corridor_spread(
    tx: FakeTransactions,
) -> None:
    _publish(tx, A, {("USD", "PHP"): "56.10"})
    config = FxConfig(corridor_spread_bps={("USD", "PHP"): 125})
    [quote] = create_quotes(tx, config, US, [QuoteAsk("USD", "PHP", source_amount=100_000)])
    assert isinstance(quote, Quote) and (quote.provider, quote.terms.spread_bps) == (A, 125)


# Refusals -------------------------------------------------------------------------------


def test_named_provider_refusals(tx: FakeTransactions) -> None:
    seed_provider(tx, C, ["USD", "PHP"], deposit=PLENTY, status=BankStatus.SUSPENDED)
    seed_rates(tx, {("USD", "PHP"): "56.10"}, provider=C)
    _publish(tx, A, {("USD", "INR"): "83.2"})
    seed_rates(tx, {("USD", "PHP"): "56.10"}, _now() - timedelta(hours=1), provider=B)
    before = tx.store.dump()
    for provider, reason in [
        ("NOPROV01", "FX_PROVIDER_UNKNOWN"),
        (PH, "NOT_AN_FX_PROVIDER"),
        (C, "FX_PROVIDER_SUSPENDED"),
        (A, "RATE_NOT_AVAILABLE"),  # A quotes no PHP
        (B, "RATE_STALE"),
        ("lower", "INVALID_BANK_CODE"),
        ("HUB", "INVALID_BANK_CODE"),
    ]:
        outcome = _quote(tx, source_amount=1_000, provider=provider)
        assert _reason(outcome) == reason, provider
        if provider != "lower" and provider != "HUB":
            assert isinstance(outcome, RemitnetError)
            assert outcome.metadata.get("provider") == provider
    assert tx.store.dump() == before


def test_competing_refusals_name_how_far_pricing_got(tx: FakeTransactions) -> None:
    seed_rates(tx, {("USD", "PHP"): "56.10"}, _now() - timedelta(hours=1), provider=B)
    _publish(tx, A, {("USD", "PHP"): "56.10"})
    before = tx.store.dump()
    # Nobody quotes USD/EUR.
    [none] = create_quotes(tx, CONFIG, US, [QuoteAsk("USD", "EUR", source_amount=1_000)])
    assert _reason(none) == "RATE_NOT_AVAILABLE"
    # INR: FXHUB quotes it and holds nothing.
    [cover] = create_quotes(tx, CONFIG, US, [QuoteAsk("USD", "INR", source_amount=1_000)])
    assert _reason(cover) == "FX_PROVIDER_INSUFFICIENT_LIQUIDITY"
    # PHP: B's rate is stale, A's fresh, FXHUB's fresh and unfunded: for a
    # bad amount the amount is the answer, not the stale rate; for one too
    # large, the liquidity.
    assert _reason(_quote(tx, source_amount=0)) == "INVALID_AMOUNT"
    assert _reason(_quote(tx, target_amount=PLENTY + 1)) == "FX_PROVIDER_INSUFFICIENT_LIQUIDITY"
    # Only stale rates: RATE_STALE.
    seed_rates(tx, {("USD", "INR"): "83.2"}, _now() - timedelta(hours=1), provider=DEFAULT_PROVIDER)
    before = tx.store.dump()
    [stale] = create_quotes(tx, CONFIG, US, [QuoteAsk("USD", "INR", source_amount=1_000)])
    assert _reason(stale) == "RATE_STALE"
    assert tx.store.dump() == before


def test_a_provider_only_participant_gets_no_quotes(tx: FakeTransactions) -> None:
    _publish(tx, B, {("USD", "PHP"): "56.10"})
    before = tx.store.dump()
    outcomes = create_quotes(tx, CONFIG, A, [QuoteAsk("USD", "PHP", source_amount=1_000)])
    assert [_reason(o) for o in outcomes] == ["NOT_A_BANK"]
    assert tx.store.dump() == before
    seed_provider(tx, C, ["USD", "PHP"], roles=ParticipantRole.BANK | ParticipantRole.FX_PROVIDER)
    seed_funds(tx, C, {"USD": PLENTY})
    [quote] = create_quotes(tx, CONFIG, C, [QuoteAsk("USD", "PHP", source_amount=1_000)])
    assert _provider(quote) == B  # a bank and a provider quotes as a bank


def test_a_batch_prices_each_ask_on_its_own(tx: FakeTransactions) -> None:
    seed_provider(tx, C, ["USD", "PHP"], deposit=100_000)
    _publish(tx, C, {("USD", "PHP"): "56.10"}, bps=0)
    asks = [QuoteAsk("USD", "PHP", target_amount=60_000)] * 2 + [
        QuoteAsk("USD", "PHP", target_amount=60_000, provider="NOPROV01"),
        QuoteAsk("USD", "USD", source_amount=1),
    ]
    outcomes = create_quotes(tx, CONFIG, US, asks)
    # Both of the first two count on C's 100,000: quotes reserve nothing.
    assert [_provider(o) for o in outcomes[:2]] == [C, C]
    assert [_reason(o) for o in outcomes[2:]] == ["FX_PROVIDER_UNKNOWN", "SAME_CURRENCY"]
    assert len(tx.store.quotes) == 2


# Rates per provider -------------------------------------------------------------------------


def test_rates_are_kept_per_provider(tx: FakeTransactions) -> None:
    _publish(tx, A, {("USD", "PHP"): "56.2"}, bps=35)
    _publish(tx, A, {("PHP", "USD"): "0.0178"})  # replaces A's USD/PHP only
    stored = {(r.provider, r.base, r.quote): (str(r.mid), r.spread_bps) for r in list_rates(tx)}
    assert stored == {
        (DEFAULT_PROVIDER, "USD", "INR"): ("83.2", None),
        (DEFAULT_PROVIDER, "USD", "PHP"): ("56.10", None),
        (A, "PHP", "USD"): ("0.0178", None),
    }
    assert [r.provider for r in list_rates(tx, A)] == [A]
    record = tx.uow().trail.head()
    assert record is not None and record.principal == f"fxp:{A}"
    assert record.action == str(Action.UPDATE_RATES)
    assert json.loads(record.request)["provider"] == A
    # An older rate of A's is refused; an older one of B's, who holds none, is not.
    old = _now() - timedelta(minutes=5)
    with pytest.raises(RemitnetError) as err:
        update_rates(tx, [("USD", "PHP", "56", old)], provider=A)
    assert err.value.reason == "RATE_OLDER_THAN_STORED" and err.value.metadata["provider"] == A
    assert update_rates(tx, [("USD", "PHP", "56", old)], provider=B)


def test_who_may_set_a_providers_rates(tx: FakeTransactions) -> None:
    seed_provider(tx, C, ["USD"], status=BankStatus.SUSPENDED)
    before = tx.store.dump()
    row = [("USD", "PHP", "56.1", _now())]
    for provider, by_provider, reason in [
        ("NOPROV01", False, "FX_PROVIDER_UNKNOWN"),
        (US, False, "NOT_AN_FX_PROVIDER"),
        (C, True, "FX_PROVIDER_SUSPENDED"),
        ("lower", False, "INVALID_BANK_CODE"),
    ]:
        with pytest.raises(RemitnetError) as err:
            update_rates(tx, row, provider=provider, by_provider=by_provider)
        assert err.value.reason == reason
    with pytest.raises(RemitnetError) as err:
        update_rates(tx, [("USD", "PHP", "56.1", _now(), 10_000)], provider=A)
    assert (err.value.reason, err.value.metadata["field"]) == ("INVALID_RATE", "spread_bps")
    assert tx.store.dump() == before
    # The operator may set a suspended provider's rates.
    assert update_rates(tx, row, provider=C)
