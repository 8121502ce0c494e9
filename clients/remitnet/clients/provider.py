"""The client an FX provider uses: publish its rates, read its own position
and statements. The hub prices quotes from each provider's own rates and
makes it the counterparty of the conversions it wins: it receives the
source amount and delivers the target amount from its prefunded liquidity
(funded by the operator's Deposit, like a bank's)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from remitnet.clients.base import ClientConfig, HubClient
from remitnet.fx.v1 import fx_pb2 as fxpb
from remitnet.fx.v1 import fx_pb2_grpc as fxgrpc
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.netting.v1 import netting_pb2_grpc as ngrpc
from remitnet.settlement.v1 import settlement_pb2 as spb
from remitnet.settlement.v1 import settlement_pb2_grpc as sgrpc

Pair = tuple[str, str]


def rates_request(
    rates: Mapping[Pair, str],
    *,
    as_of: datetime | None = None,
    spreads: Mapping[Pair, int] | None = None,
    provider: str = "",
) -> fxpb.UpdateRatesRequest:
    """An UpdateRates request: (base, quote) -> mid as decimal text, all
    observed at `as_of` (timezone-aware; by default this machine's now),
    with the provider's own spread in basis points for the pairs in
    `spreads` (others: the hub's corridor spread)."""
    stamp = Timestamp()
    stamp.FromDatetime(as_of or datetime.now(UTC))
    request = fxpb.UpdateRatesRequest(provider=provider)
    for (base, quote), mid in rates.items():
        rate = request.rates.add(base_currency=base, quote_currency=quote, mid_rate=mid)
        rate.as_of.CopyFrom(stamp)
        if spreads is not None and (base, quote) in spreads:
            rate.spread_bps = spreads[(base, quote)]
    return request


class ProviderClient(HubClient):
    """Calls as FX provider `provider_code` (principal fxp:CODE; with mTLS
    the certificate's spiffe://remitnet/fxp/CODE). The hub refuses every
    other call of a provider: PERMISSION_DENIED PROVIDER_NOT_ALLOWED."""

    def __init__(self, provider_code: str, config: ClientConfig | None = None) -> None:
        super().__init__(f"fxp:{provider_code}", config)
        self.provider_code = provider_code
        self.fx = fxgrpc.FxServiceStub(self.channel)
        self.netting = ngrpc.NettingServiceStub(self.channel)
        self.settlement = sgrpc.SettlementServiceStub(self.channel)

    async def publish_rates(
        self,
        rates: Mapping[Pair, str],
        *,
        as_of: datetime | None = None,
        spreads: Mapping[Pair, int] | None = None,
    ) -> fxpb.UpdateRatesResponse:
        """Set this provider's mid rates (see `rates_request`). A rate older
        than the one held for its pair is refused (RATE_OLDER_THAN_STORED),
        the call storing nothing; a suspended provider cannot publish
        (FX_PROVIDER_SUSPENDED). Retrying is safe: the rates already held
        are not stored again."""
        request = rates_request(rates, as_of=as_of, spreads=spreads)
        return await self.call(self.fx.UpdateRates, request)

    async def rates(self) -> list[fxpb.Rate]:
        """This provider's stored rates."""
        response = await self.call(self.fx.ListRates, fxpb.ListRatesRequest())
        return list(response.rates)

    async def position(self, currency: str = "") -> npb.GetPositionResponse:
        """Balance, cap, unsettled net and headroom per currency: the
        headroom in a currency is what it can still deliver in it."""
        return await self.call(self.netting.GetPosition, npb.GetPositionRequest(currency=currency))

    async def statement(self, currency: str, after_sequence: int = 0) -> spb.GetStatementResponse:
        return await self.call(
            self.settlement.GetStatement,
            spb.GetStatementRequest(
                bank_code=self.provider_code, currency=currency, after_sequence=after_sequence
            ),
        )

    async def cycle(self, cycle_id: str) -> npb.Cycle:
        """A cycle's totals and this provider's own position in it."""
        response = await self.call(self.netting.GetCycle, npb.GetCycleRequest(cycle_id=cycle_id))
        return response.cycle
