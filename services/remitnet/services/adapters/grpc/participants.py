from __future__ import annotations

import asyncio
from typing import Any

import grpc

from remitnet.participants.v1 import participants_pb2 as pb
from remitnet.participants.v1 import participants_pb2_grpc as pb_grpc
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.grpc import convert
from remitnet.services.adapters.grpc.identity import current_principal
from remitnet.services.domain.model import BankStatus
from remitnet.services.service_layer import participants as uc

Context = grpc.aio.ServicerContext[Any, Any]


def _actor() -> str:
    """Who the audit trail records for a change made by this call."""
    return current_principal().render()


class ParticipantsServicer(pb_grpc.ParticipantsServiceServicer):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def CreateBank(
        self, request: pb.CreateBankRequest, context: Context
    ) -> pb.CreateBankResponse:
        view = await asyncio.to_thread(
            uc.create_bank,
            self.db,
            request.code,
            request.name,
            request.home_region,
            list(request.currencies),
            roles=convert.roles(request.roles),
            requires_confirmation=request.requires_confirmation,
            actor=_actor(),
        )
        return pb.CreateBankResponse(bank=convert.bank(view))

    async def GetBank(self, request: pb.GetBankRequest, context: Context) -> pb.GetBankResponse:
        view = await asyncio.to_thread(uc.get_bank, self.db, request.code)
        return pb.GetBankResponse(bank=convert.bank(view))

    async def ListBanks(
        self, request: pb.ListBanksRequest, context: Context
    ) -> pb.ListBanksResponse:
        size = convert.page_size(request.page_size)
        views = await asyncio.to_thread(uc.list_banks, self.db, request.page_token, size)
        token = views[-1].bank.code if len(views) == size else ""
        return pb.ListBanksResponse(banks=[convert.bank(v) for v in views], next_page_token=token)

    async def OpenAccount(
        self, request: pb.OpenAccountRequest, context: Context
    ) -> pb.OpenAccountResponse:
        row = await asyncio.to_thread(
            uc.open_account, self.db, request.bank_code, request.currency, actor=_actor()
        )
        return pb.OpenAccountResponse(account=convert.account(row))

    async def Deposit(self, request: pb.DepositRequest, context: Context) -> pb.DepositResponse:
        currency, amount = convert.require_money(
            request.amount, request.HasField("amount"), "amount"
        )
        row = await asyncio.to_thread(
            uc.deposit,
            self.db,
            request.bank_code,
            currency,
            amount,
            request.deposit_id,
            actor=_actor(),
        )
        return pb.DepositResponse(account=convert.account(row))

    async def Withdraw(self, request: pb.WithdrawRequest, context: Context) -> pb.WithdrawResponse:
        currency, amount = convert.require_money(
            request.amount, request.HasField("amount"), "amount"
        )
        row = await asyncio.to_thread(
            uc.withdraw,
            self.db,
            request.bank_code,
            currency,
            amount,
            request.withdrawal_id,
            actor=_actor(),
        )
        return pb.WithdrawResponse(account=convert.account(row))

    async def SetNetDebitCap(
        self, request: pb.SetNetDebitCapRequest, context: Context
    ) -> pb.SetNetDebitCapResponse:
        currency, cap = convert.require_money(request.cap, request.HasField("cap"), "cap")
        row = await asyncio.to_thread(
            uc.set_net_debit_cap, self.db, request.bank_code, currency, cap, actor=_actor()
        )
        return pb.SetNetDebitCapResponse(account=convert.account(row))

    async def SetConfirmationRequired(
        self, request: pb.SetConfirmationRequiredRequest, context: Context
    ) -> pb.SetConfirmationRequiredResponse:
        view = await asyncio.to_thread(
            uc.set_requires_confirmation,
            self.db,
            request.code,
            request.required,
            actor=_actor(),
        )
        return pb.SetConfirmationRequiredResponse(bank=convert.bank(view))

    async def SuspendBank(
        self, request: pb.SuspendBankRequest, context: Context
    ) -> pb.SuspendBankResponse:
        view = await asyncio.to_thread(
            uc.set_status, self.db, request.code, BankStatus.SUSPENDED, actor=_actor()
        )
        return pb.SuspendBankResponse(bank=convert.bank(view))

    async def ResumeBank(
        self, request: pb.ResumeBankRequest, context: Context
    ) -> pb.ResumeBankResponse:
        view = await asyncio.to_thread(
            uc.set_status, self.db, request.code, BankStatus.ACTIVE, actor=_actor()
        )
        return pb.ResumeBankResponse(bank=convert.bank(view))
