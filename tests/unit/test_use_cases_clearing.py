"""commit_batch, the netting engine's unit of work, on the in-memory fake."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from remitnet.services.domain.errors import Reason
from remitnet.services.domain.events import EventKind
from remitnet.services.domain.model import (
    DEFAULT_PROVIDER,
    HUB,
    AccountKind,
    BankStatus,
    TransferStatus,
    account_id,
)
from remitnet.services.domain.netting import Accepted, Outcome, PositionDelta, Rejected
from remitnet.services.service_layer.clearing import commit_batch
from remitnet.services.service_layer.unit_of_work import UnitOfWork
from tests.fakes import (
    FakeAccounts,
    FakeBanks,
    FakeTransactions,
    instruction,
    seed_bank,
    seed_funds,
    seed_provider,
    seed_quote,
    seed_rates,
)

US, EU, AS, JP = "BANKUS01", "BANKEU01", "BANKAS01", "BANKJP01"


@pytest.fixture
def tx() -> FakeTransactions:
    tx = FakeTransactions()
    seed_bank(tx, US, ["USD", "EUR"], region="us-east1", deposit=100_000)
    seed_bank(tx, EU, ["USD", "EUR"], region="europe-west1", deposit=100_000)
    seed_bank(tx, AS, ["USD", "EUR"], region="asia-southeast1", deposit=100_000)
    seed_bank(tx, JP, ["JPY"], region="asia-northeast1")
    # The default provider delivers the quotes below: funded, as the
    # operator funds it.
    seed_funds(tx, DEFAULT_PROVIDER, {"USD": 100_000, "EUR": 100_000, "JPY": 10_000_000})
    return tx


def _unsettled(tx: FakeTransactions, owner: str, currency: str, kind: str = "") -> int:
    return tx.store.accounts[
        account_id(owner, currency, kind or AccountKind.LIQUIDITY)
    ].unsettled_net


def _reasons(outcomes: list[Outcome]) -> list[str]:
    return [o.error.reason if isinstance(o, Rejected) else "" for o in outcomes]


def test_a_batch_is_accepted_netted_and_stored(tx: FakeTransactions) -> None:
    items = [instruction(US, EU, "USD", 2_500, remittance_info="inv 42")]
    items += [instruction(EU, AS, "USD", 1_000)]
    commit = commit_batch(tx, items)
    assert commit.attempts == 1
    outcomes = commit.result.outcomes
    assert all(isinstance(o, Accepted) and not o.replayed for o in outcomes)
    first = outcomes[0]
    assert isinstance(first, Accepted)
    t = first.transfer
    assert (t.debtor, t.creditor, t.amount, t.remittance_info) == (US, EU, 2_500, "inv 42")
    assert (t.status, t.cycle_id) == (TransferStatus.ACCEPTED, "USD-000001")
    # Stored: the transfers, homed in their debtor's region.
    assert tx.store.transfers[t.transfer_id] == t
    assert tx.store.transfer_regions[t.transfer_id] == "us-east1"
    assert tx.store.transfer_regions[items[1].transfer_id] == "europe-west1"
    # Positions change once per bank, however many transfers.
    positions = tx.uow().positions.of_cycle("USD-000001")
    assert positions == {
        AS: PositionDelta(0, 1_000, 0, 1, 0),
        EU: PositionDelta(1_000, 2_500, 1, 1, 0),
        US: PositionDelta(2_500, 0, 1, 0, 0),
    }
    assert (_unsettled(tx, US, "USD"), _unsettled(tx, EU, "USD"), _unsettled(tx, AS, "USD")) == (
        -2_500,
        1_500,
        1_000,
    )
    # The touched accounts as committed, and the banks' regions.
    assert {s.account_id: s.unsettled_net for s in commit.accounts} == {
        account_id(US, "USD"): -2_500,
        account_id(EU, "USD"): 1_500,
        account_id(AS, "USD"): 1_000,
    }
    assert commit.regions[US] == "us-east1" and commit.regions[EU] == "europe-west1"
    # One BATCH event per bank party to it, at the transfers' accepted_at.
    for bank, count in ((US, 1), (EU, 2), (AS, 1)):
        [event] = tx.feed(bank)
        assert (event.seq, event.kind, event.item_count) == (1, EventKind.BATCH, count)
        assert event.at == t.accepted_at
    assert tx.feed(JP) == []
    assert tx.violations() == []


def test_a_resubmission_replays_and_other_content_is_a_duplicate(tx: FakeTransactions) -> None:
    item = instruction(US, EU, "USD", 700)
    [first] = commit_batch(tx, [item]).result.outcomes
    assert isinstance(first, Accepted)
    before = tx.store.dump()
    [again] = commit_batch(tx, [item]).result.outcomes
    assert isinstance(again, Accepted) and again.replayed and again.transfer == first.transfer
    changed = item._replace(amount=701)
    [dup] = commit_batch(tx, [changed]).result.outcomes
    assert isinstance(dup, Rejected)
    assert dup.error.reason == Reason.DUPLICATE_WITH_DIFFERENT_CONTENT
    assert tx.store.dump() == before  # neither stored anything


def test_a_transfer_beyond_the_headroom_is_refused_and_stores_nothing(
    tx: FakeTransactions,
) -> None:
    before = tx.store.dump()
    [refused] = commit_batch(tx, [instruction(US, EU, "USD", 100_001)]).result.outcomes
    assert isinstance(refused, Rejected)
    assert refused.error.reason == Reason.INSUFFICIENT_LIQUIDITY
    assert refused.error.metadata["headroom"] == "100000"
    assert tx.store.dump() == before
    assert all(tx.feed(b) == [] for b in (US, EU))


def test_later_items_see_the_liquidity_earlier_ones_used_and_received(
    tx: FakeTransactions,
) -> None:
    items = [
        instruction(US, EU, "USD", 60_000),
        instruction(US, EU, "USD", 60_000),  # 40,000 left: refused
        instruction(EU, AS, "USD", 150_000),  # 100,000 + the 60,000 received
        instruction(US, AS, "USD", 40_000),  # exactly what is left
    ]
    outcomes = commit_batch(tx, items).result.outcomes
    assert _reasons(outcomes) == ["", Reason.INSUFFICIENT_LIQUIDITY, "", ""]
    assert set(tx.store.transfers) == {items[i].transfer_id for i in (0, 2, 3)}
    assert _unsettled(tx, US, "USD") == -100_000
    assert _unsettled(tx, EU, "USD") == 60_000 - 150_000
    assert tx.violations() == []


def test_the_net_debit_cap_adds_to_the_headroom() -> None:
    tx = FakeTransactions()
    seed_bank(tx, US, ["USD"], deposit=1_000, cap=500)
    seed_bank(tx, EU, ["USD"])
    outcomes = commit_batch(
        tx, [instruction(US, EU, "USD", 1_500), instruction(US, EU, "USD", 1)]
    ).result.outcomes
    assert _reasons(outcomes) == ["", Reason.INSUFFICIENT_LIQUIDITY]


def test_parties_and_currencies_are_checked_per_item(tx: FakeTransactions) -> None:
    seed_bank(tx, "BANKSU01", ["USD"], deposit=100_000, status=BankStatus.SUSPENDED)
    before = tx.store.dump()
    items = [
        instruction(US, "BANKSU01", "USD", 5),
        instruction("BANKSU01", US, "USD", 5),
        instruction(US, "NOSUCHBANK", "USD", 5),
        instruction(US, JP, "USD", 5),
        instruction(US, EU, "JPY", 5),
        instruction(US, EU, "USD", 5, gross=True),
    ]
    outcomes = commit_batch(tx, items).result.outcomes
    assert _reasons(outcomes) == [
        Reason.PARTICIPANT_SUSPENDED,
        Reason.PARTICIPANT_SUSPENDED,
        Reason.UNKNOWN_PARTICIPANT,
        Reason.CURRENCY_NOT_SUPPORTED,
        Reason.CURRENCY_NOT_SUPPORTED,
        Reason.GROSS_NOT_IN_BATCH,
    ]
    assert tx.store.dump() == before


def test_refused_items_do_not_stop_the_rest_of_the_batch(tx: FakeTransactions) -> None:
    items = [instruction(US, EU, "USD", 10) for _ in range(5)]
    items.insert(2, instruction(US, "NOSUCHBANK", "USD", 5))
    outcomes = commit_batch(tx, items).result.outcomes
    assert [r == "" for r in _reasons(outcomes)] == [True, True, False, True, True, True]
    assert len(tx.store.transfers) == 5
    assert _unsettled(tx, US, "USD") == -50
    [event] = tx.feed(US)
    assert event.item_count == 5


def test_one_answer_per_id_within_a_batch(tx: FakeTransactions) -> None:
    dup = str(uuid.uuid4())
    items = [
        instruction(US, AS, "USD", 5, transfer_id=dup),
        instruction(US, AS, "USD", 5, transfer_id=dup),
        instruction(US, AS, "USD", 6, transfer_id=dup),
    ]
    outcomes = commit_batch(tx, items).result.outcomes
    first, second, third = outcomes
    assert isinstance(first, Accepted) and not first.replayed
    assert isinstance(second, Accepted) and second.replayed
    assert second.transfer == first.transfer
    assert isinstance(third, Rejected)
    assert third.error.reason == Reason.DUPLICATE_WITH_DIFFERENT_CONTENT
    assert list(tx.store.transfers) == [dup]
    assert _unsettled(tx, US, "USD") == -5
    assert tx.violations() == []


def test_an_occurrence_refused_before_a_credit_gets_the_later_answer(
    tx: FakeTransactions,
) -> None:
    """An id twice in one batch: the first occurrence is refused for
    liquidity that a credit later in the batch provides to the second. Both
    answers are the accepted transfer."""
    tid = str(uuid.uuid4())
    items = [
        instruction(US, AS, "USD", 150_000, transfer_id=tid),
        instruction(EU, US, "USD", 60_000),
        instruction(US, AS, "USD", 150_000, transfer_id=tid),
    ]
    outcomes = commit_batch(tx, items).result.outcomes
    assert _reasons(outcomes) == ["", "", ""]
    first, _, last = outcomes
    assert isinstance(first, Accepted) and first.replayed
    assert isinstance(last, Accepted) and not last.replayed
    assert len(tx.store.transfers) == 2
    assert _unsettled(tx, US, "USD") == 60_000 - 150_000


def test_a_cross_currency_transfer_clears_two_legs_on_its_quote(tx: FakeTransactions) -> None:
    seed_rates(tx, {("USD", "EUR"): "0.92"})
    quote = seed_quote(tx, US, "USD", "EUR", 10_000)
    target, fee = quote.terms.target_amount, quote.terms.fee
    assert (target, fee) == (9_154, 46)  # 100.00 USD x 0.92 less 50 bps
    item = instruction(US, EU, "USD", 10_000, quote_id=quote.quote_id)
    [outcome] = commit_batch(tx, [item]).result.outcomes
    assert isinstance(outcome, Accepted)
    t = outcome.transfer
    # Through the quote's provider, which keeps its spread (the quote's fee)
    # by delivering less: nothing is booked as a fee.
    assert quote.provider == DEFAULT_PROVIDER
    assert (t.creditor_currency, t.creditor_amount, t.creditor_cycle_id, t.fee) == (
        "EUR",
        target,
        "EUR-000001",
        0,
    )
    assert (t.quote_id, t.cycle_id, t.fx_provider) == (
        quote.quote_id,
        "USD-000001",
        DEFAULT_PROVIDER,
    )
    stored = tx.store.quotes[quote.quote_id]
    assert stored.used_by == t.transfer_id
    uow = tx.uow()
    assert uow.positions.of_cycle("USD-000001") == {
        DEFAULT_PROVIDER: PositionDelta(0, 10_000, 0, 1, 0),
        US: PositionDelta(10_000, 0, 1, 0, 0),
    }
    assert uow.positions.of_cycle("EUR-000001") == {
        EU: PositionDelta(0, target, 0, 1, 0),
        DEFAULT_PROVIDER: PositionDelta(target, 0, 1, 0, 0),
    }
    assert _unsettled(tx, US, "USD") == -10_000
    assert _unsettled(tx, DEFAULT_PROVIDER, "USD") == 10_000
    assert _unsettled(tx, DEFAULT_PROVIDER, "EUR") == -target
    assert _unsettled(tx, EU, "EUR") == target
    # The hub takes no position.
    assert _unsettled(tx, HUB, "USD", AccountKind.FX) == 0
    assert _unsettled(tx, HUB, "EUR", AccountKind.FX) == 0
    # The quote is single-use.
    before = tx.store.dump()
    again = instruction(US, EU, "USD", 10_000, quote_id=quote.quote_id)
    [used] = commit_batch(tx, [again]).result.outcomes
    assert isinstance(used, Rejected) and used.error.reason == Reason.QUOTE_USED
    assert tx.store.dump() == before
    assert tx.violations() == []


def test_quote_refusals_store_nothing_and_leave_the_quote_unused(tx: FakeTransactions) -> None:
    seed_rates(tx, {("USD", "EUR"): "0.92"})
    quote = seed_quote(tx, US, "USD", "EUR", 10_000)
    expired = seed_quote(tx, US, "USD", "EUR", 10_000, expires_in=-timedelta(seconds=1))
    big = seed_quote(tx, US, "USD", "EUR", 100_001)
    before = tx.store.dump()
    items = [
        instruction(EU, US, "USD", 10_000, quote_id=quote.quote_id),  # issued to US
        instruction(US, EU, "USD", 9_999, quote_id=quote.quote_id),
        instruction(US, EU, "USD", 10_000, quote_id=str(uuid.uuid4())),
        instruction(US, EU, "USD", 10_000, quote_id=expired.quote_id),
        instruction(US, EU, "USD", 100_001, quote_id=big.quote_id),  # beyond the headroom
    ]
    outcomes = commit_batch(tx, items).result.outcomes
    assert _reasons(outcomes) == [
        Reason.QUOTE_NOT_OWNED,
        Reason.QUOTE_MISMATCH,
        Reason.QUOTE_NOT_FOUND,
        Reason.QUOTE_EXPIRED,
        Reason.INSUFFICIENT_LIQUIDITY,
    ]
    assert tx.store.dump() == before
    assert tx.store.quotes[big.quote_id].used_by is None


def test_a_quote_is_used_once_within_a_batch(tx: FakeTransactions) -> None:
    seed_rates(tx, {("USD", "EUR"): "0.92"})
    quote = seed_quote(tx, US, "USD", "EUR", 1_000)
    items = [instruction(US, EU, "USD", 1_000, quote_id=quote.quote_id) for _ in range(2)]
    outcomes = commit_batch(tx, items).result.outcomes
    assert _reasons(outcomes) == ["", Reason.QUOTE_USED]
    assert tx.store.quotes[quote.quote_id].used_by == items[0].transfer_id


def test_a_retried_batch_commits_once(tx: FakeTransactions) -> None:
    tx.fail_next("clear_batch", times=2)
    item = instruction(US, EU, "USD", 300)
    commit = commit_batch(tx, [item])
    assert commit.attempts == 3
    [outcome] = commit.result.outcomes
    assert isinstance(outcome, Accepted) and not outcome.replayed
    assert list(tx.store.transfers) == [item.transfer_id]
    assert _unsettled(tx, US, "USD") == -300
    assert len(tx.feed(US)) == 1
    assert tx.violations() == []


def test_a_batch_rerun_after_an_ambiguous_commit_finds_its_transfers(
    tx: FakeTransactions,
) -> None:
    tx.fail_next("clear_batch", point="after_commit")
    items = [instruction(US, EU, "USD", 300), instruction(EU, AS, "USD", 100)]
    commit = commit_batch(tx, items)
    assert (commit.attempts, tx.commits["clear_batch"]) == (2, 2)
    # The re-run answers from what the first run stored, and adds nothing.
    assert all(isinstance(o, Accepted) and o.replayed for o in commit.result.outcomes)
    assert len(tx.store.transfers) == 2
    assert (_unsettled(tx, US, "USD"), _unsettled(tx, EU, "USD")) == (-300, 200)
    assert tx.uow().positions.of_cycle("USD-000001")[EU] == PositionDelta(100, 300, 1, 1, 0)
    assert [len(tx.feed(b)) for b in (US, EU, AS)] == [1, 1, 1]
    assert tx.violations() == []


# FX providers -----------------------------------------------------------------------

FXP = "FXP01"


def _provider(tx: FakeTransactions, eur: int) -> None:
    """FXP01, an FX provider holding `eur` EUR, quoting USD/EUR at 0.92."""
    seed_provider(tx, FXP, ["USD", "EUR"], deposit=0)
    seed_funds(tx, FXP, {"EUR": eur})
    seed_rates(tx, {("USD", "EUR"): "0.92"}, provider=FXP)


def test_transfers_draw_on_their_provider_until_it_runs_out(tx: FakeTransactions) -> None:
    """Three quotes of FXP01 for 4,577 EUR each, paid in one batch with
    9,200 EUR of its liquidity: two are delivered, the third is refused and
    leaves nothing behind (its quote unused); the provider's accounts move
    with the legs, and the hub's not at all."""
    _provider(tx, 9_200)
    quotes = [seed_quote(tx, US, "USD", "EUR", 5_000, provider=FXP) for _ in range(3)]
    assert {q.terms.target_amount for q in quotes} == {4_577}
    items = [instruction(US, EU, "USD", 5_000, quote_id=q.quote_id) for q in quotes]
    outcomes = commit_batch(tx, items).result.outcomes
    assert _reasons(outcomes) == ["", "", Reason.FX_PROVIDER_INSUFFICIENT_LIQUIDITY]
    refused = outcomes[2]
    assert isinstance(refused, Rejected)
    assert refused.error.metadata == {
        "provider": FXP,
        "currency": "EUR",
        "headroom": str(9_200 - 2 * 4_577),
        "amount": "4577",
    }
    assert items[2].transfer_id not in tx.store.transfers
    assert tx.store.quotes[quotes[2].quote_id].used_by is None
    assert _unsettled(tx, FXP, "EUR") == -2 * 4_577
    assert _unsettled(tx, FXP, "USD") == 10_000
    assert _unsettled(tx, EU, "EUR") == 2 * 4_577
    for currency in ("USD", "EUR"):
        assert _unsettled(tx, HUB, currency, AccountKind.FX) == 0
    assert {t.fx_provider for t in tx.store.transfers.values()} == {FXP}
    assert tx.violations() == []
    # Funded again, the same quote is delivered.
    seed_funds(tx, FXP, {"EUR": 5_000})
    [again] = commit_batch(tx, [items[2]]).result.outcomes
    assert isinstance(again, Accepted) and again.transfer.fx_provider == FXP
    assert tx.violations() == []


def test_provider_refusals_store_nothing(tx: FakeTransactions) -> None:
    _provider(tx, 100_000)
    quote = seed_quote(tx, US, "USD", "EUR", 5_000, provider=FXP)
    item = instruction(US, EU, "USD", 5_000, quote_id=quote.quote_id)

    def suspend(uow: UnitOfWork) -> None:
        uow.banks.set_status(FXP, BankStatus.SUSPENDED)

    tx.write("suspend", suspend)
    before = tx.store.dump()
    [outcome] = commit_batch(tx, [item]).result.outcomes
    assert isinstance(outcome, Rejected) and outcome.error.reason == Reason.FX_PROVIDER_SUSPENDED
    assert tx.store.dump() == before
    # A quote of the hub as dealer, from before FX providers.
    seed_rates(tx, {("USD", "EUR"): "0.92"})
    old = seed_quote(tx, US, "USD", "EUR", 5_000, provider=None)
    before = tx.store.dump()
    stale = instruction(US, EU, "USD", 5_000, quote_id=old.quote_id)
    [outcome] = commit_batch(tx, [stale]).result.outcomes
    assert isinstance(outcome, Rejected) and outcome.error.reason == Reason.QUOTE_EXPIRED
    assert tx.store.dump() == before
    # A provider-only participant named as creditor.
    [outcome] = commit_batch(tx, [instruction(US, DEFAULT_PROVIDER, "USD", 10)]).result.outcomes
    assert isinstance(outcome, Rejected) and outcome.error.reason == Reason.NOT_A_BANK
    assert tx.store.dump() == before
    assert tx.violations() == []


def test_the_batch_reads_its_providers_with_its_parties(
    tx: FakeTransactions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider's status comes with the parties' (one read) and its two
    accounts with theirs (one read): the batch makes no read of its own for
    providers."""
    _provider(tx, 100_000)
    quote = seed_quote(tx, US, "USD", "EUR", 5_000, provider=FXP)
    reads: list[tuple[str, frozenset[str]]] = []
    for cls, names in (
        (FakeBanks, ("get", "statuses_and_regions", "statuses_roles_and_regions", "providers")),
        (FakeAccounts, ("get", "states", "of_owner", "of_owners")),
    ):
        for name in names:
            original = getattr(cls, name)

            def spy(self: object, *args: Any, _o: Any = original, _n: str = name) -> Any:
                reads.append((_n, frozenset(args[0]) if args and args[0] else frozenset()))
                return _o(self, *args)

            monkeypatch.setattr(cls, name, spy)
    items = [
        instruction(US, EU, "USD", 5_000, quote_id=quote.quote_id),
        instruction(EU, AS, "USD", 100),
    ]
    assert _reasons(commit_batch(tx, items).result.outcomes) == ["", ""]
    assert reads == [
        ("statuses_roles_and_regions", frozenset({US, EU, AS, FXP})),
        (
            "states",
            frozenset(
                {
                    account_id(US, "USD"),
                    account_id(EU, "USD"),
                    account_id(AS, "USD"),
                    account_id(US, "EUR"),
                    account_id(EU, "EUR"),
                    account_id(AS, "EUR"),
                    account_id(FXP, "USD"),
                    account_id(FXP, "EUR"),
                }
            ),
        ),
    ]
