"""The audit's snapshot loader (adapters/db/audit_snapshot.py) on SQLite and
PostgreSQL: it reads every row the checks need, so that rows changed behind
the hub's back are reported through `audit(db)`, the path the tests, the
chaos checker and `make soak` take. (The checks themselves:
tests/unit/test_audit_checks.py.)"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, update

from remitnet.clients.bank import instruction
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.schema import (
    accounts,
    events,
    ledger_entries,
    positions,
    transfers,
)
from remitnet.services.domain.model import DEFAULT_PROVIDER
from remitnet.services.service_layer.audit import audit, audit_snapshot, read_snapshot
from tests.support import HubHandle, counts

BANKS = {"BANKSN01": "us-east1", "BANKSN02": "europe-west1"}
ONE, TWO = BANKS


def _execute(db: Database, *statements: Any) -> None:
    with db.engine.begin() as conn:
        for statement in statements:
            conn.execute(statement)


async def _history(hub: HubHandle) -> str:
    """Transfers single and batched, one cancelled, a cycle settled and one
    left open; returns the settled cycle's id."""
    await hub.onboard(BANKS, ["USD"], deposit=10_000)
    one, two = hub.bank(ONE), hub.bank(TWO)
    await one.submit(instruction(TWO, "USD", 700))
    await two.submit_batch([instruction(ONE, "USD", 100 + i) for i in range(5)])
    settled = (await hub.operator.close_cycle("USD")).closed.cycle_id
    await hub.operator.settle_cycle(settled)
    await one.submit(instruction(TWO, "USD", 50))
    taken_back = instruction(TWO, "USD", 60)
    await one.submit(taken_back)
    await hub.operator.cancel_transfer(taken_back.transfer_id, "TECH: sent twice")
    return settled


async def test_the_snapshot_holds_every_row_and_passes(hub: HubHandle) -> None:
    await _history(hub)
    snapshot = read_snapshot(hub.db)
    stored = counts(hub.db)
    assert len(snapshot.transfers) == stored.transfers == 8
    assert len(snapshot.entries) == stored.entries
    assert len(snapshot.postings) == stored.postings
    assert len(snapshot.positions) == stored.positions
    assert len(snapshot.cancelled_at) == 1
    # The default provider's head comes with the schema (migration 0008).
    assert set(snapshot.feed_heads) == {*BANKS, DEFAULT_PROVIDER}
    assert snapshot.events and snapshot.trail
    report = audit_snapshot(snapshot)
    assert report.ok, report.violations
    assert (report.transfers, report.entries) == (8, stored.entries)
    assert audit(hub.db) == report


async def test_rows_changed_behind_the_hub_are_reported(hub: HubHandle) -> None:
    settled = await _history(hub)
    odd = instruction(TWO, "USD", 5)
    await hub.bank(ONE).submit(odd)
    liquidity = f"{ONE}/USD/LIQUIDITY"
    _execute(
        hub.db,
        # A settlement entry edited: the chain, the balance, the ledger's and
        # the posting's sums and the settled net all break.
        update(ledger_entries)
        .where(ledger_entries.c.account_id == liquidity, ledger_entries.c.reference == settled)
        .values(amount=ledger_entries.c.amount + 1),
        # The unsettled net of a bank no longer its transfers'.
        update(accounts).where(accounts.c.id == f"{TWO}/USD/LIQUIDITY").values(unsettled_net=0),
        # A position that its transfers do not add up to.
        update(positions)
        .where(positions.c.cycle_id == settled, positions.c.bank_code == TWO)
        .values(sent_count=positions.c.sent_count + 1),
        # The feed's first event of a bank gone.
        delete(events).where(events.c.bank_code == TWO, events.c.seq == 1),
        # A same-currency transfer said to go through an FX provider.
        update(transfers)
        .where(transfers.c.id == odd.transfer_id)
        .values(fx_provider=DEFAULT_PROVIDER),
    )
    report = audit(hub.db)
    text = "\n".join(report.violations)
    for expected in (
        f"ledger entry {liquidity}#2 breaks the account's chain",
        f"account {liquidity} balance",
        "USD ledger entries sum to 1, not zero",
        f"posting settle:{settled} entries sum to 1, not zero",
        f"cycle {settled} posted",
        f"account {TWO}/USD/LIQUIDITY unsettled_net 0 != transfers",
        f"position ('{settled}', '{TWO}') is",
        f"cycle {settled} totals",
        f"feed of {TWO}: event 2 follows 0 out of order",
        f"transfer {odd.transfer_id} names FX provider {DEFAULT_PROVIDER} but is no "
        "cross-currency transfer",
    ):
        assert expected in text, (expected, report.violations)
