"""The audit's checks (domain/audit.py), without a database: a check that
cannot fail proves nothing. `CLEAN` is a small, consistent world (deposits,
a settled same-currency and cross-currency cycle pair, an open cycle with an
accepted and a cancelled transfer, a gross transfer, the feeds that tell it
all, an operator trail); each test breaks one invariant of a copy and
asserts that its check reports it and passes the clean one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from remitnet.services.domain import audit
from remitnet.services.domain.account import Account
from remitnet.services.domain.audit import AuditSnapshot, FeedHead, StoredEntry, StoredEvent
from remitnet.services.domain.audit_trail import Action, next_record
from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.events import EventKind
from remitnet.services.domain.ledger import (
    EntryKind,
    Posting,
    PostingRecord,
    deposit_posting,
    fx_revenue_posting,
    gross_posting,
    settlement_posting,
)
from remitnet.services.domain.lifecycle import Recall, RecallState
from remitnet.services.domain.model import (
    HUB,
    AccountKind,
    CycleState,
    StoredTransfer,
    TransferStatus,
    account_id,
)
from remitnet.services.domain.netting import PositionDelta

A, B, C = "BANKA", "BANKB", "BANKC"  # A and B in USD, C in EUR
U1, U2, E1, E2 = "USD-000001", "USD-000002", "EUR-000001", "EUR-000002"
T1, T2, T3, T4, T5 = (f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 6))
Q1 = "00000000-0000-4000-9000-000000000001"
PAIR = f"{E1}+{U1}"

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


# The clean world: times, in order --------------------------------------------------
ACCEPT_1 = at(10)  # T1 (A->B 300 USD) and T2 (A->C 100 USD as 90 EUR, fee 2), one batch
CLOSE_U1, CLOSE_E1 = at(20), at(21)
SETTLE_U1, SETTLE_E1 = at(30), at(31)
ACCEPT_3, ACCEPT_4, CANCEL_4, GROSS_5 = at(40), at(41), at(42), at(43)

LIQ_A, LIQ_B, LIQ_C = (account_id(b, cur) for b, cur in ((A, "USD"), (B, "USD"), (C, "EUR")))

TRANSFERS = [
    StoredTransfer(T1, A, B, "USD", 300, "", TransferStatus.ACCEPTED, U1, ACCEPT_1),
    StoredTransfer(
        T2, A, C, "USD", 100, "", TransferStatus.ACCEPTED, U1, ACCEPT_1,
        quote_id=Q1, creditor_currency="EUR", creditor_amount=90, creditor_cycle_id=E1, fee=2,
    ),
    StoredTransfer(T3, B, A, "USD", 50, "", TransferStatus.ACCEPTED, U2, ACCEPT_3),
    StoredTransfer(T4, A, B, "USD", 20, "", TransferStatus.CANCELLED, U2, ACCEPT_4),
    StoredTransfer(T5, A, B, "USD", 10, "", TransferStatus.SETTLED, "", GROSS_5),
]  # fmt: skip

POSITIONS = {
    (U1, A): PositionDelta(sent=400, sent_count=2),
    (U1, B): PositionDelta(received=300, received_count=1),
    (U1, HUB): PositionDelta(received=100, received_count=1),
    (E1, HUB): PositionDelta(sent=90, sent_count=1, fee=2),
    (E1, C): PositionDelta(received=90, received_count=1),
    (U2, B): PositionDelta(sent=50, sent_count=1),
    (U2, A): PositionDelta(received=50, received_count=1),
}

CYCLES = [
    Cycle(U1, "USD", 1, CycleState.SETTLED, T0, CLOSE_U1, SETTLE_U1, 2, 400, 400),
    Cycle(E1, "EUR", 1, CycleState.SETTLED, T0, CLOSE_E1, SETTLE_E1, 1, 90, 90),
    Cycle(U2, "USD", 2, CycleState.OPEN, CLOSE_U1, None, None, 0, 0, 0),
    Cycle(E2, "EUR", 2, CycleState.OPEN, CLOSE_E1, None, None, 0, 0, 0),
]

POSTINGS: list[tuple[Posting, datetime]] = [
    (deposit_posting("dep-a", A, "USD", 1000, "dep-a"), at(1)),
    (deposit_posting("dep-c", C, "EUR", 500, "dep-c"), at(2)),
    (settlement_posting(U1, "USD", {A: -400, B: 300, HUB: 100}), SETTLE_U1),
    (settlement_posting(E1, "EUR", {HUB: -90, C: 90}), SETTLE_E1),
    (fx_revenue_posting(E1, "EUR", 2), SETTLE_E1),
    (gross_posting(T5, A, B, "USD", 10), GROSS_5),
]


def book(
    postings: Sequence[tuple[Posting, datetime]],
) -> tuple[list[StoredEntry], list[PostingRecord], Counter[str], Counter[str]]:
    """The entries and posting records of `postings`, each account's entries
    chained in order; and each account's balance and entry count."""
    entries: list[StoredEntry] = []
    records: list[PostingRecord] = []
    balance: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for p, when in postings:
        records.append(PostingRecord(p.posting_id, p.kind, p.currency, "", 0, p.reference, when))
        for leg in p.legs:
            balance[leg.account_id] += leg.amount
            count[leg.account_id] += 1
            entries.append(
                StoredEntry(
                    leg.account_id,
                    count[leg.account_id],
                    p.kind,
                    leg.amount,
                    balance[leg.account_id],
                    p.posting_id,
                    p.reference,
                    when,
                    p.currency,
                )
            )
    return entries, records, balance, count


ENTRIES, RECORDS, BALANCE, COUNT = book(POSTINGS)
UNSETTLED = {LIQ_A: 50, LIQ_B: -50}  # T3, accepted in the open cycle U2

ACCOUNTS = [
    Account(
        aid,
        aid.split("/")[0],
        aid.split("/")[1],
        aid.split("/")[2],
        BALANCE[aid],
        0,
        UNSETTLED.get(aid, 0),
        COUNT[aid],
        T0,
    )
    for aid in sorted(
        {LIQ_A, LIQ_B, LIQ_C}
        | {
            account_id(HUB, cur, kind)
            for cur in ("USD", "EUR")
            for kind in (AccountKind.RESERVE, AccountKind.SETTLEMENT, AccountKind.FX)
        }
        | {account_id(HUB, "EUR", AccountKind.FX_REVENUE)}
    )
]


FeedItem = tuple[datetime, EventKind, int, str, int]


def feed(bank: str, *items: FeedItem) -> list[StoredEvent]:
    """A bank's events, numbered from 1: (time, kind, status, id, item count);
    the id is the transfer's (of a TRANSFER or RECALL event, whose status is
    a RecallState), the cycle's, or a LEGS event's two cycles."""
    out = []
    for seq, (when, kind, status, key, n) in enumerate(items, 1):
        tid = cid = other = None
        if kind in (EventKind.TRANSFER, EventKind.RECALL):
            tid = key
        elif kind == EventKind.CYCLE:
            cid = key
        elif kind == EventKind.LEGS:
            cid, other = key.split("+")
        out.append(StoredEvent(bank, seq, when, int(kind), int(status), tid, cid, other, n))
    return out


BATCH, TRANSFER, CYCLE, LEGS = EventKind.BATCH, EventKind.TRANSFER, EventKind.CYCLE, EventKind.LEGS
ACCEPTED, CLOSED, SETTLED, CANCELLED = (
    TransferStatus.ACCEPTED, TransferStatus.CLOSED, TransferStatus.SETTLED,
    TransferStatus.CANCELLED,
)  # fmt: skip

A_FEED: list[FeedItem] = [
    (ACCEPT_1, BATCH, ACCEPTED, "", 2),
    (CLOSE_U1, CYCLE, CLOSED, U1, 1),
    (CLOSE_E1, LEGS, CLOSED, PAIR, 1),  # T2's legs: the second of them closed
    (SETTLE_U1, CYCLE, SETTLED, U1, 1),
    (SETTLE_E1, LEGS, SETTLED, PAIR, 1),
    (ACCEPT_3, BATCH, ACCEPTED, "", 1),
    (ACCEPT_4, BATCH, ACCEPTED, "", 1),
    (CANCEL_4, TRANSFER, CANCELLED, T4, 1),
    (GROSS_5, TRANSFER, SETTLED, T5, 1),
]
B_FEED: list[FeedItem] = [
    (ACCEPT_1, BATCH, ACCEPTED, "", 1),
    (CLOSE_U1, CYCLE, CLOSED, U1, 1),
    (SETTLE_U1, CYCLE, SETTLED, U1, 1),
    (ACCEPT_3, BATCH, ACCEPTED, "", 1),
    (ACCEPT_4, BATCH, ACCEPTED, "", 1),
    (CANCEL_4, TRANSFER, CANCELLED, T4, 1),
    (GROSS_5, TRANSFER, SETTLED, T5, 1),
]
C_FEED: list[FeedItem] = [
    (ACCEPT_1, BATCH, ACCEPTED, "", 1),
    (CLOSE_E1, CYCLE, CLOSED, E1, 1),
    (CLOSE_E1, LEGS, CLOSED, PAIR, 1),
    (SETTLE_E1, CYCLE, SETTLED, E1, 1),
    (SETTLE_E1, LEGS, SETTLED, PAIR, 1),
]
EVENTS = [*feed(A, *A_FEED), *feed(B, *B_FEED), *feed(C, *C_FEED)]
HEADS = {A: FeedHead(9, T0), B: FeedHead(7, T0), C: FeedHead(5, T0)}

_first = next_record(None, "operator", at(0), Action.CREATE_BANK, {"bank": A})
TRAIL = [_first, next_record(_first, "operator", at(1), Action.DEPOSIT, {"bank": A})]

CLEAN = AuditSnapshot(
    accounts=ACCOUNTS,
    entries=ENTRIES,
    postings=RECORDS,
    cycles=CYCLES,
    positions=POSITIONS,
    transfers=TRANSFERS,
    cancelled_at={T4: CANCEL_4},
    feed_heads=HEADS,
    events=EVENTS,
    trail=TRAIL,
)


# Helpers to break a copy ---------------------------------------------------------------


def with_account(aid: str, **changes: Any) -> AuditSnapshot:
    return replace(
        CLEAN, accounts=[replace(a, **changes) if a.id == aid else a for a in CLEAN.accounts]
    )


def with_position(key: tuple[str, str], **changes: Any) -> AuditSnapshot:
    return replace(CLEAN, positions={**POSITIONS, key: replace(POSITIONS[key], **changes)})


def with_cycle(cid: str, **changes: Any) -> AuditSnapshot:
    return replace(
        CLEAN,
        cycles=[replace(c, **changes) if c.id == cid else c for c in CYCLES],
    )


def without_event(bank: str, seq: int) -> AuditSnapshot:
    return replace(CLEAN, events=[e for e in EVENTS if (e.bank, e.seq) != (bank, seq)])


def entry_of(aid: str, posting_id: str) -> StoredEntry:
    return next(e for e in ENTRIES if (e.account_id, e.posting_id) == (aid, posting_id))


def with_entries(*extra: StoredEntry, drop: Sequence[StoredEntry] = ()) -> AuditSnapshot:
    return replace(CLEAN, entries=[e for e in ENTRIES if e not in drop] + list(extra))


# The clean world passes ------------------------------------------------------------------


@pytest.mark.parametrize("check", audit.CHECKS, ids=lambda c: c.__name__)
def test_the_clean_snapshot_passes_every_check(check: audit.Check) -> None:
    assert check(CLEAN) == []


def test_run_checks_runs_them_all_and_an_empty_snapshot_passes() -> None:
    assert audit.run_checks(CLEAN) == []
    assert audit.run_checks(AuditSnapshot()) == []
    broken = with_account(LIQ_A, balance=BALANCE[LIQ_A] + 1)
    assert audit.run_checks(broken) == [
        *audit.check_balances(broken),
        *audit.check_balance_sums(broken),
    ]


def test_derived_figures_come_from_the_transfers_legs() -> None:
    assert audit.expected_positions(CLEAN) == POSITIONS
    assert audit.unsettled_nets(CLEAN) == {LIQ_A: 50, LIQ_B: -50}


# Ledger -------------------------------------------------------------------------------


def test_check_ledger_reports_a_currency_not_summing_to_zero() -> None:
    assert audit.check_ledger(CLEAN) == []
    stray = StoredEntry(LIQ_C, 3, EntryKind.DEPOSIT, 3, 593, "dep-c", "dep-c", at(3), "EUR")
    assert audit.check_ledger(with_entries(stray)) == ["EUR ledger entries sum to 3, not zero"]


def test_check_chains_reports_a_gap_and_a_wrong_balance_after() -> None:
    assert audit.check_chains(CLEAN) == []
    last = entry_of(LIQ_A, f"gross:{T5}")  # seq 3
    gap = replace(last, seq=4)
    assert audit.check_chains(with_entries(gap, drop=[last])) == [
        f"ledger entry {LIQ_A}#4 breaks the account's chain"
    ]
    wrong = replace(last, balance_after=last.balance_after + 1)
    assert audit.check_chains(with_entries(wrong, drop=[last])) == [
        f"ledger entry {LIQ_A}#3 breaks the account's chain"
    ]


def test_check_postings_reports_unrecorded_unbalanced_and_mismatched_postings() -> None:
    assert audit.check_postings(CLEAN) == []
    dropped = replace(CLEAN, postings=[p for p in RECORDS if p.id != "dep-c"])
    assert len(audit.check_postings(dropped)) == 2  # both entries of dep-c
    assert f"ledger entry {LIQ_C}#1 names posting dep-c, which is not recorded" in (
        audit.check_postings(dropped)
    )
    one_leg = entry_of(LIQ_A, "dep-a")
    assert audit.check_postings(with_entries(replace(one_leg, amount=999), drop=[one_leg])) == [
        "posting dep-a entries sum to -1, not zero"
    ]
    euro = replace(one_leg, currency="EUR")
    assert audit.check_postings(with_entries(euro, drop=[one_leg])) == [
        f"ledger entry {LIQ_A}#1 is EUR DEPOSIT, its posting dep-a is USD DEPOSIT"
    ]


# Accounts -----------------------------------------------------------------------------


def test_check_balances_reports_a_balance_that_is_not_its_entries() -> None:
    assert audit.check_balances(CLEAN) == []
    assert audit.check_balances(with_account(LIQ_B, balance=311)) == [
        f"account {LIQ_B} balance 311 != sum of its entries 310"
    ]


def test_check_balance_sums_reports_a_currency_whose_balances_do_not_net() -> None:
    assert audit.check_balance_sums(CLEAN) == []
    assert audit.check_balance_sums(with_account(LIQ_B, balance=317)) == [
        "USD account balances sum to 7, not zero"
    ]


def test_check_unsettled_reports_an_unsettled_net_its_transfers_do_not_explain() -> None:
    assert audit.check_unsettled(CLEAN) == []
    assert audit.check_unsettled(with_account(LIQ_A, unsettled_net=70)) == [
        f"account {LIQ_A} unsettled_net 70 != transfers 50"
    ]
    # The hub's FX account is checked too.
    fx = account_id(HUB, "USD", AccountKind.FX)
    assert audit.check_unsettled(with_account(fx, unsettled_net=5)) == [
        f"account {fx} unsettled_net 5 != transfers 0"
    ]


def test_check_limits_reports_a_bank_beyond_liquidity_plus_cap() -> None:
    assert audit.check_limits(CLEAN) == []
    # B owes 50 unsettled: with 40 of liquidity and a cap of 9 it is 1 beyond.
    broken = with_account(LIQ_B, balance=40, net_debit_cap=9)
    assert audit.check_limits(broken) == [f"account {LIQ_B} is beyond its liquidity plus cap"]
    assert [a.id for a in audit.beyond_limit(broken.accounts)] == [LIQ_B]
    assert audit.check_limits(with_account(LIQ_B, balance=40, net_debit_cap=10)) == []


# Transfers, positions, cycles --------------------------------------------------------------


def test_check_quotes_reports_a_quote_used_twice() -> None:
    assert audit.check_quotes(CLEAN) == []
    twice = replace(CLEAN, transfers=[*TRANSFERS[:4], TRANSFERS[4]._replace(quote_id=Q1)])
    assert audit.check_quotes(twice) == [f"quote {Q1} was used by 2 transfers"]


def test_check_positions_reports_a_position_its_transfers_do_not_add_up_to() -> None:
    assert audit.check_positions(CLEAN) == []
    assert audit.check_positions(with_position((U2, A), received=49)) == [
        f"position {(U2, A)} is [0, 49, 0, 1, 0], transfers say [0, 50, 0, 1, 0]"
    ]
    # A cancelled transfer counts for nothing; a live one without a position is missing.
    uncancelled = [*TRANSFERS[:3], TRANSFERS[3]._replace(status=TransferStatus.ACCEPTED)]
    assert len(audit.check_positions(replace(CLEAN, transfers=uncancelled))) == 2
    missing = {k: v for k, v in POSITIONS.items() if k != (E1, C)}
    assert audit.check_positions(replace(CLEAN, positions=missing)) == [
        f"position {(E1, C)} is None, transfers say [0, 90, 0, 1, 0]"
    ]


def test_check_cycle_nets_reports_positions_not_netting_to_zero() -> None:
    assert audit.check_cycle_nets(CLEAN) == []
    assert audit.check_cycle_nets(with_position((U1, B), received=301)) == [
        f"cycle {U1} net positions sum to 1, not zero"
    ]


def test_check_cycle_totals_reports_sealed_totals_other_than_the_positions() -> None:
    assert audit.check_cycle_totals(CLEAN) == []
    assert audit.check_cycle_totals(with_cycle(U1, transfer_count=3)) == [
        f"cycle {U1} totals [3, 400, 400] differ from its positions"
    ]
    # An open cycle's totals are not sealed yet.
    assert audit.check_cycle_totals(with_cycle(U2, gross_value=7)) == []


# Settlement ---------------------------------------------------------------------------


def test_check_settled_once_reports_a_second_settlement() -> None:
    assert audit.check_settled_once(CLEAN) == []
    again = replace(entry_of(LIQ_B, f"settle:{U1}"), seq=9)
    assert audit.check_settled_once(with_entries(again)) == [
        f"cycle {U1} settled 2 times on {LIQ_B}"
    ]
    other = replace(again, posting_id=f"resettle:{U1}")
    assert f"cycle {U1} has 2 settlement postings: ['resettle:{U1}', 'settle:{U1}']" in (
        audit.check_settled_once(with_entries(other))
    )


def test_check_settled_once_reports_postings_of_a_cycle_not_settled() -> None:
    assert audit.check_settled_once(with_cycle(U1, state=CycleState.CLOSED)) == [
        f"cycle {U1} has settlement postings but is CLOSED"
    ]
    gone = replace(CLEAN, cycles=[c for c in CYCLES if c.id != E1])
    assert audit.check_settled_once(gone) == [f"cycle {E1} has settlement postings but is missing"]


def test_check_settlement_nets_reports_postings_other_than_the_nets() -> None:
    assert audit.check_settlement_nets(CLEAN) == []
    posted = entry_of(LIQ_B, f"settle:{U1}")
    assert audit.check_settlement_nets(
        with_entries(replace(posted, amount=299), drop=[posted])
    ) == [f"cycle {U1} posted [299] to {LIQ_B}, net is 300"]
    assert audit.check_settlement_nets(with_entries(drop=[posted])) == [
        f"cycle {U1} posted [] to {LIQ_B}, net is 300"
    ]
    stray = replace(posted, account_id=account_id("BANKD", "USD"))
    assert audit.check_settlement_nets(with_entries(stray)) == [
        f"cycle {U1} posted [300] to BANKD/USD/LIQUIDITY, which has no position in it"
    ]


def test_check_fx_revenue_reports_revenue_other_than_the_settled_spreads() -> None:
    assert audit.check_fx_revenue(CLEAN) == []
    revenue = account_id(HUB, "EUR", AccountKind.FX_REVENUE)
    assert audit.check_fx_revenue(with_account(revenue, balance=3)) == [
        "EUR FX revenue 3 != spreads of settled cycles 2"
    ]
    # Spreads of a cycle not settled are not revenue yet.
    assert audit.check_fx_revenue(with_cycle(E1, state=CycleState.CLOSED)) == [
        "EUR FX revenue 2 != spreads of settled cycles 0"
    ]


def test_check_limits_holds_fx_providers_to_their_liquidity_plus_cap() -> None:
    liq_p = account_id(P, "EUR")
    provider = Account(liq_p, P, "EUR", AccountKind.LIQUIDITY, 100, 5, -105, 1, T0)
    within = replace(CLEAN, accounts=[*ACCOUNTS, provider])
    assert audit.check_limits(within) == []
    beyond = replace(CLEAN, accounts=[*ACCOUNTS, replace(provider, unsettled_net=-106)])
    assert audit.check_limits(beyond) == [f"account {liq_p} is beyond its liquidity plus cap"]


P = "FXP01"  # an FX provider
T6, T7 = (f"00000000-0000-4000-8000-00000000000{i}" for i in (6, 7))
Q2 = "00000000-0000-4000-9000-000000000002"
# A->C 100 USD as 91 EUR through the provider P, in the open cycles, after
# T2 went through the hub (before FX providers).
FUNDED = StoredTransfer(
    T6, A, C, "USD", 100, "", TransferStatus.ACCEPTED, U2, ACCEPT_3,
    quote_id=Q2, creditor_currency="EUR", creditor_amount=91, creditor_cycle_id=E2,
    fx_provider=P,
)  # fmt: skip


def with_transfers(*extra: StoredTransfer) -> AuditSnapshot:
    return replace(CLEAN, transfers=[*TRANSFERS, *extra])


def test_check_hub_unfunded_reports_any_new_position_of_the_hubs() -> None:
    assert audit.check_hub_unfunded(CLEAN) == []  # T2: the hub as dealer, before providers
    assert [(g.payer, g.payee) for g in FUNDED.legs()] == [(A, P), (P, C)]
    assert audit.check_hub_unfunded(with_transfers(FUNDED)) == []
    # Through the hub after a transfer went through a provider.
    early = FUNDED._replace(accepted_at=at(5))
    assert audit.check_hub_unfunded(with_transfers(early)) == [
        f"transfer {T2} took a position of the hub's after transfer {T6} went through an FX "
        "provider"
    ]
    # The hub named as the provider.
    assert audit.check_hub_unfunded(with_transfers(FUNDED._replace(fx_provider=HUB))) == [
        f"transfer {T6} through an FX provider has a leg of the hub's"
    ]
    # A provider on a same-currency transfer.
    odd = TRANSFERS[2]._replace(transfer_id=T7, fx_provider=P)
    assert audit.check_hub_unfunded(with_transfers(odd)) == [
        f"transfer {T7} names FX provider {P} but is no cross-currency transfer"
    ]
    # A position of the hub's that no transfer from before providers explains.
    stray = replace(CLEAN, positions={**POSITIONS, (E2, HUB): PositionDelta(sent=91, sent_count=1)})
    assert audit.check_hub_unfunded(stray) == [
        f"the hub's position in cycle {E2} is [91, 0, 1, 0, 0], its transfers from before FX "
        "providers say None"
    ]
    # A cancelled transfer through the hub holds no position.
    cancelled = replace(
        CLEAN,
        transfers=[t._replace(status=TransferStatus.CANCELLED) if t.transfer_id == T2 else t
                   for t in TRANSFERS],
    )  # fmt: skip
    assert audit.check_hub_unfunded(cancelled) == [
        f"the hub's position in cycle {E1} is [90, 0, 1, 0, 2], its transfers from before FX "
        "providers say None",
        f"the hub's position in cycle {U1} is [0, 100, 0, 1, 0], its transfers from before FX "
        "providers say None",
    ]


# The change feed --------------------------------------------------------------------------


def test_check_feed_order_reports_gaps_time_going_back_heads_and_shared_batch_times() -> None:
    assert audit.check_feed_order(CLEAN) == []
    assert audit.check_feed_order(without_event(B, 3)) == [
        f"feed of {B}: event 4 follows 2 out of order"
    ]
    back = [e._replace(at=T0) if (e.bank, e.seq) == (C, 2) else e for e in EVENTS]
    assert audit.check_feed_order(replace(CLEAN, events=back)) == [
        f"feed of {C}: event 2 follows 1 out of order"
    ]
    assert audit.check_feed_order(replace(CLEAN, feed_heads={**HEADS, C: FeedHead(6, T0)})) == [
        f"feed of {C}: head 6, last event 5"
    ]
    shared = [e._replace(at=ACCEPT_3) if (e.bank, e.seq) == (A, 7) else e for e in EVENTS]
    assert audit.check_feed_order(replace(CLEAN, events=shared)) == [
        f"feed of {A}: two batch events at {ACCEPT_3}"
    ]


def test_check_feed_transfers_reports_untold_and_twice_told_transfers() -> None:
    assert audit.check_feed_transfers(CLEAN) == []
    # A's cancellation of T4 is not in A's feed (seq 8).
    assert audit.check_feed_transfers(without_event(A, 8)) == [
        f"feed of {A}: {T4} CANCELLED told 0 times"
    ]
    # B's gross T5 told settled twice.
    twice = [*EVENTS, StoredEvent(B, 8, at(50), int(TRANSFER), int(SETTLED), T5, None, None, 1)]
    assert audit.check_feed_transfers(replace(CLEAN, events=twice)) == [
        f"feed of {B}: {T5} SETTLED told 2 times"
    ]
    # T3 told cancelled though it is not.
    told = [*EVENTS, StoredEvent(B, 8, at(50), int(TRANSFER), int(CANCELLED), T3, None, None, 1)]
    assert audit.check_feed_transfers(replace(CLEAN, events=told)) == [
        f"feed of {B}: {T3} CANCELLED told 1 times"
    ]


def test_check_feed_transfers_reports_batch_and_legs_events_that_miscount() -> None:
    short = [e._replace(item_count=1) if (e.bank, e.seq) == (A, 1) else e for e in EVENTS]
    assert audit.check_feed_transfers(replace(CLEAN, events=short)) == [
        f"feed of {A}: the batch at {ACCEPT_1} counts 1 transfers, 2 were accepted"
    ]
    legs = [e._replace(item_count=2) if (e.bank, e.seq) == (C, 3) else e for e in EVENTS]
    assert audit.check_feed_transfers(replace(CLEAN, events=legs)) == [
        f"feed of {C}: the LEGS event of {PAIR} counts 2 transfers, 1 have those legs"
    ]
    # Without the LEGS event, the cross-currency transfer was never told settled.
    assert audit.check_feed_transfers(without_event(C, 5)) == [
        f"feed of {C}: {T2} SETTLED told 0 times"
    ]


def test_check_feed_transfers_skips_what_precedes_a_feed() -> None:
    later = {bank: FeedHead(h.seq, at(60)) for bank, h in HEADS.items()}
    no_events = replace(CLEAN, feed_heads=later, events=[])
    assert audit.check_feed_transfers(no_events) == []
    assert audit.check_feed_transfers(replace(CLEAN, events=[])) != []


def test_check_feed_cycles_reports_a_cycle_move_untold_or_told_twice() -> None:
    assert audit.check_feed_cycles(CLEAN) == []
    assert audit.check_feed_cycles(without_event(B, 3)) == [
        f"feed of {B}: {U1} SETTLED told 0 times"
    ]
    twice = [*EVENTS, StoredEvent(C, 6, at(50), int(CYCLE), int(CLOSED), None, E1, None, 1)]
    assert audit.check_feed_cycles(replace(CLEAN, events=twice)) == [
        f"feed of {C}: {E1} CLOSED told 2 times"
    ]
    # The open cycle U2 told closed before it is.
    early = [*EVENTS, StoredEvent(A, 10, at(50), int(CYCLE), int(CLOSED), None, U2, None, 1)]
    assert audit.check_feed_cycles(replace(CLEAN, events=early)) == [
        f"feed of {A}: {U2} CLOSED told 1 times"
    ]


# The operator audit trail ----------------------------------------------------------------


def test_check_trail_reports_a_changed_or_missing_record() -> None:
    assert audit.check_trail(CLEAN) == []
    changed = replace(CLEAN, trail=[TRAIL[0], replace(TRAIL[1], principal="hub")])
    [violation] = audit.check_trail(changed)
    assert violation.startswith("operator audit trail broken at seq 2: ")
    gap = replace(CLEAN, trail=[TRAIL[1]])
    [violation] = audit.check_trail(gap)
    assert violation.startswith("operator audit trail broken at seq 2: seq 1 missing")


# The lifecycle: confirmation, expiry, returns, recalls ------------------------------------
#
# LIFE is CLEAN plus, in the open cycles, transfers awaiting the creditor's
# confirmation and every way out of it, a return, and recalls in every state,
# with the feeds that tell them.

R1, R2, R3, R4, R5, R6, N7, RET8 = (f"00000000-0000-4000-a000-00000000000{i}" for i in range(1, 9))
RC1, RC2, RC3, RC4 = (f"00000000-0000-4000-b000-00000000000{i}" for i in range(1, 5))
Q3 = "00000000-0000-4000-9000-000000000003"
RESERVE_1, RESERVE_2 = at(50), at(51)  # two batches of reservations
REJECT_3, CANCEL_5, ACCEPT_6, NET_7, RECALL_7, RETURN_8, ANSWER_7, EXPIRE_4 = (
    at(55), at(56), at(57), at(58), at(59), at(60), at(61), at(62),
)  # fmt: skip
RECALL_3, REJECT_RECALL_3, RECALL_1, EXPIRE_RECALL_1, RECALL_5 = (
    at(63), at(64), at(65), at(67), at(68),
)  # fmt: skip
RESERVED, REJECTED, EXPIRED = (
    TransferStatus.RESERVED, TransferStatus.REJECTED, TransferStatus.EXPIRED,
)  # fmt: skip
RESOLVED, RECALL = EventKind.RESOLVED, EventKind.RECALL
LIQ_P = account_id(P, "EUR")


def reserved(tid: str, amount: int, when: datetime, deadline: datetime) -> StoredTransfer:
    return StoredTransfer(tid, A, B, "USD", amount, "", RESERVED, "", when, deadline=deadline)


LIFE_TRANSFERS = [
    reserved(R1, 40, RESERVE_1, at(80)),  # still awaiting B
    StoredTransfer(
        R2, A, C, "USD", 100, "", RESERVED, "", RESERVE_1, quote_id=Q3,
        creditor_currency="EUR", creditor_amount=91, fx_provider=P, deadline=at(80),
    ),  # awaiting C, across currencies: P's 91 EUR held too
    reserved(R3, 30, RESERVE_2, at(81))._replace(
        status=REJECTED, resolved_at=REJECT_3, reason="AC04"
    ),
    reserved(R4, 20, RESERVE_2, at(61))._replace(
        status=EXPIRED, resolved_at=EXPIRE_4, reason="AB05"
    ),
    reserved(R5, 15, RESERVE_2, at(81))._replace(status=CANCELLED, resolved_at=CANCEL_5),
    reserved(R6, 25, RESERVE_2, at(81))._replace(
        status=ACCEPTED, cycle_id=U2, resolved_at=ACCEPT_6
    ),
    StoredTransfer(N7, B, A, "USD", 60, "", ACCEPTED, U2, NET_7, returned_by=RET8),
    StoredTransfer(
        RET8, A, B, "USD", 60, "", ACCEPTED, U2, RETURN_8, reason="FOCR", return_of=N7
    ),
]  # fmt: skip

LIFE_POSITIONS = {
    **POSITIONS,
    # T3 50 B->A; R6 25 A->B; N7 60 B->A; RET8 60 A->B.
    (U2, A): PositionDelta(sent=85, received=110, sent_count=2, received_count=2),
    (U2, B): PositionDelta(sent=110, received=85, sent_count=2, received_count=2),
}
LIFE_UNSETTLED = {LIQ_A: 50 - 25 + 60 - 60, LIQ_B: -50 + 25 - 60 + 60}
LIFE_RESERVED = {LIQ_A: 40 + 100, LIQ_P: 91}
LIFE_ACCOUNTS = [
    replace(a, unsettled_net=LIFE_UNSETTLED.get(a.id, 0), reserved=LIFE_RESERVED.get(a.id, 0))
    for a in ACCOUNTS
] + [Account(LIQ_P, P, "EUR", AccountKind.LIQUIDITY, 0, 1_000, 0, 0, T0, reserved=91)]

REQ, ACC_, REJ, EXP = (
    RecallState.REQUESTED, RecallState.ACCEPTED, RecallState.REJECTED, RecallState.EXPIRED,
)  # fmt: skip
LIFE_RECALLS = [
    Recall(RC1, T3, B, A, "DUPL", "", REJ, RECALL_3, at(163), REJECT_RECALL_3, "NOAS"),
    Recall(RC2, N7, B, A, "FRAD", "", ACC_, RECALL_7, at(159), ANSWER_7, return_id=RET8),
    Recall(RC3, T1, A, B, "TECH", "", EXP, RECALL_1, at(66), EXPIRE_RECALL_1),
    Recall(RC4, T5, A, B, "CUST", "", REQ, RECALL_5, at(168)),
]


def _life_feed(reserved_then: int) -> list[FeedItem]:
    """A's and B's feeds after CLEAN's: both are party to all but R2 (A's)."""
    return [
        (RESERVE_1, BATCH, RESERVED, "", reserved_then),
        (RESERVE_2, BATCH, RESERVED, "", 4),
        (REJECT_3, RESOLVED, REJECTED, "", 1),
        (CANCEL_5, RESOLVED, CANCELLED, "", 1),  # cancelled while reserved
        (ACCEPT_6, RESOLVED, ACCEPTED, "", 1),
        (NET_7, BATCH, ACCEPTED, "", 1),
        (RECALL_7, RECALL, REQ, N7, 1),
        (RETURN_8, BATCH, ACCEPTED, "", 1),
        (ANSWER_7, RECALL, ACC_, N7, 1),
        (EXPIRE_4, RESOLVED, EXPIRED, "", 1),
        (RECALL_3, RECALL, REQ, T3, 1),
        (REJECT_RECALL_3, RECALL, REJ, T3, 1),
        (RECALL_1, RECALL, REQ, T1, 1),
        (EXPIRE_RECALL_1, RECALL, EXP, T1, 1),
        (RECALL_5, RECALL, REQ, T5, 1),
    ]


LIFE_EVENTS = [
    *feed(A, *A_FEED, *_life_feed(2)),
    *feed(B, *B_FEED, *_life_feed(1)),
    *feed(C, *C_FEED, (RESERVE_1, BATCH, RESERVED, "", 1)),
]

LIFE = replace(
    CLEAN,
    accounts=LIFE_ACCOUNTS,
    positions=LIFE_POSITIONS,
    transfers=[*TRANSFERS, *LIFE_TRANSFERS],
    cancelled_at={T4: CANCEL_4, R5: CANCEL_5},
    feed_heads={A: FeedHead(24, T0), B: FeedHead(22, T0), C: FeedHead(6, T0)},
    events=LIFE_EVENTS,
    recalls=LIFE_RECALLS,
)


def life_with(tid: str, **changes: Any) -> AuditSnapshot:
    """LIFE with one transfer changed."""
    return replace(
        LIFE,
        transfers=[t._replace(**changes) if t.transfer_id == tid else t for t in LIFE.transfers],
    )


def life_recall(tid: str, **changes: Any) -> AuditSnapshot:
    """LIFE with the recall of one transfer changed."""
    return replace(
        LIFE,
        recalls=[replace(r, **changes) if r.transfer_id == tid else r for r in LIFE_RECALLS],
    )


def life_events(bank: str, seq: int, **changes: Any) -> AuditSnapshot:
    """LIFE with one stored event changed (`drop=True`: without it)."""
    drop = changes.pop("drop", False)
    events = []
    for e in LIFE_EVENTS:
        if (e.bank, e.seq) == (bank, seq):
            if drop:
                continue
            e = e._replace(**changes)
        events.append(e)
    return replace(LIFE, events=events)


def life_account(aid: str, **changes: Any) -> AuditSnapshot:
    return replace(
        LIFE, accounts=[replace(a, **changes) if a.id == aid else a for a in LIFE_ACCOUNTS]
    )


@pytest.mark.parametrize("check", audit.CHECKS, ids=lambda c: c.__name__)
def test_the_lifecycle_snapshot_passes_every_check(check: audit.Check) -> None:
    assert check(LIFE) == []


def test_unnetted_transfers_count_in_no_position_or_unsettled_net() -> None:
    assert audit.expected_positions(LIFE) == LIFE_POSITIONS
    assert audit.unsettled_nets(LIFE) == {k: v for k, v in LIFE_UNSETTLED.items() if v}
    assert audit.reserved_amounts(LIFE) == LIFE_RESERVED
    # A reserved, rejected or expired transfer that names a cycle anyway
    # still counts nowhere: check_resolutions reports the cycle.
    for tid in (R1, R3, R4):
        broken = life_with(tid, cycle_id=U2)
        assert audit.expected_positions(broken) == LIFE_POSITIONS
        assert audit.check_positions(broken) == [] and audit.check_unsettled(broken) == []


# Reservations and the limit -------------------------------------------------------------


def test_check_reserved_reports_reservations_the_transfers_do_not_hold() -> None:
    assert audit.check_reserved(CLEAN) == []
    assert audit.check_reserved(life_account(LIQ_A, reserved=139)) == [
        f"account {LIQ_A} reserved 139 != its reserved transfers 140"
    ]
    # Released twice: negative.
    assert audit.check_reserved(life_account(LIQ_B, reserved=-15)) == [
        f"account {LIQ_B} reserved -15 is negative",
        f"account {LIQ_B} reserved -15 != its reserved transfers 0",
    ]
    # An expired transfer still held: not released.
    assert audit.check_reserved(life_with(R4, status=RESERVED, resolved_at=None)) == [
        f"account {LIQ_A} reserved 140 != its reserved transfers 160"
    ]
    # The FX provider's delivery is held on its account in the target currency.
    assert audit.check_reserved(life_account(LIQ_P, reserved=0)) == [
        f"account {LIQ_P} reserved 0 != its reserved transfers 91"
    ]
    gone = replace(LIFE, accounts=[a for a in LIFE_ACCOUNTS if a.id != LIQ_P])
    assert audit.check_reserved(gone) == [
        f"reserved transfers hold 91 on {LIQ_P}, which is no account"
    ]


def test_check_limits_counts_reservations() -> None:
    # A owes nothing net (unsettled +25) but holds 140: 115 of its liquidity plus cap.
    assert audit.check_limits(life_account(LIQ_A, balance=100, net_debit_cap=15)) == []
    beyond = life_account(LIQ_A, balance=100, net_debit_cap=14)
    assert audit.check_limits(beyond) == [f"account {LIQ_A} is beyond its liquidity plus cap"]
    # ... which it is not without the reservations.
    assert audit.check_limits(life_account(LIQ_A, balance=100, net_debit_cap=14, reserved=0)) == []
    # A provider's reserved delivery counts against its own limit.
    assert audit.check_limits(life_account(LIQ_P, net_debit_cap=90)) == [
        f"account {LIQ_P} is beyond its liquidity plus cap"
    ]


# Resolutions ------------------------------------------------------------------------------


def test_check_resolutions_reports_unnetted_transfers_in_a_cycle() -> None:
    assert audit.check_resolutions(CLEAN) == []
    for tid, status in ((R1, "RESERVED"), (R3, "REJECTED"), (R4, "EXPIRED"), (R5, "CANCELLED")):
        assert audit.check_resolutions(life_with(tid, creditor_cycle_id=E2)) == [
            f"transfer {tid} is {status} but is in cycle {E2}"
        ]
    assert audit.check_resolutions(life_with(R3, cycle_id=U2)) == [
        f"transfer {R3} is REJECTED but is in cycle {U2}"
    ]
    # A cross-currency one netted must have its creditor's leg in a cycle too.
    accepted = life_with(R2, status=ACCEPTED, cycle_id=U2, resolved_at=ACCEPT_6)
    assert audit.check_resolutions(accepted) == [
        f"transfer {R2} is netted across currencies without its creditor's cycle"
    ]


def test_check_resolutions_reports_a_transfer_accepted_and_expired() -> None:
    deadline = at(81)
    assert audit.check_resolutions(life_with(R6, resolved_at=deadline)) == [
        f"transfer {R6} was accepted at {deadline}, not before its deadline {deadline}: "
        "accepted and expired"
    ]
    # Cancelled by the operator after its acceptance: its resolution stays.
    assert audit.check_resolutions(life_with(R6, status=CANCELLED)) == []
    assert len(audit.check_resolutions(life_with(R6, status=CANCELLED, resolved_at=at(90)))) == 1


def test_check_resolutions_reports_expiries_and_rejections_out_of_rule() -> None:
    assert audit.check_resolutions(life_with(R4, reason="AC04")) == [
        f"transfer {R4} expired with reason AC04, not AB05"
    ]
    assert audit.check_resolutions(life_with(R4, resolved_at=at(60))) == [
        f"transfer {R4} expired at {at(60)}, before its deadline {at(61)}"
    ]
    for reason in ("XXXX", "AB05", None):  # the expiry's code is not the creditor's
        assert audit.check_resolutions(life_with(R3, reason=reason)) == [
            f"transfer {R3} was rejected with reason {reason}, no status reason"
        ]
    assert audit.check_resolutions(life_with(R3, resolved_at=at(81))) == [
        f"transfer {R3} was rejected at {at(81)}, not before its deadline {at(81)}"
    ]


def test_check_resolutions_reports_resolution_times_out_of_place() -> None:
    assert audit.check_resolutions(life_with(R1, resolved_at=at(52))) == [
        f"transfer {R1} is RESERVED but was resolved at {at(52)}"
    ]
    assert audit.check_resolutions(life_with(R3, resolved_at=None)) == [
        f"transfer {R3} left RESERVED (REJECTED) with no resolved_at"
    ]
    assert audit.check_resolutions(life_with(R3, resolved_at=at(49))) == [
        f"transfer {R3} was resolved at {at(49)}, before it was reserved"
    ]
    assert audit.check_resolutions(life_with(R1, deadline=RESERVE_1)) == [
        f"transfer {R1} has its deadline {RESERVE_1} before it was taken"
    ]
    late = life_with(R5, resolved_at=at(81))
    assert audit.check_resolutions(replace(late, cancelled_at={T4: CANCEL_4, R5: at(81)})) == [
        f"transfer {R5} was cancelled at {at(81)}, not before its deadline {at(81)}: it had expired"
    ]
    cancelled = replace(LIFE, cancelled_at={T4: CANCEL_4, R5: at(70)})
    assert audit.check_resolutions(cancelled) == [
        f"transfer {R5} was cancelled while reserved at {at(70)}, but resolved at {CANCEL_5}"
    ]


def test_check_resolutions_reports_states_only_a_reservation_reaches() -> None:
    for status in (RESERVED, REJECTED, EXPIRED):
        assert audit.check_resolutions(life_with(N7, status=status)) == [
            f"transfer {N7} is {status.name} but was never reserved (no deadline)"
        ]
    assert audit.check_resolutions(life_with(N7, status=CANCELLED, cycle_id="")) == [
        f"transfer {N7} is CANCELLED in no cycle, and was never reserved"
    ]
    assert audit.check_resolutions(life_with(N7, resolved_at=NET_7)) == [
        f"transfer {N7} was never reserved but was resolved at {NET_7}"
    ]
    assert audit.check_resolutions(life_with(T5, deadline=at(99))) == [
        f"transfer {T5} has a deadline, but a gross transfer is never reserved"
    ]
    assert audit.check_resolutions(life_with(RET8, deadline=at(99))) == [
        f"transfer {RET8} has a deadline, but a return is never reserved"
    ]
    assert audit.check_resolutions(life_with(R3, status=CLOSED)) == [
        f"transfer {R3} is CLOSED in no cycle after its reservation"
    ]
    # SETTLED in no cycle is a gross transfer, which was never reserved.
    assert audit.check_resolutions(life_with(R3, status=SETTLED)) == [
        f"transfer {R3} has a deadline, but a gross transfer is never reserved"
    ]


def test_check_hub_unfunded_accepts_cross_currency_transfers_never_netted() -> None:
    assert audit.check_hub_unfunded(LIFE) == []  # R2: reserved, no creditor cycle yet
    for status, reason in ((REJECTED, "AC01"), (EXPIRED, "AB05"), (CANCELLED, None)):
        out = life_with(R2, status=status, resolved_at=at(70), reason=reason)
        assert audit.check_hub_unfunded(out) == []
    # Naming a provider without a conversion is still reported.
    assert audit.check_hub_unfunded(life_with(R2, creditor_currency=None)) == [
        f"transfer {R2} names FX provider {P} but is no cross-currency transfer"
    ]


# Returns ---------------------------------------------------------------------------------


def test_check_returns_reports_a_return_of_nothing_or_unlinked() -> None:
    assert audit.check_returns(CLEAN) == []
    missing = "00000000-0000-4000-c000-000000000001"
    assert audit.check_returns(life_with(RET8, return_of=missing)) == [
        f"transfer {N7} names {RET8} as its return, which returns something else or does not exist",
        f"return {RET8} returns {missing}, which does not exist",
    ]
    assert audit.check_returns(life_with(N7, returned_by=None)) == [
        f"return {RET8} of {N7}: the original names None as its return"
    ]


def test_check_returns_reports_a_return_that_is_not_the_original_back() -> None:
    assert audit.check_returns(life_with(RET8, debtor=B, creditor=A)) == [
        f"return {RET8} of {N7} goes {B} -> {A}, not {A} -> {B}"
    ]
    assert audit.check_returns(life_with(RET8, amount=61)) == [
        f"return {RET8} of {N7} is 61 USD, the original credited 60 USD"
    ]
    # Across currencies: what the creditor received, back into the debtor's currency.
    assert audit.check_returns(life_with(RET8, currency="EUR")) == [
        f"return {RET8} of {N7} is 60 EUR, the original credited 60 USD",
        f"return {RET8} of {N7} pays back in EUR, the original was paid in USD",
    ]
    assert audit.check_returns(
        life_with(RET8, quote_id=Q3, creditor_currency="EUR", creditor_amount=55, fx_provider=P)
    ) == [f"return {RET8} of {N7} pays back in EUR, the original was paid in USD"]
    assert audit.check_returns(life_with(RET8, reason="DUPL")) == [
        f"return {RET8} of {N7} has reason DUPL, no return reason"
    ]
    assert audit.check_returns(life_with(RET8, deadline=at(99))) == [
        f"return {RET8} of {N7} was reserved: a return is netted at once"
    ]
    assert audit.check_returns(life_with(RET8, accepted_at=at(57))) == [
        f"return {RET8} of {N7} was taken before the original was accepted"
    ]


def test_check_returns_reports_a_transfer_returned_twice_or_a_return_returned() -> None:
    again = RET8.replace("a000", "c000")
    twice = replace(
        LIFE, transfers=[*LIFE.transfers, LIFE_TRANSFERS[-1]._replace(transfer_id=again)]
    )
    assert audit.check_returns(twice) == [
        f"transfer {N7} was returned 2 times",
        f"return {again} of {N7}: the original names {RET8} as its return",
    ]
    # A return of the return.
    back = StoredTransfer(
        again, B, A, "USD", 60, "", ACCEPTED, U2, at(70), reason="AC04", return_of=RET8
    )
    returned = replace(
        LIFE,
        transfers=[
            *(t._replace(returned_by=again) if t.transfer_id == RET8 else t
              for t in LIFE.transfers),
            back,
        ],
    )  # fmt: skip
    assert audit.check_returns(returned) == [
        f"return {RET8} of {N7} was itself returned by {again}",
        f"return {again} returns {RET8}, itself a return of {N7}",
    ]


def test_check_returns_reports_a_return_of_a_transfer_the_creditor_never_held() -> None:
    # The original was cancelled (by the operator) after it was returned.
    assert audit.check_returns(life_with(N7, status=CANCELLED)) == [
        f"return {RET8} returns {N7}, which is CANCELLED"
    ]
    for original, status in (
        (R1, "RESERVED"),
        (R3, "REJECTED"),
        (R4, "EXPIRED"),
        (R5, "CANCELLED"),
    ):
        o = next(t for t in LIFE_TRANSFERS if t.transfer_id == original)
        back = RET8.replace("a000", "d000")
        snapshot = replace(
            LIFE,
            transfers=[
                *(t._replace(returned_by=back) if t.transfer_id == original else t
                  for t in LIFE.transfers),
                StoredTransfer(back, B, A, "USD", o.amount, "", ACCEPTED, U2, at(70),
                               reason="AC04", return_of=original),
            ],
        )  # fmt: skip
        assert audit.check_returns(snapshot) == [
            f"return {back} returns {original}, which is {status}"
        ]


# Recalls ---------------------------------------------------------------------------------


def test_check_recalls_reports_recalls_of_the_wrong_transfer_or_parties() -> None:
    assert audit.check_recalls(CLEAN) == []
    twice = replace(LIFE, recalls=[*LIFE_RECALLS, replace(LIFE_RECALLS[0], recall_id=RC4)])
    assert audit.check_recalls(twice) == [
        f"transfer {T3} has 2 recalls",
        f"recall id {RC4} is used 2 times",
    ]
    missing = "00000000-0000-4000-c000-000000000009"
    assert audit.check_recalls(life_recall(T3, transfer_id=missing)) == [
        f"the recall of {missing} ({RC1}) recalls a transfer that does not exist"
    ]
    assert audit.check_recalls(life_recall(T3, debtor=A, creditor=B)) == [
        f"the recall of {T3} is between {A} and {B}, the transfer between {B} and {A}"
    ]
    assert audit.check_recalls(life_recall(T3, reason="NOAS")) == [
        f"the recall of {T3} has reason NOAS, no cancellation reason"
    ]
    for tid, status in ((R1, "RESERVED"), (R3, "REJECTED"), (RET8, "a return")):
        recall = replace(LIFE_RECALLS[3], recall_id=RC1.replace("b000", "e000"), transfer_id=tid)
        recall = replace(recall, requested_at=at(70), deadline=at(170))
        snapshot = replace(LIFE, recalls=[*LIFE_RECALLS, recall])
        assert audit.check_recalls(snapshot) == [
            f"the recall of {tid} recalls {status}, not a payment the creditor holds"
        ]


def test_check_recalls_reports_times_out_of_order() -> None:
    assert audit.check_recalls(life_recall(N7, requested_at=at(57))) == [
        f"the recall of {N7} was requested before the transfer was accepted"
    ]
    assert audit.check_recalls(life_recall(T5, deadline=RECALL_5)) == [
        f"the recall of {T5} has its deadline {RECALL_5} before it was requested"
    ]
    assert audit.check_recalls(life_recall(T3, answered_at=at(62))) == [
        f"the recall of {T3} was answered before it was requested"
    ]
    assert audit.check_recalls(life_recall(T3, answered_at=None)) == [
        f"the recall of {T3} is REJECTED with no answered_at"
    ]


def test_check_recalls_reports_answers_out_of_rule() -> None:
    # Open, but answered, or its transfer returned already.
    assert audit.check_recalls(life_recall(T5, answer_reason="NOAS")) == [
        f"the recall of {T5} is REQUESTED but has an answer"
    ]
    assert audit.check_recalls(life_recall(N7, state=REQ, answered_at=None, return_id=None)) == [
        f"the recall of {N7} is REQUESTED but the transfer was returned by {RET8}"
    ]
    # Accepted: by the transfer's own return.
    assert audit.check_recalls(life_recall(N7, return_id=R6)) == [
        f"the recall of {N7} is ACCEPTED with return {R6}, the transfer's return is {RET8}"
    ]
    assert audit.check_recalls(life_recall(T1, state=ACC_)) == [
        f"the recall of {T1} is ACCEPTED with return None, the transfer's return is None"
    ]
    assert audit.check_recalls(life_recall(N7, answer_reason="NOAS")) == [
        f"the recall of {N7} is ACCEPTED with a rejection reason NOAS"
    ]
    # Rejected: with a camt.029 reason, before its deadline.
    assert audit.check_recalls(life_recall(T3, answer_reason="DUPL")) == [
        f"the recall of {T3} was rejected with reason DUPL, no rejection reason"
    ]
    assert audit.check_recalls(life_recall(T3, answered_at=at(163))) == [
        f"the recall of {T3} was rejected at {at(163)}, not before its deadline"
    ]
    assert audit.check_recalls(life_recall(T3, return_id=RET8)) == [
        f"the recall of {T3} is REJECTED but names return {RET8}"
    ]
    # Expired: at or after its deadline, unanswered.
    assert audit.check_recalls(life_recall(T1, answered_at=at(65))) == [
        f"the recall of {T1} expired at {at(65)}, before its deadline {at(66)}"
    ]
    assert audit.check_recalls(life_recall(T1, answer_reason="NOAS")) == [
        f"the recall of {T1} is EXPIRED but has an answer"
    ]


# The feed of the lifecycle ------------------------------------------------------------------


def test_check_feed_order_allows_one_set_event_per_kind_and_status() -> None:
    head = {A: FeedHead(2, T0)}
    both = feed(A, (at(1), BATCH, ACCEPTED, "", 1), (at(1), BATCH, RESERVED, "", 1))
    assert audit.check_feed_order(AuditSnapshot(feed_heads=head, events=both)) == []
    mixed = feed(A, (at(1), RESOLVED, ACCEPTED, "", 1), (at(1), RESOLVED, REJECTED, "", 1))
    assert audit.check_feed_order(AuditSnapshot(feed_heads=head, events=mixed)) == []
    twice = feed(A, (at(1), RESOLVED, REJECTED, "", 1), (at(1), RESOLVED, REJECTED, "", 1))
    assert audit.check_feed_order(AuditSnapshot(feed_heads=head, events=twice)) == [
        f"feed of {A}: two RESOLVED REJECTED events at {at(1)}"
    ]
    odd = life_events(A, 24, kind=9)
    assert audit.check_feed_order(odd) == [f"feed of {A}: event 24 is of unknown kind 9"]


def test_check_feed_transfers_reports_reservations_miscounted() -> None:
    assert audit.check_feed_transfers(life_events(A, 10, item_count=1)) == [
        f"feed of {A}: the batch RESERVED at {RESERVE_1} counts 1 transfers, 2 were reserved"
    ]
    # Told accepted, though they were reserved.
    assert audit.check_feed_transfers(life_events(C, 6, status=int(ACCEPTED))) == [
        f"feed of {C}: the batch at {RESERVE_1} counts 1 transfers, 0 were accepted",
        f"feed of {C}: the batch RESERVED at {RESERVE_1} counts 0 transfers, 1 were reserved",
    ]
    # A transfer netted at once told as reserved.
    assert audit.check_feed_transfers(life_events(B, 13, status=int(RESERVED))) == [
        f"feed of {B}: the batch at {NET_7} counts 0 transfers, 1 were accepted",
        f"feed of {B}: the batch RESERVED at {NET_7} counts 1 transfers, 0 were reserved",
    ]


def test_check_feed_transfers_reports_resolutions_untold_or_mistold() -> None:
    assert audit.check_feed_transfers(life_events(A, 12, drop=True)) == [
        f"feed of {A}: the RESOLVED REJECTED event at {REJECT_3} counts 0 transfers, "
        "1 were resolved so then"
    ]
    # Accepted, and told expired too.
    assert audit.check_feed_transfers(life_events(B, 12, status=int(EXPIRED))) == [
        f"feed of {B}: the RESOLVED ACCEPTED event at {ACCEPT_6} counts 0 transfers, "
        "1 were resolved so then",
        f"feed of {B}: the RESOLVED EXPIRED event at {ACCEPT_6} counts 1 transfers, "
        "0 were resolved so then",
    ]


def test_a_cancel_while_reserved_is_told_by_a_resolved_event_not_a_transfer_event() -> None:
    # In place of A's RESOLVED CANCELLED event (seq 13), a TRANSFER CANCELLED one.
    told = life_events(A, 13, kind=int(TRANSFER), transfer_id=R5)
    assert audit.check_feed_transfers(told) == [
        f"feed of {A}: {R5} CANCELLED told 1 times",
        f"feed of {A}: the RESOLVED CANCELLED event at {CANCEL_5} counts 0 transfers, "
        "1 were resolved so then",
    ]
    # A reserved transfer accepted, then cancelled by the operator: its
    # resolution stays ACCEPTED, and the cancel is a TRANSFER CANCELLED event.
    cancelled = life_with(R6, status=CANCELLED)
    assert audit.check_feed_transfers(cancelled) == [
        f"feed of {A}: {R6} CANCELLED told 0 times",
        f"feed of {B}: {R6} CANCELLED told 0 times",
    ]
    told_both = replace(
        cancelled,
        events=[
            *LIFE_EVENTS,
            StoredEvent(A, 25, at(90), int(TRANSFER), int(CANCELLED), R6, None, None, 1),
            StoredEvent(B, 23, at(90), int(TRANSFER), int(CANCELLED), R6, None, None, 1),
        ],
    )
    assert audit.check_feed_transfers(told_both) == []


def test_check_feed_recalls_reports_recalls_untold_twice_told_or_invented() -> None:
    assert audit.check_feed_recalls(CLEAN) == []
    assert audit.check_feed_recalls(life_events(A, 21, drop=True)) == [
        f"feed of {A}: the recall of {T3} REJECTED told 0 times, due once at {REJECT_RECALL_3}"
    ]
    assert audit.check_feed_recalls(life_events(B, 16, at=RETURN_8)) == [
        f"feed of {B}: the recall of {N7} ACCEPTED told 1 times at {RETURN_8}, "
        f"due once at {ANSWER_7}"
    ]
    extra = StoredEvent(A, 25, at(90), int(RECALL), int(REQ), T5, None, None, 1)
    assert audit.check_feed_recalls(replace(LIFE, events=[*LIFE_EVENTS, extra])) == [
        f"feed of {A}: the recall of {T5} REQUESTED told 2 times at {RECALL_5} at {at(90)}, "
        f"due once at {RECALL_5}"
    ]
    # A state the recall never reached, and a recall that does not exist.
    expired = StoredEvent(A, 25, at(90), int(RECALL), int(EXP), T5, None, None, 1)
    assert audit.check_feed_recalls(replace(LIFE, events=[*LIFE_EVENTS, expired])) == [
        f"feed of {A}: the recall of {T5} EXPIRED told 1 times at {at(90)}, due never"
    ]
    stray = StoredEvent(A, 25, at(90), int(RECALL), int(REQ), R1, None, None, 1)
    assert audit.check_feed_recalls(replace(LIFE, events=[*LIFE_EVENTS, stray])) == [
        f"feed of {A}: 1 RECALL REQUESTED events of {R1}, which has no such recall"
    ]
    unknown = StoredEvent(A, 25, at(90), int(RECALL), 9, T5, None, None, 1)
    assert audit.check_feed_recalls(replace(LIFE, events=[*LIFE_EVENTS, unknown])) == [
        f"feed of {A}: 1 RECALL 9 events of {T5}, which has no such recall"
    ]
