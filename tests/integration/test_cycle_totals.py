"""Overflow cannot block a cycle (issue 18, item 3). Round trips between two
banks in a zero-decimal currency keep every unsettled position near zero while
the cycle's gross, positions and counts grow; before the guard they grew past
int64 until CloseCycle and GetCycle failed. Now the item that would take any
total of the cycle past int64 is refused with AMOUNT_OUT_OF_RANGE, and the
cycle always closes, reports and settles, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import uuid

import pytest

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.bank import instruction
from remitnet.clients.errors import HubError
from remitnet.services.adapters.db.database import Database
from remitnet.services.domain.errors import Reason
from remitnet.services.domain.model import make_instruction
from remitnet.services.domain.money import INT64_MAX
from remitnet.services.domain.netting import CycleSums
from remitnet.services.service_layer import cycles, participants
from remitnet.services.service_layer.audit import audit
from remitnet.services.service_layer.clearing import commit_batch
from remitnet.services.service_layer.unit_of_work import UnitOfWork
from tests.support import HubHandle, counts

BANKS = {"BANKJP01": "asia-southeast1", "BANKJP02": "us-east1"}


def reasons(response: cpb.SubmitTransfersResponse) -> list[str]:
    return [r.error.reason if r.HasField("error") else "OK" for r in response.results]


@pytest.mark.parametrize("seed", [1, 2])
async def test_round_trips_near_int64_always_close_and_settle(hub: HubHandle, seed: int) -> None:
    await hub.onboard(BANKS, ["JPY"], deposit=0, cap=INT64_MAX)
    one, two = hub.bank("BANKJP01"), hub.bank("BANKJP02")
    rng = random.Random(seed)
    accepted = 0
    refused = 0
    for _ in range(6):
        # Round trips: a batch each way with amounts near int64 / 8, then a
        # single each way.
        amount = rng.randrange(2**59, 2**61)
        batch = [instruction("BANKJP02", "JPY", amount) for _ in range(3)]
        response = await one.submit_batch(batch)
        back = await two.submit_batch(
            [instruction("BANKJP01", "JPY", amount) for _ in range(max(1, response.accepted_count))]
        )
        for r in (response, back):
            accepted += sum(
                item.transfer.amount.minor_units for item in r.results if not item.HasField("error")
            )
            assert set(reasons(r)) <= {"OK", Reason.AMOUNT_OUT_OF_RANGE}
            refused += r.rejected_count
        single = rng.randrange(1, 2**62)
        for payer, payee in ((one, "BANKJP02"), (two, "BANKJP01")):
            before = counts(hub.db)
            try:
                await payer.submit(instruction(payee, "JPY", single))
                accepted += single
            except HubError as err:
                assert err.reason == Reason.AMOUNT_OUT_OF_RANGE
                assert counts(hub.db) == before  # a refused item stores nothing
                refused += 1
    assert refused > 0, "the walk never reached int64: it tests nothing"
    open_cycle = (await hub.operator.list_cycles("JPY"))[0]
    assert open_cycle.gross_value == accepted <= INT64_MAX
    closed = (await hub.operator.close_cycle("JPY")).closed
    assert closed.gross_value == accepted
    assert closed.net_value <= closed.gross_value and closed.transfer_count > 0
    cycle = await hub.operator.get_cycle(closed.cycle_id)
    assert sum(p.net for p in cycle.positions) == 0
    settled = await hub.operator.settle_cycle(closed.cycle_id)
    assert not settled.already_settled
    assert sum(p.amount for p in settled.postings) == 0
    rec = await hub.operator.reconciliation(closed.cycle_id)
    assert rec.settled and rec.all_matched
    report = audit(hub.db)
    assert report.ok, report
    # The next cycle is usable at once.
    await one.submit(instruction("BANKJP02", "JPY", 1))


async def test_the_item_past_int64_is_refused_and_changes_nothing(hub: HubHandle) -> None:
    await hub.onboard(BANKS, ["JPY"], deposit=0, cap=INT64_MAX)
    one, two = hub.bank("BANKJP01"), hub.bank("BANKJP02")
    half = 2**62
    await one.submit(instruction("BANKJP02", "JPY", half))
    await two.submit(instruction("BANKJP01", "JPY", half - 1))  # gross at INT64_MAX
    before = counts(hub.db)
    with pytest.raises(HubError) as err:
        await one.submit(instruction("BANKJP02", "JPY", 1))
    assert err.value.reason == Reason.AMOUNT_OUT_OF_RANGE
    assert counts(hub.db) == before
    response = await two.submit_batch([instruction("BANKJP01", "JPY", 1)])
    assert reasons(response) == [Reason.AMOUNT_OUT_OF_RANGE]
    closed = (await hub.operator.close_cycle("JPY")).closed
    assert (closed.gross_value, closed.transfer_count) == (INT64_MAX, 2)
    await hub.operator.settle_cycle(closed.cycle_id)
    assert audit(hub.db).ok
    # The next cycle starts from zero.
    await one.submit(instruction("BANKJP02", "JPY", half))


def test_open_cycles_and_their_sums_are_read_together(db: Database) -> None:
    """What every batch reads for the int64 guard, in one statement: an
    open cycle without positions yet counts zero; a closed one is not read."""
    for code in ("BANKTT01", "BANKTT02"):
        participants.create_bank(db, code, code, "us-east1", ["USD", "EUR"])
        participants.deposit(db, code, "USD", 1_000, "")
    opened = {c.currency: c.id for c in cycles.open_cycles(db)}
    items = [
        make_instruction(transfer_id=str(uuid.uuid4()), debtor="BANKTT01", creditor="BANKTT02",
                         currency="USD", amount=amount)
        for amount in (7, 11)
    ]  # fmt: skip
    commit_batch(db, items)

    def read(uow: UnitOfWork) -> tuple[dict[str, str], dict[str, CycleSums]]:
        return uow.cycles.open_with_sums(["USD", "EUR", "JPY"])

    open_ids, sums = db.read(read)
    assert open_ids == opened
    assert sums[open_ids["USD"]] == CycleSums(18, 0)
    assert sums[open_ids["EUR"]] == CycleSums()
    closed, _ = cycles.close_cycle(db, "USD")
    open_ids, sums = db.read(read)
    assert open_ids["USD"] != closed.cycle.id and closed.cycle.id not in sums
    assert sums[open_ids["USD"]] == CycleSums()
