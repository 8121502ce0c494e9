"""Test helpers: a hub on a free port with clients bound to it, and SQL
checks of the invariants straight from the database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Table, func, select

from remitnet.clients.bank import BankClient
from remitnet.clients.base import ClientConfig
from remitnet.clients.operator import OperatorClient
from remitnet.clients.provider import ProviderClient
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.schema import (
    accounts,
    ledger_entries,
    positions,
    postings,
    transfers,
)
from remitnet.services.domain.model import DEFAULT_PROVIDER
from remitnet.services.entrypoints.server import Hub, ServerConfig
from remitnet.services.service_layer.engine import EngineConfig
from remitnet.services.service_layer.fx import FxConfig
from remitnet.services.service_layer.lifecycle import LifecycleConfig
from remitnet.settlement.v1 import settlement_pb2 as spb


@dataclass
class HubHandle:
    hub: Hub
    config: ClientConfig
    operator: OperatorClient
    _banks: dict[str, BankClient] = field(default_factory=dict)
    _providers: dict[str, ProviderClient] = field(default_factory=dict)

    @property
    def db(self) -> Database:
        return self.hub.db

    def bank(self, code: str) -> BankClient:
        if code not in self._banks:
            self._banks[code] = BankClient(code, self.config)
        return self._banks[code]

    def provider(self, code: str) -> ProviderClient:
        """A client acting as FX provider `code` (principal fxp:CODE)."""
        if code not in self._providers:
            self._providers[code] = ProviderClient(code, self.config)
        return self._providers[code]

    async def stop(self) -> None:
        for client in [*self._banks.values(), *self._providers.values()]:
            await client.close()
        await self.operator.close()
        await self.hub.stop()

    async def onboard(
        self,
        banks: dict[str, str],
        currencies: list[str],
        *,
        deposit: int = 1_000_000,
        cap: int = 0,
    ) -> None:
        """Create banks (code -> region) holding every currency, funded."""
        for code, region in banks.items():
            await self.operator.create_bank(code, f"{code} Bank", region, currencies)
            for currency in currencies:
                if deposit:
                    await self.operator.deposit(code, currency, deposit)
                if cap:
                    await self.operator.set_cap(code, currency, cap)

    async def fund_provider(
        self,
        currencies: Iterable[str],
        amount: int = 10**15,
        *,
        code: str = DEFAULT_PROVIDER,
    ) -> None:
        """Fund an FX provider (the hub's default provider FXHUB unless
        named) in each currency, opening the account where missing: a quote
        needs its provider's liquidity in the target currency."""
        for currency in currencies:
            await self.operator.open_account(code, currency)
            await self.operator.deposit(code, currency, amount)


async def settle_every_cycle(
    hub: HubHandle, currencies: Iterable[str]
) -> spb.GetLedgerBalanceResponse:
    """Close and settle the open cycle of each currency, checking that its
    net positions sum to zero and that its reconciliation matches; then
    check every currency's ledger sums to zero, and return the ledger."""
    for currency in currencies:
        closed = (await hub.operator.close_cycle(currency)).closed
        assert sum(p.net for p in closed.positions) == 0
        await hub.operator.settle_cycle(closed.cycle_id)
        rec = await hub.operator.reconciliation(closed.cycle_id)
        assert rec.settled and rec.all_matched, rec
    ledger = await hub.operator.ledger_balance()
    assert all(c.balance_sum == 0 and c.entry_sum == 0 for c in ledger.currencies)
    return ledger


async def start_hub(
    db_url: str,
    *,
    engine: EngineConfig | None = None,
    db: Database | None = None,
    fx: FxConfig | None = None,
    lifecycle: LifecycleConfig | None = None,
) -> HubHandle:
    config = ServerConfig(
        fx=fx or FxConfig(),
        lifecycle=lifecycle or LifecycleConfig(),
        db_url=db_url,
        port=0,
        metrics_port=None,
        insecure=True,
        grace_s=5.0,
        engine=engine or EngineConfig(),
    )
    hub = Hub(config, db=db)
    port = await hub.start()
    client_config = ClientConfig(target=f"127.0.0.1:{port}", deadline_s=30.0)
    return HubHandle(hub, client_config, OperatorClient(client_config))


@dataclass(frozen=True)
class Counts:
    transfers: int
    entries: int
    postings: int
    positions: int
    account_state: tuple[tuple[str, int, int, int], ...]


def counts(db: Database) -> Counts:
    """A fingerprint of everything stored, to show that rejected input
    changed nothing."""

    def read(conn: Connection) -> Counts:
        def count(table: Table) -> int:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

        state = conn.execute(
            select(
                accounts.c.id,
                accounts.c.balance,
                accounts.c.unsettled_net,
                accounts.c.net_debit_cap,
            ).order_by(accounts.c.id)
        )
        return Counts(
            count(transfers),
            count(ledger_entries),
            count(postings),
            count(positions),
            tuple((str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in state),
        )

    return db.read(lambda uow: read(uow.conn))
