from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import partial
from typing import Any

import grpc

from remitnet.netting.v1 import netting_pb2 as pb
from remitnet.netting.v1 import netting_pb2_grpc as pb_grpc
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.grpc import convert
from remitnet.services.adapters.grpc.identity import current_principal
from remitnet.services.adapters.grpc.refusals import refusals_counted
from remitnet.services.domain.errors import InvalidArgument, NotFound, Reason
from remitnet.services.domain.model import CycleState, check_bank_code
from remitnet.services.service_layer import clearing, positions
from remitnet.services.service_layer import cycles as uc
from remitnet.services.service_layer.engine import NettingEngine
from remitnet.services.service_layer.results import (
    NO_OBSERVER,
    CycleClosed,
    Observer,
    TransferCancelled,
)
from remitnet.services.service_layer.watch import FeedReader

Context = grpc.aio.ServicerContext[Any, Any]


def cycle_message(view: uc.CycleView, *, only_bank: str | None = None) -> pb.Cycle:
    c = view.cycle
    message = pb.Cycle(
        cycle_id=c.id,
        currency=c.currency,
        state=int(c.state),  # type: ignore[arg-type]
        opened_at=convert.timestamp(c.opened_at),
        closed_at=convert.timestamp(c.closed_at),
        settled_at=convert.timestamp(c.settled_at),
        transfer_count=view.transfer_count,
        gross_value=view.gross_value,
        net_value=view.net_value,
        audit_chain_head=(
            None
            if view.audit_head is None
            else pb.AuditChainHead(sequence=view.audit_head.seq, hash=view.audit_head.hash)
        ),
    )
    # A close answers a position per bank, thousands: added in place, not
    # built as messages and copied in.
    add = message.positions.add
    if only_bank is None:
        for bank, p in view.positions.items():
            add(
                bank_code=bank, sent=p.sent, received=p.received, net=p.net,
                sent_count=p.sent_count, received_count=p.received_count,
            )  # fmt: skip
    elif (mine := view.positions.get(only_bank)) is not None:
        add(
            bank_code=only_bank, sent=mine.sent, received=mine.received, net=mine.net,
            sent_count=mine.sent_count, received_count=mine.received_count,
        )  # fmt: skip
    return message


class NettingServicer(pb_grpc.NettingServiceServicer):
    def __init__(
        self,
        db: Database,
        observer: Observer = NO_OBSERVER,
        *,
        engine: NettingEngine | None = None,
        feed: FeedReader | None = None,
    ) -> None:
        self.db = db
        self.observer = observer
        # In a process that also runs clearing: the operator's cancel runs on
        # the netting thread (it writes the account rows batches write), and
        # the status streams hear of it at once.
        self.engine = engine
        self.feed = feed

    async def ListCycles(
        self, request: pb.ListCyclesRequest, context: Context
    ) -> pb.ListCyclesResponse:
        state = None
        if request.state:
            try:
                state = CycleState(request.state)
            except ValueError:
                raise InvalidArgument(Reason.INVALID_ARGUMENT, "unknown cycle state") from None
        size = convert.page_size(request.page_size)
        views = await asyncio.to_thread(
            uc.list_cycles, self.db, request.currency, state, request.page_token or None, size
        )
        bank = current_principal().participant
        token = views[-1].cycle.id if len(views) == size else ""
        return pb.ListCyclesResponse(
            cycles=[cycle_message(v, only_bank=bank) for v in views], next_page_token=token
        )

    async def GetCycle(self, request: pb.GetCycleRequest, context: Context) -> pb.GetCycleResponse:
        view = await asyncio.to_thread(uc.get_cycle, self.db, request.cycle_id)
        # A bank (or FX provider) sees the totals and its own position, not
        # its competitors'.
        only = current_principal().participant
        return pb.GetCycleResponse(cycle=cycle_message(view, only_bank=only))

    async def CloseCycle(
        self, request: pb.CloseCycleRequest, context: Context
    ) -> pb.CloseCycleResponse:
        closed, opened = await asyncio.to_thread(
            partial(
                uc.close_cycle,
                expected=request.cycle_id or None,
                actor=current_principal().render(),
            ),
            self.db,
            request.currency,
        )
        self.observer.observe(CycleClosed.of(closed, opened, "operator"))
        return pb.CloseCycleResponse(closed=cycle_message(closed), opened=cycle_message(opened))

    async def GetPosition(
        self, request: pb.GetPositionRequest, context: Context
    ) -> pb.GetPositionResponse:
        caller = current_principal().participant
        bank = request.bank_code or (caller or "")
        if not bank:
            raise InvalidArgument(
                Reason.MISSING_FIELD, "the operator names the bank", field="bank_code"
            )
        check_bank_code(bank)
        if caller is not None and bank != caller:
            # Another bank's position is reported as absent, not forbidden.
            raise NotFound(Reason.UNKNOWN_PARTICIPANT, f"no bank {bank} at the hub", bank=bank)
        found = await asyncio.to_thread(positions.get_position, self.db, bank, request.currency)
        response = pb.GetPositionResponse(
            bank_code=found.bank, as_of=convert.timestamp(found.as_of)
        )
        for p in found.currencies:
            response.positions.add(
                currency=p.currency,
                balance=p.balance,
                net_debit_cap=p.net_debit_cap,
                unsettled_net=p.unsettled_net,
                headroom=p.headroom,
                open_cycle_id=p.open_cycle_id,
                open_cycle_sent=p.open_cycle.sent,
                open_cycle_received=p.open_cycle.received,
                open_cycle_sent_count=p.open_cycle.sent_count,
                open_cycle_received_count=p.open_cycle.received_count,
                reserved=p.reserved,
            )
        return response

    @refusals_counted("operator_cancel")
    async def CancelTransfer(
        self, request: pb.CancelTransferRequest, context: Context
    ) -> pb.CancelTransferResponse:
        """The operator cancels a reserved or netted transfer, with a reason
        recorded on it and in the audit trail."""
        started = datetime.now(UTC)
        fn = partial(
            clearing.cancel_transfer,
            self.db,
            None,
            request.transfer_id,
            request.reason,
            actor=current_principal().render(),
        )
        view = await (asyncio.to_thread(fn) if self.engine is None else self.engine.run_serial(fn))
        if self.feed is not None:
            self.feed.poke()
        self.observer.observe(TransferCancelled.of(view.transfer, operator=True, started=started))
        return pb.CancelTransferResponse(transfer=convert.transfer(view.transfer, view.status))
