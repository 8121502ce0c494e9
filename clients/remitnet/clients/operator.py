"""The client the hub operator uses: onboarding, liquidity, cycles, settlement,
and the lifecycle's operator calls (which banks require payee confirmation,
cancelling a netted transfer with a recorded reason)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.base import ClientConfig, HubClient
from remitnet.clients.errors import HubError
from remitnet.clients.provider import rates_request
from remitnet.common.v1.money_pb2 import Money
from remitnet.fx.v1 import fx_pb2 as fxpb
from remitnet.fx.v1 import fx_pb2_grpc as fxgrpc
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.netting.v1 import netting_pb2_grpc as ngrpc
from remitnet.participants.v1 import participants_pb2 as ppb
from remitnet.participants.v1 import participants_pb2_grpc as pgrpc
from remitnet.settlement.v1 import settlement_pb2 as spb
from remitnet.settlement.v1 import settlement_pb2_grpc as sgrpc

# The namespace of the deposit ids onboard_many derives (uuid5): the same
# bank and currency always give the same id, so onboarding again deposits
# nothing twice.
ONBOARD_DEPOSITS = uuid.UUID("6f1f4f0e-8d55-5e2b-9a57-3b0c6a1d7e21")
# The calls one connection may have in flight at the hub (its HTTP/2
# max_concurrent_streams): a stream past it is refused, not queued.
HUB_MAX_STREAMS = 128
# Banks onboard_many keeps in flight: enough that the hub's groups of
# operator actions (up to 64 per transaction) stay full, few enough that a
# call does not wait behind many groups, and under HUB_MAX_STREAMS.
ONBOARD_IN_FLIGHT = 96


def onboarding_deposit_id(code: str, currency: str) -> str:
    """The deposit id onboard_many sends for bank `code`'s initial funding
    in `currency`."""
    return str(uuid.uuid5(ONBOARD_DEPOSITS, f"{code}/{currency}"))


@dataclass(frozen=True, slots=True)
class Onboarding:
    """A participant to onboard (OperatorClient.create_bank's arguments) and
    its initial funding: currency -> minor units, deposited into the
    accounts in `currencies` once it exists."""

    code: str
    name: str
    home_region: str
    currencies: Sequence[str]
    deposits: Mapping[str, int] = field(default_factory=dict)
    roles: Sequence[ppb.ParticipantRole.ValueType] = ()
    requires_confirmation: bool = False
    bic: str = ""


class OperatorClient(HubClient):
    def __init__(self, config: ClientConfig | None = None) -> None:
        super().__init__("operator", config)
        self.participants = pgrpc.ParticipantsServiceStub(self.channel)
        self.netting = ngrpc.NettingServiceStub(self.channel)
        self.settlement = sgrpc.SettlementServiceStub(self.channel)
        self.fx = fxgrpc.FxServiceStub(self.channel)

    async def update_rates(
        self,
        rates: Mapping[tuple[str, str], str],
        *,
        as_of: datetime | None = None,
        provider: str = "",
        spreads: Mapping[tuple[str, str], int] | None = None,
    ) -> int:
        """Feed mid rates: (base, quote) -> decimal text, observed at `as_of`
        (timezone-aware; by default this machine's now), as `provider`'s
        (default: the hub's default provider FXHUB), with that provider's own
        spread in basis points for the pairs in `spreads`. The hub requires
        as_of and refuses a rate older than the one the provider holds for
        the pair (RATE_OLDER_THAN_STORED)."""
        request = rates_request(rates, as_of=as_of, spreads=spreads, provider=provider)
        response = await self.call(self.fx.UpdateRates, request)
        return response.updated

    async def list_rates(self, provider: str = "") -> list[fxpb.Rate]:
        """Every provider's stored rates (or one provider's)."""
        response = await self.call(self.fx.ListRates, fxpb.ListRatesRequest(provider=provider))
        return list(response.rates)

    async def create_bank(
        self,
        code: str,
        name: str,
        home_region: str,
        currencies: list[str],
        *,
        roles: Sequence[ppb.ParticipantRole.ValueType] = (),
        requires_confirmation: bool = False,
        bic: str = "",
    ) -> ppb.Bank:
        """Onboard a participant: a bank (the default), an FX provider
        (roles=[ppb.PARTICIPANT_ROLE_FX_PROVIDER]) or both, with accounts
        in `currencies`. Fund a provider in every currency it is to sell.
        With `requires_confirmation` the transfers to it await its
        confirmation from the start (`set_confirmation_required`). `bic`:
        its BICFI, for the ISO 20022 edge."""
        response = await self.call(
            self.participants.CreateBank,
            ppb.CreateBankRequest(
                code=code,
                name=name,
                home_region=home_region,
                currencies=currencies,
                roles=roles,
                requires_confirmation=requires_confirmation,
                bic=bic,
            ),
        )
        return response.bank

    async def create_provider(
        self, code: str, name: str, home_region: str, currencies: list[str]
    ) -> ppb.Bank:
        """Onboard an FX provider only (no transfers of its own)."""
        return await self.create_bank(
            code, name, home_region, currencies, roles=[ppb.PARTICIPANT_ROLE_FX_PROVIDER]
        )

    async def onboard_many(
        self, banks: Iterable[Onboarding], *, in_flight: int = ONBOARD_IN_FLIGHT
    ) -> list[ppb.Bank | HubError]:
        """Onboard and fund many participants, `in_flight` at a time: each
        one's deposits follow its own CreateBank at once, and the next
        participant starts as soon as one is done (a sliding window, not
        waves that wait for their slowest), so the hub's groups of operator
        actions stay full. Answers in the order given: the participant as
        its last call left it, or the HubError that stopped it (the others
        go on). Safe to repeat: creating a bank as it is already is a no-op,
        and each deposit's id is derived from the bank and currency
        (`onboarding_deposit_id`), so a repeated one is a replay, not a
        second deposit."""
        if not 1 <= in_flight <= HUB_MAX_STREAMS:
            raise ValueError(f"in_flight must be between 1 and {HUB_MAX_STREAMS}")
        todo = list(banks)
        out: dict[int, ppb.Bank | HubError] = {}
        pending = iter(enumerate(todo))

        async def one(b: Onboarding) -> ppb.Bank:
            bank = await self.create_bank(
                b.code,
                b.name,
                b.home_region,
                list(b.currencies),
                roles=b.roles,
                requires_confirmation=b.requires_confirmation,
                bic=b.bic,
            )
            if not b.deposits:
                return bank
            funded = {a.currency: a for a in bank.accounts}
            for currency, minor_units in b.deposits.items():
                funded[currency] = await self.deposit(
                    b.code, currency, minor_units, onboarding_deposit_id(b.code, currency)
                )
            # The accounts as the deposits left them, in the bank's order.
            del bank.accounts[:]
            bank.accounts.extend(funded[c] for c in sorted(funded))
            return bank

        async def worker() -> None:
            # One shared iterator: each worker takes the next participant
            # as soon as its own is done.
            for i, b in pending:
                try:
                    out[i] = await one(b)
                except HubError as err:
                    out[i] = err

        await asyncio.gather(*(worker() for _ in range(min(in_flight, len(todo)))))
        return [out[i] for i in range(len(todo))]

    async def get_bank(self, code: str) -> ppb.Bank:
        response = await self.call(self.participants.GetBank, ppb.GetBankRequest(code=code))
        return response.bank

    async def list_banks(self, page_size: int = 1000) -> list[ppb.Bank]:
        banks: list[ppb.Bank] = []
        token = ""
        while True:
            response = await self.call(
                self.participants.ListBanks,
                ppb.ListBanksRequest(page_size=page_size, page_token=token),
            )
            banks += response.banks
            token = response.next_page_token
            if not token:
                return banks

    async def open_account(self, code: str, currency: str) -> ppb.Account:
        response = await self.call(
            self.participants.OpenAccount, ppb.OpenAccountRequest(bank_code=code, currency=currency)
        )
        return response.account

    async def deposit(
        self, code: str, currency: str, minor_units: int, deposit_id: str | None = None
    ) -> ppb.Account:
        response = await self.call(
            self.participants.Deposit,
            ppb.DepositRequest(
                bank_code=code,
                amount=Money(currency=currency, minor_units=minor_units),
                deposit_id=deposit_id or str(uuid.uuid4()),
            ),
        )
        return response.account

    async def withdraw(
        self, code: str, currency: str, minor_units: int, withdrawal_id: str | None = None
    ) -> ppb.Account:
        response = await self.call(
            self.participants.Withdraw,
            ppb.WithdrawRequest(
                bank_code=code,
                amount=Money(currency=currency, minor_units=minor_units),
                withdrawal_id=withdrawal_id or str(uuid.uuid4()),
            ),
        )
        return response.account

    async def set_cap(self, code: str, currency: str, minor_units: int) -> ppb.Account:
        response = await self.call(
            self.participants.SetNetDebitCap,
            ppb.SetNetDebitCapRequest(
                bank_code=code, cap=Money(currency=currency, minor_units=minor_units)
            ),
        )
        return response.account

    async def suspend(self, code: str) -> ppb.Bank:
        response = await self.call(self.participants.SuspendBank, ppb.SuspendBankRequest(code=code))
        return response.bank

    async def resume(self, code: str) -> ppb.Bank:
        response = await self.call(self.participants.ResumeBank, ppb.ResumeBankRequest(code=code))
        return response.bank

    async def set_confirmation_required(self, code: str, required: bool = True) -> ppb.Bank:
        """Whether the transfers to bank `code` await its confirmation (payee
        confirmation): from now on each netted transfer to it is RESERVED
        until it accepts or rejects it or the hub expires it at its
        deadline; transfers already reserved stay so. Returns are never
        reserved. A change is recorded in the operator audit trail; setting
        what the bank has already is a no-op."""
        response = await self.call(
            self.participants.SetConfirmationRequired,
            ppb.SetConfirmationRequiredRequest(code=code, required=required),
        )
        return response.bank

    async def cancel_transfer(self, transfer_id: str, reason: str) -> cpb.Transfer:
        """Cancel a transfer as the operator, with a reason (required, at
        most 140 characters) recorded with the transfer and in the operator
        audit trail: a RESERVED one (its reservation released), or an
        ACCEPTED one, which its debtor can no longer cancel, while its
        cycle(s) are open (CYCLE_NOT_OPEN after). Cancelling a cancelled
        transfer answers it as it is (the first reason stands)."""
        response = await self.call(
            self.netting.CancelTransfer,
            npb.CancelTransferRequest(transfer_id=transfer_id, reason=reason),
        )
        return response.transfer

    async def close_cycle(self, currency: str, cycle_id: str = "") -> npb.CloseCycleResponse:
        """Close the open cycle of a currency. Naming the cycle makes the call
        safe to retry (a lost answer is recovered, not repeated on the next
        cycle); without it the call is not retried."""
        return await self.call(
            self.netting.CloseCycle,
            npb.CloseCycleRequest(currency=currency, cycle_id=cycle_id),
            retry=bool(cycle_id),
        )

    async def list_cycles(
        self, currency: str = "", state: npb.CycleState.ValueType = npb.CYCLE_STATE_UNSPECIFIED
    ) -> list[npb.Cycle]:
        response = await self.call(
            self.netting.ListCycles,
            npb.ListCyclesRequest(currency=currency, state=state, page_size=1000),
        )
        return list(response.cycles)

    async def get_cycle(self, cycle_id: str) -> npb.Cycle:
        response = await self.call(self.netting.GetCycle, npb.GetCycleRequest(cycle_id=cycle_id))
        return response.cycle

    async def settle_cycle(self, cycle_id: str) -> spb.SettleCycleResponse:
        return await self.call(
            self.settlement.SettleCycle, spb.SettleCycleRequest(cycle_id=cycle_id)
        )

    async def statement(self, code: str, currency: str) -> spb.GetStatementResponse:
        return await self.call(
            self.settlement.GetStatement, spb.GetStatementRequest(bank_code=code, currency=currency)
        )

    async def reconciliation(self, cycle_id: str) -> spb.GetReconciliationResponse:
        return await self.call(
            self.settlement.GetReconciliation, spb.GetReconciliationRequest(cycle_id=cycle_id)
        )

    async def ledger_balance(self) -> spb.GetLedgerBalanceResponse:
        return await self.call(self.settlement.GetLedgerBalance, spb.GetLedgerBalanceRequest())
