"""A bank's own position, per currency: what it may still send, so that it
can size a payment instead of trying it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection

from remitnet.services.adapters.db import repository as repo
from remitnet.services.adapters.db.database import Database
from remitnet.services.domain.errors import NotFound, Reason
from remitnet.services.domain.model import AccountKind
from remitnet.services.domain.money import check_currency
from remitnet.services.domain.netting import PositionDelta, headroom


@dataclass(frozen=True, slots=True)
class CurrencyPosition:
    currency: str
    balance: int
    net_debit_cap: int
    unsettled_net: int
    headroom: int
    open_cycle_id: str  # "" when the currency has no open cycle
    open_cycle: PositionDelta  # the bank's totals in it (zeros: none yet)


@dataclass(frozen=True, slots=True)
class Position:
    bank: str
    currencies: list[CurrencyPosition]
    as_of: datetime


def get_position(db: Database, bank: str, currency: str = "") -> Position:
    """`bank`'s liquidity accounts (one currency, or all it holds) and its
    totals in each currency's open cycle, from one consistent snapshot (not
    a stale follower read: a bank sizes payments on it)."""
    if currency:
        check_currency(currency)

    def read(conn: Connection) -> Position:
        if repo.get_bank(conn, bank) is None:
            raise NotFound(Reason.UNKNOWN_PARTICIPANT, f"no bank {bank} at the hub", bank=bank)
        accounts = [
            a
            for a in repo.owner_accounts(conn, bank)
            if a.kind == AccountKind.LIQUIDITY and (not currency or a.currency == currency)
        ]
        if currency and not accounts:
            raise NotFound(
                Reason.ACCOUNT_NOT_FOUND,
                f"bank {bank} holds no {currency} account at the hub",
                bank=bank,
                currency=currency,
            )
        open_ids = repo.open_cycle_ids(conn, [a.currency for a in accounts])
        held = repo.bank_positions(conn, bank, list(open_ids.values()))
        out = []
        for a in accounts:
            cycle_id = open_ids.get(a.currency, "")
            out.append(
                CurrencyPosition(
                    a.currency,
                    a.balance,
                    a.net_debit_cap,
                    a.unsettled_net,
                    headroom(a.balance, a.net_debit_cap, a.unsettled_net),
                    cycle_id,
                    held.get(cycle_id) or PositionDelta(),
                )
            )
        return Position(bank, out, datetime.now(UTC))

    return db.read(read)
