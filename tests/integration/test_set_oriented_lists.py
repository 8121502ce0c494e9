"""ListBanks and ListCycles read a page in a constant number of statements,
not one more per bank or cycle on the page."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from remitnet.services.adapters.db import migrate
from remitnet.services.adapters.db.database import Database
from remitnet.services.service_layer import cycles, participants


def _statements(db: Database, run: Any) -> list[str]:
    seen: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    engines = {id(db.engine): db.engine, id(db.read_engine): db.read_engine}
    for engine in engines.values():
        event.listen(engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        for engine in engines.values():
            event.remove(engine, "before_cursor_execute", capture)
    return seen


def test_list_banks_and_list_cycles_are_set_oriented(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        migrate.upgrade(db)
        for k in range(12):
            participants.create_bank(db, f"LIST{k:04d}", f"Bank {k}", "us-east1", ["USD", "EUR"])
        for _ in range(15):
            cycles.close_cycle(db, "USD")
        banks = _statements(db, lambda: participants.list_banks(db, "", 100))
        page = participants.list_banks(db, "", 100)
        # The 12 banks and the default FX provider FXHUB, whose liquidity
        # accounts open with each currency.
        assert len(page) == 13 and all(len(b.accounts) == 2 for b in page)
        assert sum("FROM accounts" in s for s in banks) == 1, banks
        listed = _statements(db, lambda: cycles.list_cycles(db, "USD", None, None, 100))
        assert len(cycles.list_cycles(db, "USD", None, None, 100)) == 16
        assert sum("FROM positions" in s for s in listed) == 1, listed
    finally:
        db.dispose()
