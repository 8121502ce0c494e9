"""Batches decided ahead of their transaction (the engine's pipeline) and
the idempotency check that relies on the primary key, on the in-memory fake:
a prepared decision is written only when its transaction reads what it
assumed, and is decided again otherwise."""

from __future__ import annotations

import uuid

import pytest

from remitnet.services.domain.errors import Reason
from remitnet.services.domain.events import batch_event_banks, batch_events
from remitnet.services.domain.model import DEFAULT_PROVIDER, account_id
from remitnet.services.domain.netting import Accepted, Outcome, Rejected
from remitnet.services.service_layer import participants
from remitnet.services.service_layer.clearing import (
    NOTHING_CARRIED,
    Carried,
    commit_batch,
    prepare_batch,
)
from tests.fakes import (
    FakeTransactions,
    instruction,
    seed_bank,
    seed_funds,
    seed_quote,
    seed_rates,
)

A, B, C = "BANKAA01", "BANKBB01", "BANKCC01"


@pytest.fixture
def tx() -> FakeTransactions:
    tx = FakeTransactions()
    for code in (A, B, C):
        seed_bank(tx, code, ["USD"], deposit=1_000)
    return tx


def _reasons(outcomes: list[Outcome]) -> list[str]:
    return [o.error.reason if isinstance(o, Rejected) else "" for o in outcomes]


def _unsettled(tx: FakeTransactions, bank: str) -> int:
    return tx.store.accounts[account_id(bank, "USD")].unsettled_net


def test_a_prepared_batch_is_written_as_decided(tx: FakeTransactions) -> None:
    items = [instruction(A, B, "USD", 300), instruction(B, C, "USD", 100)]
    prepared = prepare_batch(tx, items, NOTHING_CARRIED)
    assert prepared is not None
    commit = commit_batch(tx, items, prepared=prepared)
    assert commit.prepared_used and commit.attempts == 1
    assert commit.result is prepared.result
    assert (_unsettled(tx, A), _unsettled(tx, B), _unsettled(tx, C)) == (-300, 200, 100)
    assert tx.violations() == []


def test_the_next_batch_sees_what_the_one_committing_leaves(tx: FakeTransactions) -> None:
    # A's headroom is 1,000: the first batch takes 800 of it, so the second
    # batch, decided before the first commits, must refuse another 800.
    first = [instruction(A, B, "USD", 800)]
    second = [instruction(A, C, "USD", 800), instruction(A, C, "USD", 200)]
    p1 = prepare_batch(tx, first, NOTHING_CARRIED)
    assert p1 is not None
    p2 = prepare_batch(tx, second, p1.after)  # the first is not committed yet
    assert p2 is not None
    assert _reasons(p2.result.outcomes) == [Reason.INSUFFICIENT_LIQUIDITY, ""]
    assert commit_batch(tx, first, prepared=p1).prepared_used
    c2 = commit_batch(tx, second, prepared=p2)
    assert c2.prepared_used
    assert _unsettled(tx, A) == -1_000
    assert tx.violations() == []


def test_a_batch_decided_after_one_that_failed_is_decided_again(tx: FakeTransactions) -> None:
    first = [instruction(A, B, "USD", 800)]
    second = [instruction(A, C, "USD", 800)]
    p1 = prepare_batch(tx, first, NOTHING_CARRIED)
    assert p1 is not None
    p2 = prepare_batch(tx, second, p1.after)
    assert p2 is not None and _reasons(p2.result.outcomes) == [Reason.INSUFFICIENT_LIQUIDITY]
    # The first never commits: the second's transaction reads A untouched.
    seen: list[Carried] = []
    c2 = commit_batch(tx, second, prepared=p2, on_decided=seen.append)
    assert not c2.prepared_used
    assert _reasons(c2.result.outcomes) == [""]
    assert _unsettled(tx, A) == -800
    # What it published for the batch after it is what it committed.
    assert seen[-1].states[(A, "USD")].unsettled_net == -800


def test_a_change_between_decision_and_transaction_is_seen(tx: FakeTransactions) -> None:
    items = [instruction(A, B, "USD", 1_500)]
    prepared = prepare_batch(tx, items, NOTHING_CARRIED)
    assert prepared is not None
    assert _reasons(prepared.result.outcomes) == [Reason.INSUFFICIENT_LIQUIDITY]
    participants.deposit(tx, A, "USD", 1_000, str(uuid.uuid4()))  # lands in between
    commit = commit_batch(tx, items, prepared=prepared)
    assert not commit.prepared_used
    assert _reasons(commit.result.outcomes) == [""]
    assert tx.violations() == []


def test_a_replay_is_found_through_the_primary_key(tx: FakeTransactions) -> None:
    item = instruction(A, B, "USD", 300)
    commit_batch(tx, [item])
    other = instruction(B, C, "USD", 50)
    changed = item._replace(amount=301)
    prepared = prepare_batch(tx, [item, other], NOTHING_CARRIED)
    assert prepared is not None
    # Decided as new (ids are not looked up ahead): the insert finds it.
    commit = commit_batch(tx, [item, other], prepared=prepared)
    assert not commit.prepared_used and commit.attempts == 1
    first, second = commit.result.outcomes
    assert isinstance(first, Accepted) and first.replayed
    assert isinstance(second, Accepted) and not second.replayed
    [dup] = commit_batch(tx, [changed]).result.outcomes
    assert isinstance(dup, Rejected)
    assert dup.error.reason == Reason.DUPLICATE_WITH_DIFFERENT_CONTENT
    # Accepted at most once: A paid 300 once, B 50 once.
    assert (_unsettled(tx, A), _unsettled(tx, B), _unsettled(tx, C)) == (-300, 250, 50)
    assert len(tx.store.transfers) == 2
    assert tx.violations() == []


def test_a_resent_transfer_that_spent_the_headroom_is_a_replay_not_a_refusal(
    tx: FakeTransactions,
) -> None:
    # The batch path no longer looks ids up first; a resent transfer whose
    # first attempt spent its debtor's headroom would be decided refused
    # (and not inserted, so the primary key never sees it) unless refused
    # ids are looked up: the chaos run caught this with a used quote.
    item = instruction(A, B, "USD", 1_000)
    (first,) = commit_batch(tx, [item]).result.outcomes
    assert isinstance(first, Accepted)
    (again,) = commit_batch(tx, [item]).result.outcomes
    assert isinstance(again, Accepted) and again.replayed
    assert _unsettled(tx, A) == -1_000


@pytest.fixture
def fx() -> FakeTransactions:
    tx = FakeTransactions()
    for code in (A, B):
        seed_bank(tx, code, ["USD", "EUR"], deposit=100_000)
    seed_funds(tx, DEFAULT_PROVIDER, {"USD": 100_000, "EUR": 100_000})
    seed_rates(tx, {("USD", "EUR"): "0.92"})
    return tx


def test_a_prepared_cross_currency_batch_is_written_as_decided(fx: FakeTransactions) -> None:
    quote = seed_quote(fx, A, "USD", "EUR", 10_000)
    items = [instruction(A, B, "USD", 10_000, quote_id=quote.quote_id)]
    prepared = prepare_batch(fx, items, NOTHING_CARRIED)
    commit = commit_batch(fx, items, prepared=prepared)
    assert commit.prepared_used and _reasons(commit.result.outcomes) == [""]
    assert fx.store.quotes[quote.quote_id].used_by == items[0].transfer_id
    assert fx.violations() == []


def test_a_quote_the_committing_batch_uses_is_used_for_the_next(fx: FakeTransactions) -> None:
    # The second batch is decided before the first commits: the quote it
    # names is free in the snapshot but taken by the first batch, which
    # what that batch leaves must say.
    quote = seed_quote(fx, A, "USD", "EUR", 10_000)
    first = [instruction(A, B, "USD", 10_000, quote_id=quote.quote_id)]
    second = [instruction(A, B, "USD", 10_000, quote_id=quote.quote_id)]
    p1 = prepare_batch(fx, first, NOTHING_CARRIED)
    p2 = prepare_batch(fx, second, p1.after)
    assert _reasons(p2.result.outcomes) == [Reason.QUOTE_USED]
    assert commit_batch(fx, first, prepared=p1).prepared_used
    commit = commit_batch(fx, second, prepared=p2)
    assert commit.prepared_used and _reasons(commit.result.outcomes) == [Reason.QUOTE_USED]
    assert fx.violations() == []


def test_a_quote_used_after_the_decision_is_decided_again(fx: FakeTransactions) -> None:
    quote = seed_quote(fx, A, "USD", "EUR", 10_000)
    items = [instruction(A, B, "USD", 10_000, quote_id=quote.quote_id)]
    prepared = prepare_batch(fx, items, NOTHING_CARRIED)
    # Another batch, not carried, takes the quote before this one commits.
    other = [instruction(A, B, "USD", 10_000, quote_id=quote.quote_id)]
    assert _reasons(commit_batch(fx, other).result.outcomes) == [""]
    commit = commit_batch(fx, items, prepared=prepared)
    assert not commit.prepared_used
    assert _reasons(commit.result.outcomes) == [Reason.QUOTE_USED]
    assert fx.violations() == []


def test_the_banks_a_batch_moves_are_those_its_events_name(tx: FakeTransactions) -> None:
    # What a batch leaves (its banks' event time) is computed from the
    # banks alone; they must be the banks its events are appended to.
    items = [
        instruction(A, B, "USD", 10),
        instruction(B, C, "USD", 10, confirm=True),
        instruction(C, A, "USD", 10),
    ]
    accepted = commit_batch(tx, items).result.new_transfers
    assert batch_event_banks(accepted) == {e.bank for e in batch_events(accepted)}
