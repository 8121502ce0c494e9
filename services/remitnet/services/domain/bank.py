"""A participant of the scheme: a bank, an FX provider, or both."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntFlag

from remitnet.services.domain.decision import party_refusal
from remitnet.services.domain.errors import RemitnetError
from remitnet.services.domain.model import BankStatus


class ParticipantRole(IntFlag):
    """What a participant does at the hub (stored as `banks.roles`): a BANK
    sends and receives transfers; an FX_PROVIDER prefunds liquidity in the
    currencies it sells, publishes rates and is the counterparty of the
    conversions it quotes. Both = 3."""

    BANK = 1
    FX_PROVIDER = 2


@dataclass(frozen=True, slots=True)
class Bank:
    code: str
    name: str
    home_region: str
    status: BankStatus
    created_at: datetime
    roles: ParticipantRole = ParticipantRole.BANK
    # Its incoming netted transfers await its confirmation (RESERVED): an
    # operator setting (migration 0009).
    requires_confirmation: bool = False
    # Its BICFI (ISO 9362, in its 8-character form for a primary office):
    # how ISO 20022 messages name it (migration 0010). None: onboarded
    # without one, so it cannot use the ISO 20022 edge.
    bic: str | None = None

    @property
    def is_provider(self) -> bool:
        return bool(self.roles & ParticipantRole.FX_PROVIDER)

    @property
    def is_bank(self) -> bool:
        return bool(self.roles & ParticipantRole.BANK)

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
