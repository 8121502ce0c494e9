from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remitnet.services.domain.errors import Reason
from remitnet.services.domain.ledger import settlement_posting
from remitnet.services.domain.model import (
    BankStatus,
    Instruction,
    StoredTransfer,
    TransferStatus,
    account_id,
)
from remitnet.services.domain.netting import (
    Accepted,
    AccountState,
    BatchResult,
    PositionDelta,
    Rejected,
    check_nets_balance,
    clear_batch,
    cycle_totals,
    within_limit,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CYCLES = {"USD": "USD-000001"}


def accounts(**balances: int) -> dict[tuple[str, str], AccountState]:
    return {
        (bank, "USD"): AccountState(account_id(bank, "USD"), bank, "USD", bal, 0, 0)
        for bank, bal in balances.items()
    }


def tx(debtor: str, creditor: str, amount: int, tid: str | None = None) -> Instruction:
    return Instruction(tid or str(uuid.uuid4()), debtor, creditor, "USD", amount, "")


def run(
    items: list[Instruction],
    accts: dict[tuple[str, str], AccountState],
    *,
    banks: dict[str, BankStatus] | None = None,
    existing: dict[str, StoredTransfer] | None = None,
) -> BatchResult:
    statuses = {b: BankStatus.ACTIVE for b, _ in accts}
    statuses.update(banks or {})
    return clear_batch(
        items, existing=existing or {}, banks=statuses, accounts=accts, open_cycles=CYCLES, now=NOW
    )


def test_later_items_see_liquidity_used_by_earlier_ones() -> None:
    accts = accounts(A=100, B=0)
    result = run([tx("A", "B", 60), tx("A", "B", 60), tx("A", "B", 40)], accts)
    kinds = [type(o).__name__ for o in result.outcomes]
    assert kinds == ["Accepted", "Rejected", "Accepted"]
    rejected = result.outcomes[1]
    assert isinstance(rejected, Rejected)
    assert rejected.error.reason == Reason.INSUFFICIENT_LIQUIDITY
    assert accts[("A", "USD")].unsettled_net == -100
    assert result.account_deltas == {account_id("A", "USD"): -100, account_id("B", "USD"): 100}


def test_positions_are_aggregated_per_bank_not_per_transfer() -> None:
    result = run([tx("A", "B", 10) for _ in range(50)], accounts(A=1000, B=0))
    assert set(result.positions) == {("USD-000001", "A"), ("USD-000001", "B")}
    assert result.positions[("USD-000001", "A")] == PositionDelta(500, 0, 50, 0)
    assert result.positions[("USD-000001", "B")] == PositionDelta(0, 500, 0, 50)


def test_received_credits_fund_further_payments() -> None:
    result = run([tx("B", "A", 70), tx("A", "B", 150)], accounts(A=100, B=100))
    assert all(isinstance(o, Accepted) for o in result.outcomes)


def test_unknown_suspended_and_unsupported_parties() -> None:
    accts = accounts(A=100, B=0)
    accts.pop(("B", "USD"))
    result = run(
        [tx("A", "Z", 1), tx("A", "S", 1), tx("A", "B", 1)],
        accts,
        banks={"B": BankStatus.ACTIVE, "S": BankStatus.SUSPENDED},
    )
    reasons = [o.error.reason for o in result.outcomes if isinstance(o, Rejected)]
    assert reasons == [
        Reason.UNKNOWN_PARTICIPANT,
        Reason.PARTICIPANT_SUSPENDED,
        Reason.CURRENCY_NOT_SUPPORTED,
    ]
    assert not result.new_transfers and not result.positions


def test_idempotency_against_stored_and_within_batch() -> None:
    tid = str(uuid.uuid4())
    stored = StoredTransfer(tid, "A", "B", "USD", 5, "", TransferStatus.ACCEPTED, "USD-000001", NOW)
    other = str(uuid.uuid4())
    result = run(
        [
            tx("A", "B", 5, tid),
            tx("A", "B", 6, tid),
            tx("A", "B", 7, other),
            tx("A", "B", 7, other),
            tx("A", "B", 8, other),
        ],
        accounts(A=100, B=0),
        existing={tid: stored},
    )
    o = result.outcomes
    assert isinstance(o[0], Accepted) and o[0].replayed and o[0].transfer is stored
    assert (
        isinstance(o[1], Rejected) and o[1].error.reason == Reason.DUPLICATE_WITH_DIFFERENT_CONTENT
    )
    assert isinstance(o[2], Accepted) and not o[2].replayed
    assert isinstance(o[3], Accepted) and o[3].replayed
    assert (
        isinstance(o[4], Rejected) and o[4].error.reason == Reason.DUPLICATE_WITH_DIFFERENT_CONTENT
    )
    assert len(result.new_transfers) == 1
    assert result.account_deltas[account_id("A", "USD")] == -7


BANKS = ["A", "B", "C", "D"]


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(BANKS), st.tuples(st.integers(0, 1000), st.integers(0, 500)), min_size=4
    ),
    st.lists(
        st.tuples(st.sampled_from(BANKS), st.sampled_from(BANKS), st.integers(1, 600)),
        max_size=60,
    ),
)
def test_batch_never_breaks_limits_and_nets_to_zero(
    setup: dict[str, tuple[int, int]], flows: list[tuple[str, str, int]]
) -> None:
    accts = {
        (b, "USD"): AccountState(account_id(b, "USD"), b, "USD", bal, cap, 0)
        for b, (bal, cap) in setup.items()
    }
    items = [tx(d, c, a) for d, c, a in flows if d != c]
    result = run(items, accts)
    for a in accts.values():
        assert within_limit(a.balance, a.net_debit_cap, a.unsettled_net)
    assert sum(result.account_deltas.values()) == 0
    check_nets_balance({bank: p.net for (_c, bank), p in result.positions.items()})
    totals = cycle_totals(result.positions.values())
    assert totals.transfer_count == len(result.new_transfers)
    assert totals.gross_value == sum(t.amount for t in result.new_transfers)
    assert totals.net_value <= totals.gross_value
    accepted = [o for o in result.outcomes if isinstance(o, Accepted)]
    assert len(accepted) == len(result.new_transfers)


def test_nets_that_do_not_balance_are_refused() -> None:
    with pytest.raises(AssertionError):
        check_nets_balance({"A": 5, "B": -4})


def test_settlement_posting_pairs_every_bank_with_the_hub() -> None:
    posting = settlement_posting("USD-000001", "USD", {"A": -30, "B": 20, "C": 10, "D": 0})
    assert sum(leg.amount for leg in posting.legs) == 0
    assert len(posting.legs) == 6  # D has nothing to settle
    assert posting.posting_id == "settle:USD-000001"
