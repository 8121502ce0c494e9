from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from remitnet.clearing.v1 import clearing_pb2 as pb
from remitnet.clearing.v1 import clearing_pb2_grpc as pb_grpc
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.grpc import convert, limits
from remitnet.services.adapters.grpc.errors import item_error
from remitnet.services.adapters.grpc.identity import calling_bank
from remitnet.services.adapters.grpc.refusals import refusals_counted
from remitnet.services.domain.errors import (
    InvalidArgument,
    Reason,
    RemitnetError,
)
from remitnet.services.domain.lifecycle import (
    RECALL_RETURN_REASON,
    Confirmation,
    RecallState,
    make_confirmation,
    make_recall,
    make_return,
)
from remitnet.services.domain.model import Instruction, TransferStatus, make_instruction
from remitnet.services.domain.netting import Accepted, Outcome, Rejected
from remitnet.services.service_layer import clearing as uc
from remitnet.services.service_layer import lifecycle, watch
from remitnet.services.service_layer.coalesce import Coalescer
from remitnet.services.service_layer.engine import NettingEngine
from remitnet.services.service_layer.gross import commit_gross
from remitnet.services.service_layer.lifecycle import ConfirmCall, Confirmed, LifecycleConfig
from remitnet.services.service_layer.results import (
    NO_OBSERVER,
    ConfirmationsAnswered,
    GrossSettled,
    LifecycleRefused,
    Observer,
    RecallChanged,
    ReturnsCleared,
    TransferCancelled,
    TransfersRefused,
    WatchRefused,
    WatchSent,
    WatchStream,
)

log = logging.getLogger(__name__)


# Items converted between yields to the event loop: a 10,000-item request
# must not hold the loop (and every other bank's calls) for its whole parse.
YIELD_EVERY = 500

# Answers one confirmation transaction takes from the waiting calls: as
# large as a submitted batch, so a group costs about what a batch does.
CONFIRM_GROUP_ITEMS = 10_000


Context = grpc.aio.ServicerContext[Any, Any]

# Items per SubmitTransfers call: sized so that the largest legal request
# and its answer fit the 4 MiB every gRPC stack accepts (limits.py).
MAX_BATCH_ITEMS = limits.MAX_BATCH_ITEMS


def _instruction(debtor: str, msg: pb.TransferInstruction, max_timeout_ms: int) -> Instruction:
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
        confirm=msg.require_confirmation,
        timeout_ms=_timeout_ms(msg) if msg.HasField("confirmation_timeout") else 0,
        max_timeout_ms=max_timeout_ms,
        purpose=msg.purpose,
    )


def _timeout_ms(msg: pb.TransferInstruction) -> int:
    """confirmation_timeout in whole milliseconds, finer rounded up (a
    positive timeout never becomes zero, the hub's default); a negative one
    stays negative, for `make_instruction` to refuse."""
    nanos = msg.confirmation_timeout.ToNanoseconds()
    if nanos > 0:
        return -(-nanos // 1_000_000)
    return -1 if nanos < 0 else 0


_DECISIONS = {pb.CONFIRMATION_DECISION_ACCEPT: True, pb.CONFIRMATION_DECISION_REJECT: False}


def _confirmation(msg: pb.ConfirmTransferRequest) -> Confirmation:
    accept = _DECISIONS.get(msg.decision)
    if accept is None:
        raise InvalidArgument(
            Reason.INVALID_ARGUMENT,
            f"decision must be ACCEPT or REJECT, got {msg.decision}",
            field="decision",
        )
    return make_confirmation(msg.transfer_id, accept, msg.reason)


_KINDS = {
    pb.TRANSFER_KIND_UNSPECIFIED: "",
    pb.TRANSFER_KIND_PAYMENT: "payment",
    pb.TRANSFER_KIND_RETURN: "return",
}


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
        if len(stamps) > 1_000:
            stamps.clear()
        event.at.CopyFrom(convert.shared_stamp(stamps, item.at))
        if item.recall is not None:
            convert.fill_recall(event.recall, item.recall, stamps)
        elif item.transfer is not None:
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
        lifecycle: LifecycleConfig | None = None,
    ) -> None:
        self.db = db
        self.engine = engine
        self.feed = feed
        self.lifecycle = lifecycle or LifecycleConfig()
        # What the servicer decides itself (refusals before the engine, gross
        # outcomes, watch streams) goes to the observer; the engine reports
        # what it decides to its own, the same one in the server.
        self.observer = observer
        # Confirmations from every creditor, gathered while one group's
        # transaction runs (a bank answers a few dozen at a time).
        self._confirm_group: Coalescer[ConfirmCall, Confirmed] = Coalescer(
            self._confirm_calls,
            size=lambda call: len(call[1]),
            max_items=CONFIRM_GROUP_ITEMS,
        )

    async def SubmitTransfer(
        self, request: pb.SubmitTransferRequest, context: Context
    ) -> pb.SubmitTransferResponse:
        debtor = calling_bank()
        try:
            if not request.HasField("transfer"):
                raise InvalidArgument(
                    Reason.MISSING_FIELD, "transfer is required", field="transfer"
                )
            instruction = _instruction(debtor, request.transfer, self.lifecycle.max_timeout_ms)
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
        most = self.lifecycle.max_timeout_ms
        for index, msg in enumerate(request.transfers):
            try:
                valid.append(_instruction(debtor, msg, most))
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
        return pb.GetTransferResponse(
            transfer=convert.transfer(view.transfer, view.status, view.recall)
        )

    async def ListTransfers(
        self, request: pb.ListTransfersRequest, context: Context
    ) -> pb.ListTransfersResponse:
        status = None
        if request.status:
            try:
                status = TransferStatus(request.status)
            except ValueError:
                raise InvalidArgument(
                    Reason.INVALID_ARGUMENT, "unknown status filter", field="status"
                ) from None
        kind = _KINDS.get(request.kind)
        if kind is None:
            raise InvalidArgument(Reason.INVALID_ARGUMENT, "unknown kind filter", field="kind")
        recall_state = None
        if request.recall_state:
            try:
                recall_state = RecallState(request.recall_state)
            except ValueError:
                raise InvalidArgument(
                    Reason.INVALID_ARGUMENT, "unknown recall_state filter", field="recall_state"
                ) from None
        views, token = await asyncio.to_thread(
            uc.list_transfers,
            self.db,
            calling_bank(),
            status=status,
            cycle_id=request.cycle_id,
            counterparty=request.counterparty_bank,
            page_token=request.page_token,
            page_size=convert.page_size(request.page_size),
            kind=kind,
            returned=True if request.returned_only else None,
            recall_state=recall_state,
        )
        return pb.ListTransfersResponse(
            transfers=[convert.transfer(v.transfer, v.status, v.recall) for v in views],
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

    @refusals_counted("cancel")
    async def CancelTransfer(
        self, request: pb.CancelTransferRequest, context: Context
    ) -> pb.CancelTransferResponse:
        # On the netting thread: releasing a reservation writes the account
        # rows the batches write.
        started = datetime.now(UTC)
        view = await self.engine.run_serial(
            partial(uc.cancel_transfer, self.db, calling_bank(), request.transfer_id)
        )
        self.feed.poke()
        self.observer.observe(TransferCancelled.of(view.transfer, operator=False, started=started))
        return pb.CancelTransferResponse(transfer=convert.transfer(view.transfer, view.status))

    async def _confirm_calls(self, calls: Sequence[ConfirmCall]) -> list[Confirmed]:
        confirmed = await self.engine.run_serial(partial(lifecycle.confirm_many, self.db, calls))
        self.feed.poke()
        return confirmed

    async def _confirm(self, caller: str, answers: Sequence[Confirmation]) -> Confirmed:
        return await self._confirm_group((caller, answers))

    @refusals_counted("confirm")
    async def ConfirmTransfer(
        self, request: pb.ConfirmTransferRequest, context: Context
    ) -> pb.ConfirmTransferResponse:
        caller = calling_bank()
        confirmed = await self._confirm(caller, [_confirmation(request)])
        (outcome,) = confirmed.outcomes
        if isinstance(outcome, Rejected):
            if confirmed.expired:  # the reservation ended here
                self.observer.observe(ConfirmationsAnswered([], confirmed.expired))
            raise outcome.error  # counted as it is raised
        self.observer.observe(ConfirmationsAnswered([outcome]))
        t = outcome.transfer
        return pb.ConfirmTransferResponse(
            transfer=convert.transfer(t, t.status), replayed=outcome.replayed
        )

    async def ConfirmTransfers(
        self, request: pb.ConfirmTransfersRequest, context: Context
    ) -> pb.ConfirmTransfersResponse:
        count = len(request.confirmations)
        if count == 0:
            raise InvalidArgument(Reason.EMPTY_BATCH, "the batch holds no confirmations")
        if count > MAX_BATCH_ITEMS:
            raise InvalidArgument(
                Reason.BATCH_TOO_LARGE,
                f"a batch holds at most {MAX_BATCH_ITEMS} confirmations",
                limit=str(MAX_BATCH_ITEMS),
            )
        caller = calling_bank()
        errors: dict[int, RemitnetError] = {}
        valid: list[Confirmation] = []
        for index, msg in enumerate(request.confirmations):
            try:
                valid.append(_confirmation(msg))
            except RemitnetError as err:
                errors[index] = err
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
        if errors:  # refused here, before the use case
            self.observer.observe(LifecycleRefused.of("confirm", errors.values()))
        confirmed = await self._confirm(caller, valid) if valid else Confirmed([])
        outcomes = confirmed.outcomes
        self.observer.observe(ConfirmationsAnswered(outcomes, confirmed.expired))
        response = pb.ConfirmTransfersResponse()
        add = response.results.add
        stamps: dict[datetime, Timestamp] = {}
        decided = iter(outcomes)
        answered = 0
        for index, msg in enumerate(request.confirmations):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            result = add()
            error = errors.get(index)
            outcome = next(decided) if error is None else None
            if isinstance(outcome, Accepted):
                answered += 1
                t = outcome.transfer
                result.transfer_id = t.transfer_id
                convert.fill_transfer(result.transfer, t, t.status, stamps, remittance_info=False)
                result.replayed = outcome.replayed
                continue
            if isinstance(outcome, Rejected):
                error = outcome.error
            assert error is not None
            result.transfer_id = limits.echoed_id(msg.transfer_id)
            result.error.CopyFrom(item_error(error))
        response.accepted_count = answered
        response.rejected_count = count - answered
        return response

    @refusals_counted("return")
    async def ReturnTransfer(
        self, request: pb.ReturnTransferRequest, context: Context
    ) -> pb.ReturnTransferResponse:
        caller = calling_bank()
        item = make_return(
            request.return_id,
            request.transfer_id,
            request.reason,
            request.quote_id,
            request.remittance_info,
        )
        returns = await self.engine.run_serial(
            partial(
                lifecycle.return_transfers,
                self.db,
                caller,
                [item],
                default_timeout_ms=self.lifecycle.default_timeout_ms,
            )
        )
        self.feed.poke()
        (outcome,) = returns.outcomes
        if isinstance(outcome, Rejected):
            raise outcome.error  # counted as it is raised
        self.observer.observe(ReturnsCleared([outcome], returns.recalls))
        t = outcome.transfer
        return pb.ReturnTransferResponse(
            return_transfer=convert.transfer(t, t.status), replayed=outcome.replayed
        )

    @refusals_counted("recall")
    async def RecallTransfer(
        self, request: pb.RecallTransferRequest, context: Context
    ) -> pb.RecallTransferResponse:
        caller = calling_bank()
        item = make_recall(
            request.recall_id, request.transfer_id, request.reason, request.additional_info
        )
        recall, replayed = await self.engine.run_serial(
            partial(
                lifecycle.recall_transfer,
                self.db,
                caller,
                item,
                window_s=self.lifecycle.recall_window_s,
            )
        )
        self.feed.poke()
        self.observer.observe(RecallChanged(recall, replayed))
        return pb.RecallTransferResponse(recall=convert.recall(recall), replayed=replayed)

    @refusals_counted("answer_recall")
    async def AnswerRecall(
        self, request: pb.AnswerRecallRequest, context: Context
    ) -> pb.AnswerRecallResponse:
        caller = calling_bank()
        decision = request.decision
        if decision == pb.RECALL_DECISION_ACCEPT:
            if request.reason:
                raise InvalidArgument(
                    Reason.INVALID_ARGUMENT,
                    f"an accepted recall is returned with reason {RECALL_RETURN_REASON}; "
                    "it carries no reason of its own",
                    field="reason",
                )
            item = make_return(
                request.return_id, request.transfer_id, RECALL_RETURN_REASON, request.quote_id
            )
            recall, outcome = await self.engine.run_serial(
                partial(
                    lifecycle.accept_recall,
                    self.db,
                    caller,
                    item,
                    default_timeout_ms=self.lifecycle.default_timeout_ms,
                )
            )
            self.feed.poke()
            assert isinstance(outcome, Accepted)
            t = outcome.transfer
            self.observer.observe(RecallChanged(recall, outcome.replayed, returned=t))
            return pb.AnswerRecallResponse(
                recall=convert.recall(recall),
                return_transfer=convert.transfer(t, t.status),
                replayed=outcome.replayed,
            )
        if decision != pb.RECALL_DECISION_REJECT:
            raise InvalidArgument(
                Reason.INVALID_ARGUMENT,
                f"decision must be ACCEPT or REJECT, got {decision}",
                field="decision",
            )
        for field, value in (("return_id", request.return_id), ("quote_id", request.quote_id)):
            if value:
                raise InvalidArgument(
                    Reason.INVALID_ARGUMENT, f"a rejected recall takes no {field}", field=field
                )
        started = datetime.now(UTC)
        recall = await self.engine.run_serial(
            partial(lifecycle.reject_recall, self.db, caller, request.transfer_id, request.reason)
        )
        self.feed.poke()
        # A rejection given before is answered as it was (its time is earlier).
        replayed = recall.answered_at is not None and recall.answered_at < started
        self.observer.observe(RecallChanged(recall, replayed))
        return pb.AnswerRecallResponse(recall=convert.recall(recall), replayed=replayed)
