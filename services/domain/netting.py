"""Netting math and the clearing decision for a batch. Pure: no I/O.

The engine loads the state a batch touches, calls `clear_batch`, and writes
the result back in the same serializable transaction. Positions therefore
change once per batch, however many transfers the batch holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from remitnet.services.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    Reason,
    RemitnetError,
)
from remitnet.services.domain.model import (
    BankStatus,
    Instruction,
    StoredTransfer,
    TransferStatus,
)


@dataclass(slots=True)
class AccountState:
    """Working copy of a bank's account within one transaction."""

    account_id: str
    bank: str
    currency: str
    balance: int
    net_debit_cap: int
    unsettled_net: int

    @property
    def headroom(self) -> int:
        return headroom(self.balance, self.net_debit_cap, self.unsettled_net)


def headroom(balance: int, net_debit_cap: int, unsettled_net: int) -> int:
    """What a bank can still send: prefunded liquidity plus its cap minus its
    net debit position (received credits count: that is what netting buys)."""
    return balance + net_debit_cap + unsettled_net


def within_limit(balance: int, net_debit_cap: int, unsettled_net: int) -> bool:
    """The invariant: a bank's net debit position never exceeds its
    prefunded liquidity plus its cap."""
    return max(0, -unsettled_net) <= balance + net_debit_cap


@dataclass(slots=True)
class PositionDelta:
    sent: int = 0
    received: int = 0
    sent_count: int = 0
    received_count: int = 0

    @property
    def net(self) -> int:
        return self.received - self.sent


@dataclass(frozen=True, slots=True)
class Accepted:
    transfer: StoredTransfer
    replayed: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    error: RemitnetError


Outcome = Accepted | Rejected


@dataclass(slots=True)
class BatchResult:
    outcomes: list[Outcome] = field(default_factory=list)
    new_transfers: list[StoredTransfer] = field(default_factory=list)
    # (cycle_id, bank) -> change of the bank's position in that cycle
    positions: dict[tuple[str, str], PositionDelta] = field(default_factory=dict)
    # account_id -> change of unsettled_net
    account_deltas: dict[str, int] = field(default_factory=dict)


def _duplicate(tid: str) -> Rejected:
    return Rejected(
        AlreadyExists(
            Reason.DUPLICATE_WITH_DIFFERENT_CONTENT,
            f"transfer {tid} exists with different content",
        )
    )


def clear_batch(
    items: Sequence[Instruction],
    *,
    existing: Mapping[str, StoredTransfer],
    banks: Mapping[str, BankStatus],
    accounts: Mapping[tuple[str, str], AccountState],
    open_cycles: Mapping[str, str],
    now: datetime,
) -> BatchResult:
    """Decide every item in order against the state it sees, updating the
    working account states as it goes, so that items later in the batch see
    the liquidity used by earlier ones."""
    result = BatchResult()
    accepted_here: dict[str, StoredTransfer] = {}
    outcomes = result.outcomes
    positions = result.positions
    deltas = result.account_deltas
    for item in items:
        tid = item.transfer_id
        prior = existing.get(tid) or accepted_here.get(tid)
        if prior is not None:
            outcomes.append(Accepted(prior, True) if item.same_content(prior) else _duplicate(tid))
            continue
        error = _check_parties(item, banks)
        if error is not None:
            outcomes.append(Rejected(error))
            continue
        debtor = accounts.get((item.debtor, item.currency))
        creditor = accounts.get((item.creditor, item.currency))
        cycle_id = open_cycles.get(item.currency)
        if debtor is None or creditor is None or cycle_id is None:
            bank = item.debtor if debtor is None else item.creditor
            outcomes.append(
                Rejected(
                    FailedPrecondition(
                        Reason.CURRENCY_NOT_SUPPORTED,
                        f"bank {bank} holds no {item.currency} account at the hub",
                        bank=bank,
                        currency=item.currency,
                    )
                )
            )
            continue
        if debtor.headroom < item.amount:
            outcomes.append(
                Rejected(
                    FailedPrecondition(
                        Reason.INSUFFICIENT_LIQUIDITY,
                        f"amount exceeds the headroom of {item.debtor} in {item.currency}",
                        bank=item.debtor,
                        currency=item.currency,
                    )
                )
            )
            continue
        debtor.unsettled_net -= item.amount
        creditor.unsettled_net += item.amount
        deltas[debtor.account_id] = deltas.get(debtor.account_id, 0) - item.amount
        deltas[creditor.account_id] = deltas.get(creditor.account_id, 0) + item.amount
        sent = positions.get((cycle_id, item.debtor))
        if sent is None:
            sent = positions[(cycle_id, item.debtor)] = PositionDelta()
        sent.sent += item.amount
        sent.sent_count += 1
        received = positions.get((cycle_id, item.creditor))
        if received is None:
            received = positions[(cycle_id, item.creditor)] = PositionDelta()
        received.received += item.amount
        received.received_count += 1
        stored = StoredTransfer(
            tid,
            item.debtor,
            item.creditor,
            item.currency,
            item.amount,
            item.remittance_info,
            TransferStatus.ACCEPTED,
            cycle_id,
            now,
        )
        accepted_here[tid] = stored
        result.new_transfers.append(stored)
        outcomes.append(Accepted(stored, False))
    return result


def _check_parties(item: Instruction, banks: Mapping[str, BankStatus]) -> RemitnetError | None:
    for bank in (item.debtor, item.creditor):
        status = banks.get(bank)
        if status is None:
            return NotFound(Reason.UNKNOWN_PARTICIPANT, f"no bank {bank} at the hub", bank=bank)
        if status is not BankStatus.ACTIVE:
            return FailedPrecondition(
                Reason.PARTICIPANT_SUSPENDED, f"bank {bank} is suspended", bank=bank
            )
    return None


@dataclass(frozen=True, slots=True)
class CycleTotals:
    transfer_count: int
    gross_value: int
    net_value: int


def cycle_totals(positions: Iterable[PositionDelta]) -> CycleTotals:
    """Totals of a cycle from its per-bank positions. Gross counts each
    transfer once (on its sending side); net is what settlement moves."""
    count = gross = net_value = 0
    for p in positions:
        count += p.sent_count
        gross += p.sent
        net_value += max(0, p.net)
    return CycleTotals(count, gross, net_value)


def check_nets_balance(nets: Mapping[str, int]) -> None:
    """Multilateral net positions of one currency sum to zero, or the books
    are broken and nothing may be posted."""
    total = sum(nets.values())
    if total != 0:
        raise AssertionError(f"net positions sum to {total}, not zero")
