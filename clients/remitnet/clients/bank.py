"""The client a partner bank uses: submit transfers, follow them, reconcile;
and the scheme lifecycle: confirm (accept or reject) the transfers that
await its confirmation, return transfers, recall them and answer recalls.

Reason codes are ISO 20022 external codes, four upper-case characters; each
method names the code set it takes (the hub lists the codes in its
UNKNOWN_REASON_CODE refusal, and clearing.proto documents them per call).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta

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

# A timeout as seconds or a timedelta.
Timeout = float | timedelta


def new_transfer_id() -> str:
    """A fresh UETR. Keep it with the payment so a retry reuses it."""
    return str(uuid.uuid4())


def new_id() -> str:
    """A fresh UUID for a return or a recall (its idempotency key). Keep it
    with the request so a retry reuses it."""
    return str(uuid.uuid4())


def set_confirmation(
    item: cpb.TransferInstruction,
    *,
    require_confirmation: bool = True,
    confirmation_timeout: Timeout | None = None,
) -> cpb.TransferInstruction:
    """Ask for the creditor's confirmation on `item` (in place; returned for
    chaining): the transfer is RESERVED until the creditor accepts or
    rejects it or its deadline passes. `confirmation_timeout` (seconds or a
    timedelta; None: the hub's default, 30 s unless its operator set
    another) is how long the creditor has, at most the hub's maximum
    (CONFIRMATION_TIMEOUT_OUT_OF_RANGE past it). Netted transfers only
    (GROSS_NOT_CONFIRMABLE)."""
    item.require_confirmation = require_confirmation
    if confirmation_timeout is not None:
        if not isinstance(confirmation_timeout, timedelta):
            confirmation_timeout = timedelta(seconds=confirmation_timeout)
        item.confirmation_timeout.FromTimedelta(confirmation_timeout)
    return item


def instruction(
    creditor: str,
    currency: str,
    minor_units: int,
    *,
    transfer_id: str | None = None,
    remittance_info: str = "",
    quote_id: str = "",
    gross: bool = False,
    require_confirmation: bool = False,
    confirmation_timeout: Timeout | None = None,
    purpose: str = "",
) -> cpb.TransferInstruction:
    """A transfer to submit. With `require_confirmation` (or a
    `confirmation_timeout`) it awaits the creditor's confirmation
    (`set_confirmation`); a creditor that requires confirmation (its
    operator setting) gets it in any case. `purpose` is an ISO 20022
    ExternalPurpose1Code (SALA, SUPP, ...; 1-4 upper-case letters or
    digits), kept with the transfer."""
    item = cpb.TransferInstruction(
        transfer_id=transfer_id or new_transfer_id(),
        creditor_bank=creditor,
        amount=Money(currency=currency, minor_units=minor_units),
        remittance_info=remittance_info,
        quote_id=quote_id,
        settlement_mode=cpb.SETTLEMENT_MODE_GROSS if gross else cpb.SETTLEMENT_MODE_NETTED,
        purpose=purpose,
    )
    if require_confirmation or confirmation_timeout is not None:
        set_confirmation(item, require_confirmation=True, confirmation_timeout=confirmation_timeout)
    return item


def acceptance(transfer_id: str) -> cpb.ConfirmTransferRequest:
    """The creditor's acceptance of a RESERVED transfer (for confirm_many)."""
    return cpb.ConfirmTransferRequest(
        transfer_id=transfer_id, decision=cpb.CONFIRMATION_DECISION_ACCEPT
    )


def rejection(transfer_id: str, reason: str) -> cpb.ConfirmTransferRequest:
    """The creditor's rejection of a RESERVED transfer (for confirm_many),
    with an ExternalStatusReason1Code such as AC01, AC04, AC06, AM05, BE01
    or RR04."""
    return cpb.ConfirmTransferRequest(
        transfer_id=transfer_id, decision=cpb.CONFIRMATION_DECISION_REJECT, reason=reason
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

    async def submit(
        self,
        item: cpb.TransferInstruction,
        *,
        require_confirmation: bool = False,
        confirmation_timeout: Timeout | None = None,
    ) -> cpb.SubmitTransferResponse:
        """Clear one transfer. Retries reuse the same transfer id, so a lost
        response never creates a second transfer.

        With `require_confirmation` (or a `confirmation_timeout`, seconds or
        a timedelta) the transfer awaits the creditor's confirmation, as it
        does anyway when the creditor requires it: the answer is RESERVED
        with its `confirmation_deadline`, the headroom held; the creditor
        accepts (ACCEPTED, netted) or rejects it (REJECTED), or the hub
        expires it at the deadline (EXPIRED, reason AB05). Follow it with
        `watch()` or `get()`; cancel it while it is still RESERVED with
        `cancel()`. `item` itself is not changed."""
        if require_confirmation or confirmation_timeout is not None:
            copy = cpb.TransferInstruction()
            copy.CopyFrom(item)
            item = set_confirmation(
                copy, require_confirmation=True, confirmation_timeout=confirmation_timeout
            )
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
        kind: cpb.TransferKind.ValueType = cpb.TRANSFER_KIND_UNSPECIFIED,
        returned_only: bool = False,
        recall_state: cpb.RecallState.ValueType = cpb.RECALL_STATE_UNSPECIFIED,
        page_size: int = 100,
        page_token: str = "",
    ) -> cpb.ListTransfersResponse:
        """One page of the transfers this bank is debtor or creditor of,
        newest first. The filters combine (all must hold); unset means any:
        `status` any TransferStatus (RESERVED: awaiting confirmation,
        REJECTED, EXPIRED among them), `kind` payments or returns,
        `returned_only` transfers that were returned, `recall_state` those
        whose recall is in that state (REQUESTED: awaiting the creditor's
        answer). Each transfer carries its recall, if it has one."""
        return await self.call(
            self.clearing.ListTransfers,
            cpb.ListTransfersRequest(
                status=status,
                cycle_id=cycle_id,
                counterparty_bank=counterparty,
                kind=kind,
                returned_only=returned_only,
                recall_state=recall_state,
                page_size=page_size,
                page_token=page_token,
            ),
        )

    async def list_transfers(
        self,
        *,
        status: cpb.TransferStatus.ValueType = cpb.TRANSFER_STATUS_UNSPECIFIED,
        cycle_id: str = "",
        counterparty: str = "",
        kind: cpb.TransferKind.ValueType = cpb.TRANSFER_KIND_UNSPECIFIED,
        returned_only: bool = False,
        recall_state: cpb.RecallState.ValueType = cpb.RECALL_STATE_UNSPECIFIED,
        limit: int | None = None,
    ) -> builtins.list[cpb.Transfer]:
        """Every transfer matching the filters of `list()`, all pages (or the
        newest `limit`), newest first."""
        found: builtins.list[cpb.Transfer] = []
        token = ""
        while limit is None or len(found) < limit:
            size = 1000 if limit is None else min(1000, limit - len(found))
            page = await self.list(
                status=status,
                cycle_id=cycle_id,
                counterparty=counterparty,
                kind=kind,
                returned_only=returned_only,
                recall_state=recall_state,
                page_size=size,
                page_token=token,
            )
            found += page.transfers
            token = page.next_page_token
            if not token:
                break
        return found

    async def awaiting_confirmation(self) -> builtins.list[cpb.Transfer]:
        """The RESERVED transfers this bank is creditor of: those it must
        accept or reject before their confirmation_deadline (oldest
        deadline first)."""
        reserved = await self.list_transfers(status=cpb.TRANSFER_STATUS_RESERVED)
        mine = [t for t in reserved if t.creditor_bank == self.bank_code]
        return sorted(mine, key=lambda t: t.confirmation_deadline.ToNanoseconds())

    async def open_recalls(self) -> builtins.list[cpb.Transfer]:
        """The transfers this bank received whose recall awaits its answer
        (recall REQUESTED): answer each with `answer_recall()` before its
        recall.deadline."""
        asked = await self.list_transfers(recall_state=cpb.RECALL_STATE_REQUESTED)
        return [t for t in asked if t.creditor_bank == self.bank_code]

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
        """Cancel a transfer this bank sent that still awaits the creditor's
        confirmation (RESERVED): CANCELLED, its reservation released. Once
        the creditor has it (netted) the hub refuses with
        TRANSFER_NOT_CANCELLABLE: ask for it back with `recall()`."""
        response = await self.call(
            self.clearing.CancelTransfer, cpb.CancelTransferRequest(transfer_id=transfer_id)
        )
        return response.transfer

    # -- payee confirmation (as the creditor) --------------------------------

    async def confirm(
        self, transfer_id: str, *, accept: bool = True, reason: str = ""
    ) -> cpb.ConfirmTransferResponse:
        """Answer a RESERVED transfer this bank is creditor of: accept it
        (netted into the open cycle: ACCEPTED) or, with accept=False, reject
        it with `reason`, an ExternalStatusReason1Code (AC01, AC04, AC06,
        AM05, BE01, RR04, ...): REJECTED, the debtor's reservation released.
        The same answer again is a replay (`replayed`); after the deadline
        the hub refuses with TRANSFER_EXPIRED, after the other answer with
        TRANSFER_ALREADY_ACCEPTED or TRANSFER_REJECTED."""
        request = acceptance(transfer_id) if accept else rejection(transfer_id, reason)
        return await self.call(self.clearing.ConfirmTransfer, request)

    async def reject(self, transfer_id: str, reason: str) -> cpb.ConfirmTransferResponse:
        """`confirm(transfer_id, accept=False, reason=reason)`."""
        return await self.confirm(transfer_id, accept=False, reason=reason)

    async def confirm_many(
        self, answers: Sequence[cpb.ConfirmTransferRequest], *, deadline_s: float = 60.0
    ) -> cpb.ConfirmTransfersResponse:
        """Up to MAX_BATCH_ITEMS answers (`acceptance(id)`,
        `rejection(id, reason)`) in one call, a result per answer in order:
        each a transfer as answered or an ItemError. Items are independent;
        retrying the whole call is safe (a repeated answer is a replay)."""
        return await self.call(
            self.clearing.ConfirmTransfers,
            cpb.ConfirmTransfersRequest(confirmations=answers),
            deadline_s=deadline_s,
        )

    # -- returns and recalls -------------------------------------------------

    async def return_transfer(
        self,
        transfer_id: str,
        reason: str,
        *,
        return_id: str | None = None,
        quote_id: str = "",
        remittance_info: str = "",
    ) -> cpb.ReturnTransferResponse:
        """Return a transfer this bank received (pacs.004), whole: a new
        transfer `return_id` (new if None; pass the same one to retry) from
        this bank back to the original debtor, of what this bank received,
        netted at once, its `return_of_transfer_id` the original. `reason`
        is an ExternalReturnReason1Code (AC01, AC04, AC06, AM05, BE04,
        FOCR, MD07, MS02, MS03, ...). A converted transfer needs a NEW quote
        for the way back (`return_quote()`; without one RETURN_QUOTE_REQUIRED),
        a same-currency one none. A transfer is returned at most once
        (ALREADY_RETURNED)."""
        request = cpb.ReturnTransferRequest(
            return_id=return_id or new_id(),
            transfer_id=transfer_id,
            reason=reason,
            quote_id=quote_id,
            remittance_info=remittance_info,
        )
        return await self.call(self.clearing.ReturnTransfer, request)

    async def return_quote(self, original: cpb.Transfer, *, provider: str = "") -> fxpb.Quote:
        """The quote a cross-currency return needs: selling what this bank
        received (the original's creditor_amount) back into the original's
        currency, at today's rate (not the original's: see ReturnTransfer in
        clearing.proto)."""
        received = original.creditor_amount
        return await self.quote(
            received.currency,
            original.amount.currency,
            source_amount=received.minor_units,
            provider=provider,
        )

    async def recall(
        self,
        transfer_id: str,
        reason: str,
        *,
        recall_id: str | None = None,
        additional_info: str = "",
    ) -> cpb.RecallTransferResponse:
        """Ask the creditor for a transfer this bank sent back (camt.056):
        the recall is REQUESTED until the creditor answers it or the hub's
        recall window (24 h by default) passes (EXPIRED). `reason` is an
        ExternalCancellationReason1Code (DUPL, FRAD, TECH, CUST, AC03, AM09,
        ...), `additional_info` at most 105 characters. Idempotent on
        `recall_id` (new if None); one recall per transfer (RECALL_EXISTS)."""
        request = cpb.RecallTransferRequest(
            recall_id=recall_id or new_id(),
            transfer_id=transfer_id,
            reason=reason,
            additional_info=additional_info,
        )
        return await self.call(self.clearing.RecallTransfer, request)

    async def answer_recall(
        self,
        transfer_id: str,
        *,
        accept: bool,
        reason: str = "",
        return_id: str | None = None,
        quote_id: str = "",
    ) -> cpb.AnswerRecallResponse:
        """Answer the recall of a transfer this bank received (camt.029).
        accept=True returns the transfer (reason FOCR; `return_id` new if
        None, a new `quote_id` across currencies, as `return_transfer`): the
        recall is ACCEPTED and the answer carries the return. accept=False
        rejects it with `reason`, an ExternalPaymentCancellationRejection1Code
        (AC04, AGNT, AM04, ARDT, CUST, LEGL, NOAS, NOOR): nothing moves."""
        if accept:
            request = cpb.AnswerRecallRequest(
                transfer_id=transfer_id,
                decision=cpb.RECALL_DECISION_ACCEPT,
                return_id=return_id or new_id(),
                quote_id=quote_id,
            )
        else:
            request = cpb.AnswerRecallRequest(
                transfer_id=transfer_id, decision=cpb.RECALL_DECISION_REJECT, reason=reason
            )
        return await self.call(self.clearing.AnswerRecall, request)

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
