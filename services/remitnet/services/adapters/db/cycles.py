"""The cycles repository: settlement cycles per currency and their states."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Connection, and_, func, insert, select, update

from remitnet.services.adapters.db.rows import cycle_of
from remitnet.services.adapters.db.schema import cycles, positions
from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.model import CycleState
from remitnet.services.domain.netting import CycleSums


class SqlCycles:
    """CycleRepository over a Connection."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get(self, cycle_id: str) -> Cycle | None:
        row = self.conn.execute(select(cycles).where(cycles.c.id == cycle_id)).first()
        return None if row is None else cycle_of(row)

    def open_for(self, currency: str) -> Cycle | None:
        row = self.conn.execute(
            select(cycles).where(
                cycles.c.currency == currency, cycles.c.state == int(CycleState.OPEN)
            )
        ).first()
        return None if row is None else cycle_of(row)

    def open_ids(self, currencies: Collection[str]) -> dict[str, str]:
        rows = self.conn.execute(
            select(cycles.c.currency, cycles.c.id).where(
                cycles.c.currency.in_(currencies), cycles.c.state == int(CycleState.OPEN)
            )
        )
        return dict(rows.tuples().all())

    def page(
        self, currency: str, state: CycleState | None, before: str | None, limit: int
    ) -> list[Cycle]:
        query = select(cycles).order_by(cycles.c.opened_at.desc(), cycles.c.id.desc()).limit(limit)
        if currency:
            query = query.where(cycles.c.currency == currency)
        if state is not None:
            query = query.where(cycles.c.state == int(state))
        if before:
            marker = self.get(before)
            if marker is not None:
                query = query.where(
                    (cycles.c.opened_at < marker.opened_at)
                    | and_(cycles.c.opened_at == marker.opened_at, cycles.c.id < marker.id)
                )
        return [cycle_of(r) for r in self.conn.execute(query)]

    def states(self, cycle_ids: Collection[str]) -> dict[str, CycleState]:
        rows = self.conn.execute(
            select(cycles.c.id, cycles.c.state).where(cycles.c.id.in_(cycle_ids))
        )
        return {cid: CycleState(state) for cid, state in rows}

    def unsettled(self) -> list[Cycle]:
        rows = self.conn.execute(
            select(cycles)
            .where(cycles.c.state == int(CycleState.CLOSED))
            .order_by(cycles.c.closed_at)
        )
        return [cycle_of(r) for r in rows]

    def add(self, cycle_id: str, currency: str, seq: int, now: datetime) -> None:
        self.conn.execute(
            insert(cycles).values(
                id=cycle_id,
                currency=currency,
                seq=seq,
                state=int(CycleState.OPEN),
                opened_at=now,
                transfer_count=0,
                gross_value=0,
                net_value=0,
            )
        )

    def max_seq(self, currency: str) -> int:
        value = self.conn.execute(
            select(func.max(cycles.c.seq)).where(cycles.c.currency == currency)
        ).scalar()
        return int(value or 0)

    def seal(self, cycle_id: str, now: datetime, count: int, gross: int, net: int) -> None:
        self.conn.execute(
            update(cycles)
            .where(cycles.c.id == cycle_id)
            .values(
                state=int(CycleState.CLOSED),
                closed_at=now,
                transfer_count=count,
                gross_value=gross,
                net_value=net,
            )
        )

    def mark_settled(self, cycle_id: str, now: datetime) -> None:
        self.conn.execute(
            update(cycles)
            .where(cycles.c.id == cycle_id)
            .values(state=int(CycleState.SETTLED), settled_at=now)
        )

    def open_with_sums(
        self, currencies: Collection[str]
    ) -> tuple[dict[str, str], dict[str, CycleSums]]:
        """The open cycle of each of `currencies` (currency -> cycle id) and
        what each has accumulated so far over all its participants (cycle
        id -> its gross value and fees): what a batch checks its additions
        against. One statement: a batch reads both in each of its reads."""
        rows = self.conn.execute(
            select(
                cycles.c.currency,
                cycles.c.id,
                func.coalesce(func.sum(positions.c.sent), 0),
                func.coalesce(func.sum(positions.c.fee), 0),
            )
            .select_from(cycles.outerjoin(positions, positions.c.cycle_id == cycles.c.id))
            .where(cycles.c.currency.in_(currencies), cycles.c.state == int(CycleState.OPEN))
            .group_by(cycles.c.currency, cycles.c.id)
        ).all()
        return (
            {r[0]: r[1] for r in rows},
            {r[1]: CycleSums(int(r[2]), int(r[3])) for r in rows},
        )
