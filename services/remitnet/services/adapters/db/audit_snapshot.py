"""The audit's snapshot: every row its checks read (domain/audit.py), as
domain values, in one pass per table on the caller's transaction (the read
transaction of `Database.read` is a consistent snapshot on every backend).

Transfers are read once, with their cancellation times. The snapshot is
held in memory whole, so values that repeat across rows (bank codes,
currencies, cycle ids, a batch's shared time, account and posting ids) are
shared rather than held once per row."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from remitnet.services.adapters.db.audit_log import SqlOperatorTrail
from remitnet.services.adapters.db.recalls import RECALL_COLUMNS, recall_of
from remitnet.services.adapters.db.rows import TRANSFER_COLUMNS, cycle_of, transfer_of, utc
from remitnet.services.adapters.db.schema import (
    accounts,
    cycles,
    events,
    feed_heads,
    ledger_entries,
    positions,
    postings,
    recalls,
    transfers,
)
from remitnet.services.domain.account import Account
from remitnet.services.domain.audit import AuditSnapshot, FeedHead, StoredEntry, StoredEvent
from remitnet.services.domain.ledger import EntryKind, PostingRecord
from remitnet.services.domain.netting import PositionDelta

_BATCH = 10_000  # rows fetched at a time from the large tables
#: Columns of TRANSFER_COLUMNS worth sharing across rows: the banks, the
#: currencies, the remittance information, the cycles, the accepted_at, the
#: FX providers, the deadlines, resolution times, reason and purpose codes
#: that a batch's transfers share.
_SHARED = frozenset({1, 2, 3, 5, 7, 8, 10, 12, 14, 15, 16, 17, 20})


def load_audit_snapshot(conn: Connection) -> AuditSnapshot:
    pool: dict[Any, Any] = {}
    share = pool.setdefault  # one object per distinct value

    account_rows = [
        Account(
            r.id,
            share(r.owner, r.owner),
            share(r.currency, r.currency),
            share(r.kind, r.kind),
            int(r.balance),
            int(r.net_debit_cap),
            int(r.unsettled_net),
            int(r.entry_count),
            utc(r.opened_at),
            int(r.reserved),
        )
        for r in conn.execute(select(accounts).order_by(accounts.c.id))
    ]
    entries = [
        StoredEntry(
            share(r.account_id, r.account_id),
            int(r.seq),
            EntryKind(r.kind),
            int(r.amount),
            int(r.balance_after),
            share(r.posting_id, r.posting_id),
            share(r.reference, r.reference),
            share(r.posted_at, utc(r.posted_at)),
            share(r.currency, r.currency),
        )
        for r in conn.execution_options(yield_per=_BATCH).execute(
            select(ledger_entries).order_by(ledger_entries.c.account_id, ledger_entries.c.seq)
        )
    ]
    posting_rows = [
        PostingRecord(
            r.id,
            EntryKind(r.kind),
            share(r.currency, r.currency),
            share(r.owner, r.owner),
            int(r.amount),
            share(r.reference, r.reference),
            utc(r.posted_at),
        )
        for r in conn.execution_options(yield_per=_BATCH).execute(select(postings))
    ]
    cycle_rows = [cycle_of(r) for r in conn.execute(select(cycles).order_by(cycles.c.id))]
    position_rows = {
        (share(r.cycle_id, r.cycle_id), share(r.bank_code, r.bank_code)): PositionDelta(
            int(r.sent), int(r.received), int(r.sent_count), int(r.received_count), int(r.fee)
        )
        for r in conn.execute(select(positions))
    }
    transfer_rows = []
    cancelled_at = {}
    for r in conn.execution_options(yield_per=_BATCH).execute(
        select(*TRANSFER_COLUMNS, transfers.c.cancelled_at)
    ):
        # transfer_of keeps a str as it is (str() of a str is that str).
        row = tuple(
            share(v, v) if i in _SHARED and v is not None else v for i, v in enumerate(r[:-1])
        )
        t = transfer_of(row)
        transfer_rows.append(t)
        if r[-1] is not None:
            cancelled_at[t.transfer_id] = utc(r[-1])
    heads = {
        r.bank_code: FeedHead(int(r.seq), utc(r.started_at))
        for r in conn.execute(
            select(feed_heads.c.bank_code, feed_heads.c.seq, feed_heads.c.started_at)
        )
    }
    event_rows = [
        StoredEvent(
            share(r.bank_code, r.bank_code),
            int(r.seq),
            utc(r.at),
            int(r.kind),
            int(r.status),
            None if r.transfer_id is None else str(r.transfer_id),
            r.cycle_id,
            r.other_cycle_id,
            int(r.item_count),
        )
        for r in conn.execution_options(yield_per=_BATCH).execute(
            select(
                events.c.bank_code,
                events.c.seq,
                events.c.at,
                events.c.kind,
                events.c.status,
                events.c.transfer_id,
                events.c.cycle_id,
                events.c.other_cycle_id,
                events.c.item_count,
            ).order_by(events.c.bank_code, events.c.seq)
        )
    ]
    return AuditSnapshot(
        accounts=account_rows,
        entries=entries,
        postings=posting_rows,
        cycles=cycle_rows,
        positions=position_rows,
        transfers=transfer_rows,
        cancelled_at=cancelled_at,
        feed_heads=heads,
        events=event_rows,
        trail=list(SqlOperatorTrail(conn).records()),
        recalls=[
            recall_of(tuple(r))
            for r in conn.execute(select(*RECALL_COLUMNS).order_by(recalls.c.transfer_id))
        ],
    )
