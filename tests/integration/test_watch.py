"""The status stream: every change of a bank's transfers, in time order,
resumable after a disconnect without gaps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.bank import BankClient, instruction
from tests.support import HubHandle


async def _collect(
    client: BankClient,
    until: Callable[[list[cpb.WatchTransfersResponse]], bool],
    token: str = "",
    wait_s: float = 20.0,
) -> list[cpb.WatchTransfersResponse]:
    events: list[cpb.WatchTransfersResponse] = []

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

    def settled(events: list[cpb.WatchTransfersResponse]) -> bool:
        return any(
            e.HasField("cycle") and e.cycle.status == cpb.TRANSFER_STATUS_SETTLED for e in events
        )

    watcher = asyncio.create_task(_collect(b, settled))
    await asyncio.sleep(0.5)  # the stream starts "now": let it open first
    response = await a.submit_batch([instruction("WATCHB01", "USD", 10 + i) for i in range(30)])
    ids = [r.transfer.transfer_id for r in response.results]
    await a.cancel(ids[0])
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

    def has_later(evs: list[cpb.WatchTransfersResponse]) -> bool:
        return later_ids <= {e.transfer.transfer_id for e in evs if e.HasField("transfer")}

    resumed = await _collect(b, has_later, token=token)
    assert later_ids <= {e.transfer.transfer_id for e in resumed}
    assert not (
        {e.transfer.transfer_id for e in resumed if e.HasField("transfer")} - later_ids - set(ids)
    )
