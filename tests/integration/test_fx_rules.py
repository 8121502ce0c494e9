"""FX rules through real gRPC servers: bounded rate feeds, who may ask for
a quote, per-corridor spreads, and 0- and 3-decimal currencies cleared and
settled on PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Connection, Table, func, insert, select

from remitnet.clients.bank import instruction
from remitnet.clients.errors import HubError
from remitnet.fx.v1 import fx_pb2
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.schema import fx_quotes, fx_rates
from remitnet.services.domain.errors import Reason
from remitnet.services.domain.model import DEFAULT_PROVIDER
from remitnet.services.service_layer.audit import audit
from remitnet.services.service_layer.fx import FxConfig
from tests.support import HubHandle, counts, settle_every_cycle, start_hub


def _rate(base: str, quote: str, mid: str, as_of: datetime | None = None) -> fx_pb2.Rate:
    rate = fx_pb2.Rate(base_currency=base, quote_currency=quote, mid_rate=mid)
    rate.as_of.FromDatetime(as_of or datetime.now(UTC))
    return rate


def _stored(db: Database, table: Table) -> list[tuple[object, ...]]:
    query = select(table).order_by(*table.primary_key)
    return db.read(lambda uow: [tuple(r) for r in uow.conn.execute(query)])


def _quote_count(db: Database) -> int:
    return int(
        db.read(lambda u: u.conn.execute(select(func.count()).select_from(fx_quotes)).scalar_one())
    )


async def _update(hub: HubHandle, rates: list[fx_pb2.Rate]) -> fx_pb2.UpdateRatesResponse:
    op = hub.operator
    return await op.call(op.fx.UpdateRates, fx_pb2.UpdateRatesRequest(rates=rates))


async def test_bad_rate_updates_are_refused_and_store_nothing(hub: HubHandle) -> None:
    await hub.operator.update_rates({("USD", "PHP"): "56.10"})
    now = datetime.now(UTC)
    good = _rate("USD", "INR", "83.2")  # rides along in every bad request
    bad_timestamp = _rate("USD", "EUR", "0.92")
    bad_timestamp.as_of.CopyFrom(Timestamp(seconds=10**15))
    cases: list[tuple[list[fx_pb2.Rate], str]] = [
        ([good, _rate("USD", "JPY", "1e999999999")], Reason.INVALID_RATE),
        ([good, _rate("USD", "JPY", "0.0000000009")], Reason.INVALID_RATE),
        ([good, _rate("USD", "JPY", "1000000001")], Reason.INVALID_RATE),
        ([good, _rate("USD", "JPY", "151.370000000000000001")], Reason.INVALID_RATE),  # 21 digits
        ([good, _rate("USD", "JPY", "1." + "0" * 47)], Reason.INVALID_RATE),  # 49 characters
        ([good, _rate("USD", "JPY", "0")], Reason.INVALID_RATE),
        ([good, _rate("USD", "JPY", "-151")], Reason.INVALID_RATE),
        ([good, _rate("USD", "JPY", "NaN")], Reason.INVALID_RATE),
        ([good, _rate("USD", "JPY", "1_51")], Reason.INVALID_RATE),
        ([good, _rate("USD", "JPY", "")], Reason.INVALID_RATE),
        ([good, _rate("USD", "JPY", "151", now + timedelta(minutes=5))], Reason.INVALID_RATE),
        ([good, bad_timestamp], Reason.INVALID_RATE),
        ([good, _rate("USD", "USD", "1")], Reason.SAME_CURRENCY),
        ([good, _rate("USD", "XXX", "1")], Reason.UNKNOWN_CURRENCY),
        ([good, _rate("USD", "INR", "83.3")], Reason.DUPLICATE_RATE_PAIR),
        ([good, _rate("INR", "USD", "0.012")], Reason.DUPLICATE_RATE_PAIR),  # its inverse
        ([], Reason.EMPTY_BATCH),
    ]
    before = _stored(hub.db, fx_rates)
    for rates, reason in cases:
        with pytest.raises(HubError) as err:
            await _update(hub, rates)
        assert (err.value.code, err.value.reason) == (grpc.StatusCode.INVALID_ARGUMENT, reason), (
            rates,
            err.value,
        )
        assert _stored(hub.db, fx_rates) == before, rates
    # The pair refused "1e999999999" still quotes; nothing overflowed.
    await hub.operator.create_bank("USBANK01", "US", "us-east1", ["USD"])
    await hub.fund_provider(["PHP"])  # the default provider FXHUB sells PHP
    quote = await hub.bank("USBANK01").quote("USD", "PHP", source_amount=10_000)
    assert quote.target_amount.minor_units == 558_195


async def test_a_rate_stored_before_the_bounds_refuses_only_its_own_quotes(
    hub: HubHandle,
) -> None:
    """A database may still hold a rate stored before rates were bounded:
    quotes on that pair are refused item by item (no decimal overflow, no
    INTERNAL), the rest of the batch is priced, and ListRates still lists."""
    await hub.operator.update_rates({("USD", "PHP"): "56.10"})
    now = datetime.now(UTC)

    def plant(conn: Connection) -> None:
        conn.execute(
            insert(fx_rates).values(
                provider=DEFAULT_PROVIDER,
                base="USD",
                quote="JPY",
                mid="1E+999999999",
                as_of=now,
                updated_at=now,
            )
        )

    hub.db.write("plant_legacy_rate", lambda uow: plant(uow.conn))
    await hub.operator.create_bank("USBANK01", "US", "us-east1", ["USD"])
    await hub.fund_provider(["PHP", "JPY"])

    def ask(target: str) -> fx_pb2.CreateQuoteRequest:
        return fx_pb2.CreateQuoteRequest(
            source_currency="USD", target_currency=target, source_amount=10_000
        )

    response = await hub.bank("USBANK01").quotes([ask("JPY"), ask("PHP")])
    assert [r.error.reason for r in response.results] == [Reason.RATE_NOT_AVAILABLE, ""]
    assert _quote_count(hub.db) == 1
    listed = await hub.operator.call(hub.operator.fx.ListRates, fx_pb2.ListRatesRequest())
    assert "1E+999999999" in [r.mid_rate for r in listed.rates]


async def test_rates_at_the_bounds_are_stored_exactly_and_price_any_amount(hub: HubHandle) -> None:
    now = datetime.now(UTC)
    response = await _update(
        hub,
        [
            _rate("USD", "VND", "1000000000"),  # the upper bound, to a 0-decimal currency
            _rate("KWD", "JPY", "0.000000001"),  # the lower bound
            _rate("USD", "PHP", "56.1234567890123456780", now + timedelta(seconds=30)),
            _rate("USD", "KWD", "0.30721000"),
        ],
    )
    assert response.updated == 4
    listed = await hub.operator.call(hub.operator.fx.ListRates, fx_pb2.ListRatesRequest())
    assert {(r.base_currency, r.quote_currency): r.mid_rate for r in listed.rates} == {
        ("USD", "VND"): "1000000000",
        ("KWD", "JPY"): "0.000000001",
        ("USD", "PHP"): "56.123456789012345678",  # 20 digits: trailing zero dropped
        ("USD", "KWD"): "0.30721",
    }
    await hub.operator.create_bank("USBANK01", "US", "us-east1", ["USD", "KWD"])
    await hub.fund_provider(["USD", "KWD", "VND", "JPY"])
    us = hub.bank("USBANK01")
    quoted = await us.quotes(
        [
            fx_pb2.CreateQuoteRequest(
                source_currency="USD", target_currency="VND", source_amount=2**63 - 1
            ),
            fx_pb2.CreateQuoteRequest(
                source_currency="KWD", target_currency="JPY", target_amount=2**63 - 1
            ),
            fx_pb2.CreateQuoteRequest(
                source_currency="KWD", target_currency="JPY", source_amount=1
            ),
            fx_pb2.CreateQuoteRequest(
                source_currency="USD", target_currency="VND", source_amount=1
            ),
        ]
    )
    reasons = [r.error.reason for r in quoted.results]
    assert reasons == [
        Reason.AMOUNT_OUT_OF_RANGE,
        Reason.AMOUNT_OUT_OF_RANGE,
        Reason.INVALID_AMOUNT,  # 0.001 KWD buys 1e-12 JPY
        "",
    ]
    assert quoted.results[3].quote.target_amount.minor_units == 9_950_000  # 0.01 USD less 50 bps


async def test_quotes_need_a_known_active_bank_holding_the_source_currency(
    hub: HubHandle,
) -> None:
    await hub.operator.update_rates({("USD", "PHP"): "56.10", ("USD", "INR"): "83.2"})
    await hub.operator.create_bank("USBANK01", "US", "us-east1", ["USD"])
    await hub.operator.create_bank("PHBANK01", "PH", "asia-southeast1", ["PHP"])
    await hub.operator.create_bank("SUBANK01", "Suspended", "us-east1", ["USD"])
    await hub.operator.suspend("SUBANK01")
    await hub.fund_provider(["USD", "PHP", "INR"])
    cases = [
        ("NOBANK01", "USD", "PHP", grpc.StatusCode.NOT_FOUND, Reason.UNKNOWN_PARTICIPANT),
        (
            "SUBANK01",
            "USD",
            "PHP",
            grpc.StatusCode.FAILED_PRECONDITION,
            Reason.PARTICIPANT_SUSPENDED,
        ),
        (
            "PHBANK01",
            "USD",
            "PHP",
            grpc.StatusCode.FAILED_PRECONDITION,
            Reason.CURRENCY_NOT_SUPPORTED,
        ),
    ]
    for bank, source, target, code, reason in cases:
        with pytest.raises(HubError) as err:
            await hub.bank(bank).quote(source, target, source_amount=10_000)
        assert (err.value.code, err.value.reason) == (code, reason)
    assert _quote_count(hub.db) == 0

    def ask(source: str, target: str, amount: int = 1_000) -> fx_pb2.CreateQuoteRequest:
        return fx_pb2.CreateQuoteRequest(
            source_currency=source, target_currency=target, source_amount=amount
        )

    # A result per item: PHBANK01 holds PHP, not USD.
    mixed = await hub.bank("PHBANK01").quotes(
        [
            ask("PHP", "USD", 100_000),
            ask("USD", "PHP"),
            ask("PHP", "INR", 100_000),
            ask("USD", "USD"),
        ]
    )
    assert [r.error.reason for r in mixed.results] == [
        "",
        Reason.CURRENCY_NOT_SUPPORTED,
        "",
        Reason.SAME_CURRENCY,
    ]
    assert (mixed.issued_count, mixed.refused_count) == (2, 2)
    assert _quote_count(hub.db) == 2
    for bank, reason in [
        ("NOBANK01", Reason.UNKNOWN_PARTICIPANT),
        ("SUBANK01", Reason.PARTICIPANT_SUSPENDED),
    ]:
        batch = await hub.bank(bank).quotes([ask("USD", "PHP"), ask("USD", "INR")])
        assert [r.error.reason for r in batch.results] == [reason, reason]
        assert batch.issued_count == 0
    assert _quote_count(hub.db) == 2
    await hub.operator.resume("SUBANK01")
    assert (await hub.bank("SUBANK01").quote("USD", "PHP", source_amount=10_000)).quote_id
    assert _quote_count(hub.db) == 3


async def test_corridor_spread_is_applied(db_url: str) -> None:
    config = FxConfig(default_spread_bps=50, corridor_spread_bps={("USD", "PHP"): 125})
    hub = await start_hub(db_url, fx=config)
    try:
        await hub.operator.update_rates({("USD", "PHP"): "56.10", ("USD", "INR"): "83.2"})
        await hub.operator.create_bank("USBANK01", "US", "us-east1", ["USD", "PHP"])
        await hub.fund_provider(["USD", "PHP", "INR"])
        us = hub.bank("USBANK01")
        # 1,000.00 USD: (target, mid) -> (bps, all-in rate, target amount, fee)
        expected = {
            ("PHP", "56.1"): (125, "55.39875", 5_539_875, 70_125),
            ("INR", "83.2"): (50, "82.784", 8_278_400, 41_600),
        }
        for (target, mid), (bps, rate, amount, fee) in expected.items():
            q = await us.quote("USD", target, source_amount=100_000)
            assert q.spread_bps == bps
            assert Decimal(q.rate) == Decimal(mid) * (10_000 - bps) / 10_000 == Decimal(rate)
            assert (q.target_amount.minor_units, q.fee.minor_units) == (amount, fee)
            # The fee is the spread: at mid, 1,000 USD buys target + fee.
            at_mid = Fraction(Decimal(mid)) * 1_000 * 100
            assert q.fee.minor_units + q.target_amount.minor_units == round(at_mid)
        # The corridor has a direction: PHP -> USD takes the default spread.
        assert (await us.quote("PHP", "USD", source_amount=10_000_000)).spread_bps == 50
    finally:
        await hub.stop()


async def test_zero_and_three_decimal_currencies_clear_and_settle_exactly(
    pg_hub: HubHandle,
) -> None:
    """USD->JPY, KWD->USD and JPY->KWD (cross via USD) through locked
    quotes on PostgreSQL: after close and settle of every cycle each
    currency's ledger sums to zero, the FX provider's balance per currency
    moved by exactly the sources it took less the targets it delivered (its
    quotes' fees are what it kept; the hub books no revenue), and each
    creditor holds exactly what was quoted. A transfer over the debtor's
    headroom is refused first and leaves its quote unused."""
    hub = pg_hub
    await hub.operator.update_rates({("USD", "JPY"): "151.37", ("KWD", "USD"): "3.2551"})
    for code, ccy, deposit in [
        ("USBANK01", "USD", 1_000_000),  # 10,000.00 USD
        ("KWBANK01", "KWD", 1_000_000),  # 1,000.000 KWD
        ("JPBANK01", "JPY", 1_000_000),  # 1,000,000 JPY
    ]:
        await hub.operator.create_bank(code, code, "us-east1", [ccy])
        await hub.operator.deposit(code, ccy, deposit)
    for code, ccy in [("JPBANK02", "JPY"), ("USBANK02", "USD"), ("KWBANK02", "KWD")]:
        await hub.operator.create_bank(code, code, "asia-south1", [ccy])
    funds = 10**13
    await hub.fund_provider(["USD", "JPY", "KWD"], funds)

    # Over the headroom: 1,000.001 KWD sold by a bank holding 1,000.000.
    kw = hub.bank("KWBANK01")
    big = await kw.quote("KWD", "USD", source_amount=1_000_001)
    before = counts(hub.db)
    with pytest.raises(HubError) as err:
        await kw.submit(instruction("USBANK02", "KWD", 1_000_001, quote_id=big.quote_id))
    assert err.value.reason == Reason.INSUFFICIENT_LIQUIDITY
    assert counts(hub.db) == before
    got = await kw.call(kw.fx.GetQuote, fx_pb2.GetQuoteRequest(quote_id=big.quote_id))
    assert got.quote.used_by_transfer_id == ""

    plan = [
        # debtor, creditor, source, target, amount, sell the source (else deliver the target)
        ("USBANK01", "JPBANK02", "USD", "JPY", 123_457, True),  # 1,234.57 USD
        ("USBANK01", "JPBANK02", "USD", "JPY", 1, True),  # one cent: 1.506 JPY -> 2
        ("KWBANK01", "USBANK02", "KWD", "USD", 98_765, False),  # deliver 987.65 USD
        ("KWBANK01", "USBANK02", "KWD", "USD", 7, True),  # 0.007 KWD: 2.27 cents -> 2
        ("JPBANK01", "KWBANK02", "JPY", "KWD", 333_333, True),  # cross via USD
        ("JPBANK01", "KWBANK02", "JPY", "KWD", 1_001, False),  # deliver 1.001 KWD
    ]
    received: dict[str, int] = defaultdict(int)
    fees: dict[str, int] = defaultdict(int)
    provider_moved: dict[str, int] = defaultdict(int)
    for debtor, creditor, source, target, amount, sell in plan:
        client = hub.bank(debtor)
        if sell:
            q = await client.quote(source, target, source_amount=amount)
        else:
            q = await client.quote(source, target, target_amount=amount)
        t = (
            await client.submit(
                instruction(creditor, source, q.source_amount.minor_units, quote_id=q.quote_id)
            )
        ).transfer
        assert (t.creditor_amount.currency, t.creditor_amount.minor_units) == (
            target,
            q.target_amount.minor_units,
        )
        assert q.provider == DEFAULT_PROVIDER
        received[creditor] += q.target_amount.minor_units
        fees[target] += q.fee.minor_units
        provider_moved[source] += q.source_amount.minor_units
        provider_moved[target] -= q.target_amount.minor_units
    assert fees["JPY"] > 0 and fees["USD"] > 0 and fees["KWD"] > 0

    ledger = await settle_every_cycle(hub, ("USD", "JPY", "KWD"))
    assert {c.currency for c in ledger.currencies} >= {"USD", "JPY", "KWD"}
    for currency in ("USD", "JPY", "KWD"):
        revenue = await hub.operator.statement("HUB", currency)
        assert revenue.closing_balance.minor_units == 0, currency
        provider = await hub.operator.statement(DEFAULT_PROVIDER, currency)
        moved = provider.closing_balance.minor_units - funds
        assert moved == provider_moved[currency], currency
    for creditor, currency in [("JPBANK02", "JPY"), ("USBANK02", "USD"), ("KWBANK02", "KWD")]:
        st = await hub.bank(creditor).statement(currency)
        assert st.closing_balance.minor_units == received[creditor], creditor
    # The refused transfer's quote was never used, so it still works.
    await hub.operator.deposit("KWBANK01", "KWD", 1_000_000)
    await kw.submit(instruction("USBANK02", "KWD", 1_000_001, quote_id=big.quote_id))
    report = audit(hub.db)
    assert report.ok, report.violations
