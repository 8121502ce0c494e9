"""Double-entry postings. Every posting's legs sum to zero per currency."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import NamedTuple

from remitnet.services.domain.model import HUB, AccountKind, account_id, position_account_id
from remitnet.services.domain.netting import check_nets_balance


class EntryKind(IntEnum):
    """Values equal the proto enum's."""

    DEPOSIT = 1
    WITHDRAWAL = 2
    SETTLEMENT = 3
    FX_REVENUE = 4
    GROSS = 5


@dataclass(frozen=True, slots=True)
class Leg:
    account_id: str
    amount: int  # signed: credit positive, debit negative


@dataclass(frozen=True, slots=True)
class Posting:
    posting_id: str
    kind: EntryKind
    currency: str
    reference: str
    legs: tuple[Leg, ...]

    def __post_init__(self) -> None:
        total = sum(leg.amount for leg in self.legs)
        if total != 0:
            raise AssertionError(f"posting {self.posting_id} legs sum to {total}, not zero")


def deposit_posting(posting_id: str, bank: str, currency: str, amount: int, ref: str) -> Posting:
    return Posting(
        posting_id,
        EntryKind.DEPOSIT,
        currency,
        ref,
        (
            Leg(account_id(bank, currency), amount),
            Leg(account_id(HUB, currency, AccountKind.RESERVE), -amount),
        ),
    )


def withdrawal_posting(posting_id: str, bank: str, currency: str, amount: int, ref: str) -> Posting:
    return Posting(
        posting_id,
        EntryKind.WITHDRAWAL,
        currency,
        ref,
        (
            Leg(account_id(bank, currency), -amount),
            Leg(account_id(HUB, currency, AccountKind.RESERVE), amount),
        ),
    )


def settlement_posting(cycle_id: str, currency: str, nets: Mapping[str, int]) -> Posting:
    """Each participant's net position against the hub's settlement account,
    one pair of legs per participant, so that every entry has its
    counterpart. The hub's own FX legs settle to its FX account."""
    check_nets_balance(nets)
    hub = account_id(HUB, currency, AccountKind.SETTLEMENT)
    legs: list[Leg] = []
    for bank in sorted(nets):
        net = nets[bank]
        if net:
            legs.append(Leg(position_account_id(bank, currency), net))
            legs.append(Leg(hub, -net))
    return Posting(f"settle:{cycle_id}", EntryKind.SETTLEMENT, currency, cycle_id, tuple(legs))


def fx_revenue_posting(cycle_id: str, currency: str, fee: int) -> Posting:
    """Realise the spread earned on a cycle's hub-paid legs: the FX book is
    then carried at mid and the spread shows as revenue."""
    return Posting(
        f"fxrevenue:{cycle_id}",
        EntryKind.FX_REVENUE,
        currency,
        cycle_id,
        (
            Leg(account_id(HUB, currency, AccountKind.FX), -fee),
            Leg(account_id(HUB, currency, AccountKind.FX_REVENUE), fee),
        ),
    )


def gross_posting(
    transfer_id: str, debtor: str, creditor: str, currency: str, amount: int
) -> Posting:
    return Posting(
        f"gross:{transfer_id}",
        EntryKind.GROSS,
        currency,
        transfer_id,
        (Leg(account_id(debtor, currency), -amount), Leg(account_id(creditor, currency), amount)),
    )


class PostingAt(NamedTuple):
    """A posting to write, with its idempotency record's owner and amount
    and its time: what `LedgerRepository.post_many` takes, in order."""

    posting: Posting
    owner: str
    amount: int
    at: datetime


@dataclass(frozen=True, slots=True)
class PostingRecord:
    id: str
    kind: EntryKind
    currency: str
    owner: str
    amount: int
    reference: str
    posted_at: datetime


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    account_id: str
    seq: int
    kind: EntryKind
    amount: int
    balance_after: int
    posting_id: str
    reference: str
    posted_at: datetime
