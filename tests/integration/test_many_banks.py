"""What the hub costs per statement does not grow with the number of banks
(issue 17, "As the network grows"): key sets go as one array parameter,
postings move every account in a constant number of statements, and
operator actions that arrive together commit together."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Select, event, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy_cockroachdb.base import CockroachDBDialect

from remitnet.services.adapters.db import migrate
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.dialect import Dialect
from remitnet.services.adapters.db.keys import key_in
from remitnet.services.adapters.db.schema import accounts, banks
from remitnet.services.domain.account import Account
from remitnet.services.domain.errors import AlreadyExists, NotFound
from remitnet.services.domain.ledger import EntryKind, Leg, Posting
from remitnet.services.domain.model import HUB, AccountKind, account_id
from remitnet.services.service_layer import cycles, participants, settlement

COCKROACH = CockroachDBDialect()
POSTGRESQL = PGDialect_psycopg()  # type: ignore[no-untyped-call]


def _query(dialect: str) -> Select[Any]:
    features = Dialect.named(dialect)
    keys = [f"B{i:05d}" for i in range(5_000)]
    return select(banks.c.code).where(
        key_in(banks.c.code, keys, features), key_in(accounts.c.owner, keys[:3], features)
    )


@pytest.mark.parametrize("name, compiler", [("postgresql", POSTGRESQL), ("cockroachdb", COCKROACH)])
def test_key_sets_are_one_array_parameter_with_arrays(name: str, compiler: Any) -> None:
    compiled = _query(name).compile(dialect=compiler)
    assert len(compiled.params) == 2, compiled.params
    sql = str(compiled)
    # Unbounded: a cast to VARCHAR(16) would cut a longer key to one that matches.
    # A semi-join on unnest(), not `= ANY`: a generic plan filters a whole
    # table through the array (keys.py).
    assert sql.count("IN (SELECT unnest(CAST(") == 2 and "AS VARCHAR[]" in sql, sql
    assert "ANY" not in sql


def test_key_sets_are_in_lists_on_sqlite() -> None:
    compiled = _query("sqlite").compile(
        dialect=sqlite.dialect(), compile_kwargs={"render_postcompile": True}
    )
    assert len(compiled.params) == 5_003 and "ANY" not in str(compiled)


def _statements(db: Database, run: Any) -> list[str]:
    seen: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    return seen


def test_a_posting_numbers_each_accounts_entries_in_a_constant_number_of_statements(
    db: Database,
) -> None:
    for code in ("PSTA", "PSTB", "PSTC"):
        participants.create_bank(db, code, code, "us-east1", ["USD"])
    participants.deposit(db, "PSTA", "USD", 1_000, "")
    reserve = account_id(HUB, "USD", AccountKind.RESERVE)
    a, b, c = (account_id(x, "USD") for x in ("PSTA", "PSTB", "PSTC"))
    # The same account in several legs, as the hub's settlement account is
    # in a settlement: its entries follow on from each other.
    legs = (Leg(a, -300), Leg(reserve, 300), Leg(b, 200), Leg(reserve, -200), Leg(c, 100),
            Leg(reserve, -100))  # fmt: skip
    posting = Posting("test:many", EntryKind.DEPOSIT, "USD", "many", legs)
    now = datetime.now(UTC)
    seen = _statements(
        db,
        lambda: db.write("t", lambda uow: uow.ledger.post(posting, owner=HUB, amount=0, now=now)),
    )
    # The posting, the accounts and the entries: no statement per leg.
    assert len([s for s in seen if s.split()[0] in ("INSERT", "UPDATE", "SELECT")]) <= 4, seen

    def check(uow: Any) -> None:
        entries = {(e.account_id, e.seq): e for e in uow.ledger.posting_entries("test:many")}
        assert [(k, e.amount, e.balance_after) for k, e in sorted(entries.items())] == [
            ((reserve, 2), 300, -700),
            ((reserve, 3), -200, -900),
            ((reserve, 4), -100, -1_000),
            ((a, 2), -300, 700),
            ((b, 1), 200, 200),
            ((c, 1), 100, 100),
        ]
        got = {x: (uow.accounts.get(x).balance, uow.accounts.get(x).entry_count) for x in
               (reserve, a, b, c)}  # fmt: skip
        assert got == {reserve: (-1_000, 4), a: (700, 2), b: (200, 1), c: (100, 1)}

    db.read(check)
    assert all(bal == 0 and ent == 0 for bal, ent, _ in settlement.ledger_totals(db).values())


def test_settling_many_banks_takes_a_constant_number_of_ledger_statements(db: Database) -> None:
    from remitnet.services.domain.model import make_instruction
    from remitnet.services.service_layer.clearing import commit_batch

    def settle_statements(n: int) -> int:
        codes = [f"S{n:02d}B{i:04d}" for i in range(n)]
        for code in codes:
            participants.create_bank(db, code, code, "us-east1", ["USD"])
            participants.deposit(db, code, "USD", 10**9, "")
        batch = [
            make_instruction(
                transfer_id=f"00000000-0000-4000-8{n:03d}-{i:012d}",
                debtor=codes[i],
                creditor=codes[(i + 1) % n],
                currency="USD",
                amount=100 + i,
            )
            for i in range(n)
        ]
        commit_batch(db, batch)
        closed, _ = cycles.close_cycle(db, "USD")
        seen = _statements(db, lambda: settlement.settle_cycle(db, closed.cycle.id))
        done = settlement.reconciliation(db, closed.cycle.id)
        assert done.all_matched and done.settled
        return sum(("ledger_entries" in s or "UPDATE accounts" in s) for s in seen)

    assert settle_statements(4) == settle_statements(40)
    assert all(bal == 0 and ent == 0 for bal, ent, _ in settlement.ledger_totals(db).values())


def test_operator_actions_run_together_and_one_refusal_undoes_no_other(db: Database) -> None:
    participants.create_bank(db, "TOGA", "A", "us-east1", ["USD"])
    units: list[tuple[str, participants.OperatorUnit[Any]]] = [
        ("create_bank", participants.create_bank_unit("TOGB", "B", "us-east1", ["USD"])),
        ("deposit", participants.deposit_unit("TOGB", "USD", 500, "")),
        ("deposit", participants.deposit_unit("TOGA", "USD", 700, "")),
    ]
    together = _statements(db, lambda: participants.run_together(db, units))
    assert sum(s.startswith("INSERT INTO operator_audit_log") for s in together) == 3
    # One transaction: the bank created first is there for its deposit.
    assert participants.get_bank(db, "TOGB").accounts[0].balance == 500
    assert participants.get_bank(db, "TOGA").accounts[0].balance == 700

    refused: list[tuple[str, participants.OperatorUnit[Any]]] = [
        ("deposit", participants.deposit_unit("TOGA", "USD", 1, "")),
        ("create_bank", participants.create_bank_unit("TOGA", "Other", "us-east1", ["USD"])),
        ("deposit", participants.deposit_unit("NOSUCH", "USD", 1, "")),
        ("create_bank", participants.create_bank_unit("TOGC", "C", "us-east1", ["USD"])),
    ]
    answers = participants.run_together(db, refused)
    assert isinstance(answers[1], AlreadyExists) and isinstance(answers[2], NotFound)
    assert participants.get_bank(db, "TOGA").accounts[0].balance == 701
    assert participants.get_bank(db, "TOGC").bank.name == "C"
    assert all(bal == 0 and ent == 0 for bal, ent, _ in settlement.ledger_totals(db).values())


def _ledger(db: Database) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every entry (without its time) and every account's balance and count."""

    def read(uow: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        conn = uow.conn
        entries = conn.execute(
            text(
                "SELECT account_id, seq, currency, kind, amount, balance_after, reference "
                "FROM ledger_entries ORDER BY account_id, seq"
            )
        ).all()
        rows = conn.execute(text("SELECT id, balance, entry_count FROM accounts ORDER BY id")).all()
        return [tuple(e) for e in entries], [tuple(r) for r in rows]

    return db.read(read)


def test_a_groups_deposits_post_as_the_same_actions_alone_would(
    db: Database, tmp_path: Any
) -> None:
    """A group's deposits and withdrawals wait and post together (the hub's
    reserve then moves once, not once per deposit): the ledger they leave
    is the one the same actions leave run one at a time, a repeat within
    the group is a replay, and an action that reads balances (a cap) sees
    what the group's deposits before it did."""
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(8)]

    def actions() -> list[tuple[str, participants.OperatorUnit[Any]]]:
        return [
            ("create_bank", participants.create_bank_unit("GRPA", "A", "us-east1", ["USD", "EUR"])),
            ("deposit", participants.deposit_unit("GRPA", "USD", 500, ids[0])),
            ("create_bank", participants.create_bank_unit("GRPB", "B", "us-east1", ["USD"])),
            ("deposit", participants.deposit_unit("GRPB", "USD", 300, ids[1])),
            ("deposit", participants.deposit_unit("GRPA", "EUR", 40, ids[2])),
            ("withdraw", participants.withdraw_unit("GRPA", "USD", 120, ids[3])),
            ("deposit", participants.deposit_unit("GRPB", "USD", 300, ids[1])),  # a replay
            # A repeat of a creation answers the bank's accounts as stored.
            ("create_bank", participants.create_bank_unit("GRPA", "A", "us-east1", ["USD", "EUR"])),
            ("deposit", participants.deposit_unit("GRPB", "USD", 7, ids[4])),
            ("open_account", participants.open_account_unit("GRPB", "EUR")),
        ]

    def groups() -> float:
        labels = {"unit": "operator_actions", "outcome": "committed"}
        return REGISTRY.get_sample_value("remitnet_db_transactions_total", labels) or 0.0

    before = groups()
    together = participants.run_together(db, actions())
    assert not [a for a in together if isinstance(a, Exception)], together
    assert groups() == before + 1  # as a group, not one by one
    assert [a.balance for a in together if isinstance(a, Account)] == [
        500,
        300,
        40,
        380,
        300,
        307,
        0,
    ]
    repeat = together[7]
    assert isinstance(repeat, participants.BankView)
    assert {a.currency: a.balance for a in repeat.accounts} == {"USD": 380, "EUR": 40}
    grouped = _ledger(db)

    alone_db = Database(f"sqlite:///{tmp_path / 'alone.db'}")
    migrate.upgrade(alone_db)
    try:
        for name, unit in actions():
            alone_db.write(name, unit)
        alone = _ledger(alone_db)
    finally:
        alone_db.dispose()
    assert grouped == alone
    assert all(bal == 0 and ent == 0 for bal, ent, _ in settlement.ledger_totals(db).values())
