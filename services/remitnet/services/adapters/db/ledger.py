"""The ledger repository: balanced postings, their idempotency records and
each account's numbered entries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, text, update

from remitnet.services.adapters.db.arrays import int_array, text_array
from remitnet.services.adapters.db.dialect import Dialect
from remitnet.services.adapters.db.keys import key_in
from remitnet.services.adapters.db.rows import utc
from remitnet.services.adapters.db.schema import accounts, ledger_entries, postings
from remitnet.services.domain.ledger import (
    EntryKind,
    LedgerEntry,
    Leg,
    Posting,
    PostingAt,
    PostingRecord,
)


def _entry(row: Any) -> LedgerEntry:
    e = row._mapping
    return LedgerEntry(
        e["account_id"], e["seq"], EntryKind(e["kind"]), e["amount"], e["balance_after"],
        e["posting_id"], e["reference"], utc(e["posted_at"]),
    )  # fmt: skip


# With array parameters: every account of a posting moved in one statement
# (a posting without legs moves unsettled nets alone)...
_MOVE_ARRAYS = text(
    "UPDATE accounts SET balance = accounts.balance + v.delta, "
    "entry_count = accounts.entry_count + v.n, "
    "unsettled_net = accounts.unsettled_net + v.u "
    "FROM unnest(CAST(:ids AS VARCHAR[]), CAST(:deltas AS BIGINT[]), CAST(:counts AS BIGINT[]), "
    "CAST(:unsettled AS BIGINT[])) "
    "AS v(id, delta, n, u) WHERE accounts.id = v.id "
    "RETURNING accounts.id, accounts.balance, accounts.entry_count"
)
# ...or, with legs, the accounts and the entries in one statement (a
# settlement's unsettled nets move in it too: one pass over thousands of
# rows instead of two). Both parts read the accounts as they were before the
# statement (the same snapshot; a concurrent move of one of them fails the
# serializable transaction, which is retried whole): each entry is numbered
# on from its account's count (`k`: 1 for the account's first leg of the
# posting) and its balance is the account's plus its legs so far (`upto`).
# The entries join the accounts table, not the UPDATE's answer: joined to a
# CTE without statistics, the planner expects n * n / 200 rows, JIT-compiles
# the statement past a few thousand banks and sorts on disk. Counting the
# accounts moved finds a missing one.
_POST_ARRAYS = text(
    "WITH m AS (UPDATE accounts SET balance = accounts.balance + v.delta, "
    "entry_count = accounts.entry_count + v.n, "
    "unsettled_net = accounts.unsettled_net + v.u "
    "FROM unnest(CAST(:ids AS VARCHAR[]), CAST(:deltas AS BIGINT[]), CAST(:counts AS BIGINT[]), "
    "CAST(:unsettled AS BIGINT[])) "
    "AS v(id, delta, n, u) WHERE accounts.id = v.id RETURNING 1), "
    "e AS (INSERT INTO ledger_entries (account_id, seq, currency, kind, amount, balance_after, "
    "posting_id, reference, posted_at) "
    "SELECT a.id, a.entry_count + l.k, CAST(:currency AS VARCHAR), "
    "CAST(:kind AS SMALLINT), l.amount, a.balance + l.upto, CAST(:posting_id AS VARCHAR), "
    "CAST(:reference AS VARCHAR), CAST(:posted_at AS TIMESTAMPTZ) "
    "FROM unnest(CAST(:leg_ids AS VARCHAR[]), CAST(:ks AS BIGINT[]), "
    "CAST(:amounts AS BIGINT[]), CAST(:uptos AS BIGINT[])) AS l(account_id, k, amount, upto) "
    "JOIN accounts AS a ON a.id = l.account_id RETURNING 1) "
    "SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM e)"
)
# post_many's: _POST_ARRAYS with each entry's posting, kind, currency,
# reference and time its own, and no unsettled nets. Many small postings
# (a group of deposits, every one against the hub's reserve) move each
# account once: on PostgreSQL, a row updated hundreds of times in one
# transaction leaves as many versions for every later statement of it, and
# of the following transactions, to walk past.
_POST_MANY_ARRAYS = text(
    "WITH m AS (UPDATE accounts SET balance = accounts.balance + v.delta, "
    "entry_count = accounts.entry_count + v.n "
    "FROM unnest(CAST(:ids AS VARCHAR[]), CAST(:deltas AS BIGINT[]), CAST(:counts AS BIGINT[])) "
    "AS v(id, delta, n) WHERE accounts.id = v.id RETURNING 1), "
    "e AS (INSERT INTO ledger_entries (account_id, seq, currency, kind, amount, balance_after, "
    "posting_id, reference, posted_at) "
    "SELECT a.id, a.entry_count + l.k, l.currency, l.kind, l.amount, a.balance + l.upto, "
    "l.posting_id, l.reference, l.posted_at "
    "FROM unnest(CAST(:leg_ids AS VARCHAR[]), CAST(:ks AS BIGINT[]), "
    "CAST(:amounts AS BIGINT[]), CAST(:uptos AS BIGINT[]), CAST(:currencies AS VARCHAR[]), "
    "CAST(:kinds AS SMALLINT[]), CAST(:posting_ids AS VARCHAR[]), "
    "CAST(:references AS VARCHAR[]), CAST(:posted_ats AS TIMESTAMPTZ[])) "
    "AS l(account_id, k, amount, upto, currency, kind, posting_id, reference, posted_at) "
    "JOIN accounts AS a ON a.id = l.account_id RETURNING 1) "
    "SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM e)"
)
_set_balance = (
    update(accounts)
    .where(accounts.c.id == bindparam("aid"))
    .values(balance=bindparam("bal"), entry_count=bindparam("cnt"))
)
_add_unsettled = (
    update(accounts)
    .where(accounts.c.id == bindparam("aid"))
    .values(unsettled_net=accounts.c.unsettled_net + bindparam("delta"))
)
# Built once: a statement built per call costs more Python to coerce and
# cache-key than to run, and onboarding posts a deposit per bank.
_GET_POSTING = select(postings).where(postings.c.id == bindparam("pid"))
_INSERT_POSTING = insert(postings)


def _record(posting: Posting, owner: str, amount: int, now: datetime) -> dict[str, Any]:
    """A posting's idempotency record, as _INSERT_POSTING takes it."""
    return {
        "id": posting.posting_id,
        "kind": int(posting.kind),
        "currency": posting.currency,
        "owner": owner,
        "amount": amount,
        "reference": posting.reference,
        "posted_at": now,
    }


def _number(
    legs: Sequence[Leg], later: dict[str, list[int]], ks: list[int], uptos: list[int]
) -> None:
    """Append each leg's number among its account's legs so far (`ks`: 1
    for its first) and their running sum (`uptos`), keeping each account's
    count and sum in `later`: what the entries are numbered and balanced
    from, and, at the end, what the accounts move by."""
    for leg in legs:
        so_far = later.get(leg.account_id)
        if so_far is None:
            so_far = later[leg.account_id] = [0, 0]
        so_far[0] += 1
        so_far[1] += leg.amount
        ks.append(so_far[0])
        uptos.append(so_far[1])


class SqlLedger:
    """LedgerRepository over a Connection."""

    __slots__ = ("conn", "dialect")

    def __init__(self, conn: Connection, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect

    def get_posting(self, posting_id: str) -> PostingRecord | None:
        row = self.conn.execute(_GET_POSTING, {"pid": posting_id}).first()
        if row is None:
            return None
        p = row._mapping
        return PostingRecord(
            p["id"], EntryKind(p["kind"]), p["currency"], p["owner"], p["amount"],
            p["reference"], utc(p["posted_at"]),
        )  # fmt: skip

    def post(
        self,
        posting: Posting,
        *,
        owner: str,
        amount: int,
        now: datetime,
        unsettled: Mapping[str, int] | None = None,
    ) -> None:
        """Write a balanced posting: its idempotency record, one entry per leg
        in each account's own sequence, and the new balances. A constant
        number of statements, however many legs (a settlement has two per
        bank): with array parameters the accounts move and the entries go
        in one statement; without, one executemany each. `unsettled`
        (account -> delta) moves unsettled nets in the same UPDATE."""
        self.conn.execute(_INSERT_POSTING, _record(posting, owner, amount, now))
        changed = {k: v for k, v in (unsettled or {}).items() if v}
        if not posting.legs and not changed:
            return
        if self.dialect.arrays and posting.legs:
            self._post_arrays(posting, changed, now)
            return
        # account -> [sum of its legs, its leg count, its unsettled delta]
        moves: dict[str, list[int]] = {}
        for leg in posting.legs:
            move = moves.get(leg.account_id)
            if move is None:
                move = moves[leg.account_id] = [0, 0, 0]
            move[0] += leg.amount
            move[1] += 1
        for aid, delta in changed.items():
            moves.setdefault(aid, [0, 0, 0])[2] += delta
        # Accounts in one order (by id) in every posting: concurrent postings
        # lock shared rows in the same order.
        moves = dict(sorted(moves.items()))
        # Each account's balance and entry count before this posting.
        before = self._move(moves) if self.dialect.arrays else self._read(moves)
        missing = moves.keys() - before.keys()
        if missing:
            raise AssertionError(f"posting {posting.posting_id} names missing accounts {missing}")
        if changed and not self.dialect.arrays:
            self.conn.execute(_add_unsettled, [{"aid": a, "delta": d} for a, d in changed.items()])
        if not posting.legs:
            return
        ids, seqs, amounts, balances = [], [], [], []
        for leg in posting.legs:
            state = before[leg.account_id]
            state[0] += leg.amount
            state[1] += 1
            ids.append(leg.account_id)
            seqs.append(state[1])
            amounts.append(leg.amount)
            balances.append(state[0])
        common = {
            "currency": posting.currency,
            "kind": int(posting.kind),
            "posting_id": posting.posting_id,
            "reference": posting.reference,
            "posted_at": now,
        }
        self.conn.execute(
            insert(ledger_entries),
            [
                {"account_id": a, "seq": q, "amount": m, "balance_after": b, **common}
                for a, q, m, b in zip(ids, seqs, amounts, balances, strict=True)
            ],
        )
        self.conn.execute(
            _set_balance,
            [{"aid": a, "bal": before[a][0], "cnt": before[a][1]} for a in moves],
        )

    def post_many(self, postings: Sequence[PostingAt]) -> None:
        """`post` each of `postings`, in order: with array parameters, their
        records in one statement and their accounts and entries in another
        (_POST_MANY_ARRAYS); without, one `post` each."""
        if not postings:
            return
        if not self.dialect.arrays:
            for p in postings:
                self.post(p.posting, owner=p.owner, amount=p.amount, now=p.at)
            return
        self.conn.execute(_INSERT_POSTING, [_record(*p) for p in postings])
        later: dict[str, list[int]] = {}  # account -> [its legs so far, their sum]
        ks: list[int] = []
        uptos: list[int] = []
        amounts: list[int] = []
        kinds: list[int] = []
        leg_ids: list[str] = []
        currencies: list[str] = []
        posting_ids: list[str] = []
        references: list[str] = []
        times: list[str] = []
        for p in postings:
            posting, n = p.posting, len(p.posting.legs)
            _number(posting.legs, later, ks, uptos)
            leg_ids.extend(leg.account_id for leg in posting.legs)
            amounts.extend(leg.amount for leg in posting.legs)
            currencies.extend([posting.currency] * n)
            kinds.extend([int(posting.kind)] * n)
            posting_ids.extend([posting.posting_id] * n)
            references.extend([posting.reference] * n)
            times.extend([p.at.isoformat()] * n)
        if not leg_ids:
            return
        ids = sorted(later)  # one lock order for every posting
        moved, written = self.conn.execute(
            _POST_MANY_ARRAYS,
            {
                "ids": text_array(ids),
                "deltas": int_array([later[a][1] for a in ids]),
                "counts": int_array([later[a][0] for a in ids]),
                "leg_ids": text_array(leg_ids),
                "ks": int_array(ks),
                "amounts": int_array(amounts),
                "uptos": int_array(uptos),
                "currencies": text_array(currencies),
                "kinds": int_array(kinds),
                "posting_ids": text_array(posting_ids),
                "references": text_array(references),
                "posted_ats": text_array(times),
            },
        ).one()
        if moved != len(ids) or written != len(leg_ids):
            raise AssertionError(f"postings name {len(ids) - moved} missing accounts")

    def _post_arrays(self, posting: Posting, unsettled: Mapping[str, int], now: datetime) -> None:
        """The accounts and the entries of `posting` in one statement
        (_POST_ARRAYS); `unsettled`: the nonzero unsettled deltas."""
        # One pass over the thousands of legs of a settlement: each account's
        # legs so far (count, sum), which is also, at the end, what the
        # posting moves it by.
        later: dict[str, list[int]] = {}
        ks: list[int] = []
        uptos: list[int] = []
        _number(posting.legs, later, ks, uptos)
        for aid in unsettled.keys() - later.keys():
            later[aid] = [0, 0]
        # Accounts in one order (by id) in every posting: concurrent postings
        # lock shared rows in the same order.
        ids = sorted(later)
        moved, written = self.conn.execute(
            _POST_ARRAYS,
            {
                "ids": text_array(ids),
                "deltas": int_array([later[a][1] for a in ids]),
                "counts": int_array([later[a][0] for a in ids]),
                "unsettled": int_array([unsettled.get(a, 0) for a in ids]),
                "leg_ids": text_array([leg.account_id for leg in posting.legs]),
                "ks": int_array(ks),
                "amounts": int_array([leg.amount for leg in posting.legs]),
                "uptos": int_array(uptos),
                "currency": posting.currency,
                "kind": int(posting.kind),
                "posting_id": posting.posting_id,
                "reference": posting.reference,
                "posted_at": now,
            },
        ).one()
        if moved != len(ids) or written != len(posting.legs):
            raise AssertionError(
                f"posting {posting.posting_id} names {len(ids) - moved} missing accounts"
            )

    def _move(self, moves: Mapping[str, list[int]]) -> dict[str, list[int]]:
        """Add each account's legs to its balance and entry count (and its
        unsettled delta to its unsettled net), in one statement; the balance
        and count each had before."""
        values = list(moves.values())
        rows = self.conn.execute(
            _MOVE_ARRAYS,
            {
                "ids": text_array(moves),
                "deltas": int_array([m[0] for m in values]),
                "counts": int_array([m[1] for m in values]),
                "unsettled": int_array([m[2] for m in values]),
            },
        ).all()  # fetchall: several times cheaper than a fetch per row
        return {a: [b - moves[a][0], n - moves[a][1]] for a, b, n in rows}

    def _read(self, moves: Mapping[str, list[int]]) -> dict[str, list[int]]:
        """The balance and entry count of each account, in one query (the
        caller writes them back with its legs added)."""
        rows = self.conn.execute(
            select(accounts.c.id, accounts.c.balance, accounts.c.entry_count).where(
                key_in(accounts.c.id, list(moves), self.dialect)
            )
        )
        return {r[0]: [int(r[1]), int(r[2])] for r in rows}

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

    def last_seq_before(self, account_id: str, at: datetime) -> int:
        # Within one account (the primary key's prefix): a statement's
        # period bound, read once per statement.
        value = self.conn.execute(
            select(func.max(ledger_entries.c.seq)).where(
                ledger_entries.c.account_id == account_id, ledger_entries.c.posted_at < at
            )
        ).scalar()
        return int(value or 0)
