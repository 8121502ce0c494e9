"""Clearing use cases: the batch unit of work the netting engine commits,
and the reads and cancellation banks call directly."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from remitnet.services.domain.errors import InvalidArgument, NotFound, Reason
from remitnet.services.domain.events import batch_events, event_time, transfer_events
from remitnet.services.domain.model import (
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
    clear_batch,
    take_back,
)
from remitnet.services.service_layer.unit_of_work import Transactions, UnitOfWork


@dataclass(frozen=True, slots=True)
class BatchCommit:
    result: BatchResult
    accounts: list[AccountState]  # touched accounts as committed
    attempts: int
    # Home region of each bank of the batch, as read to home its rows: what
    # the corridor metrics label its transfers with (no second read).
    regions: dict[str, str]


def commit_batch(db: Transactions, items: Sequence[Instruction]) -> BatchCommit:
    """One serializable transaction for a whole batch: read the state the
    batch touches, decide every item in memory, write transfers, positions,
    account totals and used quotes with a few set-oriented statements."""
    attempts = 0
    states: dict[tuple[str, str], AccountState] = {}
    homes: dict[str, str] = {}

    def unit(uow: UnitOfWork) -> BatchResult:
        nonlocal attempts
        attempts += 1
        existing = uow.transfers.existing([i.transfer_id for i in items])
        fresh = [i for i in items if i.transfer_id not in existing]
        quote_ids = {i.quote_id for i in fresh if i.quote_id is not None}
        quotes = uow.quotes.get_many(quote_ids) if quote_ids else {}
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
        # The quotes' FX providers are read with the parties (their status,
        # with the parties' statuses; their accounts in both currencies, with
        # the parties' accounts): no query of their own.
        participants = set(banks)
        targets: set[str] = set()
        for q in quotes.values():
            source, target = q.terms.source_currency, q.terms.target_currency
            targets.add(target)
            if q.provider is not None:
                participants.add(q.provider)
                account_ids.add(account_id(q.provider, source))
                account_ids.add(account_id(q.provider, target))
        for target in targets:
            currencies.add(target)
            account_ids.update(account_id(b, target) for b in banks)
        # The regions go into the rows written below (rows are homed in their
        # bank's region on CockroachDB): read with the statuses, one query.
        statuses, roles, regions = (
            uow.banks.statuses_roles_and_regions(participants) if participants else ({}, {}, {})
        )
        homes.clear()
        homes.update(regions)
        # The batch's time is its transfers' accepted_at and its feed events'
        # time: strictly after every earlier event of the banks it touches
        # (its parties: an FX provider gets no feed event for a batch).
        heads = uow.events.heads(banks)
        now = event_time(heads, datetime.now(UTC))
        loaded = uow.accounts.states(account_ids) if account_ids else {}
        states.clear()
        states.update({(s.bank, s.currency): s for s in loaded.values()})
        open_ids = uow.cycles.open_ids(currencies) if currencies else {}
        # What the open cycles hold already: no total of theirs may pass int64.
        sums = uow.cycles.sums(list(open_ids.values())) if open_ids else {}
        result = clear_batch(
            items,
            existing=existing,
            banks=statuses,
            accounts=states,
            open_cycles=open_ids,
            now=now,
            quotes=quotes,
            cycle_sums=sums,
            roles=roles,
        )
        uow.transfers.add(result.new_transfers, regions)
        uow.positions.add(result.positions, regions)
        uow.accounts.add_unsettled(result.account_deltas)
        uow.quotes.mark_used(result.used_quotes, now)
        uow.events.append(heads, batch_events(result.new_transfers), now)
        return result

    result = db.write("clear_batch", unit)
    touched = {aid for aid in result.account_deltas}
    accounts = [s for s in states.values() if s.account_id in touched]
    return BatchCommit(result, accounts, attempts, homes)


@dataclass(frozen=True, slots=True)
class TransferView:
    transfer: StoredTransfer
    status: TransferStatus


def _status(uow: UnitOfWork, t: StoredTransfer) -> TransferStatus:
    ids = [c for c in (t.cycle_id, t.creditor_cycle_id) if c]
    states = uow.cycles.states(ids) if ids else {}
    return effective_status(t.status, *states.values())


def get_transfer(db: Transactions, caller: str | None, transfer_id: str) -> TransferView:
    """A transfer the caller is party to (the operator, caller None, sees all).
    Others' transfers are reported as absent, not as forbidden."""
    tid = canonical_transfer_id(transfer_id)

    def unit(uow: UnitOfWork) -> TransferView:
        t = uow.transfers.get(tid)
        if t is None or not t.visible_to(caller):
            raise NotFound(Reason.TRANSFER_NOT_FOUND, f"no transfer {tid}")
        return TransferView(t, _status(uow, t))

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
    db: Transactions,
    caller: str,
    *,
    status: TransferStatus | None,
    cycle_id: str,
    counterparty: str,
    page_token: str,
    page_size: int,
) -> tuple[list[TransferView], str]:
    before = decode_page_token(page_token)

    def unit(uow: UnitOfWork) -> list[tuple[StoredTransfer, tuple[CycleState, ...]]]:
        return uow.views.list_transfers(
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


def cancel_transfer(db: Transactions, caller: str, transfer_id: str) -> TransferView:
    """Take an accepted transfer back out of its still-open cycle. The
    creditor loses the credit, so its own limit must still hold after."""
    tid = canonical_transfer_id(transfer_id)

    def unit(uow: UnitOfWork) -> TransferView:
        t = uow.transfers.get(tid)
        if t is None or not t.visible_to(caller):
            raise NotFound(Reason.TRANSFER_NOT_FOUND, f"no transfer {tid}")
        if not t.check_cancellable(caller):
            return TransferView(t, TransferStatus.CANCELLED)  # cancelled already
        legs = t.legs()
        for cid in {leg.cycle_id for leg in legs}:
            cycle = uow.cycles.get(cid)
            assert cycle is not None
            cycle.check_cancellable()
        ids = {position_account_id(p, leg.currency) for leg in legs for p in (leg.payer, leg.payee)}
        loaded = uow.accounts.states(ids)
        states = {(a.bank, a.currency): a for a in loaded.values()}
        positions, deltas = take_back(t, states)
        now = uow.events.publish(transfer_events(t, TransferStatus.CANCELLED), datetime.now(UTC))
        uow.transfers.cancel(tid, now)
        uow.positions.add(positions)
        uow.accounts.add_unsettled(deltas)
        cancelled = uow.transfers.get(tid)
        assert cancelled is not None
        return TransferView(cancelled, TransferStatus.CANCELLED)

    return db.write("cancel_transfer", unit)
