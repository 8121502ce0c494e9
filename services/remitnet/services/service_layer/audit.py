"""Audit: recompute every invariant of the design brief from the raw rows.

Used by the test suite, the chaos checker and operators (`remitnet audit`).
It trusts nothing the hub maintains incrementally: balances are recomputed
from ledger entries, positions and unsettled nets from transfers."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, select

from remitnet.services.adapters.db import audit_log
from remitnet.services.adapters.db import repository as repo
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.schema import (
    accounts,
    cycles,
    events,
    feed_heads,
    ledger_entries,
    positions,
)
from remitnet.services.domain.audit_trail import verify as verify_trail
from remitnet.services.domain.events import EventKind
from remitnet.services.domain.model import (
    AccountKind,
    CycleState,
    TransferStatus,
    position_account_id,
)
from remitnet.services.domain.netting import within_limit


@dataclass
class AuditReport:
    violations: list[str] = field(default_factory=list)
    transfers: int = 0
    cycles: int = 0
    accounts: int = 0
    entries: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations


def audit(db: Database) -> AuditReport:
    return db.read(_audit)


def _audit(conn: Connection) -> AuditReport:
    report = AuditReport()
    bad = report.violations

    # Ledger: balances are the sum of entries, entries chain, currencies sum to zero.
    entry_sum: dict[str, int] = defaultdict(int)
    chain: dict[str, tuple[int, int]] = {}
    currency_entries: dict[str, int] = defaultdict(int)
    for aid, seq, amount, after, currency in conn.execute(
        select(
            ledger_entries.c.account_id,
            ledger_entries.c.seq,
            ledger_entries.c.amount,
            ledger_entries.c.balance_after,
            ledger_entries.c.currency,
        ).order_by(ledger_entries.c.account_id, ledger_entries.c.seq)
    ):
        report.entries += 1
        last_seq, last_balance = chain.get(aid, (0, 0))
        if seq != last_seq + 1 or after != last_balance + amount:
            bad.append(f"ledger entry {aid}#{seq} breaks the account's chain")
        chain[aid] = (seq, after)
        entry_sum[aid] += amount
        currency_entries[currency] += amount
    for currency, total in currency_entries.items():
        if total:
            bad.append(f"{currency} ledger entries sum to {total}, not zero")

    # Transfers: recompute positions and unsettled nets from their legs.
    cycle_state = {
        cid: CycleState(state) for cid, state in conn.execute(select(cycles.c.id, cycles.c.state))
    }
    expected_pos: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    unsettled: dict[str, int] = defaultdict(int)
    quote_users: dict[str, int] = defaultdict(int)
    for t in repo.all_transfers(conn):
        report.transfers += 1
        if t.quote_id is not None:
            quote_users[t.quote_id] += 1
        if t.status is TransferStatus.CANCELLED:
            continue
        for leg in t.legs():
            d = expected_pos[(leg.cycle_id, leg.payer)]
            d[0] += leg.amount
            d[2] += 1
            d[4] += leg.fee
            c = expected_pos[(leg.cycle_id, leg.payee)]
            c[1] += leg.amount
            c[3] += 1
            if cycle_state.get(leg.cycle_id) is not CycleState.SETTLED:
                unsettled[position_account_id(leg.payer, leg.currency)] -= leg.amount
                unsettled[position_account_id(leg.payee, leg.currency)] += leg.amount
    _audit_feed(conn, bad, cycle_state)
    # The operator audit trail chains, with no gap (`remitnet audit verify`).
    broken = verify_trail(audit_log.records(conn)).broken
    if broken is not None:
        bad.append(f"operator audit trail broken at seq {broken.seq}: {broken.reason}")
    for qid, n in quote_users.items():
        if n > 1:
            bad.append(f"quote {qid} was used by {n} transfers")

    stored_pos = {
        (cid, bank): [s, r, sc, rc, fee]
        for cid, bank, s, r, sc, rc, fee in conn.execute(
            select(
                positions.c.cycle_id,
                positions.c.bank_code,
                positions.c.sent,
                positions.c.received,
                positions.c.sent_count,
                positions.c.received_count,
                positions.c.fee,
            )
        )
    }
    for key in set(expected_pos) | set(stored_pos):
        if expected_pos.get(key, [0, 0, 0, 0, 0]) != stored_pos.get(key, [0, 0, 0, 0, 0]):
            bad.append(
                f"position {key} is {stored_pos.get(key)}, transfers say {expected_pos.get(key)}"
            )

    nets: dict[str, int] = defaultdict(int)
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    fees: dict[str, int] = defaultdict(int)
    for (cid, _bank), (s, r, sc, _rc, fee) in stored_pos.items():
        fees[cid] += fee
        nets[cid] += r - s
        totals[cid][0] += sc
        totals[cid][1] += s
        totals[cid][2] += max(0, r - s)
    for cid, net in nets.items():
        if net:
            bad.append(f"cycle {cid} net positions sum to {net}, not zero")

    for cid, state, count, gross, net_value in conn.execute(
        select(
            cycles.c.id,
            cycles.c.state,
            cycles.c.transfer_count,
            cycles.c.gross_value,
            cycles.c.net_value,
        )
    ):
        report.cycles += 1
        if CycleState(state) is not CycleState.OPEN and [count, gross, net_value] != totals.get(
            cid, [0, 0, 0]
        ):
            bad.append(f"cycle {cid} totals {[count, gross, net_value]} differ from its positions")

    # Settlement: a settled cycle's postings equal its net positions, once,
    # and the hub's FX revenue equals the spreads of its settled cycles.
    cycle_currency = dict(conn.execute(select(cycles.c.id, cycles.c.currency)).tuples().all())
    posted: dict[tuple[str, str], list[int]] = defaultdict(list)
    for aid, amount, ref in conn.execute(
        select(
            ledger_entries.c.account_id, ledger_entries.c.amount, ledger_entries.c.reference
        ).where(ledger_entries.c.posting_id.like("settle:%"))
    ):
        posted[(ref, aid)].append(amount)
    revenue_due: dict[str, int] = defaultdict(int)
    for cid, state in cycle_state.items():
        if state is not CycleState.SETTLED:
            if any(k[0] == cid for k in posted):
                bad.append(f"cycle {cid} has settlement postings but is {state.name}")
            continue
        revenue_due[cycle_currency[cid]] += fees.get(cid, 0)
        for (pcid, bank), (s, r, _sc, _rc, _fee) in stored_pos.items():
            if pcid != cid:
                continue
            aid = position_account_id(bank, cycle_currency[cid])
            amounts = posted.get((cid, aid), [])
            if r - s != sum(amounts) or len(amounts) > 1:
                bad.append(f"cycle {cid} posted {amounts} to {aid}, net is {r - s}")
    revenue = {
        c: b
        for c, b in conn.execute(
            select(accounts.c.currency, accounts.c.balance).where(
                accounts.c.kind == AccountKind.FX_REVENUE
            )
        )
    }
    for currency in set(revenue) | set(revenue_due):
        if revenue.get(currency, 0) != revenue_due.get(currency, 0):
            bad.append(
                f"{currency} FX revenue {revenue.get(currency, 0)} != spreads of settled cycles "
                f"{revenue_due.get(currency, 0)}"
            )

    # Accounts: balance equals entries, unsettled equals transfers, limits hold.
    by_currency: dict[str, int] = defaultdict(int)
    for aid, currency, kind, balance, cap, unsettled_net in conn.execute(
        select(
            accounts.c.id,
            accounts.c.currency,
            accounts.c.kind,
            accounts.c.balance,
            accounts.c.net_debit_cap,
            accounts.c.unsettled_net,
        )
    ):
        report.accounts += 1
        by_currency[currency] += balance
        if balance != entry_sum.get(aid, 0):
            bad.append(
                f"account {aid} balance {balance} != sum of its entries {entry_sum.get(aid, 0)}"
            )
        if kind in (AccountKind.LIQUIDITY, AccountKind.FX):
            if unsettled_net != unsettled.get(aid, 0):
                want = unsettled.get(aid, 0)
                bad.append(f"account {aid} unsettled_net {unsettled_net} != transfers {want}")
            if kind == AccountKind.LIQUIDITY and not within_limit(balance, cap, unsettled_net):
                bad.append(f"account {aid} is beyond its liquidity plus cap")
    for currency, total in by_currency.items():
        if total:
            bad.append(f"{currency} account balances sum to {total}, not zero")
    return report


def _audit_feed(conn: Connection, bad: list[str], cycle_state: dict[str, CycleState]) -> None:
    """The change feed tells each bank every change, once: numbers run
    1..head in time order, one batch event per bank and time; each transfer
    since the bank's feed began is accepted once in each party's feed (a
    batch event counts its transfers), cancelled once if cancelled; each
    cross-currency transfer is closed and settled once per party when both
    legs' cycles are; each cycle a bank has a position in is closed and
    settled once in that bank's feed once it gets there."""
    utc = repo.utc
    heads: dict[str, int] = {}
    started: dict[str, datetime] = {}
    for bank, head, start in conn.execute(
        select(feed_heads.c.bank_code, feed_heads.c.seq, feed_heads.c.started_at)
    ):
        heads[bank] = head
        started[bank] = utc(start)
    last: dict[str, tuple[int, datetime | None]] = {}
    batch_items: Counter[tuple[str, datetime]] = Counter()
    said: Counter[tuple[str, str, int]] = Counter()  # (bank, transfer or cycle, status)
    leg_items: Counter[tuple[str, str, int]] = Counter()  # LEGS events' item counts
    for bank, seq, raw_at, kind, status, tid, cid, other, n in conn.execute(
        select(
            events.c.bank_code,
            events.c.seq,
            events.c.at,
            events.c.kind,
            events.c.status,
            events.c.transfer_id,
            events.c.cycle_id,
            events.c.other_cycle_id,
            events.c.item_count,
        ).order_by(events.c.bank_code, events.c.seq)
    ):
        at = utc(raw_at)
        prev_seq, prev_at = last.get(bank, (0, None))
        if seq != prev_seq + 1 or (prev_at is not None and at < prev_at):
            bad.append(f"feed of {bank}: event {seq} follows {prev_seq} out of order")
        last[bank] = (seq, at)
        if kind == EventKind.BATCH:
            if (bank, at) in batch_items:  # a batch event must name its batch alone
                bad.append(f"feed of {bank}: two batch events at {at}")
            batch_items[(bank, at)] += n
        elif kind == EventKind.LEGS:
            # One event tells every transfer of the bank with these two legs.
            pair = "+".join(sorted((str(cid), str(other))))
            said[(bank, pair, status)] += 1
            leg_items[(bank, pair, status)] += n
        else:
            said[(bank, str(tid) if kind == EventKind.TRANSFER else str(cid), status)] += 1
    for bank, head in heads.items():
        if last.get(bank, (0, None))[0] != head:
            bad.append(f"feed of {bank}: head {head}, last event {last.get(bank, (0, None))[0]}")

    def told_once(
        bank: str, key: str, status: TransferStatus, due: bool, pair: str | None = None
    ) -> None:
        """`key` (a transfer or cycle) told `status` once if due, never twice;
        a cross-currency transfer may be told by the LEGS event of its pair."""
        told = said[(bank, key, int(status))]
        if pair is not None:
            told += said[(bank, pair, int(status))]
            pair_sizes[(bank, pair, int(status))] += 1
        if told > 1 or (due and told == 0) or (not due and told):
            bad.append(f"feed of {bank}: {key} {status.name} told {told} times")

    pair_sizes: Counter[tuple[str, str, int]] = Counter()

    accepted: Counter[tuple[str, datetime]] = Counter()
    for t in repo.all_transfers(conn):
        for bank in (t.debtor, t.creditor):
            if bank not in started or t.accepted_at < started[bank]:
                continue  # before the bank's feed began (migration 0005)
            if t.gross:
                told_once(bank, t.transfer_id, TransferStatus.SETTLED, True)
                continue
            accepted[(bank, t.accepted_at)] += 1
            cancelled = t.status is TransferStatus.CANCELLED
            told_once(bank, t.transfer_id, TransferStatus.CANCELLED, cancelled)
            legs = [cycle_state.get(leg.cycle_id, CycleState.OPEN) for leg in t.legs()]
            if len(legs) == 2 and not cancelled:
                pair = "+".join(sorted(leg.cycle_id for leg in t.legs()))
                told_once(
                    bank,
                    t.transfer_id,
                    TransferStatus.CLOSED,
                    min(legs) >= CycleState.CLOSED,
                    pair,
                )
                told_once(
                    bank,
                    t.transfer_id,
                    TransferStatus.SETTLED,
                    min(legs) is CycleState.SETTLED,
                    pair,
                )
    for (bank, pair, status), n in leg_items.items():
        if pair_sizes[(bank, pair, status)] != n:
            bad.append(
                f"feed of {bank}: the LEGS event of {pair} counts {n} transfers, "
                f"{pair_sizes[(bank, pair, status)]} have those legs"
            )
    for key in set(accepted) | set(batch_items):
        if accepted.get(key, 0) != batch_items.get(key, 0):
            bad.append(
                f"feed of {key[0]}: the batch at {key[1]} counts {batch_items.get(key, 0)} "
                f"transfers, {accepted.get(key, 0)} were accepted"
            )
    moved: dict[str, tuple[datetime | None, datetime | None]] = {
        cid: (None if c is None else utc(c), None if s is None else utc(s))
        for cid, c, s in conn.execute(select(cycles.c.id, cycles.c.closed_at, cycles.c.settled_at))
    }
    for cid, bank in conn.execute(select(positions.c.cycle_id, positions.c.bank_code)):
        if bank not in started:
            continue
        closed_at, settled_at = moved.get(cid, (None, None))
        for moved_at, status in (
            (closed_at, TransferStatus.CLOSED),
            (settled_at, TransferStatus.SETTLED),
        ):
            told_once(bank, cid, status, moved_at is not None and moved_at >= started[bank])
