"""Events of the per-bank change feed, as the status stream hands them out."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import IntEnum
from typing import NamedTuple

from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.model import Instruction, StoredTransfer, TransferStatus

#: A bank's event times are strictly increasing, by at least this.
TICK = timedelta(microseconds=1)


class EventKind(IntEnum):
    BATCH = 1  # the bank's transfers accepted by one netting batch
    TRANSFER = 2  # one transfer moved to `status`
    CYCLE = 3  # a cycle the bank has a position in moved to `status`
    # The bank's cross-currency transfers with legs in `cycle_id` and
    # `other_cycle_id` moved to `status` (the second of the two got there).
    LEGS = 4


class NewEvent(NamedTuple):
    bank: str
    kind: EventKind
    status: TransferStatus
    transfer_id: str | None = None
    cycle_id: str | None = None
    item_count: int = 1
    other_cycle_id: str | None = None


class Head(NamedTuple):
    seq: int
    last_at: datetime
    region: str


class FeedEvent(NamedTuple):
    """One stored event with what it expands to, in stream order."""

    seq: int
    at: datetime
    kind: EventKind
    status: TransferStatus
    transfers: tuple[StoredTransfer, ...]
    cycle: Cycle | None

    @property
    def size(self) -> int:
        return 1 if self.cycle is not None else len(self.transfers)


def event_time(heads: Mapping[str, Head], clock: datetime) -> datetime:
    """The time of a transaction's events: the clock, or just after the
    latest event of any bank it writes to, whichever is later (clocks of
    two hub replicas may disagree by more than their commits are apart)."""
    latest = max((h.last_at for h in heads.values()), default=clock)
    return clock if clock > latest else latest + TICK


def batch_events(accepted: Sequence[StoredTransfer]) -> list[NewEvent]:
    """One BATCH event per bank party to the batch's accepted transfers."""
    counts: dict[str, int] = defaultdict(int)
    for t in accepted:
        counts[t.debtor] += 1
        counts[t.creditor] += 1
    return [
        NewEvent(bank, EventKind.BATCH, TransferStatus.ACCEPTED, item_count=n)
        for bank, n in counts.items()
    ]


def transfer_events(
    transfer: StoredTransfer | Instruction, status: TransferStatus
) -> list[NewEvent]:
    """The same transfer event for both of its parties."""
    return [
        NewEvent(bank, EventKind.TRANSFER, status, transfer_id=transfer.transfer_id)
        for bank in (transfer.debtor, transfer.creditor)
    ]
