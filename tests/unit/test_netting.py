from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remitnet.services.domain.errors import Reason
from remitnet.services.domain.fx import Quote, QuoteTerms
from remitnet.services.domain.ledger import settlement_posting
from remitnet.services.domain.model import (
    HUB,
    BankStatus,
    Instruction,
    StoredTransfer,
    TransferStatus,
    account_id,
)
from remitnet.services.domain.money import INT64_MAX, INT64_MIN
from remitnet.services.domain.netting import (
    Accepted,
    AccountState,
    BatchResult,
    CycleSums,
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
    sums: dict[str, CycleSums] | None = None,
) -> BatchResult:
    statuses = {b: BankStatus.ACTIVE for b, _ in accts}
    statuses.update(banks or {})
    return clear_batch(
        items,
        existing=existing or {},
        banks=statuses,
        accounts=accts,
        open_cycles=CYCLES,
        now=NOW,
        cycle_sums=sums,
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


# Totals a batch or a cycle accumulates (issue 18, item 3) ---------------------

BIG = 2**62  # two of these in one cycle's gross pass int64


def round_trips(n: int, amount: int) -> list[Instruction]:
    return [tx("A", "B", amount) if k % 2 == 0 else tx("B", "A", amount) for k in range(n)]


def test_round_trips_cannot_take_the_cycle_gross_past_int64() -> None:
    """A and B pay each other back: their unsettled positions stay near 0,
    but the cycle's gross (and each one's sent and received) grows. The item
    that would take the gross past int64 is refused with a reason, the next
    ones too, and the totals the cycle will close with still fit."""
    accts = {
        ("A", "USD"): AccountState(account_id("A", "USD"), "A", "USD", 0, INT64_MAX, 0),
        ("B", "USD"): AccountState(account_id("B", "USD"), "B", "USD", 0, INT64_MAX, 0),
    }
    result = run(round_trips(4, BIG - 1), accts)
    ok = [isinstance(o, Accepted) for o in result.outcomes]
    assert ok == [True, True, False, False]
    rejected = [o for o in result.outcomes if isinstance(o, Rejected)]
    assert all(r.error.reason == Reason.AMOUNT_OUT_OF_RANGE for r in rejected)
    totals = cycle_totals(result.positions.values())
    assert totals.gross_value == 2 * (BIG - 1) <= INT64_MAX
    assert totals.transfer_count == 2
    # Small items still fit what is left.
    result = run(round_trips(2, 1), accts, sums={"USD-000001": CycleSums(INT64_MAX - 1)})
    assert [isinstance(o, Accepted) for o in result.outcomes] == [True, False]


def test_what_the_cycle_held_before_the_batch_counts() -> None:
    accts = accounts(A=100, B=0)
    held = {"USD-000001": CycleSums(INT64_MAX - 50)}
    result = run([tx("A", "B", 30), tx("A", "B", 30), tx("A", "B", 20)], accts, sums=held)
    assert [isinstance(o, Accepted) for o in result.outcomes] == [True, False, True]
    assert held["USD-000001"].gross == INT64_MAX - 50  # the caller's copy is not changed
    # Another cycle (another currency, or the next cycle) is not affected.
    result = run([tx("A", "B", 30)], accounts(A=100, B=0), sums={"USD-000000": held["USD-000001"]})
    assert isinstance(result.outcomes[0], Accepted)


def test_a_balance_once_settled_stays_within_int64() -> None:
    """B's unsettled position fits, but settling it onto a balance near int64
    would not: refused before it can block the settlement."""
    accts = accounts(A=100, B=INT64_MAX - 10)
    result = run([tx("A", "B", 10), tx("A", "B", 1)], accts)
    assert [isinstance(o, Accepted) for o in result.outcomes] == [True, False]
    assert accts[("B", "USD")].unsettled_net == 10


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(1, INT64_MAX)),
        min_size=1,
        max_size=12,
    ),
    st.integers(0, INT64_MAX),
)
def test_no_batch_takes_any_total_past_int64(flows: list[tuple[bool, int]], held: int) -> None:
    """Any batch of round trips between two banks with caps at int64, on top
    of any gross the cycle already holds: every stored total (positions,
    counts, the cycle's totals, unsettled positions) stays within int64, and
    every refusal is AMOUNT_OUT_OF_RANGE or INSUFFICIENT_LIQUIDITY."""
    accts = {
        (b, "USD"): AccountState(account_id(b, "USD"), b, "USD", 0, INT64_MAX, 0) for b in "AB"
    }
    items = [tx("A", "B", amount) if ab else tx("B", "A", amount) for ab, amount in flows]
    result = run(items, accts, sums={"USD-000001": CycleSums(held)})
    for outcome in result.outcomes:
        if isinstance(outcome, Rejected):
            assert outcome.error.reason in (
                Reason.AMOUNT_OUT_OF_RANGE,
                Reason.INSUFFICIENT_LIQUIDITY,
            )
    totals = cycle_totals(result.positions.values())
    assert held + totals.gross_value <= INT64_MAX
    assert totals.net_value <= INT64_MAX and totals.transfer_count <= INT64_MAX
    for p in result.positions.values():
        assert 0 <= p.sent <= INT64_MAX and 0 <= p.received <= INT64_MAX
    for a in accts.values():
        assert INT64_MIN <= a.unsettled_net <= INT64_MAX
        assert INT64_MIN <= a.balance + a.unsettled_net <= INT64_MAX


def test_one_id_twice_in_a_batch_gets_one_answer() -> None:
    """A retry merged with its queued original: the original, refused for
    headroom that a later credit in the same batch provides, is answered
    with the accepted transfer rather than a refusal that contradicts it."""
    tid = str(uuid.uuid4())
    first, credit = tx("A", "B", 150, tid), tx("B", "A", 100)
    again, other = tx("A", "B", 150, tid), tx("A", "B", 151, tid)
    result = run([first, credit, again, other], accounts(A=100, B=100))
    assert [type(o) for o in result.outcomes] == [Accepted, Accepted, Accepted, Rejected]
    original, _, retried, different = result.outcomes
    assert isinstance(original, Accepted) and original.replayed
    assert isinstance(retried, Accepted) and not retried.replayed
    assert isinstance(different, Rejected)
    assert different.error.reason == Reason.DUPLICATE_WITH_DIFFERENT_CONTENT
    assert [t.transfer_id for t in result.new_transfers].count(tid) == 1


def test_cross_currency_legs_keep_both_cycle_totals_within_int64() -> None:
    """Cross-currency legs through an FX provider add to the gross of both
    cycles, each kept within int64; they add no fee (the provider's spread
    is what it keeps), so fees held near int64 by transfers through the hub
    before FX providers refuse nothing."""

    def acct(owner: str, ccy: str, balance: int) -> AccountState:
        return AccountState(account_id(owner, ccy), owner, ccy, balance, 0, 0)

    accts = {
        (o, c): acct(o, c, 10**6 if o in ("A", "P") else 0)
        for o in ("A", "B", "P", HUB)
        for c in ("USD", "JPY")
    }
    cycles = {"USD": "USD-000001", "JPY": "JPY-000001"}
    terms = QuoteTerms("USD", "JPY", 100, 140, Decimal(150), Decimal(140), 666, 10, "USD/JPY")
    quotes = {
        q: Quote(q, "A", terms, NOW, NOW + timedelta(minutes=1), None, "P")
        for q in ("q1", "q2", "q3")
    }
    items = [Instruction(str(uuid.uuid4()), "A", "B", "USD", 100, "", q) for q in quotes]

    def clear(sums: dict[str, CycleSums]) -> list[bool]:
        result = clear_batch(
            items,
            existing={},
            banks={b: BankStatus.ACTIVE for b in ("A", "B", "P")},
            accounts={k: acct(v.bank, v.currency, v.balance) for k, v in accts.items()},
            open_cycles=cycles,
            now=NOW,
            quotes=quotes,
            cycle_sums=sums,
        )
        for o in result.outcomes:
            if isinstance(o, Rejected):
                assert o.error.reason == Reason.AMOUNT_OUT_OF_RANGE
        return [isinstance(o, Accepted) for o in result.outcomes]

    assert clear({}) == [True, True, True]
    assert clear({"JPY-000001": CycleSums(0, INT64_MAX)}) == [True, True, True]
    assert clear({"JPY-000001": CycleSums(INT64_MAX - 300)}) == [True, True, False]
    assert clear({"USD-000001": CycleSums(INT64_MAX - 100)}) == [True, False, False]
