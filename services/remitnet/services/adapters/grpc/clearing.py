from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from remitnet.clearing.v1 import clearing_pb2 as pb
from remitnet.clearing.v1 import clearing_pb2_grpc as pb_grpc
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.grpc import convert, limits
from remitnet.services.adapters.grpc.errors import item_error
from remitnet.services.adapters.grpc.identity import calling_bank
from remitnet.services.domain.errors import InvalidArgument, Reason, RemitnetError
from remitnet.services.domain.model import Instruction, TransferStatus, make_instruction
from remitnet.services.domain.netting import Accepted, Outcome, Rejected
from remitnet.services.service_layer import clearing as uc
from remitnet.services.service_layer import watch
from remitnet.services.service_layer.engine import NettingEngine
from remitnet.services.service_layer.gross import commit_gross
from remitnet.services.service_layer.results import (
    NO_OBSERVER,
    GrossSettled,
    Observer,
    TransfersRefused,
    WatchRefused,
    WatchSent,
    WatchStream,
)

log = logging.getLogger(__name__)


# Items converted between yields to the event loop: a 10,000-item request
# must not hold the loop (and every other bank's calls) for its whole parse.
YIELD_EVERY = 500


Context = grpc.aio.ServicerContext[Any, Any]

# Items per SubmitTransfers call: sized so that the largest legal request
# and its answer fit the 4 MiB every gRPC stack accepts (limits.py).
MAX_BATCH_ITEMS = limits.MAX_BATCH_ITEMS


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


def _since(request: pb.WatchTransfersRequest) -> datetime:
    try:
        return request.since.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidArgument(
            Reason.INVALID_TIMESTAMP,
            "since must be a valid Timestamp between 0001-01-01 and 9999-12-31",
            field="since",
        ) from None


def _watch_message(
    items: list[watch.Item], stamps: dict[datetime, Timestamp]
) -> pb.WatchTransfersResponse:
    """The items of one event share its time, and a batch's transfers were
    accepted at that time too: `stamps` converts each time once."""
    message = pb.WatchTransfersResponse()
    add = message.events.add
    for item in items:
        event = add()
        event.resume_token = item.token
        stamp = stamps.get(item.at)
        if stamp is None:
            if len(stamps) > 1_000:
                stamps.clear()
            stamp = stamps[item.at] = Timestamp()
            stamp.FromDatetime(item.at)
        event.at.CopyFrom(stamp)
        if item.transfer is not None:
            convert.fill_transfer(event.transfer, item.transfer, item.status, stamps)
        elif item.cycle is not None:
            cycle = event.cycle
            cycle.cycle_id = item.cycle.id
            cycle.currency = item.cycle.currency
            cycle.status = int(item.status)  # type: ignore[assignment]
    return message


def _gross(mode: int) -> bool:
    if mode not in (
        pb.SETTLEMENT_MODE_UNSPECIFIED,
        pb.SETTLEMENT_MODE_NETTED,
        pb.SETTLEMENT_MODE_GROSS,
    ):
        raise InvalidArgument(Reason.INVALID_ARGUMENT, f"unknown settlement_mode {mode}")
    return mode == pb.SETTLEMENT_MODE_GROSS


class ClearingServicer(pb_grpc.ClearingServiceServicer):
    def __init__(
        self,
        db: Database,
        engine: NettingEngine,
        feed: watch.FeedReader,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self.db = db
        self.engine = engine
        self.feed = feed
        # What the servicer decides itself (refusals before the engine, gross
        # outcomes, watch streams) goes to the observer; the engine reports
        # what it decides to its own, the same one in the server.
        self.observer = observer

    async def SubmitTransfer(
        self, request: pb.SubmitTransferRequest, context: Context
    ) -> pb.SubmitTransferResponse:
        debtor = calling_bank()
        try:
            if not request.HasField("transfer"):
                raise InvalidArgument(
                    Reason.MISSING_FIELD, "transfer is required", field="transfer"
                )
            instruction = _instruction(debtor, request.transfer)
        except RemitnetError as err:
            self.observer.observe(TransfersRefused.of([err]))  # refused before the engine
            raise
        if instruction.gross:
            outcome = await asyncio.to_thread(commit_gross, self.db, instruction)
            self.observer.observe(GrossSettled(outcome))
        else:
            (outcome,) = await self.engine.submit([instruction])
        self.feed.poke()
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
            self.observer.observe(TransfersRefused({Reason.BATCH_TOO_LARGE: count}))
            raise InvalidArgument(
                Reason.BATCH_TOO_LARGE,
                f"a batch holds at most {MAX_BATCH_ITEMS} transfers",
                limit=str(MAX_BATCH_ITEMS),
            )
        debtor = calling_bank()
        # A bank past its queue bound is refused before its items are converted.
        self.engine.check_room(debtor, count)
        errors: dict[int, RemitnetError] = {}
        valid: list[Instruction] = []
        for index, msg in enumerate(request.transfers):
            try:
                valid.append(_instruction(debtor, msg))
            except RemitnetError as err:
                errors[index] = err
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
        # Refused here, before the engine (which reports what it decides).
        if errors:
            self.observer.observe(TransfersRefused.of(errors.values()))
        outcomes: list[Outcome] = await self.engine.submit(valid) if valid else []
        self.feed.poke()
        response = pb.SubmitTransfersResponse()
        add = response.results.add
        stamps: dict[datetime, Timestamp] = {}
        decided = iter(outcomes)
        accepted = 0
        for index, msg in enumerate(request.transfers):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            result = add()
            error = errors.get(index)
            outcome = next(decided) if error is None else None
            if isinstance(outcome, Accepted):
                accepted += 1
                result.transfer_id = outcome.transfer.transfer_id
                # Without remittance_info: the answer must not grow with it
                # (limits.py); GetTransfer returns it.
                convert.fill_transfer(
                    result.transfer,
                    outcome.transfer,
                    outcome.transfer.status,
                    stamps,
                    remittance_info=False,
                )
                result.replayed = outcome.replayed
                continue
            if isinstance(outcome, Rejected):
                error = outcome.error
            assert error is not None
            result.transfer_id = limits.echoed_id(msg.transfer_id)
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
        try:
            since = _since(request) if request.HasField("since") else None
            stream = await self.feed.open(
                calling_bank(), resume_token=request.resume_token, since=since
            )
        except RemitnetError as err:
            self.observer.observe(WatchRefused(err.reason))
            raise
        # Headers at once: a client sees the stream is up before any event.
        await context.send_initial_metadata(())
        stamps: dict[datetime, Timestamp] = {}
        self.observer.observe(WatchStream(opened=True))
        try:
            async for items in stream:
                yield _watch_message(items, stamps)
                self.observer.observe(WatchSent(len(items)))
        except asyncio.CancelledError:
            log.debug("WatchTransfers of %s cancelled by the client", calling_bank())
            raise
        finally:
            self.observer.observe(WatchStream(opened=False))
            await stream.aclose()

    async def CancelTransfer(
        self, request: pb.CancelTransferRequest, context: Context
    ) -> pb.CancelTransferResponse:
        view = await asyncio.to_thread(
            uc.cancel_transfer, self.db, calling_bank(), request.transfer_id
        )
        return pb.CancelTransferResponse(transfer=convert.transfer(view.transfer, view.status))
