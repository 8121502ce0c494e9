"""The transfers repository: stored transfers by id, the batch's bulk
insert (COPY on PostgreSQL), the lifecycle's set-oriented writes (resolved
reservations, returned transfers) and the expirer's read, and the per-cycle
sums of their legs."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import (
    Connection,
    bindparam,
    case,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.exc import IntegrityError

from remitnet.services.adapters.db.banks import SqlBanks
from remitnet.services.adapters.db.copy import NULL, code_field, copy_rows, text_field, time_field
from remitnet.services.adapters.db.dialect import Dialect
from remitnet.services.adapters.db.keys import key_in
from remitnet.services.adapters.db.rows import TRANSFER_COLUMNS, transfer_of
from remitnet.services.adapters.db.schema import transfers
from remitnet.services.domain.model import HUB, StoredTransfer, TransferStatus
from remitnet.services.service_layer.unit_of_work import TransferIdTaken

_COPY_COLUMNS = (
    "id", "debtor_bank", "creditor_bank", "currency", "amount", "remittance_info", "status",
    "cycle_id", "accepted_at", "quote_id", "creditor_currency", "creditor_amount",
    "creditor_cycle_id", "fee", "fx_provider", "deadline", "reason", "return_of", "purpose",
    "home_region",
)  # fmt: skip
_COPY_TRANSFERS = f"COPY transfers ({', '.join(_COPY_COLUMNS)}) FROM STDIN"


_NO_FX = "\t".join([NULL] * 6)  # quote_id .. fx_provider
_NO_LIFECYCLE = "\t".join([NULL] * 3)  # deadline, reason, return_of


def copy_text_rows(items: Sequence[StoredTransfer], region: Mapping[str, str]) -> str:
    """The batch's transfers as one COPY text payload. Formatting rows here
    is several times cheaper than the driver's row-by-row dumpers. Only
    remittance_info and reason may hold free text; every other text column
    holds a validated code, UUID or cycle id, which has nothing to escape
    (purpose too: upper-case letters and digits, `make_instruction`).
    resolved_at and returned_by are NULL in every new transfer (not
    written: their default)."""
    stamps: dict[datetime, str] = {}
    lines = []
    for t in items:
        stamp = time_field(stamps, t.accepted_at)
        info = text_field(t.remittance_info) if t.remittance_info else ""
        if t.quote_id is None:
            fx = _NO_FX
        else:
            provider = code_field(t.fx_provider)
            # A reserved transfer has no creditor leg in a cycle yet.
            ccycle = code_field(t.creditor_cycle_id)
            fx = (
                f"{t.quote_id}\t{t.creditor_currency}\t{t.creditor_amount}\t"
                f"{ccycle}\t{t.fee}\t{provider}"
            )
        deadline, reason, return_of = t.deadline, t.reason, t.return_of
        if deadline is None and reason is None and return_of is None:
            lifecycle = _NO_LIFECYCLE
        else:
            due = NULL
            if deadline is not None:
                due = time_field(stamps, deadline)
            lifecycle = f"{due}\t{text_field(reason)}\t{code_field(return_of)}"
        lines.append(
            f"{t.transfer_id}\t{t.debtor}\t{t.creditor}\t{t.currency}\t{t.amount}\t{info}\t"
            f"{int(t.status)}\t{t.cycle_id}\t{stamp}\t{fx}\t{lifecycle}\t"
            f"{code_field(t.purpose)}\t{region[t.debtor]}\n"
        )
    return "".join(lines)


_resolve = (
    update(transfers)
    .where(transfers.c.id == bindparam("t_id"))
    .values(
        status=bindparam("t_status"),
        cycle_id=bindparam("t_cycle"),
        creditor_cycle_id=bindparam("t_ccycle"),
        resolved_at=bindparam("t_resolved"),
        reason=bindparam("t_reason"),
    )
)
_mark_returned = (
    update(transfers)
    .where(transfers.c.id == bindparam("t_id"))
    .values(returned_by=bindparam("t_return"))
)

# With array parameters: every row of the set in one statement.
_RESOLVE_ARRAYS = text(
    "UPDATE transfers SET status = v.status, cycle_id = v.cycle_id, "
    "creditor_cycle_id = v.creditor_cycle_id, resolved_at = v.resolved_at, reason = v.reason "
    "FROM unnest(CAST(:ids AS UUID[]), CAST(:statuses AS SMALLINT[]), "
    "CAST(:cycles AS VARCHAR[]), CAST(:ccycles AS VARCHAR[]), "
    "CAST(:resolved AS TIMESTAMPTZ[]), CAST(:reasons AS VARCHAR[])) "
    "AS v(id, status, cycle_id, creditor_cycle_id, resolved_at, reason) "
    "WHERE transfers.id = v.id"
)
_MARK_RETURNED_ARRAYS = text(
    "UPDATE transfers SET returned_by = v.returned_by "
    "FROM unnest(CAST(:ids AS UUID[]), CAST(:returns AS UUID[])) AS v(id, returned_by) "
    "WHERE transfers.id = v.id"
)


def _is_primary_key(exc: Exception) -> bool:
    """A unique violation of the transfers' primary key (PostgreSQL's and
    CockroachDB's constraint names, SQLite's message), not of another
    unique index (a second return of one transfer)."""
    orig = exc.orig if isinstance(exc, IntegrityError) else exc
    diag = getattr(orig, "diag", None)
    name = getattr(diag, "constraint_name", None) or ""
    if name:
        return name in ("pk_transfers", "transfers_pkey", "primary")
    return "transfers.id" in str(orig)


class SqlTransfers:
    """TransferRepository over a Connection. Each transfer is written with
    its debtor's home region, found through `banks`."""

    __slots__ = ("banks", "conn", "dialect")

    def __init__(self, conn: Connection, dialect: Dialect, banks: SqlBanks) -> None:
        self.conn = conn
        self.dialect = dialect
        self.banks = banks

    def existing(self, ids: Collection[str]) -> dict[str, StoredTransfer]:
        match = key_in(transfers.c.id, ids, self.dialect, UUID())
        rows = self.conn.execute(select(*TRANSFER_COLUMNS).where(match))
        return {str(r[0]): transfer_of(tuple(r)) for r in rows}

    def get(self, transfer_id: str) -> StoredTransfer | None:
        row = self.conn.execute(
            select(*TRANSFER_COLUMNS).where(transfers.c.id == transfer_id)
        ).first()
        return None if row is None else transfer_of(tuple(row))

    def all(self) -> Iterator[StoredTransfer]:
        query = select(*TRANSFER_COLUMNS)
        for r in self.conn.execution_options(yield_per=10_000).execute(query):
            yield transfer_of(tuple(r))

    def add(
        self, items: Sequence[StoredTransfer], regions: Mapping[str, str] | None = None
    ) -> None:
        """Each transfer is written with its debtor's home region, from
        `regions` (bank code -> region; looked up in one query for debtors
        it lacks)."""
        if not items:
            return
        region = self.banks.home_regions({t.debtor for t in items}, regions)
        if self.dialect.copy:
            # COPY in the same transaction: the batch path's largest cost, and
            # several times faster than row-at-a-time INSERTs.
            try:
                copy_rows(self.conn, _COPY_TRANSFERS, (copy_text_rows(items, region),))
            except psycopg.errors.UniqueViolation as exc:
                if _is_primary_key(exc):
                    raise TransferIdTaken(str(exc)) from exc
                raise
            return
        rows = [
            {
                "id": t.transfer_id,
                "debtor_bank": t.debtor,
                "creditor_bank": t.creditor,
                "currency": t.currency,
                "amount": t.amount,
                "remittance_info": t.remittance_info,
                "status": int(t.status),
                "cycle_id": t.cycle_id,
                "accepted_at": t.accepted_at,
                "quote_id": t.quote_id,
                "creditor_currency": t.creditor_currency,
                "creditor_amount": t.creditor_amount,
                "creditor_cycle_id": t.creditor_cycle_id,
                "fee": t.fee if t.quote_id is not None else None,
                "fx_provider": t.fx_provider,
                "deadline": t.deadline,
                "reason": t.reason,
                "return_of": t.return_of,
                "home_region": region[t.debtor],
                "purpose": t.purpose,
            }
            for t in items
        ]
        try:
            self.conn.execute(insert(transfers), rows)
        except IntegrityError as exc:
            if _is_primary_key(exc):
                raise TransferIdTaken(str(exc.orig)) from exc
            raise

    def cancel(self, transfer_id: str, now: datetime, reason: str | None = None) -> None:
        """CANCELLED at `now`; a RESERVED row is resolved then too, and the
        operator's `reason` (where given) is recorded. One statement."""
        values: dict[str, Any] = {
            "status": int(TransferStatus.CANCELLED),
            "cancelled_at": now,
            "resolved_at": case(
                (
                    transfers.c.status == int(TransferStatus.RESERVED),
                    literal(now, transfers.c.resolved_at.type),
                ),
                else_=transfers.c.resolved_at,
            ),
        }
        if reason is not None:
            values["reason"] = reason
        self.conn.execute(update(transfers).where(transfers.c.id == transfer_id).values(values))

    def resolve(self, changed: Sequence[StoredTransfer]) -> None:
        """Write each transfer's status, cycle_id, creditor_cycle_id,
        resolved_at and reason: transfers that left RESERVED (accepted into
        a cycle, rejected, expired). One statement with array parameters,
        else one executemany."""
        if not changed:
            return
        if self.dialect.arrays:
            self.conn.execute(
                _RESOLVE_ARRAYS,
                {
                    "ids": [t.transfer_id for t in changed],
                    "statuses": [int(t.status) for t in changed],
                    "cycles": [t.cycle_id for t in changed],
                    "ccycles": [t.creditor_cycle_id for t in changed],
                    "resolved": [t.resolved_at for t in changed],
                    "reasons": [t.reason for t in changed],
                },
            )
            return
        self.conn.execute(
            _resolve,
            [
                {
                    "t_id": t.transfer_id,
                    "t_status": int(t.status),
                    "t_cycle": t.cycle_id,
                    "t_ccycle": t.creditor_cycle_id,
                    "t_resolved": t.resolved_at,
                    "t_reason": t.reason,
                }
                for t in changed
            ],
        )

    def due(self, now: datetime, limit: int) -> list[StoredTransfer]:
        """RESERVED transfers whose deadline is at or before `now`, oldest
        deadline first, at most `limit`: a range of the partial index of the
        reservations (status 5, a literal so that every plan, generic ones
        too, can use it), read in order."""
        rows = self.conn.execute(
            select(*TRANSFER_COLUMNS)
            .where(
                transfers.c.status == literal_column(str(int(TransferStatus.RESERVED))),
                transfers.c.deadline <= now,
            )
            .order_by(transfers.c.deadline)
            .limit(limit)
        )
        return [transfer_of(tuple(r)) for r in rows]

    def mark_returned(self, returns: Mapping[str, str]) -> None:
        """original transfer id -> the id of its return (`returned_by`). One
        statement with array parameters, else one executemany."""
        if not returns:
            return
        if self.dialect.arrays:
            self.conn.execute(
                _MARK_RETURNED_ARRAYS, {"ids": list(returns), "returns": list(returns.values())}
            )
            return
        self.conn.execute(_mark_returned, [{"t_id": k, "t_return": v} for k, v in returns.items()])

    def leg_sums(self, cycle_id: str) -> dict[str, list[int]]:
        """Per participant [sent count, received count, sent value, received
        value] of a cycle's legs, recomputed from the transfers themselves."""
        out: dict[str, list[int]] = {}

        def add(bank: str, index: int, count: int, value: int) -> None:
            row = out.setdefault(bank, [0, 0, 0, 0])
            row[index] += count
            row[index + 2] += value

        live = transfers.c.status != int(TransferStatus.CANCELLED)
        same = transfers.c.creditor_cycle_id.is_(None)
        n, total = func.count(), func.coalesce(func.sum(transfers.c.amount), 0)
        for side, column in ((0, transfers.c.debtor_bank), (1, transfers.c.creditor_bank)):
            rows = self.conn.execute(
                select(column, n, total)
                .where(transfers.c.cycle_id == cycle_id, live, same)
                .group_by(column)
            )
            for bank, count, value in rows:
                add(bank, side, int(count), int(value))
        # Cross-currency: the source leg is debtor -> provider, the target leg
        # provider -> creditor; the hub is the provider of those stored before
        # FX providers (fx_provider NULL).
        provider = transfers.c.fx_provider
        for bank, fxp, count, value in self.conn.execute(
            select(transfers.c.debtor_bank, provider, n, total)
            .where(transfers.c.cycle_id == cycle_id, live, ~same)
            .group_by(transfers.c.debtor_bank, provider)
        ):
            add(bank, 0, int(count), int(value))
            add(fxp or HUB, 1, int(count), int(value))
        credit = func.coalesce(func.sum(transfers.c.creditor_amount), 0)
        for bank, fxp, count, value in self.conn.execute(
            select(transfers.c.creditor_bank, provider, n, credit)
            .where(transfers.c.creditor_cycle_id == cycle_id, live)
            .group_by(transfers.c.creditor_bank, provider)
        ):
            add(fxp or HUB, 0, int(count), int(value))
            add(bank, 1, int(count), int(value))
        return out
