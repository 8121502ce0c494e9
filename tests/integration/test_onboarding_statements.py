"""Onboarding many banks at once (issue 17, "As the network grows"): a
group of operator actions reads the audit trail's head and checks a
currency's hub accounts and open cycle once per transaction, not per
action, and the hash chain it appends is the one appending them one by one
would have made: no gap, no fork."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import event

from remitnet.services.adapters.db.database import Database
from remitnet.services.domain import audit_trail as trail
from remitnet.services.domain.account import Account
from remitnet.services.domain.errors import FailedPrecondition, NotFound, Reason
from remitnet.services.service_layer import participants, settlement


def _statements(db: Database, run: Callable[[], object]) -> list[str]:
    seen: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    return seen


def _onboarding(codes: list[str]) -> list[tuple[str, participants.OperatorUnit[Any]]]:
    units: list[tuple[str, participants.OperatorUnit[Any]]] = []
    for code in codes:
        deposit_id = str(uuid.uuid5(uuid.NAMESPACE_OID, code))
        units.append(
            ("create_bank", participants.create_bank_unit(code, code, "us-east1", ["USD"]))
        )
        units.append(("deposit", participants.deposit_unit(code, "USD", 1_000, deposit_id)))
    return units


def _records(db: Database) -> list[trail.AuditRecord]:
    return db.read(lambda uow: list(uow.trail.records()))


def test_a_group_reads_the_trail_head_and_the_currency_once(db: Database) -> None:
    participants.create_bank(db, "FIRST01", "First", "us-east1", ["USD"])

    def group_of(n: int) -> list[str]:
        codes = [f"G{n:02d}{i:03d}" for i in range(n)]
        return _statements(db, lambda: participants.run_together(db, _onboarding(codes)))

    small, large = group_of(4), group_of(16)
    for seen in (small, large):
        heads = [s for s in seen if s.startswith("SELECT") and "operator_audit_log" in s]
        assert len(heads) == 1, heads
        cycles = [s for s in seen if s.startswith("SELECT") and "FROM cycles" in s]
        assert len(cycles) == 1, cycles
    # Per bank: a constant number of statements, the same in both groups.
    assert (len(large) - len(small)) % 12 == 0
    per_bank = (len(large) - len(small)) // 12
    assert per_bank <= 12, per_bank

    found = _records(db)
    result = trail.verify(found)
    assert result.ok, result
    assert [r.seq for r in found] == list(range(1, len(found) + 1))
    assert len(found) == 1 + 2 * (4 + 16)
    assert all(bal == 0 and ent == 0 for bal, ent, _ in settlement.ledger_totals(db).values())


def test_a_group_again_is_a_replay_and_refusals_stay_exact(db: Database) -> None:
    codes = ["REPA001", "REPB001"]
    first = participants.run_together(db, _onboarding(codes))
    assert not any(isinstance(a, Exception) for a in first)
    before = _records(db)
    again = participants.run_together(db, _onboarding(codes))
    assert not any(isinstance(a, Exception) for a in again)
    assert _records(db) == before  # nothing appended
    for code in codes:
        view = participants.get_bank(db, code)
        assert [(a.currency, a.balance) for a in view.accounts] == [("USD", 1_000)]
    # What CreateBank answered (before its deposit) is what a read answered.
    created, read = first[0], participants.get_bank(db, "REPA001")
    assert isinstance(created, participants.BankView)
    assert created.bank == read.bank
    assert [(a.id, a.owner, a.kind, a.opened_at) for a in created.accounts] == [
        (a.id, a.owner, a.kind, a.opened_at) for a in read.accounts
    ]
    assert [(a.balance, a.entry_count) for a in created.accounts] == [(0, 0)]

    refused = participants.run_together(
        db,
        [
            ("deposit", participants.deposit_unit("NOSUCH1", "USD", 1, "")),
            ("deposit", participants.deposit_unit("REPA001", "EUR", 1, "")),
            ("deposit", participants.deposit_unit("REPB001", "USD", 5, str(uuid.uuid4()))),
        ],
    )
    assert isinstance(refused[0], NotFound)
    assert refused[0].reason is Reason.UNKNOWN_PARTICIPANT
    assert isinstance(refused[1], FailedPrecondition)
    assert refused[1].reason is Reason.CURRENCY_NOT_SUPPORTED
    assert not isinstance(refused[2], Exception)
    result = trail.verify(_records(db))
    assert result.ok and result.rows == len(before) + 1, result


def test_a_group_asks_once_which_banks_exist_and_funds_new_ones_without_reading_back(
    db: Database,
) -> None:
    participants.create_bank(db, "OLD0001", "Old", "us-east1", ["USD"])
    codes = [f"N{i:06d}" for i in range(16)]
    seen = _statements(db, lambda: participants.run_together(db, _onboarding(codes)))
    selects = [s for s in seen if s.startswith("SELECT")]
    # The banks being created: one query for the group; whole accounts: only
    # ensure_currency's one (the hub's), none per deposit (without arrays a
    # posting still reads the balances it moves).
    assert len([s for s in selects if "FROM banks" in s]) == 1, selects
    assert len([s for s in selects if "accounts.net_debit_cap" in s]) == 1, selects

    # What the group knows is what reading would have answered: a bank there
    # before, one created twice (the second a no-op), two deposits into a
    # bank created by the same group, a withdrawal after them.
    later = str(uuid.uuid4())
    answers = participants.run_together(
        db,
        [
            ("create_bank", participants.create_bank_unit("OLD0001", "Old", "us-east1", ["USD"])),
            ("create_bank", participants.create_bank_unit("TWICE01", "T", "us-east1", ["USD"])),
            ("create_bank", participants.create_bank_unit("TWICE01", "T", "us-east1", ["USD"])),
            ("deposit", participants.deposit_unit("TWICE01", "USD", 700, str(uuid.uuid4()))),
            ("deposit", participants.deposit_unit("TWICE01", "USD", 300, later)),
            ("deposit", participants.deposit_unit("TWICE01", "USD", 300, later)),  # a replay
            ("withdraw", participants.withdraw_unit("TWICE01", "USD", 100, str(uuid.uuid4()))),
        ],
    )
    assert not any(isinstance(a, Exception) for a in answers), answers
    moved = [a for a in answers[3:] if isinstance(a, Account)]
    assert [(a.balance, a.entry_count) for a in moved] == [(700, 1), (1_000, 2), (1_000, 2),
                                                           (900, 3)]  # fmt: skip
    (stored,) = participants.get_bank(db, "TWICE01").accounts
    assert (stored.balance, stored.entry_count) == (900, 3)
    result = trail.verify(_records(db))
    assert result.ok, result
