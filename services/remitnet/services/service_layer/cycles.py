"""Settlement cycles: close (seal and open the next, atomically) and reads."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from remitnet.services.domain.audit_trail import HUB_PRINCIPAL, Action, ChainHead
from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.errors import FailedPrecondition, NotFound, Reason
from remitnet.services.domain.model import CycleState
from remitnet.services.domain.money import check_currency
from remitnet.services.domain.netting import PositionDelta, cycle_totals
from remitnet.services.service_layer.unit_of_work import Transactions, UnitOfWork


@dataclass(frozen=True, slots=True)
class CycleView:
    cycle: Cycle
    positions: dict[str, PositionDelta]
    # The audit chain head its settlement appended (settled cycles only).
    audit_head: ChainHead | None = None

    @property
    def transfer_count(self) -> int:
        if self.cycle.is_open:
            return cycle_totals(self.positions.values()).transfer_count
        return self.cycle.transfer_count

    @property
    def gross_value(self) -> int:
        if self.cycle.is_open:
            return cycle_totals(self.positions.values()).gross_value
        return self.cycle.gross_value

    @property
    def net_value(self) -> int:
        if self.cycle.is_open:
            return cycle_totals(self.positions.values()).net_value
        return self.cycle.net_value


def close_cycle(
    db: Transactions, currency: str, *, expected: str | None = None, actor: str = HUB_PRINCIPAL
) -> tuple[CycleView, CycleView]:
    """Seal the open cycle of a currency and open the next in one serializable
    transaction: a batch committing concurrently lands in exactly one of
    them. Keyed by the cycle first seen open, so a re-run after a conflict or
    an ambiguous commit reports that cycle's close instead of closing the
    next one too."""
    check_currency(currency)
    # With `expected` (the scheduler's), only that cycle is closed: a replica
    # that lost the race to another reports the other's close.
    target: list[str] = [expected] if expected else []

    def unit(uow: UnitOfWork) -> tuple[CycleView, CycleView]:
        if not target:
            current = uow.cycles.open_for(currency)
            if current is None:
                raise FailedPrecondition(
                    Reason.CURRENCY_NOT_SUPPORTED,
                    f"no {currency} cycle: no bank holds a {currency} account",
                    currency=currency,
                )
            target.append(current.id)
        else:
            found = uow.cycles.get(target[0])
            if found is None or found.currency != currency:
                raise NotFound(Reason.CYCLE_NOT_FOUND, f"no {currency} cycle {target[0]}")
            current = found
            if not current.is_open:  # closed already: a replay reports that close
                following = uow.cycles.open_for(currency)
                assert following is not None
                return _view(uow, current), _view(uow, following)
        positions = uow.positions.of_cycle(current.id)
        closing = current.close(positions)
        totals = closing.totals
        news = uow.events.cycle_events(current.id, CycleState.CLOSED, positions)
        now = uow.events.publish(news, datetime.now(UTC))
        uow.cycles.seal(
            current.id, now, totals.transfer_count, totals.gross_value, totals.net_value
        )
        uow.cycles.add(closing.next_id, currency, closing.next_seq, now)
        # A re-close of a closed cycle returned above and appends nothing.
        request = {"currency": currency, "cycle_id": current.id}
        uow.trail.append(actor, Action.CLOSE_CYCLE, request, now)
        # The rows just written, as written: not read back.
        closed = replace(
            current,
            state=CycleState.CLOSED,
            closed_at=now,
            transfer_count=totals.transfer_count,
            gross_value=totals.gross_value,
            net_value=totals.net_value,
        )
        opened = Cycle(
            closing.next_id, currency, closing.next_seq, CycleState.OPEN, now, None, None, 0, 0, 0
        )
        return CycleView(closed, positions), CycleView(opened, {})

    return db.write("close_cycle", unit)


def _view(uow: UnitOfWork, cycle: Cycle) -> CycleView:
    return CycleView(
        cycle, uow.positions.of_cycle(cycle.id), _audit_heads(uow, [cycle]).get(cycle.id)
    )


def _audit_heads(uow: UnitOfWork, found: list[Cycle]) -> dict[str, ChainHead]:
    settled = [c.id for c in found if c.state is CycleState.SETTLED]
    return uow.trail.settlement_heads(settled)


def get_cycle(db: Transactions, cycle_id: str) -> CycleView:
    def unit(uow: UnitOfWork) -> CycleView:
        cycle = uow.cycles.get(cycle_id)
        if cycle is None:
            raise NotFound(Reason.CYCLE_NOT_FOUND, f"no cycle {cycle_id[:40]!r}")
        return _view(uow, cycle)

    return db.read(unit)


def list_cycles(
    db: Transactions, currency: str, state: CycleState | None, before: str | None, limit: int
) -> list[CycleView]:
    if currency:
        check_currency(currency)

    def unit(uow: UnitOfWork) -> list[CycleView]:
        # Two statements a page: the cycles, then all their positions.
        found = uow.cycles.page(currency, state, before, limit)
        held = uow.positions.of_cycles([c.id for c in found])
        heads = _audit_heads(uow, found)
        return [CycleView(c, held[c.id], heads.get(c.id)) for c in found]

    return db.read(unit, stale_ok=True)


def open_cycles(db: Transactions) -> list[Cycle]:
    return db.read(lambda uow: uow.cycles.page("", CycleState.OPEN, None, 10_000))


def unsettled(db: Transactions) -> list[Cycle]:
    return db.read(lambda uow: uow.cycles.unsettled())
