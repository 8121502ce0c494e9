"""Settlement of closed cycles on the ledger, statements and ledger totals."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from remitnet.services.domain.audit_trail import HUB_PRINCIPAL, Action, ChainHead
from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.errors import NotFound, Reason
from remitnet.services.domain.ledger import LedgerEntry, fx_revenue_posting, settlement_posting
from remitnet.services.domain.model import (
    HUB,
    AccountKind,
    CycleState,
    account_id,
    position_account_id,
)
from remitnet.services.domain.money import check_currency
from remitnet.services.service_layer.unit_of_work import Transactions, UnitOfWork


@dataclass(frozen=True, slots=True)
class Settlement:
    cycle: Cycle
    postings: dict[str, int]  # bank -> net amount posted to its account
    already_settled: bool
    # The audit chain head the settlement appended (what banks see in GetCycle).
    audit_head: ChainHead | None = None


def settle_cycle(db: Transactions, cycle_id: str, *, actor: str = HUB_PRINCIPAL) -> Settlement:
    """Post a closed cycle's net positions to the ledger exactly once: the
    posting id is the cycle's, and the cycle's state is checked and changed
    in the same serializable transaction."""

    def unit(uow: UnitOfWork) -> Settlement:
        cycle = uow.cycles.get(cycle_id)
        if cycle is None:
            raise NotFound(Reason.CYCLE_NOT_FOUND, f"no cycle {cycle_id[:40]!r}")
        cycle.check_settleable()
        if cycle.is_settled:
            # A replay: nothing is posted and nothing is appended.
            head = uow.trail.settlement_heads([cycle.id]).get(cycle.id)
            return Settlement(cycle, _posted(uow, cycle), True, head)
        positions = uow.positions.of_cycle(cycle.id)
        nets = {bank: p.net for bank, p in positions.items()}
        posting = settlement_posting(cycle.id, cycle.currency, nets)
        news = uow.events.cycle_events(cycle.id, CycleState.SETTLED, positions)
        now = uow.events.publish(news, datetime.now(UTC))
        # What was unsettled is now on the balance, in the statement that
        # moves the balances: headroom is unchanged.
        uow.ledger.post(
            posting,
            owner=HUB,
            amount=cycle.net_value,
            now=now,
            unsettled={position_account_id(b, cycle.currency): -n for b, n in nets.items() if n},
        )
        fee = sum(p.fee for p in positions.values())
        if fee:
            uow.ledger.post(
                fx_revenue_posting(cycle.id, cycle.currency, fee),
                owner=HUB,
                amount=fee,
                now=now,
            )
        uow.cycles.mark_settled(cycle.id, now)
        record = uow.trail.append(actor, Action.SETTLE_CYCLE, {"cycle_id": cycle.id}, now)
        # The row just written, as written: not read back.
        settled = replace(cycle, state=CycleState.SETTLED, settled_at=now)
        head = ChainHead(record.seq, record.hash)
        return Settlement(settled, {b: n for b, n in nets.items() if n}, False, head)

    return db.write("settle_cycle", unit)


def _posted(uow: UnitOfWork, cycle: Cycle) -> dict[str, int]:
    out: dict[str, int] = {}
    for entry in uow.ledger.posting_entries(f"settle:{cycle.id}"):
        owner = entry.account_id.split("/", 1)[0]
        if entry.account_id == position_account_id(owner, cycle.currency):
            out[owner] = entry.amount
    return out


@dataclass(frozen=True, slots=True)
class Statement:
    bank: str
    currency: str
    opening_balance: int
    entries: list[LedgerEntry]
    closing_balance: int
    next_after_seq: int


def statement(db: Transactions, bank: str, currency: str, after_seq: int, limit: int) -> Statement:
    check_currency(currency)
    after_seq = max(0, after_seq)

    def unit(uow: UnitOfWork) -> Statement:
        # The hub's statement is its FX revenue account.
        aid = (
            account_id(HUB, currency, AccountKind.FX_REVENUE)
            if bank == HUB
            else account_id(bank, currency)
        )
        account = uow.accounts.get(aid)
        if account is None:
            raise NotFound(
                Reason.ACCOUNT_NOT_FOUND, f"no {currency} account of {bank}", bank=bank[:16]
            )
        opening = uow.ledger.balance_after(aid, min(after_seq, account.entry_count))
        entries = uow.ledger.entries(aid, after_seq, limit)
        closing = entries[-1].balance_after if entries else opening
        more = bool(entries) and entries[-1].seq < account.entry_count
        return Statement(bank, currency, opening, entries, closing, entries[-1].seq if more else 0)

    # A report: bounded-stale (one snapshot, so opening, entries and closing
    # agree), served by the nearest replica on CockroachDB.
    return db.read(unit, stale_ok=True)


def ledger_totals(db: Transactions) -> dict[str, tuple[int, int, int]]:
    return db.read(lambda uow: uow.views.ledger_totals(), stale_ok=True)


@dataclass(frozen=True, slots=True)
class ReconciliationRow:
    bank: str
    sent_count: int
    received_count: int
    sent: int
    received: int
    position_net: int
    posted: int

    @property
    def computed_net(self) -> int:
        return self.received - self.sent

    def matched(self, settled: bool) -> bool:
        return self.computed_net == self.position_net and (
            not settled or self.posted == self.position_net
        )


@dataclass(frozen=True, slots=True)
class Reconciliation:
    cycle: Cycle
    rows: list[ReconciliationRow]

    @property
    def settled(self) -> bool:
        return self.cycle.is_settled

    @property
    def all_matched(self) -> bool:
        return all(r.matched(self.settled) for r in self.rows)


def reconciliation(db: Transactions, cycle_id: str) -> Reconciliation:
    """Three independent figures per participant: its transfers, its netted
    position, its settlement posting. They agree, or the report says where."""

    def unit(uow: UnitOfWork) -> Reconciliation:
        cycle = uow.cycles.get(cycle_id)
        if cycle is None:
            raise NotFound(Reason.CYCLE_NOT_FOUND, f"no cycle {cycle_id[:40]!r}")
        sums = uow.transfers.leg_sums(cycle.id)
        positions = uow.positions.of_cycle(cycle.id)
        posted = _posted(uow, cycle) if cycle.is_settled else {}
        rows = []
        for bank in sorted(set(sums) | set(positions)):
            sc, rc, s, r = sums.get(bank, [0, 0, 0, 0])
            position = positions.get(bank)
            rows.append(
                ReconciliationRow(
                    bank, sc, rc, s, r, position.net if position else 0, posted.get(bank, 0)
                )
            )
        return Reconciliation(cycle, rows)

    # A report, like the statement: its three figures come from one
    # snapshot, so they agree with each other however stale it is.
    return db.read(unit, stale_ok=True)
