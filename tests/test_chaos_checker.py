"""The chaos checker's own logic: a checker that cannot fail proves nothing.
Each test feeds one of its functions a history or a database state (an
audit snapshot, as the checker reads it) that breaks an invariant and
asserts that it is reported."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from chaos import (
    EXPIRY_SLACK_S,
    LimitEvent,
    check_lifecycle,
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
from remitnet.services.domain.lifecycle import Recall, RecallState
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


# The lifecycle -----------------------------------------------------------------------------

RES, ACPT, REJ, EXP, CAN = (
    TransferStatus.RESERVED, TransferStatus.ACCEPTED, TransferStatus.REJECTED,
    TransferStatus.EXPIRED, TransferStatus.CANCELLED,
)  # fmt: skip


def test_statuses_move_forward_along_the_lifecycle_not_by_number() -> None:
    def seen(*statuses: int) -> tuple[int, int] | None:
        return moved_backwards([(2.0 * i, 2.0 * i + 1, s) for i, s in enumerate(statuses)])

    assert seen(RES, ACPT, 2, 3) is None  # reserved (5), then accepted (1), closed, settled
    assert seen(RES, REJ) is None and seen(RES, EXP) is None and seen(RES, CAN) is None
    assert seen(ACPT, CAN) is None
    assert seen(REJ, ACPT) == (REJ, ACPT)
    assert seen(ACPT, EXP) == (ACPT, EXP)  # accepted, then expired: never
    assert seen(ACPT, RES) == (ACPT, RES)
    assert seen(EXP, RES) == (EXP, RES)


def test_limit_events_replay_reservations_and_their_release() -> None:
    """A reserved transfer holds its amount from when it was taken to when
    it left RESERVED; accepted, its legs are taken then (the debtor's
    headroom does not change); a reserved conversion holds its provider's
    delivery in the target currency."""
    p_eur, b_usd = f"{P}/EUR/LIQUIDITY", f"{B}/USD/LIQUIDITY"
    accounts = [
        Account(aid, aid.split("/")[0], aid.split("/")[1], "LIQUIDITY", 0, 0, 0, 0, AT)
        for aid in (ACC, p_eur, b_usd)
    ]
    entries = [StoredEntry(ACC, 1, EntryKind.DEPOSIT, 100, 100, "dep", "dep", AT, "USD")]
    held = StoredTransfer(
        T1, A, B, "USD", 60, "", TransferStatus.REJECTED, "", at(10),
        deadline=at(13), resolved_at=at(12), reason="AC04",
    )  # fmt: skip
    accepted = StoredTransfer(
        T2, A, B, "USD", 30, "", TransferStatus.ACCEPTED, "USD-000001", at(20),
        deadline=at(25), resolved_at=at(21),
    )  # fmt: skip
    converting = StoredTransfer(
        T3, A, B, "USD", 10, "", TransferStatus.RESERVED, "", at(30), quote_id=T3,
        creditor_currency="EUR", creditor_amount=9, fx_provider=P, deadline=at(35),
    )  # fmt: skip
    events, caps = limit_events(
        AuditSnapshot(accounts=accounts, entries=entries, transfers=[held, accepted, converting])
    )
    assert sorted((e.at - AT.timestamp(), e.account, e.amount, e.what) for e in events) == [
        (0.0, ACC, 100, "dep"),
        (10.0, ACC, -60, f"reservation of {T1}"),
        (12.0, ACC, 60, f"release of {T1}"),
        (20.0, ACC, -30, f"reservation of {T2}"),
        (21.0, b_usd, 30, f"transfer {T2}"),
        (21.0, ACC, -30, f"transfer {T2}"),
        (21.0, ACC, 30, f"release of {T2}"),
        (30.0, p_eur, -9, f"reservation of {T3}"),
        (30.0, ACC, -10, f"reservation of {T3}"),
    ]
    # The provider held 9 EUR it did not have: beyond its liquidity plus cap.
    assert check_limit_history(events, caps) == [
        f"{p_eur} went 9 beyond its liquidity plus cap at {at(30).timestamp():.3f} "
        f"(reservation of {T3})"
    ]


def test_a_reservation_beyond_liquidity_plus_cap_is_caught() -> None:
    events = [
        LimitEvent(0.0, ACC, 100, "deposit"),
        LimitEvent(10.0, ACC, -80, "reservation of 1"),
        LimitEvent(20.0, ACC, -30, "transfer 2"),  # 10 beyond: 80 was held
        LimitEvent(30.0, ACC, 80, "release of 1"),
    ]
    [violation] = check_limit_history(events, {ACC: 0})
    assert violation.startswith(f"{ACC} went 10 beyond") and "transfer 2" in violation


R1, R2, RET = (f"00000000-0000-4000-a000-00000000000{i}" for i in (1, 2, 3))
RC = "00000000-0000-4000-b000-000000000001"
READ_AT = at(100)


def op(op: str, tid: str, by: str, result: str = "ok", **extra: Any) -> dict[str, Any]:
    return {"kind": "op", "op": op, "id": tid, "by": by, "result": result, **extra}


def refused(op_: str, tid: str, by: str, reason: str, **extra: Any) -> dict[str, Any]:
    return op(op_, tid, by, "rej", code="FAILED_PRECONDITION", reason=reason, **extra)


def reserved_t(tid: str, status: TransferStatus, **changes: Any) -> StoredTransfer:
    base = StoredTransfer(tid, A, B, "USD", 10, "", TransferStatus.RESERVED, "", at(10),
                          deadline=at(13))  # fmt: skip
    if status is TransferStatus.RESERVED:
        return base._replace(**changes)
    if status is TransferStatus.ACCEPTED:
        return base._replace(status=status, cycle_id="USD-000001", resolved_at=at(11), **changes)
    return base._replace(status=status, resolved_at=at(12), **changes)


def lifecycle(
    events: list[dict[str, Any]],
    transfers: list[StoredTransfer],
    recalls: list[Recall] | None = None,
) -> list[str]:
    snapshot = AuditSnapshot(transfers=transfers, recalls=recalls or [])
    violations, _figures = check_lifecycle(read_history(events), snapshot, READ_AT)
    return violations


def test_lifecycle_answers_that_match_the_stored_state_pass() -> None:
    rejected = reserved_t(R2, REJ, reason="AC04")
    events = [
        op("accept", R1, B, status=1),
        op("reject", R2, B, sent="AC06", answered="AC04"),  # a second rejection: the first's
        refused("accept", R2, B, "TRANSFER_REJECTED"),
        op("accept", R1, B, "ambiguous", code="UNAVAILABLE"),
        op("cancel", R1, A, "rej", code="FAILED_PRECONDITION", reason="TRANSFER_NOT_CANCELLABLE"),
    ]
    assert lifecycle(events, [reserved_t(R1, ACPT), rejected]) == []
    _violations, figures = check_lifecycle(
        read_history(events), AuditSnapshot(transfers=[reserved_t(R1, ACPT), rejected]), READ_AT
    )
    assert figures["reserved_resolved_as"] == {"ACCEPTED": 1, "REJECTED": 1}
    assert figures["lifecycle_calls"]["accept:ok"] == 1


def test_an_acknowledged_acceptance_of_an_expired_transfer_is_caught() -> None:
    expired = reserved_t(R1, EXP, reason="AB05")
    assert lifecycle([op("accept", R1, B, status=1)], [expired]) == [
        f"accept of {R1} by {B} was acknowledged, but it is EXPIRED (resolved EXPIRED)"
    ]
    # ... and an expiry refusal of one that was accepted.
    assert lifecycle([refused("accept", R1, B, "TRANSFER_EXPIRED")], [reserved_t(R1, ACPT)]) == [
        f"accept of {R1} by {B} was refused TRANSFER_EXPIRED, but it is ACCEPTED "
        "(resolved ACCEPTED)"
    ]


def test_a_rejection_stored_otherwise_is_caught() -> None:
    events = [op("reject", R1, B, sent="AC04", answered="AC04")]
    assert lifecycle(events, [reserved_t(R1, REJ, reason="AC06")]) == [
        f"reject of {R1} by {B} was answered rejected for AC04, stored for AC06"
    ]
    assert lifecycle(events, [reserved_t(R1, RES, deadline=at(99))]) == [
        f"reject of {R1} by {B} was acknowledged, but it is RESERVED"
    ]


def test_cancels_answered_against_the_stored_state() -> None:
    assert lifecycle([op("cancel", R1, A, status=4)], [reserved_t(R1, ACPT)]) == [
        f"cancel of {R1} by {A} was acknowledged, but it is ACCEPTED (resolved ACCEPTED)"
    ]
    cancelled = reserved_t(R1, CAN)
    refusal = refused("cancel", R1, A, "TRANSFER_NOT_CANCELLABLE")
    assert lifecycle([refusal], [cancelled]) == [
        f"cancel of {R1} by {A} was refused TRANSFER_NOT_CANCELLABLE, but it is CANCELLED "
        "(resolved CANCELLED)"
    ]
    assert lifecycle([op("operator_cancel", R1, "operator", status=4)], [cancelled]) == []


def test_a_cancel_answered_expired_must_have_left_it_expired() -> None:
    # The CI failure of 5ccd662: past its deadline a reservation expires
    # instead of being cancelled, and the cancel is answered EXPIRED (7).
    expired = reserved_t(R1, EXP, reason="AB05")
    assert lifecycle([op("cancel", R1, A, status=7)], [expired]) == []
    assert lifecycle([op("cancel", R1, A, status=4)], [expired]) == [
        f"cancel of {R1} by {A} was acknowledged, but it is EXPIRED (resolved EXPIRED)"
    ]
    assert lifecycle([op("cancel", R1, A, status=7)], [reserved_t(R1, CAN)]) == [
        f"cancel of {R1} by {A} was acknowledged, but it is CANCELLED (resolved CANCELLED)"
    ]


def test_an_operator_cancel_refused_for_a_return_is_right_only_once_returned() -> None:
    # The CI failure of f6cfbcd: the operator's cancel of a return (or of a
    # returned transfer) is refused TRANSFER_NOT_CANCELLABLE, rightly.
    original = StoredTransfer(R1, A, B, "USD", 10, "", ACPT, "USD-000001", at(10),
                              returned_by=RET)  # fmt: skip
    back = StoredTransfer(RET, B, A, "USD", 10, "", ACPT, "USD-000001", at(30),
                          reason="AC04", return_of=R1)  # fmt: skip
    after = at(31).isoformat()
    of_return = refused("operator_cancel", RET, "operator", "TRANSFER_NOT_CANCELLABLE",
                        answered_at=after)  # fmt: skip
    of_returned = refused("operator_cancel", R1, "operator", "TRANSFER_NOT_CANCELLABLE",
                          answered_at=after)  # fmt: skip
    assert lifecycle([of_return, of_returned], [original, back]) == []
    # Refused before the return was taken: it was cancellable then.
    early = refused("operator_cancel", R1, "operator", "TRANSFER_NOT_CANCELLABLE",
                    answered_at=at(20).isoformat())  # fmt: skip
    assert lifecycle([early], [original, back]) == [
        f"operator_cancel of {R1} by operator was refused TRANSFER_NOT_CANCELLABLE, "
        "but it is ACCEPTED"
    ]


def test_recall_answers_against_the_stored_recalls() -> None:
    netted = StoredTransfer(R1, A, B, "USD", 10, "", ACPT, "USD-000001", at(10))
    recall = Recall(RC, R1, A, B, "DUPL", "", RecallState.REQUESTED, at(20), at(120))
    asked = op("recall", R1, A, recall_id=RC, sent="DUPL", status=1)
    assert lifecycle([asked], [netted], [recall]) == []
    assert lifecycle([asked], [netted]) == [
        f"recall of {R1} by {A} ({RC}) was acknowledged, but is not stored"
    ]
    rejected = op("recall_reject", R1, B, sent="NOAS", answer_reason="NOAS", status=3)
    assert lifecycle([rejected], [netted], [recall]) == [
        f"recall_reject of {R1} by {B} was acknowledged, but the recall is REQUESTED None"
    ]
    closed = refused("recall_reject", R1, B, "RECALL_NOT_OPEN")
    assert lifecycle([closed], [netted], [recall]) == [
        f"recall_reject of {R1} by {B} was refused RECALL_NOT_OPEN, but the recall is REQUESTED"
    ]


def test_a_return_acknowledged_must_be_the_originals_and_answer_its_recall() -> None:
    original = StoredTransfer(R1, A, B, "USD", 10, "", ACPT, "USD-000001", at(10))
    back = StoredTransfer(RET, B, A, "USD", 10, "", ACPT, "USD-000001", at(30),
                          reason="FOCR", return_of=R1)  # fmt: skip
    answered = {
        "kind": "ack", "id": RET, "content": [B, A, 10], "op": "recall_accept", "of": R1,
        "recall_state": 2,
    }  # fmt: skip
    recall = Recall(RC, R1, A, B, "DUPL", "", RecallState.ACCEPTED, at(20), at(120), at(30),
                    return_id=RET)  # fmt: skip
    linked = original._replace(returned_by=RET)
    assert lifecycle([answered], [linked, back], [recall]) == []
    assert lifecycle([answered], [original, back], [recall]) == [
        f"return {RET} of {R1} was acknowledged, the original's return is None"
    ]
    expired = Recall(RC, R1, A, B, "DUPL", "", RecallState.EXPIRED, at(20), at(25), at(30))
    assert lifecycle([answered], [linked, back], [expired]) == [
        f"the recall of {R1} was answered by return {RET} as ACCEPTED, it is stored EXPIRED (None)"
    ]


def test_bad_requests_must_be_refused_with_their_reason() -> None:
    case = {"case": "accept_by_debtor", "expect": "NOT_TRANSFER_CREDITOR"}
    assert lifecycle([refused("bad", R1, A, "NOT_TRANSFER_CREDITOR", **case)], []) == []
    assert lifecycle([op("bad", R1, A, **case)], []) == [
        f"accept_by_debtor on {R1} by {A} was allowed (NOT_TRANSFER_CREDITOR)"
    ]
    assert lifecycle([refused("bad", R1, A, "TRANSFER_NOT_FOUND", **case)], []) == [
        f"accept_by_debtor on {R1} by {A} was refused with TRANSFER_NOT_FOUND, "
        "not NOT_TRANSFER_CREDITOR"
    ]


def test_reservations_and_recalls_left_past_their_deadline_are_caught() -> None:
    late = at(100 - EXPIRY_SLACK_S - 1)
    stuck = reserved_t(R1, RES, deadline=late)
    fresh = reserved_t(R2, RES, deadline=at(99))
    netted = StoredTransfer(RET, A, B, "USD", 10, "", ACPT, "USD-000001", at(10))
    recall = Recall(RC, RET, A, B, "DUPL", "", RecallState.REQUESTED, at(20), late)
    assert lifecycle([], [stuck, fresh, netted], [recall]) == [
        f"transfer {R1} is still RESERVED {EXPIRY_SLACK_S + 1:.1f} s past its deadline",
        f"the recall of {RET} is still REQUESTED {EXPIRY_SLACK_S + 1:.1f} s past its deadline",
    ]


def test_read_history_keeps_lifecycle_calls_and_returns_apart() -> None:
    h = read_history(
        [
            op("accept", R1, B, status=1),
            {"kind": "ack", "id": RET, "content": [B, A, 10], "op": "return", "of": R1},
            {"kind": "ambiguous", "id": R2, "content": [B, A, 5], "op": "return", "of": R1,
             "code": "", "reason": "TimeoutError"},
        ]
    )  # fmt: skip
    assert [(o.op, o.id, o.result, o.extra) for o in h.ops] == [("accept", R1, "ok", {"status": 1})]
    assert h.returns == {RET: (R1, "return", None), R2: (R1, "return", None)}
    assert list(h.acked) == [RET] and list(h.ambiguous) == [R2] and h.operations == 3


def test_streams_count_reserved_transfers_and_carry_recalls() -> None:
    feed = [("transfer", T1, int(RES)), ("recall", T2, 1), ("transfer", T1, int(REJ))]
    assert check_streams({A: feed}, {A: feed}, {T1: [A, B, 100]}, {A: 0}) == []
    assert check_streams({A: feed[1:]}, {A: feed[1:]}, {T1: [A, B, 100]}, {A: 0}) == [
        f"stream of {A}: 1 acknowledged transfers never arrived"
    ]
