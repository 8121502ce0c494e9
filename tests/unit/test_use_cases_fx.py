"""update_rates, create_quote(s) and get_quote on the in-memory fake, and a
quote's expiry as clearing sees it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from remitnet.services.domain.audit_trail import Action
from remitnet.services.domain.errors import NotFound, Reason, RemitnetError
from remitnet.services.domain.fx import Quote
from remitnet.services.domain.model import DEFAULT_PROVIDER, BankStatus
from remitnet.services.domain.netting import Rejected
from remitnet.services.service_layer.clearing import commit_batch
from remitnet.services.service_layer.fx import (
    FxConfig,
    QuoteAsk,
    create_quote,
    create_quotes,
    get_quote,
    list_rates,
    update_rates,
)
from tests.fakes import FakeTransactions, instruction, seed_bank, seed_funds

US, PH = "USBANK01", "PHBANK01"
CONFIG = FxConfig()


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def tx() -> FakeTransactions:
    tx = FakeTransactions()
    update_rates(tx, [("USD", "PHP", "56.10", _now()), ("USD", "INR", "83.2", _now())])
    seed_bank(tx, US, ["USD", "EUR"], deposit=10_000_000)
    seed_bank(tx, PH, ["PHP", "USD"], region="asia-southeast1")
    # The default provider, whose rates these are, funded to sell.
    seed_funds(tx, DEFAULT_PROVIDER, dict.fromkeys(["USD", "PHP", "INR", "EUR"], 10**12))
    return tx


def _mids(tx: FakeTransactions) -> dict[tuple[str, str], str]:
    """The default provider's mids by pair."""
    return {(b, q): str(r.mid) for (p, b, q), r in tx.store.rates.items() if p == DEFAULT_PROVIDER}


# Rates -------------------------------------------------------------------------------


def test_rates_are_stored_and_audited(tx: FakeTransactions) -> None:
    as_of = _now() - timedelta(seconds=5)
    stored = update_rates(tx, [("USD", "EUR", "0.9200", as_of)], actor="operator")
    assert [(r.base, r.quote, r.mid, r.as_of) for r in stored] == [
        ("USD", "EUR", Decimal("0.92"), as_of)
    ]
    assert _mids(tx) == {("USD", "PHP"): "56.1", ("USD", "INR"): "83.2", ("USD", "EUR"): "0.92"}
    assert [(r.base, r.quote) for r in list_rates(tx)] == [
        ("USD", "EUR"),
        ("USD", "INR"),
        ("USD", "PHP"),
    ]
    last = tx.uow().trail.head()
    assert last is not None and (last.action, last.principal) == (
        str(Action.UPDATE_RATES),
        "operator",
    )
    assert json.loads(last.request)["rates"][0]["mid_rate"] == "0.92"


def test_a_pair_has_one_mid_in_either_direction(tx: FakeTransactions) -> None:
    update_rates(tx, [("PHP", "USD", "0.0178", _now())])
    assert (DEFAULT_PROVIDER, "USD", "PHP") not in tx.store.rates
    assert _mids(tx)[("PHP", "USD")] == "0.0178"


def test_an_older_rate_is_refused_and_the_call_stores_nothing(tx: FakeTransactions) -> None:
    before = tx.store.dump()
    old = _now() - timedelta(hours=1)
    with pytest.raises(RemitnetError) as err:
        update_rates(tx, [("USD", "EUR", "0.92", _now()), ("PHP", "USD", "0.018", old)])
    assert err.value.reason == Reason.RATE_OLDER_THAN_STORED
    assert err.value.metadata["index"] == "1"
    assert tx.store.dump() == before


def test_keep_newer_skips_older_rates_and_stores_the_rest(tx: FakeTransactions) -> None:
    old = _now() - timedelta(hours=1)
    stored = update_rates(
        tx, [("USD", "PHP", "50", old), ("USD", "EUR", "0.92", old)], keep_newer=True
    )
    assert [(r.base, r.quote) for r in stored] == [("USD", "EUR")]
    assert _mids(tx)[("USD", "PHP")] == "56.1"


def test_storing_the_rates_already_held_appends_nothing(tx: FakeTransactions) -> None:
    as_of = _now()
    update_rates(tx, [("USD", "EUR", "0.92", as_of)])
    records = len(tx.store.trail)
    update_rates(tx, [("USD", "EUR", "0.92", as_of)])
    assert len(tx.store.trail) == records
    # Re-run after an ambiguous commit: the second run finds the rates held.
    tx.fail_next("update_rates", point="after_commit")
    update_rates(tx, [("USD", "EUR", "0.93", _now())])
    assert len(tx.store.trail) == records + 1 and _mids(tx)[("USD", "EUR")] == "0.93"


def test_bad_rates_are_refused_before_the_transaction(tx: FakeTransactions) -> None:
    before = tx.store.dump()
    attempts = tx.attempts["update_rates"]
    for rows, reason in [
        ([("USD", "JPY", "0", _now())], Reason.INVALID_RATE),
        ([("USD", "USD", "1", _now())], Reason.SAME_CURRENCY),
        (
            [("USD", "PHP", "56", _now()), ("PHP", "USD", "0.02", _now())],
            Reason.DUPLICATE_RATE_PAIR,
        ),
        ([], Reason.EMPTY_BATCH),
    ]:
        with pytest.raises(RemitnetError) as err:
            update_rates(tx, rows)
        assert err.value.reason == reason
    assert tx.store.dump() == before and tx.attempts["update_rates"] == attempts


# Quotes --------------------------------------------------------------------------------


def test_a_quote_is_issued_and_stored(tx: FakeTransactions) -> None:
    quote = create_quote(tx, CONFIG, US, "USD", "PHP", source_amount=100_000)
    t = quote.terms
    assert (t.source_amount, t.target_amount, t.fee) == (100_000, 5_581_950, 28_050)
    assert (t.spread_bps, t.derivation, quote.bank, quote.used_by) == (50, "USD/PHP", US, None)
    assert quote.expires_at - quote.created_at == CONFIG.quote_ttl
    assert tx.store.quotes[quote.quote_id] == quote
    assert get_quote(tx, US, quote.quote_id) == quote
    assert get_quote(tx, None, quote.quote_id) == quote  # the operator
    with pytest.raises(NotFound) as err:
        get_quote(tx, PH, quote.quote_id)
    assert err.value.reason == Reason.QUOTE_NOT_FOUND


def test_a_quote_to_deliver_a_target_amount_crosses_via_the_base(tx: FakeTransactions) -> None:
    quote = create_quote(tx, CONFIG, PH, "PHP", "INR", target_amount=1_000_000)
    assert quote.terms.target_amount == 1_000_000
    assert "cross via USD" in quote.terms.derivation


def test_each_ask_is_answered_and_refusals_store_nothing(tx: FakeTransactions) -> None:
    asks = [
        QuoteAsk("USD", "PHP", source_amount=1_000),
        QuoteAsk("USD", "USD", source_amount=1),
        QuoteAsk("USD", "JPY", source_amount=5),
        QuoteAsk("PHP", "USD", source_amount=1_000),  # US holds no PHP
        QuoteAsk("USD", "PHP", source_amount=-1),
        QuoteAsk("USD", "PHP"),
        QuoteAsk("EUR", "INR", target_amount=777),
    ]
    outcomes = create_quotes(tx, CONFIG, US, asks)
    reasons = [o.reason if isinstance(o, RemitnetError) else "" for o in outcomes]
    assert reasons == [
        "",
        Reason.SAME_CURRENCY,
        Reason.RATE_NOT_AVAILABLE,
        Reason.CURRENCY_NOT_SUPPORTED,
        Reason.INVALID_AMOUNT,
        Reason.INVALID_AMOUNT,
        Reason.RATE_NOT_AVAILABLE,  # no EUR rate
    ]
    [issued] = [o for o in outcomes if isinstance(o, Quote)]
    assert list(tx.store.quotes) == [issued.quote_id]


def test_only_a_known_active_bank_gets_quotes(tx: FakeTransactions) -> None:
    seed_bank(tx, "SUBANK01", ["USD"], status=BankStatus.SUSPENDED)
    before = tx.store.dump()
    asks = [QuoteAsk("USD", "PHP", source_amount=1_000), QuoteAsk("USD", "USD", source_amount=1)]
    for bank, reason in [
        ("NOBANK01", Reason.UNKNOWN_PARTICIPANT),
        ("SUBANK01", Reason.PARTICIPANT_SUSPENDED),
    ]:
        outcomes = create_quotes(tx, CONFIG, bank, asks)
        assert [o.reason for o in outcomes if isinstance(o, RemitnetError)] == [
            reason,
            Reason.SAME_CURRENCY,
        ]
        with pytest.raises(RemitnetError) as err:
            create_quote(tx, CONFIG, bank, "USD", "PHP", source_amount=1_000)
        assert err.value.reason == reason
    assert tx.store.dump() == before


def test_stale_rates_price_nothing(tx: FakeTransactions) -> None:
    update_rates(tx, [("USD", "EUR", "0.92", _now() - timedelta(minutes=11))])
    before = len(tx.store.quotes)
    with pytest.raises(RemitnetError) as err:
        create_quote(tx, CONFIG, US, "USD", "EUR", source_amount=1_000)
    assert err.value.reason == Reason.RATE_STALE
    config = FxConfig(max_rate_age=timedelta(hours=1))
    assert create_quote(tx, config, US, "USD", "EUR", source_amount=1_000).quote_id
    assert len(tx.store.quotes) == before + 1


def test_a_corridor_spread_applies_in_its_direction(tx: FakeTransactions) -> None:
    config = FxConfig(corridor_spread_bps={("USD", "PHP"): 125})
    quote = create_quote(tx, config, US, "USD", "PHP", source_amount=100_000)
    assert (quote.terms.spread_bps, quote.terms.target_amount, quote.terms.fee) == (
        125,
        5_539_875,
        70_125,
    )
    back = create_quote(tx, config, PH, "PHP", "USD", source_amount=10_000_000)
    assert back.terms.spread_bps == 50


def test_a_retried_quote_unit_stores_one_set(tx: FakeTransactions) -> None:
    tx.fail_next("create_quotes")
    quote = create_quote(tx, CONFIG, US, "USD", "PHP", source_amount=1_000)
    assert tx.attempts["create_quotes"] == 2
    assert list(tx.store.quotes) == [quote.quote_id]


def test_an_expired_quote_is_refused_by_clearing_and_stays_unused(tx: FakeTransactions) -> None:
    config = FxConfig(quote_ttl=timedelta(microseconds=1))
    quote = create_quote(tx, config, US, "USD", "PHP", source_amount=10_000)
    before = tx.store.dump()
    item = instruction(US, PH, "USD", 10_000, quote_id=quote.quote_id)
    [outcome] = commit_batch(tx, [item]).result.outcomes
    assert isinstance(outcome, Rejected) and outcome.error.reason == Reason.QUOTE_EXPIRED
    assert tx.store.dump() == before
    with pytest.raises(RemitnetError) as err:
        get_quote(tx, US, str(uuid.uuid4()))
    assert err.value.reason == Reason.QUOTE_NOT_FOUND
