"""Gauges that describe the database, not a process: per-bank balances, caps,
unsettled nets, reservations and headroom, the hub's FX position and
revenue, the state of cycles, and the lifecycle's open reservations and
recalls per creditor bank. One collector task per server reads them from the database
on an interval (`Hub` starts it), so that every replica reports the same
values and none reports what only its own last batch saw. The netting engine
sets none of them.

The hub's own accounts (owner HUB) never appear as a bank: their values are
the hub's FX position and revenue gauges."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from remitnet.services.adapters import metrics
from remitnet.services.adapters.db import lifecycle_gauges
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.unit_of_work import SqlUnitOfWork
from remitnet.services.domain.account import Account
from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.model import HUB, AccountKind, CycleState

log = logging.getLogger(__name__)

INTERVAL_S = 5.0


def refresh(db: Database) -> None:
    """Read the database once and set every gauge from what it holds."""

    def read(uow: SqlUnitOfWork) -> tuple[list[Cycle], list[Account]]:
        # Open and closed (unsettled) cycles: what the gauges describe.
        wanted = [
            *uow.cycles.page("", CycleState.OPEN, None, 10_000),
            *uow.cycles.unsettled(),
        ]
        return wanted, uow.accounts.all()

    found_cycles, every_account = db.read(read, stale_ok=True)
    currencies: set[str] = set()
    banks: set[str] = set()
    for a in every_account:
        currencies.add(a.currency)
        if a.owner == HUB:
            if a.kind == AccountKind.FX:
                metrics.HUB_FX_POSITION.labels(a.currency).set(a.balance + a.unsettled_net)
            elif a.kind == AccountKind.FX_REVENUE:
                metrics.FX_REVENUE.labels(a.currency).set(a.balance)
            continue
        if a.kind != AccountKind.LIQUIDITY:
            continue
        banks.add(a.owner)
        metrics.BANK_BALANCE.labels(a.owner, a.currency).set(a.balance)
        metrics.BANK_CAP.labels(a.owner, a.currency).set(a.net_debit_cap)
        metrics.BANK_UNSETTLED.labels(a.owner, a.currency).set(a.unsettled_net)
        metrics.BANK_RESERVED.labels(a.owner, a.currency).set(a.reserved)
        metrics.BANK_HEADROOM.labels(a.owner, a.currency).set(a.headroom)
    closed_at: dict[str, list[float]] = {c: [] for c in currencies}
    for c in found_cycles:
        currencies.add(c.currency)
        if c.state is CycleState.OPEN:
            metrics.CYCLE_OPEN_SINCE.labels(c.currency).set(c.opened_at.timestamp())
        elif c.state is CycleState.CLOSED and c.closed_at is not None:
            closed_at.setdefault(c.currency, []).append(c.closed_at.timestamp())
    for currency, times in closed_at.items():
        metrics.CYCLES_UNSETTLED.labels(currency).set(len(times))
        metrics.OLDEST_UNSETTLED.labels(currency).set(min(times, default=0.0))
    refresh_lifecycle(db, banks)
    metrics.precreate(sorted(currencies))


def refresh_lifecycle(db: Database, banks: set[str], now: datetime | None = None) -> None:
    """The open reservations and recalls per creditor bank: every bank of
    `banks` (the participants) reported, at 0 when it has nothing open, so
    that a bank's series falls back to 0 once it has answered. A fresh
    read, not a follower read: a reservation lives for seconds."""
    reservations_within, recalls_within = (
        metrics.RESERVATIONS_EXPIRING_WITHIN,
        metrics.RECALLS_EXPIRING_WITHIN,
    )
    clock = datetime.now(UTC) if now is None else now
    found = db.read(
        lambda uow: lifecycle_gauges.read(
            uow.conn,
            clock,
            reservations_within=timedelta(seconds=reservations_within[1]),
            recalls_within=timedelta(seconds=recalls_within[1]),
        )
    )
    empty = lifecycle_gauges.BankLifecycle()
    for bank in sorted(banks | found.banks.keys()):
        b = found.banks.get(bank, empty)
        metrics.RESERVATIONS_OPEN.labels(bank).set(b.reservations)
        metrics.RESERVATIONS_EXPIRING.labels(bank, reservations_within[0]).set(
            b.reservations_expiring
        )
        metrics.RECALLS_OPEN.labels(bank).set(b.recalls)
        metrics.RECALLS_EXPIRING.labels(bank, recalls_within[0]).set(b.recalls_expiring)
        metrics.RECALLS_OLDEST_OPEN.labels(bank).set(
            0.0 if b.oldest_recall is None else b.oldest_recall.timestamp()
        )
    oldest = found.oldest_deadline
    metrics.RESERVATIONS_OLDEST_DEADLINE.set(0.0 if oldest is None else oldest.timestamp())


async def run(db: Database, interval_s: float = INTERVAL_S) -> None:
    """Refresh the gauges every `interval_s` until cancelled."""
    while True:
        try:
            await asyncio.to_thread(refresh, db)
        except Exception:
            log.exception("gauge refresh failed")
        await asyncio.sleep(interval_s)
