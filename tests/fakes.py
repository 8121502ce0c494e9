"""An in-memory unit of work: the ports of service_layer/unit_of_work.py on
plain dicts, for use-case tests without a database.

`FakeTransactions.write` runs the function on a copy-on-write snapshot of
the committed `FakeStore` and commits it only if the function returns: an
exception discards every write (that is how "nothing is stored" is tested).
`fail_next` makes an attempt fail with a retryable `Conflict`, before its
commit (the attempt is discarded and re-run) or after it (the attempt is
committed and re-run anyway, as after an ambiguous commit), so tests can
check that a use case re-run whole finds its first run's effect.
`read` runs on a read-only snapshot: a write there fails the test.

Each repository mirrors the SQL of adapters/db (ordering, upserts, guards,
feed numbering, the audit trail's chain), and is stricter where SQL would
silently do nothing for a key that is not there (`add_unsettled` on a
missing account, for instance): that is a use-case bug, so it raises.
`ReadModels.audit_snapshot` holds every row, so `FakeTransactions.violations`
runs the audit's checks (domain/audit.py) over the committed state.

The `seed_*` helpers write state through the fake's repositories, not
through the use cases, so that each use case's tests stand alone.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from remitnet.services.domain import audit
from remitnet.services.domain.account import Account
from remitnet.services.domain.audit_trail import (
    Action,
    AuditRecord,
    ChainHead,
    next_record,
)
from remitnet.services.domain.bank import Bank, ParticipantRole
from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.errors import Aborted, Reason, UnstorableValue
from remitnet.services.domain.events import (
    EventKind,
    FeedEvent,
    Head,
    NewEvent,
    batch_events,
    event_time,
)
from remitnet.services.domain.fx import Quote, Rate, derive, price
from remitnet.services.domain.iso20022 import AnsweredMessage
from remitnet.services.domain.ledger import (
    LedgerEntry,
    Posting,
    PostingAt,
    PostingRecord,
    deposit_posting,
)
from remitnet.services.domain.lifecycle import Recall, RecallState
from remitnet.services.domain.model import (
    DEFAULT_PROVIDER,
    HUB,
    AccountKind,
    BankStatus,
    CycleState,
    Instruction,
    StoredTransfer,
    TransferStatus,
    account_id,
    cycle_id_for,
    effective_status,
    make_instruction,
    position_account_id,
)
from remitnet.services.domain.money import INT64_MAX, INT64_MIN
from remitnet.services.domain.netting import (
    AccountState,
    CycleSums,
    PositionDelta,
    apply_leg,
    cycle_totals,
)
from remitnet.services.service_layer.participants import ensure_currency
from remitnet.services.service_layer.unit_of_work import (
    AccountRepository,
    BankRepository,
    CycleRepository,
    EventFeed,
    LedgerRepository,
    MessageLog,
    OperatorTrail,
    Parties,
    PositionRepository,
    QuoteRepository,
    ReadModels,
    RecallRepository,
    Transactions,
    TransferIdTaken,
    TransferRepository,
    UnitOfWork,
)

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

#: The home region of the hub's own rows (adapters/db/schema.HUB_HOME_REGION).
HUB_HOME_REGION = "HUB"


class Conflict(Exception):
    """A retryable failure (a serialization failure, an ambiguous commit):
    `FakeTransactions.write` re-runs the unit whole."""


class DuplicateKey(AssertionError):
    """An insert of a key that is there: a use case inserted without
    looking its key up first (a unique violation in SQL)."""


class ReadOnlyWrite(AssertionError):
    """A write inside `Transactions.read`."""


class MissingRow(AssertionError):
    """A write naming a row that does not exist."""


def _int64(value: int, what: str) -> int:
    """A BIGINT column refuses a value past int64 (SQLSTATE 22003), which
    Database.write turns into UnstorableValue."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise UnstorableValue(
            Reason.UNSTORABLE_VALUE,
            f"{what} {value} is out of the int64 range; nothing was stored",
            sqlstate="22003",
        )
    return value


# The tables ----------------------------------------------------------------


class Table(Generic[K, V]):
    """A dict shared with the snapshot it was forked from until either
    writes: the first write copies it (copy on write)."""

    __slots__ = ("_data", "_name", "_readonly", "_shared")

    def __init__(
        self,
        name: str,
        data: dict[K, V] | None = None,
        *,
        shared: bool = False,
        readonly: bool = False,
    ) -> None:
        self._name = name
        self._data: dict[K, V] = {} if data is None else data
        self._shared = shared
        self._readonly = readonly

    def fork(self, *, readonly: bool = False) -> Table[K, V]:
        self._shared = True
        return Table(self._name, self._data, shared=True, readonly=readonly)

    def _own(self) -> dict[K, V]:
        if self._readonly:
            raise ReadOnlyWrite(f"a write to {self._name} in a read-only unit of work")
        if self._shared:
            self._data = dict(self._data)
            self._shared = False
        return self._data

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def get(self, key: K) -> V | None:
        return self._data.get(key)

    def keys(self) -> list[K]:
        return list(self._data)

    def values(self) -> list[V]:
        return list(self._data.values())

    def items(self) -> list[tuple[K, V]]:
        return list(self._data.items())

    def as_dict(self) -> dict[K, V]:
        return dict(self._data)

    def __setitem__(self, key: K, value: V) -> None:
        self._own()[key] = value

    def insert(self, key: K, value: V) -> None:
        if key in self._data:
            raise DuplicateKey(f"{self._name} already holds {key!r}")
        self._own()[key] = value

    def update(self, key: K, value: V) -> None:
        if key not in self._data:
            raise MissingRow(f"{self._name} holds no {key!r}")
        self._own()[key] = value

    def delete(self, key: K) -> None:
        if key in self._data:
            del self._own()[key]


class Position(NamedTuple):
    """A stored position row (cycle, bank)."""

    sent: int
    received: int
    sent_count: int
    received_count: int
    fee: int
    home_region: str

    def delta(self) -> PositionDelta:
        return PositionDelta(
            self.sent, self.received, self.sent_count, self.received_count, self.fee
        )


class Entry(NamedTuple):
    """A stored ledger entry and the currency column it is summed by."""

    currency: str
    entry: LedgerEntry


class HeadRow(NamedTuple):
    seq: int
    last_at: datetime
    started_at: datetime
    region: str


class EventRow(NamedTuple):
    seq: int
    at: datetime
    kind: EventKind
    status: TransferStatus | RecallState
    transfer_id: str | None
    cycle_id: str | None
    other_cycle_id: str | None
    item_count: int
    home_region: str


_TABLES = (
    "banks",
    "accounts",
    "account_regions",
    "positions",
    "cycles",
    "transfers",
    "transfer_regions",
    "cancelled_at",
    "postings",
    "posting_entries",
    "entries",
    "rates",
    "rate_updated_at",
    "quotes",
    "quote_used_at",
    "feed_heads",
    "events",
    "trail",
    "recalls",
    "recall_regions",
    "iso_messages",
    "iso_message_regions",
)


class FakeStore:
    """Every table of the hub, as dicts. Tests read the committed store
    (`FakeTransactions.store`) to assert what was stored."""

    banks: Table[str, Bank]
    accounts: Table[str, Account]
    account_regions: Table[str, str]
    positions: Table[tuple[str, str], Position]  # (cycle_id, bank)
    cycles: Table[str, Cycle]
    transfers: Table[str, StoredTransfer]
    transfer_regions: Table[str, str]  # the debtor's home region
    cancelled_at: Table[str, datetime]
    postings: Table[str, PostingRecord]
    posting_entries: Table[str, tuple[tuple[str, int], ...]]  # posting -> (account, seq)
    entries: Table[tuple[str, int], Entry]  # (account_id, seq)
    rates: Table[tuple[str, str, str], Rate]  # (provider, base, quote)
    rate_updated_at: Table[tuple[str, str, str], datetime]
    quotes: Table[str, Quote]
    quote_used_at: Table[str, datetime]
    feed_heads: Table[str, HeadRow]
    events: Table[tuple[str, int], EventRow]  # (bank, seq)
    trail: Table[int, AuditRecord]  # seq -> record
    recalls: Table[str, Recall]  # transfer_id -> its recall
    recall_regions: Table[str, str]  # transfer_id -> the debtor's home region
    iso_messages: Table[tuple[str, str], AnsweredMessage]  # (bank, msg_id)
    iso_message_regions: Table[tuple[str, str], str]  # -> the bank's home region

    def __init__(self) -> None:
        for name in _TABLES:
            setattr(self, name, Table(name))
        # What migration 0008 makes on every database: the default provider,
        # active, homed with the hub's rows, with a feed head (its liquidity
        # accounts come with each currency, `seed_currency`).
        now = datetime.now(UTC)
        self.banks.insert(
            DEFAULT_PROVIDER,
            Bank(
                DEFAULT_PROVIDER,
                "Hub FX provider",
                HUB_HOME_REGION,
                BankStatus.ACTIVE,
                now,
                ParticipantRole.FX_PROVIDER,
            ),
        )
        self.feed_heads.insert(DEFAULT_PROVIDER, HeadRow(0, now, now, HUB_HOME_REGION))

    def fork(self, *, readonly: bool = False) -> FakeStore:
        """A snapshot that shares every table until it writes to it."""
        snapshot = FakeStore.__new__(FakeStore)
        for name in _TABLES:
            table: Table[Any, Any] = getattr(self, name)
            setattr(snapshot, name, table.fork(readonly=readonly))
        return snapshot

    def counts(self) -> dict[str, int]:
        """Rows per table: equal before and after a refusal."""
        return {name: len(getattr(self, name)) for name in _TABLES}

    def dump(self) -> dict[str, dict[Any, Any]]:
        """Every row of every table: equal before and after a refusal."""
        return {name: getattr(self, name).as_dict() for name in _TABLES}


# The repositories -------------------------------------------------------------


class FakeBanks:
    def __init__(self, store: FakeStore) -> None:
        self._s = store

    def get(self, code: str) -> Bank | None:
        return self._s.banks.get(code)

    def page(self, after: str, limit: int) -> list[Bank]:
        codes = sorted(c for c in self._s.banks if c > after)[:limit]
        return [self._s.banks[c] for c in codes]

    def add(self, bank: Bank) -> None:
        self._s.banks.insert(bank.code, bank)

    def set_status(self, code: str, status: BankStatus) -> None:
        bank = self._s.banks.get(code)
        if bank is not None:  # UPDATE ... WHERE code = : no row, no change
            self._s.banks[code] = replace(bank, status=status)

    def regions(self, codes: Collection[str] | None = None) -> dict[str, str]:
        wanted = self._s.banks.keys() if codes is None else codes
        return {c: self._s.banks[c].home_region for c in wanted if c in self._s.banks}

    def statuses_and_regions(
        self, codes: Collection[str]
    ) -> tuple[dict[str, BankStatus], dict[str, str]]:
        statuses: dict[str, BankStatus] = {}
        regions: dict[str, str] = {}
        for code in codes:
            bank = self._s.banks.get(code)
            if bank is not None:
                statuses[code] = bank.status
                regions[code] = bank.home_region
        return statuses, regions

    def statuses_roles_and_regions(
        self, codes: Collection[str]
    ) -> tuple[dict[str, BankStatus], dict[str, ParticipantRole], dict[str, str]]:
        statuses: dict[str, BankStatus] = {}
        roles: dict[str, ParticipantRole] = {}
        regions: dict[str, str] = {}
        for code in codes:
            bank = self._s.banks.get(code)
            if bank is not None:
                statuses[code] = bank.status
                roles[code] = bank.roles
                regions[code] = bank.home_region
        return statuses, roles, regions

    def parties(self, codes: Collection[str]) -> Parties:
        statuses, roles, regions = self.statuses_roles_and_regions(codes)
        confirming = frozenset(c for c in statuses if self._s.banks[c].requires_confirmation)
        return Parties(statuses, roles, regions, confirming)

    def set_requires_confirmation(self, code: str, required: bool) -> None:
        bank = self._s.banks.get(code)
        if bank is not None:
            self._s.banks[code] = replace(bank, requires_confirmation=required)

    def codes_by_bic(self, bics: Collection[str]) -> dict[str, str]:
        wanted = set(bics)
        return {b.bic: b.code for b in self._s.banks.values() if b.bic in wanted and b.bic}

    def providers(self) -> list[Bank]:
        return [self._s.banks[c] for c in sorted(self._s.banks) if self._s.banks[c].is_provider]

    def home_regions(
        self, codes: Collection[str], known: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        out = {HUB: HUB_HOME_REGION}
        if known:
            out.update(known)
        missing = [c for c in codes if c not in out]
        if missing:
            out.update(self.regions(missing))
        unknown = sorted(c for c in codes if c not in out)
        if unknown:
            raise AssertionError(f"rows owned by banks that do not exist: {unknown}")
        return out


class FakeAccounts:
    def __init__(self, store: FakeStore) -> None:
        self._s = store

    def get(self, account_id: str) -> Account | None:
        return self._s.accounts.get(account_id)

    def of_owner(self, owner: str) -> list[Account]:
        found = [a for a in self._s.accounts.values() if a.owner == owner]
        return sorted(found, key=lambda a: (a.currency, a.id))

    def of_owners(self, owners: Collection[str]) -> dict[str, list[Account]]:
        out: dict[str, list[Account]] = {o: [] for o in owners}
        for a in sorted(self._s.accounts.values(), key=lambda a: (a.owner, a.currency, a.id)):
            if a.owner in out:
                out[a.owner].append(a)
        return out

    def all(self, kind: str | None = None) -> list[Account]:
        return [
            self._s.accounts[i]
            for i in sorted(self._s.accounts)
            if kind is None or self._s.accounts[i].kind == kind
        ]

    def add(
        self,
        account_id: str,
        owner: str,
        currency: str,
        kind: str,
        now: datetime,
        *,
        home_region: str,
    ) -> None:
        self._s.accounts.insert(
            account_id, Account(account_id, owner, currency, kind, 0, 0, 0, 0, now)
        )
        self._s.account_regions[account_id] = home_region

    def set_cap(self, account_id: str, cap: int) -> None:
        account = self._s.accounts.get(account_id)
        if account is not None:
            self._s.accounts[account_id] = replace(
                account, net_debit_cap=_int64(cap, "net_debit_cap")
            )

    def states(self, ids: Collection[str]) -> dict[str, AccountState]:
        out: dict[str, AccountState] = {}
        for aid in ids:
            a = self._s.accounts.get(aid)
            if a is not None and a.kind in (AccountKind.LIQUIDITY, AccountKind.FX):
                # A fresh working copy each time: clear_batch mutates it.
                out[aid] = AccountState(
                    a.id,
                    a.owner,
                    a.currency,
                    a.balance,
                    a.net_debit_cap,
                    a.unsettled_net,
                    a.reserved,
                )
        return out

    def add_unsettled(self, deltas: Mapping[str, int]) -> None:
        for aid, delta in deltas.items():
            if not delta:
                continue
            account = self._s.accounts.get(aid)
            if account is None:
                raise MissingRow(f"unsettled net added to a missing account {aid}")
            total = _int64(account.unsettled_net + delta, f"unsettled_net of {aid}")
            self._s.accounts[aid] = replace(account, unsettled_net=total)

    def add_reserved(self, deltas: Mapping[str, int]) -> None:
        for aid, delta in deltas.items():
            if not delta:
                continue
            account = self._s.accounts.get(aid)
            if account is None:
                raise MissingRow(f"reservation added to a missing account {aid}")
            total = _int64(account.reserved + delta, f"reserved of {aid}")
            self._s.accounts[aid] = replace(account, reserved=total)


class FakePositions:
    def __init__(self, store: FakeStore, banks: FakeBanks) -> None:
        self._s = store
        self._banks = banks

    def of_cycle(self, cycle_id: str) -> dict[str, PositionDelta]:
        found = {b: p for (c, b), p in self._s.positions.items() if c == cycle_id}
        return {b: found[b].delta() for b in sorted(found)}

    def of_cycles(self, cycle_ids: Collection[str]) -> dict[str, dict[str, PositionDelta]]:
        return {c: self.of_cycle(c) for c in cycle_ids}

    def of_bank(self, bank: str, cycle_ids: Collection[str]) -> dict[str, PositionDelta]:
        out: dict[str, PositionDelta] = {}
        for cid in cycle_ids:
            row = self._s.positions.get((cid, bank))
            if row is not None:
                out[cid] = row.delta()
        return out

    def add(
        self,
        deltas: Mapping[tuple[str, str], PositionDelta],
        regions: Mapping[str, str] | None = None,
    ) -> None:
        if not deltas:
            return
        region = self._banks.home_regions({bank for _, bank in deltas}, regions)
        for key, d in deltas.items():
            row = self._s.positions.get(key)
            if row is None:
                row = Position(0, 0, 0, 0, 0, region[key[1]])
            where = f"position {key}"
            self._s.positions[key] = Position(
                _int64(row.sent + d.sent, f"sent of {where}"),
                _int64(row.received + d.received, f"received of {where}"),
                _int64(row.sent_count + d.sent_count, f"sent_count of {where}"),
                _int64(row.received_count + d.received_count, f"received_count of {where}"),
                _int64(row.fee + d.fee, f"fee of {where}"),
                row.home_region,  # written by the insert only
            )


class FakeCycles:
    def __init__(self, store: FakeStore) -> None:
        self._s = store

    def get(self, cycle_id: str) -> Cycle | None:
        return self._s.cycles.get(cycle_id)

    def open_for(self, currency: str) -> Cycle | None:
        for c in self._s.cycles.values():
            if c.currency == currency and c.state is CycleState.OPEN:
                return c
        return None

    def open_ids(self, currencies: Collection[str]) -> dict[str, str]:
        wanted = set(currencies)
        return {
            c.currency: c.id
            for c in self._s.cycles.values()
            if c.currency in wanted and c.state is CycleState.OPEN
        }

    def page(
        self, currency: str, state: CycleState | None, before: str | None, limit: int
    ) -> list[Cycle]:
        found = [
            c
            for c in self._s.cycles.values()
            if (not currency or c.currency == currency) and (state is None or c.state is state)
        ]
        marker = self._s.cycles.get(before) if before else None
        if marker is not None:
            found = [c for c in found if (c.opened_at, c.id) < (marker.opened_at, marker.id)]
        found.sort(key=lambda c: (c.opened_at, c.id), reverse=True)
        return found[:limit]

    def states(self, cycle_ids: Collection[str]) -> dict[str, CycleState]:
        return {c: self._s.cycles[c].state for c in cycle_ids if c in self._s.cycles}

    def unsettled(self) -> list[Cycle]:
        closed = [c for c in self._s.cycles.values() if c.state is CycleState.CLOSED]
        return sorted(closed, key=lambda c: (c.closed_at or c.opened_at, c.id))

    def add(self, cycle_id: str, currency: str, seq: int, now: datetime) -> None:
        for c in self._s.cycles.values():
            if c.currency == currency and c.seq == seq:
                raise DuplicateKey(f"cycles already hold {currency} seq {seq}")
            if c.currency == currency and c.state is CycleState.OPEN:
                raise DuplicateKey(f"{currency} already has an open cycle, {c.id}")
        self._s.cycles.insert(
            cycle_id, Cycle(cycle_id, currency, seq, CycleState.OPEN, now, None, None, 0, 0, 0)
        )

    def max_seq(self, currency: str) -> int:
        return max((c.seq for c in self._s.cycles.values() if c.currency == currency), default=0)

    def seal(self, cycle_id: str, now: datetime, count: int, gross: int, net: int) -> None:
        cycle = self._s.cycles.get(cycle_id)
        if cycle is not None:
            self._s.cycles[cycle_id] = replace(
                cycle,
                state=CycleState.CLOSED,
                closed_at=now,
                transfer_count=_int64(count, "transfer_count"),
                gross_value=_int64(gross, "gross_value"),
                net_value=_int64(net, "net_value"),
            )

    def mark_settled(self, cycle_id: str, now: datetime) -> None:
        cycle = self._s.cycles.get(cycle_id)
        if cycle is not None:
            self._s.cycles[cycle_id] = replace(cycle, state=CycleState.SETTLED, settled_at=now)

    def open_with_sums(
        self, currencies: Collection[str]
    ) -> tuple[dict[str, str], dict[str, CycleSums]]:
        open_ids = self.open_ids(currencies)
        out = {cid: CycleSums() for cid in open_ids.values()}
        for (cid, _), p in self._s.positions.items():
            sums = out.get(cid)
            if sums is not None:
                sums.gross += p.sent
                sums.fee += p.fee
        return open_ids, out


class FakeTransfers:
    def __init__(self, store: FakeStore, banks: FakeBanks) -> None:
        self._s = store
        self._banks = banks

    def existing(self, ids: Collection[str]) -> dict[str, StoredTransfer]:
        return {i: self._s.transfers[i] for i in ids if i in self._s.transfers}

    def get(self, transfer_id: str) -> StoredTransfer | None:
        return self._s.transfers.get(transfer_id)

    def all(self) -> Iterator[StoredTransfer]:
        return iter(self._s.transfers.values())

    def add(
        self, items: Sequence[StoredTransfer], regions: Mapping[str, str] | None = None
    ) -> None:
        if not items:
            return
        region = self._banks.home_regions({t.debtor for t in items}, regions)
        if any(t.transfer_id in self._s.transfers for t in items):
            # As the primary key refuses it in SQL (the batch path inserts
            # without looking its ids up first).
            raise TransferIdTaken("a transfer id of the batch is stored already")
        for t in items:
            _int64(t.amount, "amount")
            # The fee column is NULL without a quote, and reads back as 0.
            stored = t if t.quote_id is not None else t._replace(fee=0)
            self._s.transfers.insert(t.transfer_id, stored)
            self._s.transfer_regions[t.transfer_id] = region[t.debtor]

    def cancel(self, transfer_id: str, now: datetime, reason: str | None = None) -> None:
        t = self._s.transfers.get(transfer_id)
        if t is not None:
            changed = t._replace(status=TransferStatus.CANCELLED)
            if t.status is TransferStatus.RESERVED:
                changed = changed._replace(resolved_at=now)
            if reason is not None:
                changed = changed._replace(reason=reason)
            self._s.transfers[transfer_id] = changed
            self._s.cancelled_at[transfer_id] = now

    def resolve(self, changed: Sequence[StoredTransfer]) -> None:
        for t in changed:
            old = self._s.transfers.get(t.transfer_id)
            if old is None:
                raise MissingRow(f"resolved a missing transfer {t.transfer_id}")
            self._s.transfers[t.transfer_id] = old._replace(
                status=t.status,
                cycle_id=t.cycle_id,
                creditor_cycle_id=t.creditor_cycle_id,
                resolved_at=t.resolved_at,
                reason=t.reason,
            )

    def due(self, now: datetime, limit: int) -> list[StoredTransfer]:
        found = [
            t
            for t in self._s.transfers.values()
            if t.status is TransferStatus.RESERVED and t.deadline is not None and t.deadline <= now
        ]
        found.sort(key=lambda t: (t.deadline or now, t.transfer_id))
        return found[:limit]

    def mark_returned(self, returns: Mapping[str, str]) -> None:
        for original, by in returns.items():
            t = self._s.transfers.get(original)
            if t is None:
                raise MissingRow(f"returned a missing transfer {original}")
            self._s.transfers[original] = t._replace(returned_by=by)

    def leg_sums(self, cycle_id: str) -> dict[str, list[int]]:
        """Per participant [sent count, received count, sent value, received
        value] of the cycle's live legs, as adapters/db/transfers.py sums them."""
        out: dict[str, list[int]] = {}

        def add(bank: str, index: int, value: int) -> None:
            row = out.setdefault(bank, [0, 0, 0, 0])
            row[index] += 1
            row[index + 2] += value

        for t in self._s.transfers.values():
            if t.status is TransferStatus.CANCELLED:
                continue
            if t.creditor_cycle_id is None:
                if t.cycle_id == cycle_id:
                    add(t.debtor, 0, t.amount)
                    add(t.creditor, 1, t.amount)
                continue
            provider = t.fx_provider or HUB  # the hub before FX providers
            if t.cycle_id == cycle_id:
                add(t.debtor, 0, t.amount)
                add(provider, 1, t.amount)
            if t.creditor_cycle_id == cycle_id:
                add(provider, 0, t.credit_amount)
                add(t.creditor, 1, t.credit_amount)
        return out


class FakeLedger:
    def __init__(self, store: FakeStore) -> None:
        self._s = store

    def get_posting(self, posting_id: str) -> PostingRecord | None:
        return self._s.postings.get(posting_id)

    def post_many(self, postings: Sequence[PostingAt]) -> None:
        for p in postings:
            self.post(p.posting, owner=p.owner, amount=p.amount, now=p.at)

    def post(
        self,
        posting: Posting,
        *,
        owner: str,
        amount: int,
        now: datetime,
        unsettled: Mapping[str, int] | None = None,
    ) -> None:
        self._s.postings.insert(
            posting.posting_id,
            PostingRecord(
                posting.posting_id,
                posting.kind,
                posting.currency,
                owner,
                _int64(amount, "posting amount"),
                posting.reference,
                now,
            ),
        )
        missing = {leg.account_id for leg in posting.legs} - set(self._s.accounts)
        if missing:
            raise AssertionError(f"posting {posting.posting_id} names missing accounts {missing}")
        written: list[tuple[str, int]] = []
        for leg in posting.legs:
            account = self._s.accounts[leg.account_id]
            balance = _int64(account.balance + leg.amount, f"balance of {account.id}")
            seq = account.entry_count + 1
            self._s.accounts[account.id] = replace(account, balance=balance, entry_count=seq)
            entry = LedgerEntry(
                account.id,
                seq,
                posting.kind,
                leg.amount,
                balance,
                posting.posting_id,
                posting.reference,
                now,
            )
            self._s.entries.insert((account.id, seq), Entry(posting.currency, entry))
            written.append((account.id, seq))
        self._s.posting_entries[posting.posting_id] = tuple(written)
        for aid, delta in (unsettled or {}).items():
            if delta:
                account = self._s.accounts[aid]
                total = _int64(account.unsettled_net + delta, f"unsettled_net of {aid}")
                self._s.accounts[aid] = replace(account, unsettled_net=total)

    def posting_entries(self, posting_id: str) -> list[LedgerEntry]:
        keys = sorted(self._s.posting_entries.get(posting_id) or ())
        return [self._s.entries[k].entry for k in keys]

    def entries(self, account_id: str, after_seq: int, limit: int) -> list[LedgerEntry]:
        account = self._s.accounts.get(account_id)
        if account is None or limit <= 0:
            return []
        first = max(after_seq, 0) + 1  # seq > after_seq
        last = min(account.entry_count, first - 1 + limit)
        return [self._s.entries[(account_id, s)].entry for s in range(first, last + 1)]

    def balance_after(self, account_id: str, seq: int) -> int:
        if seq <= 0:
            return 0
        found = self._s.entries.get((account_id, seq))
        return 0 if found is None else found.entry.balance_after

    def last_seq_before(self, account_id: str, at: datetime) -> int:
        account = self._s.accounts.get(account_id)
        count = 0 if account is None else account.entry_count
        posted = (self._s.entries[(account_id, s)].entry for s in range(1, count + 1))
        return max((e.seq for e in posted if e.posted_at < at), default=0)


class FakeQuotes:
    def __init__(self, store: FakeStore) -> None:
        self._s = store

    def upsert_rates(self, rates: list[Rate], now: datetime) -> None:
        for r in rates:
            if r.provider not in self._s.banks:
                raise MissingRow(f"rates of {r.provider}, who is no participant")
            self._s.rates[(r.provider, r.base, r.quote)] = r
            self._s.rate_updated_at[(r.provider, r.base, r.quote)] = now

    def delete_rates(self, keys: Collection[tuple[str, str, str]]) -> None:
        for key in keys:
            if key in self._s.rates:  # DELETE ... WHERE: no row, no change
                self._s.rates.delete(key)
                self._s.rate_updated_at.delete(key)

    def rates(self) -> dict[tuple[str, str, str], Rate]:
        return self._s.rates.as_dict()

    def add(self, quotes: Sequence[Quote]) -> None:
        for q in quotes:
            # used_by is not a column the insert writes.
            self._s.quotes.insert(q.quote_id, replace(q, used_by=None))

    def get_many(self, ids: Collection[str]) -> dict[str, Quote]:
        return {i: self._s.quotes[i] for i in ids if i in self._s.quotes}

    def mark_used(self, used: Mapping[str, str], now: datetime) -> None:
        for qid, tid in used.items():
            quote = self._s.quotes.get(qid)
            if quote is None:
                raise MissingRow(f"quote {qid} marked used but never issued")
            if quote.used_by is None:  # WHERE used_by IS NULL
                self._s.quotes[qid] = replace(quote, used_by=tid)
                self._s.quote_used_at[qid] = now


class FakeRecalls:
    def __init__(self, store: FakeStore) -> None:
        self._s = store

    def get(self, transfer_id: str) -> Recall | None:
        return self._s.recalls.get(transfer_id)

    def of_transfers(self, ids: Collection[str]) -> dict[str, Recall]:
        return {i: self._s.recalls[i] for i in ids if i in self._s.recalls}

    def by_id(self, recall_id: str) -> Recall | None:
        for r in self._s.recalls.values():
            if r.recall_id == recall_id:
                return r
        return None

    def add(self, recall: Recall, region: str) -> None:
        if self.by_id(recall.recall_id) is not None:
            raise UnstorableValue(Reason.UNSTORABLE_VALUE, "duplicate recall id")
        self._s.recalls.insert(recall.transfer_id, recall)
        self._s.recall_regions[recall.transfer_id] = region

    def update(self, recalls: Sequence[Recall]) -> None:
        for r in recalls:
            old = self._s.recalls.get(r.transfer_id)
            if old is None:
                raise MissingRow(f"updated a missing recall {r.recall_id}")
            self._s.recalls[r.transfer_id] = replace(
                old,
                state=r.state,
                answered_at=r.answered_at,
                answer_reason=r.answer_reason,
                return_id=r.return_id,
            )

    def due(self, now: datetime, limit: int) -> list[Recall]:
        found = [
            r
            for r in self._s.recalls.values()
            if r.state is RecallState.REQUESTED and r.deadline <= now
        ]
        found.sort(key=lambda r: (r.deadline, r.recall_id))
        return found[:limit]


class FakeFeed:
    def __init__(self, store: FakeStore) -> None:
        self._s = store

    def create_head(self, bank: str, region: str, now: datetime) -> None:
        self._s.feed_heads.insert(bank, HeadRow(0, now, now, region))

    def heads(self, banks: Collection[str]) -> dict[str, Head]:
        """The feed heads of `banks` (unknown codes and the hub have none)."""
        out: dict[str, Head] = {}
        for bank in banks:
            head = self._s.feed_heads.get(bank) if bank != HUB else None
            if head is not None:
                out[bank] = Head(head.seq, head.last_at, head.region)
        return out

    def append(self, heads: Mapping[str, Head], new: Sequence[NewEvent], at: datetime) -> None:
        """Number `new` after each bank's head, in order, at time `at`."""
        if not new:
            return
        seqs: dict[str, int] = {}
        for e in new:
            if e.bank not in heads:
                raise AssertionError(f"an event for {e.bank}, which has no feed head")
            seq = seqs.get(e.bank, heads[e.bank].seq) + 1
            seqs[e.bank] = seq
            self._s.events.insert(
                (e.bank, seq),
                EventRow(
                    seq,
                    at,
                    e.kind,
                    e.status,
                    e.transfer_id,
                    e.cycle_id,
                    e.other_cycle_id,
                    e.item_count,
                    heads[e.bank].region,
                ),
            )
        for bank, seq in seqs.items():
            head = self._s.feed_heads[bank]
            self._s.feed_heads[bank] = head._replace(seq=seq, last_at=at)

    def publish(self, new: Sequence[NewEvent], clock: datetime) -> datetime:
        heads = self.heads({e.bank for e in new})
        at = event_time(heads, clock)
        self.append(heads, new, at)
        return at

    def _legs_reaching(self, cycle_id: str, state: CycleState) -> list[tuple[str, str, int]]:
        groups: dict[tuple[str, str, str], int] = defaultdict(int)
        for t in self._s.transfers.values():
            if t.status is not TransferStatus.ACCEPTED or t.creditor_cycle_id is None:
                continue
            if t.cycle_id == cycle_id:
                groups[(t.debtor, t.creditor, t.creditor_cycle_id)] += 1
            if t.creditor_cycle_id == cycle_id:
                groups[(t.debtor, t.creditor, t.cycle_id)] += 1
        reached = {
            other
            for _, _, other in groups
            if other in self._s.cycles and self._s.cycles[other].state >= state
        }
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for (debtor, creditor, other), n in groups.items():
            if other in reached:
                counts[(debtor, other)] += n
                counts[(creditor, other)] += n
        return [(bank, other, n) for (bank, other), n in sorted(counts.items())]

    def cycle_events(
        self, cycle_id: str, state: CycleState, banks: Collection[str]
    ) -> list[NewEvent]:
        status = TransferStatus.CLOSED if state is CycleState.CLOSED else TransferStatus.SETTLED
        out = [
            NewEvent(b, EventKind.CYCLE, status, cycle_id=cycle_id)
            for b in sorted(banks)
            if b != HUB
        ]
        for bank, other, n in self._legs_reaching(cycle_id, state):
            out.append(
                NewEvent(
                    bank,
                    EventKind.LEGS,
                    status,
                    cycle_id=cycle_id,
                    other_cycle_id=other,
                    item_count=n,
                )
            )
        return out

    def current_heads(self, banks: Collection[str]) -> dict[str, int]:
        return {b: self._s.feed_heads[b].seq for b in banks if b in self._s.feed_heads}

    def seq_before(self, bank: str, since: datetime) -> int:
        head = self._s.feed_heads.get(bank)
        for seq in range(head.seq if head else 0, 0, -1):
            if self._s.events[(bank, seq)].at < since:
                return seq
        return 0

    def load(self, bank: str, from_seq: int, max_items: int) -> list[FeedEvent]:
        head = self._s.feed_heads.get(bank)
        last = head.seq if head else 0
        first = max(from_seq, 1)
        rows = [self._s.events[(bank, s)] for s in range(first, last + 1)]
        rows = rows[: max(1, min(max_items, 1_000))]
        taken: list[EventRow] = []
        items = 0
        for r in rows:
            if taken and items + r.item_count > max_items:
                break
            taken.append(r)
            items += r.item_count
        out: list[FeedEvent] = []
        for r in taken:
            if r.kind is EventKind.BATCH:
                # ACCEPTED: netted at once; RESERVED: reserved, whatever since.
                reserved = r.status is TransferStatus.RESERVED
                batch = [
                    t
                    for t in self._s.transfers.values()
                    if bank in (t.debtor, t.creditor)
                    and t.accepted_at == r.at
                    and (
                        t.deadline is not None
                        if reserved
                        else t.deadline is None and t.cycle_id != ""
                    )
                ]
                batch.sort(key=lambda t: t.transfer_id)
                out.append(
                    FeedEvent(
                        r.seq, r.at, r.kind, TransferStatus(int(r.status)), tuple(batch), None
                    )
                )
            elif r.kind is EventKind.RESOLVED:
                batch = [
                    t
                    for t in self._s.transfers.values()
                    if bank in (t.debtor, t.creditor)
                    and t.resolved_at == r.at
                    and t.resolution == r.status
                ]
                batch.sort(key=lambda t: t.transfer_id)
                out.append(
                    FeedEvent(
                        r.seq, r.at, r.kind, TransferStatus(int(r.status)), tuple(batch), None
                    )
                )
            elif r.kind is EventKind.RECALL:
                assert r.transfer_id is not None
                t = self._s.transfers[r.transfer_id]
                then = replace(self._s.recalls[r.transfer_id], state=RecallState(r.status))
                out.append(FeedEvent(r.seq, r.at, r.kind, t.status, (t,), None, then))
            elif r.kind is EventKind.TRANSFER:
                assert r.transfer_id is not None
                t = self._s.transfers[r.transfer_id]
                out.append(
                    FeedEvent(r.seq, r.at, r.kind, TransferStatus(int(r.status)), (t,), None)
                )
            elif r.kind is EventKind.LEGS:
                pair = {r.cycle_id, r.other_cycle_id}
                legs = [
                    t
                    for t in self._s.transfers.values()
                    if t.creditor_cycle_id is not None
                    and {t.cycle_id, t.creditor_cycle_id} == pair
                    and bank in (t.debtor, t.creditor)
                    and t.status is TransferStatus.ACCEPTED
                ]
                legs.sort(key=lambda t: t.transfer_id)
                out.append(
                    FeedEvent(r.seq, r.at, r.kind, TransferStatus(int(r.status)), tuple(legs), None)
                )
            else:
                assert r.cycle_id is not None
                cycle = self._s.cycles[r.cycle_id]
                out.append(FeedEvent(r.seq, r.at, r.kind, TransferStatus(int(r.status)), (), cycle))
        return out

    def stored(self, bank: str) -> list[EventRow]:
        """Every event of `bank`, in order (for tests)."""
        head = self._s.feed_heads.get(bank)
        return [self._s.events[(bank, s)] for s in range(1, (head.seq if head else 0) + 1)]


class FakeTrail:
    def __init__(self, store: FakeStore) -> None:
        self._s = store

    def head(self) -> AuditRecord | None:
        return self._s.trail.get(len(self._s.trail))

    def append(
        self, principal: str, action: Action, request: Mapping[str, Any], now: datetime
    ) -> AuditRecord:
        record = next_record(self.head(), principal, now, action, request)
        self._s.trail.insert(record.seq, record)
        return record

    def settlement_heads(self, cycle_ids: Collection[str]) -> dict[str, ChainHead]:
        wanted = set(cycle_ids)
        return {
            r.subject: ChainHead(r.seq, r.hash)
            for r in self.records()
            if r.subject in wanted and r.action == str(Action.SETTLE_CYCLE)
        }

    def records(self) -> Iterator[AuditRecord]:
        return iter([self._s.trail[s] for s in range(1, len(self._s.trail) + 1)])


class FakeViews:
    def __init__(self, store: FakeStore) -> None:
        self._s = store

    def _states(self, t: StoredTransfer) -> tuple[CycleState, ...]:
        # The outer joins of the source and the target cycle, in that order.
        return tuple(
            self._s.cycles[c].state
            for c in (t.cycle_id, t.creditor_cycle_id)
            if c and c in self._s.cycles
        )

    def list_transfers(
        self,
        *,
        bank: str,
        counterparty: str,
        cycle_id: str,
        status: TransferStatus | None,
        before: tuple[datetime, str] | None,
        limit: int,
        kind: str = "",
        returned: bool | None = None,
        recall_state: RecallState | None = None,
    ) -> list[tuple[StoredTransfer, tuple[CycleState, ...]]]:
        """Newest first by (accepted_at, id), the status filter on the
        effective status. (The SQL also bounds its scans by the cycles'
        windows with a clock-skew margin, which only ever drops transfers
        that the filters drop too.)"""
        if cycle_id and cycle_id not in self._s.cycles:
            return []
        found: list[tuple[StoredTransfer, tuple[CycleState, ...]]] = []
        for t in self._s.transfers.values():
            if counterparty:
                if (t.debtor, t.creditor) not in ((bank, counterparty), (counterparty, bank)):
                    continue
            elif bank not in (t.debtor, t.creditor):
                continue
            if cycle_id and cycle_id not in (t.cycle_id, t.creditor_cycle_id):
                continue
            states = self._states(t)
            if status is not None and effective_status(t.status, *states) is not status:
                continue
            if before is not None and (t.accepted_at, t.transfer_id) >= before:
                continue
            if kind and (kind == "return") != (t.return_of is not None):
                continue
            if returned is not None and returned != (t.returned_by is not None):
                continue
            if recall_state is not None:
                recall = self._s.recalls.get(t.transfer_id)
                if recall is None or recall.state is not recall_state:
                    continue
            found.append((t, states))
        found.sort(key=lambda f: (f[0].accepted_at, f[0].transfer_id), reverse=True)
        return found[:limit]

    def audit_snapshot(self) -> audit.AuditSnapshot:
        """Every row, as adapters/db/audit_snapshot.py reads them."""
        s = self._s
        entries = [
            audit.StoredEntry(
                e.entry.account_id,
                e.entry.seq,
                e.entry.kind,
                e.entry.amount,
                e.entry.balance_after,
                e.entry.posting_id,
                e.entry.reference,
                e.entry.posted_at,
                e.currency,
            )
            for _, e in sorted(s.entries.items())
        ]
        return audit.AuditSnapshot(
            accounts=[s.accounts[i] for i in sorted(s.accounts)],
            entries=entries,
            postings=s.postings.values(),
            cycles=[s.cycles[i] for i in sorted(s.cycles)],
            positions={k: p.delta() for k, p in s.positions.items()},
            transfers=s.transfers.values(),
            cancelled_at=s.cancelled_at.as_dict(),
            feed_heads={b: audit.FeedHead(h.seq, h.started_at) for b, h in s.feed_heads.items()},
            events=[
                audit.StoredEvent(
                    bank,
                    e.seq,
                    e.at,
                    int(e.kind),
                    int(e.status),
                    e.transfer_id,
                    e.cycle_id,
                    e.other_cycle_id,
                    e.item_count,
                )
                for (bank, _), e in sorted(s.events.items())
            ],
            trail=[s.trail[seq] for seq in sorted(s.trail)],
            recalls=[s.recalls[tid] for tid in sorted(s.recalls)],
        )

    def ledger_totals(self) -> dict[str, tuple[int, int, int]]:
        balances: dict[str, int] = defaultdict(int)
        for a in self._s.accounts.values():
            balances[a.currency] += a.balance
        entries: dict[str, list[int]] = {}
        for e in self._s.entries.values():
            row = entries.setdefault(e.currency, [0, 0])
            row[0] += e.entry.amount
            row[1] += 1
        out: dict[str, tuple[int, int, int]] = {}
        for currency in sorted(set(balances) | set(entries)):
            s, n = entries.get(currency, [0, 0])
            out[currency] = (balances.get(currency, 0), s, n)
        return out


class FakeUnitOfWork:
    """The repositories over one snapshot of the store."""

    banks: BankRepository
    accounts: AccountRepository
    positions: PositionRepository
    cycles: CycleRepository
    transfers: TransferRepository
    recalls: RecallRepository
    ledger: LedgerRepository
    quotes: QuoteRepository
    events: EventFeed
    trail: OperatorTrail
    views: ReadModels
    messages: MessageLog

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        banks = FakeBanks(store)
        self.banks = banks
        self.accounts = FakeAccounts(store)
        self.positions = FakePositions(store, banks)
        self.cycles = FakeCycles(store)
        self.transfers = FakeTransfers(store, banks)
        self.recalls = FakeRecalls(store)
        self.ledger = FakeLedger(store)
        self.quotes = FakeQuotes(store)
        self.feed = FakeFeed(store)
        self.events = self.feed
        self.trail = FakeTrail(store)
        self.views = FakeViews(store)
        self.messages = FakeMessageLog(store)


class FakeMessageLog:
    def __init__(self, store: FakeStore) -> None:
        self._s = store

    def get(self, bank: str, msg_id: str) -> AnsweredMessage | None:
        return self._s.iso_messages.get((bank, msg_id))

    def add(self, message: AnsweredMessage, region: str) -> None:
        key = (message.bank, message.msg_id)
        self._s.iso_messages.insert(key, message)
        self._s.iso_message_regions.insert(key, region)


# The runner --------------------------------------------------------------------

FaultPoint = Literal["before_commit", "after_commit"]


@dataclass
class Fault:
    unit: str
    point: FaultPoint
    times: int


class FakeTransactions:
    """`Transactions` on a FakeStore: one writer at a time, each write on a
    copy-on-write snapshot committed only if its function returns."""

    def __init__(self, store: FakeStore | None = None, *, max_attempts: int = 12) -> None:
        self.store = store if store is not None else FakeStore()
        self.max_attempts = max_attempts
        self.attempts: Counter[str] = Counter()  # unit -> attempts run
        self.commits: Counter[str] = Counter()  # unit -> attempts committed
        self.reads: list[bool] = []  # the stale_ok of each read
        self._faults: list[Fault] = []

    def fail_next(self, unit: str, *, point: FaultPoint = "before_commit", times: int = 1) -> None:
        """Make the next `times` attempts of `unit` fail with a retryable
        Conflict: discarded (before_commit) or committed first (after_commit,
        an ambiguous commit). Either way the unit is re-run whole."""
        self._faults.append(Fault(unit, point, times))

    def _fault(self, unit: str) -> FaultPoint | None:
        for fault in self._faults:
            if fault.unit == unit and fault.times > 0:
                fault.times -= 1
                return fault.point
        return None

    def write(self, unit: str, fn: Callable[[UnitOfWork], T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            self.attempts[unit] += 1
            snapshot = self.store.fork()
            try:
                result = fn(FakeUnitOfWork(snapshot))
                point = self._fault(unit)
                if point == "before_commit":
                    raise Conflict(f"{unit}: injected conflict before commit")
                self.store = snapshot
                self.commits[unit] += 1
                if point == "after_commit":
                    raise Conflict(f"{unit}: injected ambiguous commit")
            except Conflict as exc:
                if attempt >= self.max_attempts:
                    raise Aborted(
                        Reason.RETRIES_EXHAUSTED,
                        f"{unit} did not commit after {attempt} attempts; retry",
                    ) from exc
                continue
            return result

    def read(self, fn: Callable[[UnitOfWork], T], *, stale_ok: bool = False) -> T:
        self.reads.append(stale_ok)
        return fn(FakeUnitOfWork(self.store.fork(readonly=True)))

    def uow(self) -> FakeUnitOfWork:
        """A read-only view of what is committed, for assertions."""
        return FakeUnitOfWork(self.store.fork(readonly=True))

    def feed(self, bank: str) -> list[EventRow]:
        return FakeFeed(self.store).stored(bank)

    def violations(self) -> list[str]:
        """What the audit's checks (domain/audit.py) find wrong with the
        committed state: [] when every invariant holds."""
        return audit.run_checks(FakeViews(self.store).audit_snapshot())


def _conforms(store: FakeStore) -> None:
    """mypy --strict checks the fakes against the ports here."""
    _uow: UnitOfWork = FakeUnitOfWork(store)
    _tx: Transactions = FakeTransactions(store)
    banks = FakeBanks(store)
    _banks: BankRepository = banks
    _accounts: AccountRepository = FakeAccounts(store)
    _positions: PositionRepository = FakePositions(store, banks)
    _cycles: CycleRepository = FakeCycles(store)
    _transfers: TransferRepository = FakeTransfers(store, banks)
    _recalls: RecallRepository = FakeRecalls(store)
    _ledger: LedgerRepository = FakeLedger(store)
    _quotes: QuoteRepository = FakeQuotes(store)
    _feed: EventFeed = FakeFeed(store)
    _trail: OperatorTrail = FakeTrail(store)
    _views: ReadModels = FakeViews(store)


# Seeding ----------------------------------------------------------------------
# State for the use-case tests, written through the fake's repositories (not
# through the use cases, so that each use case is tested on its own).


def seed_currency(uow: UnitOfWork, currency: str, now: datetime) -> None:
    """The hub's own accounts, the default provider's liquidity account
    (unfunded) and an open cycle of `currency`: what the participants use
    case opens for a currency (`ensure_currency`), so the seeds cannot drift
    from it."""
    ensure_currency(uow, currency, now)


def seed_deposit(uow: UnitOfWork, bank: str, currency: str, amount: int, now: datetime) -> None:
    ref = str(uuid.uuid4())
    posting = deposit_posting(f"deposit:{ref}", bank, currency, amount, ref)
    uow.ledger.post(posting, owner=bank, amount=amount, now=now)


def seed_bank(
    tx: FakeTransactions,
    code: str,
    currencies: Sequence[str],
    *,
    region: str = "us-east1",
    deposit: int = 0,
    cap: int = 0,
    status: BankStatus = BankStatus.ACTIVE,
    roles: ParticipantRole = ParticipantRole.BANK,
) -> None:
    """A participant (a bank unless `roles` say otherwise) with a funded
    liquidity account in each currency."""

    def unit(uow: UnitOfWork) -> None:
        now = datetime.now(UTC)
        uow.banks.add(Bank(code, f"{code} Bank", region, status, now, roles))
        uow.events.create_head(code, region, now)
        for currency in currencies:
            seed_currency(uow, currency, now)
            aid = account_id(code, currency)
            uow.accounts.add(aid, code, currency, AccountKind.LIQUIDITY, now, home_region=region)
            if deposit:
                seed_deposit(uow, code, currency, deposit, now)
            if cap:
                uow.accounts.set_cap(aid, cap)

    tx.write("seed_bank", unit)


def seed_provider(
    tx: FakeTransactions,
    code: str,
    currencies: Sequence[str],
    *,
    deposit: int = 0,
    cap: int = 0,
    status: BankStatus = BankStatus.ACTIVE,
    roles: ParticipantRole = ParticipantRole.FX_PROVIDER,
    region: str = "us-east1",
) -> None:
    """An FX provider (provider-only unless `roles` say otherwise) with a
    funded liquidity account in each currency."""
    seed_bank(
        tx, code, currencies, region=region, deposit=deposit, cap=cap, status=status, roles=roles
    )


def seed_funds(
    tx: FakeTransactions, code: str, amounts: Mapping[str, int], *, cap: int = 0
) -> None:
    """Deposit into `code`'s liquidity accounts (opened with the currency if
    missing, as for the default provider's), and set their cap."""

    def unit(uow: UnitOfWork) -> None:
        now = datetime.now(UTC)
        bank = uow.banks.get(code)
        assert bank is not None, code
        for currency, amount in amounts.items():
            seed_currency(uow, currency, now)
            aid = account_id(code, currency)
            if uow.accounts.get(aid) is None:
                uow.accounts.add(
                    aid, code, currency, AccountKind.LIQUIDITY, now, home_region=bank.home_region
                )
            if amount:
                seed_deposit(uow, code, currency, amount, now)
            if cap:
                uow.accounts.set_cap(aid, cap)

    tx.write("seed_funds", unit)


def seed_rates(
    tx: FakeTransactions,
    rates: Mapping[tuple[str, str], str],
    as_of: datetime | None = None,
    *,
    provider: str = DEFAULT_PROVIDER,
    spread_bps: int | None = None,
) -> None:
    """Mid rates of `provider` (the default provider's unless named)."""
    when = as_of or datetime.now(UTC)

    def unit(uow: UnitOfWork) -> None:
        uow.quotes.upsert_rates(
            [Rate(b, q, Decimal(mid), when, provider, spread_bps) for (b, q), mid in rates.items()],
            when,
        )

    tx.write("seed_rates", unit)


def seed_quote(
    tx: FakeTransactions,
    bank: str,
    source: str,
    target: str,
    source_amount: int,
    *,
    spread_bps: int = 50,
    expires_in: timedelta = timedelta(minutes=1),
    provider: str | None = DEFAULT_PROVIDER,
) -> Quote:
    """A quote issued to `bank` on `provider`'s stored rates (base currency
    USD), delivered by `provider`; `provider` None: a quote of the hub as
    dealer, as stored before FX providers (priced on the default
    provider's rates, where migration 0008 put the hub's)."""

    def unit(uow: UnitOfWork) -> Quote:
        now = datetime.now(UTC)
        whose = DEFAULT_PROVIDER if provider is None else provider
        rates = {(b, q): r for (p, b, q), r in uow.quotes.rates().items() if p == whose}
        derived = derive(rates, source, target, "USD")
        terms = price(
            derived,
            source_currency=source,
            target_currency=target,
            spread_bps=spread_bps,
            source_amount=source_amount,
        )
        quote = Quote(str(uuid.uuid4()), bank, terms, now, now + expires_in, None, provider)
        uow.quotes.add([quote])
        return quote

    return tx.write("seed_quote", unit)


def seed_hub_transfer(tx: FakeTransactions, item: Instruction, quote: Quote) -> StoredTransfer:
    """`item` accepted on `quote` (a quote of the hub as dealer, `provider`
    None) with its legs through the hub, as the batch path cleared such
    transfers before FX providers (it refuses them now): stored, its legs in
    the positions and unsettled nets, a BATCH event for each party."""
    assert quote.provider is None

    def unit(uow: UnitOfWork) -> StoredTransfer:
        now = datetime.now(UTC)
        terms = quote.terms
        cycles = uow.cycles.open_ids([terms.source_currency, terms.target_currency])
        t = StoredTransfer.from_instruction(
            item,
            accepted_at=now,
            cycle_id=cycles[terms.source_currency],
            quote=quote,
            credit_cycle_id=cycles[terms.target_currency],
        )
        legs = t.legs()
        ids = {position_account_id(p, leg.currency) for leg in legs for p in (leg.payer, leg.payee)}
        states = {(a.bank, a.currency): a for a in uow.accounts.states(ids).values()}
        positions: dict[tuple[str, str], PositionDelta] = {}
        deltas: dict[str, int] = {}
        for leg in legs:
            apply_leg(leg, states, positions, deltas, +1)
        now = uow.events.publish(batch_events([t]), now)
        t = t._replace(accepted_at=now)
        uow.transfers.add([t])
        uow.positions.add(positions)
        uow.accounts.add_unsettled(deltas)
        uow.quotes.mark_used({quote.quote_id: t.transfer_id}, now)
        return t

    return tx.write("seed_hub_transfer", unit)


def seed_close(tx: FakeTransactions, currency: str) -> str:
    """Seal the open cycle of `currency` with its totals, tell its banks, and
    open the next, as close_cycle does but without it (and without an audit
    record). Returns the sealed cycle's id."""

    def unit(uow: UnitOfWork) -> str:
        now = datetime.now(UTC)
        cycle = uow.cycles.open_for(currency)
        assert cycle is not None
        positions = uow.positions.of_cycle(cycle.id)
        totals = cycle_totals(positions.values())
        news = uow.events.cycle_events(cycle.id, CycleState.CLOSED, positions)
        now = uow.events.publish(news, now)
        uow.cycles.seal(cycle.id, now, totals.transfer_count, totals.gross_value, totals.net_value)
        uow.cycles.add(cycle_id_for(currency, cycle.seq + 1), currency, cycle.seq + 1, now)
        return cycle.id

    return tx.write("seed_close", unit)


def instruction(
    debtor: str,
    creditor: str,
    currency: str,
    amount: int,
    *,
    transfer_id: str = "",
    remittance_info: str = "",
    quote_id: str = "",
    gross: bool = False,
    confirm: bool = False,
    timeout_ms: int = 0,
    purpose: str = "",
) -> Instruction:
    """A validated instruction, with a fresh id unless one is given."""
    return make_instruction(
        transfer_id=transfer_id or str(uuid.uuid4()),
        debtor=debtor,
        creditor=creditor,
        currency=currency,
        amount=amount,
        remittance_info=remittance_info,
        quote_id=quote_id,
        gross=gross,
        confirm=confirm,
        timeout_ms=timeout_ms,
        purpose=purpose,
    )
