"""Limits and idempotency under real concurrency: PostgreSQL at SERIALIZABLE,
several hub instances (each with its own netting engine) and many clients."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from remitnet.clients.bank import instruction
from remitnet.clients.errors import HubError
from remitnet.services.adapters import metrics
from remitnet.services.adapters.db.database import Database, RetryPolicy
from remitnet.services.domain.errors import Aborted, Reason
from remitnet.services.service_layer.audit import audit
from tests.support import HubHandle, counts, start_hub

BANKS = {"POOR01": "us-east1", "RICH01": "us-east1", "RICH02": "europe-west1"}
LIQUIDITY = 100_000
CAP = 25_000


async def test_many_clients_cannot_overdraw_one_bank(pg_hub: HubHandle) -> None:
    await pg_hub.onboard(BANKS, ["USD"], deposit=LIQUIDITY, cap=CAP)
    hubs = [pg_hub, *[await start_hub(pg_hub.hub.config.db_url) for _ in range(2)]]
    try:

        async def drain(i: int) -> int:
            client = hubs[i % len(hubs)].bank("POOR01")
            total = 0
            for _ in range(10):
                items = [instruction("RICH01" if k % 2 else "RICH02", "USD", 97) for k in range(20)]
                response = await client.submit_batch(items)
                total += sum(
                    r.transfer.amount.minor_units
                    for r in response.results
                    if r.HasField("transfer")
                )
                assert all(
                    r.error.reason == Reason.INSUFFICIENT_LIQUIDITY
                    for r in response.results
                    if r.HasField("error")
                )
            return total

        async def unary(i: int) -> int:
            client = hubs[i % len(hubs)].bank("POOR01")
            total = 0
            for _ in range(20):
                try:
                    r = await client.submit(instruction("RICH01", "USD", 211))
                    total += r.transfer.amount.minor_units
                except HubError as err:
                    assert err.reason == Reason.INSUFFICIENT_LIQUIDITY
            return total

        sent = sum(
            await asyncio.gather(*(drain(i) for i in range(12)), *(unary(i) for i in range(12)))
        )
        # Everyone tried to send far more than the bank has: it must end
        # exactly within liquidity plus cap, and close to it.
        assert LIQUIDITY + CAP - 211 < sent <= LIQUIDITY + CAP
        bank = await pg_hub.operator.get_bank("POOR01")
        account = bank.accounts[0]
        assert account.unsettled_net == -sent
        assert account.headroom >= 0
        report = audit(pg_hub.db)
        assert report.ok, report.violations
    finally:
        for h in hubs[1:]:
            await h.stop()


async def test_same_id_from_many_clients_exists_once(pg_hub: HubHandle) -> None:
    await pg_hub.onboard(BANKS, ["USD"], deposit=LIQUIDITY)
    second = await start_hub(pg_hub.hub.config.db_url)
    try:
        tid = str(uuid.uuid4())
        item = instruction("RICH01", "USD", 1_234, transfer_id=tid)
        clients = [pg_hub.bank("POOR01"), second.bank("POOR01")]
        results = await asyncio.gather(*(clients[i % 2].submit(item) for i in range(16)))
        assert sum(not r.replayed for r in results) == 1
        assert len({r.transfer.SerializeToString() for r in results}) == 1
        assert counts(pg_hub.db).transfers == 1
        assert audit(pg_hub.db).ok
    finally:
        await second.stop()


def _retries(unit: str) -> float:
    return sum(
        s.value
        for m in metrics.DB_RETRIES.collect()
        for s in m.samples
        if s.labels.get("unit") == unit and s.name.endswith("_total")
    )


async def test_injected_serialization_failures_are_retried_without_duplicates(
    postgres_url: str,
) -> None:
    """A real SQLSTATE 40001 from the server, raised inside the batch
    transaction after its writes, on the first two attempts of every batch."""
    db = Database(postgres_url)

    def inject(conn: Connection, unit: str, attempt: int) -> None:
        if unit == "clear_batch" and attempt <= 2:
            conn.exec_driver_sql(
                "DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '40001'; END $$"
            )

    handle = await start_hub(postgres_url, db=db)
    try:
        await handle.onboard(BANKS, ["USD"], deposit=LIQUIDITY)
        before = _retries("clear_batch")
        db.fault_hook = inject
        items = [instruction("RICH01", "USD", 10) for _ in range(300)]
        response = await handle.bank("POOR01").submit_batch(items)
        single = await handle.bank("POOR01").submit(instruction("RICH02", "USD", 5))
        db.fault_hook = None
        assert response.accepted_count == 300 and not single.replayed
        assert _retries("clear_batch") - before >= 4
        assert counts(db).transfers == 301
        bank = await handle.operator.get_bank("POOR01")
        assert bank.accounts[0].unsettled_net == -3_005
        report = audit(db)
        assert report.ok, report.violations
    finally:
        await handle.stop()


async def test_retry_budget_exhausted_is_aborted_and_stores_nothing(postgres_url: str) -> None:
    db = Database(postgres_url)

    def always(conn: Connection, unit: str, attempt: int) -> None:
        if unit == "clear_batch":
            conn.exec_driver_sql("DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '40001'; END $$")

    handle = await start_hub(postgres_url, db=db)
    try:
        await handle.onboard(BANKS, ["USD"], deposit=LIQUIDITY)
        before = counts(db)
        db.fault_hook = always
        with pytest.raises(HubError) as err:
            await handle.bank("POOR01").call(
                handle.bank("POOR01").clearing.SubmitTransfer,
                __import__(
                    "remitnet.clearing.v1.clearing_pb2", fromlist=["x"]
                ).SubmitTransferRequest(transfer=instruction("RICH01", "USD", 10)),
                retry=False,
            )
        db.fault_hook = None
        assert err.value.reason == Reason.RETRIES_EXHAUSTED
        assert counts(db) == before
    finally:
        await handle.stop()


def test_pooled_connections_the_server_dropped_are_replaced(postgres_url: str) -> None:
    """No ping at checkout (`Database`): after the server ends every pooled
    connection (as a restart does), the next write and read re-run on new
    ones ("disconnect") and succeed."""
    db = Database(postgres_url, pool_size=2)
    try:
        # Fill the pool: connections checked out together, then returned.
        with db.engine.connect() as a, db.engine.connect() as b:
            pids = {
                a.execute(text("SELECT pg_backend_pid()")).scalar_one(),
                b.execute(text("SELECT pg_backend_pid()")).scalar_one(),
            }
        with psycopg.connect(postgres_url, autocommit=True) as c:
            ended = c.execute(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid = ANY(%s)) AS t",
                (list(pids),),
            ).fetchone()
        assert ended == (2,)
        before = _retries("after_drop")
        assert db.write("after_drop", lambda uow: uow.banks.regions()) is not None
        assert _retries("after_drop") == before + 1  # one re-run, on a new connection
        assert db.read(lambda uow: uow.banks.regions()) is not None
    finally:
        db.dispose()


def test_a_read_that_keeps_losing_its_connection_is_answered_retries_exhausted(
    postgres_url: str,
) -> None:
    """What a client is told while the database restarts for longer than
    the attempts: ABORTED RETRIES_EXHAUSTED (retry), as for a write, not an
    internal error."""
    db = Database(postgres_url, retry=RetryPolicy(max_attempts=3, base_delay_s=0.0))
    calls: list[int] = []

    def dropped(uow: object) -> None:
        calls.append(1)
        raise OperationalError(
            "SELECT 1", {}, Exception("server closed"), connection_invalidated=True
        )

    try:
        with pytest.raises(Aborted) as err:
            db.read(dropped)
        assert err.value.reason == Reason.RETRIES_EXHAUSTED
        assert len(calls) == 3
    finally:
        db.dispose()
