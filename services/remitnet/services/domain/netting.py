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


@dataclass(slots=True)
class CycleSums:
    """What an open cycle has accumulated over all its participants: its
    gross value (the sum of `sent`) and its FX fees. Every other total of the
    cycle is bounded by the gross: each participant's sent and received, the
    transfer counts (every amount is at least 1) and the net value (the
    positive nets sum to at most the received). So a cycle whose gross and
    fees fit int64 closes, reports and settles without overflow."""

    gross: int = 0
    fee: int = 0


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
    cycle_sums: Mapping[str, CycleSums] | None = None,
) -> BatchResult:
    """Decide every item in order against the state it sees, updating the
    working account states as it goes, so that items later in the batch see
    the liquidity used by earlier ones. Accounts are keyed by (participant,
    currency); the hub's own legs use the key (HUB, currency).

    `cycle_sums` holds what each open cycle has accumulated before the batch
    (a cycle missing from it has nothing yet); an item that would take one of
    them, or an account's unsettled position or its balance once settled,
    past int64 is refused (AMOUNT_OUT_OF_RANGE) and the rest of the batch
    goes on."""
    result = BatchResult()
    sums = {cid: CycleSums(s.gross, s.fee) for cid, s in (cycle_sums or {}).items()}
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
                        f"amount {item.amount} exceeds the headroom of {item.debtor} in "
                        f"{item.currency}, {debtor.headroom}",
                        bank=item.debtor,
                        currency=item.currency,
                        headroom=str(debtor.headroom),
                        amount=str(item.amount),
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
            so_far = sums.get(cycle_id)
            if so_far is None:
                so_far = sums[cycle_id] = CycleSums()
            if so_far.gross + item.amount > INT64_MAX or not _fits(debtor, payee, item.amount):
                outcomes.append(_past_int64())
                continue
            move(debtor, payee, cycle_id, item.amount, 0, positions, deltas)
            so_far.gross += item.amount
        else:
            legs = stored.legs()
            if not _legs_fit(legs, accounts, sums):
                outcomes.append(_past_int64())
                continue
            used[quote.quote_id] = tid
            for leg in legs:
                apply_leg(leg, accounts, positions, deltas, +1)
                _add(sums, leg.cycle_id, leg.amount, leg.fee)
        accepted_here[tid] = stored
        result.new_transfers.append(stored)
        outcomes.append(Accepted(stored, False))
    one_answer_per_id(items, outcomes)
    return result


def one_answer_per_id(items: Sequence[Instruction], outcomes: list[Outcome]) -> None:
    """One id, one answer, across a batch or a request. A batch can hold one
    id twice (a retry merged with its queued original, or a bank repeating
    an item in one request), and a large request may be committed in
    slices: items are decided in order, so an occurrence can be refused for
    liquidity that a later credit provides to a later occurrence. All the
    answers go out together, so such a refusal is turned into what a
    resubmission would get: the accepted transfer (replayed), or a
    duplicate for other content. `outcomes` is index-aligned with `items`."""
    if len({i.transfer_id for i in items}) == len(items):
        return
    accepted = {o.transfer.transfer_id: o.transfer for o in outcomes if isinstance(o, Accepted)}
    for index, item in enumerate(items):
        stored = accepted.get(item.transfer_id)
        if stored is not None and isinstance(outcomes[index], Rejected):
            same = item.same_content(stored)
            outcomes[index] = Accepted(stored, True) if same else duplicate(stored.transfer_id)


def _past_int64() -> Rejected:
    # Only reachable with liquidity, caps or cycle totals near int64: refused
    # here rather than left to overflow a column inside a batch shared with
    # other banks, or a cycle total that would keep the cycle from closing.
    return Rejected(
        InvalidArgument(
            Reason.AMOUNT_OUT_OF_RANGE,
            "the transfer would take a position or a cycle total past the int64 range",
        )
    )


def _in_int64(value: int) -> bool:
    return INT64_MIN <= value <= INT64_MAX


def _fits(payer: AccountState, payee: AccountState, amount: int) -> bool:
    """Both unsettled positions, and both balances once they are settled,
    stay within int64."""
    return (
        _in_int64(payer.unsettled_net - amount)
        and _in_int64(payee.unsettled_net + amount)
        and _in_int64(payer.balance + payer.unsettled_net - amount)
        and _in_int64(payee.balance + payee.unsettled_net + amount)
    )


def _adds_up(sums: Mapping[str, CycleSums], cycle_id: str, amount: int, fee: int) -> bool:
    """The cycle's gross value and fees stay within int64 (see CycleSums)."""
    so_far = sums.get(cycle_id)
    gross, fees = (so_far.gross, so_far.fee) if so_far is not None else (0, 0)
    return gross + amount <= INT64_MAX and _in_int64(fees + fee)


def _add(sums: dict[str, CycleSums], cycle_id: str, amount: int, fee: int) -> None:
    so_far = sums.get(cycle_id)
    if so_far is None:
        so_far = sums[cycle_id] = CycleSums()
    so_far.gross += amount
    so_far.fee += fee


def _legs_fit(
    legs: Sequence[Leg],
    accounts: Mapping[tuple[str, str], AccountState],
    sums: Mapping[str, CycleSums],
) -> bool:
    """Every leg fits its accounts and its cycle (the legs of one transfer
    are in different currencies, so they touch different accounts and
    cycles)."""
    return all(
        _fits(accounts[(leg.payer, leg.currency)], accounts[(leg.payee, leg.currency)], leg.amount)
        and _adds_up(sums, leg.cycle_id, leg.amount, leg.fee)
        for leg in legs
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
