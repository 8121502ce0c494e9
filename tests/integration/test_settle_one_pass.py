"""A settlement moves each account's balance and unsettled net in one pass
(one UPDATE of the accounts with array parameters), and leaves every
headroom as it was."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from remitnet.services.adapters.db.database import Database
from remitnet.services.domain.model import account_id, make_instruction
from remitnet.services.service_layer import cycles, participants, settlement
from remitnet.services.service_layer.clearing import commit_batch


def test_settlement_moves_balances_and_unsettled_nets_together(db: Database) -> None:
    codes = [f"ONEP{i:02d}" for i in range(5)]
    for code in codes:
        participants.create_bank(db, code, code, "us-east1", ["USD"])
        participants.deposit(db, code, "USD", 10_000, "")
    commit_batch(
        db,
        [
            make_instruction(
                transfer_id=f"00000000-0000-4000-8000-{i:012d}",
                debtor=codes[i],
                creditor=codes[(i + 1) % len(codes)],
                currency="USD",
                amount=100 * (i + 1),
            )
            for i in range(len(codes) - 1)
        ],
    )
    before = {c: participants.get_bank(db, c).accounts[0] for c in codes}
    assert any(a.unsettled_net for a in before.values())
    closed, _ = cycles.close_cycle(db, "USD")
    seen: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        done = settlement.settle_cycle(db, closed.cycle.id)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    if db.features.arrays:
        # One statement moves the accounts (with the entries, in one CTE).
        assert sum("UPDATE accounts SET" in s for s in seen) == 1, seen
    for code in codes:
        after = participants.get_bank(db, code).accounts[0]
        was = before[code]
        assert after.id == account_id(code, "USD")
        assert after.unsettled_net == 0
        assert after.balance == was.balance + was.unsettled_net
        assert after.balance == was.balance + done.postings.get(code, 0)
        assert after.headroom == was.headroom
    assert settlement.reconciliation(db, closed.cycle.id).all_matched
    assert all(b == 0 and e == 0 for b, e, _ in settlement.ledger_totals(db).values())
