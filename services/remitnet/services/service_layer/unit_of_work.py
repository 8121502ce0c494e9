"""The ports of the service layer: a unit of work and its repositories.

A use case asks a `Transactions` runner to run a function on a `UnitOfWork`:
one serializable transaction, re-run whole on a retryable failure, so the
function must be a pure function of what it reads through the unit of work
(keyed for idempotency: its first read finds a previous run's effect).

The repositories are set-oriented, as the batch path needs: a batch loads
the state of thousands of accounts, transfers and quotes by key in one call
and writes them back in one call each. They speak domain types only; the
adapters (`adapters/db`, one module per aggregate, and the in-memory fake of
the unit tests) implement them. Nothing here knows SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar

from remitnet.services.domain.account import Account
from remitnet.services.domain.audit import AuditSnapshot
from remitnet.services.domain.audit_trail import Action, AuditRecord, ChainHead
from remitnet.services.domain.bank import Bank, ParticipantRole
from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.events import FeedEvent, Head, NewEvent
from remitnet.services.domain.fx import Quote, Rate
from remitnet.services.domain.iso20022 import AnsweredMessage
from remitnet.services.domain.ledger import LedgerEntry, Posting, PostingAt, PostingRecord
from remitnet.services.domain.lifecycle import Recall, RecallState
from remitnet.services.domain.model import BankStatus, CycleState, StoredTransfer, TransferStatus
from remitnet.services.domain.netting import AccountState, CycleSums, PositionDelta

T = TypeVar("T")


class Parties(NamedTuple):
    """What the batch path reads of its parties and of its quotes' FX
    providers, in one query."""

    statuses: dict[str, BankStatus]
    roles: dict[str, ParticipantRole]
    regions: dict[str, str]
    # Those of them that require payee confirmation (their operator setting).
    confirming: frozenset[str]


class BankRepository(Protocol):
    def get(self, code: str) -> Bank | None: ...
    def page(self, after: str, limit: int) -> list[Bank]: ...
    def add(self, bank: Bank) -> None: ...
    def set_status(self, code: str, status: BankStatus) -> None: ...
    def regions(self, codes: Collection[str] | None = None) -> dict[str, str]: ...
    def statuses_and_regions(
        self, codes: Collection[str]
    ) -> tuple[dict[str, BankStatus], dict[str, str]]: ...
    def statuses_roles_and_regions(
        self, codes: Collection[str]
    ) -> tuple[dict[str, BankStatus], dict[str, ParticipantRole], dict[str, str]]:
        """Status, roles and home region of each of `codes` that exists, in
        one query: what the batch path reads of its parties and of the FX
        providers of its quotes."""
        ...

    def parties(self, codes: Collection[str]) -> Parties:
        """`statuses_roles_and_regions` and the confirming set, one query."""
        ...

    def set_requires_confirmation(self, code: str, required: bool) -> None: ...
    def codes_by_bic(self, bics: Collection[str]) -> dict[str, str]:
        """The participant code of each of `bics` that one holds, in one query."""
        ...

    def providers(self) -> list[Bank]:
        """Every participant with the FX_PROVIDER role, by code."""
        ...

    def home_regions(
        self, codes: Collection[str], known: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The home region to write in rows owned by each code: the bank's,
        or the hub's own region for the hub. `known` answers without a read
        where it can; a code that is no bank is an AssertionError."""
        ...


class AccountRepository(Protocol):
    def get(self, account_id: str) -> Account | None: ...
    def of_owner(self, owner: str) -> list[Account]: ...
    def of_owners(self, owners: Collection[str]) -> dict[str, list[Account]]: ...
    def all(self, kind: str | None = None) -> list[Account]: ...
    def add(
        self,
        account_id: str,
        owner: str,
        currency: str,
        kind: str,
        now: datetime,
        *,
        home_region: str,
    ) -> None: ...
    def set_cap(self, account_id: str, cap: int) -> None: ...
    def states(self, ids: Collection[str]) -> dict[str, AccountState]:
        """What the headroom decision needs of each account, by id."""
        ...

    def add_unsettled(self, deltas: Mapping[str, int]) -> None:
        """Add each signed delta to its account's unsettled net."""
        ...

    def add_reserved(self, deltas: Mapping[str, int]) -> None:
        """Add each signed delta to its account's `reserved`."""
        ...


class PositionRepository(Protocol):
    def of_cycle(self, cycle_id: str) -> dict[str, PositionDelta]: ...
    def of_cycles(self, cycle_ids: Collection[str]) -> dict[str, dict[str, PositionDelta]]: ...
    def of_bank(self, bank: str, cycle_ids: Collection[str]) -> dict[str, PositionDelta]: ...
    def add(
        self,
        deltas: Mapping[tuple[str, str], PositionDelta],
        regions: Mapping[str, str] | None = None,
    ) -> None:
        """Add each (cycle, bank) delta to its position row, creating it."""
        ...


class CycleRepository(Protocol):
    def get(self, cycle_id: str) -> Cycle | None: ...
    def open_for(self, currency: str) -> Cycle | None: ...
    def open_ids(self, currencies: Collection[str]) -> dict[str, str]: ...
    def page(
        self, currency: str, state: CycleState | None, before: str | None, limit: int
    ) -> list[Cycle]: ...
    def states(self, cycle_ids: Collection[str]) -> dict[str, CycleState]: ...
    def unsettled(self) -> list[Cycle]: ...
    def add(self, cycle_id: str, currency: str, seq: int, now: datetime) -> None: ...
    def max_seq(self, currency: str) -> int: ...
    def seal(self, cycle_id: str, now: datetime, count: int, gross: int, net: int) -> None: ...
    def mark_settled(self, cycle_id: str, now: datetime) -> None: ...
    def open_with_sums(
        self, currencies: Collection[str]
    ) -> tuple[dict[str, str], dict[str, CycleSums]]: ...


class TransferIdTaken(Exception):
    """`TransferRepository.add` met a transfer id already stored (the
    primary key refused it): the transaction is spoilt, and the batch is
    decided again with its ids looked up."""


class TransferRepository(Protocol):
    def existing(self, ids: Collection[str]) -> dict[str, StoredTransfer]: ...
    def get(self, transfer_id: str) -> StoredTransfer | None: ...
    def all(self) -> Iterator[StoredTransfer]: ...
    def add(
        self, items: Sequence[StoredTransfer], regions: Mapping[str, str] | None = None
    ) -> None:
        """Insert new transfers; TransferIdTaken if an id is stored already."""
        ...

    def cancel(self, transfer_id: str, now: datetime, reason: str | None = None) -> None:
        """CANCELLED at `now` (cancelled_at; and resolved_at, for a RESERVED
        row), with the operator's `reason` where given."""
        ...

    def resolve(self, changed: Sequence[StoredTransfer]) -> None:
        """Write each transfer's status, cycle_id, creditor_cycle_id,
        resolved_at and reason (transfers that left RESERVED)."""
        ...

    def due(self, now: datetime, limit: int) -> list[StoredTransfer]:
        """RESERVED transfers whose deadline is at or before `now`, oldest
        deadline first, at most `limit`."""
        ...

    def mark_returned(self, returns: Mapping[str, str]) -> None:
        """original transfer id -> the id of its return."""
        ...

    def leg_sums(self, cycle_id: str) -> dict[str, list[int]]:
        """Per bank, [sent count, received count, sent value, received
        value] of its live transfers' legs in the cycle, recomputed from the
        transfers."""
        ...


class RecallRepository(Protocol):
    def get(self, transfer_id: str) -> Recall | None:
        """The recall of a transfer (at most one each)."""
        ...

    def of_transfers(self, ids: Collection[str]) -> dict[str, Recall]: ...
    def by_id(self, recall_id: str) -> Recall | None: ...
    def add(self, recall: Recall, region: str) -> None: ...
    def update(self, recalls: Sequence[Recall]) -> None:
        """Write each recall's state, answered_at, answer_reason, return_id."""
        ...

    def due(self, now: datetime, limit: int) -> list[Recall]:
        """REQUESTED recalls whose deadline is at or before `now`."""
        ...


class LedgerRepository(Protocol):
    def get_posting(self, posting_id: str) -> PostingRecord | None: ...
    def post(
        self,
        posting: Posting,
        *,
        owner: str,
        amount: int,
        now: datetime,
        unsettled: Mapping[str, int] | None = None,
    ) -> None:
        """Also add `unsettled` (account -> delta) to those accounts' unsettled
        nets, with the balances (a settlement: one pass over the rows)."""
        ...

    def post_many(self, postings: Sequence[PostingAt]) -> None:
        """`post` each of `postings` in order (no unsettled moves), in a
        constant number of statements: each account's row moves once,
        however many of the postings name it (the hub's reserve, in a group
        of deposits)."""
        ...

    def posting_entries(self, posting_id: str) -> list[LedgerEntry]: ...
    def entries(self, account_id: str, after_seq: int, limit: int) -> list[LedgerEntry]: ...
    def balance_after(self, account_id: str, seq: int) -> int: ...
    def last_seq_before(self, account_id: str, at: datetime) -> int:
        """The highest seq of the account's entries posted before `at`; 0 if none."""
        ...


class QuoteRepository(Protocol):
    def upsert_rates(self, rates: list[Rate], now: datetime) -> None:
        """Store each rate as its provider's (`Rate.provider`) for its pair."""
        ...

    def delete_rates(self, keys: Collection[tuple[str, str, str]]) -> None:
        """Delete the rates keyed (provider, base, quote)."""
        ...

    def rates(self) -> dict[tuple[str, str, str], Rate]:
        """Every provider's rates, keyed (provider, base, quote)."""
        ...

    def add(self, quotes: Sequence[Quote]) -> None: ...
    def get_many(self, ids: Collection[str]) -> dict[str, Quote]: ...
    def mark_used(self, used: Mapping[str, str], now: datetime) -> None:
        """quote id -> the transfer id that used it."""
        ...


class EventFeed(Protocol):
    """The per-bank change feed, written in the transaction of each change."""

    def create_head(self, bank: str, region: str, now: datetime) -> None: ...
    def heads(self, banks: Collection[str]) -> dict[str, Head]:
        """The feed heads of `banks` (unknown codes and the hub have none),
        for a unit that decides its events' time (event_time over these
        heads) before it knows its events: the batch path. Then `append`."""
        ...

    def append(self, heads: Mapping[str, Head], new: Sequence[NewEvent], at: datetime) -> None:
        """Number `new` after each bank's head in `heads` (read by `heads` in
        this unit; every bank named must be there) and store them at `at`."""
        ...

    def publish(self, new: Sequence[NewEvent], clock: datetime) -> datetime:
        """Append `new` to the feeds of their banks; returns the events'
        time, strictly later than each bank's previous event."""
        ...

    def cycle_events(
        self, cycle_id: str, state: CycleState, banks: Collection[str]
    ) -> list[NewEvent]: ...
    def current_heads(self, banks: Collection[str]) -> dict[str, int]: ...
    def seq_before(self, bank: str, since: datetime) -> int: ...
    def load(self, bank: str, from_seq: int, max_items: int) -> list[FeedEvent]: ...


class OperatorTrail(Protocol):
    """The hash-chained operator audit trail."""

    def head(self) -> AuditRecord | None: ...
    def append(
        self, principal: str, action: Action, request: Mapping[str, Any], now: datetime
    ) -> AuditRecord: ...
    def settlement_heads(self, cycle_ids: Collection[str]) -> dict[str, ChainHead]: ...
    def records(self) -> Iterator[AuditRecord]: ...


class ReadModels(Protocol):
    """Queries that serve listings and reports rather than decisions."""

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
        """`kind`: "" any, "payment" (not a return) or "return";
        `returned`: only transfers returned (True) or not (False);
        `recall_state`: only transfers whose recall is in that state."""
        ...

    def ledger_totals(self) -> dict[str, tuple[int, int, int]]:
        """Per currency: (sum of balances, sum of entries, entry count)."""
        ...

    def audit_snapshot(self) -> AuditSnapshot:
        """Every row the audit's checks read (domain/audit.py), read whole in
        this unit's one transaction."""
        ...


class MessageLog(Protocol):
    """The ISO 20022 messages the hub answered, by (bank, MsgId)."""

    def get(self, bank: str, msg_id: str) -> AnsweredMessage | None: ...
    def add(self, message: AnsweredMessage, region: str) -> None:
        """Store an answer, homed in `region` (the bank's); the key must be
        new (the caller read it first, in the same transaction)."""
        ...


class UnitOfWork(Protocol):
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


class Transactions(Protocol):
    """Runs units of work: `write` in one serializable transaction retried
    whole; `read` in a read-only one, bounded-stale where `stale_ok` and
    the database offers it."""

    def write(self, unit: str, fn: Callable[[UnitOfWork], T]) -> T: ...
    def read(self, fn: Callable[[UnitOfWork], T], *, stale_ok: bool = False) -> T: ...
