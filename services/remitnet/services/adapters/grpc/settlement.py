from __future__ import annotations

import asyncio
from typing import Any

import grpc

from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.grpc import convert
from remitnet.services.adapters.grpc.identity import current_principal
from remitnet.services.domain.errors import InvalidArgument, NotFound, Reason
from remitnet.services.service_layer import settlement as uc
from remitnet.services.service_layer.results import NO_OBSERVER, CycleSettled, Observer
from remitnet.settlement.v1 import settlement_pb2 as pb
from remitnet.settlement.v1 import settlement_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]
MAX_STATEMENT_ENTRIES = 10_000


class SettlementServicer(pb_grpc.SettlementServiceServicer):
    def __init__(self, db: Database, observer: Observer = NO_OBSERVER) -> None:
        self.db = db
        self.observer = observer

    async def SettleCycle(
        self, request: pb.SettleCycleRequest, context: Context
    ) -> pb.SettleCycleResponse:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await asyncio.to_thread(
            uc.settle_cycle, self.db, request.cycle_id, actor=current_principal().render()
        )
        self.observer.observe(CycleSettled.of(result, loop.time() - started))
        response = pb.SettleCycleResponse(
            cycle_id=result.cycle.id,
            currency=result.cycle.currency,
            settled_at=convert.timestamp(result.cycle.settled_at),
            already_settled=result.already_settled,
        )
        # A posting per bank, thousands: added in place, not built and copied in.
        add = response.postings.add
        for b, a in sorted(result.postings.items()):
            add(bank_code=b, amount=a)
        return response

    async def GetStatement(
        self, request: pb.GetStatementRequest, context: Context
    ) -> pb.GetStatementResponse:
        caller = current_principal().participant
        if caller is not None and request.bank_code and request.bank_code != caller:
            # Another bank's statement is reported as absent, not forbidden.
            raise NotFound(Reason.ACCOUNT_NOT_FOUND, "no such account of yours")
        bank = request.bank_code or (caller or "")
        if request.page_size < 0:
            raise InvalidArgument(Reason.INVALID_PAGE_SIZE, "page_size must not be negative")
        size = min(request.page_size or 1000, MAX_STATEMENT_ENTRIES)
        st = await asyncio.to_thread(
            uc.statement, self.db, bank, request.currency, request.after_sequence, size
        )
        return pb.GetStatementResponse(
            bank_code=st.bank,
            currency=st.currency,
            opening_balance=convert.money(st.currency, st.opening_balance),
            entries=[
                pb.StatementEntry(
                    sequence=e.seq,
                    kind=int(e.kind),  # type: ignore[arg-type]
                    amount=e.amount,
                    balance_after=e.balance_after,
                    reference=e.reference,
                    posted_at=convert.timestamp(e.posted_at),
                )
                for e in st.entries
            ],
            closing_balance=convert.money(st.currency, st.closing_balance),
            next_after_sequence=st.next_after_seq,
        )

    async def GetReconciliation(
        self, request: pb.GetReconciliationRequest, context: Context
    ) -> pb.GetReconciliationResponse:
        rec = await asyncio.to_thread(uc.reconciliation, self.db, request.cycle_id)
        caller = current_principal().participant
        c = rec.cycle
        return pb.GetReconciliationResponse(
            cycle_id=c.id,
            currency=c.currency,
            settled=rec.settled,
            rows=[
                pb.ReconciliationRow(
                    bank_code=r.bank,
                    transfers_sent=r.sent_count,
                    transfers_received=r.received_count,
                    sent_value=r.sent,
                    received_value=r.received,
                    computed_net=r.computed_net,
                    position_net=r.position_net,
                    posted=r.posted,
                    matched=r.matched(rec.settled),
                )
                for r in rec.rows
                if caller is None or r.bank == caller
            ],
            transfer_count=c.transfer_count,
            gross_value=c.gross_value,
            net_value=c.net_value,
            all_matched=rec.all_matched,
        )

    async def GetLedgerBalance(
        self, request: pb.GetLedgerBalanceRequest, context: Context
    ) -> pb.GetLedgerBalanceResponse:
        totals = await asyncio.to_thread(uc.ledger_totals, self.db)
        return pb.GetLedgerBalanceResponse(
            currencies=[
                pb.CurrencyTotal(currency=c, balance_sum=b, entry_sum=s, entry_count=n)
                for c, (b, s, n) in totals.items()
            ]
        )
