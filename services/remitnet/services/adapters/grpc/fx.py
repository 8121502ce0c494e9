from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from remitnet.fx.v1 import fx_pb2 as pb
from remitnet.fx.v1 import fx_pb2_grpc as pb_grpc
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.grpc import convert
from remitnet.services.adapters.grpc.clearing import MAX_BATCH_ITEMS
from remitnet.services.adapters.grpc.errors import item_error
from remitnet.services.adapters.grpc.identity import (
    Principal,
    calling_bank,
    current_principal,
    provider_refusal,
)
from remitnet.services.domain.errors import InvalidArgument, Reason, RemitnetError
from remitnet.services.domain.fx import Quote
from remitnet.services.domain.model import DEFAULT_PROVIDER
from remitnet.services.service_layer import fx as uc
from remitnet.services.service_layer.results import NO_OBSERVER, Observer, QuotesAnswered

Context = grpc.aio.ServicerContext[Any, Any]


def quote_message(q: Quote) -> pb.Quote:
    message = pb.Quote()
    fill_quote(message, q, {})
    return message


def fill_quote(m: pb.Quote, q: Quote, stamps: dict[datetime, Timestamp]) -> None:
    """`q` into `m`, in place. `stamps`: the Timestamps already built for
    the answer (the quotes of one CreateQuotes share their times). In place
    and shared, a batch of 1,000 quotes is answered about five times faster
    than by building each quote's messages and copying them into the
    answer."""
    t = q.terms
    m.quote_id = q.quote_id
    m.bank_code = q.bank
    source, target, fee = m.source_amount, m.target_amount, m.fee
    source.currency, source.minor_units = t.source_currency, t.source_amount
    target.currency, target.minor_units = t.target_currency, t.target_amount
    fee.currency, fee.minor_units = t.target_currency, t.fee
    # Not shared by value: equal Decimals may read differently (56.1, 56.10).
    m.rate, m.mid_rate = str(t.rate), str(t.mid_rate)
    m.spread_bps = t.spread_bps
    m.derivation = t.derivation
    m.created_at.CopyFrom(convert.shared_stamp(stamps, q.created_at))
    m.expires_at.CopyFrom(convert.shared_stamp(stamps, q.expires_at))
    if q.used_by:
        m.used_by_transfer_id = q.used_by
    if q.provider:
        m.provider = q.provider


def _plain(value: Decimal) -> str:
    """0.000000001, not 1E-9; scientific only far outside the bounded
    range (a rate stored before rates were bounded)."""
    return format(value, "f") if abs(value.adjusted()) <= 40 else str(value)


def _quote_error(err: RemitnetError) -> pb.QuoteResult:
    return pb.QuoteResult(error=item_error(err))


def _rates_provider(principal: Principal, named: str, *, default: str | None) -> str | None:
    """Whose rates a call is about: an FX provider principal's own (naming
    another is PERMISSION_DENIED PROVIDER_NOT_ALLOWED); for the operator or
    a bank the one named, else `default`."""
    if principal.provider is not None:
        if named and named != principal.provider:
            raise provider_refusal(principal)
        return principal.provider
    return named or default


class FxServicer(pb_grpc.FxServiceServicer):
    def __init__(self, db: Database, config: uc.FxConfig, observer: Observer = NO_OBSERVER) -> None:
        self.db = db
        self.config = config
        self.observer = observer

    async def UpdateRates(
        self, request: pb.UpdateRatesRequest, context: Context
    ) -> pb.UpdateRatesResponse:
        principal = current_principal()
        provider = _rates_provider(principal, request.provider, default=DEFAULT_PROVIDER)
        assert provider is not None
        rows: list[uc.RateRow] = []
        for index, r in enumerate(request.rates):
            if r.provider and r.provider != provider:
                raise InvalidArgument(
                    Reason.INVALID_ARGUMENT,
                    f"rate {index} names provider {r.provider[:40]!r}; the request sets "
                    f"{provider}'s rates",
                    field="provider",
                )
            as_of = None
            if r.HasField("as_of"):
                try:
                    as_of = r.as_of.ToDatetime(tzinfo=UTC)
                except (ValueError, OverflowError):
                    raise InvalidArgument(
                        Reason.INVALID_RATE,
                        f"rate {index}: as_of is not a valid timestamp",
                        field="as_of",
                        index=str(index),
                    ) from None
            spread = r.spread_bps if r.HasField("spread_bps") else None
            rows.append((r.base_currency, r.quote_currency, r.mid_rate, as_of, spread))
        rates = await asyncio.to_thread(
            partial(
                uc.update_rates,
                provider=provider,
                by_provider=principal.is_provider,
                actor=principal.render(),
            ),
            self.db,
            rows,
        )
        return pb.UpdateRatesResponse(updated=len(rates), provider=provider)

    async def ListRates(
        self, request: pb.ListRatesRequest, context: Context
    ) -> pb.ListRatesResponse:
        provider = _rates_provider(current_principal(), request.provider, default=None)
        rates = await asyncio.to_thread(uc.list_rates, self.db, provider)
        return pb.ListRatesResponse(
            rates=[
                pb.Rate(
                    base_currency=r.base,
                    quote_currency=r.quote,
                    mid_rate=_plain(r.mid),
                    as_of=convert.timestamp(r.as_of),
                    spread_bps=r.spread_bps,
                    provider=r.provider,
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
                provider=request.provider or None,
            )
        except RemitnetError as err:
            self.observer.observe(QuotesAnswered.of(0, [err.reason]))
            raise
        self.observer.observe(QuotesAnswered(1, {}))
        return pb.CreateQuoteResponse(quote=quote_message(quote))

    async def CreateQuotes(
        self, request: pb.CreateQuotesRequest, context: Context
    ) -> pb.CreateQuotesResponse:
        count = len(request.quotes)
        if count == 0:
            raise InvalidArgument(Reason.EMPTY_BATCH, "the batch holds no quotes")
        if count > MAX_BATCH_ITEMS:
            raise InvalidArgument(
                Reason.BATCH_TOO_LARGE,
                f"a batch holds at most {MAX_BATCH_ITEMS} quotes",
                limit=str(MAX_BATCH_ITEMS),
            )
        bank = calling_bank()
        results: list[pb.QuoteResult] = [pb.QuoteResult()] * count
        asks: list[uc.QuoteAsk] = []
        positions: list[int] = []
        for index, msg in enumerate(request.quotes):
            which = msg.WhichOneof("amount")
            if which is None:
                missing = InvalidArgument(
                    Reason.MISSING_FIELD, "give source_amount or target_amount", field="amount"
                )
                results[index] = _quote_error(missing)
                continue
            asks.append(
                uc.QuoteAsk(
                    msg.source_currency,
                    msg.target_currency,
                    source_amount=msg.source_amount if which == "source_amount" else None,
                    target_amount=msg.target_amount if which == "target_amount" else None,
                    provider=msg.provider or None,
                )
            )
            positions.append(index)
        outcomes = await asyncio.to_thread(uc.create_quotes, self.db, self.config, bank, asks)
        issued_at: dict[int, Quote] = {}
        for index, outcome in zip(positions, outcomes, strict=True):
            if isinstance(outcome, RemitnetError):
                results[index] = _quote_error(outcome)
            else:
                issued_at[index] = outcome
        issued = len(issued_at)
        self.observer.observe(
            QuotesAnswered.of(
                issued, (results[i].error.reason for i in range(count) if i not in issued_at)
            )
        )
        answer = pb.CreateQuotesResponse(issued_count=issued, refused_count=count - issued)
        stamps: dict[datetime, Timestamp] = {}
        for index in range(count):
            quote = issued_at.get(index)
            if quote is None:
                answer.results.append(results[index])
            else:
                fill_quote(answer.results.add().quote, quote, stamps)
        return answer

    async def GetQuote(self, request: pb.GetQuoteRequest, context: Context) -> pb.GetQuoteResponse:
        quote = await asyncio.to_thread(
            uc.get_quote, self.db, current_principal().bank, request.quote_id
        )
        return pb.GetQuoteResponse(quote=quote_message(quote))
