"""Hypothesis-driven requests with edge and malformed values through real
gRPC: every answer is OK or a defined status with an ErrorInfo reason, the
server stays healthy, and rejected input changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.bank import instruction
from remitnet.common.v1.money_pb2 import Money
from remitnet.participants.v1 import participants_pb2 as ppb
from remitnet.participants.v1 import participants_pb2_grpc as pgrpc
from tests.support import HubHandle, counts, start_hub

INT64 = st.integers(-(2**63), 2**63 - 1)
EDGE_INTS = st.sampled_from([-(2**63), -1, 0, 1, 2**31, 2**63 - 1]) | INT64
TEXT = st.text(max_size=300) | st.sampled_from(["", " ", "\x00", "é" * 141, "🏦" * 50, "A" * 5000])
IDS = st.uuids().map(str) | TEXT | st.sampled_from(["00000000-0000-0000-0000-000000000000"])
BANKS = st.sampled_from(["FUZZB01", "FUZZA01", "NOSUCH01", "", "fuzzb01", "HUB"]) | TEXT
CURRENCIES = st.sampled_from(["USD", "EUR", "usd", "", "XXX", "JPY"]) | TEXT
MODES = st.sampled_from([0, 1, 2, 3, 99, -1, 2**31 - 1])
ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
}


@pytest.fixture(scope="module")
async def fuzz_hub(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HubHandle]:
    db = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    hub = await start_hub(f"sqlite:///{db}")
    await hub.onboard({"FUZZA01": "us-east1", "FUZZB01": "europe-west1"}, ["USD"], deposit=10**9)
    try:
        yield hub
    finally:
        await hub.stop()


def reason_of(err: grpc.aio.AioRpcError) -> str:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    return ""


async def healthy(hub: HubHandle) -> bool:
    stub = health_pb2_grpc.HealthStub(hub.operator.channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest())
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def item_strategy() -> st.SearchStrategy[cpb.TransferInstruction]:
    return st.builds(
        lambda tid, creditor, currency, amount, info, mode, quote: cpb.TransferInstruction(
            transfer_id=tid,
            creditor_bank=creditor,
            amount=Money(currency=currency, minor_units=amount),
            remittance_info=info,
            settlement_mode=mode,
            quote_id=quote,
        ),
        IDS,
        BANKS,
        CURRENCIES,
        EDGE_INTS,
        TEXT,
        MODES,
        st.just("") | IDS,
    )


FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(item=item_strategy())
async def test_fuzzed_single_transfers(fuzz_hub: HubHandle, item: cpb.TransferInstruction) -> None:
    before = counts(fuzz_hub.db)
    stub = fuzz_hub.bank("FUZZA01").clearing
    try:
        response = await stub.SubmitTransfer(
            cpb.SubmitTransferRequest(transfer=item),
            metadata=(("x-remitnet-principal", "bank:FUZZA01"),),
            timeout=30,
        )
        assert response.transfer.transfer_id
    except grpc.aio.AioRpcError as err:
        assert err.code() in ALLOWED, (err.code(), err.details())
        assert reason_of(err), f"no reason for {err.code()}: {err.details()}"
        assert counts(fuzz_hub.db) == before
    assert await healthy(fuzz_hub)


@FUZZ
@given(items=st.lists(item_strategy(), min_size=1, max_size=40), dup=st.booleans())
async def test_fuzzed_batches_with_duplicates(
    fuzz_hub: HubHandle, items: list[cpb.TransferInstruction], dup: bool
) -> None:
    if dup:
        items = items + items[: len(items) // 2]
    before = counts(fuzz_hub.db)
    stub = fuzz_hub.bank("FUZZA01").clearing
    response = await stub.SubmitTransfers(
        cpb.SubmitTransfersRequest(transfers=items),
        metadata=(("x-remitnet-principal", "bank:FUZZA01"),),
        timeout=30,
    )
    assert len(response.results) == len(items)
    for result in response.results:
        if result.HasField("error"):
            assert result.error.reason and result.error.code != 0
        else:
            assert result.HasField("transfer")
    if response.accepted_count == 0:
        assert counts(fuzz_hub.db) == before
    assert await healthy(fuzz_hub)


@FUZZ
@given(code=TEXT | BANKS, name=TEXT, region=TEXT, currencies=st.lists(CURRENCIES, max_size=4))
async def test_fuzzed_onboarding(
    fuzz_hub: HubHandle, code: str, name: str, region: str, currencies: list[str]
) -> None:
    before = counts(fuzz_hub.db)
    stub = pgrpc.ParticipantsServiceStub(fuzz_hub.operator.channel)
    try:
        await stub.CreateBank(
            ppb.CreateBankRequest(code=code, name=name, home_region=region, currencies=currencies),
            metadata=(("x-remitnet-principal", "operator"),),
            timeout=30,
        )
    except grpc.aio.AioRpcError as err:
        assert err.code() in ALLOWED, (err.code(), err.details())
        assert reason_of(err)
        assert counts(fuzz_hub.db) == before
    assert await healthy(fuzz_hub)


async def test_limits_on_size(fuzz_hub: HubHandle) -> None:
    before = counts(fuzz_hub.db)
    client = fuzz_hub.bank("FUZZA01")
    stub = client.clearing
    meta = (("x-remitnet-principal", "bank:FUZZA01"),)
    too_many = [instruction("FUZZB01", "USD", 1) for _ in range(10_001)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SubmitTransfers(cpb.SubmitTransfersRequest(transfers=too_many), metadata=meta)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(err.value) == "BATCH_TOO_LARGE"
    # Beyond the server's 32 MiB receive limit: refused by gRPC itself.
    huge = [instruction("FUZZB01", "USD", 1, remittance_info="x" * 4000) for _ in range(9_000)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SubmitTransfers(cpb.SubmitTransfersRequest(transfers=huge), metadata=meta)
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    unknown_status = cpb.ListTransfersRequest(status=77)  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListTransfers(unknown_status, metadata=meta)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert counts(fuzz_hub.db) == before
    assert await healthy(fuzz_hub)
