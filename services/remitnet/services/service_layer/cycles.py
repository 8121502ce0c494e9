"""Settlement cycles: close (seal and open the next, atomically) and reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection

from remitnet.services.adapters.db import audit_log, feed
from remitnet.services.adapters.db import repository as repo
from remitnet.services.adapters.db.database import Database
from remitnet.services.domain.audit_trail import HUB_PRINCIPAL, Action, ChainHead
from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.errors import FailedPrecondition, NotFound, Reason
from remitnet.services.domain.model import CycleState, cycle_id_for
from remitnet.services.domain.money import check_currency
from remitnet.services.domain.netting import PositionDelta, check_nets_balance, cycle_totals


@dataclass(frozen=True, slots=True)
class CycleView:
    cycle: Cycle
    positions: dict[str, PositionDelta]
    # The audit chain head its settlement appended (settled cycles only).
    audit_head: ChainHead | None = None

    @property
    def transfer_count(self) -> int:
        if self.cycle.state is CycleState.OPEN:
            return cycle_totals(self.positions.values()).transfer_count
        return self.cycle.transfer_count

    @property
    def gross_value(self) -> int:
        if self.cycle.state is CycleState.OPEN:
            return cycle_totals(self.positions.values()).gross_value
        return self.cycle.gross_value

    @property
    def net_value(self) -> int:
        if self.cycle.state is CycleState.OPEN:
            return cycle_totals(self.positions.values()).net_value
        return self.cycle.net_value


def close_cycle(
    db: Database, currency: str, *, expected: str | None = None, actor: str = HUB_PRINCIPAL
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

    def unit(conn: Connection) -> tuple[CycleView, CycleView]:
        if not target:
            current = repo.open_cycle(conn, currency)
            if current is None:
                raise FailedPrecondition(
                    Reason.CURRENCY_NOT_SUPPORTED,
                    f"no {currency} cycle: no bank holds a {currency} account",
                    currency=currency,
                )
            target.append(current.id)
        else:
            found = repo.get_cycle(conn, target[0])
            if found is None or found.currency != currency:
                raise NotFound(Reason.CYCLE_NOT_FOUND, f"no {currency} cycle {target[0]}")
            current = found
            if current.state is not CycleState.OPEN:
                following = repo.open_cycle(conn, currency)
                assert following is not None
                return _view(conn, current), _view(conn, following)
        positions = repo.cycle_positions(conn, current.id)
        check_nets_balance({b: p.net for b, p in positions.items()})
        totals = cycle_totals(positions.values())
        news = feed.cycle_events(conn, current.id, CycleState.CLOSED, positions)
        now = feed.publish(conn, news, datetime.now(UTC))
        repo.seal_cycle(
            conn, current.id, now, totals.transfer_count, totals.gross_value, totals.net_value
        )
        seq = current.seq + 1
        repo.insert_cycle(conn, cycle_id_for(currency, seq), currency, seq, now)
        # A re-close of a closed cycle returned above and appends nothing.
        request = {"currency": currency, "cycle_id": current.id}
        audit_log.append(conn, actor, Action.CLOSE_CYCLE, request, now)
        closed = repo.get_cycle(conn, current.id)
        opened = repo.get_cycle(conn, cycle_id_for(currency, seq))
        assert closed is not None and opened is not None
        return CycleView(closed, positions), CycleView(opened, {})

    return db.write("close_cycle", unit)


def _view(conn: Connection, cycle: Cycle) -> CycleView:
    return CycleView(
        cycle, repo.cycle_positions(conn, cycle.id), _audit_heads(conn, [cycle]).get(cycle.id)
    )


def _audit_heads(conn: Connection, found: list[Cycle]) -> dict[str, ChainHead]:
    settled = [c.id for c in found if c.state is CycleState.SETTLED]
    return audit_log.settlement_heads(conn, settled)


def get_cycle(db: Database, cycle_id: str) -> CycleView:
    def unit(conn: Connection) -> CycleView:
        cycle = repo.get_cycle(conn, cycle_id)
        if cycle is None:
            raise NotFound(Reason.CYCLE_NOT_FOUND, f"no cycle {cycle_id[:40]!r}")
        return _view(conn, cycle)

    return db.read(unit)


def list_cycles(
    db: Database, currency: str, state: CycleState | None, before: str | None, limit: int
) -> list[CycleView]:
    if currency:
        check_currency(currency)

    def unit(conn: Connection) -> list[CycleView]:
        # Two statements a page: the cycles, then all their positions.
        found = repo.list_cycles(conn, currency, state, before, limit)
        held = repo.positions_of_cycles(conn, [c.id for c in found])
        heads = _audit_heads(conn, found)
        return [CycleView(c, held[c.id], heads.get(c.id)) for c in found]

    return db.read(unit, stale_ok=True)


def open_cycles(db: Database) -> list[Cycle]:
    return db.read(lambda conn: repo.list_cycles(conn, "", CycleState.OPEN, None, 10_000))


def unsettled(db: Database) -> list[Cycle]:
    return db.read(repo.unsettled_cycles)
