from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, TypeVar, cast

import grpc

from remitnet.participants.v1 import participants_pb2 as pb
from remitnet.participants.v1 import participants_pb2_grpc as pb_grpc
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.grpc import convert
from remitnet.services.adapters.grpc.identity import current_principal
from remitnet.services.domain.model import BankStatus
from remitnet.services.service_layer import participants as uc
from remitnet.services.service_layer.coalesce import Coalescer

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")

# The most operator actions one transaction takes (run_together).
MAX_TOGETHER = 64


class Together:
    """Operator actions that arrive while others run wait and then run
    together, in one transaction (`uc.run_together`): onboarding many banks
    at once commits a group at a time instead of conflicting on the audit
    trail's head and the hub's reserve account and retrying. One group runs
    at a time per hub process."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._group: Coalescer[tuple[str, uc.OperatorUnit[Any]], Any] = Coalescer(
            self._run, size=lambda _: 1, max_items=MAX_TOGETHER
        )

    async def _run(self, units: Sequence[tuple[str, uc.OperatorUnit[Any]]]) -> list[Any]:
        return await asyncio.to_thread(uc.run_together, self.db, units)

    async def run(self, name: str, unit: uc.OperatorUnit[T]) -> T:
        answer = await self._group((name, unit))
        if isinstance(answer, Exception):  # this unit's own error
            raise answer
        return cast(T, answer)


def _actor() -> str:
    """Who the audit trail records for a change made by this call."""
    return current_principal().render()


class ParticipantsServicer(pb_grpc.ParticipantsServiceServicer):
    def __init__(self, db: Database) -> None:
        self.db = db
        self.together = Together(db)

    async def CreateBank(
        self, request: pb.CreateBankRequest, context: Context
    ) -> pb.CreateBankResponse:
        unit = uc.create_bank_unit(
            request.code,
            request.name,
            request.home_region,
            list(request.currencies),
            roles=convert.roles(request.roles),
            requires_confirmation=request.requires_confirmation,
            bic=request.bic or None,
            actor=_actor(),
        )
        view = await self.together.run("create_bank", unit)
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
        response = pb.ListBanksResponse(next_page_token=token)
        for v in views:
            convert.fill_bank(response.banks.add(), v)
        return response

    async def OpenAccount(
        self, request: pb.OpenAccountRequest, context: Context
    ) -> pb.OpenAccountResponse:
        unit = uc.open_account_unit(request.bank_code, request.currency, actor=_actor())
        row = await self.together.run("open_account", unit)
        return pb.OpenAccountResponse(account=convert.account(row))

    async def Deposit(self, request: pb.DepositRequest, context: Context) -> pb.DepositResponse:
        currency, amount = convert.require_money(
            request.amount, request.HasField("amount"), "amount"
        )
        unit = uc.deposit_unit(
            request.bank_code, currency, amount, request.deposit_id, actor=_actor()
        )
        row = await self.together.run("deposit", unit)
        return pb.DepositResponse(account=convert.account(row))

    async def Withdraw(self, request: pb.WithdrawRequest, context: Context) -> pb.WithdrawResponse:
        currency, amount = convert.require_money(
            request.amount, request.HasField("amount"), "amount"
        )
        unit = uc.withdraw_unit(
            request.bank_code, currency, amount, request.withdrawal_id, actor=_actor()
        )
        row = await self.together.run("withdraw", unit)
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
