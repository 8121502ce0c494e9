"""The ledger repository: balanced postings, their idempotency records and
each account's numbered entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from remitnet.services.adapters.db.rows import utc
from remitnet.services.adapters.db.schema import accounts, ledger_entries, postings
from remitnet.services.domain.ledger import EntryKind, LedgerEntry, Posting, PostingRecord


def _entry(row: Any) -> LedgerEntry:
    e = row._mapping
    return LedgerEntry(
        e["account_id"], e["seq"], EntryKind(e["kind"]), e["amount"], e["balance_after"],
        e["posting_id"], e["reference"], utc(e["posted_at"]),
    )  # fmt: skip


class SqlLedger:
    """LedgerRepository over a Connection."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get_posting(self, posting_id: str) -> PostingRecord | None:
        row = self.conn.execute(select(postings).where(postings.c.id == posting_id)).first()
        if row is None:
            return None
        p = row._mapping
        return PostingRecord(
            p["id"], EntryKind(p["kind"]), p["currency"], p["owner"], p["amount"],
            p["reference"], utc(p["posted_at"]),
        )  # fmt: skip

    def post(self, posting: Posting, *, owner: str, amount: int, now: datetime) -> None:
        """Write a balanced posting: its idempotency record, one entry per leg
        in each account's own sequence, and the new balances."""
        conn = self.conn
        conn.execute(
            insert(postings).values(
                id=posting.posting_id,
                kind=int(posting.kind),
                currency=posting.currency,
                owner=owner,
                amount=amount,
                reference=posting.reference,
                posted_at=now,
            )
        )
        ids = {leg.account_id for leg in posting.legs}
        if not ids:
            return
        state = {
            r[0]: [r[1], r[2]]
            for r in conn.execute(
                select(accounts.c.id, accounts.c.balance, accounts.c.entry_count).where(
                    accounts.c.id.in_(ids)
                )
            )
        }
        missing = ids - state.keys()
        if missing:
            raise AssertionError(f"posting {posting.posting_id} names missing accounts {missing}")
        entries = []
        for leg in posting.legs:
            acc = state[leg.account_id]
            acc[0] += leg.amount
            acc[1] += 1
            entries.append(
                {
                    "account_id": leg.account_id,
                    "seq": acc[1],
                    "currency": posting.currency,
                    "kind": int(posting.kind),
                    "amount": leg.amount,
                    "balance_after": acc[0],
                    "posting_id": posting.posting_id,
                    "reference": posting.reference,
                    "posted_at": now,
                }
            )
        conn.execute(insert(ledger_entries), entries)
        conn.execute(
            update(accounts)
            .where(accounts.c.id == bindparam("aid"))
            .values(balance=bindparam("bal"), entry_count=bindparam("cnt")),
            [{"aid": k, "bal": v[0], "cnt": v[1]} for k, v in state.items()],
        )

    def posting_entries(self, posting_id: str) -> list[LedgerEntry]:
        rows = self.conn.execute(
            select(ledger_entries)
            .where(ledger_entries.c.posting_id == posting_id)
            .order_by(ledger_entries.c.account_id)
        )
        return [_entry(r) for r in rows]

    def entries(self, account_id: str, after_seq: int, limit: int) -> list[LedgerEntry]:
        rows = self.conn.execute(
            select(ledger_entries)
            .where(ledger_entries.c.account_id == account_id, ledger_entries.c.seq > after_seq)
            .order_by(ledger_entries.c.seq)
            .limit(limit)
        )
        return [_entry(r) for r in rows]

    def balance_after(self, account_id: str, seq: int) -> int:
        if seq <= 0:
            return 0
        value = self.conn.execute(
            select(ledger_entries.c.balance_after).where(
                ledger_entries.c.account_id == account_id, ledger_entries.c.seq == seq
            )
        ).scalar()
        return int(value or 0)
