"""The contract a bank integrates from, through real servers: the largest
legal batch through the SDK's documented 4 MiB limits, grpc.reflection.v1,
the keepalive policy, the bank-facing position call, and the FX rate rules
(as_of required, no older rate over a newer one)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.bank import instruction
from remitnet.clients.base import MAX_BATCH_ITEMS, MAX_MESSAGE_BYTES
from remitnet.clients.errors import HubError
from remitnet.fx.v1 import fx_pb2
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.services.adapters.db.schema import fx_rates
from remitnet.services.adapters.grpc import limits, reflection_v1
from remitnet.services.domain.errors import Reason
from remitnet.services.domain.model import MAX_REMITTANCE_INFO
from remitnet.services.service_layer import fx as fx_uc
from remitnet.services.service_layer.audit import audit
from tests.support import HubHandle, counts

WIDE_CHAR = "\U0001f4b8"  # 4 bytes in UTF-8
DEBTOR = "DEBTORBANK000001"  # 16 characters, the longest bank code
CREDITOR = "CREDITORBANK0001"


# Sizes ----------------------------------------------------------------------


async def test_the_largest_legal_batch_goes_through_at_4_mib(hub: HubHandle) -> None:
    """MAX_BATCH_ITEMS transfers, each with 140 four-byte characters of
    remittance info and 16-character bank codes, through a client whose
    limits are the documented 4 MiB: the request and the answer both fit,
    every transfer is accepted, and the remittance info is stored whole."""
    amount = 10**15  # as wide as 5,000 accepted transfers allow
    await hub.operator.create_bank(DEBTOR, "D", "us-east1", ["USD"])
    await hub.operator.create_bank(CREDITOR, "C", "us-east1", ["USD"])
    await hub.operator.deposit(DEBTOR, "USD", amount * MAX_BATCH_ITEMS)
    info = WIDE_CHAR * MAX_REMITTANCE_INFO
    items = [
        instruction(CREDITOR, "USD", amount, remittance_info=info) for _ in range(MAX_BATCH_ITEMS)
    ]
    request = cpb.SubmitTransfersRequest(transfers=items)
    assert 3_000_000 < request.ByteSize() <= MAX_MESSAGE_BYTES
    bank = hub.bank(DEBTOR)
    response = await bank.submit_batch(items, deadline_s=120.0)
    assert response.accepted_count == MAX_BATCH_ITEMS, response.results[0]
    assert response.ByteSize() <= MAX_MESSAGE_BYTES
    assert all(r.transfer.remittance_info == "" for r in response.results)
    assert [r.transfer_id for r in response.results] == [i.transfer_id for i in items]
    stored = await bank.get(items[-1].transfer_id)
    assert stored.remittance_info == info
    # One more item is refused whole, with the limit in the metadata.
    before = counts(hub.db)
    with pytest.raises(HubError) as err:
        await bank.submit_batch([*items[:1], *items], deadline_s=120.0)
    assert (err.value.code, err.value.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.BATCH_TOO_LARGE,
    )
    assert err.value.metadata["limit"] == str(MAX_BATCH_ITEMS)
    assert counts(hub.db) == before
    assert audit(hub.db).ok


async def test_a_request_over_4_mib_is_refused_by_grpc_and_changes_nothing(
    hub: HubHandle,
) -> None:
    await hub.operator.create_bank(DEBTOR, "D", "us-east1", ["USD"])
    await hub.operator.create_bank(CREDITOR, "C", "us-east1", ["USD"])
    before = counts(hub.db)
    huge = [instruction(CREDITOR, "USD", 1, remittance_info="x" * 1000) for _ in range(4_500)]
    request = cpb.SubmitTransfersRequest(transfers=huge)
    assert request.ByteSize() > MAX_MESSAGE_BYTES
    # Sent raw (no SDK-side limit), the hub's receive limit refuses it.
    async with grpc.aio.insecure_channel(
        hub.config.target, options=[("grpc.max_send_message_length", -1)]
    ) as channel:
        stub = cpb.DESCRIPTOR.services_by_name["ClearingService"]
        call = channel.unary_unary(
            f"/{stub.full_name}/SubmitTransfers",
            request_serializer=cpb.SubmitTransfersRequest.SerializeToString,
            response_deserializer=cpb.SubmitTransfersResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request, metadata=(("x-remitnet-principal", f"bank:{DEBTOR}"),))
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert counts(hub.db) == before


async def test_a_refused_item_echoes_only_a_short_transfer_id(hub: HubHandle) -> None:
    await hub.operator.create_bank(DEBTOR, "D", "us-east1", ["USD"])
    await hub.operator.create_bank(CREDITOR, "C", "us-east1", ["USD"])
    long_id = instruction(CREDITOR, "USD", 1, transfer_id="z" * 100_000)
    short_id = instruction(CREDITOR, "USD", 1, transfer_id="not-a-uuid")
    response = await hub.bank(DEBTOR).submit_batch([long_id, short_id])
    assert [r.transfer_id for r in response.results] == ["", "not-a-uuid"]
    assert {r.error.reason for r in response.results} == {Reason.INVALID_TRANSFER_ID}
    assert all(r.error.code == 3 for r in response.results)  # google.rpc.Code


# Reflection -----------------------------------------------------------------


def _v1_call(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamMultiCallable[Any, Any]:
    return channel.stream_stream(
        reflection_v1.METHOD,
        request_serializer=reflection_v1.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_v1.ServerReflectionResponse.FromString,
    )


async def test_reflection_v1_lists_and_describes_every_service(hub: HubHandle) -> None:
    """A grpc.reflection.v1 client (what grpcurl and Postman try first):
    list the services, then rebuild ClearingService and NettingService from
    the server's descriptors alone."""
    async with grpc.aio.insecure_channel(hub.config.target) as channel:
        call = _v1_call(channel)()
        await call.write(reflection_v1.ServerReflectionRequest(list_services=""))
        listed: Any = await call.read()
        names = {s.name for s in listed.list_services_response.service}
        await call.write(
            reflection_v1.ServerReflectionRequest(
                file_containing_symbol="remitnet.netting.v1.NettingService"
            )
        )
        netting: Any = await call.read()
        await call.write(
            reflection_v1.ServerReflectionRequest(file_containing_symbol="no.such.Service")
        )
        missing: Any = await call.read()
        await call.write(
            reflection_v1.ServerReflectionRequest(
                file_containing_symbol="grpc.reflection.v1.ServerReflection"
            )
        )
        itself: Any = await call.read()
        await call.done_writing()
    assert {
        "remitnet.participants.v1.ParticipantsService",
        "remitnet.clearing.v1.ClearingService",
        "remitnet.netting.v1.NettingService",
        "remitnet.settlement.v1.SettlementService",
        "remitnet.fx.v1.FxService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    pool = DescriptorPool()
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in netting.file_descriptor_response.file_descriptor_proto
    ]
    added: set[str] = set()
    while len(added) < len(files):  # dependencies first
        for f in files:
            if f.name not in added and set(f.dependency) <= added:
                pool.Add(f)
                added.add(f.name)
    service = pool.FindServiceByName("remitnet.netting.v1.NettingService")
    assert "GetPosition" in [m.name for m in service.methods]
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    (own,) = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in itself.file_descriptor_response.file_descriptor_proto
    ]
    assert own.package == "grpc.reflection.v1" and own.service[0].name == "ServerReflection"


# Keepalive ------------------------------------------------------------------


async def _idle_stream_survives(target: str, keepalive_ms: int, seconds: float) -> bool:
    """Hold an idle server stream (health Watch sends one message, then
    nothing) on a channel pinging every `keepalive_ms`; True if it is still
    open after `seconds`, False if the server ended it (GOAWAY
    too_many_pings shows as UNAVAILABLE or RESOURCE_EXHAUSTED)."""
    options = [
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        first = await call.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        try:
            await asyncio.wait_for(call.read(), timeout=seconds)
        except TimeoutError:
            call.cancel()
            return True
        except grpc.aio.AioRpcError as err:
            assert err.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
            ), err
            return False
        raise AssertionError("health Watch sent a second message")


async def _policy_server(min_interval_ms: int) -> tuple[grpc.aio.Server, int]:
    """A server with the hub's options, its enforced ping interval scaled
    down so that the test takes seconds, not minutes."""
    options = dict(limits.server_options())
    options["grpc.http2.min_ping_interval_without_data_ms"] = min_interval_ms
    server = grpc.aio.server(options=list(options.items()))
    health_servicer = grpc_health_servicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def grpc_health_servicer() -> health_pb2_grpc.HealthServicer:
    from grpc_health.v1 import health

    return health.aio.HealthServicer()


async def test_keepalive_pings_at_the_permitted_rate_keep_an_idle_stream() -> None:
    """The policy's ratio, in seconds instead of minutes: the hub enforces
    half the permitted client interval (10 s for 20 s). A client pinging at
    the permitted interval (scaled: 3 s against 1.5 s) keeps an idle stream;
    one pinging faster than the enforced minimum (1 s, as fast as the C core
    lets a client ping) is sent GOAWAY too_many_pings, which shows that the
    check is real."""
    permitted_s = limits.KEEPALIVE_MIN_CLIENT_INTERVAL_S
    ratio = permitted_s * 1000 / limits.KEEPALIVE_ENFORCED_MIN_INTERVAL_MS
    enforced_ms = 1_500
    server, port = await _policy_server(enforced_ms)
    try:
        target = f"127.0.0.1:{port}"
        permitted_ms = int(enforced_ms * ratio)
        polite, rude = await asyncio.gather(
            _idle_stream_survives(target, permitted_ms, 3 * permitted_ms / 1000),
            _idle_stream_survives(target, 1_000, 3 * permitted_ms / 1000),
        )
        assert polite, "a client pinging at the permitted interval was sent GOAWAY"
        assert not rude, "a client pinging too often was not refused: the test proves nothing"
    finally:
        await server.stop(None)


# Position -------------------------------------------------------------------


async def test_a_bank_sees_its_own_position_and_sizes_a_payment(hub: HubHandle) -> None:
    await hub.onboard({"BANKAA01": "us-east1", "BANKBB01": "us-east1"}, ["USD", "EUR"])
    await hub.operator.set_cap("BANKAA01", "USD", 500)
    aa, bb = hub.bank("BANKAA01"), hub.bank("BANKBB01")
    await aa.submit_batch(
        [instruction("BANKBB01", "USD", 300), instruction("BANKBB01", "USD", 200)]
    )
    await bb.submit(instruction("BANKAA01", "USD", 50))
    position = await aa.position()
    assert position.bank_code == "BANKAA01"
    assert [p.currency for p in position.positions] == ["EUR", "USD"]
    usd = position.positions[1]
    assert (usd.balance, usd.net_debit_cap, usd.unsettled_net) == (1_000_000, 500, -450)
    assert usd.headroom == 1_000_000 + 500 - 450
    assert usd.open_cycle_id.startswith("USD-")
    assert (usd.open_cycle_sent, usd.open_cycle_received) == (500, 50)
    assert (usd.open_cycle_sent_count, usd.open_cycle_received_count) == (2, 1)
    (only,) = (await aa.position("EUR")).positions
    assert (only.currency, only.headroom, only.open_cycle_sent) == ("EUR", 1_000_000, 0)
    # Exactly the headroom clears; one more minor unit is refused with the
    # headroom and the amount in the ErrorInfo.
    with pytest.raises(HubError) as err:
        await aa.submit(instruction("BANKBB01", "USD", usd.headroom + 1))
    assert (err.value.code, err.value.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        Reason.INSUFFICIENT_LIQUIDITY,
    )
    assert err.value.metadata == {
        "bank": "BANKAA01",
        "currency": "USD",
        "headroom": str(usd.headroom),
        "amount": str(usd.headroom + 1),
    }
    batch = await aa.submit_batch([instruction("BANKBB01", "USD", usd.headroom + 1)])
    assert batch.results[0].error.reason == Reason.INSUFFICIENT_LIQUIDITY
    with pytest.raises(HubError) as gross:  # gross settlement says the same
        await aa.submit(instruction("BANKBB01", "USD", usd.headroom + 1, gross=True))
    assert gross.value.metadata == err.value.metadata
    await aa.submit(instruction("BANKBB01", "USD", usd.headroom))
    assert (await aa.position("USD")).positions[0].headroom == 0
    # The operator reads any bank's.
    op = hub.operator
    theirs = await op.call(op.netting.GetPosition, npb.GetPositionRequest(bank_code="BANKBB01"))
    assert theirs.positions[1].open_cycle_received == 500 + usd.headroom


async def test_position_refusals(hub: HubHandle) -> None:
    await hub.onboard({"BANKAA01": "us-east1", "BANKBB01": "us-east1"}, ["USD"])
    aa, op = hub.bank("BANKAA01"), hub.operator
    cases: list[tuple[object, npb.GetPositionRequest, grpc.StatusCode, str]] = [
        # Another bank's position is absent, exactly like an unknown bank's.
        (aa, npb.GetPositionRequest(bank_code="BANKBB01"), grpc.StatusCode.NOT_FOUND,
         Reason.UNKNOWN_PARTICIPANT),
        (op, npb.GetPositionRequest(bank_code="NOSUCHBANK"), grpc.StatusCode.NOT_FOUND,
         Reason.UNKNOWN_PARTICIPANT),
        (aa, npb.GetPositionRequest(currency="EUR"), grpc.StatusCode.NOT_FOUND,
         Reason.ACCOUNT_NOT_FOUND),
        (aa, npb.GetPositionRequest(currency="XXX"), grpc.StatusCode.INVALID_ARGUMENT,
         Reason.UNKNOWN_CURRENCY),
        (op, npb.GetPositionRequest(), grpc.StatusCode.INVALID_ARGUMENT, Reason.MISSING_FIELD),
        (op, npb.GetPositionRequest(bank_code="bad code"), grpc.StatusCode.INVALID_ARGUMENT,
         Reason.INVALID_BANK_CODE),
    ]  # fmt: skip
    for client, request, code, reason in cases:
        with pytest.raises(HubError) as err:
            await client.call(client.netting.GetPosition, request)  # type: ignore[attr-defined]
        assert (err.value.code, err.value.reason) == (code, reason), request


# Rates ----------------------------------------------------------------------


def _rate(base: str, quote: str, mid: str, as_of: datetime | None) -> fx_pb2.Rate:
    rate = fx_pb2.Rate(base_currency=base, quote_currency=quote, mid_rate=mid)
    if as_of is not None:
        rate.as_of.FromDatetime(as_of)
    return rate


def _stored_rates(hub: HubHandle) -> list[tuple[object, ...]]:
    return hub.db.read(
        lambda uow: [
            tuple(r) for r in uow.conn.execute(fx_rates.select().order_by("base", "quote"))
        ]
    )


async def test_rates_need_as_of_and_an_older_rate_never_replaces_a_newer(hub: HubHandle) -> None:
    op = hub.operator
    now = datetime.now(UTC)

    async def update(*rates: fx_pb2.Rate) -> int:
        response = await op.call(op.fx.UpdateRates, fx_pb2.UpdateRatesRequest(rates=rates))
        return response.updated

    assert await update(_rate("USD", "PHP", "56.1", now - timedelta(minutes=1))) == 1
    before = _stored_rates(hub)
    refusals = [
        # No as_of: refused, not stamped with the hub's now.
        (
            [_rate("USD", "INR", "83.2", now), _rate("USD", "JPY", "151", None)],
            grpc.StatusCode.INVALID_ARGUMENT,
            Reason.MISSING_FIELD,
            {"field": "as_of", "index": "1"},
        ),
        # An hour older than the stored one: refused, the whole call.
        (
            [_rate("USD", "INR", "83.2", now), _rate("USD", "PHP", "55", now - timedelta(hours=1))],
            grpc.StatusCode.FAILED_PRECONDITION,
            Reason.RATE_OLDER_THAN_STORED,
            {"pair": "USD/PHP", "index": "1"},
        ),
        # Its inverse, older: the same pair.
        (
            [_rate("PHP", "USD", "0.0179", now - timedelta(hours=1))],
            grpc.StatusCode.FAILED_PRECONDITION,
            Reason.RATE_OLDER_THAN_STORED,
            {"pair": "PHP/USD", "index": "0"},
        ),
    ]
    for rates, code, reason, metadata in refusals:
        with pytest.raises(HubError) as err:
            await update(*rates)
        assert (err.value.code, err.value.reason) == (code, reason), rates
        assert metadata.items() <= err.value.metadata.items(), err.value.metadata
        assert _stored_rates(hub) == before
    # The same as_of replaces (a correction); a newer inverse replaces the
    # pair: one mid per pair, so both directions quote from it.
    assert await update(_rate("USD", "PHP", "56.2", now - timedelta(minutes=1))) == 1
    assert await update(_rate("PHP", "USD", "0.0178", now)) == 1
    listed = await op.call(op.fx.ListRates, fx_pb2.ListRatesRequest())
    assert [(r.base_currency, r.quote_currency, r.mid_rate) for r in listed.rates] == [
        ("PHP", "USD", "0.0178")
    ]
    await hub.operator.create_bank("BANKAA01", "A", "us-east1", ["USD", "PHP"])
    await hub.fund_provider(["USD", "PHP"])  # the default provider FXHUB, whose rates these are
    quote = await hub.bank("BANKAA01").quote("USD", "PHP", source_amount=10_000)
    assert quote.derivation == "1/(PHP/USD)"
    # 1 / 0.0178 rounded once, half-even, to 20 significant digits.
    assert quote.mid_rate == "56.179775280898876404"


async def test_a_rates_file_older_than_the_database_is_skipped_at_start(
    hub: HubHandle, tmp_path: Path
) -> None:
    """A restart with the original --fx-rates file keeps the newer rates the
    feed stored since; the file's other rates are loaded."""
    now = datetime.now(UTC)
    await hub.operator.update_rates({("USD", "PHP"): "56.3"}, as_of=now)
    path = tmp_path / "rates.csv"
    old = (now - timedelta(hours=1)).isoformat()
    path.write_text(f"base,quote,rate,as_of\nUSD,PHP,55.0,{old}\nUSD,INR,83.2,{old}\n")
    rows = fx_uc.load_rates_file(path)
    with pytest.raises(Exception) as err:
        fx_uc.update_rates(hub.db, rows)
    assert getattr(err.value, "reason", None) == Reason.RATE_OLDER_THAN_STORED
    stored = fx_uc.update_rates(hub.db, rows, keep_newer=True)
    assert [(r.base, r.quote) for r in stored] == [("USD", "INR")]
    mids = {(r.base, r.quote): str(r.mid) for r in fx_uc.list_rates(hub.db)}
    assert mids == {("USD", "PHP"): "56.3", ("USD", "INR"): "83.2"}
