"""A participant bank of the scheme."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from remitnet.services.domain.model import BankStatus


@dataclass(frozen=True, slots=True)
class Bank:
    code: str
    name: str
    home_region: str
    status: BankStatus
    created_at: datetime
