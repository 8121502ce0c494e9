"""A settlement cycle of one currency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from remitnet.services.domain.model import CycleState


@dataclass(frozen=True, slots=True)
class Cycle:
    id: str
    currency: str
    seq: int
    state: CycleState
    opened_at: datetime
    closed_at: datetime | None
    settled_at: datetime | None
    transfer_count: int
    gross_value: int
    net_value: int
