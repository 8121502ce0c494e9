"""An account of a bank (or the hub) in one currency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    owner: str
    currency: str
    kind: str
    balance: int
    net_debit_cap: int
    unsettled_net: int
    entry_count: int
    opened_at: datetime
