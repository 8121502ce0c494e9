"""remitnet.iso20022.v1: ISO 20022 documents in and out over gRPC, for the
calling bank (iso20022.proto). Parsing and schema checks run off the event
loop (a 3 MiB document takes tens of milliseconds); clearing goes through
the same netting engine as ClearingService.SubmitTransfers."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import grpc

from remitnet.iso20022.v1 import iso20022_pb2 as pb
from remitnet.iso20022.v1 import iso20022_pb2_grpc as pb_grpc
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.grpc.identity import calling_bank
from remitnet.services.adapters.iso20022 import pacs002, pacs008, pacs028
from remitnet.services.service_layer import iso20022 as uc
from remitnet.services.service_layer.engine import NettingEngine
from remitnet.services.service_layer.lifecycle import LifecycleConfig
from remitnet.services.service_layer.results import NO_OBSERVER, Observer
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
