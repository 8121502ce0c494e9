"""Kill the hub at each crash point of each money-moving unit of work, restart
it, retry with the same keys: the effect happens exactly once."""

from __future__ import annotations

import uuid

import pytest
from hubs import HubProcess, free_port, start_hub

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.bank import BankClient, instruction
from remitnet.clients.base import ClientConfig
from remitnet.clients.errors import HubError
from remitnet.clients.operator import OperatorClient
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.services.adapters.db.database import Database
from remitnet.services.service_layer.audit import AuditReport, audit
from remitnet.settlement.v1 import settlement_pb2 as spb

POINTS = ["before_commit", "after_commit"]


def _start(db_url: str, port: int, crash_at: str = "") -> HubProcess:
    return start_hub(db_url, port=port, metrics=False, crash_at=crash_at, wait=None)


async def _crash_then_restart(
    db_url: str, port: int, crash_at: str, setup: object, doomed: object
) -> HubProcess:
    """Run `setup` on a hub that will crash at `crash_at`, then `doomed`,
    which must kill it; return a fresh hub on the same port and database."""
    hub = _start(db_url, port, crash_at)
    try:
        await hub.wait_healthy(30)
        await setup()  # type: ignore[operator]
        with pytest.raises(HubError):
            await doomed()  # type: ignore[operator]
        assert hub.proc.wait(30) == 137
        assert "crash injected at " + crash_at in hub.output()
    finally:
        hub.kill()
    fresh = _start(db_url, port)
    await fresh.wait_healthy(30)
    return fresh


def _config(port: int) -> ClientConfig:
    return ClientConfig(target=f"127.0.0.1:{port}", deadline_s=10.0)


async def _onboard(op: OperatorClient) -> None:
    for code in ("CRASHA01", "CRASHB01"):
        await op.create_bank(code, code, "us-east1", ["USD"])
        await op.deposit(
            code, "USD", 1_000_000, deposit_id=str(uuid.uuid5(uuid.NAMESPACE_DNS, code))
        )


def _audit_clean(url: str) -> AuditReport:
    db = Database(url)
    try:
        report = audit(db)
    finally:
        db.dispose()
    assert report.ok, report.violations
    return report


@pytest.mark.parametrize("point", POINTS)
async def test_batch_commit_crash(postgres_url: str, point: str) -> None:
    port = free_port()
    items = [instruction("CRASHB01", "USD", 10 + i) for i in range(200)]
    request = cpb.SubmitTransfersRequest(transfers=items)

    async def setup() -> None:
        async with OperatorClient(_config(port)) as op:
            await _onboard(op)

    async def doomed() -> None:
        async with BankClient("CRASHA01", _config(port)) as bank:
            await bank.call(bank.clearing.SubmitTransfers, request, retry=False)

    hub = await _crash_then_restart(postgres_url, port, f"clear_batch:{point}", setup, doomed)
    try:
        async with BankClient("CRASHA01", _config(port)) as bank:
            response = await bank.submit_batch(items)
        assert response.accepted_count == 200
        # Committed before the crash: the retry finds it; otherwise it is new.
        assert all(r.replayed == (point == "after_commit") for r in response.results)
        report = _audit_clean(postgres_url)
        assert report.transfers == 200
    finally:
        hub.stop(30)


@pytest.mark.parametrize("point", POINTS)
async def test_cycle_close_crash(postgres_url: str, point: str) -> None:
    port = free_port()

    async def setup() -> None:
        async with OperatorClient(_config(port)) as op:
            await _onboard(op)
        async with BankClient("CRASHA01", _config(port)) as bank:
            await bank.submit_batch([instruction("CRASHB01", "USD", 5) for _ in range(50)])

    async def doomed() -> None:
        async with OperatorClient(_config(port)) as op:
            await op.call(
                op.netting.CloseCycle,
                npb.CloseCycleRequest(currency="USD", cycle_id="USD-000001"),
                retry=False,
            )

    hub = await _crash_then_restart(postgres_url, port, f"close_cycle:{point}", setup, doomed)
    try:
        async with OperatorClient(_config(port)) as op:
            retried = await op.close_cycle("USD", cycle_id="USD-000001")
            again = await op.close_cycle("USD", cycle_id="USD-000001")
            cycles = await op.list_cycles("USD")
        assert retried.closed.cycle_id == again.closed.cycle_id == "USD-000001"
        assert retried.closed.transfer_count == 50
        assert retried.opened.cycle_id == again.opened.cycle_id == "USD-000002"
        assert sorted(c.cycle_id for c in cycles) == ["USD-000001", "USD-000002"]
        _audit_clean(postgres_url)
    finally:
        hub.stop(30)


@pytest.mark.parametrize("point", POINTS)
async def test_settlement_crash(postgres_url: str, point: str) -> None:
    port = free_port()

    async def setup() -> None:
        async with OperatorClient(_config(port)) as op:
            await _onboard(op)
            async with BankClient("CRASHA01", _config(port)) as bank:
                await bank.submit_batch([instruction("CRASHB01", "USD", 7) for _ in range(30)])
            await op.close_cycle("USD", cycle_id="USD-000001")

    async def doomed() -> None:
        async with OperatorClient(_config(port)) as op:
            await op.call(
                op.settlement.SettleCycle,
                spb.SettleCycleRequest(cycle_id="USD-000001"),
                retry=False,
            )

    hub = await _crash_then_restart(postgres_url, port, f"settle_cycle:{point}", setup, doomed)
    try:
        async with OperatorClient(_config(port)) as op:
            settled = await op.settle_cycle("USD-000001")
            again = await op.settle_cycle("USD-000001")
            statement = await op.statement("CRASHB01", "USD")
        assert settled.already_settled == (point == "after_commit")
        assert again.already_settled
        assert {p.bank_code: p.amount for p in settled.postings} == {
            "CRASHA01": -210,
            "CRASHB01": 210,
        }
        assert [e.amount for e in statement.entries] == [1_000_000, 210]
        _audit_clean(postgres_url)
    finally:
        hub.stop(30)
