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
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    RemitnetError,
)
from remitnet.services.domain.fx import Quote
from remitnet.services.domain.model import (
    HUB,
    BankStatus,
    Instruction,
    Leg,
    StoredTransfer,
    TransferStatus,
)
from remitnet.services.domain.money import INT64_MAX, INT64_MIN


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
    fee: int = 0  # the hub's FX spread earned in this cycle (hub rows only)

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
    # quote_id -> transfer that consumed it
    used_quotes: dict[str, str] = field(default_factory=dict)


def duplicate(tid: str) -> Rejected:
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
    quotes: Mapping[str, Quote] | None = None,
) -> BatchResult:
    """Decide every item in order against the state it sees, updating the
    working account states as it goes, so that items later in the batch see
    the liquidity used by earlier ones. Accounts are keyed by (participant,
    currency); the hub's own legs use the key (HUB, currency)."""
    result = BatchResult()
    accepted_here: dict[str, StoredTransfer] = {}
    # A batch holds a few dozen (debtor, creditor) pairs: check each once.
    party_checks: dict[tuple[str, str], RemitnetError | None] = {}
    outcomes = result.outcomes
    positions = result.positions
    deltas = result.account_deltas
    used = result.used_quotes
    quotes = quotes or {}
    for item in items:
        tid = item.transfer_id
        prior = existing.get(tid) or accepted_here.get(tid)
        if prior is not None:
            outcomes.append(Accepted(prior, True) if item.same_content(prior) else duplicate(tid))
            continue
        if item.gross:
            outcomes.append(
                Rejected(
                    InvalidArgument(
                        Reason.GROSS_NOT_IN_BATCH, "gross transfers are submitted one at a time"
                    )
                )
            )
            continue
        pair = (item.debtor, item.creditor)
        if pair in party_checks:
            error = party_checks[pair]
        else:
            error = party_checks[pair] = _check_parties(item, banks)
        if error is not None:
            outcomes.append(Rejected(error))
            continue
        quote = None
        if item.quote_id is not None:
            quote = quotes.get(item.quote_id)
            error = _check_quote(quote, item, now, used)
            if error is not None:
                outcomes.append(Rejected(error))
                continue
            assert quote is not None
            credit_currency = quote.terms.target_currency
            credit_amount = quote.terms.target_amount
        else:
            credit_currency = item.currency
            credit_amount = item.amount
        debtor = accounts.get((item.debtor, item.currency))
        cycle_id = open_cycles.get(item.currency)
        credit_cycle = open_cycles.get(credit_currency)
        missing = None
        if debtor is None or cycle_id is None:
            missing = (item.debtor, item.currency)
        elif (item.creditor, credit_currency) not in accounts or credit_cycle is None:
            missing = (item.creditor, credit_currency)
        elif quote is not None:
            for key in ((HUB, item.currency), (HUB, credit_currency)):
                if key not in accounts:
                    missing = key
        if missing is not None:
            outcomes.append(
                Rejected(
                    FailedPrecondition(
                        Reason.CURRENCY_NOT_SUPPORTED,
                        f"{missing[0]} holds no {missing[1]} account at the hub",
                        bank=missing[0],
                        currency=missing[1],
                    )
                )
            )
            continue
        assert debtor is not None and cycle_id is not None and credit_cycle is not None
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
        if quote is None:
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
        else:
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
                quote.quote_id,
                credit_currency,
                credit_amount,
                credit_cycle,
                quote.terms.fee,
            )
        if quote is None:
            # One leg, debtor to creditor: applied directly, without building
            # a Leg, as nearly every transfer of a batch is.
            payee = accounts[(item.creditor, item.currency)]
            if not _fits(debtor, payee, item.amount):
                outcomes.append(_past_int64())
                continue
            move(debtor, payee, cycle_id, item.amount, 0, positions, deltas)
        else:
            legs = stored.legs()
            if not all(_leg_fits(leg, accounts) for leg in legs):
                outcomes.append(_past_int64())
                continue
            used[quote.quote_id] = tid
            for leg in legs:
                apply_leg(leg, accounts, positions, deltas, +1)
        accepted_here[tid] = stored
        result.new_transfers.append(stored)
        outcomes.append(Accepted(stored, False))
    return result


def _past_int64() -> Rejected:
    # Only reachable with liquidity and caps near int64: refused here rather
    # than left to overflow a column inside a batch shared with other banks.
    return Rejected(
        InvalidArgument(
            Reason.AMOUNT_OUT_OF_RANGE, "the transfer would take a position past the int64 range"
        )
    )


def _fits(payer: AccountState, payee: AccountState, amount: int) -> bool:
    return payer.unsettled_net - amount >= INT64_MIN and payee.unsettled_net + amount <= INT64_MAX


def _leg_fits(leg: Leg, accounts: Mapping[tuple[str, str], AccountState]) -> bool:
    return _fits(
        accounts[(leg.payer, leg.currency)], accounts[(leg.payee, leg.currency)], leg.amount
    )


def apply_leg(
    leg: Leg,
    accounts: Mapping[tuple[str, str], AccountState],
    positions: dict[tuple[str, str], PositionDelta],
    deltas: dict[str, int],
    sign: int,
) -> None:
    """Add (sign +1) or take back (sign -1, a cancellation) one leg."""
    move(
        accounts[(leg.payer, leg.currency)],
        accounts[(leg.payee, leg.currency)],
        leg.cycle_id,
        leg.amount,
        leg.fee,
        positions,
        deltas,
        sign,
    )


def move(
    payer: AccountState,
    payee: AccountState,
    cycle_id: str,
    amount: int,
    fee: int,
    positions: dict[tuple[str, str], PositionDelta],
    deltas: dict[str, int],
    sign: int = 1,
) -> None:
    """Move `amount` from payer to payee within a cycle (sign -1 takes it
    back): their unsettled positions, their account deltas, and their
    positions in the cycle, where a transfer counts once on each side."""
    amount *= sign
    payer.unsettled_net -= amount
    payee.unsettled_net += amount
    deltas[payer.account_id] = deltas.get(payer.account_id, 0) - amount
    deltas[payee.account_id] = deltas.get(payee.account_id, 0) + amount
    sent = positions.get((cycle_id, payer.bank))
    if sent is None:
        sent = positions[(cycle_id, payer.bank)] = PositionDelta()
    sent.sent += amount
    sent.sent_count += sign
    sent.fee += sign * fee
    received = positions.get((cycle_id, payee.bank))
    if received is None:
        received = positions[(cycle_id, payee.bank)] = PositionDelta()
    received.received += amount
    received.received_count += sign


def _check_quote(
    quote: Quote | None, item: Instruction, now: datetime, used_here: Mapping[str, str]
) -> RemitnetError | None:
    if quote is None:
        return NotFound(Reason.QUOTE_NOT_FOUND, f"no quote {item.quote_id}")
    if quote.bank != item.debtor:
        return PermissionDenied(Reason.QUOTE_NOT_OWNED, "the quote was issued to another bank")
    if quote.used_by is not None or quote.quote_id in used_here:
        return FailedPrecondition(Reason.QUOTE_USED, "the quote has been used by another transfer")
    if quote.expires_at <= now:
        return FailedPrecondition(Reason.QUOTE_EXPIRED, "the quote has expired; ask for a new one")
    terms = quote.terms
    if (terms.source_currency, terms.source_amount) != (item.currency, item.amount):
        return InvalidArgument(
            Reason.QUOTE_MISMATCH,
            f"the quote sells {terms.source_amount} {terms.source_currency}; "
            f"the transfer's amount must match",
        )
    return None


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
