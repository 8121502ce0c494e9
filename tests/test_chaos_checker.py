"""The chaos checker's own logic: a checker that cannot fail proves nothing.
Each test feeds one of its functions a history or a database state (an
audit snapshot, as the checker reads it) that breaks an invariant and
asserts that it is reported."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from chaos import (
    LimitEvent,
    check_limit_history,
    check_outcomes,
    check_settlements,
    check_streams,
    limit_events,
    moved_backwards,
    read_history,
)

from remitnet.services.domain.account import Account
from remitnet.services.domain.audit import (  # the checker's ledger check is the audit's
    AuditSnapshot,
    StoredEntry,
    check_ledger,
)
from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.ledger import EntryKind
from remitnet.services.domain.model import CycleState, StoredTransfer, TransferStatus

A, B = "CHUS00", "CHEU00"
T1, T2, T3 = (f"00000000-0000-4000-8000-00000000000{i}" for i in (1, 2, 3))


def ack(tid: str, amount: int = 100) -> dict[str, Any]:
    return {"kind": "ack", "id": tid, "content": [A, B, amount]}


def rej(tid: str, code: str, reason: str, amount: int = 100) -> dict[str, Any]:
    return {"kind": "rej", "id": tid, "content": [A, B, amount], "code": code, "reason": reason}


def ambiguous(tid: str, amount: int = 100) -> dict[str, Any]:
    return {
        "kind": "ambiguous",
        "id": tid,
        "content": [A, B, amount],
        "code": "DEADLINE_EXCEEDED",
        "reason": "",
    }


def outcomes(
    events: list[dict[str, Any]],
    stored: list[tuple[str, list[Any]]],
    probes: dict[str, list[list[Any] | None]] | None = None,
) -> list[str]:
    violations, _figures = check_outcomes(read_history(events), stored, probes or {})
    return violations


# Statuses only move forward ---------------------------------------------------------


def test_forward_reads_pass() -> None:
    assert moved_backwards([(0.0, 1.0, 1), (2.0, 3.0, 2), (4.0, 5.0, 2), (6.0, 7.0, 3)]) is None


def test_a_later_read_that_sees_an_older_status_is_caught() -> None:
    assert moved_backwards([(0.0, 1.0, 3), (2.0, 3.0, 1)]) == (3, 1)
    assert moved_backwards([(0.0, 1.0, 1), (1.5, 2.0, 3), (2.5, 3.0, 2)]) == (3, 2)


def test_overlapping_reads_may_see_either_order() -> None:
    # The second read began before the first ended: its snapshot may be older.
    assert moved_backwards([(0.0, 2.0, 3), (1.0, 3.0, 1)]) is None


# Client outcomes against the database -----------------------------------------------


def test_a_consistent_history_passes() -> None:
    events = [
        ack(T1),
        rej(T2, "FAILED_PRECONDITION", "INSUFFICIENT_LIQUIDITY"),
        ambiguous(T3, 7),
    ]
    stored = [(T1, [A, B, 100]), (T3, [A, B, 7])]
    violations, figures = check_outcomes(read_history(events), stored, {T3: [[A, B, 7], [A, B, 7]]})
    assert violations == []
    assert figures["ambiguous_exists"] == 1


def test_acknowledged_but_missing() -> None:
    assert outcomes([ack(T1)], []) == [f"acknowledged {T1} is missing"]


def test_acknowledged_with_different_content() -> None:
    [violation] = outcomes([ack(T1, 100)], [(T1, [A, B, 999])])
    assert "acknowledged as" in violation and T1 in violation


def test_acknowledged_twice_with_different_content() -> None:
    violations = outcomes([ack(T1, 100), ack(T1, 200)], [(T1, [A, B, 100])])
    assert any("two contents" in v for v in violations)


def test_acknowledged_but_stored_twice() -> None:
    violations = outcomes([ack(T1)], [(T1, [A, B, 100]), (T1, [A, B, 100])])
    assert violations == [f"transfer {T1} is stored 2 times"]


def test_rejected_but_stored() -> None:
    violations = outcomes(
        [rej(T1, "FAILED_PRECONDITION", "INSUFFICIENT_LIQUIDITY")], [(T1, [A, B, 100])]
    )
    assert violations == [f"rejected {T1} (FAILED_PRECONDITION INSUFFICIENT_LIQUIDITY) exists"]


def test_a_duplicate_rejection_only_forbids_its_own_content() -> None:
    # ALREADY_EXISTS for other content: the id is stored, with the first content.
    events = [ack(T1, 100), rej(T2, "ALREADY_EXISTS", "DUPLICATE_WITH_DIFFERENT_CONTENT", 5)]
    stored = [(T1, [A, B, 100]), (T2, [A, B, 6])]
    assert outcomes(events[1:], stored[1:]) == [
        f"transfer {T2} exists but no client submission explains it"
    ]
    # ... but the rejected content itself must not be what is stored.
    violations = outcomes([events[1]], [(T2, [A, B, 5])])
    assert any(v.startswith(f"rejected {T2}") for v in violations)


def test_definite_rejection_then_acceptance_is_a_violation() -> None:
    events = [rej(T1, "FAILED_PRECONDITION", "INSUFFICIENT_LIQUIDITY"), ack(T1)]
    violations = outcomes(events, [(T1, [A, B, 100])])
    assert violations == [
        f"{T1} was acknowledged and also definitely rejected "
        "(FAILED_PRECONDITION INSUFFICIENT_LIQUIDITY)"
    ]


def test_transient_rejection_then_acceptance_is_a_retry() -> None:
    for code in ("UNAVAILABLE", "ABORTED", "DEADLINE_EXCEEDED"):
        events = [rej(T1, code, "BATCH_FAILED"), ack(T1)]
        violations, figures = check_outcomes(read_history(events), [(T1, [A, B, 100])], {})
        assert violations == [], code
        assert figures["ambiguous_acknowledged_later"] == 1


def test_ambiguous_must_be_resolved() -> None:
    assert outcomes([ambiguous(T1)], []) == [f"ambiguous {T1} was not resolved"]


def test_ambiguous_resolved_absent_but_stored() -> None:
    violations = outcomes([ambiguous(T1)], [(T1, [A, B, 100])], {T1: [None]})
    assert f"ambiguous {T1} reported absent but exists" in violations


def test_ambiguous_resolved_to_exist_but_not_stored() -> None:
    violations = outcomes([ambiguous(T1)], [], {T1: [[A, B, 100]]})
    assert violations == [f"ambiguous {T1} reported to exist but is not stored"]


def test_ambiguous_resolved_twice_with_different_answers() -> None:
    violations = outcomes([ambiguous(T1)], [(T1, [A, B, 100])], {T1: [[A, B, 100], None]})
    assert any("resolved differently" in v for v in violations)


def test_ambiguous_that_took_effect_twice() -> None:
    stored = [(T1, [A, B, 100]), (T1, [A, B, 100])]
    violations = outcomes([ambiguous(T1)], stored, {T1: [[A, B, 100], [A, B, 100]]})
    assert violations == [f"transfer {T1} is stored 2 times"]


def test_ambiguous_resolved_with_other_content() -> None:
    violations = outcomes([ambiguous(T1, 100)], [(T1, [A, B, 5])], {T1: [[A, B, 5]]})
    assert any("resolved as" in v for v in violations)


def test_a_stored_transfer_nobody_asked_for() -> None:
    assert outcomes([], [(T1, [A, B, 100])]) == [
        f"transfer {T1} exists but no client submission explains it"
    ]


# Cycles and ledger ---------------------------------------------------------------------

AT = datetime(2025, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return AT + timedelta(seconds=seconds)


def settled(states: Mapping[str, int], entries: list[tuple[str, str, str, int]]) -> AuditSnapshot:
    """Cycles in `states` and settlement entries (posting id, cycle id,
    account id, amount)."""
    return AuditSnapshot(
        cycles=[
            Cycle(cid, "USD", int(cid[-6:]), CycleState(state), AT, None, None, 0, 0, 0)
            for cid, state in states.items()
        ],
        entries=[
            StoredEntry(aid, 1, EntryKind.SETTLEMENT, amount, amount, pid, cid, AT, "USD")
            for pid, cid, aid, amount in entries
        ],
    )


def ledger(entries: list[tuple[str, int]]) -> AuditSnapshot:
    """Ledger entries (currency, amount)."""
    return AuditSnapshot(
        entries=[
            StoredEntry(f"{A}/{c}/LIQUIDITY", i, EntryKind.DEPOSIT, n, n, f"p{i}", "", AT, c)
            for i, (c, n) in enumerate(entries, 1)
        ]
    )


def test_single_settlement_passes() -> None:
    entries = [
        ("settle:USD-000001", "USD-000001", f"{A}/USD/LIQUIDITY", -5),
        ("settle:USD-000001", "USD-000001", "HUB/USD/SETTLEMENT", 5),
        ("settle:USD-000001", "USD-000001", f"{B}/USD/LIQUIDITY", 5),
        ("settle:USD-000001", "USD-000001", "HUB/USD/SETTLEMENT", -5),
    ]
    assert check_settlements(settled({"USD-000001": 3, "USD-000002": 1}, entries)) == []


def test_double_settlement() -> None:
    entries = [
        ("settle:USD-000001", "USD-000001", f"{A}/USD/LIQUIDITY", -5),
        ("settle:USD-000001", "USD-000001", f"{A}/USD/LIQUIDITY", -5),
    ]
    violations = check_settlements(settled({"USD-000001": 3}, entries))
    assert violations == [f"cycle USD-000001 settled 2 times on {A}/USD/LIQUIDITY"]
    other_posting = [
        ("settle:USD-000001", "USD-000001", f"{A}/USD/LIQUIDITY", -5),
        ("resettle:USD-000001", "USD-000001", f"{B}/USD/LIQUIDITY", 5),
    ]
    violations = check_settlements(settled({"USD-000001": 3}, other_posting))
    assert any("2 settlement postings" in v for v in violations)


def test_settlement_postings_of_a_cycle_not_settled() -> None:
    entries = [("settle:USD-000001", "USD-000001", f"{A}/USD/LIQUIDITY", -5)]
    violations = check_settlements(settled({"USD-000001": 2}, entries))
    assert "cycle USD-000001 has settlement postings but is CLOSED" in violations


def test_a_closed_cycle_left_unsettled() -> None:
    violations = check_settlements(settled({"USD-000001": 2, "USD-000002": 1}, []))
    assert violations == ["cycle USD-000001 is closed but was not settled after recovery"]


def test_ledger_not_zero_sum() -> None:
    assert check_ledger(ledger([("USD", 5), ("USD", -5), ("EUR", 3)])) == [
        "EUR ledger entries sum to 3, not zero"
    ]
    assert check_ledger(ledger([("USD", 5), ("USD", -5)])) == []


# Liquidity plus cap over the whole history ----------------------------------------------


ACC = f"{A}/USD/LIQUIDITY"


def test_history_within_liquidity_plus_cap_passes() -> None:
    events = [
        LimitEvent(0.0, ACC, 100, "deposit"),
        LimitEvent(10.0, ACC, -150, "transfer 1"),  # uses 50 of the cap of 50
        LimitEvent(20.0, ACC, 50, "transfer 2 (credit)"),
        LimitEvent(30.0, ACC, -50, "transfer 3"),
    ]
    assert check_limit_history(events, {ACC: 50}) == []


def test_history_beyond_liquidity_plus_cap_is_caught() -> None:
    events = [
        LimitEvent(0.0, ACC, 100, "deposit"),
        LimitEvent(10.0, ACC, -120, "transfer 1"),
        LimitEvent(20.0, ACC, -40, "transfer 2"),  # 60 short with a cap of 50: 10 beyond
        LimitEvent(30.0, ACC, 1_000, "top-up"),  # the end state looks fine
    ]
    [violation] = check_limit_history(events, {ACC: 50})
    assert violation.startswith(f"{ACC} went 10 beyond") and "transfer 2" in violation


def test_a_credit_far_later_does_not_excuse_a_debit() -> None:
    events = [LimitEvent(0.0, ACC, -100, "transfer 1"), LimitEvent(60.0, ACC, 100, "deposit")]
    assert len(check_limit_history(events, {ACC: 0}, slack_s=2.0)) == 1
    # ... while one stamped within the slack may have committed first.
    events = [LimitEvent(0.0, ACC, -100, "transfer 1"), LimitEvent(1.0, ACC, 100, "deposit")]
    assert check_limit_history(events, {ACC: 0}, slack_s=2.0) == []


def test_limit_events_replay_entries_and_the_transfers_legs() -> None:
    """The replay's input, from the snapshot: non-settlement entries of
    liquidity accounts, each transfer's legs (`StoredTransfer.legs`: a
    cross-currency transfer's debtor pays in its currency, its creditor is
    paid in its own, the hub's FX account is no bank) and their
    cancellations; gross transfers only through their entries."""
    eur = f"{B}/EUR/LIQUIDITY"
    accounts = [
        Account(aid, aid[:6], aid[7:10], "LIQUIDITY", 0, cap, 0, 0, AT)
        for aid, cap in ((ACC, 50), (eur, 0))
    ] + [Account("HUB/USD/FX", "HUB", "USD", "FX", 0, 0, 0, 0, AT)]
    entries = [
        StoredEntry(ACC, 1, EntryKind.DEPOSIT, 100, 100, "dep", "dep", AT, "USD"),
        StoredEntry(ACC, 2, EntryKind.SETTLEMENT, 0, 100, "settle:USD-000001", "", AT, "USD"),
        StoredEntry(ACC, 3, EntryKind.GROSS, -7, 93, f"gross:{T3}", T3, AT, "USD"),
    ]
    fx = StoredTransfer(
        T1, A, B, "USD", 140, "", TransferStatus.ACCEPTED, "USD-000001", at(10),
        quote_id=T3, creditor_currency="EUR", creditor_amount=130,
        creditor_cycle_id="EUR-000001", fee=2,
    )  # fmt: skip
    cancelled = StoredTransfer(
        T2, A, B, "USD", 40, "", TransferStatus.CANCELLED, "USD-000001", at(20)
    )
    gross = StoredTransfer(T3, A, B, "USD", 7, "", TransferStatus.SETTLED, "", AT)
    snapshot = AuditSnapshot(
        accounts=accounts,
        entries=entries,
        transfers=[fx, cancelled, gross],
        cancelled_at={T2: at(60)},
    )
    events, caps = limit_events(snapshot)
    assert caps == {ACC: 50, eur: 0}
    assert sorted((e.at - AT.timestamp(), e.account, e.amount, e.what) for e in events) == [
        (0.0, ACC, -7, f"gross:{T3}"),
        (0.0, ACC, 100, "dep"),
        (10.0, eur, 130, f"transfer {T1}"),
        (10.0, ACC, -140, f"transfer {T1}"),
        (20.0, ACC, -40, f"transfer {T2}"),
        (60.0, ACC, 40, f"cancel of {T2}"),
    ]
    # 93 - 140 is within the cap of 50; - 40 more is 37 beyond it, until the cancellation.
    [violation] = check_limit_history(events, caps)
    assert violation.startswith(f"{ACC} went 37 beyond") and f"transfer {T2}" in violation


P = "CHFXA"  # an FX provider


def test_a_providers_legs_are_replayed_like_a_banks() -> None:
    """A conversion through an FX provider: the debtor pays the provider in
    the source currency, the provider pays the creditor in the target
    currency (`StoredTransfer.legs` with `fx_provider`). The provider's
    liquidity accounts are replayed like a bank's, so a provider that
    delivered beyond its liquidity plus cap is caught."""
    usd_p, eur_p, eur_b = (f"{c}/LIQUIDITY" for c in (f"{P}/USD", f"{P}/EUR", f"{B}/EUR"))
    accounts = [
        Account(aid, aid.split("/")[0], aid.split("/")[1], "LIQUIDITY", 0, 0, 0, 0, AT)
        for aid in (ACC, usd_p, eur_p, eur_b)
    ]
    entries = [
        StoredEntry(ACC, 1, EntryKind.DEPOSIT, 500, 500, "dep-a", "dep-a", AT, "USD"),
        StoredEntry(eur_p, 1, EntryKind.DEPOSIT, 200, 200, "dep-p", "dep-p", AT, "EUR"),
    ]

    def conversion(tid: str, amount: int, delivered: int, seconds: float) -> StoredTransfer:
        return StoredTransfer(
            tid, A, B, "USD", amount, "", TransferStatus.ACCEPTED, "USD-000001", at(seconds),
            quote_id=tid, creditor_currency="EUR", creditor_amount=delivered,
            creditor_cycle_id="EUR-000001", fx_provider=P,
        )  # fmt: skip

    transfers = [conversion(T1, 140, 130, 10), conversion(T2, 100, 92, 20)]
    events, caps = limit_events(
        AuditSnapshot(accounts=accounts, entries=entries, transfers=transfers)
    )
    assert caps == {ACC: 0, usd_p: 0, eur_p: 0, eur_b: 0}
    legs = sorted((e.at - AT.timestamp(), e.account, e.amount) for e in events if e.what != "dep-a")
    assert legs == sorted(
        [
            (0.0, eur_p, 200),
            (10.0, ACC, -140),
            (10.0, eur_b, 130),
            (10.0, eur_p, -130),
            (10.0, usd_p, 140),
            (20.0, ACC, -100),
            (20.0, eur_b, 92),
            (20.0, eur_p, -92),
            (20.0, usd_p, 100),
        ]
    )
    # 200 EUR funded, 130 + 92 delivered: 22 beyond, whatever it was paid in USD.
    [violation] = check_limit_history(events, caps)
    assert violation.startswith(f"{eur_p} went 22 beyond") and f"transfer {T2}" in violation


def test_quotes_are_counted_apart_from_transfers() -> None:
    h = read_history(
        [
            {"kind": "quote", "id": "", "provider": P},
            {"kind": "quote", "id": "", "provider": P},
            {"kind": "quote", "id": "", "refused": "FX_PROVIDER_INSUFFICIENT_LIQUIDITY"},
            {"kind": "quote", "id": "", "failed": "UNAVAILABLE"},
            ack(T1),
        ]
    )
    assert h.operations == 1 and list(h.acked) == [T1] and not h.ambiguous
    assert h.quotes == {
        P: 2,
        "refused:FX_PROVIDER_INSUFFICIENT_LIQUIDITY": 1,
        "failed:UNAVAILABLE": 1,
    }


FEED = [
    ("transfer", T1, 1),
    ("transfer", T2, 1),
    ("cycle", "USD-000001", 2),
    ("cycle", "USD-000001", 3),
]
ACKED = {T1: [A, B, 100], T2: [B, A, 100]}


def test_a_complete_stream_passes_and_one_repeat_per_reconnect_is_allowed() -> None:
    assert check_streams({A: FEED}, {A: FEED}, ACKED, {A: 0}) == []
    repeated = [FEED[0], FEED[1], FEED[1], *FEED[2:]]
    assert check_streams({A: repeated}, {A: FEED}, ACKED, {A: 1}) == []
    assert check_streams({A: repeated}, {A: FEED}, ACKED, {A: 0})  # a repeat with no reconnect


def test_a_stream_missing_reordering_or_inventing_events_is_reported() -> None:
    missing = [FEED[0], *FEED[2:]]
    reordered = [FEED[1], FEED[0], *FEED[2:]]
    invented = [*FEED, ("transfer", T3, 1)]
    for got in (missing, reordered, invented):
        assert check_streams({A: got}, {A: FEED}, ACKED, {A: 5}), got


def test_an_acknowledged_transfer_the_feed_lacks_is_reported() -> None:
    short = [FEED[1], *FEED[2:]]  # the feed itself lost T1: stream and feed agree
    bad = check_streams({A: short}, {A: short}, ACKED, {A: 0})
    assert bad and "acknowledged" in bad[0]
