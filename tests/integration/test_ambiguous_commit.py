"""SQLSTATE 40003 (CockroachDB's "result is ambiguous") and a connection
lost during COMMIT leave the client not knowing whether the transaction
committed. The runner re-runs the unit, which looks its key up first: a
committed first run is found and answered from, never applied twice."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from remitnet.clients.bank import instruction
from remitnet.services.adapters.db.database import Database
from remitnet.services.domain.model import make_instruction
from remitnet.services.domain.netting import Accepted
from remitnet.services.service_layer import cycles, settlement
from remitnet.services.service_layer.audit import audit
from remitnet.services.service_layer.clearing import commit_batch
from tests.support import HubHandle, counts

BANKS = {"BANKAA01": "us-east1", "BANKBB01": "europe-west1"}


class _Orig(Exception):
    def __init__(self, sqlstate: str | None, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class CommitThenFail:
    """Stands in for the engine: the transaction really commits, then the
    caller is told it failed, `times` times."""

    def __init__(self, real: Engine, error: Exception, times: int = 1) -> None:
        self.real = real
        self.error = error
        self.left = times
        self.committed = 0

    def connect(self) -> _Connected:
        return _Connected(self, self.real.connect())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class _Connected:
    """A real connection whose transaction, once committed, reports failure."""

    def __init__(self, engine: CommitThenFail, conn: Connection) -> None:
        self.engine = engine
        self.conn = conn

    def __enter__(self) -> _Connected:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.conn.begin():
            yield self.conn
        self.engine.committed += 1
        if self.engine.left:
            self.engine.left -= 1
            raise self.engine.error

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


AMBIGUOUS = OperationalError(
    "COMMIT", None, _Orig("40003", "result is ambiguous (error=rpc error)")
)
LOST = OperationalError("COMMIT", None, _Orig(None, "server closed the connection"))
LOST.connection_invalidated = True


def patched(db: Database, error: Exception) -> CommitThenFail:
    fake = CommitThenFail(db.engine, error)
    db.engine = fake  # type: ignore[assignment]
    return fake


async def test_ambiguous_batch_commit_is_resolved_by_the_transfer_ids(hub: HubHandle) -> None:
    await hub.onboard(BANKS, ["USD"], deposit=10_000)
    db = hub.db
    real = db.engine
    for error in (AMBIGUOUS, LOST):
        items = [
            make_instruction(
                transfer_id=instruction("BANKBB01", "USD", 1).transfer_id,
                debtor="BANKAA01",
                creditor="BANKBB01",
                currency="USD",
                amount=amount,
            )
            for amount in (100, 250)
        ]
        fake = patched(db, error)
        try:
            before = counts(db)
            commit = commit_batch(db, items)
        finally:
            db.engine = real
        # The first run committed; the second found its transfers and
        # answered from them.
        assert fake.committed == 2 and commit.attempts == 2
        assert all(isinstance(o, Accepted) and o.replayed for o in commit.result.outcomes)
        assert counts(db).transfers == before.transfers + 2
    bank = await hub.operator.get_bank("BANKAA01")
    assert bank.accounts[0].unsettled_net == -700
    report = audit(db)
    assert report.ok, report.violations


async def test_ambiguous_close_and_settle_happen_once(hub: HubHandle) -> None:
    await hub.onboard(BANKS, ["USD"], deposit=10_000)
    await hub.bank("BANKAA01").submit(instruction("BANKBB01", "USD", 700))
    db = hub.db
    real = db.engine
    fake = patched(db, AMBIGUOUS)
    try:
        closed, opened = cycles.close_cycle(db, "USD")
    finally:
        db.engine = real
    assert fake.committed == 2
    assert (closed.cycle.id, opened.cycle.id) == ("USD-000001", "USD-000002")
    listed = await hub.operator.list_cycles("USD")
    assert sorted(c.cycle_id for c in listed) == ["USD-000001", "USD-000002"]
    fake = patched(db, AMBIGUOUS)
    try:
        settlement.settle_cycle(db, "USD-000001")
    finally:
        db.engine = real
    assert fake.committed == 2
    statement = await hub.operator.statement("BANKBB01", "USD")
    settled = [e for e in statement.entries if "USD-000001" in e.reference]
    assert [e.amount for e in settled] == [700]
    report = audit(db)
    assert report.ok, report.violations
