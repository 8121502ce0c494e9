"""Events of the per-bank change feed, as the status stream hands them out."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import IntEnum
from typing import NamedTuple

from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.lifecycle import Recall, RecallState
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
    # The bank's reserved transfers that left RESERVED with `status` (their
    # `resolution`) in one transaction, all with resolved_at = the event's
    # time: accepted, rejected, expired or cancelled.
    RESOLVED = 5
    # A recall of the bank's transfer `transfer_id` moved to RecallState
    # `status` (the column holds the RecallState value for this kind).
    RECALL = 6


class NewEvent(NamedTuple):
    bank: str
    kind: EventKind
    status: TransferStatus | RecallState  # RecallState for RECALL events
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
    # RECALL events: the recall as it was then (its state: the event's), and
    # `transfers` holds its transfer; `status` is then the transfer's own.
    recall: Recall | None = None

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
    """One BATCH event per bank party to the batch's accepted transfers,
    and one more with status RESERVED for those awaiting confirmation (a
    BATCH ACCEPTED event stands for the bank's transfers of the batch that
    were netted at once, a BATCH RESERVED one for those that were reserved,
    whatever became of them since)."""
    counts: dict[str, int] = defaultdict(int)
    reserved: dict[str, int] = defaultdict(int)
    for t in accepted:
        if t.deadline is None:
            counts[t.debtor] += 1
            counts[t.creditor] += 1
        else:
            reserved[t.debtor] += 1
            reserved[t.creditor] += 1
    out = [
        NewEvent(bank, EventKind.BATCH, TransferStatus.ACCEPTED, item_count=n)
        for bank, n in counts.items()
    ]
    out += [
        NewEvent(bank, EventKind.BATCH, TransferStatus.RESERVED, item_count=n)
        for bank, n in reserved.items()
    ]
    return out


def batch_event_banks(accepted: Sequence[StoredTransfer]) -> set[str]:
    """The banks `batch_events(accepted)` appends to, without building the
    events (the engine needs only which feeds a batch moves)."""
    return {t.debtor for t in accepted} | {t.creditor for t in accepted}


def resolved_events(resolved: Sequence[StoredTransfer]) -> list[NewEvent]:
    """One RESOLVED event per bank and resolution for transfers that left
    RESERVED in one transaction (their resolved_at is its time)."""
    counts: dict[tuple[str, TransferStatus], int] = defaultdict(int)
    for t in resolved:
        status = t.resolution
        assert status is not None
        counts[(t.debtor, status)] += 1
        counts[(t.creditor, status)] += 1
    return [
        NewEvent(bank, EventKind.RESOLVED, status, item_count=n)
        for (bank, status), n in counts.items()
    ]


def transfer_events(
    transfer: StoredTransfer | Instruction, status: TransferStatus
) -> list[NewEvent]:
    """The same transfer event for both of its parties."""
    return [
        NewEvent(bank, EventKind.TRANSFER, status, transfer_id=transfer.transfer_id)
        for bank in (transfer.debtor, transfer.creditor)
    ]


def recall_events(recall: Recall) -> list[NewEvent]:
    """The same recall event for both parties of the recalled transfer."""
    return [
        NewEvent(bank, EventKind.RECALL, recall.state, transfer_id=recall.transfer_id)
        for bank in (recall.debtor, recall.creditor)
    ]
