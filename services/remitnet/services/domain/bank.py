"""A participant bank of the scheme."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from remitnet.services.domain.decision import party_refusal
from remitnet.services.domain.errors import RemitnetError
from remitnet.services.domain.model import BankStatus


@dataclass(frozen=True, slots=True)
class Bank:
    code: str
    name: str
    home_region: str
    status: BankStatus
    created_at: datetime

    @property
    def is_active(self) -> bool:
        return self.status is BankStatus.ACTIVE

    def refusal(self) -> RemitnetError | None:
        """Why the bank may not take part in a payment or a quote now
        (PARTICIPANT_SUSPENDED), or None: the rule `party_refusal` states
        for the payment paths, which know banks by status only."""
        return party_refusal(self.code, self.status)

    def check_active(self) -> None:
        error = self.refusal()
        if error is not None:
            raise error
