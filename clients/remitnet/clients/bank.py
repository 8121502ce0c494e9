"""The client a partner bank uses: submit transfers, follow them, reconcile."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clearing.v1 import clearing_pb2_grpc as cgrpc
from remitnet.clients.base import MAX_BATCH_ITEMS, ClientConfig, HubClient
from remitnet.common.v1.money_pb2 import Money
from remitnet.fx.v1 import fx_pb2 as fxpb
from remitnet.fx.v1 import fx_pb2_grpc as fxgrpc
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.netting.v1 import netting_pb2_grpc as ngrpc
from remitnet.settlement.v1 import settlement_pb2 as spb
from remitnet.settlement.v1 import settlement_pb2_grpc as sgrpc


def new_transfer_id() -> str:
    """A fresh UETR. Keep it with the payment so a retry reuses it."""
    return str(uuid.uuid4())


def instruction(
    creditor: str,
    currency: str,
    minor_units: int,
    *,
    transfer_id: str | None = None,
    remittance_info: str = "",
    quote_id: str = "",
    gross: bool = False,
) -> cpb.TransferInstruction:
    return cpb.TransferInstruction(
        transfer_id=transfer_id or new_transfer_id(),
        creditor_bank=creditor,
        amount=Money(currency=currency, minor_units=minor_units),
        remittance_info=remittance_info,
        quote_id=quote_id,
        settlement_mode=cpb.SETTLEMENT_MODE_GROSS if gross else cpb.SETTLEMENT_MODE_NETTED,
    )


class BankClient(HubClient):
    def __init__(self, bank_code: str, config: ClientConfig | None = None) -> None:
        super().__init__(f"bank:{bank_code}", config)
        self.bank_code = bank_code
        self.clearing = cgrpc.ClearingServiceStub(self.channel)
        self.netting = ngrpc.NettingServiceStub(self.channel)
        self.settlement = sgrpc.SettlementServiceStub(self.channel)
        self.fx = fxgrpc.FxServiceStub(self.channel)

    async def quote(
        self,
        source_currency: str,
        target_currency: str,
        *,
        source_amount: int | None = None,
        target_amount: int | None = None,
        provider: str = "",
    ) -> fxpb.Quote:
        """A locked, single-use FX quote; pass its quote_id with the transfer.
        From `provider`, or (empty) the best price of the FX providers that
        quote the pair and can deliver the amount; the quote names its
        provider (`Quote.provider`)."""
        request = fxpb.CreateQuoteRequest(
            source_currency=source_currency, target_currency=target_currency, provider=provider
        )
        if source_amount is not None:
            request.source_amount = source_amount
        if target_amount is not None:
            request.target_amount = target_amount
        response = await self.call(self.fx.CreateQuote, request)
        return response.quote

    async def quotes(
        self, asks: Sequence[fxpb.CreateQuoteRequest], *, deadline_s: float = 60.0
    ) -> fxpb.CreateQuotesResponse:
        """Many quotes in one call, a result per ask in order (each ask may
        name its provider). Retrying is safe: a quote not used expires, and
        nothing is charged for it."""
        return await self.call(
            self.fx.CreateQuotes,
            fxpb.CreateQuotesRequest(quotes=asks),
            deadline_s=deadline_s,
        )

    async def submit(self, item: cpb.TransferInstruction) -> cpb.SubmitTransferResponse:
        """Clear one transfer. Retries reuse the same transfer id, so a lost
        response never creates a second transfer."""
        return await self.call(
            self.clearing.SubmitTransfer, cpb.SubmitTransferRequest(transfer=item)
        )

    async def submit_batch(
        self, items: Sequence[cpb.TransferInstruction], *, deadline_s: float = 60.0
    ) -> cpb.SubmitTransfersResponse:
        return await self.call(
            self.clearing.SubmitTransfers,
            cpb.SubmitTransfersRequest(transfers=items),
            deadline_s=deadline_s,
        )

    async def get(self, transfer_id: str) -> cpb.Transfer:
        response = await self.call(
            self.clearing.GetTransfer, cpb.GetTransferRequest(transfer_id=transfer_id)
        )
        return response.transfer

    async def list(
        self,
        *,
        status: cpb.TransferStatus.ValueType = cpb.TRANSFER_STATUS_UNSPECIFIED,
        cycle_id: str = "",
        counterparty: str = "",
        page_size: int = 100,
        page_token: str = "",
    ) -> cpb.ListTransfersResponse:
        return await self.call(
            self.clearing.ListTransfers,
            cpb.ListTransfersRequest(
                status=status,
                cycle_id=cycle_id,
                counterparty_bank=counterparty,
                page_size=page_size,
                page_token=page_token,
            ),
        )

    async def watch(
        self, resume_token: str = "", *, since: datetime | None = None
    ) -> AsyncIterator[cpb.StatusEvent]:
        """Status changes of this bank's transfers, one event at a time,
        exactly once across reconnects: keep the resume_token of the last
        event processed and pass it back after a disconnect. No deadline:
        the stream is open-ended."""
        request = cpb.WatchTransfersRequest(resume_token=resume_token)
        if since is not None:
            request.since.FromDatetime(since)
        call = self.clearing.WatchTransfers(request, metadata=self._metadata)
        try:
            async for message in call:
                for event in message.events:
                    yield event
        finally:
            # A consumer that stops early (break, aclose) ends the call too:
            # the hub frees the stream instead of writing into a full window.
            call.cancel()

    async def cancel(self, transfer_id: str) -> cpb.Transfer:
        response = await self.call(
            self.clearing.CancelTransfer, cpb.CancelTransferRequest(transfer_id=transfer_id)
        )
        return response.transfer

    async def statement(self, currency: str, after_sequence: int = 0) -> spb.GetStatementResponse:
        return await self.call(
            self.settlement.GetStatement,
            spb.GetStatementRequest(
                bank_code=self.bank_code, currency=currency, after_sequence=after_sequence
            ),
        )

    async def position(self, currency: str = "") -> npb.GetPositionResponse:
        """This bank's position per currency (or in one): balance, net debit
        cap, unsettled net, headroom (what it can send now) and its totals in
        the open cycle. Size a payment on `headroom` before sending it."""
        return await self.call(self.netting.GetPosition, npb.GetPositionRequest(currency=currency))

    async def submit_batches(
        self, items: Sequence[cpb.TransferInstruction], *, deadline_s: float = 60.0
    ) -> tuple[cpb.SubmitTransfersResponse, ...]:
        """Any number of transfers, sent as SubmitTransfers calls of at most
        MAX_BATCH_ITEMS (the hub's documented limit), one response each, in
        order."""
        return tuple(
            [
                await self.submit_batch(items[i : i + MAX_BATCH_ITEMS], deadline_s=deadline_s)
                for i in range(0, len(items), MAX_BATCH_ITEMS)
            ]
        )

    async def cycle(self, cycle_id: str) -> npb.Cycle:
        response = await self.call(self.netting.GetCycle, npb.GetCycleRequest(cycle_id=cycle_id))
        return response.cycle

    async def audit_chain_head(self, cycle_id: str) -> npb.AuditChainHead | None:
        """The hub's operator audit trail head as the settlement of
        `cycle_id` left it (sequence and hash), or None while the cycle is
        not settled. Keep it with the cycle's statement: the hub answering
        another value for the same cycle later (compare with ==), or
        `remitnet audit verify --anchor SEQUENCE:HASH` failing on it, shows
        the trail was rewritten after the fact."""
        cycle = await self.cycle(cycle_id)
        return cycle.audit_chain_head if cycle.HasField("audit_chain_head") else None
