"""The gauges collector's read of the scheme lifecycle (adapters/collector.py):
per creditor bank, the transfers awaiting its confirmation and the recalls
awaiting its answer, with how many are near their deadline. Two grouped
reads of the partial indexes of the open rows (transfers with status 5,
RESERVED; recalls with state 1, REQUESTED), whatever the tables' size."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, case, func, literal_column, select

from remitnet.services.adapters.db.rows import utc
from remitnet.services.adapters.db.schema import recalls, transfers
from remitnet.services.domain.lifecycle import RecallState
from remitnet.services.domain.model import TransferStatus


@dataclass(slots=True)
class BankLifecycle:
    """What one creditor bank has to answer."""

    reservations: int = 0  # transfers awaiting its confirmation
    reservations_expiring: int = 0  # ... with a deadline within the horizon (or past)
    recalls: int = 0  # recalls awaiting its answer
    recalls_expiring: int = 0  # ... whose window ends within the horizon
    oldest_recall: datetime | None = None  # when the oldest of them was requested


@dataclass(slots=True)
class LifecycleGauges:
    banks: dict[str, BankLifecycle] = field(default_factory=dict)
    # The earliest deadline of any reservation (None: none open).
    oldest_deadline: datetime | None = None


def read(
    conn: Connection,
    now: datetime,
    *,
    reservations_within: timedelta,
    recalls_within: timedelta,
) -> LifecycleGauges:
    """Open reservations and recalls per creditor bank as of `now`."""
    out = LifecycleGauges()
    soon = now + reservations_within
    rows = conn.execute(
        select(
            transfers.c.creditor_bank,
            func.count(),
            func.sum(case((transfers.c.deadline <= soon, 1), else_=0)),
            func.min(transfers.c.deadline),
        )
        # The status a literal, as in the expirer's read (transfers.due):
        # every plan, generic ones too, can use the partial index.
        .where(transfers.c.status == literal_column(str(int(TransferStatus.RESERVED))))
        .group_by(transfers.c.creditor_bank)
    )
    for bank, count, expiring, earliest in rows:
        entry = out.banks.setdefault(str(bank), BankLifecycle())
        entry.reservations = int(count)
        entry.reservations_expiring = int(expiring or 0)
        if earliest is not None:
            first = utc(earliest)
            if out.oldest_deadline is None or first < out.oldest_deadline:
                out.oldest_deadline = first
    window_end = now + recalls_within
    rows = conn.execute(
        select(
            recalls.c.creditor_bank,
            func.count(),
            func.sum(case((recalls.c.deadline <= window_end, 1), else_=0)),
            func.min(recalls.c.requested_at),
        )
        .where(recalls.c.state == literal_column(str(int(RecallState.REQUESTED))))
        .group_by(recalls.c.creditor_bank)
    )
    for bank, count, expiring, oldest in rows:
        entry = out.banks.setdefault(str(bank), BankLifecycle())
        entry.recalls = int(count)
        entry.recalls_expiring = int(expiring or 0)
        entry.oldest_recall = None if oldest is None else utc(oldest)
    return out
