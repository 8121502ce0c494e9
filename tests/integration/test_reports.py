"""Operator and bank reports: cycle listings carry per-bank positions in
every state, and paging arguments are checked."""

from __future__ import annotations

import grpc
import pytest

from remitnet.clients.bank import instruction
from remitnet.clients.errors import HubError
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.services.domain.errors import Reason
from remitnet.settlement.v1 import settlement_pb2 as spb
from tests.support import HubHandle

BANKS = {"BANKAA01": "us-east1", "BANKBB01": "europe-west1", "BANKCC01": "asia-southeast1"}


async def test_listed_cycles_carry_positions_in_every_state(hub: HubHandle) -> None:
    await hub.onboard(BANKS, ["USD"], deposit=10_000)
    await hub.bank("BANKAA01").submit(instruction("BANKBB01", "USD", 700))
    await hub.bank("BANKBB01").submit(instruction("BANKCC01", "USD", 300))
    closed = (await hub.operator.close_cycle("USD")).closed
    await hub.operator.settle_cycle(closed.cycle_id)
    await hub.bank("BANKCC01").submit(instruction("BANKAA01", "USD", 50))
    listed = {c.cycle_id: c for c in await hub.operator.list_cycles("USD")}
    settled, current = listed["USD-000001"], listed["USD-000002"]
    assert settled.state == npb.CYCLE_STATE_SETTLED
    assert {p.bank_code: p.net for p in settled.positions} == {
        "BANKAA01": -700,
        "BANKBB01": 400,
        "BANKCC01": 300,
    }
    assert (settled.transfer_count, settled.gross_value, settled.net_value) == (2, 1000, 700)
    assert {p.bank_code: p.net for p in current.positions} == {"BANKCC01": -50, "BANKAA01": 50}
    # A bank sees only its own position in a listing.
    mine = await hub.bank("BANKBB01").call(
        hub.bank("BANKBB01").netting.ListCycles, npb.ListCyclesRequest(currency="USD")
    )
    by_id = {c.cycle_id: c for c in mine.cycles}
    assert [p.bank_code for p in by_id["USD-000001"].positions] == ["BANKBB01"]


async def test_negative_statement_page_size_is_refused(hub: HubHandle) -> None:
    await hub.onboard(BANKS, ["USD"], deposit=10_000)
    bank = hub.bank("BANKAA01")
    with pytest.raises(HubError) as err:
        await bank.call(
            bank.settlement.GetStatement,
            spb.GetStatementRequest(bank_code="BANKAA01", currency="USD", page_size=-1),
        )
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.reason == Reason.INVALID_PAGE_SIZE
