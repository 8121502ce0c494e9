"""The invariants of the design brief, as pure checks over a snapshot of the
stored state: no I/O.

The audit trusts nothing the hub maintains incrementally: balances are
recomputed from ledger entries, positions and unsettled nets from the legs
of transfers (`StoredTransfer.legs`), the change feed from the transfers and
cycles it must tell. An `AuditSnapshot` holds every row the checks read, as
domain values, read in one consistent transaction (the SQL loader:
adapters/db/audit_snapshot.py). Each check takes the snapshot and returns
its violations, one sentence each: an empty list is a pass. `CHECKS` lists
them all and `run_checks` runs them; the service layer's `audit` (tests,
`make soak`) and the chaos checker (scripts/chaos.py) both run them, and the
chaos checker reuses single checks and `beyond_limit` for its own reports.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from remitnet.services.domain.account import Account, within_limit
from remitnet.services.domain.audit_trail import AuditRecord
from remitnet.services.domain.audit_trail import verify as verify_trail
from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.events import EventKind
from remitnet.services.domain.ledger import EntryKind, LedgerEntry, PostingRecord
from remitnet.services.domain.lifecycle import (
    EXPIRY_REASON,
    RECALL_REASONS,
    RECALL_REJECT_REASONS,
    REJECT_REASONS,
    RETURN_REASONS,
    Recall,
    RecallState,
)
from remitnet.services.domain.model import (
    HUB,
    AccountKind,
    CycleState,
    Leg,
    StoredTransfer,
    TransferStatus,
    account_id,
    position_account_id,
)
from remitnet.services.domain.netting import PositionDelta

#: Posting ids of cycle settlements (ledger.settlement_posting).
SETTLEMENT_PREFIX = "settle:"


@dataclass(frozen=True, slots=True)
class StoredEntry(LedgerEntry):
    """A ledger entry with the currency it is stored under: the per-currency
    sums are over that column, not over its account's currency."""

    currency: str


class FeedHead(NamedTuple):
    """A bank's feed head: its last event's number, and when its feed began
    (every change of the bank since then is in its feed)."""

    seq: int
    started_at: datetime


class StoredEvent(NamedTuple):
    """One stored event of a bank's change feed, as stored (not expanded).
    `kind` and `status` stay the stored integers (EventKind,
    TransferStatus), so an unknown value is checked, not raised on."""

    bank: str
    seq: int
    at: datetime
    kind: int
    status: int
    transfer_id: str | None
    cycle_id: str | None
    other_cycle_id: str | None
    item_count: int


@dataclass(frozen=True)
class AuditSnapshot:
    """Every row the checks read. A test builds one with only the fields
    its check reads; the loader fills them all from one transaction."""

    accounts: Sequence[Account] = ()
    entries: Sequence[StoredEntry] = ()
    postings: Sequence[PostingRecord] = ()
    cycles: Sequence[Cycle] = ()
    positions: Mapping[tuple[str, str], PositionDelta] = field(default_factory=dict)
    transfers: Sequence[StoredTransfer] = ()  # every one, cancelled and gross too
    cancelled_at: Mapping[str, datetime] = field(default_factory=dict)  # transfer id ->
    feed_heads: Mapping[str, FeedHead] = field(default_factory=dict)  # bank ->
    events: Sequence[StoredEvent] = ()
    trail: Sequence[AuditRecord] = ()  # the operator audit trail, in seq order
    recalls: Sequence[Recall] = ()  # every recall (migration 0009)

    def cycle_states(self) -> dict[str, CycleState]:
        return {c.id: c.state for c in self.cycles}


Check = Callable[[AuditSnapshot], list[str]]

#: Stored statuses of a transfer whose legs count (a netted one: positions,
#: unsettled nets); a RESERVED, REJECTED, EXPIRED or CANCELLED one counts
#: nowhere, whatever its cycle columns say (`check_resolutions` reports a
#: cycle on one of them).
_LIVE = frozenset({TransferStatus.ACCEPTED, TransferStatus.CLOSED, TransferStatus.SETTLED})
#: Stored statuses of a transfer that was reserved and is in no cycle:
#: awaiting confirmation, rejected, expired.
_UNNETTED = frozenset({TransferStatus.RESERVED, TransferStatus.REJECTED, TransferStatus.EXPIRED})


def live_legs(t: StoredTransfer) -> tuple[Leg, ...]:
    """The legs a transfer adds to positions and unsettled nets: those of a
    netted transfer not cancelled; none for any other."""
    return t.legs() if t.status in _LIVE else ()


def in_no_cycle(t: StoredTransfer) -> bool:
    """A transfer that must be in no cycle: RESERVED, REJECTED, EXPIRED, or
    CANCELLED while reserved (a deadline and no cycle)."""
    return t.status in _UNNETTED or (
        t.status is TransferStatus.CANCELLED and t.deadline is not None and not t.cycle_id
    )


# Derived figures ----------------------------------------------------------------


def expected_positions(s: AuditSnapshot) -> dict[tuple[str, str], PositionDelta]:
    """(cycle, participant) -> the position its live transfers' legs add up to."""
    out: dict[tuple[str, str], PositionDelta] = defaultdict(PositionDelta)
    for t in s.transfers:
        for leg in live_legs(t):
            d = out[(leg.cycle_id, leg.payer)]
            d.sent += leg.amount
            d.sent_count += 1
            d.fee += leg.fee
            c = out[(leg.cycle_id, leg.payee)]
            c.received += leg.amount
            c.received_count += 1
    return dict(out)


def unsettled_nets(s: AuditSnapshot) -> dict[str, int]:
    """Account id -> the net of the live transfers' legs in cycles not settled
    (what the account's unsettled_net must be)."""
    states = s.cycle_states()
    out: dict[str, int] = defaultdict(int)
    for t in s.transfers:
        for leg in live_legs(t):
            if states.get(leg.cycle_id) is not CycleState.SETTLED:
                out[position_account_id(leg.payer, leg.currency)] -= leg.amount
                out[position_account_id(leg.payee, leg.currency)] += leg.amount
    return dict(out)


def reserved_amounts(s: AuditSnapshot) -> dict[str, int]:
    """Account id -> what the RESERVED transfers hold on it (what the
    account's `reserved` must be): each one's `reservations()`."""
    out: dict[str, int] = defaultdict(int)
    for t in s.transfers:
        if t.status is TransferStatus.RESERVED:
            for owner, currency, amount in t.reservations():
                out[account_id(owner, currency)] += amount
    return dict(out)


def is_settlement(entry: LedgerEntry) -> bool:
    """An entry of a cycle's settlement posting (its reference is the cycle)."""
    return entry.kind == EntryKind.SETTLEMENT or entry.posting_id.startswith(SETTLEMENT_PREFIX)


def beyond_limit(accounts: Iterable[Account]) -> list[Account]:
    """The liquidity accounts whose net debit position plus reservations
    exceeds their liquidity plus cap."""
    return [
        a
        for a in accounts
        if a.kind == AccountKind.LIQUIDITY
        and not within_limit(a.balance, a.net_debit_cap, a.unsettled_net, a.reserved)
    ]


def _figures(p: PositionDelta | None) -> list[int] | None:
    return None if p is None else [p.sent, p.received, p.sent_count, p.received_count, p.fee]


def _state_name(state: CycleState | None) -> str:
    return "missing" if state is None else state.name


def _status_name(status: int) -> str:
    """A stored status integer's name (an unknown one as its number)."""
    try:
        return TransferStatus(status).name
    except ValueError:
        return str(status)


def _recall_state_name(state: int) -> str:
    try:
        return RecallState(state).name
    except ValueError:
        return str(state)


# Ledger ---------------------------------------------------------------------------


def check_ledger(s: AuditSnapshot) -> list[str]:
    """Every currency's ledger entries sum to zero."""
    totals: Counter[str] = Counter()
    for e in s.entries:
        totals[e.currency] += e.amount
    return [f"{c} ledger entries sum to {t}, not zero" for c, t in sorted(totals.items()) if t]


def check_chains(s: AuditSnapshot) -> list[str]:
    """Each account's entries are numbered 1, 2, 3, ... and each one's
    balance_after is the previous one's plus its amount."""
    bad: list[str] = []
    last: dict[str, tuple[int, int]] = {}
    for e in sorted(s.entries, key=lambda e: (e.account_id, e.seq)):
        seq, balance = last.get(e.account_id, (0, 0))
        if e.seq != seq + 1 or e.balance_after != balance + e.amount:
            bad.append(f"ledger entry {e.account_id}#{e.seq} breaks the account's chain")
        last[e.account_id] = (e.seq, e.balance_after)
    return bad


def check_postings(s: AuditSnapshot) -> list[str]:
    """Every entry belongs to a recorded posting of its currency and kind,
    and each posting's entries sum to zero."""
    bad: list[str] = []
    recorded = {p.id: p for p in s.postings}
    totals: Counter[str] = Counter()
    for e in s.entries:
        totals[e.posting_id] += e.amount
        p = recorded.get(e.posting_id)
        if p is None:
            bad.append(
                f"ledger entry {e.account_id}#{e.seq} names posting {e.posting_id}, "
                "which is not recorded"
            )
        elif (p.currency, p.kind) != (e.currency, e.kind):
            bad.append(
                f"ledger entry {e.account_id}#{e.seq} is {e.currency} {e.kind.name}, "
                f"its posting {p.id} is {p.currency} {p.kind.name}"
            )
    bad += [
        f"posting {pid} entries sum to {total}, not zero"
        for pid, total in sorted(totals.items())
        if total
    ]
    return bad


# Accounts -------------------------------------------------------------------------


def check_balances(s: AuditSnapshot) -> list[str]:
    """Each account's balance is the sum of its entries."""
    sums: Counter[str] = Counter()
    for e in s.entries:
        sums[e.account_id] += e.amount
    return [
        f"account {a.id} balance {a.balance} != sum of its entries {sums.get(a.id, 0)}"
        for a in s.accounts
        if a.balance != sums.get(a.id, 0)
    ]


def check_balance_sums(s: AuditSnapshot) -> list[str]:
    """Every currency's account balances sum to zero."""
    totals: Counter[str] = Counter()
    for a in s.accounts:
        totals[a.currency] += a.balance
    return [f"{c} account balances sum to {t}, not zero" for c, t in sorted(totals.items()) if t]


def check_unsettled(s: AuditSnapshot) -> list[str]:
    """Each liquidity and FX account's unsettled_net is the net of the live
    transfers' legs in cycles not yet settled."""
    want = unsettled_nets(s)
    return [
        f"account {a.id} unsettled_net {a.unsettled_net} != transfers {want.get(a.id, 0)}"
        for a in s.accounts
        if a.kind in (AccountKind.LIQUIDITY, AccountKind.FX)
        and a.unsettled_net != want.get(a.id, 0)
    ]


def check_limits(s: AuditSnapshot) -> list[str]:
    """No participant, bank or FX provider, is beyond its liquidity plus cap
    with its net debit position and its reservations (an FX provider's
    accounts are liquidity accounts like a bank's)."""
    return [f"account {a.id} is beyond its liquidity plus cap" for a in beyond_limit(s.accounts)]


def check_reserved(s: AuditSnapshot) -> list[str]:
    """Each account's `reserved` is what the RESERVED transfers hold on it
    (`StoredTransfer.reservations`: the debtor's amount, and across
    currencies the FX provider's delivery), never negative: a released
    reservation released exactly what it held."""
    want = reserved_amounts(s)
    bad: list[str] = []
    for a in s.accounts:
        if a.reserved < 0:
            bad.append(f"account {a.id} reserved {a.reserved} is negative")
        if a.reserved != want.get(a.id, 0):
            bad.append(
                f"account {a.id} reserved {a.reserved} != "
                f"its reserved transfers {want.get(a.id, 0)}"
            )
    known = {a.id for a in s.accounts}
    bad += [
        f"reserved transfers hold {amount} on {aid}, which is no account"
        for aid, amount in sorted(want.items())
        if aid not in known
    ]
    return bad


# Transfers, positions, cycles -----------------------------------------------------------


def check_quotes(s: AuditSnapshot) -> list[str]:
    """A quote is used by one transfer at most."""
    users = Counter(t.quote_id for t in s.transfers if t.quote_id is not None)
    return [f"quote {q} was used by {n} transfers" for q, n in sorted(users.items()) if n > 1]


def check_positions(s: AuditSnapshot) -> list[str]:
    """Each stored position is what its cycle's live transfers' legs add up to."""
    expected = expected_positions(s)
    stored = s.positions
    zero = PositionDelta()
    return [
        f"position {key} is {_figures(stored.get(key))}, "
        f"transfers say {_figures(expected.get(key))}"
        for key in sorted(set(expected) | set(stored))
        if expected.get(key, zero) != stored.get(key, zero)
    ]


def check_cycle_nets(s: AuditSnapshot) -> list[str]:
    """Each cycle's net positions sum to zero."""
    nets: Counter[str] = Counter()
    for (cid, _bank), p in s.positions.items():
        nets[cid] += p.net
    return [
        f"cycle {cid} net positions sum to {n}, not zero" for cid, n in sorted(nets.items()) if n
    ]


def check_cycle_totals(s: AuditSnapshot) -> list[str]:
    """A closed or settled cycle's sealed totals (transfer count, gross
    value, net value) are its positions' sums."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for (cid, _bank), p in s.positions.items():
        totals[cid][0] += p.sent_count
        totals[cid][1] += p.sent
        totals[cid][2] += max(0, p.net)
    bad: list[str] = []
    for c in s.cycles:
        sealed = [c.transfer_count, c.gross_value, c.net_value]
        if c.state is not CycleState.OPEN and sealed != totals.get(c.id, [0, 0, 0]):
            bad.append(f"cycle {c.id} totals {sealed} differ from its positions")
    return bad


# The lifecycle: confirmation, expiry, returns, recalls ------------------------------


def _cycles_of(t: StoredTransfer) -> str:
    return "+".join(c for c in (t.cycle_id, t.creditor_cycle_id) if c)


def check_resolutions(s: AuditSnapshot) -> list[str]:
    """A transfer's lifecycle columns agree with its status.

    Never reserved (no deadline): netted at once into a cycle, or settled
    gross, and never resolved. Reserved (a deadline after it was taken):
    RESERVED, REJECTED, EXPIRED and CANCELLED while reserved are in no cycle
    (so in no position and no leg sum); one that left RESERVED did so at
    `resolved_at`, after it was taken; accepted strictly before its deadline
    (no transfer is both accepted and expired, the rule of
    `lifecycle.confirmation_step`), its cross-currency creditor leg in a
    cycle too; rejected before its deadline with an ExternalStatusReason1Code
    of REJECT_REASONS; expired at or after its deadline with AB05; cancelled
    while reserved before its deadline (past it the reservation is expired,
    whoever asks), when it was cancelled (`cancelled_at`)."""
    bad: list[str] = []
    for t in s.transfers:
        tid, status, deadline, resolved_at = t.transfer_id, t.status, t.deadline, t.resolved_at
        name = status.name
        if t.netted and t.creditor_currency is not None and t.creditor_cycle_id is None:
            bad.append(f"transfer {tid} is netted across currencies without its creditor's cycle")
        if deadline is None:
            if status in _UNNETTED:
                bad.append(f"transfer {tid} is {name} but was never reserved (no deadline)")
            elif not t.netted and not t.gross:
                bad.append(f"transfer {tid} is {name} in no cycle, and was never reserved")
            if resolved_at is not None:
                bad.append(f"transfer {tid} was never reserved but was resolved at {resolved_at}")
            continue
        if t.gross or t.return_of is not None:
            what = "a gross transfer" if t.gross else "a return"
            bad.append(f"transfer {tid} has a deadline, but {what} is never reserved")
            continue
        if deadline <= t.accepted_at:
            bad.append(f"transfer {tid} has its deadline {deadline} before it was taken")
        if in_no_cycle(t) and (t.cycle_id or t.creditor_cycle_id is not None):
            bad.append(f"transfer {tid} is {name} but is in cycle {_cycles_of(t)}")
        if status is TransferStatus.RESERVED:
            if resolved_at is not None:
                bad.append(f"transfer {tid} is RESERVED but was resolved at {resolved_at}")
            continue
        if resolved_at is None:
            bad.append(f"transfer {tid} left RESERVED ({name}) with no resolved_at")
            continue
        if resolved_at < t.accepted_at:
            bad.append(f"transfer {tid} was resolved at {resolved_at}, before it was reserved")
        if t.netted:  # accepted, whatever became of it since (an operator's cancel)
            if status not in _LIVE and status is not TransferStatus.CANCELLED:
                continue  # in a cycle while REJECTED or EXPIRED: reported above
            if resolved_at >= deadline:
                bad.append(
                    f"transfer {tid} was accepted at {resolved_at}, not before its deadline "
                    f"{deadline}: accepted and expired"
                )
        elif status is TransferStatus.EXPIRED:
            if t.reason != EXPIRY_REASON:
                bad.append(f"transfer {tid} expired with reason {t.reason}, not {EXPIRY_REASON}")
            if resolved_at < deadline:
                bad.append(
                    f"transfer {tid} expired at {resolved_at}, before its deadline {deadline}"
                )
        elif status is TransferStatus.REJECTED:
            if t.reason not in REJECT_REASONS:
                bad.append(f"transfer {tid} was rejected with reason {t.reason}, no status reason")
            if resolved_at >= deadline:
                bad.append(
                    f"transfer {tid} was rejected at {resolved_at}, not before its deadline "
                    f"{deadline}"
                )
        elif status is TransferStatus.CANCELLED:
            if resolved_at >= deadline:  # past it, a reservation is expired, whoever asks
                bad.append(
                    f"transfer {tid} was cancelled at {resolved_at}, not before its deadline "
                    f"{deadline}: it had expired"
                )
            cancelled = s.cancelled_at.get(tid)
            if cancelled is not None and cancelled != resolved_at:
                bad.append(
                    f"transfer {tid} was cancelled while reserved at {cancelled}, "
                    f"but resolved at {resolved_at}"
                )
        else:
            bad.append(f"transfer {tid} is {name} in no cycle after its reservation")
    return bad


def check_returns(s: AuditSnapshot) -> list[str]:
    """Each return (`return_of`) returns, whole and once, a payment the
    hub holds: the original exists, names it as its return (`returned_by`),
    and was netted or settled gross and not cancelled, reserved, rejected or
    expired; the return goes from the original's creditor to its debtor, of
    exactly what the creditor received (its credit amount and currency), in
    the original's own currency, with an ExternalReturnReason1Code, after
    the original, never reserved, and is itself never returned. A transfer
    that names a return names one of its own."""
    bad: list[str] = []
    by_id = {t.transfer_id: t for t in s.transfers}
    counts = Counter(t.return_of for t in s.transfers if t.return_of is not None)
    bad += [f"transfer {oid} was returned {n} times" for oid, n in sorted(counts.items()) if n > 1]
    for t in s.transfers:
        if t.returned_by is not None:
            back = by_id.get(t.returned_by)
            if back is None or back.return_of != t.transfer_id:
                bad.append(
                    f"transfer {t.transfer_id} names {t.returned_by} as its return, "
                    "which returns something else or does not exist"
                )
        if t.return_of is None:
            continue
        rid, oid = t.transfer_id, t.return_of
        o = by_id.get(oid)
        if o is None:
            bad.append(f"return {rid} returns {oid}, which does not exist")
            continue
        if o.returned_by != rid:
            bad.append(f"return {rid} of {oid}: the original names {o.returned_by} as its return")
        if (t.debtor, t.creditor) != (o.creditor, o.debtor):
            bad.append(
                f"return {rid} of {oid} goes {t.debtor} -> {t.creditor}, "
                f"not {o.creditor} -> {o.debtor}"
            )
        if (t.amount, t.currency) != (o.credit_amount, o.credit_currency):
            bad.append(
                f"return {rid} of {oid} is {t.amount} {t.currency}, the original credited "
                f"{o.credit_amount} {o.credit_currency}"
            )
        if t.credit_currency != o.currency:
            bad.append(
                f"return {rid} of {oid} pays back in {t.credit_currency}, "
                f"the original was paid in {o.currency}"
            )
        if t.reason not in RETURN_REASONS:
            bad.append(f"return {rid} of {oid} has reason {t.reason}, no return reason")
        if t.deadline is not None:
            bad.append(f"return {rid} of {oid} was reserved: a return is netted at once")
        if t.returned_by is not None:
            bad.append(f"return {rid} of {oid} was itself returned by {t.returned_by}")
        if o.return_of is not None:
            bad.append(f"return {rid} returns {oid}, itself a return of {o.return_of}")
        if o.status not in _LIVE or not (o.netted or o.gross):
            bad.append(f"return {rid} returns {oid}, which is {o.status.name}")
        if t.accepted_at < (o.resolved_at or o.accepted_at):
            bad.append(f"return {rid} of {oid} was taken before the original was accepted")
    return bad


def check_recalls(s: AuditSnapshot) -> list[str]:
    """One recall per transfer and per recall id, of a payment the hub took
    (netted or gross, no return), by its debtor to its creditor, with an
    ExternalCancellationReason1Code, requested after the transfer was
    accepted and open until a deadline after that. REQUESTED: unanswered,
    and its transfer not returned (a return answers it). ACCEPTED: answered
    by the transfer's return (`return_id` is its `returned_by`). REJECTED:
    before its deadline, with a reason of RECALL_REJECT_REASONS. EXPIRED: at
    or after its deadline, unanswered."""
    bad: list[str] = []
    by_id = {t.transfer_id: t for t in s.transfers}
    per_transfer = Counter(r.transfer_id for r in s.recalls)
    bad += [f"transfer {t} has {n} recalls" for t, n in sorted(per_transfer.items()) if n > 1]
    per_id = Counter(r.recall_id for r in s.recalls)
    bad += [f"recall id {r} is used {n} times" for r, n in sorted(per_id.items()) if n > 1]
    for r in s.recalls:
        tid, state = r.transfer_id, r.state
        what = f"the recall of {tid}"
        t = by_id.get(tid)
        if t is None:
            bad.append(f"{what} ({r.recall_id}) recalls a transfer that does not exist")
            continue
        if (r.debtor, r.creditor) != (t.debtor, t.creditor):
            bad.append(
                f"{what} is between {r.debtor} and {r.creditor}, "
                f"the transfer between {t.debtor} and {t.creditor}"
            )
        if r.reason not in RECALL_REASONS:
            bad.append(f"{what} has reason {r.reason}, no cancellation reason")
        if t.return_of is not None or not (t.netted or t.gross):
            kind = "a return" if t.return_of is not None else t.status.name
            bad.append(f"{what} recalls {kind}, not a payment the creditor holds")
        if r.requested_at < (t.resolved_at or t.accepted_at):
            bad.append(f"{what} was requested before the transfer was accepted")
        if r.deadline <= r.requested_at:
            bad.append(f"{what} has its deadline {r.deadline} before it was requested")
        if state is RecallState.REQUESTED:
            if r.answered_at is not None or r.answer_reason is not None or r.return_id is not None:
                bad.append(f"{what} is REQUESTED but has an answer")
            if t.returned_by is not None:
                bad.append(f"{what} is REQUESTED but the transfer was returned by {t.returned_by}")
            continue
        if r.answered_at is None:
            bad.append(f"{what} is {state.name} with no answered_at")
            continue
        if r.answered_at < r.requested_at:
            bad.append(f"{what} was answered before it was requested")
        if state is RecallState.ACCEPTED:
            if r.return_id is None or r.return_id != t.returned_by:
                bad.append(
                    f"{what} is ACCEPTED with return {r.return_id}, "
                    f"the transfer's return is {t.returned_by}"
                )
            if r.answer_reason is not None:
                bad.append(f"{what} is ACCEPTED with a rejection reason {r.answer_reason}")
        elif state is RecallState.REJECTED:
            if r.answer_reason not in RECALL_REJECT_REASONS:
                bad.append(
                    f"{what} was rejected with reason {r.answer_reason}, no rejection reason"
                )
            if r.answered_at >= r.deadline:
                bad.append(f"{what} was rejected at {r.answered_at}, not before its deadline")
            if r.return_id is not None:
                bad.append(f"{what} is REJECTED but names return {r.return_id}")
        else:  # EXPIRED
            if r.answered_at < r.deadline:
                bad.append(f"{what} expired at {r.answered_at}, before its deadline {r.deadline}")
            if r.answer_reason is not None or r.return_id is not None:
                bad.append(f"{what} is EXPIRED but has an answer")
    return bad


# Settlement -----------------------------------------------------------------------


def check_settled_once(s: AuditSnapshot) -> list[str]:
    """A cycle is settled by one posting, with one entry per participant's
    account (the hub's settlement account is every entry's counterpart),
    and only once it is SETTLED."""
    bad: list[str] = []
    states = s.cycle_states()
    per_account: Counter[tuple[str, str]] = Counter()
    postings: dict[str, set[str]] = defaultdict(set)
    for e in s.entries:
        if not is_settlement(e):
            continue
        if not e.account_id.endswith(f"/{AccountKind.SETTLEMENT}"):
            per_account[(e.reference, e.account_id)] += 1
        postings[e.reference].add(e.posting_id)
    for (cid, aid), n in sorted(per_account.items()):
        if n > 1:
            bad.append(f"cycle {cid} settled {n} times on {aid}")
    for cid, ids in sorted(postings.items()):
        if len(ids) > 1:
            bad.append(f"cycle {cid} has {len(ids)} settlement postings: {sorted(ids)}")
        state = states.get(cid)
        if state is not CycleState.SETTLED:
            bad.append(f"cycle {cid} has settlement postings but is {_state_name(state)}")
    return bad


def check_settlement_nets(s: AuditSnapshot) -> list[str]:
    """A settled cycle posted each participant's net position to its account,
    once, and nothing to an account without a position in it."""
    posted: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for e in s.entries:
        if is_settlement(e) and not e.account_id.endswith(f"/{AccountKind.SETTLEMENT}"):
            posted[e.reference][e.account_id].append(e.amount)
    nets: dict[str, dict[str, int]] = defaultdict(dict)  # cycle -> bank -> net
    for (cid, bank), p in s.positions.items():
        nets[cid][bank] = p.net
    bad: list[str] = []
    for c in s.cycles:
        if c.state is not CycleState.SETTLED:
            continue
        amounts_of = posted.get(c.id, {})
        accounts: set[str] = set()
        for bank, net in sorted(nets.get(c.id, {}).items()):
            aid = position_account_id(bank, c.currency)
            accounts.add(aid)
            amounts = amounts_of.get(aid, [])
            if net != sum(amounts) or len(amounts) > 1:
                bad.append(f"cycle {c.id} posted {amounts} to {aid}, net is {net}")
        for aid, amounts in sorted(amounts_of.items()):
            if aid not in accounts:
                bad.append(f"cycle {c.id} posted {amounts} to {aid}, which has no position in it")
    return bad


def check_fx_revenue(s: AuditSnapshot) -> list[str]:
    """The hub's FX revenue in each currency is the spreads of its settled
    cycles (realised at settlement)."""
    fees: Counter[str] = Counter()
    for (cid, _bank), p in s.positions.items():
        fees[cid] += p.fee
    due: Counter[str] = Counter()
    for c in s.cycles:
        if c.state is CycleState.SETTLED:
            due[c.currency] += fees.get(c.id, 0)
    revenue: Counter[str] = Counter()
    for a in s.accounts:
        if a.kind == AccountKind.FX_REVENUE:
            revenue[a.currency] += a.balance
    return [
        f"{c} FX revenue {revenue.get(c, 0)} != spreads of settled cycles {due.get(c, 0)}"
        for c in sorted(set(revenue) | set(due))
        if revenue.get(c, 0) != due.get(c, 0)
    ]


def check_hub_unfunded(s: AuditSnapshot) -> list[str]:
    """The hub holds no unfunded position: FX providers fund every
    conversion since they exist. A transfer that names an FX provider is a
    cross-currency one, its provider is not the hub and none of its legs is
    paid by or to the hub; the hub's positions are those of the transfers it
    cleared as dealer before FX providers (`fx_provider` None), and none of
    those was accepted after a transfer through a provider."""
    bad: list[str] = []
    hub_positions: dict[str, PositionDelta] = defaultdict(PositionDelta)
    first_funded: StoredTransfer | None = None
    last_dealt: StoredTransfer | None = None
    for t in s.transfers:
        if t.fx_provider is not None:
            # A cross-currency transfer has a quote and a creditor currency;
            # its creditor leg's cycle only once netted (a reserved,
            # rejected or expired one has none: `check_resolutions`).
            if t.creditor_currency is None or t.quote_id is None:
                bad.append(
                    f"transfer {t.transfer_id} names FX provider {t.fx_provider} "
                    "but is no cross-currency transfer"
                )
            elif t.fx_provider == HUB or any(HUB in (g.payer, g.payee) for g in t.legs()):
                bad.append(
                    f"transfer {t.transfer_id} through an FX provider has a leg of the hub's"
                )
            if first_funded is None or t.accepted_at < first_funded.accepted_at:
                first_funded = t
            continue
        if t.creditor_cycle_id is None:
            continue
        if last_dealt is None or t.accepted_at > last_dealt.accepted_at:
            last_dealt = t
        for leg in live_legs(t):
            for party, sent in ((leg.payer, True), (leg.payee, False)):
                if party != HUB:
                    continue
                d = hub_positions[leg.cycle_id]
                if sent:
                    d.sent += leg.amount
                    d.sent_count += 1
                    d.fee += leg.fee
                else:
                    d.received += leg.amount
                    d.received_count += 1
    zero = PositionDelta()
    stored = {cid: p for (cid, owner), p in s.positions.items() if owner == HUB}
    bad += [
        f"the hub's position in cycle {cid} is {_figures(stored.get(cid))}, its transfers "
        f"from before FX providers say {_figures(hub_positions.get(cid))}"
        for cid in sorted(set(stored) | set(hub_positions))
        if stored.get(cid, zero) != hub_positions.get(cid, zero)
    ]
    if (
        first_funded is not None
        and last_dealt is not None
        and last_dealt.accepted_at > first_funded.accepted_at
    ):
        bad.append(
            f"transfer {last_dealt.transfer_id} took a position of the hub's after "
            f"transfer {first_funded.transfer_id} went through an FX provider"
        )
    return bad


# The change feed --------------------------------------------------------------------


class _Told:
    """What the feeds told: per (bank, transfer or cycle or leg pair, status)
    the TRANSFER, CYCLE and LEGS events that told it; what LEGS events
    count; what BATCH and RESOLVED events count per (bank, time, status)
    (each stands for the bank's transfers taken, or resolved, then with that
    status); and the times of RECALL events per (bank, transfer, state)."""

    def __init__(self, events: Iterable[StoredEvent]) -> None:
        self.said: Counter[tuple[str, str, int]] = Counter()
        self.leg_items: Counter[tuple[str, str, int]] = Counter()
        self.batch_items: Counter[tuple[str, datetime, int]] = Counter()
        self.resolved_items: Counter[tuple[str, datetime, int]] = Counter()
        self.recalls: dict[tuple[str, str, int], list[datetime]] = defaultdict(list)
        self.pair_sizes: Counter[tuple[str, str, int]] = Counter()
        self.bad: list[str] = []
        for e in events:
            kind = e.kind
            if kind == EventKind.BATCH:
                self.batch_items[(e.bank, e.at, e.status)] += e.item_count
            elif kind == EventKind.RESOLVED:
                self.resolved_items[(e.bank, e.at, e.status)] += e.item_count
            elif kind == EventKind.LEGS:
                # One event tells every transfer of the bank with these two legs.
                pair = _pair(str(e.cycle_id), str(e.other_cycle_id))
                self.said[(e.bank, pair, e.status)] += 1
                self.leg_items[(e.bank, pair, e.status)] += e.item_count
            elif kind == EventKind.TRANSFER:
                self.said[(e.bank, str(e.transfer_id), e.status)] += 1
            elif kind == EventKind.CYCLE:
                self.said[(e.bank, str(e.cycle_id), e.status)] += 1
            elif kind == EventKind.RECALL:
                self.recalls[(e.bank, str(e.transfer_id), e.status)].append(e.at)
            # an unknown kind: check_feed_order reports it

    def once(
        self, bank: str, key: str, status: TransferStatus, due: bool, pair: str | None = None
    ) -> None:
        """`key` (a transfer or cycle) told `status` once if due, never twice;
        a cross-currency transfer may be told by the LEGS event of its pair."""
        told = self.said[(bank, key, int(status))]
        if pair is not None:
            told += self.said[(bank, pair, int(status))]
            self.pair_sizes[(bank, pair, int(status))] += 1
        if told > 1 or (due and told == 0) or (not due and told):
            self.bad.append(f"feed of {bank}: {key} {status.name} told {told} times")


def _pair(a: str, b: str) -> str:
    return "+".join(sorted((a, b)))


#: The kinds of set events, which stand for every transfer of the bank they
#: match (feed expansion): one per bank, time and status.
_SET_KINDS = {int(EventKind.BATCH): "batch", int(EventKind.RESOLVED): "RESOLVED"}


def check_feed_order(s: AuditSnapshot) -> list[str]:
    """Each bank's events are numbered 1..head in time order, of known
    kinds, with one BATCH event and one RESOLVED event per bank, time and
    status (each stands for all the bank's transfers of that time and
    status: two would tell them twice)."""
    bad: list[str] = []
    kinds = {int(k) for k in EventKind}
    last: dict[str, tuple[int, datetime | None]] = {}
    sets: set[tuple[str, datetime, int, int]] = set()
    for e in sorted(s.events, key=lambda e: (e.bank, e.seq)):
        prev_seq, prev_at = last.get(e.bank, (0, None))
        if e.seq != prev_seq + 1 or (prev_at is not None and e.at < prev_at):
            bad.append(f"feed of {e.bank}: event {e.seq} follows {prev_seq} out of order")
        last[e.bank] = (e.seq, e.at)
        if e.kind not in kinds:
            bad.append(f"feed of {e.bank}: event {e.seq} is of unknown kind {e.kind}")
        set_kind = _SET_KINDS.get(e.kind)
        if set_kind is not None:
            key = (e.bank, e.at, e.kind, e.status)
            if key in sets:  # a set event must name its set alone
                status = "" if e.kind == EventKind.BATCH else f" {_status_name(e.status)}"
                bad.append(f"feed of {e.bank}: two {set_kind}{status} events at {e.at}")
            sets.add(key)
    for bank, head in sorted(s.feed_heads.items()):
        if last.get(bank, (0, None))[0] != head.seq:
            bad.append(
                f"feed of {bank}: head {head.seq}, last event {last.get(bank, (0, None))[0]}"
            )
    return bad


_TOLD_AS = {
    int(TransferStatus.ACCEPTED): "accepted",
    int(TransferStatus.RESERVED): "reserved",
}


def check_feed_transfers(s: AuditSnapshot) -> list[str]:
    """Each transfer since a party's feed began is told to that party once
    when the hub took it: by the BATCH ACCEPTED event of its time if netted
    at once, the BATCH RESERVED one if reserved (a batch event counts its
    transfers; a gross one is told settled). A reserved transfer that left
    RESERVED is told once more by the RESOLVED event of its `resolution`
    and `resolved_at` (which counts its transfers): accepted, rejected,
    expired, or cancelled while reserved, in place of a TRANSFER CANCELLED
    event; a netted transfer cancelled (by the operator) is told CANCELLED
    once by a TRANSFER event; each cross-currency transfer netted is closed
    and settled once per party when both legs' cycles are (alone or by the
    LEGS event of its two cycles, which counts its transfers)."""
    told = _Told(s.events)
    states = s.cycle_states()
    started = {bank: head.started_at for bank, head in s.feed_heads.items()}
    taken: Counter[tuple[str, datetime, int]] = Counter()
    resolved: Counter[tuple[str, datetime, int]] = Counter()
    for t in s.transfers:
        batch_status = int(
            TransferStatus.ACCEPTED if t.deadline is None else TransferStatus.RESERVED
        )
        resolution = t.resolution
        for bank in (t.debtor, t.creditor):
            if bank not in started or t.accepted_at < started[bank]:
                continue  # before the bank's feed began (migration 0005)
            if t.gross:
                told.once(bank, t.transfer_id, TransferStatus.SETTLED, True)
                continue
            taken[(bank, t.accepted_at, batch_status)] += 1
            if resolution is not None:
                assert t.resolved_at is not None
                resolved[(bank, t.resolved_at, int(resolution))] += 1
            cancelled = t.status is TransferStatus.CANCELLED
            told.once(bank, t.transfer_id, TransferStatus.CANCELLED, cancelled and t.netted)
            legs = live_legs(t)
            if len(legs) == 2:
                reached = min(states.get(leg.cycle_id, CycleState.OPEN) for leg in legs)
                pair = _pair(legs[0].cycle_id, legs[1].cycle_id)
                for status, due in (
                    (TransferStatus.CLOSED, reached >= CycleState.CLOSED),
                    (TransferStatus.SETTLED, reached is CycleState.SETTLED),
                ):
                    told.once(bank, t.transfer_id, status, due, pair)
    bad = told.bad
    for legs_key, n in sorted(told.leg_items.items()):
        if told.pair_sizes[legs_key] != n:
            bad.append(
                f"feed of {legs_key[0]}: the LEGS event of {legs_key[1]} counts {n} transfers, "
                f"{told.pair_sizes[legs_key]} have those legs"
            )
    for key in sorted(set(taken) | set(told.batch_items)):
        bank, when, batch = key
        if taken.get(key, 0) != told.batch_items.get(key, 0):
            named = "" if batch == TransferStatus.ACCEPTED else f" {_status_name(batch)}"
            bad.append(
                f"feed of {bank}: the batch{named} at {when} counts "
                f"{told.batch_items.get(key, 0)} transfers, {taken.get(key, 0)} were "
                f"{_TOLD_AS.get(batch, _status_name(batch).lower())}"
            )
    for key in sorted(set(resolved) | set(told.resolved_items)):
        bank, when, how = key
        if resolved.get(key, 0) != told.resolved_items.get(key, 0):
            bad.append(
                f"feed of {bank}: the RESOLVED {_status_name(how)} event at {when} counts "
                f"{told.resolved_items.get(key, 0)} transfers, {resolved.get(key, 0)} were "
                f"resolved so then"
            )
    return bad


def check_feed_recalls(s: AuditSnapshot) -> list[str]:
    """Each recall since a party's feed began is told to both parties by a
    RECALL event when it was requested (REQUESTED, at `requested_at`) and,
    once answered, when it was (its state, at `answered_at`): once each, and
    no RECALL event tells anything else."""
    told = _Told(s.events).recalls
    started = {bank: head.started_at for bank, head in s.feed_heads.items()}
    bad: list[str] = []
    for r in s.recalls:
        due: dict[int, datetime] = {int(RecallState.REQUESTED): r.requested_at}
        if r.state is not RecallState.REQUESTED and r.answered_at is not None:
            due[int(r.state)] = r.answered_at
        for bank in (r.debtor, r.creditor):
            if bank not in started or r.requested_at < started[bank]:
                continue
            for state in RecallState:
                times = told.pop((bank, r.transfer_id, int(state)), [])
                want = due.get(int(state))
                if times != ([] if want is None else [want]):
                    at = "".join(f" at {when}" for when in times[:3])
                    due_at = "never" if want is None else f"once at {want}"
                    bad.append(
                        f"feed of {bank}: the recall of {r.transfer_id} {state.name} told "
                        f"{len(times)} times{at}, due {due_at}"
                    )
    for (bank, tid, stored_state), times in sorted(told.items()):
        if times:
            bad.append(
                f"feed of {bank}: {len(times)} RECALL {_recall_state_name(stored_state)} events "
                f"of {tid}, which has no such recall"
            )
    return bad


def check_feed_cycles(s: AuditSnapshot) -> list[str]:
    """Each cycle a bank has a position in is told closed and settled once in
    that bank's feed, once it got there after the bank's feed began."""
    told = _Told(s.events)
    started = {bank: head.started_at for bank, head in s.feed_heads.items()}
    by_id = {c.id: c for c in s.cycles}
    for cid, bank in sorted(s.positions):
        if bank not in started:
            continue
        cycle = by_id.get(cid)
        for moved_at, status in (
            (None if cycle is None else cycle.closed_at, TransferStatus.CLOSED),
            (None if cycle is None else cycle.settled_at, TransferStatus.SETTLED),
        ):
            told.once(bank, cid, status, moved_at is not None and moved_at >= started[bank])
    return told.bad


# The operator audit trail --------------------------------------------------------------


def check_trail(s: AuditSnapshot) -> list[str]:
    """The operator audit trail chains, with no gap (`remitnet audit verify`)."""
    broken = verify_trail(s.trail).broken
    if broken is None:
        return []
    return [f"operator audit trail broken at seq {broken.seq}: {broken.reason}"]


CHECKS: tuple[Check, ...] = (
    check_ledger,
    check_chains,
    check_postings,
    check_balances,
    check_balance_sums,
    check_unsettled,
    check_limits,
    check_reserved,
    check_quotes,
    check_positions,
    check_cycle_nets,
    check_cycle_totals,
    check_settled_once,
    check_settlement_nets,
    check_fx_revenue,
    check_hub_unfunded,
    check_resolutions,
    check_returns,
    check_recalls,
    check_feed_order,
    check_feed_transfers,
    check_feed_cycles,
    check_feed_recalls,
    check_trail,
)


def run_checks(s: AuditSnapshot, checks: Iterable[Check] = CHECKS) -> list[str]:
    """Every violation of `checks` (all of them by default), in that order."""
    return [v for check in checks for v in check(s)]
