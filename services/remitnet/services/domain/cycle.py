"""A settlement cycle of one currency, and its transitions: an open cycle
closes (sealing its totals and opening the next), a closed one settles, a
settled one is final. Transfers can be taken back only while it is open."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from remitnet.services.domain.errors import FailedPrecondition, Reason
from remitnet.services.domain.model import CycleState, cycle_id_for
from remitnet.services.domain.netting import (
    CycleTotals,
    PositionDelta,
    check_nets_balance,
    cycle_totals,
)


@dataclass(frozen=True, slots=True)
class Closing:
    """What closing a cycle yields: its sealed totals, and the cycle that
    opens in its place."""

    totals: CycleTotals
    next_id: str
    next_seq: int


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

    @property
    def is_open(self) -> bool:
        return self.state is CycleState.OPEN

    @property
    def is_settled(self) -> bool:
        return self.state is CycleState.SETTLED

    def check_closable(self) -> None:
        """Only an open cycle closes. (The close use case answers a re-close
        of a closed cycle with that close, a replay, before asking.)"""
        if self.state is not CycleState.OPEN:
            raise FailedPrecondition(
                Reason.CYCLE_NOT_OPEN,
                f"cycle {self.id} is {self.state.name.lower()}; only an open cycle closes",
            )

    def close(self, positions: Mapping[str, PositionDelta]) -> Closing:
        """Close the cycle whose per-bank positions are `positions`: its
        nets must balance (else the books are broken: AssertionError), its
        totals are sealed, and the next cycle of its currency opens."""
        self.check_closable()
        check_nets_balance({bank: p.net for bank, p in positions.items()})
        seq = self.seq + 1
        return Closing(cycle_totals(positions.values()), cycle_id_for(self.currency, seq), seq)

    def check_settleable(self) -> None:
        """An open cycle must be closed before it settles
        (CYCLE_NOT_CLOSED). A settled one passes: settling it again is a
        replay that posts nothing (see `is_settled`)."""
        if self.state is CycleState.OPEN:
            raise FailedPrecondition(
                Reason.CYCLE_NOT_CLOSED, f"cycle {self.id} is open; close it first"
            )

    def check_cancellable(self) -> None:
        """A transfer with a leg in this cycle can be cancelled only while
        the cycle is open (CYCLE_NOT_OPEN)."""
        if self.state is not CycleState.OPEN:
            raise FailedPrecondition(
                Reason.CYCLE_NOT_OPEN,
                f"cycle {self.id} is closed; the transfer can no longer be cancelled",
            )
