"""Audit: recompute every invariant of the design brief from the raw rows.

Used by the test suite, the chaos checker and operators (`remitnet audit`).
It trusts nothing the hub maintains incrementally: balances are recomputed
from ledger entries, positions and unsettled nets from transfers."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Connection, select

from remitnet.services.adapters.db import repository as repo
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.schema import (
    accounts,
    cycles,
    ledger_entries,
    positions,
)
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
