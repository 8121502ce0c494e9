"""Events of the per-bank change feed, as the status stream hands them out."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum
from typing import NamedTuple

from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.model import StoredTransfer, TransferStatus


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
