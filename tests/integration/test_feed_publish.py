"""A publish numbers each bank's events after its head, in order, at one
time later than every head it advances (one statement with array
parameters, else a read of the heads, the rows and the advance), and refuses
an event of a bank without a feed head."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.schema import events
from remitnet.services.domain.events import TICK, EventKind, NewEvent
from remitnet.services.domain.model import TransferStatus
from remitnet.services.service_layer import participants

CLOSED = TransferStatus.CLOSED


def _stored(db: Database) -> list[tuple[Any, ...]]:
    def read(uow: Any) -> list[tuple[Any, ...]]:
        rows = uow.conn.execute(
            select(
                events.c.bank_code,
                events.c.seq,
                events.c.kind,
                events.c.transfer_id,
                events.c.cycle_id,
                events.c.other_cycle_id,
                events.c.item_count,
                events.c.home_region,
            )
            .where(events.c.bank_code.in_(["PUBA", "PUBB"]))
            .order_by(events.c.bank_code, events.c.seq)
        )
        return [tuple(r) for r in rows]

    return db.read(read)


def test_a_publish_numbers_each_banks_events_after_its_head(db: Database) -> None:
    participants.create_bank(db, "PUBA", "PUBA", "us-east1", ["USD"])
    participants.create_bank(db, "PUBB", "PUBB", "europe-west1", ["USD"])
    first = db.read(lambda uow: uow.events.heads(["PUBA", "PUBB"]))
    tid = "3b1f0a5e-0000-4000-8000-000000000001"
    new = [
        NewEvent("PUBA", EventKind.CYCLE, CLOSED, cycle_id="USD-000001"),
        NewEvent("PUBB", EventKind.CYCLE, CLOSED, cycle_id="USD-000001"),
        NewEvent(
            "PUBA",
            EventKind.LEGS,
            CLOSED,
            cycle_id="USD-000001",
            other_cycle_id="PHP-000001",
            item_count=3,
        ),
        NewEvent("PUBA", EventKind.TRANSFER, TransferStatus.ACCEPTED, transfer_id=tid),
    ]
    # A clock behind the heads: the time is just after the latest of them.
    behind = min(h.last_at for h in first.values()) - timedelta(hours=1)
    at = db.write("t", lambda uow: uow.events.publish(new, behind))
    assert at == max(h.last_at for h in first.values()) + TICK
    assert at.tzinfo is not None and at.utcoffset() == timedelta(0)
    heads = db.read(lambda uow: uow.events.heads(["PUBA", "PUBB"]))
    a, b = first["PUBA"].seq, first["PUBB"].seq
    assert {k: (h.seq, h.last_at) for k, h in heads.items()} == {
        "PUBA": (a + 3, at),
        "PUBB": (b + 1, at),
    }
    stored = [r for r in _stored(db) if r[1] > (a if r[0] == "PUBA" else b)]
    assert [(r[0], r[1], r[2]) for r in stored] == [
        ("PUBA", a + 1, EventKind.CYCLE),
        ("PUBA", a + 2, EventKind.LEGS),
        ("PUBA", a + 3, EventKind.TRANSFER),
        ("PUBB", b + 1, EventKind.CYCLE),
    ]
    assert [str(r[3]) if r[3] is not None else None for r in stored] == [None, None, tid, None]
    assert [(r[4], r[5], r[6]) for r in stored] == [
        ("USD-000001", None, 1),
        ("USD-000001", "PHP-000001", 3),
        (None, None, 1),
        ("USD-000001", None, 1),
    ]
    assert [r[7] for r in stored] == ["us-east1"] * 3 + ["europe-west1"]
    # A clock ahead of the heads is the time itself.
    ahead = datetime.now(UTC) + timedelta(hours=1)
    more = [NewEvent("PUBB", EventKind.CYCLE, TransferStatus.SETTLED, cycle_id="USD-000001")]
    assert db.write("t", lambda uow: uow.events.publish(more, ahead)) == ahead


def test_a_publish_refuses_a_bank_without_a_feed_head(db: Database) -> None:
    participants.create_bank(db, "PUBA", "PUBA", "us-east1", ["USD"])
    before = db.read(lambda uow: uow.events.heads(["PUBA"]))["PUBA"]
    new = [
        NewEvent("PUBA", EventKind.CYCLE, CLOSED, cycle_id="USD-000001"),
        NewEvent("NOSUCH", EventKind.CYCLE, CLOSED, cycle_id="USD-000001"),
    ]
    with pytest.raises((AssertionError, KeyError)):
        db.write("t", lambda uow: uow.events.publish(new, datetime.now(UTC)))
    # Nothing of it stays.
    assert db.read(lambda uow: uow.events.heads(["PUBA"]))["PUBA"] == before
