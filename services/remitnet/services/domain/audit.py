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
from remitnet.services.domain.model import (
    HUB,
    AccountKind,
    CycleState,
    StoredTransfer,
    TransferStatus,
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

    def cycle_states(self) -> dict[str, CycleState]:
        return {c.id: c.state for c in self.cycles}


Check = Callable[[AuditSnapshot], list[str]]


# Derived figures ----------------------------------------------------------------


def expected_positions(s: AuditSnapshot) -> dict[tuple[str, str], PositionDelta]:
    """(cycle, participant) -> the position its live transfers' legs add up to."""
    out: dict[tuple[str, str], PositionDelta] = defaultdict(PositionDelta)
    for t in s.transfers:
        if t.status is TransferStatus.CANCELLED:
            continue
        for leg in t.legs():
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
        if t.status is TransferStatus.CANCELLED:
            continue
        for leg in t.legs():
            if states.get(leg.cycle_id) is not CycleState.SETTLED:
                out[position_account_id(leg.payer, leg.currency)] -= leg.amount
                out[position_account_id(leg.payee, leg.currency)] += leg.amount
    return dict(out)


def is_settlement(entry: LedgerEntry) -> bool:
    """An entry of a cycle's settlement posting (its reference is the cycle)."""
    return entry.kind == EntryKind.SETTLEMENT or entry.posting_id.startswith(SETTLEMENT_PREFIX)


def beyond_limit(accounts: Iterable[Account]) -> list[Account]:
    """The liquidity accounts whose net debit position exceeds their
    liquidity plus cap."""
    return [
        a
        for a in accounts
        if a.kind == AccountKind.LIQUIDITY
        and not within_limit(a.balance, a.net_debit_cap, a.unsettled_net)
    ]


def _figures(p: PositionDelta | None) -> list[int] | None:
    return None if p is None else [p.sent, p.received, p.sent_count, p.received_count, p.fee]


def _state_name(state: CycleState | None) -> str:
    return "missing" if state is None else state.name


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
    (an FX provider's accounts are liquidity accounts like a bank's)."""
    return [f"account {a.id} is beyond its liquidity plus cap" for a in beyond_limit(s.accounts)]


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
            if t.creditor_cycle_id is None:
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
        if t.status is TransferStatus.CANCELLED:
            continue
        for leg in t.legs():
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
    the events that told it, and what batch and LEGS events count."""

    def __init__(self, events: Iterable[StoredEvent]) -> None:
        self.said: Counter[tuple[str, str, int]] = Counter()
        self.leg_items: Counter[tuple[str, str, int]] = Counter()
        self.batch_items: Counter[tuple[str, datetime]] = Counter()
        self.pair_sizes: Counter[tuple[str, str, int]] = Counter()
        self.bad: list[str] = []
        for e in events:
            if e.kind == EventKind.BATCH:
                self.batch_items[(e.bank, e.at)] += e.item_count
            elif e.kind == EventKind.LEGS:
                # One event tells every transfer of the bank with these two legs.
                pair = _pair(str(e.cycle_id), str(e.other_cycle_id))
                self.said[(e.bank, pair, e.status)] += 1
                self.leg_items[(e.bank, pair, e.status)] += e.item_count
            else:
                key = str(e.transfer_id) if e.kind == EventKind.TRANSFER else str(e.cycle_id)
                self.said[(e.bank, key, e.status)] += 1

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


def check_feed_order(s: AuditSnapshot) -> list[str]:
    """Each bank's events are numbered 1..head in time order, with one batch
    event per bank and time."""
    bad: list[str] = []
    last: dict[str, tuple[int, datetime | None]] = {}
    batches: set[tuple[str, datetime]] = set()
    for e in sorted(s.events, key=lambda e: (e.bank, e.seq)):
        prev_seq, prev_at = last.get(e.bank, (0, None))
        if e.seq != prev_seq + 1 or (prev_at is not None and e.at < prev_at):
            bad.append(f"feed of {e.bank}: event {e.seq} follows {prev_seq} out of order")
        last[e.bank] = (e.seq, e.at)
        if e.kind == EventKind.BATCH:
            if (e.bank, e.at) in batches:  # a batch event must name its batch alone
                bad.append(f"feed of {e.bank}: two batch events at {e.at}")
            batches.add((e.bank, e.at))
    for bank, head in sorted(s.feed_heads.items()):
        if last.get(bank, (0, None))[0] != head.seq:
            bad.append(
                f"feed of {bank}: head {head.seq}, last event {last.get(bank, (0, None))[0]}"
            )
    return bad


def check_feed_transfers(s: AuditSnapshot) -> list[str]:
    """Each transfer since a party's feed began is accepted once in that
    party's feed (a batch event counts its transfers; a gross one is told
    settled), cancelled once if cancelled; each cross-currency transfer is
    closed and settled once per party when both legs' cycles are (alone or
    by the LEGS event of its two cycles, which counts its transfers)."""
    told = _Told(s.events)
    states = s.cycle_states()
    started = {bank: head.started_at for bank, head in s.feed_heads.items()}
    accepted: Counter[tuple[str, datetime]] = Counter()
    for t in s.transfers:
        for bank in (t.debtor, t.creditor):
            if bank not in started or t.accepted_at < started[bank]:
                continue  # before the bank's feed began (migration 0005)
            if t.gross:
                told.once(bank, t.transfer_id, TransferStatus.SETTLED, True)
                continue
            accepted[(bank, t.accepted_at)] += 1
            cancelled = t.status is TransferStatus.CANCELLED
            told.once(bank, t.transfer_id, TransferStatus.CANCELLED, cancelled)
            legs = t.legs()
            if len(legs) == 2 and not cancelled:
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
    for key in sorted(set(accepted) | set(told.batch_items)):
        if accepted.get(key, 0) != told.batch_items.get(key, 0):
            bad.append(
                f"feed of {key[0]}: the batch at {key[1]} counts {told.batch_items.get(key, 0)} "
                f"transfers, {accepted.get(key, 0)} were accepted"
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
    check_quotes,
    check_positions,
    check_cycle_nets,
    check_cycle_totals,
    check_settled_once,
    check_settlement_nets,
    check_fx_revenue,
    check_hub_unfunded,
    check_feed_order,
    check_feed_transfers,
    check_feed_cycles,
    check_trail,
)


def run_checks(s: AuditSnapshot, checks: Iterable[Check] = CHECKS) -> list[str]:
    """Every violation of `checks` (all of them by default), in that order."""
    return [v for check in checks for v in check(s)]
