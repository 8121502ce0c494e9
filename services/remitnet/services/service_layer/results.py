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
from remitnet.services.domain.model import StoredTransfer
from remitnet.services.domain.netting import Outcome

if TYPE_CHECKING:
    from remitnet.services.service_layer.cycles import CycleView
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
)


class Observer(Protocol):
    """Hears what happened. Called on the event loop: must not block."""

    def observe(self, result: Result) -> None: ...


class NoObserver:
    """Ignores everything: the default where nothing is wired."""

    def observe(self, result: Result) -> None:
        pass


NO_OBSERVER: Observer = NoObserver()
