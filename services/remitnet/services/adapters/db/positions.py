"""The positions repository: each bank's running totals in each cycle, one
row per (cycle, bank), however many transfers the cycle holds."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sqlalchemy import Connection, bindparam, insert, select, text, tuple_, update

from remitnet.services.adapters.db.arrays import int_array, text_array
from remitnet.services.adapters.db.banks import SqlBanks
from remitnet.services.adapters.db.dialect import Dialect
from remitnet.services.adapters.db.schema import positions
from remitnet.services.domain.netting import PositionDelta

_bump_position = (
    update(positions)
    .where(positions.c.cycle_id == bindparam("c"), positions.c.bank_code == bindparam("b"))
    .values(
        sent=positions.c.sent + bindparam("s"),
        received=positions.c.received + bindparam("r"),
        sent_count=positions.c.sent_count + bindparam("sc"),
        received_count=positions.c.received_count + bindparam("rc"),
        fee=positions.c.fee + bindparam("f"),
    )
)


# With array parameters: every row of the batch in one upsert. home_region is
# written by the insert only: a bank's region never changes.
_UPSERT_POSITIONS_ARRAYS = text(
    "INSERT INTO positions "
    "(cycle_id, bank_code, sent, received, sent_count, received_count, fee, home_region) "
    "SELECT * FROM unnest(CAST(:c AS VARCHAR[]), CAST(:b AS VARCHAR[]), CAST(:s AS BIGINT[]), "
    "CAST(:r AS BIGINT[]), CAST(:sc AS BIGINT[]), CAST(:rc AS BIGINT[]), CAST(:f AS BIGINT[]), "
    "CAST(:h AS VARCHAR[])) "
    "ON CONFLICT (cycle_id, bank_code) DO UPDATE SET "
    "sent = positions.sent + excluded.sent, received = positions.received + excluded.received, "
    "sent_count = positions.sent_count + excluded.sent_count, "
    "received_count = positions.received_count + excluded.received_count, "
    "fee = positions.fee + excluded.fee"
)


class SqlPositions:
    """PositionRepository over a Connection. New rows take their bank's home
    region through `banks`."""

    __slots__ = ("banks", "conn", "dialect")

    def __init__(self, conn: Connection, dialect: Dialect, banks: SqlBanks) -> None:
        self.conn = conn
        self.dialect = dialect
        self.banks = banks

    def of_cycle(self, cycle_id: str) -> dict[str, PositionDelta]:
        rows = self.conn.execute(
            select(
                positions.c.bank_code,
                positions.c.sent,
                positions.c.received,
                positions.c.sent_count,
                positions.c.received_count,
                positions.c.fee,
            )
            .where(positions.c.cycle_id == cycle_id)
            .order_by(positions.c.bank_code)
        ).all()  # fetchall: a close reads thousands of rows, a fetch per row costs more
        return {b: PositionDelta(s, r, sc, rc, f) for b, s, r, sc, rc, f in rows}

    def of_cycles(self, cycle_ids: Collection[str]) -> dict[str, dict[str, PositionDelta]]:
        """of_cycle of each of `cycle_ids`, in one query (a page of cycles
        costs one statement, not one per cycle)."""
        out: dict[str, dict[str, PositionDelta]] = {c: {} for c in cycle_ids}
        if out:
            rows = self.conn.execute(
                select(
                    positions.c.cycle_id,
                    positions.c.bank_code,
                    positions.c.sent,
                    positions.c.received,
                    positions.c.sent_count,
                    positions.c.received_count,
                    positions.c.fee,
                )
                .where(positions.c.cycle_id.in_(list(out)))
                .order_by(positions.c.cycle_id, positions.c.bank_code)
            )
            for r in rows:
                out[r[0]][r[1]] = PositionDelta(r[2], r[3], r[4], r[5], r[6])
        return out

    def of_bank(self, bank: str, cycle_ids: Collection[str]) -> dict[str, PositionDelta]:
        """One bank's position rows in the given cycles, by cycle id."""
        if not cycle_ids:
            return {}
        rows = self.conn.execute(
            select(
                positions.c.cycle_id,
                positions.c.sent,
                positions.c.received,
                positions.c.sent_count,
                positions.c.received_count,
                positions.c.fee,
            ).where(positions.c.bank_code == bank, positions.c.cycle_id.in_(cycle_ids))
        )
        return {r[0]: PositionDelta(r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def add(
        self,
        deltas: Mapping[tuple[str, str], PositionDelta],
        regions: Mapping[str, str] | None = None,
    ) -> None:
        """Apply per-bank position changes of one batch: one row per bank and
        cycle, however many transfers the batch held. A new row takes its
        bank's home region from `regions` (bank code -> region; looked up in
        one query for banks it lacks)."""
        if not deltas:
            return
        region = self.banks.home_regions({bank for _, bank in deltas}, regions)
        if self.dialect.arrays:
            values = list(deltas.values())
            self.conn.execute(
                _UPSERT_POSITIONS_ARRAYS,
                {
                    "c": text_array([k[0] for k in deltas]),
                    "b": text_array([k[1] for k in deltas]),
                    "s": int_array([d.sent for d in values]),
                    "r": int_array([d.received for d in values]),
                    "sc": int_array([d.sent_count for d in values]),
                    "rc": int_array([d.received_count for d in values]),
                    "f": int_array([d.fee for d in values]),
                    "h": text_array([region[k[1]] for k in deltas]),
                },
            )
            return
        keys = list(deltas)
        present = {
            (c, b)
            for c, b in self.conn.execute(
                select(positions.c.cycle_id, positions.c.bank_code).where(
                    tuple_(positions.c.cycle_id, positions.c.bank_code).in_(keys)
                )
            )
        }
        updates = []
        inserts = []
        for (cycle_id, bank), d in deltas.items():
            if (cycle_id, bank) in present:
                updates.append(
                    {
                        "c": cycle_id,
                        "b": bank,
                        "s": d.sent,
                        "r": d.received,
                        "sc": d.sent_count,
                        "rc": d.received_count,
                        "f": d.fee,
                    }
                )
            else:
                inserts.append(
                    {
                        "cycle_id": cycle_id,
                        "bank_code": bank,
                        "sent": d.sent,
                        "received": d.received,
                        "sent_count": d.sent_count,
                        "received_count": d.received_count,
                        "fee": d.fee,
                        "home_region": region[bank],
                    }
                )
        if updates:
            self.conn.execute(_bump_position, updates)
        if inserts:
            self.conn.execute(insert(positions), inserts)
