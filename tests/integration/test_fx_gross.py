"""Cross-currency transfers on locked quotes, and gross settlement, through
real gRPC servers on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import func, select

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.bank import instruction
from remitnet.clients.errors import HubError
from remitnet.fx.v1 import fx_pb2
from remitnet.services.adapters.db.schema import fx_quotes
from remitnet.services.domain.errors import Reason
from remitnet.services.service_layer import fx as fx_uc
from remitnet.services.service_layer.audit import audit
from remitnet.services.service_layer.fx import FxConfig
from tests.support import HubHandle, counts, settle_every_cycle, start_hub

BANKS = {"USBANK01": "us-east1", "PHBANK01": "asia-southeast1", "INBANK01": "asia-south1"}
RATES = {
    ("USD", "PHP"): "56.10",
    ("USD", "INR"): "83.20",
    ("USD", "EUR"): "0.92",
    ("USD", "GBP"): "0.79",
    ("USD", "NGN"): "1480",
}
FUNDS = 10**13  # of the default provider FXHUB, in each currency


async def _network(hub: HubHandle) -> HubHandle:
    await hub.operator.update_rates(RATES)
    await hub.operator.create_bank("USBANK01", "US", "us-east1", ["USD", "EUR", "GBP"])
    await hub.operator.create_bank("PHBANK01", "PH", "asia-southeast1", ["PHP", "USD"])
    await hub.operator.create_bank("INBANK01", "IN", "asia-south1", ["INR", "NGN"])
    for code, ccy in [
        ("USBANK01", "USD"),
        ("USBANK01", "EUR"),
        ("USBANK01", "GBP"),
        ("PHBANK01", "USD"),
    ]:
        await hub.operator.deposit(code, ccy, 10_000_000)
    # The hub's default FX provider, whose rates these are, funded to sell.
    await hub.fund_provider(["USD", "PHP", "INR", "EUR", "GBP", "NGN"], FUNDS)
    return hub


@pytest.fixture
async def net(hub: HubHandle) -> HubHandle:
    return await _network(hub)


async def test_cross_currency_transfer_clears_two_legs_through_the_provider(net: HubHandle) -> None:
    us = net.bank("USBANK01")
    q = await us.quote("USD", "PHP", source_amount=100_000)  # 1,000.00 USD
    assert q.target_amount.minor_units == 5_581_950  # 1,000 x 56.10 x 0.995
    assert q.fee.minor_units == 5_610_000 - 5_581_950 and q.derivation == "USD/PHP"
    t = (await us.submit(instruction("PHBANK01", "USD", 100_000, quote_id=q.quote_id))).transfer
    assert t.creditor_amount.currency == "PHP" and t.creditor_amount.minor_units == 5_581_950
    assert t.quote_id == q.quote_id
    # EUR -> INR through USD, quoted to deliver a target amount.
    q2 = await us.quote("EUR", "INR", target_amount=1_000_000)
    assert "cross via USD" in q2.derivation
    await us.submit(
        instruction("INBANK01", "EUR", q2.source_amount.minor_units, quote_id=q2.quote_id)
    )
    q3 = await us.quote("GBP", "NGN", source_amount=50_000)
    await us.submit(instruction("INBANK01", "GBP", 50_000, quote_id=q3.quote_id))
    assert {x.provider for x in (q, q2, q3)} == {"FXHUB"}
    # Settle every currency's cycle: each ledger sums to zero. The provider
    # took each source amount and delivered each target amount exactly (its
    # spread, the quote's fee, is what it kept by delivering less); the hub
    # booked no revenue.
    await settle_every_cycle(net, ("USD", "PHP", "EUR", "INR", "GBP", "NGN"))
    moved, revenue = {}, {}
    for currency in ("USD", "EUR", "GBP", "PHP", "INR", "NGN"):
        st = await net.operator.statement("FXHUB", currency)
        moved[currency] = st.closing_balance.minor_units - FUNDS
        st = await net.operator.statement("HUB", currency)
        revenue[currency] = st.closing_balance.minor_units
    assert moved == {
        "USD": 100_000,
        "EUR": q2.source_amount.minor_units,
        "GBP": 50_000,
        "PHP": -q.target_amount.minor_units,
        "INR": -q2.target_amount.minor_units,
        "NGN": -q3.target_amount.minor_units,
    }
    assert all(x.fee.minor_units > 0 for x in (q, q2, q3))
    assert set(revenue.values()) == {0}
    statement = await net.bank("PHBANK01").statement("PHP")
    assert statement.closing_balance.minor_units == 5_581_950
    assert (await us.get(t.transfer_id)).status == cpb.TRANSFER_STATUS_SETTLED
    report = audit(net.db)
    assert report.ok, report.violations


async def test_quote_is_single_use_bound_and_must_match(net: HubHandle) -> None:
    us = net.bank("USBANK01")
    q = await us.quote("USD", "PHP", source_amount=10_000)
    before = counts(net.db)
    cases = [
        (
            net.bank("PHBANK01"),
            instruction("USBANK01", "USD", 10_000, quote_id=q.quote_id),
            Reason.QUOTE_NOT_OWNED,
        ),
        (us, instruction("PHBANK01", "USD", 9_999, quote_id=q.quote_id), Reason.QUOTE_MISMATCH),
        (
            us,
            instruction("PHBANK01", "USD", 10_000, quote_id="3b1f0a5e-0000-4000-8000-000000000001"),
            Reason.QUOTE_NOT_FOUND,
        ),
    ]
    for client, item, reason in cases:
        with pytest.raises(HubError) as err:
            await client.submit(item)
        assert err.value.reason == reason
    assert counts(net.db) == before
    await us.submit(instruction("PHBANK01", "USD", 10_000, quote_id=q.quote_id))
    with pytest.raises(HubError) as err:
        await us.submit(instruction("PHBANK01", "USD", 10_000, quote_id=q.quote_id))
    assert err.value.reason == Reason.QUOTE_USED
    assert (
        await us.call(us.fx.GetQuote, fx_pb2.GetQuoteRequest(quote_id=q.quote_id))
    ).quote.used_by_transfer_id


async def test_quote_refusals(net: HubHandle) -> None:
    us = net.bank("USBANK01")
    with pytest.raises(HubError) as err:
        await us.quote("USD", "JPY", source_amount=100)
    assert err.value.reason == Reason.RATE_NOT_AVAILABLE
    with pytest.raises(HubError) as err:
        await us.quote("USD", "USD", source_amount=100)
    assert err.value.reason == Reason.SAME_CURRENCY
    with pytest.raises(HubError) as err:
        await us.quote("USD", "PHP", source_amount=-5)
    assert err.value.reason == Reason.INVALID_AMOUNT


async def test_batch_of_quotes_feeds_a_batch_of_transfers(net: HubHandle) -> None:
    us = net.bank("USBANK01")
    asks = [
        fx_pb2.CreateQuoteRequest(
            source_currency="USD", target_currency="PHP", source_amount=1_000
        ),
        fx_pb2.CreateQuoteRequest(source_currency="USD", target_currency="USD", source_amount=1),
        fx_pb2.CreateQuoteRequest(source_currency="USD", target_currency="PHP"),
        fx_pb2.CreateQuoteRequest(source_currency="USD", target_currency="JPY", source_amount=5),
        fx_pb2.CreateQuoteRequest(source_currency="EUR", target_currency="INR", target_amount=777),
        fx_pb2.CreateQuoteRequest(source_currency="USD", target_currency="PHP", source_amount=-1),
    ]
    response = await us.quotes(asks)
    assert (response.issued_count, response.refused_count) == (2, 4)
    reasons = [r.error.reason if r.HasField("error") else "" for r in response.results]
    assert reasons == [
        "",
        Reason.SAME_CURRENCY,
        Reason.MISSING_FIELD,
        Reason.RATE_NOT_AVAILABLE,
        "",
        Reason.INVALID_AMOUNT,
    ]
    # The same prices as one quote at a time, and one row per issued quote.
    single = await us.quote("USD", "PHP", source_amount=1_000)
    first, fifth = response.results[0].quote, response.results[4].quote
    assert first.target_amount == single.target_amount and first.bank_code == "USBANK01"
    assert fifth.target_amount.minor_units == 777 and "cross via USD" in fifth.derivation
    stored = net.db.read(
        lambda uow: uow.conn.execute(select(func.count()).select_from(fx_quotes)).scalar_one()
    )
    assert stored == 3  # the two issued here and the single one: refusals store nothing
    batch = await us.submit_batch(
        [
            instruction("PHBANK01", "USD", 1_000, quote_id=first.quote_id),
            instruction(
                "INBANK01", "EUR", fifth.source_amount.minor_units, quote_id=fifth.quote_id
            ),
        ]
    )
    assert batch.accepted_count == 2
    assert [r.transfer.creditor_amount for r in batch.results] == [
        first.target_amount,
        fifth.target_amount,
    ]
    with pytest.raises(HubError) as err:
        await us.quotes([])
    assert err.value.reason == Reason.EMPTY_BATCH
    report = audit(net.db)
    assert report.ok, report.violations


async def test_expired_quote_and_stale_rates(db_url: str) -> None:
    hub = await start_hub(
        db_url,
        fx=FxConfig(quote_ttl=timedelta(milliseconds=200), max_rate_age=timedelta(seconds=1)),
    )
    try:
        await _network(hub)
        us = hub.bank("USBANK01")
        q = await us.quote("USD", "PHP", source_amount=10_000)
        await asyncio.sleep(0.3)
        with pytest.raises(HubError) as err:
            await us.submit(instruction("PHBANK01", "USD", 10_000, quote_id=q.quote_id))
        assert err.value.reason == Reason.QUOTE_EXPIRED
        await asyncio.sleep(1.0)
        with pytest.raises(HubError) as err:
            await us.quote("USD", "PHP", source_amount=10_000)
        assert (err.value.code, err.value.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            Reason.RATE_STALE,
        )
        fx_uc.update_rates(hub.db, [("USD", "PHP", "56.2", datetime.now(UTC))])
        await us.quote("USD", "PHP", source_amount=10_000)
    finally:
        await hub.stop()


async def test_two_transfers_racing_for_one_quote(pg_hub: HubHandle) -> None:
    await _network(pg_hub)
    second = await start_hub(pg_hub.hub.config.db_url)
    try:
        for _ in range(5):
            q = await pg_hub.bank("USBANK01").quote("USD", "PHP", source_amount=1_000)
            clients = [pg_hub.bank("USBANK01"), second.bank("USBANK01")]
            results = await asyncio.gather(
                *(
                    c.submit(instruction("PHBANK01", "USD", 1_000, quote_id=q.quote_id))
                    for c in clients * 3
                ),
                return_exceptions=True,
            )
            ok = [r for r in results if not isinstance(r, BaseException)]
            assert len(ok) == 1
            assert all(
                isinstance(r, HubError) and r.reason == Reason.QUOTE_USED
                for r in results
                if r not in ok
            )
        report = audit(pg_hub.db)
        assert report.ok, report.violations
    finally:
        await second.stop()


async def test_gross_settlement_posts_at_once(net: HubHandle) -> None:
    us = net.bank("USBANK01")
    item = instruction("PHBANK01", "USD", 250_000, gross=True)
    t = (await us.submit(item)).transfer
    assert t.status == cpb.TRANSFER_STATUS_SETTLED
    assert t.settlement_mode == cpb.SETTLEMENT_MODE_GROSS and t.cycle_id == ""
    assert (await us.submit(item)).replayed
    st = await net.bank("PHBANK01").statement("USD")
    assert st.entries[-1].kind == 5 and st.entries[-1].amount == 250_000
    with pytest.raises(HubError) as err:
        await us.submit(instruction("PHBANK01", "USD", 10**10, gross=True))
    assert err.value.reason == Reason.INSUFFICIENT_LIQUIDITY
    with pytest.raises(HubError) as err:
        await us.cancel(t.transfer_id)
    assert err.value.reason == Reason.TRANSFER_NOT_CANCELLABLE
    response = await us.submit_batch([instruction("PHBANK01", "USD", 1, gross=True)])
    assert response.results[0].error.reason == Reason.GROSS_NOT_IN_BATCH
    settled = await us.list(status=cpb.TRANSFER_STATUS_SETTLED)
    assert [x.transfer_id for x in settled.transfers] == [t.transfer_id]
    report = audit(net.db)
    assert report.ok, report.violations
