"""A bank's own position, per currency: what it may still send, so that it
can size a payment instead of trying it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from remitnet.services.domain.errors import NotFound, Reason
from remitnet.services.domain.model import AccountKind
from remitnet.services.domain.money import check_currency
from remitnet.services.domain.netting import PositionDelta
from remitnet.services.service_layer.unit_of_work import Transactions, UnitOfWork


@dataclass(frozen=True, slots=True)
class CurrencyPosition:
    currency: str
    balance: int
    net_debit_cap: int
    unsettled_net: int
    headroom: int
    open_cycle_id: str  # "" when the currency has no open cycle
    open_cycle: PositionDelta  # the bank's totals in it (zeros: none yet)
    reserved: int = 0  # held by its transfers awaiting confirmation


@dataclass(frozen=True, slots=True)
class Position:
    bank: str
    currencies: list[CurrencyPosition]
    as_of: datetime


def get_position(db: Transactions, bank: str, currency: str = "") -> Position:
    """`bank`'s liquidity accounts (one currency, or all it holds) and its
    totals in each currency's open cycle, from one consistent snapshot (not
    a stale follower read: a bank sizes payments on it)."""
    if currency:
        check_currency(currency)

    def read(uow: UnitOfWork) -> Position:
        if uow.banks.get(bank) is None:
            raise NotFound(Reason.UNKNOWN_PARTICIPANT, f"no bank {bank} at the hub", bank=bank)
        accounts = [
            a
            for a in uow.accounts.of_owner(bank)
            if a.kind == AccountKind.LIQUIDITY and (not currency or a.currency == currency)
        ]
        if currency and not accounts:
            raise NotFound(
                Reason.ACCOUNT_NOT_FOUND,
                f"bank {bank} holds no {currency} account at the hub",
                bank=bank,
                currency=currency,
            )
        open_ids = uow.cycles.open_ids([a.currency for a in accounts])
        held = uow.positions.of_bank(bank, list(open_ids.values()))
        out = []
        for a in accounts:
            cycle_id = open_ids.get(a.currency, "")
            out.append(
                CurrencyPosition(
                    a.currency,
                    a.balance,
                    a.net_debit_cap,
                    a.unsettled_net,
                    a.headroom,
                    cycle_id,
                    held.get(cycle_id) or PositionDelta(),
                    a.reserved,
                )
            )
        return Position(bank, out, datetime.now(UTC))

    return db.read(read)
