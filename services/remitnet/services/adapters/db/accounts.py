"""The accounts repository: liquidity, hub and FX accounts and the
unsettled nets and reservations the batch path moves."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    String,
    TextClause,
    Update,
    bindparam,
    cast,
    func,
    insert,
    select,
    text,
    update,
)

from remitnet.services.adapters.db.arrays import int_array, text_array
from remitnet.services.adapters.db.dialect import Dialect
from remitnet.services.adapters.db.keys import key_in
from remitnet.services.adapters.db.rows import utc
from remitnet.services.adapters.db.schema import accounts
from remitnet.services.domain.account import Account
from remitnet.services.domain.model import AccountKind
from remitnet.services.domain.netting import AccountState

# An account's columns in Account's order: rows unpack by position, several
# times cheaper than by name, and ListBanks converts a thousand a page.
_COLUMNS = (
    accounts.c.id,
    accounts.c.owner,
    accounts.c.currency,
    accounts.c.kind,
    accounts.c.balance,
    accounts.c.net_debit_cap,
    accounts.c.unsettled_net,
    accounts.c.entry_count,
    accounts.c.opened_at,
    accounts.c.reserved,
)


def _accounts(rows: Iterable[Any]) -> list[Account]:
    """Rows of _COLUMNS as Accounts."""
    return [
        Account(aid, owner, currency, kind, balance, cap, unsettled, entries, utc(opened), reserved)
        for aid, owner, currency, kind, balance, cap, unsettled, entries, opened, reserved in rows
    ]


_add_unsettled = (
    update(accounts)
    .where(accounts.c.id == bindparam("aid"))
    .values(unsettled_net=accounts.c.unsettled_net + bindparam("delta"))
)


_add_reserved = (
    update(accounts)
    .where(accounts.c.id == bindparam("aid"))
    .values(reserved=accounts.c.reserved + bindparam("delta"))
)


# With array parameters: one statement instead of one round trip per row.
_ADD_UNSETTLED_ARRAYS = text(
    "UPDATE accounts SET unsettled_net = accounts.unsettled_net + v.delta "
    "FROM unnest(CAST(:ids AS VARCHAR[]), CAST(:deltas AS BIGINT[])) AS v(id, delta) "
    "WHERE accounts.id = v.id"
)
_ADD_RESERVED_ARRAYS = text(
    "UPDATE accounts SET reserved = accounts.reserved + v.delta "
    "FROM unnest(CAST(:ids AS VARCHAR[]), CAST(:deltas AS BIGINT[])) AS v(id, delta) "
    "WHERE accounts.id = v.id"
)


# Built once: a statement built per call costs more Python to coerce and
# cache-key than to run, and onboarding runs these once per bank.
_GET = select(*_COLUMNS).where(accounts.c.id == bindparam("aid"))
_INSERT = insert(accounts)
# A semi-join on the unnested keys, not `owner = ANY(:owners)`: once the
# driver prepares the statement (after a few runs) PostgreSQL's generic plan
# searches the array linearly for every row it scans, ten times slower for a
# page of 1,000 banks; the join probes the (owner, currency) index per key.
_OF_OWNERS_ARRAYS = (
    select(*_COLUMNS)
    .where(
        accounts.c.owner.in_(
            select(func.unnest(cast(bindparam("owners"), ARRAY(String())))).scalar_subquery()
        )
    )
    .order_by(accounts.c.owner, accounts.c.currency)
)


class SqlAccounts:
    """AccountRepository over a Connection."""

    __slots__ = ("conn", "dialect")

    def __init__(self, conn: Connection, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect

    def get(self, account_id: str) -> Account | None:
        found = _accounts(self.conn.execute(_GET, {"aid": account_id}).all())
        return found[0] if found else None

    def of_owner(self, owner: str) -> list[Account]:
        rows = self.conn.execute(
            select(*_COLUMNS).where(accounts.c.owner == owner).order_by(accounts.c.currency)
        )
        return _accounts(rows.all())

    def of_owners(self, owners: Collection[str]) -> dict[str, list[Account]]:
        """The accounts of each of `owners` (by currency), in one query: a
        page of banks costs one statement, not one per bank."""
        out: dict[str, list[Account]] = {o: [] for o in owners}
        if not out:
            return out
        if self.dialect.arrays:
            rows = self.conn.execute(_OF_OWNERS_ARRAYS, {"owners": list(out)}).all()
        else:
            rows = self.conn.execute(
                select(*_COLUMNS)
                .where(key_in(accounts.c.owner, list(out), self.dialect))
                .order_by(accounts.c.owner, accounts.c.currency)
            ).all()
        for a in _accounts(rows):
            out[a.owner].append(a)
        return out

    def all(self, kind: str | None = None) -> list[Account]:
        query = select(*_COLUMNS).order_by(accounts.c.id)
        if kind is not None:
            query = query.where(accounts.c.kind == kind)
        return _accounts(self.conn.execute(query).all())

    def add(
        self,
        account_id: str,
        owner: str,
        currency: str,
        kind: str,
        now: datetime,
        *,
        home_region: str,
    ) -> None:
        """`home_region`: the owner bank's, or HUB_HOME_REGION for the hub's."""
        self.conn.execute(
            _INSERT,
            {
                "id": account_id,
                "owner": owner,
                "currency": currency,
                "kind": kind,
                "balance": 0,
                "net_debit_cap": 0,
                "unsettled_net": 0,
                "entry_count": 0,
                "opened_at": now,
                "home_region": home_region,
            },
        )

    def set_cap(self, account_id: str, cap: int) -> None:
        self.conn.execute(
            update(accounts).where(accounts.c.id == account_id).values(net_debit_cap=cap)
        )

    def states(self, ids: Collection[str]) -> dict[str, AccountState]:
        rows = self.conn.execute(
            select(
                accounts.c.id,
                accounts.c.owner,
                accounts.c.currency,
                accounts.c.balance,
                accounts.c.net_debit_cap,
                accounts.c.unsettled_net,
                accounts.c.reserved,
            ).where(
                key_in(accounts.c.id, ids, self.dialect),
                accounts.c.kind.in_((AccountKind.LIQUIDITY, AccountKind.FX)),
            )
        )
        return {r[0]: AccountState(*r) for r in rows}

    def add_unsettled(self, deltas: Mapping[str, int]) -> None:
        self._add(deltas, _ADD_UNSETTLED_ARRAYS, _add_unsettled)

    def add_reserved(self, deltas: Mapping[str, int]) -> None:
        """Add each signed delta to its account's `reserved` (what its
        owner's transfers awaiting confirmation hold)."""
        self._add(deltas, _ADD_RESERVED_ARRAYS, _add_reserved)

    def _add(self, deltas: Mapping[str, int], arrays: TextClause, rows: Update) -> None:
        """One statement with array parameters; else one executemany."""
        changed = {k: v for k, v in deltas.items() if v}
        if not changed:
            return
        if self.dialect.arrays:
            self.conn.execute(
                arrays, {"ids": text_array(changed), "deltas": int_array(changed.values())}
            )
        else:
            self.conn.execute(rows, [{"aid": k, "delta": v} for k, v in changed.items()])
