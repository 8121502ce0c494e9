"""The status stream: every change of a bank's transfers, in time order,
resumable after a disconnect without gaps."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from datetime import UTC, datetime

import grpc
import pytest

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.bank import BankClient, instruction
from remitnet.clients.errors import HubError
from remitnet.services.domain.errors import Reason
from remitnet.services.service_layer.audit import audit
from tests.support import HubHandle


def watch_token(seq: int, index: int) -> str:
    return base64.urlsafe_b64encode(f"f1:{seq}:{index}".encode()).decode()


async def _collect(
    client: BankClient,
    until: Callable[[list[cpb.StatusEvent]], bool],
    token: str = "",
    wait_s: float = 20.0,
) -> list[cpb.StatusEvent]:
    events: list[cpb.StatusEvent] = []

    async def run() -> None:
        async for event in client.watch(token):
            events.append(event)
            if until(events):
                return

    await asyncio.wait_for(run(), wait_s)
    return events


async def test_watch_reports_every_change_and_resumes_without_gaps(hub: HubHandle) -> None:
    await hub.onboard({"WATCHA01": "us-east1", "WATCHB01": "europe-west1"}, ["USD"])
    a, b = hub.bank("WATCHA01"), hub.bank("WATCHB01")

    def settled(events: list[cpb.StatusEvent]) -> bool:
        return any(
            e.HasField("cycle") and e.cycle.status == cpb.TRANSFER_STATUS_SETTLED for e in events
        )

    watcher = asyncio.create_task(_collect(b, settled))
    await asyncio.sleep(0.5)  # the stream starts "now": let it open first
    response = await a.submit_batch([instruction("WATCHB01", "USD", 10 + i) for i in range(30)])
    ids = [r.transfer.transfer_id for r in response.results]
    await hub.operator.cancel_transfer(ids[0], "TECH: sent twice")
    closed = (await hub.operator.close_cycle("USD")).closed
    await hub.operator.settle_cycle(closed.cycle_id)
    events = await watcher

    accepted = {
        e.transfer.transfer_id
        for e in events
        if e.HasField("transfer") and e.transfer.status == cpb.TRANSFER_STATUS_ACCEPTED
    }
    assert accepted == set(ids)
    cancelled = [e for e in events if e.transfer.status == cpb.TRANSFER_STATUS_CANCELLED]
    assert [e.transfer.transfer_id for e in cancelled] == [ids[0]]
    cycle_events = [(e.cycle.cycle_id, e.cycle.status) for e in events if e.HasField("cycle")]
    assert cycle_events == [
        (closed.cycle_id, cpb.TRANSFER_STATUS_CLOSED),
        (closed.cycle_id, cpb.TRANSFER_STATUS_SETTLED),
    ]
    times = [e.at.ToDatetime() for e in events]
    assert times == sorted(times)

    # Disconnected: more transfers happen; resuming from the last token
    # delivers them (repeats near the token are allowed, gaps are not).
    token = events[-1].resume_token
    later = await a.submit_batch([instruction("WATCHB01", "USD", 5) for _ in range(10)])
    later_ids = {r.transfer.transfer_id for r in later.results}

    def has_later(evs: list[cpb.StatusEvent]) -> bool:
        return later_ids <= {e.transfer.transfer_id for e in evs if e.HasField("transfer")}

    resumed = await _collect(b, has_later, token=token)
    assert later_ids <= {e.transfer.transfer_id for e in resumed}
    assert not (
        {e.transfer.transfer_id for e in resumed if e.HasField("transfer")} - later_ids - set(ids)
    )


def _transfer_ids(events: list[cpb.StatusEvent], status: int) -> list[str]:
    return [
        e.transfer.transfer_id
        for e in events
        if e.HasField("transfer") and e.transfer.status == status
    ]


async def test_a_creditor_receiving_10000_events_in_a_second_gets_every_one(
    hub: HubHandle,
) -> None:
    """The stall of issue 11: a stream that re-scanned a look-back window
    with a fixed page stopped for good past 2,000 events in ten seconds."""
    await hub.onboard(
        {"FLOODA01": "us-east1", "FLOODB01": "us-east1", "FLOODC01": "europe-west1"},
        ["USD"],
        deposit=100_000_000,
    )
    senders = [hub.bank("FLOODA01"), hub.bank("FLOODB01")]
    creditor = hub.bank("FLOODC01")
    ids: list[str] = []

    def done(events: list[cpb.StatusEvent]) -> bool:
        return any(
            e.HasField("cycle") and e.cycle.status == cpb.TRANSFER_STATUS_SETTLED for e in events
        )

    watcher = asyncio.create_task(_collect(creditor, done, wait_s=90))
    await asyncio.sleep(0.3)
    batches = [
        sender.submit_batch([instruction("FLOODC01", "USD", 1 + i) for i in range(2_500)])
        for sender in senders
        for _ in range(2)
    ]
    for response in await asyncio.gather(*batches):
        assert response.accepted_count == 2_500
        ids += [r.transfer.transfer_id for r in response.results]
    closed = (await hub.operator.close_cycle("USD")).closed
    await hub.operator.settle_cycle(closed.cycle_id)
    events = await watcher

    accepted = _transfer_ids(events, cpb.TRANSFER_STATUS_ACCEPTED)
    assert len(accepted) == 10_000 and set(accepted) == set(ids)
    cycles = [(e.cycle.cycle_id, e.cycle.status) for e in events if e.HasField("cycle")]
    assert cycles == [
        (closed.cycle_id, cpb.TRANSFER_STATUS_CLOSED),
        (closed.cycle_id, cpb.TRANSFER_STATUS_SETTLED),
    ]
    tokens = [e.resume_token for e in events]
    assert len(set(tokens)) == len(tokens)
    assert audit(hub.db).ok, audit(hub.db).violations


async def test_resume_delivers_exactly_the_events_after_the_token(hub: HubHandle) -> None:
    await hub.onboard({"RESUMA01": "us-east1", "RESUMB01": "us-east1"}, ["USD"])
    a, b = hub.bank("RESUMA01"), hub.bank("RESUMB01")
    first = await a.submit_batch([instruction("RESUMB01", "USD", 1 + i) for i in range(300)])
    second = await a.submit_batch([instruction("RESUMB01", "USD", 1 + i) for i in range(300)])
    all_ids = [r.transfer.transfer_id for r in (*first.results, *second.results)]
    # From the start of the feed: replay with `since`, then cut mid-batch.
    start = datetime(2000, 1, 1, tzinfo=UTC)
    seen: list[cpb.StatusEvent] = []
    async for event in b.watch(since=start):
        seen.append(event)
        if len(seen) == 137:  # inside the first batch's event
            break
    rest: list[cpb.StatusEvent] = []
    async for event in b.watch(seen[-1].resume_token):
        rest.append(event)
        if len(seen) + len(rest) == 600:
            break
    delivered = [e.transfer.transfer_id for e in seen + rest]
    assert sorted(delivered) == sorted(all_ids)  # none missing, none repeated
    # Resuming at the very end sends nothing old: the next event is new.
    later = (await a.submit(instruction("RESUMB01", "USD", 7))).transfer.transfer_id
    async for event in b.watch(rest[-1].resume_token):
        assert event.transfer.transfer_id == later
        break


async def test_cross_currency_status_agrees_everywhere(hub: HubHandle) -> None:
    """Settled only when both legs' cycles are; both parties hear every step
    and GetTransfer and ListTransfers say the same at each one."""
    await hub.operator.update_rates({("USD", "PHP"): "56.10"})
    await hub.operator.create_bank("FXWUS001", "US", "us-east1", ["USD"])
    await hub.operator.create_bank("FXWPH001", "PH", "asia-southeast1", ["PHP"])
    await hub.operator.deposit("FXWUS001", "USD", 10_000_000)
    await hub.fund_provider(["PHP"])  # the default provider FXHUB delivers the PHP
    us, ph = hub.bank("FXWUS001"), hub.bank("FXWPH001")
    quote = await us.quote("USD", "PHP", source_amount=100_000)
    t = (await us.submit(instruction("FXWPH001", "USD", 100_000, quote_id=quote.quote_id))).transfer
    assert t.cycle_id.startswith("USD-") and t.creditor_cycle_id.startswith("PHP-")
    start = datetime(2000, 1, 1, tzinfo=UTC)

    async def statuses(client: BankClient, n: int) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        async for e in client.watch(since=start):
            if e.HasField("transfer"):
                out.append(("transfer", e.transfer.status))
            else:
                out.append((e.cycle.cycle_id[:3], e.cycle.status))
            if len(out) == n:
                break
        return out

    async def agree(expected: cpb.TransferStatus.ValueType) -> None:
        for client in (us, ph):
            assert (await client.get(t.transfer_id)).status == expected
            listed = await client.list(status=expected)
            assert [x.transfer_id for x in listed.transfers] == [t.transfer_id]

    await agree(cpb.TRANSFER_STATUS_ACCEPTED)
    usd = (await hub.operator.close_cycle("USD")).closed
    await agree(cpb.TRANSFER_STATUS_ACCEPTED)  # the PHP leg is still open
    await hub.operator.settle_cycle(usd.cycle_id)
    await agree(cpb.TRANSFER_STATUS_ACCEPTED)
    php = (await hub.operator.close_cycle("PHP")).closed
    await agree(cpb.TRANSFER_STATUS_CLOSED)
    await hub.operator.settle_cycle(php.cycle_id)
    await agree(cpb.TRANSFER_STATUS_SETTLED)

    accepted, closed, settled = (
        cpb.TRANSFER_STATUS_ACCEPTED,
        cpb.TRANSFER_STATUS_CLOSED,
        cpb.TRANSFER_STATUS_SETTLED,
    )
    assert await asyncio.wait_for(statuses(us, 5), 20) == [
        ("transfer", accepted),
        ("USD", closed),
        ("USD", settled),
        ("transfer", closed),
        ("transfer", settled),
    ]
    assert await asyncio.wait_for(statuses(ph, 5), 20) == [
        ("transfer", accepted),
        ("PHP", closed),
        ("transfer", closed),
        ("PHP", settled),
        ("transfer", settled),
    ]
    assert audit(hub.db).ok, audit(hub.db).violations


async def test_watch_refusals_and_bounds(hub: HubHandle) -> None:
    await hub.onboard({"BOUNDA01": "us-east1"}, ["USD"])
    bank = hub.bank("BOUNDA01")
    for token in ("not-base64!", "Zm9v", watch_token(10**6, 0)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in bank.watch(token):
                break
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert HubError.from_rpc_error(info.value).reason == Reason.INVALID_RESUME_TOKEN
    bad_since = cpb.WatchTransfersRequest()
    bad_since.since.seconds = -(10**12)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in bank.clearing.WatchTransfers(bad_since, metadata=bank._metadata):
            break
    assert HubError.from_rpc_error(info.value).reason == Reason.INVALID_TIMESTAMP

    # Headers come at once, before any event; the ninth stream is refused.
    limit = hub.hub.config.watch.max_streams_per_bank
    calls = [
        bank.clearing.WatchTransfers(cpb.WatchTransfersRequest(), metadata=bank._metadata)
        for _ in range(limit)
    ]
    for call in calls:
        await asyncio.wait_for(call.initial_metadata(), 5)
    extra = bank.clearing.WatchTransfers(cpb.WatchTransfersRequest(), metadata=bank._metadata)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await extra.read()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert HubError.from_rpc_error(info.value).reason == Reason.TOO_MANY_STREAMS
    for call in calls:
        call.cancel()
    await asyncio.sleep(0.2)
    again = bank.clearing.WatchTransfers(cpb.WatchTransfersRequest(), metadata=bank._metadata)
    await asyncio.wait_for(again.initial_metadata(), 5)
    again.cancel()


async def test_a_client_cancelling_its_stream_is_not_an_error(
    hub: HubHandle, caplog: pytest.LogCaptureFixture
) -> None:
    await hub.onboard({"CANCEL01": "us-east1", "CANCEL02": "us-east1"}, ["USD"])
    bank = hub.bank("CANCEL01")
    call = bank.clearing.WatchTransfers(cpb.WatchTransfersRequest(), metadata=bank._metadata)
    await asyncio.wait_for(call.initial_metadata(), 5)
    await hub.bank("CANCEL02").submit(instruction("CANCEL01", "USD", 5))
    message = await asyncio.wait_for(call.read(), 5)
    assert isinstance(message, cpb.WatchTransfersResponse) and len(message.events) == 1
    with caplog.at_level("DEBUG"):
        call.cancel()
        await asyncio.sleep(0.5)
    assert not [r for r in caplog.records if r.levelno >= 30], caplog.text
    assert hub.hub.feed is not None and hub.hub.feed.streams("CANCEL01") == 0
