"""Clearing use cases: the batch unit of work the netting engine commits,
and the reads and cancellation banks call directly."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from remitnet.services.domain.audit_trail import Action
from remitnet.services.domain.errors import InvalidArgument, NotFound, Reason
from remitnet.services.domain.events import (
    Head,
    batch_event_banks,
    batch_events,
    event_time,
    resolved_events,
    transfer_events,
)
from remitnet.services.domain.fx import Quote
from remitnet.services.domain.lifecycle import (
    Recall,
    RecallState,
    check_cancel_reason,
)
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
    CycleSums,
    Rejected,
    clear_batch,
    expire,
    release,
    take_back,
)
from remitnet.services.service_layer.unit_of_work import (
    Parties,
    Transactions,
    TransferIdTaken,
    UnitOfWork,
)


@dataclass(frozen=True, slots=True)
class Carried:
    """What a decided batch leaves behind, as the next batch's transaction
    will read it once this one commits: the working account states after
    its items, the open cycles' sums with its positions added, the time
    of its banks' feed events and the quotes it used (quote id -> transfer
    id). The engine decides the next batch against it while this one
    commits (`prepare_batch`)."""

    states: dict[tuple[str, str], AccountState]
    sums: dict[str, CycleSums]
    event_at: dict[str, datetime]
    used_quotes: dict[str, str]


NOTHING_CARRIED = Carried({}, {}, {}, {})


@dataclass(slots=True)
class BatchInputs:
    """Everything a batch's decision reads, as read in one snapshot."""

    existing: dict[str, StoredTransfer]
    quotes: dict[str, Quote]
    parties: Parties
    heads: dict[str, Head]
    states: dict[tuple[str, str], AccountState]
    open_ids: dict[str, str]
    sums: dict[str, CycleSums]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch decided outside its transaction, and what that decision
    assumed. Its transaction writes `result` only if it reads the same
    inputs (`matches`); otherwise it decides again."""

    inputs: BatchInputs  # as assumed (states before the batch's items)
    now: datetime
    result: BatchResult
    after: Carried


@dataclass(frozen=True, slots=True)
class BatchCommit:
    result: BatchResult
    accounts: list[AccountState]  # touched accounts as committed
    attempts: int
    # Home region of each bank of the batch, as read to home its rows: what
    # the corridor metrics label its transfers with (no second read).
    regions: dict[str, str]
    # Whether a prepared decision was written as it was.
    prepared_used: bool = False


def commit_batch(
    db: Transactions,
    items: Sequence[Instruction],
    *,
    default_timeout_ms: int = 30_000,
    prepared: Prepared | None = None,
    on_decided: Callable[[Carried], None] | None = None,
) -> BatchCommit:
    """One serializable transaction for a whole batch: read the state the
    batch touches, decide every item in memory, write transfers, positions,
    account totals and used quotes with a few set-oriented statements.
    Items whose creditor requires confirmation (or that ask for it) are
    reserved for `default_timeout_ms` unless they ask for less.

    The ids are not looked up first: the primary key refuses one stored
    already (TransferIdTaken), and only then is the batch decided again
    with its ids looked up, so that a replay answers from the stored
    transfer. A `prepared` decision is written as it is when the
    transaction reads what it assumed. `on_decided` gets what each
    attempt's decision leaves, as soon as it is made (before the writes)."""
    tries = [0]  # the attempt spoilt by a stored id and its re-run count as one
    try:
        return _commit(db, items, default_timeout_ms, prepared, on_decided, tries, look_up=False)
    except TransferIdTaken:
        tries[0] -= 1
        return _commit(db, items, default_timeout_ms, None, on_decided, tries, look_up=True)


def _commit(
    db: Transactions,
    items: Sequence[Instruction],
    default_timeout_ms: int,
    prepared: Prepared | None,
    on_decided: Callable[[Carried], None] | None,
    tries: list[int],
    *,
    look_up: bool,
) -> BatchCommit:
    first = True
    states: dict[tuple[str, str], AccountState] = {}
    homes: dict[str, str] = {}
    used = False

    def unit(uow: UnitOfWork) -> BatchResult:
        nonlocal first, used
        tries[0] += 1
        inputs = load_inputs(uow, items, look_up=look_up)
        homes.clear()
        homes.update(inputs.parties.regions)
        use = prepared is not None and first and matches(inputs, prepared)
        first = False
        if use:
            assert prepared is not None
            # Decided while the previous batch committed, against what this
            # transaction has just read: the same result, written as it is.
            used = True
            states.clear()
            states.update(prepared.after.states)
            result, now = prepared.result, prepared.now
            if on_decided is not None:
                on_decided(prepared.after)
        else:
            used = False
            now = event_time(inputs.heads, datetime.now(UTC))
            before = inputs.sums
            result = decide(items, inputs, now, default_timeout_ms)
            states.clear()
            states.update(inputs.states)
            if on_decided is not None:
                on_decided(carried(inputs.states, before, result, now))
        if not look_up:
            # A refusal can come from the stored transfer's own first attempt
            # (its quote used, its headroom spent by it): a stored id among
            # the refused is a replay, answered from the lookup.
            refused = [
                i.transfer_id
                for i, o in zip(items, result.outcomes, strict=True)
                if isinstance(o, Rejected)
            ]
            if refused and uow.transfers.existing(refused):
                raise TransferIdTaken("a refused item of the batch is stored already")
        write(uow, inputs, result, now)
        return result

    result = db.write("clear_batch", unit)
    touched = set(result.account_deltas) | set(result.reserve_deltas)
    accounts = [s for s in states.values() if s.account_id in touched]
    return BatchCommit(result, accounts, tries[0], homes, used)


def prepare_batch(
    db: Transactions,
    items: Sequence[Instruction],
    before: Carried,
    *,
    default_timeout_ms: int = 30_000,
) -> Prepared:
    """Decide a batch ahead of its transaction, while the previous one
    commits: against a snapshot, overlaid with what the previous batch
    leaves (`before`, not committed yet)."""
    inputs = db.read(lambda uow: load_inputs(uow, items, look_up=False))
    for qid, quote in inputs.quotes.items():
        by = before.used_quotes.get(qid)
        if by is not None and quote.used_by is None:
            inputs.quotes[qid] = replace(quote, used_by=by)
    for key in inputs.states:
        after = before.states.get(key)
        if after is not None:
            inputs.states[key] = _copy(after)
    for cid in inputs.open_ids.values():
        if cid in before.sums:
            inputs.sums[cid] = before.sums[cid]
    heads = dict(inputs.heads)
    for bank, at in before.event_at.items():
        head = heads.get(bank)
        if head is not None and at > head.last_at:
            heads[bank] = head._replace(last_at=at)
    now = event_time(heads, datetime.now(UTC))
    assumed = BatchInputs(
        inputs.existing,
        dict(inputs.quotes),
        inputs.parties,
        heads,
        {k: _copy(v) for k, v in inputs.states.items()},
        inputs.open_ids,
        dict(inputs.sums),
    )
    result = decide(items, inputs, now, default_timeout_ms)
    return Prepared(assumed, now, result, carried(inputs.states, assumed.sums, result, now))


def matches(read: BatchInputs, prepared: Prepared) -> bool:
    """Whether a transaction read what `prepared` was decided against: the
    decision is a pure function of these inputs and of its time, and its
    time is still after every event of its banks."""
    assumed = prepared.inputs
    if read.existing or assumed.existing or read.quotes != assumed.quotes:
        return False
    if read.parties != assumed.parties or read.open_ids != assumed.open_ids:
        return False
    if any(h.last_at >= prepared.now for h in read.heads.values()):
        return False
    if read.states.keys() != assumed.states.keys():
        return False
    for key, state in read.states.items():
        other = assumed.states[key]
        if (
            state.balance != other.balance
            or state.net_debit_cap != other.net_debit_cap
            or state.unsettled_net != other.unsettled_net
            or state.reserved != other.reserved
        ):
            return False
    zero = CycleSums()
    for cid in read.open_ids.values():
        if read.sums.get(cid, zero) != assumed.sums.get(cid, zero):
            return False
    return True


def carried(
    states: dict[tuple[str, str], AccountState],
    sums: dict[str, CycleSums],
    result: BatchResult,
    now: datetime,
) -> Carried:
    """What a batch decided against `states` and `sums` leaves (`states`
    are its working copies, changed by the decision)."""
    after = {cid: CycleSums(s.gross, s.fee) for cid, s in sums.items()}
    for (cid, _bank), delta in result.positions.items():
        total = after.get(cid)
        if total is None:
            total = after[cid] = CycleSums()
        total.gross += delta.sent
        total.fee += delta.fee
    at = dict.fromkeys(batch_event_banks(result.new_transfers), now)
    return Carried({k: _copy(v) for k, v in states.items()}, after, at, dict(result.used_quotes))


def _copy(s: AccountState) -> AccountState:
    return AccountState(
        s.account_id, s.bank, s.currency, s.balance, s.net_debit_cap, s.unsettled_net, s.reserved
    )


def load_inputs(uow: UnitOfWork, items: Sequence[Instruction], *, look_up: bool) -> BatchInputs:
    """Read what the decision of `items` needs. Without `look_up`, stored
    transfers are not read: the insert's primary key finds them."""
    existing = uow.transfers.existing([i.transfer_id for i in items]) if look_up else {}
    fresh = [i for i in items if i.transfer_id not in existing] if existing else items
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
    parties = uow.banks.parties(participants) if participants else Parties({}, {}, {}, frozenset())
    # The batch's time is its transfers' accepted_at and its feed events'
    # time: strictly after every earlier event of the banks it touches
    # (its parties: an FX provider gets no feed event for a batch).
    heads = uow.events.heads(banks)
    loaded = uow.accounts.states(account_ids) if account_ids else {}
    states = {(s.bank, s.currency): s for s in loaded.values()}
    # The open cycles, and what they hold already: no total of theirs may
    # pass int64.
    open_ids, sums = uow.cycles.open_with_sums(currencies) if currencies else ({}, {})
    return BatchInputs(existing, quotes, parties, heads, states, open_ids, sums)


def decide(
    items: Sequence[Instruction], inputs: BatchInputs, now: datetime, default_timeout_ms: int
) -> BatchResult:
    """The pure decision of `items` at `now`; changes `inputs.states`."""
    parties = inputs.parties
    return clear_batch(
        items,
        existing=inputs.existing,
        banks=parties.statuses,
        accounts=inputs.states,
        open_cycles=inputs.open_ids,
        now=now,
        quotes=inputs.quotes,
        cycle_sums=inputs.sums,
        roles=parties.roles,
        confirming=parties.confirming,
        default_timeout_ms=default_timeout_ms,
    )


def write(uow: UnitOfWork, inputs: BatchInputs, result: BatchResult, now: datetime) -> None:
    regions = inputs.parties.regions
    uow.transfers.add(result.new_transfers, regions)
    uow.positions.add(result.positions, regions)
    uow.accounts.add_unsettled(result.account_deltas)
    if result.reserve_deltas:
        uow.accounts.add_reserved(result.reserve_deltas)
    uow.quotes.mark_used(result.used_quotes, now)
    uow.events.append(inputs.heads, batch_events(result.new_transfers), now)


def clear_in(
    uow: UnitOfWork,
    items: Sequence[Instruction],
    states: dict[tuple[str, str], AccountState] | None = None,
    homes: dict[str, str] | None = None,
    *,
    default_timeout_ms: int = 30_000,
) -> BatchResult:
    """The clearing of `items` inside the caller's unit: what a batch does,
    and what a return does once its rules are checked (`lifecycle`), with
    its ids looked up. `states` and `homes`, when given, are filled with
    the working account states and the parties' regions."""
    inputs = load_inputs(uow, items, look_up=True)
    if homes is not None:
        homes.clear()
        homes.update(inputs.parties.regions)
    now = event_time(inputs.heads, datetime.now(UTC))
    result = decide(items, inputs, now, default_timeout_ms)
    if states is not None:
        states.clear()
        states.update(inputs.states)
    write(uow, inputs, result, now)
    return result


@dataclass(frozen=True, slots=True)
class TransferView:
    transfer: StoredTransfer
    status: TransferStatus
    recall: Recall | None = None


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
        return TransferView(t, _status(uow, t), uow.recalls.get(tid))

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
    kind: str = "",
    returned: bool | None = None,
    recall_state: RecallState | None = None,
) -> tuple[list[TransferView], str]:
    before = decode_page_token(page_token)

    def unit(
        uow: UnitOfWork,
    ) -> tuple[list[tuple[StoredTransfer, tuple[CycleState, ...]]], dict[str, Recall]]:
        rows = uow.views.list_transfers(
            bank=caller,
            counterparty=counterparty,
            cycle_id=cycle_id,
            status=status,
            before=before,
            limit=page_size,
            kind=kind,
            returned=returned,
            recall_state=recall_state,
        )
        recalls = uow.recalls.of_transfers([t.transfer_id for t, _ in rows]) if rows else {}
        return rows, recalls

    rows, recalls = db.read(unit)
    views = [
        TransferView(t, effective_status(t.status, *s), recalls.get(t.transfer_id)) for t, s in rows
    ]
    token = encode_page_token(rows[-1][0]) if len(rows) == page_size else ""
    return views, token


def cancel_transfer(
    db: Transactions,
    caller: str | None,
    transfer_id: str,
    reason: str = "",
    *,
    actor: str = "operator",
) -> TransferView:
    """Cancel a transfer. The debtor (`caller`) may cancel one still
    awaiting the creditor's confirmation: its reservation is released. The
    operator (`caller` None, with a `reason` for the record) may also take
    a netted transfer back out of its still-open cycle; the creditor loses
    the credit, so its own limit must still hold after. A reserved transfer
    past its deadline is expired instead (answered EXPIRED), as the hub's
    expirer would have. `actor` is the
    operator's principal, for the trail."""
    tid = canonical_transfer_id(transfer_id)
    why = check_cancel_reason(reason) if caller is None else None

    def unit(uow: UnitOfWork) -> TransferView:
        t = uow.transfers.get(tid)
        if t is None or not t.visible_to(caller):
            raise NotFound(Reason.TRANSFER_NOT_FOUND, f"no transfer {tid}")
        if not t.check_cancellable(caller):
            return TransferView(t, TransferStatus.CANCELLED)  # cancelled already
        if t.status is TransferStatus.RESERVED:
            ids = {account_id(owner, ccy) for owner, ccy, _ in t.reservations()}
            loaded = uow.accounts.states(ids)
            states = {(a.bank, a.currency): a for a in loaded.values()}
            held: dict[str, int] = {}
            banks = (t.debtor, t.creditor)
            heads = uow.events.heads(banks)
            now = event_time(heads, datetime.now(UTC))
            assert t.deadline is not None
            if now >= t.deadline:
                # Past its deadline it has expired, whether or not the
                # expirer got to it: expired here, as a confirmation would
                # find it, and answered as such.
                expired = expire(t, now, states, held)
                uow.transfers.resolve([expired])
                uow.accounts.add_reserved(held)
                uow.events.append(heads, resolved_events([expired]), now)
                return TransferView(expired, TransferStatus.EXPIRED)
            release(t, states, held)
            cancelled = t.resolved(TransferStatus.CANCELLED, now, why)
            uow.transfers.cancel(tid, now, why)
            uow.accounts.add_reserved(held)
            uow.events.append(heads, resolved_events([cancelled]), now)
        else:
            legs = t.legs()
            for cid in {leg.cycle_id for leg in legs}:
                cycle = uow.cycles.get(cid)
                assert cycle is not None
                cycle.check_cancellable()
            ids = {
                position_account_id(p, leg.currency) for leg in legs for p in (leg.payer, leg.payee)
            }
            loaded = uow.accounts.states(ids)
            states = {(a.bank, a.currency): a for a in loaded.values()}
            positions, deltas = take_back(t, states)
            events = transfer_events(t, TransferStatus.CANCELLED)
            now = uow.events.publish(events, datetime.now(UTC))
            uow.transfers.cancel(tid, now, why)
            uow.positions.add(positions)
            uow.accounts.add_unsettled(deltas)
        if caller is None:
            uow.trail.append(
                actor, Action.CANCEL_TRANSFER, {"transfer_id": tid, "reason": why or ""}, now
            )
        stored = uow.transfers.get(tid)
        assert stored is not None
        return TransferView(stored, TransferStatus.CANCELLED)

    return db.write("cancel_transfer", unit)
