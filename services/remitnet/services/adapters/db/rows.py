"""Rows to domain entities, for the mappings more than one repository (and
the read models and the feed) share: times, transfers and cycles."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from remitnet.services.adapters.db.schema import transfers
from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.model import CycleState, StoredTransfer, TransferStatus


def utc(ts: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


TRANSFER_COLUMNS = (
    transfers.c.id,
    transfers.c.debtor_bank,
    transfers.c.creditor_bank,
    transfers.c.currency,
    transfers.c.amount,
    transfers.c.remittance_info,
    transfers.c.status,
    transfers.c.cycle_id,
    transfers.c.accepted_at,
    transfers.c.quote_id,
    transfers.c.creditor_currency,
    transfers.c.creditor_amount,
    transfers.c.creditor_cycle_id,
    transfers.c.fee,
    transfers.c.fx_provider,
    transfers.c.deadline,
    transfers.c.resolved_at,
    transfers.c.reason,
    transfers.c.return_of,
    transfers.c.returned_by,
    transfers.c.purpose,
)
N_TRANSFER_COLUMNS = len(TRANSFER_COLUMNS)
ACCEPTED_AT = 8  # index of accepted_at in TRANSFER_COLUMNS


def transfer_of(r: tuple[Any, ...]) -> StoredTransfer:
    """A StoredTransfer from a row of TRANSFER_COLUMNS (as a tuple). The
    constructor is positional on purpose: the columns are the fields in
    order, so this is a straight row-to-tuple mapping, read per row of a
    batch. New transfers are made by `StoredTransfer.from_instruction`."""
    tid, debtor, creditor, currency, amount, info, status, cycle_id, accepted = r[:9]
    quote_id, ccur, camount, ccycle, fee, provider = r[9:15]
    deadline, resolved_at, reason, return_of, returned_by, purpose = r[15:21]
    return StoredTransfer(
        str(tid),
        str(debtor),
        str(creditor),
        str(currency),
        int(amount),
        str(info),
        TransferStatus(status),
        str(cycle_id),
        utc(accepted),
        None if quote_id is None else str(quote_id),
        ccur,
        camount,
        ccycle,
        int(fee or 0),
        provider,
        None if deadline is None else utc(deadline),
        None if resolved_at is None else utc(resolved_at),
        reason,
        None if return_of is None else str(return_of),
        None if returned_by is None else str(returned_by),
        purpose,
    )


def cycle_of(row: Any) -> Cycle:
    """A Cycle from a row of the whole cycles table."""
    c = row._mapping
    return Cycle(
        c["id"],
        c["currency"],
        c["seq"],
        CycleState(c["state"]),
        utc(c["opened_at"]),
        None if c["closed_at"] is None else utc(c["closed_at"]),
        None if c["settled_at"] is None else utc(c["settled_at"]),
        c["transfer_count"],
        c["gross_value"],
        c["net_value"],
    )
