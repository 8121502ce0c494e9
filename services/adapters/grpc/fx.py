from __future__ import annotations

import asyncio
from datetime import UTC
from typing import Any

import grpc

from remitnet.fx.v1 import fx_pb2 as pb
from remitnet.fx.v1 import fx_pb2_grpc as pb_grpc
from remitnet.services.adapters import metrics
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.grpc import convert
from remitnet.services.adapters.grpc.identity import calling_bank, current_principal
from remitnet.services.domain.errors import InvalidArgument, Reason, RemitnetError
from remitnet.services.domain.fx import Quote
from remitnet.services.service_layer import fx as uc

Context = grpc.aio.ServicerContext[Any, Any]


def quote_message(q: Quote) -> pb.Quote:
    t = q.terms
    return pb.Quote(
        quote_id=q.quote_id,
        bank_code=q.bank,
        source_amount=convert.money(t.source_currency, t.source_amount),
        target_amount=convert.money(t.target_currency, t.target_amount),
        rate=str(t.rate),
        mid_rate=str(t.mid_rate),
        spread_bps=t.spread_bps,
        fee=convert.money(t.target_currency, t.fee),
        derivation=t.derivation,
        created_at=convert.timestamp(q.created_at),
        expires_at=convert.timestamp(q.expires_at),
        used_by_transfer_id=q.used_by or "",
    )


class FxServicer(pb_grpc.FxServiceServicer):
    def __init__(self, db: Database, config: uc.FxConfig) -> None:
        self.db = db
        self.config = config

    async def UpdateRates(
        self, request: pb.UpdateRatesRequest, context: Context
    ) -> pb.UpdateRatesResponse:
        rows = [
            (
                r.base_currency,
                r.quote_currency,
                r.mid_rate,
                r.as_of.ToDatetime(tzinfo=UTC) if r.HasField("as_of") else None,
            )
            for r in request.rates
        ]
        rates = await asyncio.to_thread(uc.update_rates, self.db, rows)
        return pb.UpdateRatesResponse(updated=len(rates))

    async def ListRates(
        self, request: pb.ListRatesRequest, context: Context
    ) -> pb.ListRatesResponse:
        rates = await asyncio.to_thread(uc.list_rates, self.db)
        return pb.ListRatesResponse(
            rates=[
                pb.Rate(
                    base_currency=r.base,
                    quote_currency=r.quote,
                    mid_rate=str(r.mid),
                    as_of=convert.timestamp(r.as_of),
                )
                for r in rates
            ]
        )

    async def CreateQuote(
        self, request: pb.CreateQuoteRequest, context: Context
    ) -> pb.CreateQuoteResponse:
        which = request.WhichOneof("amount")
        if which is None:
            raise InvalidArgument(
                Reason.MISSING_FIELD, "give source_amount or target_amount", field="amount"
            )
        try:
            quote = await asyncio.to_thread(
                uc.create_quote,
                self.db,
                self.config,
                calling_bank(),
                request.source_currency,
                request.target_currency,
                source_amount=request.source_amount if which == "source_amount" else None,
                target_amount=request.target_amount if which == "target_amount" else None,
            )
        except RemitnetError as err:
            metrics.FX_QUOTES.labels("refused", err.reason).inc()
            raise
        metrics.FX_QUOTES.labels("issued", "").inc()
        return pb.CreateQuoteResponse(quote=quote_message(quote))

    async def GetQuote(self, request: pb.GetQuoteRequest, context: Context) -> pb.GetQuoteResponse:
        quote = await asyncio.to_thread(
            uc.get_quote, self.db, current_principal().bank, request.quote_id
        )
        return pb.GetQuoteResponse(quote=quote_message(quote))
