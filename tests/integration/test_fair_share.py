"""Per-bank bounds over real gRPC: a bank past its queued items or its
concurrent calls gets RESOURCE_EXHAUSTED with a reason and a RetryInfo
delay, and another bank's calls still go through."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clearing.v1 import clearing_pb2_grpc as cgrpc
from remitnet.clients.bank import instruction
from remitnet.services.adapters.grpc import admission
from remitnet.services.domain.errors import Reason
from remitnet.services.service_layer import engine as engine_module
from remitnet.services.service_layer.clearing import commit_batch
from remitnet.services.service_layer.engine import EngineConfig
from tests.support import HubHandle, start_hub

BANKS = {"FLOODER01": "us-east1", "VICTIM01": "europe-west1", "PAYEE01": "us-east1"}
PRINCIPAL = "x-remitnet-principal"


@pytest.fixture
def slow_commits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch takes 0.3 s longer: calls stay queued long enough."""

    def slow(db: Any, items: Sequence[Any], **options: Any) -> Any:
        time.sleep(0.3)
        return commit_batch(db, items, **options)

    monkeypatch.setattr(engine_module, "commit_batch", slow)


def _details(err: grpc.aio.AioRpcError) -> tuple[str, float | None]:
    status: status_pb2.Status | None = rpc_status.from_call(err)
    assert status is not None
    reason, delay = "", None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(retry):
            delay = retry.retry_delay.ToNanoseconds() / 1e9
    return reason, delay


async def _raw(hub: HubHandle) -> tuple[grpc.aio.Channel, Any]:
    channel = grpc.aio.insecure_channel(hub.config.target)
    return channel, cgrpc.ClearingServiceStub(channel)


async def test_a_banks_queue_is_bounded_with_retry_info(
    sqlite_url: str, slow_commits: None
) -> None:
    hub = await start_hub(sqlite_url, engine=EngineConfig(max_queued_per_bank=30))
    channel, stub = await _raw(hub)
    try:
        await hub.onboard(BANKS, ["USD"], deposit=10**9)

        def batch(n: int) -> cpb.SubmitTransfersRequest:
            return cpb.SubmitTransfersRequest(
                transfers=[instruction("PAYEE01", "USD", 1) for _ in range(n)]
            )

        flood = ((PRINCIPAL, "bank:FLOODER01"),)
        # The first goes into the batch in flight, the second waits queued
        # (20 of 30), the third would pass the bound.
        first = asyncio.ensure_future(stub.SubmitTransfers(batch(20), metadata=flood))
        await asyncio.sleep(0.1)
        second = asyncio.ensure_future(stub.SubmitTransfers(batch(20), metadata=flood))
        await asyncio.sleep(0.1)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SubmitTransfers(batch(20), metadata=flood)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        reason, delay = _details(refused.value)
        assert reason == Reason.BANK_QUEUE_FULL and delay is not None and delay > 0
        # Another bank is not refused, and its item is not stuck behind the flood.
        victim = await hub.bank("VICTIM01").submit(instruction("PAYEE01", "USD", 5))
        assert victim.transfer.transfer_id
        assert (await first).accepted_count == 20 and (await second).accepted_count == 20
    finally:
        await channel.close()
        await hub.stop()


async def test_concurrent_unary_calls_are_bounded_per_bank(
    sqlite_url: str, slow_commits: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admission, "MAX_CONCURRENT_UNARY", 2)
    hub = await start_hub(sqlite_url)
    channel, stub = await _raw(hub)
    try:
        await hub.onboard(BANKS, ["USD"], deposit=10**9)
        flood = ((PRINCIPAL, "bank:FLOODER01"),)

        async def one() -> Any:
            return await stub.SubmitTransfer(
                cpb.SubmitTransferRequest(transfer=instruction("PAYEE01", "USD", 1)),
                metadata=flood,
            )

        held = [asyncio.ensure_future(one()) for _ in range(2)]
        await asyncio.sleep(0.1)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await one()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        reason, delay = _details(refused.value)
        assert reason == Reason.TOO_MANY_CONCURRENT_CALLS and delay is not None
        # The bound is per bank: another bank's call is admitted meanwhile.
        victim = await hub.bank("VICTIM01").submit(instruction("PAYEE01", "USD", 5))
        assert victim.transfer.transfer_id
        for call in held:
            await call
        # Slots are given back: the bank can call again.
        await one()
    finally:
        await channel.close()
        await hub.stop()


async def test_a_call_abandoned_before_its_batch_is_dropped(
    sqlite_url: str, slow_commits: None
) -> None:
    """The client's deadline passes while its request waits behind the batch
    in flight: gRPC cancels the handler, and the engine drops the request
    instead of committing transfers nobody waits for."""
    from remitnet.services.adapters import metrics

    hub = await start_hub(sqlite_url)
    channel, stub = await _raw(hub)
    try:
        await hub.onboard(BANKS, ["USD"], deposit=10**9)
        flood = ((PRINCIPAL, "bank:FLOODER01"),)
        busy = asyncio.ensure_future(
            stub.SubmitTransfer(
                cpb.SubmitTransferRequest(transfer=instruction("PAYEE01", "USD", 1)),
                metadata=flood,
            )
        )
        await asyncio.sleep(0.1)  # its batch is in flight for 0.3 s
        dropped = metrics.NETTING_DROPPED._value.get()
        abandoned = [instruction("PAYEE01", "USD", 2) for _ in range(7)]
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await stub.SubmitTransfers(
                cpb.SubmitTransfersRequest(transfers=abandoned), metadata=flood, timeout=0.1
            )
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await busy
        await asyncio.sleep(0.5)
        assert metrics.NETTING_DROPPED._value.get() == dropped + 7
        for item in abandoned:
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await stub.GetTransfer(
                    cpb.GetTransferRequest(transfer_id=item.transfer_id), metadata=flood
                )
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await channel.close()
        await hub.stop()
