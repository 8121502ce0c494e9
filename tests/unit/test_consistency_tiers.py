"""Which reads may be bounded-stale (design brief, consistency tier 3):
reports and listings for people, served on CockroachDB by the nearest
replica as of a few seconds ago, and the reads that must not be, because a
bank or the operator acts on them (an ambiguous submission resolved by
looking the transfer up, a position, a quote, the audit)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from remitnet.services.domain.errors import RemitnetError
from remitnet.services.service_layer import (
    clearing,
    cycles,
    fx,
    lifecycle,
    participants,
    positions,
    settlement,
)
from remitnet.services.service_layer.audit import read_snapshot
from tests.fakes import FakeTransactions, seed_bank, seed_close

US, EU = "BANKUS01", "BANKEU01"
TID = str(uuid.uuid4())

# Reports and listings: bounded-stale.
STALE: dict[str, Callable[[FakeTransactions, str], Any]] = {
    "statement": lambda tx, cycle: settlement.statement(tx, US, "USD", 0, 10),
    "reconciliation": lambda tx, cycle: settlement.reconciliation(tx, cycle),
    "ledger_totals": lambda tx, cycle: settlement.ledger_totals(tx),
    "list_cycles": lambda tx, cycle: cycles.list_cycles(tx, "USD", None, None, 10),
}
# What a bank or the operator acts on: the latest committed state.
FRESH: dict[str, Callable[[FakeTransactions, str], Any]] = {
    "get_transfer": lambda tx, cycle: clearing.get_transfer(tx, US, TID),
    "list_transfers": lambda tx, cycle: clearing.list_transfers(
        tx, US, status=None, cycle_id="", counterparty="", page_token="", page_size=10
    ),
    "get_recall": lambda tx, cycle: lifecycle.get_recall(tx, US, TID),
    "get_position": lambda tx, cycle: positions.get_position(tx, US, "USD"),
    "get_cycle": lambda tx, cycle: cycles.get_cycle(tx, cycle),
    "open_cycles": lambda tx, cycle: cycles.open_cycles(tx),
    "unsettled": lambda tx, cycle: cycles.unsettled(tx),
    "get_bank": lambda tx, cycle: participants.get_bank(tx, US),
    "list_banks": lambda tx, cycle: participants.list_banks(tx, "", 10),
    "list_rates": lambda tx, cycle: fx.list_rates(tx),
    "audit_snapshot": lambda tx, cycle: read_snapshot(tx),
}


def _reads(call: Callable[[FakeTransactions, str], Any]) -> list[bool]:
    tx = FakeTransactions()
    seed_bank(tx, US, ["USD"], deposit=1_000)
    seed_bank(tx, EU, ["USD"], deposit=1_000)
    cycle = seed_close(tx, "USD")
    tx.reads.clear()
    with contextlib.suppress(RemitnetError):  # not found: the read was made all the same
        call(tx, cycle)
    return tx.reads


@pytest.mark.parametrize("name", sorted(STALE))
def test_reports_and_listings_may_be_bounded_stale(name: str) -> None:
    assert _reads(STALE[name]) == [True]


@pytest.mark.parametrize("name", sorted(FRESH))
def test_reads_that_banks_and_the_operator_act_on_are_fresh(name: str) -> None:
    reads = _reads(FRESH[name])
    assert reads and not any(reads)
