"""Lifecycle use cases: the creditor's confirmation of reserved transfers,
the hub's expiry of reservations and recalls, returns and recalls.

Each is one serializable unit keyed for idempotency: a confirmation by its
transfer (answering the same way again is a replay), a return by its own
id, a recall by its id (one per transfer), an expiry by the rows' state (a
row expired once is no longer due). An ambiguous commit re-run finds its
own effect. The servicers run them on the netting engine's thread
(`NettingEngine.run_serial`), so that within a process they never conflict
with the batches that write the same account rows; across processes the
database serialises them and the loser retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from remitnet.services.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Reason,
    RemitnetError,
)
from remitnet.services.domain.events import (
    event_time,
    recall_events,
    resolved_events,
)
from remitnet.services.domain.fx import Quote
from remitnet.services.domain.lifecycle import (
    RECALL_REJECT_REASONS,
    Confirmation,
    Recall,
    RecallRequest,
    RecallState,
    ReturnRequest,
    Step,
    check_code,
    confirmation_step,
    expired_refusal,
    recall_refusal,
    return_instruction,
    return_refusal,
)
from remitnet.services.domain.model import (
    Instruction,
    StoredTransfer,
    TransferStatus,
    account_id,
    canonical_transfer_id,
)
from remitnet.services.domain.netting import (
    Accepted,
    AccountState,
    Outcome,
    PositionDelta,
    Rejected,
    duplicate,
    expire,
    net_reserved,
    release,
)
from remitnet.services.service_layer.clearing import clear_in
from remitnet.services.service_layer.unit_of_work import Transactions, UnitOfWork


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    """The operator's settings of the lifecycle."""

    # A reservation's deadline unless the transfer asks for less, and the
    # longest a transfer may ask for.
    default_timeout_ms: int = 30_000
    max_timeout_ms: int = 30_000
    # How long a creditor has to answer a recall.
    recall_window_s: float = 86_400.0
    # Rows one expiry transaction takes, and how often the hub looks.
    expiry_batch: int = 5_000
    expiry_interval_s: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.default_timeout_ms <= self.max_timeout_ms:
            raise ValueError("the default confirmation timeout must be within (0, maximum]")
        if self.recall_window_s <= 0 or self.expiry_batch <= 0 or self.expiry_interval_s <= 0:
            raise ValueError("the recall window, expiry batch and interval must be positive")


def _clock(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else now


def _states(uow: UnitOfWork, ids: set[str]) -> dict[tuple[str, str], AccountState]:
    loaded = uow.accounts.states(ids) if ids else {}
    return {(a.bank, a.currency): a for a in loaded.values()}


def _account_ids(t: StoredTransfer) -> set[str]:
    """Every account a reserved transfer's release and netting touch (its
    `reservations()` are among them)."""
    ids = {account_id(t.debtor, t.currency), account_id(t.creditor, t.credit_currency)}
    if t.fx_provider is not None:
        ids.add(account_id(t.fx_provider, t.currency))
        ids.add(account_id(t.fx_provider, t.credit_currency))
    return ids


@dataclass(frozen=True, slots=True)
class Confirmed:
    """What one confirmation call decided: an outcome per answer, in
    order, and how many of the refused ones this call expired (a transfer
    past its deadline that the expirer had not reached yet: its
    reservation ends here, refused TRANSFER_EXPIRED like one expired
    before)."""

    outcomes: list[Outcome]
    expired: int = 0


def confirm_transfers(
    db: Transactions, caller: str, answers: Sequence[Confirmation], *, now: datetime | None = None
) -> Confirmed:
    """The creditor `caller` accepts or rejects reserved transfers, one
    outcome per answer, in order (`lifecycle.confirmation_step`): an
    acceptance nets the transfer into the then-open cycles and releases its
    reservation; a rejection releases it; a transfer past its deadline is
    expired here and refused (TRANSFER_EXPIRED). Answers are independent:
    one refusal does not fail the others. An answer given twice in one call
    sees the first."""
    (confirmed,) = confirm_many(db, [(caller, answers)], now=now)
    return confirmed


ConfirmCall = tuple[str, Sequence[Confirmation]]


def confirm_many(
    db: Transactions, calls: Sequence[ConfirmCall], *, now: datetime | None = None
) -> list[Confirmed]:
    """Several creditors' `confirm_transfers` calls, (caller, answers)
    each, in one unit and in order, one `Confirmed` per call: each call
    sees the ones before it, exactly as if they had run one after the
    other. One transaction for many small calls is what keeps confirmation
    near the batch path's rate (a bank answers a few dozen at a time)."""

    def unit(uow: UnitOfWork) -> list[Confirmed]:
        asked = {a.transfer_id for _, answers in calls for a in answers}
        found = uow.transfers.existing(list(asked))
        creditors = {caller for caller, _ in calls}
        mine = [t for t in found.values() if t.creditor in creditors]
        ids: set[str] = set()
        currencies: set[str] = set()
        for t in mine:
            if t.status is TransferStatus.RESERVED:
                ids |= _account_ids(t)
                currencies.add(t.currency)
                currencies.add(t.credit_currency)
        heads = uow.events.heads(creditors | {t.debtor for t in mine})
        at = event_time(heads, _clock(now))
        states = _states(uow, ids)
        open_ids, sums = uow.cycles.open_with_sums(currencies) if currencies else ({}, {})
        positions: dict[tuple[str, str], PositionDelta] = {}
        deltas: dict[str, int] = {}
        held: dict[str, int] = {}
        working: dict[str, StoredTransfer] = dict(found)
        changed: dict[str, StoredTransfer] = {}
        results: list[Confirmed] = []
        for caller, answers in calls:
            outcomes: list[Outcome] = []
            expired = 0
            for answer in answers:
                tid = answer.transfer_id
                current = working.get(tid)
                try:
                    step = confirmation_step(current, caller, answer, at)
                except RemitnetError as err:
                    outcomes.append(Rejected(err))
                    continue
                assert current is not None
                t = current
                if step is Step.REPLAY:
                    outcomes.append(Accepted(t, True))
                    continue
                if step is Step.ACCEPT:
                    netted = net_reserved(
                        t,
                        at,
                        accounts=states,
                        open_cycles=open_ids,
                        sums=sums,
                        positions=positions,
                        deltas=deltas,
                        reserve_deltas=held,
                    )
                    if isinstance(netted, Rejected):
                        outcomes.append(netted)
                        continue
                    working[tid] = changed[tid] = netted
                    outcomes.append(Accepted(netted, False))
                    continue
                if step is Step.REJECT:
                    release(t, states, held)
                    rejected = t.resolved(TransferStatus.REJECTED, at, answer.reason)
                    working[tid] = changed[tid] = rejected
                    outcomes.append(Accepted(rejected, False))
                else:  # past its deadline: expired now, as the expirer would
                    working[tid] = changed[tid] = expire(t, at, states, held)
                    outcomes.append(Rejected(expired_refusal(t)))
                    expired += 1
            results.append(Confirmed(outcomes, expired))
        if changed:
            uow.transfers.resolve(list(changed.values()))
            uow.positions.add(positions)
            uow.accounts.add_unsettled(deltas)
            uow.accounts.add_reserved(held)
            uow.events.append(heads, resolved_events(list(changed.values())), at)
        return results

    return db.write("confirm_transfers", unit)


@dataclass(frozen=True, slots=True)
class Expired:
    """What one expiry transaction expired."""

    transfers: int
    recalls: int


def expire_due(db: Transactions, now: datetime | None = None, limit: int = 5_000) -> Expired:
    """Expire reservations and recalls whose deadline has passed, at most
    `limit` of each, oldest first, from the database's state alone: after a
    restart every one past its deadline is expired once, and hubs running
    this at the same time conflict and retry rather than release twice (a
    row expired is no longer due)."""

    def unit(uow: UnitOfWork) -> Expired:
        clock = _clock(now)
        due = uow.transfers.due(clock, limit)
        recalls = uow.recalls.due(clock, limit)
        if not due and not recalls:
            return Expired(0, 0)
        banks = {b for t in due for b in (t.debtor, t.creditor)}
        banks |= {b for r in recalls for b in (r.debtor, r.creditor)}
        heads = uow.events.heads(banks)
        at = event_time(heads, clock)
        ids = {account_id(owner, ccy) for t in due for owner, ccy, _ in t.reservations()}
        states = _states(uow, ids)
        held: dict[str, int] = {}
        expired = [expire(t, at, states, held) for t in due]
        ended = [r.answered(RecallState.EXPIRED, at) for r in recalls]
        uow.transfers.resolve(expired)
        uow.accounts.add_reserved(held)
        uow.recalls.update(ended)
        events = resolved_events(expired)
        for r in ended:
            events += recall_events(r)
        uow.events.append(heads, events, at)
        return Expired(len(expired), len(ended))

    return db.write("expire_due", unit)


@dataclass(frozen=True, slots=True)
class Returns:
    """What one return call decided: an outcome per request, in order,
    and the open recalls its returns answered (ACCEPTED; EXPIRED when the
    recall's window had passed)."""

    outcomes: list[Outcome]
    recalls: list[Recall]


def return_transfers(
    db: Transactions,
    caller: str,
    requests: Sequence[ReturnRequest],
    *,
    default_timeout_ms: int = 30_000,
) -> Returns:
    """The creditor `caller` returns transfers, whole, one outcome per
    request: each return is cleared as a transfer of its own, back to the
    original's debtor (`lifecycle.return_instruction`), subject to the
    caller's headroom like any transfer. Replaying a return id gives the
    return; another request under that id is DUPLICATE_WITH_DIFFERENT_CONTENT.
    A return answers the original's open recall (ACCEPTED)."""

    def unit(uow: UnitOfWork) -> Returns:
        return _return_in(uow, caller, requests, default_timeout_ms)

    return db.write("return_transfers", unit)


def _return_in(
    uow: UnitOfWork, caller: str, requests: Sequence[ReturnRequest], default_timeout_ms: int
) -> Returns:
    """`return_transfers` inside the caller's unit."""
    prior = uow.transfers.existing([r.return_id for r in requests])
    originals = uow.transfers.existing([r.original_id for r in requests])
    quote_ids = {r.quote_id for r in requests if r.quote_id is not None}
    quotes = uow.quotes.get_many(quote_ids) if quote_ids else {}
    outcomes: list[Outcome | None] = []
    answered: list[Recall] = []
    items: list[Instruction] = []
    taken: set[str] = set()
    for r in requests:
        p = prior.get(r.return_id)
        if p is not None:
            same = p.debtor == caller and p.return_of == r.original_id and p.reason == r.reason
            outcomes.append(Accepted(p, True) if same else duplicate(r.return_id))
            continue
        original = originals.get(r.original_id)
        error: RemitnetError | None = return_refusal(original, caller, r.original_id)
        if error is None and r.original_id in taken:
            error = return_refusal(
                None if original is None else original._replace(returned_by=r.return_id),
                caller,
                r.original_id,
            )
        if error is None:
            assert original is not None
            try:
                item = return_instruction(original, r)
            except RemitnetError as err:
                error = err
            else:
                error = _quote_target_refusal(original, quotes.get(r.quote_id or ""))
        if error is not None:
            outcomes.append(Rejected(error))
            continue
        items.append(item)
        taken.add(r.original_id)
        outcomes.append(None)
    if items:
        result = clear_in(uow, items, default_timeout_ms=default_timeout_ms)
        cleared = iter(result.outcomes)
        outcomes = [o if o is not None else next(cleared) for o in outcomes]
        returned = {
            t.return_of: t.transfer_id for t in result.new_transfers if t.return_of is not None
        }
        if returned:
            uow.transfers.mark_returned(returned)
            answered = _answer_recalls(uow, returned)
    return Returns([o for o in outcomes if o is not None], answered)


def _quote_target_refusal(original: StoredTransfer, quote: Quote | None) -> RemitnetError | None:
    """A return pays back in the original's currency: its quote must buy
    exactly that (the netting path checks what the quote sells, and that
    it exists)."""
    if quote is None or quote.terms.target_currency == original.currency:
        return None
    return InvalidArgument(
        Reason.QUOTE_MISMATCH,
        f"a return of {original.transfer_id} pays back in {original.currency}; "
        f"quote {quote.quote_id} buys {quote.terms.target_currency}",
    )


def _answer_recalls(uow: UnitOfWork, returned: dict[str, str]) -> list[Recall]:
    """A return answers its original's open recall: ACCEPTED with the
    return's id, or EXPIRED if its window had passed unanswered, decided at
    the time the answer is stored."""
    open_ones = [
        r
        for r in uow.recalls.of_transfers(list(returned)).values()
        if r.state is RecallState.REQUESTED
    ]
    if not open_ones:
        return []
    heads = uow.events.heads({b for r in open_ones for b in (r.debtor, r.creditor)})
    at = event_time(heads, datetime.now(UTC))
    answered = [
        r.answered(RecallState.ACCEPTED, at, return_id=returned[r.transfer_id])
        if at < r.deadline
        else r.answered(RecallState.EXPIRED, at)
        for r in open_ones
    ]
    uow.recalls.update(answered)
    uow.events.append(heads, [e for r in answered for e in recall_events(r)], at)
    return answered


def recall_transfer(
    db: Transactions,
    caller: str,
    request: RecallRequest,
    *,
    window_s: float = 86_400.0,
) -> tuple[Recall, bool]:
    """The debtor `caller` asks for a transfer back (camt.056); the creditor
    has `window_s` to answer. One recall per transfer: the same recall id
    and content again is a replay (True); any other is RECALL_EXISTS."""

    def unit(uow: UnitOfWork) -> tuple[Recall, bool]:
        tid = request.transfer_id
        t = uow.transfers.get(tid)
        if t is None or not t.visible_to(caller):
            raise NotFound(Reason.TRANSFER_NOT_FOUND, f"no transfer {tid}")
        if t.debtor != caller:
            error = recall_refusal(t, caller, tid)
            assert error is not None  # NOT_TRANSFER_DEBTOR
            raise error
        existing = uow.recalls.get(tid)
        if existing is not None:
            if (
                existing.recall_id == request.recall_id
                and existing.debtor == caller
                and existing.same_request(request)
            ):
                return existing, True
            raise AlreadyExists(
                Reason.RECALL_EXISTS,
                f"transfer {tid} was recalled already ({existing.recall_id})",
                recall_id=existing.recall_id,
            )
        if uow.recalls.by_id(request.recall_id) is not None:
            raise AlreadyExists(
                Reason.DUPLICATE_WITH_DIFFERENT_CONTENT,
                f"recall {request.recall_id} exists for another transfer",
            )
        error = recall_refusal(t, caller, tid)
        if error is not None:
            raise error
        heads = uow.events.heads((t.debtor, t.creditor))
        at = event_time(heads, datetime.now(UTC))
        recall = Recall(
            request.recall_id,
            tid,
            t.debtor,
            t.creditor,
            request.reason,
            request.info,
            RecallState.REQUESTED,
            at,
            at + timedelta(seconds=window_s),
        )
        uow.recalls.add(recall, heads[t.debtor].region)
        uow.events.append(heads, recall_events(recall), at)
        return recall, False

    return db.write("recall_transfer", unit)


def accept_recall(
    db: Transactions,
    caller: str,
    request: ReturnRequest,
    *,
    default_timeout_ms: int = 30_000,
) -> tuple[Recall, Outcome]:
    """The creditor `caller` accepts the open recall of
    `request.original_id` by returning the transfer (camt.029 accepted, the
    pacs.004 with reason FOCR), in one unit: the recall cannot expire, nor
    be answered otherwise, between the check and the return. The same
    return id again is a replay (the recall ACCEPTED with it). Refused:
    RECALL_NOT_FOUND (none, or not the caller's), NOT_TRANSFER_CREDITOR,
    RECALL_NOT_OPEN (answered or past its window), or what the return
    itself is refused with; nothing is stored then."""

    def unit(uow: UnitOfWork) -> tuple[Recall, Outcome]:
        tid = request.original_id
        recall = uow.recalls.get(tid)
        if recall is None or not recall.visible_to(caller):
            raise NotFound(Reason.RECALL_NOT_FOUND, f"no recall of transfer {tid}")
        replay = recall.state is RecallState.ACCEPTED and recall.return_id == request.return_id
        if not replay:
            # Refuses the debtor, an answered recall and one past its window.
            recall.check_rejectable(caller, datetime.now(UTC))
            if recall.state is RecallState.REJECTED:
                raise FailedPrecondition(
                    Reason.RECALL_NOT_OPEN,
                    f"the recall of {tid} was rejected",
                    transfer_id=tid,
                )
        (outcome,) = _return_in(uow, caller, [request], default_timeout_ms).outcomes
        if isinstance(outcome, Rejected):
            raise outcome.error
        answered = uow.recalls.get(tid)
        assert answered is not None
        return answered, outcome

    return db.write("accept_recall", unit)


def reject_recall(db: Transactions, caller: str, transfer_id: str, reason: str) -> Recall:
    """The creditor `caller` refuses a recall (camt.029) with one of
    RECALL_REJECT_REASONS; refusing again is a replay."""
    tid = canonical_transfer_id(transfer_id)
    check_code(
        reason,
        RECALL_REJECT_REASONS,
        field="reason",
        what="ExternalPaymentCancellationRejection1Code",
    )

    def unit(uow: UnitOfWork) -> Recall:
        recall = uow.recalls.get(tid)
        if recall is None or not recall.visible_to(caller):
            raise NotFound(Reason.RECALL_NOT_FOUND, f"no recall of transfer {tid}")
        heads = uow.events.heads((recall.debtor, recall.creditor))
        at = event_time(heads, datetime.now(UTC))
        if not recall.check_rejectable(caller, at):
            return recall
        answered = recall.answered(RecallState.REJECTED, at, reason=reason)
        uow.recalls.update([answered])
        uow.events.append(heads, recall_events(answered), at)
        return answered

    return db.write("reject_recall", unit)


def get_recall(db: Transactions, caller: str | None, transfer_id: str) -> Recall:
    tid = canonical_transfer_id(transfer_id)

    def unit(uow: UnitOfWork) -> Recall:
        recall = uow.recalls.get(tid)
        if recall is None or not recall.visible_to(caller):
            raise NotFound(Reason.RECALL_NOT_FOUND, f"no recall of transfer {tid}")
        return recall

    return db.read(unit)
