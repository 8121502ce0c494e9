"""The SDK's retry rules, on a stand-in RPC: RESOURCE_EXHAUSTED with a
RetryInfo (a per-bank bound) is retried after the delay the hub asked for;
without one (gRPC's own message limit) it is final."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from remitnet.clients.base import ClientConfig, HubClient
from remitnet.clients.errors import STATUS_DETAILS_KEY, HubError


def exhausted(retry_after_s: float | None) -> grpc.aio.AioRpcError:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="BANK_QUEUE_FULL", domain="remitnet.io"))
    details = [info]
    if retry_after_s is not None:
        retry = any_pb2.Any()
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after_s * 1e9))
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="full", details=details)
    trailing = grpc.aio.Metadata((STATUS_DETAILS_KEY, status.SerializeToString()))
    return grpc.aio.AioRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(), trailing, "full"
    )


class Flaky:
    def __init__(self, errors: list[grpc.aio.AioRpcError]) -> None:
        self.errors = errors
        self.calls = 0

    async def __call__(self, request: object, **_: Any) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def test_a_throttled_call_is_retried_after_the_delay_the_hub_asked_for() -> None:
    client = HubClient("bank:SDKTEST1", ClientConfig(target="127.0.0.1:1", backoff_s=0.001))
    method = Flaky([exhausted(0.2)])
    started = time.perf_counter()
    assert await client.call(method, object()) == "ok"
    assert method.calls == 2 and time.perf_counter() - started >= 0.2
    await client.close()


async def test_resource_exhausted_without_retry_info_is_final() -> None:
    client = HubClient("bank:SDKTEST1", ClientConfig(target="127.0.0.1:1"))
    method = Flaky([exhausted(None)])
    with pytest.raises(HubError) as err:
        await client.call(method, object())
    assert method.calls == 1 and err.value.reason == "BANK_QUEUE_FULL"
    assert err.value.retry_after_s is None
    await client.close()
