"""commit_gross, gross settlement of one transfer, on the in-memory fake."""

from __future__ import annotations

import pytest

from remitnet.services.domain.errors import Reason
from remitnet.services.domain.events import EventKind
from remitnet.services.domain.ledger import EntryKind
from remitnet.services.domain.model import HUB, BankStatus, TransferStatus, account_id
from remitnet.services.domain.netting import Accepted, Outcome, Rejected
from remitnet.services.service_layer.gross import commit_gross
from tests.fakes import FakeTransactions, instruction, seed_bank

US, PH = "USBANK01", "PHBANK01"


@pytest.fixture
def tx() -> FakeTransactions:
    tx = FakeTransactions()
    seed_bank(tx, US, ["USD"], region="us-east1", deposit=1_000_000)
    seed_bank(tx, PH, ["USD", "PHP"], region="asia-southeast1", deposit=1_000_000)
    return tx


def _reason(outcome: Outcome) -> str:
    assert isinstance(outcome, Rejected), outcome
    return outcome.error.reason


def test_a_gross_transfer_is_settled_on_the_ledger_at_once(tx: FakeTransactions) -> None:
    item = instruction(US, PH, "USD", 250_000, gross=True)
    outcome = commit_gross(tx, item)
    assert isinstance(outcome, Accepted) and not outcome.replayed
    t = outcome.transfer
    assert (t.status, t.cycle_id, t.gross) == (TransferStatus.SETTLED, "", True)
    assert tx.store.transfers[t.transfer_id] == t
    assert tx.store.transfer_regions[t.transfer_id] == "us-east1"
    # Posted: both balances move now, nothing is left unsettled or netted.
    debtor = tx.store.accounts[account_id(US, "USD")]
    creditor = tx.store.accounts[account_id(PH, "USD")]
    assert (debtor.balance, creditor.balance) == (750_000, 1_250_000)
    assert (debtor.unsettled_net, creditor.unsettled_net) == (0, 0)
    posting = tx.store.postings[f"gross:{t.transfer_id}"]
    assert (posting.kind, posting.owner, posting.amount) == (EntryKind.GROSS, US, 250_000)
    uow = tx.uow()
    [last] = uow.ledger.entries(creditor.id, creditor.entry_count - 1, 10)
    assert (last.kind, last.amount, last.balance_after) == (EntryKind.GROSS, 250_000, 1_250_000)
    assert uow.positions.of_cycle("USD-000001") == {}
    assert uow.views.ledger_totals()["USD"][:2] == (0, 0)
    # Both parties hear it settled, at its accepted_at.
    for bank in (US, PH):
        [event] = tx.feed(bank)
        assert (event.kind, event.status, event.transfer_id) == (
            EventKind.TRANSFER,
            TransferStatus.SETTLED,
            t.transfer_id,
        )
        assert event.at == t.accepted_at
    assert tx.violations() == []


def test_a_resubmission_replays_and_other_content_is_a_duplicate(tx: FakeTransactions) -> None:
    item = instruction(US, PH, "USD", 1_000, gross=True)
    first = commit_gross(tx, item)
    assert isinstance(first, Accepted)
    before = tx.store.dump()
    again = commit_gross(tx, item)
    assert isinstance(again, Accepted) and again.replayed and again.transfer == first.transfer
    assert _reason(commit_gross(tx, item._replace(amount=999))) == (
        Reason.DUPLICATE_WITH_DIFFERENT_CONTENT
    )
    assert tx.store.dump() == before


def test_beyond_the_headroom_is_refused_and_stores_nothing(tx: FakeTransactions) -> None:
    before = tx.store.dump()
    outcome = commit_gross(tx, instruction(US, PH, "USD", 1_000_001, gross=True))
    assert _reason(outcome) == Reason.INSUFFICIENT_LIQUIDITY
    assert isinstance(outcome, Rejected) and outcome.error.metadata["headroom"] == "1000000"
    assert tx.store.dump() == before


def test_parties_and_accounts_are_checked(tx: FakeTransactions) -> None:
    seed_bank(tx, "SUBANK01", ["USD"], deposit=1_000, status=BankStatus.SUSPENDED)
    before = tx.store.dump()
    cases = [
        (instruction(US, "NOBANK01", "USD", 1, gross=True), Reason.UNKNOWN_PARTICIPANT),
        (instruction(US, "SUBANK01", "USD", 1, gross=True), Reason.PARTICIPANT_SUSPENDED),
        (instruction("SUBANK01", US, "USD", 1, gross=True), Reason.PARTICIPANT_SUSPENDED),
        (instruction(US, PH, "PHP", 1, gross=True), Reason.CURRENCY_NOT_SUPPORTED),
        (instruction(PH, US, "PHP", 1, gross=True), Reason.CURRENCY_NOT_SUPPORTED),
    ]
    for item, reason in cases:
        assert _reason(commit_gross(tx, item)) == reason, item
    assert tx.store.dump() == before


def test_a_retried_gross_transfer_posts_once(tx: FakeTransactions) -> None:
    tx.fail_next("gross_transfer")
    item = instruction(US, PH, "USD", 5_000, gross=True)
    outcome = commit_gross(tx, item)
    assert isinstance(outcome, Accepted) and not outcome.replayed
    assert tx.attempts["gross_transfer"] == 2
    assert tx.store.accounts[account_id(US, "USD")].balance == 995_000
    assert tx.store.accounts[account_id(HUB, "USD", "RESERVE")].balance == -2_000_000
    assert tx.violations() == []


def test_a_gross_transfer_rerun_after_an_ambiguous_commit_replays(tx: FakeTransactions) -> None:
    tx.fail_next("gross_transfer", point="after_commit")
    item = instruction(US, PH, "USD", 5_000, gross=True)
    outcome = commit_gross(tx, item)
    assert isinstance(outcome, Accepted) and outcome.replayed
    assert tx.store.accounts[account_id(US, "USD")].balance == 995_000
    assert len(tx.feed(US)) == 1
    assert tx.violations() == []
