"""What happened, as plain values, and the port that hears about it.

The netting engine, the use cases' callers (the servicers) and the server's
background loops describe each thing that happened (a batch committed, a
cycle closed, quotes answered, transfers refused before the engine, ...) as
one of the values below and hand it to an `Observer`. The service layer
knows nothing of what an observer does with them: the server wires the
metrics adapter (`adapters/observe.py`), and tests or tools that wire
nothing get `NO_OBSERVER`, which ignores everything.

Results are cheap to build and carry what the code producing them already
holds; an observer must not block (the engine calls it on the event loop,
between batches) and must not read the database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from remitnet.services.domain.errors import RemitnetError
from remitnet.services.domain.lifecycle import Recall
from remitnet.services.domain.model import StoredTransfer, TransferStatus
from remitnet.services.domain.netting import Outcome

if TYPE_CHECKING:
    from remitnet.services.service_layer.cycles import CycleView
    from remitnet.services.service_layer.lifecycle import Expired
    from remitnet.services.service_layer.settlement import Settlement


# Netting engine -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchCommitted:
    """One netting transaction committed: a whole batch, or one part of a
    batch split around an unstorable value."""

    outcomes: Sequence[Outcome]  # one per item of the transaction, in order
    new_transfers: Sequence[StoredTransfer]  # what it wrote (accepted, not replayed)
    # Home region of every bank of the transaction's new transfers, as the
    # transaction read them to home the rows it wrote.
    regions: Mapping[str, str]
    seconds: float  # the engine batch's transaction time, retries included


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """Transfers now waiting in the engine for a batch."""

    items: int


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """The controller's current batch limit and linger."""

    limit: int
    linger_s: float


@dataclass(frozen=True, slots=True)
class RequestsDropped:
    """Queued transfers dropped: their caller went away before a batch took them."""

    items: int


@dataclass(frozen=True, slots=True)
class BankRefused:
    """A call refused because the calling bank reached one of its bounds."""

    bank: str
    reason: str


# Clearing -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransfersRefused:
    """Transfers refused outside a committed batch (validation, singly or in
    a batch; a batch too large; an item the engine isolated as unstorable):
    how many, by reason. Each transfer is in exactly one result."""

    by_reason: Mapping[str, int]

    @staticmethod
    def of(errors: Iterable[RemitnetError]) -> TransfersRefused:
        return TransfersRefused(Counter(err.reason for err in errors))


@dataclass(frozen=True, slots=True)
class GrossSettled:
    """The outcome of one gross transfer (accepted, replayed or rejected)."""

    outcome: Outcome


@dataclass(frozen=True, slots=True)
class WatchRefused:
    """A WatchTransfers stream refused before its first event."""

    reason: str


@dataclass(frozen=True, slots=True)
class WatchStream:
    """A WatchTransfers stream opened (True) or ended (False)."""

    opened: bool


@dataclass(frozen=True, slots=True)
class WatchSent:
    """Status events sent on a WatchTransfers stream."""

    events: int


# FX -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuotesAnswered:
    """A CreateQuote or CreateQuotes call answered: quotes issued, and the
    refused ones by reason."""

    issued: int
    refused: Mapping[str, int]

    @staticmethod
    def of(issued: int, errors: Iterable[str]) -> QuotesAnswered:
        return QuotesAnswered(issued, Counter(errors))


# Cycles and settlement ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CycleClosed:
    currency: str
    trigger: str  # operator, schedule
    transfer_count: int
    gross_value: int
    net_value: int
    next_opened_at: datetime  # when the cycle opened in its place opened

    @staticmethod
    def of(closed: CycleView, opened: CycleView, trigger: str) -> CycleClosed:
        return CycleClosed(
            closed.cycle.currency,
            trigger,
            closed.transfer_count,
            closed.gross_value,
            closed.net_value,
            opened.cycle.opened_at,
        )


@dataclass(frozen=True, slots=True)
class CycleSettled:
    """A SettleCycle unit of work ran. `already_settled`: it found the cycle
    settled before (a replay), and settled nothing."""

    currency: str
    already_settled: bool
    seconds: float
    lag_s: float | None  # from the cycle's close to its settlement

    @staticmethod
    def of(settlement: Settlement, seconds: float) -> CycleSettled:
        c = settlement.cycle
        lag = (
            None
            if c.closed_at is None or c.settled_at is None
            else (c.settled_at - c.closed_at).total_seconds()
        )
        return CycleSettled(c.currency, settlement.already_settled, seconds, lag)


# Scheme lifecycle -----------------------------------------------------------
#
# What changed state is counted by the result that carries it (a
# reservation accepted, rejected, expired or cancelled; a return made; a
# recall requested, answered or expired); what was refused, by reason, and
# what was a replay, per operation: each item of a call in exactly one
# result, as for transfers. Operations: "confirm" (ConfirmTransfer(s)),
# "return", "recall", "answer_recall", "cancel" (the debtor's),
# "operator_cancel".


@dataclass(frozen=True, slots=True)
class ConfirmationsAnswered:
    """The creditor's answers the confirmation use case took, one outcome
    per answer in order: Accepted (an ACCEPTED or REJECTED transfer; a
    replay of the same answer), or Rejected with the hub's reason (too late:
    TRANSFER_EXPIRED, not its creditor, ...); `expired`: how many of the
    late ones this call expired (the expirer had not yet). Answers refused
    before it (validation) are a `LifecycleRefused` of their own."""

    outcomes: Sequence[Outcome]
    expired: int = 0


@dataclass(frozen=True, slots=True)
class ReturnsCleared:
    """Returns the return use case decided (ReturnTransfer), one outcome
    per request: the return transfer (its `reason` the
    ExternalReturnReason1Code), a replay, or a refusal with the hub's
    reason; and the open recalls those returns answered (ACCEPTED, or
    EXPIRED when found past their window)."""

    outcomes: Sequence[Outcome]
    recalls: Sequence[Recall] = ()


@dataclass(frozen=True, slots=True)
class RecallChanged:
    """A recall the debtor requested or the creditor answered (its state
    says which: REQUESTED, ACCEPTED or REJECTED), or the same request or
    answer again (`replayed`: nothing changed). An acceptance carries the
    return that answered it (`returned`, reason FOCR)."""

    recall: Recall
    replayed: bool
    returned: StoredTransfer | None = None


@dataclass(frozen=True, slots=True)
class TransferCancelled:
    """A cancel took effect: by the debtor (`operator` False) or the
    operator; `reserved`: the transfer was still awaiting confirmation (its
    reservation released), else it was netted (taken out of its open
    cycle). `replayed`: it was cancelled before. `expired`: it was past its
    deadline, so the call expired it instead (answered EXPIRED)."""

    operator: bool
    reserved: bool
    replayed: bool = False
    expired: bool = False

    @staticmethod
    def of(t: StoredTransfer, *, operator: bool, started: datetime) -> TransferCancelled:
        """From the cancelled transfer as stored, and when the call started:
        a reserved transfer's cancel sets `resolved_at`, a reservation
        cancelled before the call is a replay. (A netted transfer's row
        holds no cancel time: every operator cancel of one counts.)"""
        reserved = t.cycle_id == "" and t.deadline is not None
        if t.status is TransferStatus.EXPIRED:
            return TransferCancelled(operator, reserved, expired=True)
        replayed = reserved and t.resolved_at is not None and t.resolved_at < started
        return TransferCancelled(operator, reserved, replayed)


@dataclass(frozen=True, slots=True)
class ExpiryRan:
    """One expiry transaction of the hub's expirer: the reservations and
    recalls it expired, and its time (retries included)."""

    transfers: int
    recalls: int
    seconds: float

    @staticmethod
    def of(expired: Expired, seconds: float) -> ExpiryRan:
        return ExpiryRan(expired.transfers, expired.recalls, seconds)


@dataclass(frozen=True, slots=True)
class LifecycleRefused:
    """Items of a lifecycle `operation` refused outside the results above:
    in validation (singly or in a batch), or a single call that raised. By
    reason; each item in exactly one result."""

    operation: str
    by_reason: Mapping[str, int]

    @staticmethod
    def of(operation: str, errors: Iterable[RemitnetError]) -> LifecycleRefused:
        return LifecycleRefused(operation, Counter(err.reason for err in errors))


Result = (
    QueueDepth
    | BatchCommitted
    | BatchLimits
    | RequestsDropped
    | BankRefused
    | TransfersRefused
    | GrossSettled
    | WatchRefused
    | WatchStream
    | WatchSent
    | QuotesAnswered
    | CycleClosed
    | CycleSettled
    | ConfirmationsAnswered
    | ReturnsCleared
    | RecallChanged
    | TransferCancelled
    | ExpiryRan
    | LifecycleRefused
)


class Observer(Protocol):
    """Hears what happened. Called on the event loop: must not block."""

    def observe(self, result: Result) -> None: ...


class NoObserver:
    """Ignores everything: the default where nothing is wired."""

    def observe(self, result: Result) -> None:
        pass


NO_OBSERVER: Observer = NoObserver()
