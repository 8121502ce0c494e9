"""SQL of the units of work: small functions over a Connection, in SQLAlchemy
Core so the hot batch path stays a handful of set-oriented statements."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    any_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from remitnet.services.adapters.db.schema import (
    HUB_HOME_REGION,
    accounts,
    banks,
    cycles,
    fx_quotes,
    fx_rates,
    ledger_entries,
    positions,
    postings,
    transfers,
)
from remitnet.services.domain.account import Account
from remitnet.services.domain.bank import Bank
from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.fx import Quote, QuoteTerms, Rate
from remitnet.services.domain.ledger import EntryKind, LedgerEntry, Posting, PostingRecord
from remitnet.services.domain.model import (
    HUB,
    AccountKind,
    BankStatus,
    CycleState,
    StoredTransfer,
    TransferStatus,
)
from remitnet.services.domain.netting import AccountState, CycleSums, PositionDelta


def utc(ts: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


# Banks ----------------------------------------------------------------------


def _bank(row: Any) -> Bank:
    b = row._mapping
    return Bank(
        b["code"], b["name"], b["home_region"], BankStatus(b["status"]), utc(b["created_at"])
    )


def get_bank(conn: Connection, code: str) -> Bank | None:
    row = conn.execute(select(banks).where(banks.c.code == code)).first()
    return None if row is None else _bank(row)


def list_banks(conn: Connection, after: str, limit: int) -> list[Bank]:
    rows = conn.execute(
        select(banks).where(banks.c.code > after).order_by(banks.c.code).limit(limit)
    )
    return [_bank(r) for r in rows]


def insert_bank(conn: Connection, bank: Bank) -> None:
    conn.execute(
        insert(banks).values(
            code=bank.code,
            name=bank.name,
            home_region=bank.home_region,
            status=int(bank.status),
            created_at=bank.created_at,
        )
    )


def set_bank_status(conn: Connection, code: str, status: BankStatus) -> None:
    conn.execute(update(banks).where(banks.c.code == code).values(status=int(status)))


def bank_regions(conn: Connection, codes: Collection[str] | None = None) -> dict[str, str]:
    """Home region per bank code: of `codes`, or of every bank."""
    query = select(banks.c.code, banks.c.home_region)
    if codes is not None:
        query = query.where(banks.c.code.in_(codes))
    return dict(conn.execute(query).tuples().all())


def bank_statuses_and_regions(
    conn: Connection, codes: Collection[str]
) -> tuple[dict[str, BankStatus], dict[str, str]]:
    """Status and home region of each of `codes`, in one query: the clearing
    paths need both (the regions go into the rows they write)."""
    statuses: dict[str, BankStatus] = {}
    regions: dict[str, str] = {}
    rows = conn.execute(
        select(banks.c.code, banks.c.status, banks.c.home_region).where(banks.c.code.in_(codes))
    )
    for code, status, region in rows:
        statuses[code] = BankStatus(status)
        regions[code] = region
    return statuses, regions


def home_regions(
    conn: Connection, codes: Collection[str], known: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The home_region to write in rows owned by each of `codes`: the bank's
    home region (from `known` when given, else looked up in one query), or
    HUB_HOME_REGION for the hub."""
    out = {HUB: HUB_HOME_REGION}
    if known:
        out.update(known)
    missing = [c for c in codes if c not in out]
    if missing:
        out.update(bank_regions(conn, missing))
    unknown = sorted(c for c in codes if c not in out)
    if unknown:
        raise AssertionError(f"rows owned by banks that do not exist: {unknown}")
    return out


# Accounts -------------------------------------------------------------------


def _account(row: Any) -> Account:
    a = row._mapping
    return Account(
        a["id"],
        a["owner"],
        a["currency"],
        a["kind"],
        a["balance"],
        a["net_debit_cap"],
        a["unsettled_net"],
        a["entry_count"],
        utc(a["opened_at"]),
    )


def get_account(conn: Connection, account_id: str) -> Account | None:
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).first()
    return None if row is None else _account(row)


def owner_accounts(conn: Connection, owner: str) -> list[Account]:
    rows = conn.execute(
        select(accounts).where(accounts.c.owner == owner).order_by(accounts.c.currency)
    )
    return [_account(r) for r in rows]


def accounts_of_owners(conn: Connection, owners: Collection[str]) -> dict[str, list[Account]]:
    """The accounts of each of `owners` (by currency), in one query: a page
    of banks costs one statement, not one per bank."""
    out: dict[str, list[Account]] = {o: [] for o in owners}
    if out:
        rows = conn.execute(
            select(accounts)
            .where(accounts.c.owner.in_(list(out)))
            .order_by(accounts.c.owner, accounts.c.currency)
        )
        for r in rows:
            a = _account(r)
            out[a.owner].append(a)
    return out


def all_accounts(conn: Connection, kind: str | None = None) -> list[Account]:
    query = select(accounts).order_by(accounts.c.id)
    if kind is not None:
        query = query.where(accounts.c.kind == kind)
    return [_account(r) for r in conn.execute(query)]


def insert_account(
    conn: Connection,
    account_id: str,
    owner: str,
    currency: str,
    kind: str,
    now: datetime,
    *,
    home_region: str,
) -> None:
    """`home_region`: the owner bank's, or HUB_HOME_REGION for the hub's."""
    conn.execute(
        insert(accounts).values(
            id=account_id,
            owner=owner,
            currency=currency,
            kind=kind,
            balance=0,
            net_debit_cap=0,
            unsettled_net=0,
            entry_count=0,
            opened_at=now,
            home_region=home_region,
        )
    )


def set_cap(conn: Connection, account_id: str, cap: int) -> None:
    conn.execute(update(accounts).where(accounts.c.id == account_id).values(net_debit_cap=cap))


def load_account_states(conn: Connection, ids: Collection[str]) -> dict[str, AccountState]:
    rows = conn.execute(
        select(
            accounts.c.id,
            accounts.c.owner,
            accounts.c.currency,
            accounts.c.balance,
            accounts.c.net_debit_cap,
            accounts.c.unsettled_net,
        ).where(
            accounts.c.id.in_(ids), accounts.c.kind.in_((AccountKind.LIQUIDITY, AccountKind.FX))
        )
    )
    return {r[0]: AccountState(*r) for r in rows}


_add_unsettled = (
    update(accounts)
    .where(accounts.c.id == bindparam("aid"))
    .values(unsettled_net=accounts.c.unsettled_net + bindparam("delta"))
)


# PostgreSQL and CockroachDB: one statement with array parameters instead of
# one round trip per row.
_ADD_UNSETTLED_ARRAYS = text(
    "UPDATE accounts SET unsettled_net = accounts.unsettled_net + v.delta "
    "FROM unnest(CAST(:ids AS VARCHAR[]), CAST(:deltas AS BIGINT[])) AS v(id, delta) "
    "WHERE accounts.id = v.id"
)


def _arrays(conn: Connection) -> bool:
    return conn.dialect.name in ("postgresql", "cockroachdb")


def add_unsettled(conn: Connection, deltas: Mapping[str, int]) -> None:
    changed = {k: v for k, v in deltas.items() if v}
    if not changed:
        return
    if _arrays(conn):
        conn.execute(
            _ADD_UNSETTLED_ARRAYS, {"ids": list(changed), "deltas": list(changed.values())}
        )
    else:
        conn.execute(_add_unsettled, [{"aid": k, "delta": v} for k, v in changed.items()])


# Cycles and positions ----------------------------------------------------------


def _cycle(row: Any) -> Cycle:
    c = row._mapping
    return Cycle(
        c["id"],
        c["currency"],
        c["seq"],
        CycleState(c["state"]),
        utc(c["opened_at"]),
        None if c["closed_at"] is None else utc(c["closed_at"]),
        None if c["settled_at"] is None else utc(c["settled_at"]),
        c["transfer_count"],
        c["gross_value"],
        c["net_value"],
    )


def get_cycle(conn: Connection, cycle_id: str) -> Cycle | None:
    row = conn.execute(select(cycles).where(cycles.c.id == cycle_id)).first()
    return None if row is None else _cycle(row)


def open_cycle(conn: Connection, currency: str) -> Cycle | None:
    row = conn.execute(
        select(cycles).where(cycles.c.currency == currency, cycles.c.state == int(CycleState.OPEN))
    ).first()
    return None if row is None else _cycle(row)


def open_cycle_ids(conn: Connection, currencies: Collection[str]) -> dict[str, str]:
    rows = conn.execute(
        select(cycles.c.currency, cycles.c.id).where(
            cycles.c.currency.in_(currencies), cycles.c.state == int(CycleState.OPEN)
        )
    )
    return dict(rows.tuples().all())


def list_cycles(
    conn: Connection, currency: str, state: CycleState | None, before: str | None, limit: int
) -> list[Cycle]:
    query = select(cycles).order_by(cycles.c.opened_at.desc(), cycles.c.id.desc()).limit(limit)
    if currency:
        query = query.where(cycles.c.currency == currency)
    if state is not None:
        query = query.where(cycles.c.state == int(state))
    if before:
        marker = get_cycle(conn, before)
        if marker is not None:
            query = query.where(
                (cycles.c.opened_at < marker.opened_at)
                | and_(cycles.c.opened_at == marker.opened_at, cycles.c.id < marker.id)
            )
    return [_cycle(r) for r in conn.execute(query)]


def cycle_states(conn: Connection, cycle_ids: Collection[str]) -> dict[str, CycleState]:
    rows = conn.execute(select(cycles.c.id, cycles.c.state).where(cycles.c.id.in_(cycle_ids)))
    return {cid: CycleState(state) for cid, state in rows}


def unsettled_cycles(conn: Connection) -> list[Cycle]:
    rows = conn.execute(
        select(cycles).where(cycles.c.state == int(CycleState.CLOSED)).order_by(cycles.c.closed_at)
    )
    return [_cycle(r) for r in rows]


def insert_cycle(conn: Connection, cycle_id: str, currency: str, seq: int, now: datetime) -> None:
    conn.execute(
        insert(cycles).values(
            id=cycle_id,
            currency=currency,
            seq=seq,
            state=int(CycleState.OPEN),
            opened_at=now,
            transfer_count=0,
            gross_value=0,
            net_value=0,
        )
    )


def max_cycle_seq(conn: Connection, currency: str) -> int:
    value = conn.execute(
        select(func.max(cycles.c.seq)).where(cycles.c.currency == currency)
    ).scalar()
    return int(value or 0)


def seal_cycle(
    conn: Connection, cycle_id: str, now: datetime, count: int, gross: int, net: int
) -> None:
    conn.execute(
        update(cycles)
        .where(cycles.c.id == cycle_id)
        .values(
            state=int(CycleState.CLOSED),
            closed_at=now,
            transfer_count=count,
            gross_value=gross,
            net_value=net,
        )
    )


def mark_settled(conn: Connection, cycle_id: str, now: datetime) -> None:
    conn.execute(
        update(cycles)
        .where(cycles.c.id == cycle_id)
        .values(state=int(CycleState.SETTLED), settled_at=now)
    )


def cycle_positions(conn: Connection, cycle_id: str) -> dict[str, PositionDelta]:
    rows = conn.execute(
        select(
            positions.c.bank_code,
            positions.c.sent,
            positions.c.received,
            positions.c.sent_count,
            positions.c.received_count,
            positions.c.fee,
        )
        .where(positions.c.cycle_id == cycle_id)
        .order_by(positions.c.bank_code)
    )
    return {r[0]: PositionDelta(r[1], r[2], r[3], r[4], r[5]) for r in rows}


def positions_of_cycles(
    conn: Connection, cycle_ids: Collection[str]
) -> dict[str, dict[str, PositionDelta]]:
    """cycle_positions of each of `cycle_ids`, in one query (a page of
    cycles costs one statement, not one per cycle)."""
    out: dict[str, dict[str, PositionDelta]] = {c: {} for c in cycle_ids}
    if out:
        rows = conn.execute(
            select(
                positions.c.cycle_id,
                positions.c.bank_code,
                positions.c.sent,
                positions.c.received,
                positions.c.sent_count,
                positions.c.received_count,
                positions.c.fee,
            )
            .where(positions.c.cycle_id.in_(list(out)))
            .order_by(positions.c.cycle_id, positions.c.bank_code)
        )
        for r in rows:
            out[r[0]][r[1]] = PositionDelta(r[2], r[3], r[4], r[5], r[6])
    return out


def cycle_sums(conn: Connection, cycle_ids: Collection[str]) -> dict[str, CycleSums]:
    """The gross value and the fees each (open) cycle has accumulated so far,
    over all its participants: what a batch checks its additions against."""
    rows = conn.execute(
        select(
            positions.c.cycle_id,
            func.coalesce(func.sum(positions.c.sent), 0),
            func.coalesce(func.sum(positions.c.fee), 0),
        )
        .where(positions.c.cycle_id.in_(cycle_ids))
        .group_by(positions.c.cycle_id)
    )
    return {r[0]: CycleSums(int(r[1]), int(r[2])) for r in rows}


def bank_positions(
    conn: Connection, bank: str, cycle_ids: Collection[str]
) -> dict[str, PositionDelta]:
    """One bank's position rows in the given cycles, by cycle id."""
    if not cycle_ids:
        return {}
    rows = conn.execute(
        select(
            positions.c.cycle_id,
            positions.c.sent,
            positions.c.received,
            positions.c.sent_count,
            positions.c.received_count,
            positions.c.fee,
        ).where(positions.c.bank_code == bank, positions.c.cycle_id.in_(cycle_ids))
    )
    return {r[0]: PositionDelta(r[1], r[2], r[3], r[4], r[5]) for r in rows}


_bump_position = (
    update(positions)
    .where(positions.c.cycle_id == bindparam("c"), positions.c.bank_code == bindparam("b"))
    .values(
        sent=positions.c.sent + bindparam("s"),
        received=positions.c.received + bindparam("r"),
        sent_count=positions.c.sent_count + bindparam("sc"),
        received_count=positions.c.received_count + bindparam("rc"),
        fee=positions.c.fee + bindparam("f"),
    )
)


# home_region is written by the insert only: a bank's region never changes.
_UPSERT_POSITIONS_ARRAYS = text(
    "INSERT INTO positions "
    "(cycle_id, bank_code, sent, received, sent_count, received_count, fee, home_region) "
    "SELECT * FROM unnest(CAST(:c AS VARCHAR[]), CAST(:b AS VARCHAR[]), CAST(:s AS BIGINT[]), "
    "CAST(:r AS BIGINT[]), CAST(:sc AS BIGINT[]), CAST(:rc AS BIGINT[]), CAST(:f AS BIGINT[]), "
    "CAST(:h AS VARCHAR[])) "
    "ON CONFLICT (cycle_id, bank_code) DO UPDATE SET "
    "sent = positions.sent + excluded.sent, received = positions.received + excluded.received, "
    "sent_count = positions.sent_count + excluded.sent_count, "
    "received_count = positions.received_count + excluded.received_count, "
    "fee = positions.fee + excluded.fee"
)


def add_positions(
    conn: Connection,
    deltas: Mapping[tuple[str, str], PositionDelta],
    regions: Mapping[str, str] | None = None,
) -> None:
    """Apply per-bank position changes of one batch: one row per bank and
    cycle, however many transfers the batch held. A new row takes its bank's
    home region from `regions` (bank code -> region; looked up in one query
    for banks it lacks)."""
    if not deltas:
        return
    region = home_regions(conn, {bank for _, bank in deltas}, regions)
    if _arrays(conn):
        values = list(deltas.values())
        conn.execute(
            _UPSERT_POSITIONS_ARRAYS,
            {
                "c": [k[0] for k in deltas],
                "b": [k[1] for k in deltas],
                "s": [d.sent for d in values],
                "r": [d.received for d in values],
                "sc": [d.sent_count for d in values],
                "rc": [d.received_count for d in values],
                "f": [d.fee for d in values],
                "h": [region[k[1]] for k in deltas],
            },
        )
        return
    keys = list(deltas)
    present = {
        (c, b)
        for c, b in conn.execute(
            select(positions.c.cycle_id, positions.c.bank_code).where(
                tuple_(positions.c.cycle_id, positions.c.bank_code).in_(keys)
            )
        )
    }
    updates = []
    inserts = []
    for (cycle_id, bank), d in deltas.items():
        if (cycle_id, bank) in present:
            updates.append(
                {
                    "c": cycle_id,
                    "b": bank,
                    "s": d.sent,
                    "r": d.received,
                    "sc": d.sent_count,
                    "rc": d.received_count,
                    "f": d.fee,
                }
            )
        else:
            inserts.append(
                {
                    "cycle_id": cycle_id,
                    "bank_code": bank,
                    "sent": d.sent,
                    "received": d.received,
                    "sent_count": d.sent_count,
                    "received_count": d.received_count,
                    "fee": d.fee,
                    "home_region": region[bank],
                }
            )
    if updates:
        conn.execute(_bump_position, updates)
    if inserts:
        conn.execute(insert(positions), inserts)


# Transfers ------------------------------------------------------------------

_TRANSFER_COLUMNS = (
    transfers.c.id,
    transfers.c.debtor_bank,
    transfers.c.creditor_bank,
    transfers.c.currency,
    transfers.c.amount,
    transfers.c.remittance_info,
    transfers.c.status,
    transfers.c.cycle_id,
    transfers.c.accepted_at,
    transfers.c.quote_id,
    transfers.c.creditor_currency,
    transfers.c.creditor_amount,
    transfers.c.creditor_cycle_id,
    transfers.c.fee,
)
_N = len(_TRANSFER_COLUMNS)
_ACCEPTED_AT = 8  # index of accepted_at in _TRANSFER_COLUMNS
#: How far a transfer's accepted_at may precede its cycle's opened_at when
#: replicas' clocks differ (CockroachDB's own bound is 500 ms).
CLOCK_SKEW_MARGIN = timedelta(minutes=5)


def _transfer(r: tuple[Any, ...]) -> StoredTransfer:
    tid, debtor, creditor, currency, amount, info, status, cycle_id, accepted = r[:9]
    quote_id, ccur, camount, ccycle, fee = r[9:14]
    return StoredTransfer(
        str(tid),
        str(debtor),
        str(creditor),
        str(currency),
        int(amount),
        str(info),
        TransferStatus(status),
        str(cycle_id),
        utc(accepted),
        None if quote_id is None else str(quote_id),
        ccur,
        camount,
        ccycle,
        int(fee or 0),
    )


def existing_transfers(conn: Connection, ids: Collection[str]) -> dict[str, StoredTransfer]:
    if conn.dialect.name in ("postgresql", "cockroachdb"):
        # One array parameter instead of thousands of IN parameters. (Not an
        # array literal: with a constant of thousands of elements PostgreSQL
        # plans a sequential scan of the whole table.)
        match = transfers.c.id == any_(cast(bindparam("ids", list(ids)), ARRAY(UUID)))
    else:
        match = transfers.c.id.in_(ids)
    rows = conn.execute(select(*_TRANSFER_COLUMNS).where(match))
    return {str(r[0]): _transfer(tuple(r)) for r in rows}


def all_transfers(conn: Connection) -> Iterator[StoredTransfer]:
    for r in conn.execution_options(yield_per=10_000).execute(select(*_TRANSFER_COLUMNS)):
        yield _transfer(tuple(r))


def get_transfer(conn: Connection, transfer_id: str) -> StoredTransfer | None:
    row = conn.execute(select(*_TRANSFER_COLUMNS).where(transfers.c.id == transfer_id)).first()
    return None if row is None else _transfer(tuple(row))


_COPY_COLUMNS = (
    "id", "debtor_bank", "creditor_bank", "currency", "amount", "remittance_info", "status",
    "cycle_id", "accepted_at", "quote_id", "creditor_currency", "creditor_amount",
    "creditor_cycle_id", "fee", "home_region",
)  # fmt: skip
_COPY_TRANSFERS = f"COPY transfers ({', '.join(_COPY_COLUMNS)}) FROM STDIN"


# COPY's text format: tab-separated columns, \N for NULL, and backslash,
# tab, newline and carriage return escaped inside a value.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NO_FX = "\\N\t\\N\t\\N\t\\N\t\\N"


def copy_text_rows(items: Sequence[StoredTransfer], region: Mapping[str, str]) -> str:
    """The batch's transfers as one COPY text payload. Formatting rows here
    is several times cheaper than the driver's row-by-row dumpers. Only
    remittance_info is free text; every other text column holds a validated
    code, UUID or cycle id, which has nothing to escape."""
    stamps: dict[datetime, str] = {}
    lines = []
    for t in items:
        stamp = stamps.get(t.accepted_at)
        if stamp is None:
            stamp = stamps[t.accepted_at] = t.accepted_at.isoformat()
        info = t.remittance_info.translate(_COPY_ESCAPES) if t.remittance_info else ""
        if t.quote_id is None:
            fx = _NO_FX
        else:
            fx = (
                f"{t.quote_id}\t{t.creditor_currency}\t{t.creditor_amount}\t"
                f"{t.creditor_cycle_id}\t{t.fee}"
            )
        lines.append(
            f"{t.transfer_id}\t{t.debtor}\t{t.creditor}\t{t.currency}\t{t.amount}\t{info}\t"
            f"{int(t.status)}\t{t.cycle_id}\t{stamp}\t{fx}\t{region[t.debtor]}\n"
        )
    return "".join(lines)


def insert_transfers(
    conn: Connection, items: Sequence[StoredTransfer], regions: Mapping[str, str] | None = None
) -> None:
    """Each transfer is written with its debtor's home region, from `regions`
    (bank code -> region; looked up in one query for debtors it lacks)."""
    if not items:
        return
    region = home_regions(conn, {t.debtor for t in items}, regions)
    if conn.dialect.name == "postgresql":
        # COPY in the same transaction: the batch path's largest cost, and
        # several times faster than row-at-a-time INSERTs.
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(_COPY_TRANSFERS) as copy:
            copy.write(copy_text_rows(items, region))
        return
    rows = [
        {
            "id": t.transfer_id,
            "debtor_bank": t.debtor,
            "creditor_bank": t.creditor,
            "currency": t.currency,
            "amount": t.amount,
            "remittance_info": t.remittance_info,
            "status": int(t.status),
            "cycle_id": t.cycle_id,
            "accepted_at": t.accepted_at,
            "quote_id": t.quote_id,
            "creditor_currency": t.creditor_currency,
            "creditor_amount": t.creditor_amount,
            "creditor_cycle_id": t.creditor_cycle_id,
            "fee": t.fee if t.quote_id is not None else None,
            "home_region": region[t.debtor],
        }
        for t in items
    ]
    conn.execute(insert(transfers), rows)


def cycle_leg_sums(conn: Connection, cycle_id: str) -> dict[str, list[int]]:
    """Per participant [sent count, received count, sent value, received
    value] of a cycle's legs, recomputed from the transfers themselves."""
    out: dict[str, list[int]] = {}

    def add(bank: str, index: int, count: int, value: int) -> None:
        row = out.setdefault(bank, [0, 0, 0, 0])
        row[index] += count
        row[index + 2] += value

    live = transfers.c.status != int(TransferStatus.CANCELLED)
    same = transfers.c.creditor_cycle_id.is_(None)
    n, total = func.count(), func.coalesce(func.sum(transfers.c.amount), 0)
    for side, column in ((0, transfers.c.debtor_bank), (1, transfers.c.creditor_bank)):
        rows = conn.execute(
            select(column, n, total)
            .where(transfers.c.cycle_id == cycle_id, live, same)
            .group_by(column)
        )
        for bank, count, value in rows:
            add(bank, side, int(count), int(value))
    # Cross-currency: the source leg is debtor -> hub, the target leg hub -> creditor.
    for bank, count, value in conn.execute(
        select(transfers.c.debtor_bank, n, total)
        .where(transfers.c.cycle_id == cycle_id, live, ~same)
        .group_by(transfers.c.debtor_bank)
    ):
        add(bank, 0, int(count), int(value))
        add(HUB, 1, int(count), int(value))
    credit = func.coalesce(func.sum(transfers.c.creditor_amount), 0)
    for bank, count, value in conn.execute(
        select(transfers.c.creditor_bank, n, credit)
        .where(transfers.c.creditor_cycle_id == cycle_id, live)
        .group_by(transfers.c.creditor_bank)
    ):
        add(HUB, 0, int(count), int(value))
        add(bank, 1, int(count), int(value))
    return out


def cancel_transfer(conn: Connection, transfer_id: str, now: datetime) -> None:
    conn.execute(
        update(transfers)
        .where(transfers.c.id == transfer_id)
        .values(status=int(TransferStatus.CANCELLED), cancelled_at=now)
    )


def transfer_events(
    conn: Connection, bank: str, since: datetime, limit: int
) -> list[tuple[datetime, TransferStatus, StoredTransfer | None, Cycle | None]]:
    """What changed for a bank at or after `since`, oldest first, with the
    status it moved to: transfers it is party to that were accepted (or
    settled gross) or cancelled, and cycles it has a position in that closed
    or settled."""
    party = (transfers.c.debtor_bank == bank) | (transfers.c.creditor_bank == bank)
    out: list[tuple[datetime, TransferStatus, StoredTransfer | None, Cycle | None]] = []
    for column in (transfers.c.accepted_at, transfers.c.cancelled_at):
        query = select(*_TRANSFER_COLUMNS, column).where(party, column >= since)
        for r in conn.execute(query.order_by(column).limit(limit)):
            t = _transfer(tuple(r[:_N]))
            if column is transfers.c.cancelled_at:
                status = TransferStatus.CANCELLED
            else:
                status = TransferStatus.SETTLED if t.gross else TransferStatus.ACCEPTED
            out.append((utc(r[-1]), status, t, None))
    mine = select(positions.c.cycle_id).where(positions.c.bank_code == bank)
    changes = (
        (cycles.c.closed_at, CycleState.CLOSED, TransferStatus.CLOSED),
        (cycles.c.settled_at, CycleState.SETTLED, TransferStatus.SETTLED),
    )
    for column, state, moved_to in changes:
        query = select(cycles).where(column >= since, cycles.c.id.in_(mine))
        for r in conn.execute(query.order_by(column).limit(limit)):
            cycle = _cycle(r)
            at = cycle.closed_at if state is CycleState.CLOSED else cycle.settled_at
            assert at is not None
            out.append((at, moved_to, None, replace(cycle, state=state)))
    out.sort(key=lambda e: e[0])
    return out[:limit]


def list_transfers(
    conn: Connection,
    *,
    bank: str,
    counterparty: str,
    cycle_id: str,
    status: TransferStatus | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[tuple[StoredTransfer, tuple[CycleState, ...]]]:
    """Transfers the bank sent or received, newest first, keyset-paged. The
    status filter is on the effective status (see effective_status).

    Two ordered, limited queries, merged: the bank's debits and its credits,
    each read newest first from its own (bank, accepted_at, id) index (with a
    counterparty, from the pair index in both directions), so the first page
    reads about `limit` rows per side whatever the bank's history, instead of
    every row of the bank sorted (what `debtor = X OR creditor = X ORDER BY`
    costs). A bank is never both parties, so the sides are disjoint."""
    src = cycles.alias("src")
    dst = cycles.alias("dst")
    base = (
        select(*_TRANSFER_COLUMNS, src.c.state, dst.c.state)
        .outerjoin(src, src.c.id == transfers.c.cycle_id)
        .outerjoin(dst, dst.c.id == transfers.c.creditor_cycle_id)
        .order_by(transfers.c.accepted_at.desc(), transfers.c.id.desc())
        .limit(limit)
    )
    if cycle_id:
        # Either leg in the cycle; and accepted while it was open, which
        # bounds the ordered scan to the cycle's window of the bank's history.
        window = conn.execute(
            select(cycles.c.opened_at, cycles.c.closed_at).where(cycles.c.id == cycle_id)
        ).first()
        if window is None:
            return []
        opened, closed = window
        base = base.where(
            (transfers.c.cycle_id == cycle_id) | (transfers.c.creditor_cycle_id == cycle_id),
            transfers.c.accepted_at >= utc(opened) - CLOCK_SKEW_MARGIN,
        )
        if closed is not None:
            base = base.where(transfers.c.accepted_at <= utc(closed) + CLOCK_SKEW_MARGIN)
    if status is not None:
        if status in (TransferStatus.CANCELLED,):
            # A literal, not a parameter: the partial indexes of cancelled
            # transfers (status = 4) apply to every plan, generic ones too.
            base = base.where(transfers.c.status == literal_column(str(int(status))))
        else:
            if status is TransferStatus.SETTLED:
                # Settled: gross, or netted with no leg in a cycle that is not
                # settled yet. Written against the few unsettled cycle ids
                # rather than the joined states, so that the planner sees it
                # holds for most of a bank's history and reads the ordered
                # index; it passes over the unsettled window only.
                unsettled = list(
                    conn.execute(
                        select(cycles.c.id).where(cycles.c.state != int(CycleState.SETTLED))
                    ).scalars()
                )
                netted = transfers.c.status == int(TransferStatus.ACCEPTED)
                if unsettled:
                    netted = (
                        netted
                        & transfers.c.cycle_id.not_in(unsettled)
                        & (
                            transfers.c.creditor_cycle_id.is_(None)
                            | transfers.c.creditor_cycle_id.not_in(unsettled)
                        )
                    )
                base = base.where(netted | (transfers.c.status == int(TransferStatus.SETTLED)))
            else:
                # Only transfers of open (closed) cycles have this status, all
                # accepted after the oldest such cycle opened: bound the ordered
                # scan to that window (with a margin for clock skew between
                # replicas) instead of passing over the whole settled history.
                state = CycleState.OPEN if status is TransferStatus.ACCEPTED else CycleState.CLOSED
                oldest = conn.execute(
                    select(func.min(cycles.c.opened_at)).where(cycles.c.state == int(state))
                ).scalar()
                if oldest is None:
                    return []
                # The later leg decides: the minimum of both cycles' states.
                low = func.coalesce(dst.c.state, src.c.state)
                least = case((low < src.c.state, low), else_=src.c.state)
                base = base.where(
                    transfers.c.status == int(TransferStatus.ACCEPTED),
                    least == int(state),
                    transfers.c.accepted_at >= utc(oldest) - CLOCK_SKEW_MARGIN,
                )
    if before is not None:
        ts, tid = before
        base = base.where(
            (transfers.c.accepted_at < ts)
            | and_(transfers.c.accepted_at == ts, transfers.c.id < tid)
        )
    if counterparty:
        sides = [
            base.where(transfers.c.debtor_bank == bank, transfers.c.creditor_bank == counterparty),
            base.where(transfers.c.debtor_bank == counterparty, transfers.c.creditor_bank == bank),
        ]
    else:
        sides = [base.where(transfers.c.debtor_bank == bank)]
        sides.append(base.where(transfers.c.creditor_bank == bank))
    found: list[tuple[datetime, str, tuple[Any, ...]]] = []
    for query in sides:
        for r in conn.execute(query):
            row = tuple(r)
            found.append((utc(row[_ACCEPTED_AT]), str(row[0]), row))
    found.sort(key=lambda f: (f[0], f[1]), reverse=True)
    out = []
    for _, _, row in found[:limit]:
        states = tuple(CycleState(s) for s in row[_N:] if s is not None)
        out.append((_transfer(row[:_N]), states))
    return out


# Ledger ---------------------------------------------------------------------


def get_posting(conn: Connection, posting_id: str) -> PostingRecord | None:
    row = conn.execute(select(postings).where(postings.c.id == posting_id)).first()
    if row is None:
        return None
    p = row._mapping
    return PostingRecord(
        p["id"], EntryKind(p["kind"]), p["currency"], p["owner"], p["amount"], p["reference"],
        utc(p["posted_at"]),
    )  # fmt: skip


def post(conn: Connection, posting: Posting, *, owner: str, amount: int, now: datetime) -> None:
    """Write a balanced posting: its idempotency record, one entry per leg in
    each account's own sequence, and the new balances."""
    conn.execute(
        insert(postings).values(
            id=posting.posting_id,
            kind=int(posting.kind),
            currency=posting.currency,
            owner=owner,
            amount=amount,
            reference=posting.reference,
            posted_at=now,
        )
    )
    ids = {leg.account_id for leg in posting.legs}
    if not ids:
        return
    state = {
        r[0]: [r[1], r[2]]
        for r in conn.execute(
            select(accounts.c.id, accounts.c.balance, accounts.c.entry_count).where(
                accounts.c.id.in_(ids)
            )
        )
    }
    missing = ids - state.keys()
    if missing:
        raise AssertionError(f"posting {posting.posting_id} names missing accounts {missing}")
    entries = []
    for leg in posting.legs:
        acc = state[leg.account_id]
        acc[0] += leg.amount
        acc[1] += 1
        entries.append(
            {
                "account_id": leg.account_id,
                "seq": acc[1],
                "currency": posting.currency,
                "kind": int(posting.kind),
                "amount": leg.amount,
                "balance_after": acc[0],
                "posting_id": posting.posting_id,
                "reference": posting.reference,
                "posted_at": now,
            }
        )
    conn.execute(insert(ledger_entries), entries)
    conn.execute(
        update(accounts)
        .where(accounts.c.id == bindparam("aid"))
        .values(balance=bindparam("bal"), entry_count=bindparam("cnt")),
        [{"aid": k, "bal": v[0], "cnt": v[1]} for k, v in state.items()],
    )


def posting_entries(conn: Connection, posting_id: str) -> list[LedgerEntry]:
    rows = conn.execute(
        select(ledger_entries)
        .where(ledger_entries.c.posting_id == posting_id)
        .order_by(ledger_entries.c.account_id)
    )
    return [_entry(r) for r in rows]


def _entry(row: Any) -> LedgerEntry:
    e = row._mapping
    return LedgerEntry(
        e["account_id"], e["seq"], EntryKind(e["kind"]), e["amount"], e["balance_after"],
        e["posting_id"], e["reference"], utc(e["posted_at"]),
    )  # fmt: skip


def account_entries(
    conn: Connection, account_id: str, after_seq: int, limit: int
) -> list[LedgerEntry]:
    rows = conn.execute(
        select(ledger_entries)
        .where(ledger_entries.c.account_id == account_id, ledger_entries.c.seq > after_seq)
        .order_by(ledger_entries.c.seq)
        .limit(limit)
    )
    return [_entry(r) for r in rows]


def balance_after(conn: Connection, account_id: str, seq: int) -> int:
    if seq <= 0:
        return 0
    value = conn.execute(
        select(ledger_entries.c.balance_after).where(
            ledger_entries.c.account_id == account_id, ledger_entries.c.seq == seq
        )
    ).scalar()
    return int(value or 0)


def ledger_totals(conn: Connection) -> dict[str, tuple[int, int, int]]:
    """currency -> (sum of balances, sum of entries, number of entries)."""
    balances = {
        c: int(b or 0)
        for c, b in conn.execute(
            select(accounts.c.currency, func.sum(accounts.c.balance)).group_by(accounts.c.currency)
        )
    }
    entries = {
        c: (int(s or 0), int(n))
        for c, s, n in conn.execute(
            select(
                ledger_entries.c.currency,
                func.sum(ledger_entries.c.amount),
                func.count(),
            ).group_by(ledger_entries.c.currency)
        )
    }
    out: dict[str, tuple[int, int, int]] = {}
    for currency in sorted(set(balances) | set(entries)):
        s, n = entries.get(currency, (0, 0))
        out[currency] = (balances.get(currency, 0), s, n)
    return out


# FX -------------------------------------------------------------------------


def upsert_rates(conn: Connection, rates: list[Rate], now: datetime) -> None:
    keys = [(r.base, r.quote) for r in rates]
    present = set(
        conn.execute(
            select(fx_rates.c.base, fx_rates.c.quote).where(
                tuple_(fx_rates.c.base, fx_rates.c.quote).in_(keys)
            )
        ).tuples()
    )
    for r in rates:
        values = {"mid": str(r.mid), "as_of": r.as_of, "updated_at": now}
        if (r.base, r.quote) in present:
            conn.execute(
                update(fx_rates)
                .where(fx_rates.c.base == r.base, fx_rates.c.quote == r.quote)
                .values(**values)
            )
        else:
            conn.execute(insert(fx_rates).values(base=r.base, quote=r.quote, **values))


def delete_rates(conn: Connection, keys: Collection[tuple[str, str]]) -> None:
    """Remove the stored rates of these (base, quote) pairs, if any."""
    if keys:
        conn.execute(delete(fx_rates).where(tuple_(fx_rates.c.base, fx_rates.c.quote).in_(keys)))


def load_rates(conn: Connection) -> dict[tuple[str, str], Rate]:
    rows = conn.execute(select(fx_rates.c.base, fx_rates.c.quote, fx_rates.c.mid, fx_rates.c.as_of))
    return {(b, q): Rate(b, q, Decimal(m), utc(a)) for b, q, m, a in rows}


_QUOTE_COLUMNS = (
    "id", "bank_code", "source_currency", "target_currency", "source_amount", "target_amount",
    "mid_rate", "rate", "spread_bps", "fee", "derivation", "created_at", "expires_at",
)  # fmt: skip
_COPY_QUOTES = f"COPY fx_quotes ({', '.join(_QUOTE_COLUMNS)}) FROM STDIN"


def insert_quotes(conn: Connection, quotes: Sequence[Quote]) -> None:
    if not quotes:
        return
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(_COPY_QUOTES) as copy:
            for q in quotes:
                t = q.terms
                copy.write_row(
                    (
                        q.quote_id, q.bank, t.source_currency, t.target_currency,
                        t.source_amount, t.target_amount, str(t.mid_rate), str(t.rate),
                        t.spread_bps, t.fee, t.derivation, q.created_at, q.expires_at,
                    )
                )  # fmt: skip
        return
    conn.execute(
        insert(fx_quotes),
        [
            {
                "id": q.quote_id,
                "bank_code": q.bank,
                "source_currency": q.terms.source_currency,
                "target_currency": q.terms.target_currency,
                "source_amount": q.terms.source_amount,
                "target_amount": q.terms.target_amount,
                "mid_rate": str(q.terms.mid_rate),
                "rate": str(q.terms.rate),
                "spread_bps": q.terms.spread_bps,
                "fee": q.terms.fee,
                "derivation": q.terms.derivation,
                "created_at": q.created_at,
                "expires_at": q.expires_at,
            }
            for q in quotes
        ],
    )


def _quote(row: Any) -> Quote:
    q = row._mapping
    return Quote(
        str(q["id"]),
        q["bank_code"],
        QuoteTerms(
            q["source_currency"],
            q["target_currency"],
            q["source_amount"],
            q["target_amount"],
            Decimal(q["mid_rate"]),
            Decimal(q["rate"]),
            q["spread_bps"],
            q["fee"],
            q["derivation"],
        ),
        utc(q["created_at"]),
        utc(q["expires_at"]),
        None if q["used_by"] is None else str(q["used_by"]),
    )


def load_quotes(conn: Connection, ids: Collection[str]) -> dict[str, Quote]:
    rows = conn.execute(select(fx_quotes).where(fx_quotes.c.id.in_(ids)))
    return {str(r._mapping["id"]): _quote(r) for r in rows}


_MARK_QUOTES_USED_ARRAYS = text(
    "UPDATE fx_quotes SET used_by = v.tid, used_at = :now "
    "FROM unnest(CAST(:qids AS UUID[]), CAST(:tids AS UUID[])) AS v(qid, tid) "
    "WHERE fx_quotes.id = v.qid AND fx_quotes.used_by IS NULL"
)


def mark_quotes_used(conn: Connection, used: Mapping[str, str], now: datetime) -> None:
    if used and _arrays(conn):
        conn.execute(
            _MARK_QUOTES_USED_ARRAYS,
            {"qids": list(used), "tids": list(used.values()), "now": now},
        )
    elif used:
        conn.execute(
            update(fx_quotes)
            .where(fx_quotes.c.id == bindparam("qid"), fx_quotes.c.used_by.is_(None))
            .values(used_by=bindparam("tid"), used_at=now),
            [{"qid": q, "tid": t} for q, t in used.items()],
        )
