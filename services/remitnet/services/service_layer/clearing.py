"""Clearing use cases: the batch unit of work the netting engine commits,
and the reads and cancellation banks call directly."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection

from remitnet.services.adapters.db import feed
from remitnet.services.adapters.db import repository as repo
from remitnet.services.adapters.db.database import Database
from remitnet.services.domain.errors import FailedPrecondition, InvalidArgument, NotFound, Reason
from remitnet.services.domain.model import (
    HUB,
    CycleState,
    Instruction,
    StoredTransfer,
    TransferStatus,
    account_id,
    canonical_transfer_id,
    effective_status,
    position_account_id,
)
from remitnet.services.domain.netting import (
    AccountState,
    BatchResult,
    PositionDelta,
    apply_leg,
    clear_batch,
    within_limit,
)


@dataclass(frozen=True, slots=True)
class BatchCommit:
    result: BatchResult
    accounts: list[AccountState]  # touched accounts as committed
    attempts: int


def commit_batch(db: Database, items: Sequence[Instruction]) -> BatchCommit:
    """One serializable transaction for a whole batch: read the state the
    batch touches, decide every item in memory, write transfers, positions,
    account totals and used quotes with a few set-oriented statements."""
    attempts = 0
    states: dict[tuple[str, str], AccountState] = {}

    def unit(conn: Connection) -> BatchResult:
        nonlocal attempts
        attempts += 1
        existing = repo.existing_transfers(conn, [i.transfer_id for i in items])
        fresh = [i for i in items if i.transfer_id not in existing]
        quote_ids = {i.quote_id for i in fresh if i.quote_id is not None}
        quotes = repo.load_quotes(conn, quote_ids) if quote_ids else {}
        banks: set[str] = set()
        account_ids: set[str] = set()
        currencies: set[str] = set()
        for i in fresh:
            banks.add(i.debtor)
            banks.add(i.creditor)
            account_ids.add(account_id(i.debtor, i.currency))
            currencies.add(i.currency)
            if i.quote_id is None:
                account_ids.add(account_id(i.creditor, i.currency))
        for q in quotes.values():
            target = q.terms.target_currency
            currencies.add(target)
            account_ids.update(account_id(b, target) for b in banks)
            account_ids.add(position_account_id(HUB, target))
            account_ids.add(position_account_id(HUB, q.terms.source_currency))
        # The regions go into the rows written below (rows are homed in their
        # bank's region on CockroachDB): read with the statuses, one query.
        statuses, regions = repo.bank_statuses_and_regions(conn, banks) if banks else ({}, {})
        # The batch's time is its transfers' accepted_at and its feed events'
        # time: strictly after every earlier event of the banks it touches.
        heads = feed.load_heads(conn, banks)
        now = feed.event_time(heads, datetime.now(UTC))
        loaded = repo.load_account_states(conn, account_ids) if account_ids else {}
        states.clear()
        states.update({(s.bank, s.currency): s for s in loaded.values()})
        open_ids = repo.open_cycle_ids(conn, currencies) if currencies else {}
        # What the open cycles hold already: no total of theirs may pass int64.
        sums = repo.cycle_sums(conn, list(open_ids.values())) if open_ids else {}
        result = clear_batch(
            items,
            existing=existing,
            banks=statuses,
            accounts=states,
            open_cycles=open_ids,
            now=now,
            quotes=quotes,
            cycle_sums=sums,
        )
        repo.insert_transfers(conn, result.new_transfers, regions)
        repo.add_positions(conn, result.positions, regions)
        repo.add_unsettled(conn, result.account_deltas)
        repo.mark_quotes_used(conn, result.used_quotes, now)
        feed.append(conn, heads, feed.batch_events(result.new_transfers), now)
        return result

    result = db.write("clear_batch", unit)
    touched = {aid for aid in result.account_deltas}
    return BatchCommit(result, [s for s in states.values() if s.account_id in touched], attempts)


@dataclass(frozen=True, slots=True)
class TransferView:
    transfer: StoredTransfer
    status: TransferStatus


def _status(conn: Connection, t: StoredTransfer) -> TransferStatus:
    ids = [c for c in (t.cycle_id, t.creditor_cycle_id) if c]
    states = repo.cycle_states(conn, ids) if ids else {}
    return effective_status(t.status, *states.values())


def _visible(t: StoredTransfer, caller: str | None) -> bool:
    return caller is None or caller in (t.debtor, t.creditor)


def get_transfer(db: Database, caller: str | None, transfer_id: str) -> TransferView:
    """A transfer the caller is party to (the operator, caller None, sees all).
    Others' transfers are reported as absent, not as forbidden."""
    tid = canonical_transfer_id(transfer_id)

    def unit(conn: Connection) -> TransferView:
        t = repo.get_transfer(conn, tid)
        if t is None or not _visible(t, caller):
            raise NotFound(Reason.TRANSFER_NOT_FOUND, f"no transfer {tid}")
        return TransferView(t, _status(conn, t))

    return db.read(unit)


def encode_page_token(t: StoredTransfer) -> str:
    raw = f"{t.accepted_at.isoformat()}|{t.transfer_id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_page_token(token: str) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        ts, tid = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return datetime.fromisoformat(ts), canonical_transfer_id(tid)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(
            Reason.INVALID_PAGE_TOKEN, "page_token is not one we issued"
        ) from None


def list_transfers(
    db: Database,
    caller: str,
    *,
    status: TransferStatus | None,
    cycle_id: str,
    counterparty: str,
    page_token: str,
    page_size: int,
) -> tuple[list[TransferView], str]:
    before = decode_page_token(page_token)

    def unit(conn: Connection) -> list[tuple[StoredTransfer, tuple[CycleState, ...]]]:
        return repo.list_transfers(
            conn,
            bank=caller,
            counterparty=counterparty,
            cycle_id=cycle_id,
            status=status,
            before=before,
            limit=page_size,
        )

    rows = db.read(unit)
    views = [TransferView(t, effective_status(t.status, *s)) for t, s in rows]
    token = encode_page_token(rows[-1][0]) if len(rows) == page_size else ""
    return views, token


def cancel_transfer(db: Database, caller: str, transfer_id: str) -> TransferView:
    """Take an accepted transfer back out of its still-open cycle. The
    creditor loses the credit, so its own limit must still hold after."""
    tid = canonical_transfer_id(transfer_id)

    def unit(conn: Connection) -> TransferView:
        t = repo.get_transfer(conn, tid)
        if t is None or not _visible(t, caller):
            raise NotFound(Reason.TRANSFER_NOT_FOUND, f"no transfer {tid}")
        if t.debtor != caller:
            raise FailedPrecondition(
                Reason.NOT_TRANSFER_DEBTOR, "only the debtor bank can cancel a transfer"
            )
        if t.status is TransferStatus.CANCELLED:
            return TransferView(t, TransferStatus.CANCELLED)
        if t.gross:
            raise FailedPrecondition(
                Reason.TRANSFER_NOT_CANCELLABLE, "a gross transfer is final once settled"
            )
        legs = t.legs()
        for cid in {leg.cycle_id for leg in legs}:
            cycle = repo.get_cycle(conn, cid)
            assert cycle is not None
            if cycle.state is not CycleState.OPEN:
                raise FailedPrecondition(
                    Reason.CYCLE_NOT_OPEN,
                    f"cycle {cycle.id} is closed; the transfer can no longer be cancelled",
                )
        ids = {position_account_id(p, leg.currency) for leg in legs for p in (leg.payer, leg.payee)}
        loaded = repo.load_account_states(conn, ids)
        states = {(a.bank, a.currency): a for a in loaded.values()}
        positions: dict[tuple[str, str], PositionDelta] = {}
        deltas: dict[str, int] = {}
        for leg in legs:
            apply_leg(leg, states, positions, deltas, -1)
        creditor = states[(t.creditor, t.credit_currency)]
        if not within_limit(creditor.balance, creditor.net_debit_cap, creditor.unsettled_net):
            raise FailedPrecondition(
                Reason.CANCEL_EXCEEDS_CREDITOR_HEADROOM,
                "the creditor has already used this credit; cancelling would breach its limit",
            )
        now = feed.publish(
            conn, feed.transfer_events(t, TransferStatus.CANCELLED), datetime.now(UTC)
        )
        repo.cancel_transfer(conn, tid, now)
        repo.add_positions(conn, positions)
        repo.add_unsettled(conn, deltas)
        cancelled = repo.get_transfer(conn, tid)
        assert cancelled is not None
        return TransferView(cancelled, TransferStatus.CANCELLED)

    return db.write("cancel_transfer", unit)
