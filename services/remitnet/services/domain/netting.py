"""Netting math and the clearing decision for a batch. Pure: no I/O.

The engine loads the state a batch touches, calls `clear_batch`, and writes
the result back in the same serializable transaction. Positions therefore
change once per batch, however many transfers the batch holds.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from remitnet.services.domain.account import headroom as headroom
from remitnet.services.domain.account import within_limit as within_limit
from remitnet.services.domain.bank import ParticipantRole
from remitnet.services.domain.decision import provider_refusal, quote_refusal, refusal
from remitnet.services.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    Reason,
    RemitnetError,
)
from remitnet.services.domain.fx import Quote
from remitnet.services.domain.lifecycle import EXPIRY_REASON, deadline_for
from remitnet.services.domain.model import (
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
    reserved: int = 0  # held by transfers awaiting confirmation

    @property
    def headroom(self) -> int:
        # The formula of `account.headroom`, inline: the batch path reads it
        # once per item.
        return self.balance + self.net_debit_cap + self.unsettled_net - self.reserved

    @property
    def within_limit(self) -> bool:
        return within_limit(self.balance, self.net_debit_cap, self.unsettled_net, self.reserved)


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
    # account_id -> change of `reserved` (transfers awaiting confirmation)
    reserve_deltas: dict[str, int] = field(default_factory=dict)


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
    roles: Mapping[str, ParticipantRole] | None = None,
    confirming: Container[str] = (),
    default_timeout_ms: int = 30_000,
) -> BatchResult:
    """Decide every item in order against the state it sees, updating the
    working account states as it goes, so that items later in the batch see
    the liquidity used by earlier ones, banks' and FX providers' alike.
    Accounts are keyed by (participant, currency).

    `banks` holds the status of the items' parties and of their quotes' FX
    providers; `roles` the roles of those of them that have other roles than
    BANK alone (a participant missing from it is a bank): an FX provider
    only is no party to a transfer (NOT_A_BANK).

    `cycle_sums` holds what each open cycle has accumulated before the batch
    (a cycle missing from it has nothing yet); an item that would take one of
    them, or an account's unsettled position or its balance once settled,
    past int64 is refused (AMOUNT_OUT_OF_RANGE) and the rest of the batch
    goes on.

    An accepted item whose creditor is in `confirming` (it requires
    confirmation), or that asks for confirmation itself, is RESERVED
    instead of netted: its debtor's amount (and a cross-currency one's FX
    provider's delivery) is held in the accounts' `reserved`, with a
    deadline `timeout_ms` (or `default_timeout_ms`) after `now`. Returns
    are never reserved."""
    not_banks = frozenset(
        code for code, role in (roles or {}).items() if not role & ParticipantRole.BANK
    )
    batch = _Batch(
        existing,
        banks,
        accounts,
        open_cycles,
        now,
        quotes or {},
        cycle_sums or {},
        not_banks,
        confirming,
        default_timeout_ms,
    )
    decide = batch.decide
    outcomes = batch.result.outcomes
    for item in items:
        outcomes.append(decide(item))
    one_answer_per_id(items, outcomes)
    return batch.result


class _Batch:
    """The state one `clear_batch` decides against and changes: its
    `decide` takes one item, and applies it when it is accepted."""

    __slots__ = (
        "accounts",
        "banks",
        "confirming",
        "default_timeout_ms",
        "deltas",
        "new_transfers",
        "not_banks",
        "now",
        "open_cycles",
        "positions",
        "quotes",
        "result",
        "seen",
        "sums",
        "used",
    )

    def __init__(
        self,
        existing: Mapping[str, StoredTransfer],
        banks: Mapping[str, BankStatus],
        accounts: Mapping[tuple[str, str], AccountState],
        open_cycles: Mapping[str, str],
        now: datetime,
        quotes: Mapping[str, Quote],
        cycle_sums: Mapping[str, CycleSums],
        not_banks: frozenset[str],
        confirming: Container[str],
        default_timeout_ms: int,
    ) -> None:
        self.result = result = BatchResult()
        self.positions = result.positions
        self.deltas = result.account_deltas
        self.used = result.used_quotes
        self.new_transfers = result.new_transfers
        # The transfers an id answers with: those stored before the batch,
        # and those it accepts (one look-up per item for both).
        self.seen: dict[str, StoredTransfer] = dict(existing)
        # A copy: the caller's sums are not changed.
        self.sums = {cid: CycleSums(s.gross, s.fee) for cid, s in cycle_sums.items()}
        self.banks = banks
        self.accounts = accounts
        self.open_cycles = open_cycles
        self.now = now
        self.quotes = quotes
        self.not_banks = not_banks
        self.confirming = confirming
        self.default_timeout_ms = default_timeout_ms

    def _reserves(self, item: Instruction) -> bool:
        return item.return_of is None and (item.confirm or item.creditor in self.confirming)

    def _reserve(
        self,
        item: Instruction,
        payer: AccountState,
        quote: Quote | None = None,
        provider: AccountState | None = None,
    ) -> Outcome:
        """Hold the item's amount in the debtor's headroom (and the quote's
        delivery in its FX provider's) until the creditor answers."""
        amount = item.amount
        delivered = 0 if quote is None else quote.terms.target_amount
        if payer.reserved + amount > INT64_MAX or (
            provider is not None and provider.reserved + delivered > INT64_MAX
        ):
            return _past_int64()
        deadline = deadline_for(self.now, item.timeout_ms, self.default_timeout_ms)
        stored = StoredTransfer.from_instruction(
            item, accepted_at=self.now, quote=quote, deadline=deadline
        )
        hold(payer, amount, self.result.reserve_deltas)
        if quote is not None:
            assert provider is not None
            hold(provider, delivered, self.result.reserve_deltas)
            self.used[quote.quote_id] = item.transfer_id
        self.seen[item.transfer_id] = stored
        self.new_transfers.append(stored)
        return Accepted(stored, False)

    def decide(self, item: Instruction) -> Outcome:
        """One item: a replay or a duplicate of a transfer seen before, a
        refusal (`decision.refusal`, then the int64 bounds), or the accepted
        transfer, its legs applied to the working state."""
        tid = item.transfer_id
        prior = self.seen.get(tid)
        if prior is not None:
            return Accepted(prior, True) if item.same_content(prior) else duplicate(tid)
        if item.gross:
            return Rejected(
                InvalidArgument(
                    Reason.GROSS_NOT_IN_BATCH, "gross transfers are submitted one at a time"
                )
            )
        quote_id = item.quote_id
        if quote_id is not None:
            return self._decide_cross_currency(item, quote_id)
        # One leg, debtor to creditor, in one currency, as nearly every
        # transfer of a batch is: applied directly, without building a Leg.
        accounts = self.accounts
        currency = item.currency
        cycle_id = self.open_cycles.get(currency)
        if cycle_id is None:
            payer = payee = None
        else:
            payer = accounts.get((item.debtor, currency))
            payee = accounts.get((item.creditor, currency))
        error = refusal(item, self.banks, payer, payee, currency, None, None, False, self.not_banks)
        if error is not None:
            return Rejected(error)
        assert payer is not None and payee is not None and cycle_id is not None
        if (self.confirming or item.confirm) and self._reserves(item):
            return self._reserve(item, payer)
        amount = item.amount
        sums = self.sums
        so_far = sums.get(cycle_id)
        if so_far is None:
            so_far = sums[cycle_id] = CycleSums()
        if so_far.gross + amount > INT64_MAX or not _fits(payer, payee, amount):
            return _past_int64()
        stored = StoredTransfer.from_instruction(item, accepted_at=self.now, cycle_id=cycle_id)
        move(payer, payee, cycle_id, amount, 0, self.positions, self.deltas)
        so_far.gross += amount
        self.seen[tid] = stored
        self.new_transfers.append(stored)
        return Accepted(stored, False)

    def _decide_cross_currency(self, item: Instruction, quote_id: str) -> Outcome:
        """An item with a quote: two legs through the quote's FX provider,
        debtor to provider in the item's currency and provider to creditor
        in the quote's target currency, applied together or not at all. (A
        quote without a provider, the hub's before FX providers, is refused
        by `Quote.refusal`: the hub takes no new position.)"""
        quote = self.quotes.get(quote_id)
        quote_error = quote_refusal(quote, item, self.now, self.used)
        banks, not_banks = self.banks, self.not_banks
        if quote_error is not None or quote is None:
            # The parties are checked before the quote.
            error = refusal(
                item, banks, None, None, item.currency, quote_error, None, False, not_banks
            )
            assert error is not None
            return Rejected(error)
        accounts = self.accounts
        currency = item.currency
        terms = quote.terms
        credit_currency = terms.target_currency
        cycle_id = self.open_cycles.get(currency)
        credit_cycle = self.open_cycles.get(credit_currency)
        payer = None if cycle_id is None else accounts.get((item.debtor, currency))
        payee = None if credit_cycle is None else accounts.get((item.creditor, credit_currency))
        error = refusal(item, banks, payer, payee, credit_currency, None, None, False, not_banks)
        if error is not None:
            return Rejected(error)
        assert cycle_id is not None and credit_cycle is not None
        provider = quote.provider
        assert provider is not None  # Quote.refusal refuses the hub's
        error = provider_refusal(
            provider,
            banks.get(provider),
            accounts.get((provider, currency)),
            accounts.get((provider, credit_currency)),
            currency,
            credit_currency,
            terms.target_amount,
        )
        if error is not None:
            return Rejected(error)
        if self._reserves(item):
            assert payer is not None
            return self._reserve(item, payer, quote, accounts.get((provider, credit_currency)))
        stored = StoredTransfer.from_instruction(
            item, accepted_at=self.now, cycle_id=cycle_id, quote=quote, credit_cycle_id=credit_cycle
        )
        legs = stored.legs()
        sums = self.sums
        if not _legs_fit(legs, accounts, sums):
            return _past_int64()
        self.used[quote.quote_id] = item.transfer_id
        for leg in legs:
            apply_leg(leg, accounts, self.positions, self.deltas, +1)
            _add(sums, leg.cycle_id, leg.amount, leg.fee)
        self.seen[item.transfer_id] = stored
        self.new_transfers.append(stored)
        return Accepted(stored, False)


def hold(account: AccountState, amount: int, reserve_deltas: dict[str, int]) -> None:
    """Reserve `amount` of the account's headroom (negative: release it)."""
    account.reserved += amount
    reserve_deltas[account.account_id] = reserve_deltas.get(account.account_id, 0) + amount


def release(
    transfer: StoredTransfer,
    accounts: Mapping[tuple[str, str], AccountState],
    reserve_deltas: dict[str, int],
) -> None:
    """Release exactly what a RESERVED transfer holds (`reservations`)."""
    for owner, currency, amount in transfer.reservations():
        hold(accounts[(owner, currency)], -amount, reserve_deltas)


def expire(
    transfer: StoredTransfer,
    now: datetime,
    accounts: Mapping[tuple[str, str], AccountState],
    reserve_deltas: dict[str, int],
) -> StoredTransfer:
    """A RESERVED transfer past its deadline, expired at `now` (AB05): its
    reservation released. The expirer, a late confirmation and a cancel
    that comes too late all end it this one way."""
    release(transfer, accounts, reserve_deltas)
    return transfer.resolved(TransferStatus.EXPIRED, now, EXPIRY_REASON)


def net_reserved(
    transfer: StoredTransfer,
    now: datetime,
    *,
    accounts: Mapping[tuple[str, str], AccountState],
    open_cycles: Mapping[str, str],
    sums: dict[str, CycleSums],
    positions: dict[tuple[str, str], PositionDelta],
    deltas: dict[str, int],
    reserve_deltas: dict[str, int],
) -> StoredTransfer | Rejected:
    """The creditor accepted a RESERVED transfer: release its reservation
    and net its legs into the then-open cycles of their currencies. The
    debtor's (and the provider's) headroom does not change: what was held
    is now a position. Refused only when a cycle total or a position would
    pass int64 (AMOUNT_OUT_OF_RANGE), or a currency has no open cycle
    (CYCLE_NOT_OPEN); the working state is unchanged then."""
    cycle_id = open_cycles.get(transfer.currency)
    credit_currency = transfer.creditor_currency
    credit_cycle = None if credit_currency is None else open_cycles.get(credit_currency)
    if cycle_id is None or (credit_currency is not None and credit_cycle is None):
        return Rejected(
            FailedPrecondition(Reason.CYCLE_NOT_OPEN, "no open cycle to net this transfer into")
        )
    accepted = transfer.resolved(
        TransferStatus.ACCEPTED, now, cycle_id=cycle_id, credit_cycle_id=credit_cycle
    )
    legs = accepted.legs()
    if not _legs_fit(legs, accounts, sums):
        return _past_int64()
    release(transfer, accounts, reserve_deltas)
    for leg in legs:
        apply_leg(leg, accounts, positions, deltas, +1)
        _add(sums, leg.cycle_id, leg.amount, leg.fee)
    return accepted


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
    stay within int64. (The bounds inline: one call per item.)"""
    paid = payer.unsettled_net - amount
    got = payee.unsettled_net + amount
    return (
        INT64_MIN <= paid <= INT64_MAX
        and INT64_MIN <= got <= INT64_MAX
        and INT64_MIN <= payer.balance + paid <= INT64_MAX
        and INT64_MIN <= payee.balance + got <= INT64_MAX
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


def take_back(
    transfer: StoredTransfer, accounts: Mapping[tuple[str, str], AccountState]
) -> tuple[dict[tuple[str, str], PositionDelta], dict[str, int]]:
    """Cancel a netted transfer in the working state: its legs taken back
    out of their cycles, returning the changes of positions and of accounts'
    unsettled nets. `accounts` holds both parties' (and for a cross-currency
    transfer the hub's) accounts of its legs. The creditor loses the credit,
    so its own limit must still hold after (CANCEL_EXCEEDS_CREDITOR_HEADROOM;
    the working state is then changed, and must be dropped)."""
    positions: dict[tuple[str, str], PositionDelta] = {}
    deltas: dict[str, int] = {}
    for leg in transfer.legs():
        apply_leg(leg, accounts, positions, deltas, -1)
    if not accounts[(transfer.creditor, transfer.credit_currency)].within_limit:
        raise FailedPrecondition(
            Reason.CANCEL_EXCEEDS_CREDITOR_HEADROOM,
            "the creditor has already used this credit; cancelling would breach its limit",
        )
    return positions, deltas


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
