"""FX providers as participants, through real gRPC servers on SQLite and
PostgreSQL: providers compete on price for every quote (best price wins,
ties to the smallest code) among those that can deliver it, a bank may name
one, every refusal has its status and reason and stores nothing, a provider
principal (fxp:CODE) may make only its own calls, and concurrent transfers
drawing on one provider never take it past its liquidity plus its cap."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from sqlalchemy import Table, func, select

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clearing.v1 import clearing_pb2_grpc as cgrpc
from remitnet.clients.bank import BankClient, instruction
from remitnet.clients.errors import HubError
from remitnet.clients.operator import OperatorClient
from remitnet.clients.provider import rates_request
from remitnet.fx.v1 import fx_pb2
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.participants.v1 import participants_pb2 as ppb
from remitnet.services.adapters.db.schema import fx_quotes, fx_rates
from remitnet.services.domain.errors import Reason
from remitnet.services.domain.model import DEFAULT_PROVIDER
from remitnet.services.service_layer.audit import audit
from tests.support import HubHandle, counts, settle_every_cycle, start_hub

US, PH = "USBANK01", "PHBANK01"
A, B = "FXPA0001", "FXPB0001"  # two competing providers, A < B
PROVIDER = [ppb.PARTICIPANT_ROLE_FX_PROVIDER]
MID = "56.10"
FUNDS = 10**10  # A's PHP: 100,000,000.00
B_FUNDS = 10_000_000  # B's PHP: 100,000.00

Status = tuple[grpc.StatusCode, str]


def _rows(hub: HubHandle, table: Table) -> list[tuple[object, ...]]:
    query = select(table).order_by(*table.primary_key)
    return hub.db.read(lambda uow: [tuple(r) for r in uow.conn.execute(query)])


def _quote_count(hub: HubHandle) -> int:
    query = select(func.count()).select_from(fx_quotes)
    return int(hub.db.read(lambda uow: uow.conn.execute(query).scalar_one()))


async def _refused(call: Awaitable[Any]) -> Status:
    with pytest.raises(HubError) as err:
        await call
    return err.value.code, err.value.reason


async def _market(hub: HubHandle) -> HubHandle:
    """Two banks; providers A (spread 40) and B (spread 30, the better
    price, but less PHP); FXHUB quotes at mid with no spread, unfunded."""
    op = hub.operator
    await op.create_bank(US, "US", "us-east1", ["USD"])
    await op.create_bank(PH, "PH", "asia-southeast1", ["PHP"])
    await op.deposit(US, "USD", 10**12)
    for code, funds in ((A, FUNDS), (B, B_FUNDS)):
        bank = await op.create_bank(code, code, "us-east1", ["USD", "PHP"], roles=PROVIDER)
        assert list(bank.roles) == PROVIDER
        await op.deposit(code, "PHP", funds)
    await hub.provider(A).publish_rates({("USD", "PHP"): MID}, spreads={("USD", "PHP"): 40})
    await hub.provider(B).publish_rates({("USD", "PHP"): MID}, spreads={("USD", "PHP"): 30})
    await op.update_rates({("USD", "PHP"): MID}, spreads={("USD", "PHP"): 0})  # FXHUB's
    return hub


@pytest.fixture
async def market(hub: HubHandle) -> HubHandle:
    return await _market(hub)


# Competition -----------------------------------------------------------------------


async def test_the_best_price_that_can_be_delivered_wins(market: HubHandle) -> None:
    us = market.bank(US)
    # FXHUB's price is the best (no spread) but it holds no PHP: B wins.
    q = await us.quote("USD", "PHP", source_amount=100_000)  # 1,000.00 USD
    assert (q.provider, q.spread_bps, q.target_amount.minor_units) == (B, 30, 5_593_170)
    assert q.fee.minor_units == 5_610_000 - 5_593_170
    # For a target amount the smallest source wins: B again.
    d = await us.quote("USD", "PHP", target_amount=1_000_000)
    assert d.provider == B
    a = await us.quote("USD", "PHP", target_amount=1_000_000, provider=A)
    assert d.source_amount.minor_units < a.source_amount.minor_units
    # More than B can deliver: A, at its own price.
    big = await us.quote("USD", "PHP", source_amount=20_000_000)  # 200,000.00 USD
    assert (big.provider, big.spread_bps) == (A, 40)
    assert big.target_amount.minor_units > B_FUNDS
    # Funded, FXHUB's better price wins.
    await market.fund_provider(["PHP"])
    assert (await us.quote("USD", "PHP", source_amount=100_000)).provider == DEFAULT_PROVIDER
    await market.operator.suspend(DEFAULT_PROVIDER)  # a suspended provider is not asked
    assert (await us.quote("USD", "PHP", source_amount=100_000)).provider == B
    # A tie goes to the smallest code: B matches A's spread.
    await market.provider(B).publish_rates({("USD", "PHP"): MID}, spreads={("USD", "PHP"): 40})
    tie = await us.quote("USD", "PHP", source_amount=100_000)
    assert (tie.provider, tie.target_amount.minor_units) == (A, 5_587_560)
    # The quote names its provider when read back, and in a batch.
    got = await us.call(us.fx.GetQuote, fx_pb2.GetQuoteRequest(quote_id=q.quote_id))
    assert got.quote.provider == B
    batch = await us.quotes(
        [
            fx_pb2.CreateQuoteRequest(
                source_currency="USD", target_currency="PHP", source_amount=1_000
            ),
            fx_pb2.CreateQuoteRequest(
                source_currency="USD", target_currency="PHP", source_amount=1_000, provider=B
            ),
        ]
    )
    assert [r.quote.provider for r in batch.results] == [A, B]


async def test_a_conversion_clears_through_its_provider(market: HubHandle) -> None:
    us = market.bank(US)
    q = await us.quote("USD", "PHP", source_amount=100_000)
    assert q.provider == B
    t = (await us.submit(instruction(PH, "USD", 100_000, quote_id=q.quote_id))).transfer
    assert t.creditor_amount.minor_units == q.target_amount.minor_units
    # The provider's open positions: it takes the USD and owes the PHP.
    position = {p.currency: p for p in (await market.provider(B).position()).positions}
    assert position["USD"].unsettled_net == 100_000
    assert position["PHP"].unsettled_net == -q.target_amount.minor_units
    assert position["PHP"].headroom == B_FUNDS - q.target_amount.minor_units
    await settle_every_cycle(market, ("USD", "PHP"))
    usd = await market.provider(B).statement("USD")
    php = await market.provider(B).statement("PHP")
    assert usd.closing_balance.minor_units == 100_000
    assert php.closing_balance.minor_units == B_FUNDS - q.target_amount.minor_units
    assert (await market.bank(PH).statement("PHP")).closing_balance.minor_units == (
        q.target_amount.minor_units
    )
    for currency in ("USD", "PHP"):  # the hub took no position and no fee
        hub_fx = await market.operator.statement("HUB", currency)
        assert hub_fx.closing_balance.minor_units == 0
    report = audit(market.db)
    assert report.ok, report.violations


# Refusals ---------------------------------------------------------------------------


async def test_quote_refusals_store_nothing(market: HubHandle) -> None:
    op, us = market.operator, market.bank(US)
    await op.create_bank("FXPC0001", "C", "us-east1", ["USD", "PHP"], roles=PROVIDER)
    await op.deposit("FXPC0001", "PHP", FUNDS)  # funded, but quotes nothing
    await op.create_bank("FXPS0001", "S", "us-east1", ["USD", "PHP"], roles=PROVIDER)
    await op.deposit("FXPS0001", "PHP", FUNDS)
    await market.provider("FXPS0001").publish_rates({("USD", "PHP"): MID})
    await op.suspend("FXPS0001")
    await op.create_bank("EUBANK01", "EU", "europe-west1", ["EUR"])
    before, quotes = counts(market.db), _quote_count(market)

    def ask(provider: str = "", amount: int = 100_000, target: str = "PHP") -> Awaitable[Any]:
        return us.quote("USD", target, source_amount=amount, provider=provider)

    precondition = grpc.StatusCode.FAILED_PRECONDITION
    cases: list[tuple[Awaitable[Any], Status]] = [
        (ask("NOPROV01"), (grpc.StatusCode.NOT_FOUND, Reason.FX_PROVIDER_UNKNOWN)),
        (ask(PH), (precondition, Reason.NOT_AN_FX_PROVIDER)),
        (ask("FXPS0001"), (precondition, Reason.FX_PROVIDER_SUSPENDED)),
        (ask("FXPC0001"), (precondition, Reason.RATE_NOT_AVAILABLE)),
        (ask(B, 20_000_000), (precondition, Reason.FX_PROVIDER_INSUFFICIENT_LIQUIDITY)),
        (ask("lower"), (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_BANK_CODE)),
        # Competing: nobody quotes USD/EUR; nobody can deliver this much.
        (ask(target="EUR"), (precondition, Reason.RATE_NOT_AVAILABLE)),
        (ask(amount=10**15), (precondition, Reason.FX_PROVIDER_INSUFFICIENT_LIQUIDITY)),
    ]
    for call, expected in cases:
        assert await _refused(call) == expected
    # The same refusals item by item in a batch.
    response = await us.quotes(
        [
            fx_pb2.CreateQuoteRequest(
                source_currency="USD", target_currency="PHP", source_amount=1_000, provider=p
            )
            for p in ("NOPROV01", PH, "FXPS0001", "FXPC0001")
        ]
    )
    assert [r.error.reason for r in response.results] == [
        Reason.FX_PROVIDER_UNKNOWN,
        Reason.NOT_AN_FX_PROVIDER,
        Reason.FX_PROVIDER_SUSPENDED,
        Reason.RATE_NOT_AVAILABLE,
    ]
    assert (counts(market.db), _quote_count(market)) == (before, quotes)


async def test_rate_publishing_refusals_store_nothing(market: HubHandle) -> None:
    op = market.operator
    await op.create_bank("FXPS0001", "S", "us-east1", ["USD"], roles=PROVIDER)
    await op.suspend("FXPS0001")
    before = _rows(market, fx_rates)
    rates = {("USD", "PHP"): "56.2"}
    precondition = grpc.StatusCode.FAILED_PRECONDITION
    cases: list[tuple[Awaitable[Any], Status]] = [
        (
            op.update_rates(rates, provider="NOPROV01"),
            (grpc.StatusCode.NOT_FOUND, Reason.FX_PROVIDER_UNKNOWN),
        ),
        (op.update_rates(rates, provider=US), (precondition, Reason.NOT_AN_FX_PROVIDER)),
        (
            market.provider("NOPROV01").publish_rates(rates),
            (grpc.StatusCode.NOT_FOUND, Reason.FX_PROVIDER_UNKNOWN),
        ),
        (
            market.provider("FXPS0001").publish_rates(rates),
            (precondition, Reason.FX_PROVIDER_SUSPENDED),
        ),
        (
            market.provider(A).call(
                market.provider(A).fx.UpdateRates, rates_request(rates, provider=B)
            ),
            (grpc.StatusCode.PERMISSION_DENIED, Reason.PROVIDER_NOT_ALLOWED),
        ),
        (
            market.provider(A).publish_rates(rates, spreads={("USD", "PHP"): 10_000}),
            (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_RATE),
        ),
        (
            market.bank(US).call(market.bank(US).fx.UpdateRates, rates_request(rates)),
            (grpc.StatusCode.PERMISSION_DENIED, Reason.OPERATOR_ONLY),
        ),
    ]
    for call, expected in cases:
        assert await _refused(call) == expected
    # A rate naming another provider than the request sets.
    request = rates_request(rates)
    request.rates[0].provider = B
    assert await _refused(op.call(op.fx.UpdateRates, request)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_ARGUMENT,
    )
    assert _rows(market, fx_rates) == before
    # The operator may still set a suspended provider's rates.
    assert await op.update_rates(rates, provider="FXPS0001") == 1
    # Rates are per provider: A's new rate leaves B's and FXHUB's alone.
    await market.provider(A).publish_rates({("PHP", "USD"): "0.0178"})
    listed = await op.list_rates()
    assert [(r.provider, r.base_currency, r.quote_currency) for r in listed] == [
        (DEFAULT_PROVIDER, "USD", "PHP"),
        (A, "PHP", "USD"),  # replaced its USD/PHP: one mid per pair and provider
        (B, "USD", "PHP"),
        ("FXPS0001", "USD", "PHP"),
    ]
    b_rate = next(r for r in listed if r.provider == B)
    assert (b_rate.mid_rate, b_rate.spread_bps) == ("56.1", 30)
    fxhub = next(r for r in listed if r.provider == DEFAULT_PROVIDER)
    assert fxhub.HasField("spread_bps") and fxhub.spread_bps == 0


# Participants: roles ------------------------------------------------------------------


async def test_a_provider_only_participant_is_no_party_to_a_transfer(market: HubHandle) -> None:
    before = counts(market.db)
    bad_request = (grpc.StatusCode.INVALID_ARGUMENT, Reason.NOT_A_BANK)
    us, as_a = market.bank(US), market.bank(A)  # bank:FXPA0001: claims a bank's principal
    assert await _refused(us.submit(instruction(A, "USD", 100))) == bad_request
    assert await _refused(us.submit(instruction(A, "USD", 100, gross=True))) == bad_request
    assert await _refused(as_a.submit(instruction(US, "USD", 100))) == bad_request
    assert await _refused(as_a.quote("USD", "PHP", source_amount=100)) == bad_request
    batch = await us.submit_batch([instruction(A, "USD", 100), instruction(PH, "USD", 1)])
    reasons = [r.error.reason for r in batch.results]
    assert reasons == [Reason.NOT_A_BANK, Reason.CURRENCY_NOT_SUPPORTED]  # PH holds no USD
    assert counts(market.db) == before


async def test_roles_at_onboarding(hub: HubHandle) -> None:
    op = hub.operator
    both = [ppb.PARTICIPANT_ROLE_BANK, ppb.PARTICIPANT_ROLE_FX_PROVIDER]
    created = await op.create_bank("BOTH0001", "Both", "us-east1", ["USD", "EUR"], roles=both)
    assert list(created.roles) == both
    plain = await op.create_bank("PLAIN001", "Plain", "us-east1", ["USD", "EUR"])
    assert list(plain.roles) == [ppb.PARTICIPANT_ROLE_BANK]
    # The same request is a replay; other roles for the code are refused.
    assert list((await op.create_bank("BOTH0001", "Both", "us-east1", [], roles=both)).roles)
    assert await _refused(op.create_bank("BOTH0001", "Both", "us-east1", [], roles=PROVIDER)) == (
        grpc.StatusCode.ALREADY_EXISTS,
        Reason.BANK_EXISTS,
    )
    for roles in ([ppb.PARTICIPANT_ROLE_UNSPECIFIED], [ppb.PARTICIPANT_ROLE_BANK] * 2):
        assert await _refused(op.create_bank("BADROLE1", "X", "us-east1", [], roles=roles)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            Reason.INVALID_ARGUMENT,
        )
    # Both roles: it sends transfers and sells EUR to a bank.
    for currency in ("USD", "EUR"):
        await op.deposit("BOTH0001", currency, 10**9)
        await op.deposit("PLAIN001", currency, 10**9)
    await hub.provider("BOTH0001").publish_rates({("USD", "EUR"): "0.92"})
    q = await hub.bank("PLAIN001").quote("USD", "EUR", source_amount=10_000)
    assert q.provider == "BOTH0001"
    sent = await hub.bank("PLAIN001").submit(
        instruction("BOTH0001", "USD", 10_000, quote_id=q.quote_id)
    )
    assert sent.transfer.creditor_amount == q.target_amount
    await hub.bank("BOTH0001").submit(instruction("PLAIN001", "USD", 500))
    # A currency first held gives FXHUB its (unfunded) liquidity account.
    await op.open_account("PLAIN001", "JPY")
    fxhub = await op.get_bank(DEFAULT_PROVIDER)
    assert list(fxhub.roles) == PROVIDER
    jpy = [a for a in fxhub.accounts if a.currency == "JPY"]
    assert [(a.balance, a.net_debit_cap) for a in jpy] == [(0, 0)]
    listed = {b.code: list(b.roles) for b in await op.list_banks()}
    assert listed["BOTH0001"] == both and listed[DEFAULT_PROVIDER] == PROVIDER
    report = audit(hub.db)
    assert report.ok, report.violations


# The provider principal -----------------------------------------------------------------


async def test_a_provider_principal_makes_only_its_own_calls(market: HubHandle) -> None:
    fxp = market.provider(A)
    # Its own rates, position, statements and cycles.
    assert [r.provider for r in await fxp.rates()] == [A]
    named = await fxp.call(fxp.fx.ListRates, fx_pb2.ListRatesRequest(provider=A))
    assert [r.provider for r in named.rates] == [A]
    position = await fxp.position("PHP")
    assert (position.bank_code, position.positions[0].balance) == (A, FUNDS)
    assert (await fxp.statement("PHP")).closing_balance.minor_units == FUNDS
    q = await market.bank(US).quote("USD", "PHP", source_amount=100_000, provider=A)
    await market.bank(US).submit(instruction(PH, "USD", 100_000, quote_id=q.quote_id))
    open_php = position.positions[0].open_cycle_id
    cycle = await fxp.cycle(open_php)
    assert [p.bank_code for p in cycle.positions] == [A]  # its own row only
    not_found = grpc.StatusCode.NOT_FOUND
    other = npb.GetPositionRequest(bank_code=B)
    assert (await _refused(fxp.call(fxp.netting.GetPosition, other)))[0] == not_found
    # Everything else: PERMISSION_DENIED PROVIDER_NOT_ALLOWED.
    denied = (grpc.StatusCode.PERMISSION_DENIED, Reason.PROVIDER_NOT_ALLOWED)
    # The bank's and the operator's clients, their calls made as fxp:FXPA0001.
    as_bank, as_operator = BankClient(A, market.config), OperatorClient(market.config)
    as_bank._metadata = as_operator._metadata = fxp._metadata
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: fxp.call(fxp.fx.ListRates, fx_pb2.ListRatesRequest(provider=B)),
        lambda: as_bank.quote("USD", "PHP", source_amount=100),
        lambda: as_bank.submit(instruction(US, "USD", 100)),
        lambda: as_bank.get(q.quote_id),
        lambda: as_bank.call(as_bank.fx.GetQuote, fx_pb2.GetQuoteRequest(quote_id=q.quote_id)),
        lambda: as_operator.list_banks(),
        lambda: as_operator.get_bank(A),
        lambda: as_operator.deposit(A, "PHP", 1),
        lambda: as_operator.close_cycle("PHP", open_php),
        lambda: as_operator.ledger_balance(),
    ]
    try:
        for call in calls:
            assert await _refused(call()) == denied
        stub = cgrpc.ClearingServiceStub(fxp.channel)
        stream = stub.WatchTransfers(cpb.WatchTransfersRequest(), metadata=fxp._metadata)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stream:
                pass
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await as_bank.close()
        await as_operator.close()
    # What it published is recorded as its own act in the operator trail.
    trail = market.db.read(lambda uow: list(uow.trail.records()))
    assert [r.principal for r in trail if r.action == "UpdateRates"][:2] == [
        f"fxp:{A}",
        f"fxp:{B}",
    ]


# Concurrency on PostgreSQL ----------------------------------------------------------------


async def test_concurrent_transfers_never_take_a_provider_past_its_liquidity(
    pg_hub: HubHandle,
) -> None:
    """30 quotes from one provider, each within its headroom when quoted,
    paid concurrently through two hubs on one PostgreSQL database
    (SERIALIZABLE): exactly as many clear as its PHP liquidity plus cap can
    deliver, the rest are refused FX_PROVIDER_INSUFFICIENT_LIQUIDITY, and it
    never owes more than it holds plus its cap."""
    hub, op = pg_hub, pg_hub.operator
    funds, cap = 1_000_000, 200_000  # 10,000.00 PHP and a 2,000.00 PHP cap
    await op.create_bank(PH, "PH", "asia-southeast1", ["PHP"])
    await op.create_bank(A, A, "us-east1", ["USD", "PHP"], roles=PROVIDER)
    await op.deposit(A, "PHP", funds)
    await op.set_cap(A, "PHP", cap)
    await hub.provider(A).publish_rates({("USD", "PHP"): MID})
    debtors = [f"USBANK{k:02d}" for k in range(6)]
    for code in debtors:
        await op.create_bank(code, code, "us-east1", ["USD"])
        await op.deposit(code, "USD", 10**9)
    quotes = [
        (code, await hub.bank(code).quote("USD", "PHP", source_amount=1_000))
        for code in debtors
        for _ in range(5)
    ]
    each = quotes[0][1].target_amount.minor_units  # 558.19 PHP, the same for every quote
    assert {q.provider for _, q in quotes} == {A} and each == 55_819
    second = await start_hub(hub.hub.config.db_url)
    try:
        hubs = [hub, second]

        async def pay(i: int, code: str, q: fx_pb2.Quote) -> cpb.SubmitTransferResponse:
            client = hubs[i % 2].bank(code)
            return await client.submit(instruction(PH, "USD", 1_000, quote_id=q.quote_id))

        results = await asyncio.gather(
            *(pay(i, code, q) for i, (code, q) in enumerate(quotes)), return_exceptions=True
        )
    finally:
        await second.stop()
    accepted = [r for r in results if isinstance(r, cpb.SubmitTransferResponse)]
    refused = [r for r in results if not isinstance(r, cpb.SubmitTransferResponse)]
    assert len(accepted) == (funds + cap) // each == 21
    assert all(
        isinstance(r, HubError) and r.reason == Reason.FX_PROVIDER_INSUFFICIENT_LIQUIDITY
        for r in refused
    ), refused
    php = {p.currency: p for p in (await hub.provider(A).position()).positions}["PHP"]
    assert php.unsettled_net == -each * len(accepted)
    assert php.headroom == funds + cap - each * len(accepted) >= 0
    await settle_every_cycle(hub, ("USD", "PHP"))
    report = audit(hub.db)
    assert report.ok, report.violations
