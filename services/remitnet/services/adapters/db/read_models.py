"""The read models: queries that serve listings and reports rather than
decisions (ListTransfers, the ledger totals, a bank's recent changes)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, func, literal_column, select

from remitnet.services.adapters.db.audit_snapshot import load_audit_snapshot
from remitnet.services.adapters.db.rows import (
    ACCEPTED_AT,
    N_TRANSFER_COLUMNS,
    TRANSFER_COLUMNS,
    cycle_of,
    transfer_of,
    utc,
)
from remitnet.services.adapters.db.schema import (
    accounts,
    cycles,
    ledger_entries,
    positions,
    recalls,
    transfers,
)
from remitnet.services.domain.audit import AuditSnapshot
from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.lifecycle import RecallState
from remitnet.services.domain.model import CycleState, StoredTransfer, TransferStatus

#: How far a transfer's accepted_at may precede its cycle's opened_at when
#: replicas' clocks differ (CockroachDB's own bound is 500 ms).
CLOCK_SKEW_MARGIN = timedelta(minutes=5)

#: Statuses filtered on the stored status alone (no cycle decides them).
_STORED_STATUSES = frozenset(
    {
        TransferStatus.CANCELLED,
        TransferStatus.RESERVED,
        TransferStatus.REJECTED,
        TransferStatus.EXPIRED,
    }
)


class SqlReadModels:
    """ReadModels over a Connection."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def list_transfers(
        self,
        *,
        bank: str,
        counterparty: str,
        cycle_id: str,
        status: TransferStatus | None,
        before: tuple[datetime, str] | None,
        limit: int,
        kind: str = "",
        returned: bool | None = None,
        recall_state: RecallState | None = None,
    ) -> list[tuple[StoredTransfer, tuple[CycleState, ...]]]:
        """Transfers the bank sent or received, newest first, keyset-paged. The
        status filter is on the effective status (see effective_status); the
        lifecycle's statuses (RESERVED, REJECTED, EXPIRED) and CANCELLED are
        stored as they are. `kind`: "" any, "payment" (no return) or
        "return"; `returned`: only transfers that were returned (True) or not
        (False); `recall_state`: only transfers whose recall is in that state
        (recalls of the bank's side, through the recalls' (bank,
        requested_at) indexes: a recall's parties are its transfer's).

        Two ordered, limited queries, merged: the bank's debits and its credits,
        each read newest first from its own (bank, accepted_at, id) index (with a
        counterparty, from the pair index in both directions), so the first page
        reads about `limit` rows per side whatever the bank's history, instead of
        every row of the bank sorted (what `debtor = X OR creditor = X ORDER BY`
        costs). A bank is never both parties, so the sides are disjoint."""
        src = cycles.alias("src")
        dst = cycles.alias("dst")
        base = (
            select(*TRANSFER_COLUMNS, src.c.state, dst.c.state)
            .outerjoin(src, src.c.id == transfers.c.cycle_id)
            .outerjoin(dst, dst.c.id == transfers.c.creditor_cycle_id)
            .order_by(transfers.c.accepted_at.desc(), transfers.c.id.desc())
            .limit(limit)
        )
        if cycle_id:
            # Either leg in the cycle; and accepted while it was open, which
            # bounds the ordered scan to the cycle's window of the bank's history.
            window = self.conn.execute(
                select(cycles.c.opened_at, cycles.c.closed_at).where(cycles.c.id == cycle_id)
            ).first()
            if window is None:
                return []
            opened, closed = window
            base = base.where(
                (transfers.c.cycle_id == cycle_id) | (transfers.c.creditor_cycle_id == cycle_id),
                transfers.c.accepted_at >= utc(opened) - CLOCK_SKEW_MARGIN,
            )
            if closed is not None:
                base = base.where(transfers.c.accepted_at <= utc(closed) + CLOCK_SKEW_MARGIN)
        if status is not None:
            if status in _STORED_STATUSES:
                # A literal, not a parameter: the partial indexes of cancelled
                # transfers (status = 4) apply to every plan, generic ones too.
                base = base.where(transfers.c.status == literal_column(str(int(status))))
            else:
                if status is TransferStatus.SETTLED:
                    # Settled: gross, or netted with no leg in a cycle that is not
                    # settled yet. Written against the few unsettled cycle ids
                    # rather than the joined states, so that the planner sees it
                    # holds for most of a bank's history and reads the ordered
                    # index; it passes over the unsettled window only.
                    unsettled = list(
                        self.conn.execute(
                            select(cycles.c.id).where(cycles.c.state != int(CycleState.SETTLED))
                        ).scalars()
                    )
                    netted = transfers.c.status == int(TransferStatus.ACCEPTED)
                    if unsettled:
                        netted = (
                            netted
                            & transfers.c.cycle_id.not_in(unsettled)
                            & (
                                transfers.c.creditor_cycle_id.is_(None)
                                | transfers.c.creditor_cycle_id.not_in(unsettled)
                            )
                        )
                    base = base.where(netted | (transfers.c.status == int(TransferStatus.SETTLED)))
                else:
                    # Only transfers of open (closed) cycles have this status, all
                    # accepted after the oldest such cycle opened: bound the ordered
                    # scan to that window (with a margin for clock skew between
                    # replicas) instead of passing over the whole settled history.
                    state = (
                        CycleState.OPEN if status is TransferStatus.ACCEPTED else CycleState.CLOSED
                    )
                    oldest = self.conn.execute(
                        select(func.min(cycles.c.opened_at)).where(cycles.c.state == int(state))
                    ).scalar()
                    if oldest is None:
                        return []
                    # The later leg decides: the minimum of both cycles' states.
                    low = func.coalesce(dst.c.state, src.c.state)
                    least = case((low < src.c.state, low), else_=src.c.state)
                    base = base.where(
                        transfers.c.status == int(TransferStatus.ACCEPTED),
                        least == int(state),
                        transfers.c.accepted_at >= utc(oldest) - CLOCK_SKEW_MARGIN,
                    )
        if kind == "payment":
            base = base.where(transfers.c.return_of.is_(None))
        elif kind == "return":
            base = base.where(transfers.c.return_of.is_not(None))
        elif kind:
            raise ValueError(f"kind must be '', 'payment' or 'return', got {kind!r}")
        if returned is not None:
            base = base.where(
                transfers.c.returned_by.is_not(None)
                if returned
                else transfers.c.returned_by.is_(None)
            )
        if before is not None:
            ts, tid = before
            base = base.where(
                (transfers.c.accepted_at < ts)
                | and_(transfers.c.accepted_at == ts, transfers.c.id < tid)
            )
        if counterparty:
            sides = [
                base.where(
                    transfers.c.debtor_bank == bank, transfers.c.creditor_bank == counterparty
                ),
                base.where(
                    transfers.c.debtor_bank == counterparty, transfers.c.creditor_bank == bank
                ),
            ]
        else:
            sides = [base.where(transfers.c.debtor_bank == bank)]
            sides.append(base.where(transfers.c.creditor_bank == bank))
        if recall_state is not None:
            # The bank's recalls in that state, on the side each query reads:
            # few rows, by the recalls' own (bank, requested_at) indexes.
            in_state = recalls.c.state == int(recall_state)
            sides = [
                sides[0].where(
                    transfers.c.id.in_(
                        select(recalls.c.transfer_id).where(recalls.c.debtor_bank == bank, in_state)
                    )
                ),
                sides[1].where(
                    transfers.c.id.in_(
                        select(recalls.c.transfer_id).where(
                            recalls.c.creditor_bank == bank, in_state
                        )
                    )
                ),
            ]
        found: list[tuple[datetime, str, tuple[Any, ...]]] = []
        for query in sides:
            for r in self.conn.execute(query):
                row = tuple(r)
                found.append((utc(row[ACCEPTED_AT]), str(row[0]), row))
        found.sort(key=lambda f: (f[0], f[1]), reverse=True)
        out = []
        for _, _, row in found[:limit]:
            states = tuple(CycleState(s) for s in row[N_TRANSFER_COLUMNS:] if s is not None)
            out.append((transfer_of(row[:N_TRANSFER_COLUMNS]), states))
        return out

    def audit_snapshot(self) -> AuditSnapshot:
        """Every row the audit's checks read (adapters/db/audit_snapshot.py)."""
        return load_audit_snapshot(self.conn)

    def ledger_totals(self) -> dict[str, tuple[int, int, int]]:
        """currency -> (sum of balances, sum of entries, number of entries)."""
        balances = {
            c: int(b or 0)
            for c, b in self.conn.execute(
                select(accounts.c.currency, func.sum(accounts.c.balance)).group_by(
                    accounts.c.currency
                )
            )
        }
        entries = {
            c: (int(s or 0), int(n))
            for c, s, n in self.conn.execute(
                select(
                    ledger_entries.c.currency,
                    func.sum(ledger_entries.c.amount),
                    func.count(),
                ).group_by(ledger_entries.c.currency)
            )
        }
        out: dict[str, tuple[int, int, int]] = {}
        for currency in sorted(set(balances) | set(entries)):
            s, n = entries.get(currency, (0, 0))
            out[currency] = (balances.get(currency, 0), s, n)
        return out

    def transfer_events(
        self, bank: str, since: datetime, limit: int
    ) -> list[tuple[datetime, TransferStatus, StoredTransfer | None, Cycle | None]]:
        """What changed for a bank at or after `since`, oldest first, with the
        status it moved to: transfers it is party to that were accepted (or
        settled gross) or cancelled, and cycles it has a position in that closed
        or settled."""
        party = (transfers.c.debtor_bank == bank) | (transfers.c.creditor_bank == bank)
        out: list[tuple[datetime, TransferStatus, StoredTransfer | None, Cycle | None]] = []
        for column in (transfers.c.accepted_at, transfers.c.cancelled_at):
            query = select(*TRANSFER_COLUMNS, column).where(party, column >= since)
            for r in self.conn.execute(query.order_by(column).limit(limit)):
                t = transfer_of(tuple(r[:N_TRANSFER_COLUMNS]))
                if column is transfers.c.cancelled_at:
                    status = TransferStatus.CANCELLED
                else:
                    status = TransferStatus.SETTLED if t.gross else TransferStatus.ACCEPTED
                out.append((utc(r[-1]), status, t, None))
        mine = select(positions.c.cycle_id).where(positions.c.bank_code == bank)
        changes = (
            (cycles.c.closed_at, CycleState.CLOSED, TransferStatus.CLOSED),
            (cycles.c.settled_at, CycleState.SETTLED, TransferStatus.SETTLED),
        )
        for column, state, moved_to in changes:
            query = select(cycles).where(column >= since, cycles.c.id.in_(mine))
            for r in self.conn.execute(query.order_by(column).limit(limit)):
                cycle = cycle_of(r)
                at = cycle.closed_at if state is CycleState.CLOSED else cycle.settled_at
                assert at is not None
                out.append((at, moved_to, None, replace(cycle, state=state)))
        out.sort(key=lambda e: e[0])
        return out[:limit]
