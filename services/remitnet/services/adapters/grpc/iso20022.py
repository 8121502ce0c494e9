"""remitnet.iso20022.v1: ISO 20022 documents in and out over gRPC, for the
calling bank (iso20022.proto). Parsing and schema checks run off the event
loop (a 3 MiB document takes tens of milliseconds); clearing goes through
the same netting engine as ClearingService.SubmitTransfers."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from functools import partial
from typing import Any

import grpc

from remitnet.iso20022.v1 import iso20022_pb2 as pb
from remitnet.iso20022.v1 import iso20022_pb2_grpc as pb_grpc
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.grpc.identity import calling_bank
from remitnet.services.adapters.iso20022 import (
    camt029,
    camt053,
    camt054,
    camt056,
    pacs002,
    pacs004,
    pacs008,
    pacs028,
)
from remitnet.services.service_layer import iso20022 as uc
from remitnet.services.service_layer import iso_lifecycle, iso_statements
from remitnet.services.service_layer.engine import NettingEngine
from remitnet.services.service_layer.lifecycle import LifecycleConfig
from remitnet.services.service_layer.results import NO_OBSERVER, Observer, RecallChanged
from remitnet.services.service_layer.watch import FeedReader

Context = grpc.aio.ServicerContext[Any, Any]


class Iso20022Servicer(pb_grpc.Iso20022ServiceServicer):
    def __init__(
        self,
        db: Database,
        engine: NettingEngine,
        feed: FeedReader | None = None,
        observer: Observer = NO_OBSERVER,
        lifecycle: LifecycleConfig | None = None,
    ) -> None:
        self.db = db
        self.engine = engine
        self.feed = feed
        self.observer = observer
        self.lifecycle = lifecycle or LifecycleConfig()

    async def SubmitPacs008(
        self, request: pb.SubmitPacs008Request, context: Context
    ) -> pb.SubmitPacs008Response:
        caller = calling_bank()
        data = request.document
        message = await asyncio.to_thread(pacs008.read, data)
        answer = await uc.submit_pacs008(
            self.db,
            self.engine,
            caller,
            message,
            hashlib.sha256(data).hexdigest(),
            pacs002.build,
            max_timeout_ms=self.lifecycle.max_timeout_ms,
            observer=self.observer,
        )
        if self.feed is not None and not answer.replayed:
            self.feed.poke()
        return pb.SubmitPacs008Response(document=answer.document, replayed=answer.replayed)

    async def GetStatusPacs028(
        self, request: pb.GetStatusPacs028Request, context: Context
    ) -> pb.GetStatusPacs028Response:
        caller = calling_bank()
        query = await asyncio.to_thread(pacs028.read, request.document)
        document = await asyncio.to_thread(uc.status_report, self.db, caller, query, pacs002.build)
        return pb.GetStatusPacs028Response(document=document)

    async def GetStatementCamt053(
        self, request: pb.GetStatementCamt053Request, context: Context
    ) -> pb.GetStatementCamt053Response:
        answer = await asyncio.to_thread(
            iso_statements.statement_camt053,
            self.db,
            calling_bank(),
            request.currency,
            camt053.build,
            cycle_id=request.cycle_id,
            from_date=request.from_date,
            to_date=request.to_date,
            after_sequence=request.after_sequence,
            page_size=request.page_size,
        )
        return pb.GetStatementCamt053Response(
            document=answer.document, next_after_sequence=answer.next_after_sequence
        )

    async def GetNotificationsCamt054(
        self, request: pb.GetNotificationsCamt054Request, context: Context
    ) -> pb.GetNotificationsCamt054Response:
        answer = await asyncio.to_thread(
            iso_statements.notifications_camt054,
            self.db,
            calling_bank(),
            request.currency,
            camt054.build,
            after_sequence=request.after_sequence,
            page_size=request.page_size,
        )
        return pb.GetNotificationsCamt054Response(
            document=answer.document, next_after_sequence=answer.next_after_sequence
        )

    # Returns and recalls: parsed off the loop, then run on the netting
    # thread like ClearingService's lifecycle calls (they write the rows
    # the batches write).

    def _poke(self, replayed: bool) -> None:
        if self.feed is not None and not replayed:
            self.feed.poke()

    async def SubmitPacs004(
        self, request: pb.SubmitPacs004Request, context: Context
    ) -> pb.SubmitPacs004Response:
        caller = calling_bank()
        data = request.document
        message = await asyncio.to_thread(pacs004.read, data)
        answer, cleared = await self.engine.run_serial(
            partial(
                iso_lifecycle.submit_pacs004,
                self.db,
                caller,
                message,
                hashlib.sha256(data).hexdigest(),
                pacs002.build,
                default_timeout_ms=self.lifecycle.default_timeout_ms,
            )
        )
        self._poke(answer.replayed)
        if cleared.outcomes or cleared.recalls:
            # Counted as ReturnTransfer's: returns by reason, refusals, and
            # the recalls a FOCR return answered.
            self.observer.observe(cleared)
        return pb.SubmitPacs004Response(document=answer.document, replayed=answer.replayed)

    async def GetReturnsPacs004(
        self, request: pb.GetReturnsPacs004Request, context: Context
    ) -> pb.GetReturnsPacs004Response:
        document = await asyncio.to_thread(
            iso_lifecycle.returns_received,
            self.db,
            calling_bank(),
            list(request.original_uetrs),
            request.limit,
            pacs004.build,
        )
        return pb.GetReturnsPacs004Response(document=document)

    async def SubmitCamt056(
        self, request: pb.SubmitCamt056Request, context: Context
    ) -> pb.SubmitCamt056Response:
        caller = calling_bank()
        data = request.document
        message = await asyncio.to_thread(camt056.read, data)
        answer, recalls = await self.engine.run_serial(
            partial(
                iso_lifecycle.submit_camt056,
                self.db,
                caller,
                message,
                hashlib.sha256(data).hexdigest(),
                camt029.build,
                window_s=self.lifecycle.recall_window_s,
            )
        )
        self._poke(answer.replayed)
        for recall, replayed in recalls:
            self.observer.observe(RecallChanged(recall, replayed))
        return pb.SubmitCamt056Response(document=answer.document, replayed=answer.replayed)

    async def SubmitCamt029(
        self, request: pb.SubmitCamt029Request, context: Context
    ) -> pb.SubmitCamt029Response:
        caller = calling_bank()
        data = request.document
        message = await asyncio.to_thread(camt029.read, data)
        started = datetime.now(UTC)
        answer, rejected, refused = await self.engine.run_serial(
            partial(
                iso_lifecycle.submit_camt029,
                self.db,
                caller,
                message,
                hashlib.sha256(data).hexdigest(),
                camt029.build,
            )
        )
        self._poke(answer.replayed)
        # Counted as AnswerRecall's: a rejection given before this call is
        # a replay (its time is earlier), refusals by reason.
        for recall in rejected:
            replayed = recall.answered_at is not None and recall.answered_at < started
            self.observer.observe(RecallChanged(recall, replayed))
        if refused.by_reason:
            self.observer.observe(refused)
        return pb.SubmitCamt029Response(document=answer.document, replayed=answer.replayed)
