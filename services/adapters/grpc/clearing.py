from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from remitnet.clearing.v1 import clearing_pb2 as pb
from remitnet.clearing.v1 import clearing_pb2_grpc as pb_grpc
from remitnet.services.adapters import metrics
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.grpc import convert
from remitnet.services.adapters.grpc.errors import item_error
from remitnet.services.adapters.grpc.identity import calling_bank
from remitnet.services.domain.errors import InvalidArgument, Reason, RemitnetError
from remitnet.services.domain.model import Instruction, TransferStatus, make_instruction
from remitnet.services.domain.netting import Accepted, Outcome, Rejected
from remitnet.services.service_layer import clearing as uc
from remitnet.services.service_layer import watch
from remitnet.services.service_layer.engine import NettingEngine
from remitnet.services.service_layer.gross import commit_gross


def record_gross(outcome: Outcome) -> None:
    if isinstance(outcome, Accepted):
        metrics.GROSS_TRANSFERS.labels("replayed" if outcome.replayed else "accepted").inc()
        if not outcome.replayed:
            metrics.TRANSFER_VALUE.labels(outcome.transfer.currency).inc(outcome.transfer.amount)
    else:
        metrics.GROSS_TRANSFERS.labels("rejected").inc()


Context = grpc.aio.ServicerContext[Any, Any]

MAX_BATCH_ITEMS = 10_000


def _instruction(debtor: str, msg: pb.TransferInstruction) -> Instruction:
    if not msg.HasField("amount"):
        raise InvalidArgument(Reason.MISSING_FIELD, "amount is required", field="amount")
    return make_instruction(
        transfer_id=msg.transfer_id,
        debtor=debtor,
        creditor=msg.creditor_bank,
        currency=msg.amount.currency,
        amount=msg.amount.minor_units,
        remittance_info=msg.remittance_info,
        quote_id=msg.quote_id,
        gross=_gross(msg.settlement_mode),
    )


def _gross(mode: int) -> bool:
    if mode not in (
        pb.SETTLEMENT_MODE_UNSPECIFIED,
        pb.SETTLEMENT_MODE_NETTED,
        pb.SETTLEMENT_MODE_GROSS,
    ):
        raise InvalidArgument(Reason.INVALID_ARGUMENT, f"unknown settlement_mode {mode}")
    return mode == pb.SETTLEMENT_MODE_GROSS


class ClearingServicer(pb_grpc.ClearingServiceServicer):
    def __init__(self, db: Database, engine: NettingEngine) -> None:
        self.db = db
        self.engine = engine

    async def SubmitTransfer(
        self, request: pb.SubmitTransferRequest, context: Context
    ) -> pb.SubmitTransferResponse:
        if not request.HasField("transfer"):
            raise InvalidArgument(Reason.MISSING_FIELD, "transfer is required", field="transfer")
        instruction = _instruction(calling_bank(), request.transfer)
        if instruction.gross:
            outcome = await asyncio.to_thread(commit_gross, self.db, instruction)
            record_gross(outcome)
        else:
            (outcome,) = await self.engine.submit([instruction])
        if isinstance(outcome, Accepted):
            return pb.SubmitTransferResponse(
                transfer=convert.transfer(outcome.transfer, outcome.transfer.status),
                replayed=outcome.replayed,
            )
        raise outcome.error

    async def SubmitTransfers(
        self, request: pb.SubmitTransfersRequest, context: Context
    ) -> pb.SubmitTransfersResponse:
        count = len(request.transfers)
        if count == 0:
            raise InvalidArgument(Reason.EMPTY_BATCH, "the batch holds no transfers")
        if count > MAX_BATCH_ITEMS:
            raise InvalidArgument(
                Reason.BATCH_TOO_LARGE, f"a batch holds at most {MAX_BATCH_ITEMS} transfers"
            )
        debtor = calling_bank()
        errors: dict[int, RemitnetError] = {}
        valid: list[Instruction] = []
        for index, msg in enumerate(request.transfers):
            try:
                valid.append(_instruction(debtor, msg))
            except RemitnetError as err:
                errors[index] = err
        outcomes: list[Outcome] = await self.engine.submit(valid) if valid else []
        response = pb.SubmitTransfersResponse()
        add = response.results.add
        stamps: dict[datetime, Timestamp] = {}
        decided = iter(outcomes)
        accepted = 0
        for index, msg in enumerate(request.transfers):
            result = add()
            error = errors.get(index)
            outcome = next(decided) if error is None else None
            if isinstance(outcome, Accepted):
                accepted += 1
                result.transfer_id = outcome.transfer.transfer_id
                convert.fill_transfer(
                    result.transfer, outcome.transfer, outcome.transfer.status, stamps
                )
                result.replayed = outcome.replayed
                continue
            if isinstance(outcome, Rejected):
                error = outcome.error
            assert error is not None
            result.transfer_id = msg.transfer_id
            result.error.CopyFrom(item_error(error))
        response.accepted_count = accepted
        response.rejected_count = count - accepted
        return response

    async def GetTransfer(
        self, request: pb.GetTransferRequest, context: Context
    ) -> pb.GetTransferResponse:
        view = await asyncio.to_thread(
            uc.get_transfer, self.db, calling_bank(), request.transfer_id
        )
        return pb.GetTransferResponse(transfer=convert.transfer(view.transfer, view.status))

    async def ListTransfers(
        self, request: pb.ListTransfersRequest, context: Context
    ) -> pb.ListTransfersResponse:
        status = None
        if request.status:
            try:
                status = TransferStatus(request.status)
            except ValueError:
                raise InvalidArgument(Reason.INVALID_ARGUMENT, "unknown status filter") from None
        views, token = await asyncio.to_thread(
            uc.list_transfers,
            self.db,
            calling_bank(),
            status=status,
            cycle_id=request.cycle_id,
            counterparty=request.counterparty_bank,
            page_token=request.page_token,
            page_size=convert.page_size(request.page_size),
        )
        return pb.ListTransfersResponse(
            transfers=[convert.transfer(v.transfer, v.status) for v in views],
            next_page_token=token,
        )

    async def WatchTransfers(
        self, request: pb.WatchTransfersRequest, context: Context
    ) -> AsyncIterator[pb.WatchTransfersResponse]:
        since = request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None
        async for event in watch.watch(
            self.db, calling_bank(), resume_token=request.resume_token, since=since
        ):
            token = watch.encode_token(event.at)
            at = convert.timestamp(event.at)
            if event.transfer is not None:
                yield pb.WatchTransfersResponse(
                    transfer=convert.transfer(event.transfer, event.status),
                    at=at,
                    resume_token=token,
                )
            elif event.cycle is not None:
                c = event.cycle
                yield pb.WatchTransfersResponse(
                    cycle=pb.CycleEvent(
                        cycle_id=c.id,
                        currency=c.currency,
                        status=int(event.status),  # type: ignore[arg-type]
                    ),
                    at=at,
                    resume_token=token,
                )

    async def CancelTransfer(
        self, request: pb.CancelTransferRequest, context: Context
    ) -> pb.CancelTransferResponse:
        view = await asyncio.to_thread(
            uc.cancel_transfer, self.db, calling_bank(), request.transfer_id
        )
        return pb.CancelTransferResponse(transfer=convert.transfer(view.transfer, view.status))
