"""Cycles close atomically and settle exactly once; the ledger balances."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.bank import instruction
from remitnet.clients.errors import HubError
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.services.domain.errors import Reason
from remitnet.services.service_layer.audit import audit
from tests.support import HubHandle, start_hub

BANKS = {
    "BANKA01": "us-east1",
    "BANKB01": "us-east1",
    "BANKC01": "europe-west1",
    "BANKD01": "europe-west1",
}


@pytest.fixture
async def net(hub: HubHandle) -> HubHandle:
    await hub.onboard(BANKS, ["USD"], deposit=1_000_000, cap=50_000)
    return hub


async def _traffic(net: HubHandle, n: int = 200) -> None:
    codes = list(BANKS)
    for i, code in enumerate(codes):
        creditor = codes[(i + 1) % len(codes)]
        other = codes[(i + 2) % len(codes)]
        items = [instruction(creditor, "USD", 100 + i * 7 + k % 13) for k in range(n)]
        items += [instruction(other, "USD", 50 + k % 5) for k in range(n // 2)]
        response = await net.bank(code).submit_batch(items)
        assert response.accepted_count == len(items)


async def test_close_and_settle_posts_net_positions_once(net: HubHandle) -> None:
    await _traffic(net)
    closed = (await net.operator.close_cycle("USD")).closed
    assert closed.state == npb.CYCLE_STATE_CLOSED
    assert sum(p.net for p in closed.positions) == 0
    assert closed.transfer_count == 4 * 300
    assert closed.net_value == sum(p.net for p in closed.positions if p.net > 0)
    assert closed.gross_value > closed.net_value
    settled = await net.operator.settle_cycle(closed.cycle_id)
    assert not settled.already_settled
    assert {p.bank_code: p.amount for p in settled.postings} == {
        p.bank_code: p.net for p in closed.positions if p.net
    }
    again = await net.operator.settle_cycle(closed.cycle_id)
    assert again.already_settled and list(again.postings) == list(settled.postings)
    for code in BANKS:
        statement = await net.operator.statement(code, "USD")
        assert statement.closing_balance.minor_units == statement.opening_balance.minor_units + sum(
            e.amount for e in statement.entries
        )
        position = next(p for p in closed.positions if p.bank_code == code)
        assert statement.closing_balance.minor_units == 1_000_000 + position.net
        bank = await net.operator.get_bank(code)
        assert bank.accounts[0].unsettled_net == 0
    ledger = await net.operator.ledger_balance()
    assert [(c.currency, c.balance_sum, c.entry_sum) for c in ledger.currencies] == [("USD", 0, 0)]
    t = (await net.bank("BANKA01").list(page_size=1)).transfers[0]
    assert t.status == cpb.TRANSFER_STATUS_SETTLED
    report = audit(net.db)
    assert report.ok, report.violations


async def test_open_cycle_cannot_be_settled_and_unknown_cycle(net: HubHandle) -> None:
    with pytest.raises(HubError) as err:
        await net.operator.settle_cycle("USD-000001")
    assert err.value.reason == Reason.CYCLE_NOT_CLOSED
    with pytest.raises(HubError) as err:
        await net.operator.settle_cycle("USD-999999")
    assert (err.value.code, err.value.reason) == (grpc.StatusCode.NOT_FOUND, Reason.CYCLE_NOT_FOUND)


async def test_concurrent_settle_calls_settle_once(net: HubHandle) -> None:
    await _traffic(net, 50)
    closed = (await net.operator.close_cycle("USD")).closed
    results = await asyncio.gather(*(net.operator.settle_cycle(closed.cycle_id) for _ in range(8)))
    assert sum(not r.already_settled for r in results) == 1
    assert len({tuple((p.bank_code, p.amount) for p in r.postings) for r in results}) == 1
    report = audit(net.db)
    assert report.ok, report.violations


async def test_statement_pages_and_equals_sum_of_entries(net: HubHandle) -> None:
    for _ in range(3):
        await _traffic(net, 10)
        closed = (await net.operator.close_cycle("USD")).closed
        await net.operator.settle_cycle(closed.cycle_id)
    st = await net.bank("BANKA01").statement("USD")
    assert [e.sequence for e in st.entries] == list(range(1, len(st.entries) + 1))
    running = st.opening_balance.minor_units
    for e in st.entries:
        running += e.amount
        assert e.balance_after == running
    assert running == st.closing_balance.minor_units
    tail = await net.bank("BANKA01").statement("USD", after_sequence=2)
    assert tail.opening_balance.minor_units == st.entries[1].balance_after
    with pytest.raises(HubError) as err:
        await net.bank("BANKA01").call(
            net.bank("BANKA01").settlement.GetStatement,
            __import__("remitnet.settlement.v1.settlement_pb2", fromlist=["x"]).GetStatementRequest(
                bank_code="BANKB01", currency="USD"
            ),
        )
    assert err.value.code is grpc.StatusCode.NOT_FOUND


async def test_transfers_during_close_land_in_exactly_one_cycle(pg_hub: HubHandle) -> None:
    """Submissions race a stream of closes on PostgreSQL at SERIALIZABLE,
    through two hub processes' worth of engines."""
    net = pg_hub
    await net.onboard(BANKS, ["USD"], deposit=10_000_000)
    second = await start_hub(net.hub.config.db_url)
    try:
        codes = list(BANKS)
        accepted: list[cpb.Transfer] = []

        async def sender(i: int) -> None:
            hub = net if i % 2 else second
            client = hub.bank(codes[i % 4])
            for _ in range(15):
                items = [instruction(codes[(i + 1) % 4], "USD", 10) for _ in range(40)]
                response = await client.submit_batch(items)
                accepted.extend(r.transfer for r in response.results if r.HasField("transfer"))

        async def closer() -> None:
            for _ in range(6):
                await asyncio.sleep(0.05)
                await net.operator.close_cycle("USD")

        await asyncio.gather(*(sender(i) for i in range(8)), closer())
        cycles = await net.operator.list_cycles("USD")
        assert len(cycles) == 7
        per_cycle: dict[str, int] = {}
        for t in accepted:
            per_cycle[t.cycle_id] = per_cycle.get(t.cycle_id, 0) + 1
        for summary in cycles:
            cycle = await net.operator.get_cycle(summary.cycle_id)
            assert cycle.transfer_count == per_cycle.get(cycle.cycle_id, 0)
        assert len(accepted) == 8 * 15 * 40
        report = audit(net.db)
        assert report.ok, report.violations
    finally:
        await second.stop()


async def test_reconciliation_report_agrees_three_ways(net: HubHandle) -> None:
    await _traffic(net, 40)
    t = (await net.bank("BANKA01").submit(instruction("BANKC01", "USD", 999))).transfer
    await net.operator.cancel_transfer(t.transfer_id, "TECH: sent twice")
    closed = (await net.operator.close_cycle("USD")).closed
    before = await net.operator.reconciliation(closed.cycle_id)
    assert before.all_matched and not before.settled
    assert sum(r.transfers_sent for r in before.rows) == closed.transfer_count == 4 * 60
    await net.operator.settle_cycle(closed.cycle_id)
    after = await net.operator.reconciliation(closed.cycle_id)
    assert after.settled and after.all_matched
    by_bank = {r.bank_code: r for r in after.rows}
    for p in closed.positions:
        row = by_bank[p.bank_code]
        assert row.computed_net == row.position_net == row.posted == p.net
        assert (row.sent_value, row.received_value) == (p.sent, p.received)
    mine = await net.bank("BANKB01").call(
        net.bank("BANKB01").settlement.GetReconciliation,
        __import__(
            "remitnet.settlement.v1.settlement_pb2", fromlist=["x"]
        ).GetReconciliationRequest(cycle_id=closed.cycle_id),
    )
    assert [r.bank_code for r in mine.rows] == ["BANKB01"]
