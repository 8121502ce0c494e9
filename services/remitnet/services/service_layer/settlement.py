"""Settlement of closed cycles on the ledger, statements and ledger totals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection

from remitnet.services.adapters.db import audit_log, feed
from remitnet.services.adapters.db import repository as repo
from remitnet.services.adapters.db.database import Database
from remitnet.services.domain.audit_trail import HUB_PRINCIPAL, Action, ChainHead
from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.errors import FailedPrecondition, NotFound, Reason
from remitnet.services.domain.ledger import LedgerEntry, fx_revenue_posting, settlement_posting
from remitnet.services.domain.model import (
    HUB,
    AccountKind,
    CycleState,
    account_id,
    position_account_id,
)
from remitnet.services.domain.money import check_currency


@dataclass(frozen=True, slots=True)
class Settlement:
    cycle: Cycle
    postings: dict[str, int]  # bank -> net amount posted to its account
    already_settled: bool
    # The audit chain head the settlement appended (what banks see in GetCycle).
    audit_head: ChainHead | None = None


def settle_cycle(db: Database, cycle_id: str, *, actor: str = HUB_PRINCIPAL) -> Settlement:
    """Post a closed cycle's net positions to the ledger exactly once: the
    posting id is the cycle's, and the cycle's state is checked and changed
    in the same serializable transaction."""

    def unit(conn: Connection) -> Settlement:
        cycle = repo.get_cycle(conn, cycle_id)
        if cycle is None:
            raise NotFound(Reason.CYCLE_NOT_FOUND, f"no cycle {cycle_id[:40]!r}")
        if cycle.state is CycleState.OPEN:
            raise FailedPrecondition(
                Reason.CYCLE_NOT_CLOSED, f"cycle {cycle_id} is open; close it first"
            )
        if cycle.state is CycleState.SETTLED:
            # A replay: nothing is posted and nothing is appended.
            head = audit_log.settlement_heads(conn, [cycle.id]).get(cycle.id)
            return Settlement(cycle, _posted(conn, cycle), True, head)
        positions = repo.cycle_positions(conn, cycle.id)
        nets = {bank: p.net for bank, p in positions.items()}
        posting = settlement_posting(cycle.id, cycle.currency, nets)
        news = feed.cycle_events(conn, cycle.id, CycleState.SETTLED, positions)
        now = feed.publish(conn, news, datetime.now(UTC))
        repo.post(conn, posting, owner=HUB, amount=cycle.net_value, now=now)
        fee = sum(p.fee for p in positions.values())
        if fee:
            repo.post(
                conn,
                fx_revenue_posting(cycle.id, cycle.currency, fee),
                owner=HUB,
                amount=fee,
                now=now,
            )
        # What was unsettled is now on the balance: headroom is unchanged.
        repo.add_unsettled(
            conn, {position_account_id(bank, cycle.currency): -net for bank, net in nets.items()}
        )
        repo.mark_settled(conn, cycle.id, now)
        record = audit_log.append(conn, actor, Action.SETTLE_CYCLE, {"cycle_id": cycle.id}, now)
        settled = repo.get_cycle(conn, cycle.id)
        assert settled is not None
        head = ChainHead(record.seq, record.hash)
        return Settlement(settled, {b: n for b, n in nets.items() if n}, False, head)

    return db.write("settle_cycle", unit)


def _posted(conn: Connection, cycle: Cycle) -> dict[str, int]:
    out: dict[str, int] = {}
    for entry in repo.posting_entries(conn, f"settle:{cycle.id}"):
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


def statement(db: Database, bank: str, currency: str, after_seq: int, limit: int) -> Statement:
    check_currency(currency)
    after_seq = max(0, after_seq)

    def unit(conn: Connection) -> Statement:
        # The hub's statement is its FX revenue account.
        aid = (
            account_id(HUB, currency, AccountKind.FX_REVENUE)
            if bank == HUB
            else account_id(bank, currency)
        )
        account = repo.get_account(conn, aid)
        if account is None:
            raise NotFound(
                Reason.ACCOUNT_NOT_FOUND, f"no {currency} account of {bank}", bank=bank[:16]
            )
        opening = repo.balance_after(conn, aid, min(after_seq, account.entry_count))
        entries = repo.account_entries(conn, aid, after_seq, limit)
        closing = entries[-1].balance_after if entries else opening
        more = bool(entries) and entries[-1].seq < account.entry_count
        return Statement(bank, currency, opening, entries, closing, entries[-1].seq if more else 0)

    return db.read(unit)


def ledger_totals(db: Database) -> dict[str, tuple[int, int, int]]:
    return db.read(repo.ledger_totals, stale_ok=True)


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
        return self.cycle.state is CycleState.SETTLED

    @property
    def all_matched(self) -> bool:
        return all(r.matched(self.settled) for r in self.rows)


def reconciliation(db: Database, cycle_id: str) -> Reconciliation:
    """Three independent figures per participant: its transfers, its netted
    position, its settlement posting. They agree, or the report says where."""

    def unit(conn: Connection) -> Reconciliation:
        cycle = repo.get_cycle(conn, cycle_id)
        if cycle is None:
            raise NotFound(Reason.CYCLE_NOT_FOUND, f"no cycle {cycle_id[:40]!r}")
        sums = repo.cycle_leg_sums(conn, cycle.id)
        positions = repo.cycle_positions(conn, cycle.id)
        posted = _posted(conn, cycle) if cycle.state is CycleState.SETTLED else {}
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

    return db.read(unit)
