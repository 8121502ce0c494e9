"""Per-bank rows carry their bank's home region from the moment they are
written (what CockroachDB homes them by), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Table, insert, select

from remitnet.clients.bank import instruction
from remitnet.services.adapters.db import migrate
from remitnet.services.adapters.db.banks import SqlBanks
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.schema import (
    HUB_HOME_REGION,
    accounts,
    banks,
    positions,
    transfers,
)
from remitnet.services.adapters.db.unit_of_work import SqlUnitOfWork
from remitnet.services.domain.model import DEFAULT_PROVIDER, HUB
from remitnet.services.service_layer.audit import audit
from tests.support import HubHandle

BANKS = {
    "USBANK01": "us-east1",
    "USBANK02": "us-east1",
    "PHBANK01": "asia-southeast1",
    "MARS0001": "mars-north1",  # a region no cluster has: still its own value
}
RATES = {("USD", "PHP"): "56.10"}
_T0 = datetime(2026, 1, 1, tzinfo=UTC)

# Per-bank table -> the column naming the bank that owns its row.
TABLES: dict[str, tuple[Table, str]] = {
    "accounts": (accounts, "owner"),
    "positions": (positions, "bank_code"),
    "transfers": (transfers, "debtor_bank"),
}


def _home_regions(uow: SqlUnitOfWork) -> dict[str, Counter[tuple[str, str]]]:
    """Per table: (owner, home_region) -> number of rows."""
    return {
        name: Counter(
            (str(o), str(r)) for o, r in uow.conn.execute(select(t.c[owner], t.c.home_region))
        )
        for name, (t, owner) in TABLES.items()
    }


def _expected(code: str) -> str:
    # The default FX provider lives where the hub's own rows do.
    return HUB_HOME_REGION if code in (HUB, DEFAULT_PROVIDER) else BANKS[code]


def _assert_homed(found: Mapping[str, Counter[tuple[str, str]]]) -> None:
    for table, rows in found.items():
        wrong = {(o, r) for o, r in rows if r != _expected(o)}
        assert not wrong, f"{table}: rows not homed in their bank's region: {wrong}"


async def test_every_per_bank_row_carries_its_bank_home_region(hub: HubHandle) -> None:
    await hub.operator.update_rates(RATES)
    await hub.onboard(BANKS, ["USD", "PHP"], deposit=1_000_000)
    await hub.operator.open_account("USBANK01", "EUR")  # opened after onboarding
    await hub.fund_provider(["PHP"])  # the default provider FXHUB sells PHP
    us, ph, mars = hub.bank("USBANK01"), hub.bank("PHBANK01"), hub.bank("MARS0001")
    # Netted transfers both ways between regions.
    await us.submit_batch([instruction(c, "USD", 100) for c in BANKS if c != "USBANK01"])
    await ph.submit_batch([instruction("USBANK02", "USD", 70) for _ in range(5)])
    await mars.submit(instruction("PHBANK01", "PHP", 5_000))
    # Cross-currency: legs through the default FX provider, so it has
    # positions too.
    q = await us.quote("USD", "PHP", source_amount=10_000)
    await us.submit(instruction("PHBANK01", "USD", 10_000, quote_id=q.quote_id))
    # Gross settlement and a cancellation write transfers and positions on
    # their own paths.
    await ph.submit(instruction("MARS0001", "USD", 2_500, gross=True))
    cancelled = (await hub.bank("USBANK02").submit(instruction("PHBANK01", "USD", 9))).transfer
    await hub.operator.cancel_transfer(cancelled.transfer_id, "TECH: sent twice")

    found = hub.db.read(_home_regions)
    _assert_homed(found)
    # Every bank, the hub and the provider own rows in each table they take
    # part in (the hub takes no leg of a conversion any more).
    assert {o for o, _ in found["accounts"]} == {*BANKS, HUB, DEFAULT_PROVIDER}
    assert {o for o, _ in found["positions"]} == {*BANKS, DEFAULT_PROVIDER}
    assert {o for o, _ in found["transfers"]} == set(BANKS)
    assert {r for _, r in found["transfers"]} == set(BANKS.values())
    assert found["accounts"][("USBANK01", "us-east1")] == 3  # USD, PHP, EUR
    assert audit(hub.db).ok


async def test_the_batch_path_looks_no_region_up(
    hub: HubHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch reads the regions with the bank statuses, in the same query:
    no lookup per item, none per batch."""
    await hub.operator.update_rates(RATES)
    await hub.onboard(BANKS, ["USD", "PHP"], deposit=1_000_000)
    await hub.fund_provider(["PHP"])
    us = hub.bank("USBANK01")
    await us.submit_batch([instruction(c, "USD", 1) for c in BANKS if c != "USBANK01"])
    looked_up: list[Collection[str] | None] = []
    real = SqlBanks.regions

    def spy(self: SqlBanks, codes: Collection[str] | None = None) -> dict[str, str]:
        looked_up.append(codes)
        return real(self, codes)

    monkeypatch.setattr(SqlBanks, "regions", spy)
    q = await us.quote("USD", "PHP", source_amount=10_000)
    items = [instruction(c, "USD", 3) for c in BANKS if c != "USBANK01"] * 50
    items.append(instruction("PHBANK01", "USD", 10_000, quote_id=q.quote_id))
    response = await us.submit_batch(items)
    assert response.accepted_count == len(items)
    assert looked_up == []
    _assert_homed(hub.db.read(_home_regions))


def _seed_before_0004(conn: Connection) -> None:
    """Rows as revision 0003 stored them: no home_region yet."""
    for code, region in (("USBANK01", "us-east1"), ("PHBANK01", "asia-southeast1")):
        conn.execute(
            insert(banks).values(code=code, name=code, home_region=region, status=1, created_at=_T0)
        )
    for owner, kind in (("USBANK01", "LIQUIDITY"), ("PHBANK01", "LIQUIDITY"), (HUB, "FX")):
        conn.execute(
            insert(accounts).values(
                id=f"{owner}/USD/{kind}", owner=owner, currency="USD", kind=kind, balance=0,
                net_debit_cap=0, unsettled_net=0, entry_count=0, opened_at=_T0,
            )
        )  # fmt: skip
    for bank in ("USBANK01", "PHBANK01", HUB):
        conn.execute(
            insert(positions).values(
                cycle_id="USD-000001", bank_code=bank, sent=0, received=0, sent_count=0,
                received_count=0, fee=0,
            )
        )  # fmt: skip
    conn.execute(
        insert(transfers).values(
            id="3b1f0a5e-0000-4000-8000-00000000000a", debtor_bank="PHBANK01",
            creditor_bank="USBANK01", currency="USD", amount=1, remittance_info="",
            status=1, cycle_id="USD-000001", accepted_at=_T0,
        )
    )  # fmt: skip


def test_migration_backfills_existing_rows(db_url: str) -> None:
    db = Database(db_url)
    try:
        migrate.upgrade(db)
        config = migrate.alembic_config(db)
        command.downgrade(config, "0003")
        with db.engine.begin() as conn:
            _seed_before_0004(conn)
        command.upgrade(config, "head")
        assert migrate.current(db) == ScriptDirectory.from_config(config).get_current_head()
        found = db.read(_home_regions)
    finally:
        db.dispose()
    assert found == {
        # 0008 gives the default FX provider a liquidity account in every
        # currency the hub holds one in, homed with the hub's rows.
        "accounts": Counter(
            {
                ("USBANK01", "us-east1"): 1,
                ("PHBANK01", "asia-southeast1"): 1,
                (HUB, "HUB"): 1,
                (DEFAULT_PROVIDER, "HUB"): 1,
            }
        ),
        "positions": Counter(
            {("USBANK01", "us-east1"): 1, ("PHBANK01", "asia-southeast1"): 1, (HUB, "HUB"): 1}
        ),
        "transfers": Counter({("PHBANK01", "asia-southeast1"): 1}),
    }
