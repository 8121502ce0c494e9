"""The database adapters of the scheme lifecycle (issue 14: payee
confirmation, expiry, returns, recalls), on SQLite and PostgreSQL, through
the repositories alone (`Database.write(lambda uow: ...)`): every new
repository method, the set-oriented writes (one statement per call with
array parameters, one executemany elsewhere), the feed's expansion of BATCH
RESERVED, RESOLVED and RECALL events, ListTransfers' new filters, the audit
snapshot, and migration 0009 over a 0008 database with rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest
from alembic import command
from sqlalchemy import event, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from remitnet.services.adapters.db import migrate
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.schema import accounts, banks, feed_heads, transfers
from remitnet.services.adapters.db.unit_of_work import SqlUnitOfWork
from remitnet.services.domain.bank import Bank, ParticipantRole
from remitnet.services.domain.events import (
    EventKind,
    batch_events,
    event_time,
    recall_events,
    resolved_events,
)
from remitnet.services.domain.lifecycle import EXPIRY_REASON, Recall, RecallState
from remitnet.services.domain.model import (
    DEFAULT_PROVIDER,
    HUB,
    BankStatus,
    StoredTransfer,
    TransferStatus,
    account_id,
    cycle_id_for,
)

T = TypeVar("T")

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
SENDER, PAYEE, OTHER = "LCBANK01", "LCBANK02", "LCBANK03"
REGIONS = {SENDER: "us-east1", PAYEE: "europe-west1", OTHER: "asia-southeast1"}
USD, EUR = cycle_id_for("USD", 1), cycle_id_for("EUR", 1)
PROVIDER = DEFAULT_PROVIDER


def tid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    migrate.upgrade(database)  # a fresh SQLite file; PostgreSQL is at head already
    database.write("seed", _seed)
    yield database
    database.dispose()


def _seed(uow: SqlUnitOfWork) -> None:
    for code, region in REGIONS.items():
        uow.banks.add(
            Bank(code, f"bank {code}", region, BankStatus.ACTIVE, T0, ParticipantRole.BANK)
        )
        uow.events.create_head(code, region, T0 - timedelta(hours=1))
        for currency in ("USD", "EUR"):
            uow.accounts.add(
                account_id(code, currency), code, currency, "LIQUIDITY", T0, home_region=region
            )
    for currency in ("USD", "EUR"):
        uow.cycles.add(cycle_id_for(currency, 1), currency, 1, T0)


def write(db: Database, fn: Callable[[SqlUnitOfWork], T]) -> T:
    return db.write("test", fn)


def reserved(
    debtor: str = SENDER,
    creditor: str = PAYEE,
    *,
    amount: int = 100,
    at: datetime = T0,
    deadline: datetime | None = None,
    cross: bool = False,
) -> StoredTransfer:
    """A RESERVED transfer as the batch path stores it (no cycle yet)."""
    t = StoredTransfer(
        tid(), debtor, creditor, "USD", amount, "rent\tand\\more", TransferStatus.RESERVED, "", at,
        deadline=deadline or at + timedelta(seconds=30),
    )  # fmt: skip
    if cross:
        t = t._replace(
            quote_id=tid(), creditor_currency="EUR", creditor_amount=amount * 9 // 10,
            fx_provider=PROVIDER,
        )  # fmt: skip
    return t


def netted(debtor: str = SENDER, creditor: str = PAYEE, *, at: datetime = T0) -> StoredTransfer:
    return StoredTransfer(tid(), debtor, creditor, "USD", 70, "", TransferStatus.ACCEPTED, USD, at)


@dataclass
class Statements:
    """The statements a block sends, and whether each was an executemany."""

    sent: list[tuple[str, bool]]

    @property
    def writes(self) -> list[tuple[str, bool]]:
        return [(s, many) for s, many in self.sent if s.lstrip().upper().startswith("UPDATE")]


def counted(db: Database, fn: Callable[[SqlUnitOfWork], Any]) -> Statements:
    found = Statements([])

    def before(
        _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, many: bool
    ) -> None:
        found.sent.append((statement, many))

    def run(uow: SqlUnitOfWork) -> None:
        found.sent.clear()  # a retried attempt counts afresh
        fn(uow)

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        write(db, run)
    finally:
        event.remove(db.engine, "before_cursor_execute", before)
    return found


def one_statement_per_call(db: Database, stmts: Statements, rows: int) -> None:
    """One UPDATE for `rows` rows, with array parameters where the database
    has them (no executemany), else as one executemany (one execute for one
    row)."""
    assert len(stmts.writes) == 1, stmts.writes
    ((sql, many),) = stmts.writes
    if db.features.arrays:
        assert not many and "unnest" in sql
    else:
        assert many is (rows > 1)


# Banks -------------------------------------------------------------------------


def test_banks_require_confirmation(db: Database) -> None:
    code = "LCBANK09"
    confirming = Bank(code, "x", "us-east1", BankStatus.ACTIVE, T0, requires_confirmation=True)
    write(db, lambda uow: uow.banks.add(confirming))
    assert write(db, lambda uow: uow.banks.get(code)) == confirming
    sender = write(db, lambda uow: uow.banks.get(SENDER))
    assert sender is not None and sender.requires_confirmation is False

    parties = write(db, lambda uow: uow.banks.parties([code, SENDER, PROVIDER, "NOSUCH01"]))
    assert parties.confirming == frozenset({code})
    assert parties.statuses == {
        code: BankStatus.ACTIVE,
        SENDER: BankStatus.ACTIVE,
        PROVIDER: BankStatus.ACTIVE,
    }
    assert parties.roles[PROVIDER] == ParticipantRole.FX_PROVIDER
    assert parties.regions == {code: "us-east1", SENDER: "us-east1", PROVIDER: "HUB"}
    # The former read is unchanged, for its other callers.
    assert write(db, lambda uow: uow.banks.statuses_roles_and_regions([code, SENDER])) == (
        {code: BankStatus.ACTIVE, SENDER: BankStatus.ACTIVE},
        {code: ParticipantRole.BANK, SENDER: ParticipantRole.BANK},
        {code: "us-east1", SENDER: "us-east1"},
    )

    write(db, lambda uow: uow.banks.set_requires_confirmation(code, False))
    write(db, lambda uow: uow.banks.set_requires_confirmation(SENDER, True))
    after = write(db, lambda uow: uow.banks.parties([code, SENDER]))
    assert after.confirming == frozenset({SENDER})
    page = write(db, lambda uow: uow.banks.page("", 100))
    assert {b.code for b in page if b.requires_confirmation} == {SENDER}


# Accounts ----------------------------------------------------------------------


def test_accounts_hold_reservations(db: Database) -> None:
    mine, theirs = account_id(SENDER, "USD"), account_id(PAYEE, "USD")
    stmts = counted(db, lambda uow: uow.accounts.add_reserved({mine: 500, theirs: 20, "x": 0}))
    one_statement_per_call(db, stmts, rows=2)
    write(db, lambda uow: uow.accounts.add_reserved({mine: -120}))
    write(db, lambda uow: uow.accounts.add_reserved({}))  # nothing: no statement
    write(db, lambda uow: uow.accounts.add_unsettled({mine: -30}))
    states = write(db, lambda uow: uow.accounts.states([mine, theirs]))
    assert (states[mine].reserved, states[mine].unsettled_net) == (380, -30)
    assert states[theirs].reserved == 20
    assert states[mine].headroom == 0 + 0 - 30 - 380
    account = write(db, lambda uow: uow.accounts.get(mine))
    assert account is not None and account.reserved == 380
    assert {a.id: a.reserved for a in write(db, lambda uow: uow.accounts.of_owner(SENDER))} == {
        mine: 380,
        account_id(SENDER, "EUR"): 0,
    }
    snapshot = db.read(lambda uow: uow.views.audit_snapshot())
    assert {a.id: a.reserved for a in snapshot.accounts if a.reserved} == {mine: 380, theirs: 20}


# Transfers ---------------------------------------------------------------------


def test_transfers_store_the_lifecycle_columns(db: Database) -> None:
    """add() (COPY on PostgreSQL, an INSERT elsewhere) stores deadline,
    reason and return_of; resolved_at and returned_by start NULL."""
    same = reserved()
    cross = reserved(cross=True)
    original = netted()
    back = StoredTransfer(
        tid(), PAYEE, SENDER, "USD", 70, "", TransferStatus.ACCEPTED, USD, T0,
        reason="AC04", return_of=original.transfer_id,
    )  # fmt: skip
    write(db, lambda uow: uow.transfers.add([same, cross, original, back], REGIONS))
    stored = write(
        db,
        lambda uow: uow.transfers.existing([t.transfer_id for t in (same, cross, original, back)]),
    )
    assert stored == {t.transfer_id: t for t in (same, cross, original, back)}
    assert stored[cross.transfer_id].creditor_cycle_id is None
    assert write(db, lambda uow: uow.transfers.get(back.transfer_id)) == back
    assert sorted(
        t.transfer_id for t in write(db, lambda uow: list(uow.transfers.all()))
    ) == sorted(stored)


def test_a_transfer_is_returned_at_most_once(db: Database) -> None:
    original = netted()
    first = netted(PAYEE, SENDER)._replace(return_of=original.transfer_id, reason="AC04")
    second = netted(PAYEE, SENDER)._replace(return_of=original.transfer_id, reason="MS02")
    write(db, lambda uow: uow.transfers.add([original, first], REGIONS))
    # (COPY, on PostgreSQL, raises the driver's error unwrapped.)
    with pytest.raises((IntegrityError, psycopg.errors.UniqueViolation)):
        write_once(db, lambda uow: uow.transfers.add([second], REGIONS))
    # Transfers that are no returns share the NULL freely (a partial index).
    write(db, lambda uow: uow.transfers.add([netted(), netted()], REGIONS))

    stmts = counted(
        db, lambda uow: uow.transfers.mark_returned({original.transfer_id: first.transfer_id})
    )
    one_statement_per_call(db, stmts, rows=1)
    write(db, lambda uow: uow.transfers.mark_returned({}))
    got = write(db, lambda uow: uow.transfers.get(original.transfer_id))
    assert got == original._replace(returned_by=first.transfer_id)


def write_once(db: Database, fn: Callable[[SqlUnitOfWork], T]) -> T:
    """One transaction, not retried (a unique violation is retried by
    Database.write, as a concurrent writer's insert would be)."""
    with db.engine.begin() as conn:
        return fn(SqlUnitOfWork(conn, db.features))


def test_due_reads_reservations_oldest_deadline_first(db: Database) -> None:
    late = reserved(deadline=T0 + timedelta(seconds=20))
    early = reserved(deadline=T0 + timedelta(seconds=5))
    middle = reserved(cross=True, deadline=T0 + timedelta(seconds=10))
    not_yet = reserved(deadline=T0 + timedelta(seconds=50))
    write(db, lambda uow: uow.transfers.add([late, early, middle, not_yet, netted()], REGIONS))
    now = T0 + timedelta(seconds=20)
    due = write(db, lambda uow: uow.transfers.due(now, 10))
    assert due == [early, middle, late]  # at or before now, and only reserved ones
    assert write(db, lambda uow: uow.transfers.due(now, 2)) == [early, middle]
    assert write(db, lambda uow: uow.transfers.due(T0, 10)) == []
    # Once resolved they are no longer due.
    expired = [t.resolved(TransferStatus.EXPIRED, now, EXPIRY_REASON) for t in due]
    write(db, lambda uow: uow.transfers.resolve(expired))
    assert write(db, lambda uow: uow.transfers.due(now + timedelta(minutes=1), 10)) == [not_yet]


def test_resolve_writes_each_outcome_in_one_statement(db: Database) -> None:
    accept, accept_cross, reject, expire = (
        reserved(), reserved(cross=True), reserved(), reserved()
    )  # fmt: skip
    write(db, lambda uow: uow.transfers.add([accept, accept_cross, reject, expire], REGIONS))
    at = T0 + timedelta(seconds=3)
    changed = [
        accept.resolved(TransferStatus.ACCEPTED, at, cycle_id=USD),
        accept_cross.resolved(TransferStatus.ACCEPTED, at, cycle_id=USD, credit_cycle_id=EUR),
        reject.resolved(TransferStatus.REJECTED, at, "AC04"),
        expire.resolved(TransferStatus.EXPIRED, at, EXPIRY_REASON),
    ]
    stmts = counted(db, lambda uow: uow.transfers.resolve(changed))
    one_statement_per_call(db, stmts, rows=4)
    write(db, lambda uow: uow.transfers.resolve([]))
    stored = write(db, lambda uow: uow.transfers.existing([t.transfer_id for t in changed]))
    assert stored == {t.transfer_id: t for t in changed}
    assert [stored[t.transfer_id].resolution for t in changed] == [
        TransferStatus.ACCEPTED, TransferStatus.ACCEPTED, TransferStatus.REJECTED,
        TransferStatus.EXPIRED,
    ]  # fmt: skip
    # The accepted ones are now in their cycles' legs.
    sums = write(db, lambda uow: uow.transfers.leg_sums(USD))
    assert sums[SENDER] == [2, 0, 200, 0]
    assert write(db, lambda uow: uow.transfers.leg_sums(EUR))[PAYEE] == [0, 1, 0, 90]


def test_cancel_resolves_a_reservation_and_records_the_reason(db: Database) -> None:
    held, taken_back = reserved(), netted()
    write(db, lambda uow: uow.transfers.add([held, taken_back], REGIONS))
    at = T0 + timedelta(seconds=4)
    write(db, lambda uow: uow.transfers.cancel(held.transfer_id, at))
    write(db, lambda uow: uow.transfers.cancel(taken_back.transfer_id, at, "duplicate\tsent"))
    got = write(db, lambda uow: uow.transfers.existing([held.transfer_id, taken_back.transfer_id]))
    assert got[held.transfer_id] == held._replace(status=TransferStatus.CANCELLED, resolved_at=at)
    assert got[held.transfer_id].resolution is TransferStatus.CANCELLED
    # A netted transfer was never reserved: cancelled, not resolved.
    assert got[taken_back.transfer_id] == taken_back._replace(
        status=TransferStatus.CANCELLED, reason="duplicate\tsent"
    )
    snapshot = db.read(lambda uow: uow.views.audit_snapshot())
    assert {k: v for k, v in snapshot.cancelled_at.items() if k in got} == {
        held.transfer_id: at,
        taken_back.transfer_id: at,
    }


# Recalls -----------------------------------------------------------------------


def recall(transfer: StoredTransfer, *, deadline: datetime | None = None) -> Recall:
    return Recall(
        tid(), transfer.transfer_id, transfer.debtor, transfer.creditor, "DUPL", "sent twice",
        RecallState.REQUESTED, T0, deadline or T0 + timedelta(days=1),
    )  # fmt: skip


def test_recalls(db: Database) -> None:
    a, b, c = netted(), netted(), netted()
    write(db, lambda uow: uow.transfers.add([a, b, c], REGIONS))
    ra = recall(a, deadline=T0 + timedelta(hours=2))
    rb = recall(b, deadline=T0 + timedelta(hours=1))
    rc = recall(c, deadline=T0 + timedelta(hours=3))

    def add(uow: SqlUnitOfWork) -> None:
        for r in (ra, rb, rc):
            uow.recalls.add(r, REGIONS[r.debtor])

    write(db, add)
    assert write(db, lambda uow: uow.recalls.get(a.transfer_id)) == ra
    assert write(db, lambda uow: uow.recalls.get(tid())) is None
    assert write(db, lambda uow: uow.recalls.by_id(rb.recall_id)) == rb
    assert write(db, lambda uow: uow.recalls.by_id(tid())) is None
    assert write(
        db, lambda uow: uow.recalls.of_transfers([a.transfer_id, b.transfer_id, tid()])
    ) == {
        a.transfer_id: ra,
        b.transfer_id: rb,
    }
    assert write(db, lambda uow: uow.recalls.of_transfers([])) == {}
    # One recall per transfer.
    with pytest.raises(IntegrityError):
        write_once(db, lambda uow: uow.recalls.add(recall(a), REGIONS[SENDER]))

    later = T0 + timedelta(hours=2, minutes=30)
    assert write(db, lambda uow: uow.recalls.due(later, 10)) == [rb, ra]
    assert write(db, lambda uow: uow.recalls.due(later, 1)) == [rb]
    back = tid()
    answered = [
        ra.answered(RecallState.ACCEPTED, later, return_id=back),
        rb.answered(RecallState.EXPIRED, later),
        rc.answered(RecallState.REJECTED, later, reason="NOAS"),
    ]
    stmts = counted(db, lambda uow: uow.recalls.update(answered))
    one_statement_per_call(db, stmts, rows=3)
    write(db, lambda uow: uow.recalls.update([]))
    stored = write(
        db, lambda uow: uow.recalls.of_transfers([a.transfer_id, b.transfer_id, c.transfer_id])
    )
    assert stored == {r.transfer_id: r for r in answered}
    assert write(db, lambda uow: uow.recalls.due(later + timedelta(days=9), 10)) == []
    snapshot = db.read(lambda uow: uow.views.audit_snapshot())
    assert sorted(snapshot.recalls, key=lambda r: r.recall_id) == sorted(
        answered, key=lambda r: r.recall_id
    )
    # The recalls' rows are homed with their debtor's.
    regions = write(
        db, lambda uow: set(uow.conn.execute(text("SELECT home_region FROM recalls")).scalars())
    )
    assert regions == {REGIONS[SENDER]}


# The feed ------------------------------------------------------------------------


def _publish_batch(uow: SqlUnitOfWork, batch: list[StoredTransfer], clock: datetime) -> datetime:
    """What the batch path does: decide the time, store the transfers at it,
    append their BATCH events."""
    heads = uow.events.heads({SENDER, PAYEE, OTHER})
    at = event_time(heads, clock)
    stamped = [
        t._replace(
            accepted_at=at, deadline=None if t.deadline is None else at + timedelta(seconds=30)
        )
        for t in batch
    ]
    uow.transfers.add(stamped, REGIONS)
    uow.events.append(heads, batch_events(stamped), at)
    return at


def test_feed_expands_reserved_batches_resolutions_and_recalls(db: Database) -> None:
    batch = [
        netted(),
        reserved(),
        reserved(cross=True),
        netted(OTHER, SENDER),
        reserved(OTHER, PAYEE),
    ]
    at = write(db, lambda uow: _publish_batch(uow, batch, T0))
    stored = write(db, lambda uow: uow.transfers.existing([t.transfer_id for t in batch]))
    now_netted = [stored[batch[0].transfer_id], stored[batch[3].transfer_id]]
    held = [
        stored[batch[1].transfer_id],
        stored[batch[2].transfer_id],
        stored[batch[4].transfer_id],
    ]

    # The creditor accepts one and rejects one; the third expires later.
    resolved_at = at + timedelta(seconds=2)
    answers = [
        held[0].resolved(TransferStatus.ACCEPTED, resolved_at, cycle_id=USD),
        held[1].resolved(TransferStatus.REJECTED, resolved_at, "AC06"),
    ]

    def resolve(uow: SqlUnitOfWork) -> datetime:
        uow.transfers.resolve(answers)
        return uow.events.publish(resolved_events(answers), resolved_at)

    assert write(db, resolve) == resolved_at
    expired_at = at + timedelta(seconds=31)
    expired = [held[2].resolved(TransferStatus.EXPIRED, expired_at, EXPIRY_REASON)]

    def expire(uow: SqlUnitOfWork) -> None:
        uow.transfers.resolve(expired)
        uow.events.publish(resolved_events(expired), expired_at)

    write(db, expire)
    # A recall of the accepted one, then its return answers it.
    asked = replace(recall(now_netted[0]), requested_at=expired_at + timedelta(seconds=1))

    def ask(uow: SqlUnitOfWork) -> None:
        uow.recalls.add(asked, REGIONS[SENDER])
        uow.events.publish(recall_events(asked), asked.requested_at)

    write(db, ask)
    answered = asked.answered(
        RecallState.ACCEPTED, asked.requested_at + timedelta(seconds=1), return_id=tid()
    )

    def answer(uow: SqlUnitOfWork) -> None:
        uow.recalls.update([answered])
        uow.events.publish(recall_events(answered), answered.answered_at or T0)

    write(db, answer)

    def ids(ts: tuple[StoredTransfer, ...]) -> list[str]:
        return [t.transfer_id for t in ts]

    feed = write(db, lambda uow: uow.events.load(PAYEE, 1, 1_000))
    assert [(e.kind, e.status) for e in feed] == [
        (EventKind.BATCH, TransferStatus.ACCEPTED),
        (EventKind.BATCH, TransferStatus.RESERVED),
        (EventKind.RESOLVED, TransferStatus.ACCEPTED),
        (EventKind.RESOLVED, TransferStatus.REJECTED),
        (EventKind.RESOLVED, TransferStatus.EXPIRED),
        (EventKind.RECALL, TransferStatus.ACCEPTED),
        (EventKind.RECALL, TransferStatus.ACCEPTED),
    ]
    final = write(db, lambda uow: uow.transfers.existing([t.transfer_id for t in batch]))
    assert ids(feed[0].transfers) == [batch[0].transfer_id]
    # The reserved ones, whatever became of them since, as they are now.
    assert feed[1].transfers == tuple(sorted(final[t.transfer_id] for t in held))
    assert ids(feed[2].transfers) == [answers[0].transfer_id]
    assert ids(feed[3].transfers) == [answers[1].transfer_id]
    assert ids(feed[4].transfers) == [expired[0].transfer_id]
    assert [e.size for e in feed[:5]] == [1, 3, 1, 1, 1]
    # RECALL events: the recall as it was then, with its transfer.
    assert feed[5].recall == asked and feed[6].recall == answered
    assert asked.answered_at is None and asked.return_id is None
    assert ids(feed[5].transfers) == ids(feed[6].transfers) == [now_netted[0].transfer_id]
    assert all(e.recall is None for e in feed[:5])

    # The debtor's side of the same batch; the other debtor's feed has its own.
    mine = write(db, lambda uow: uow.events.load(SENDER, 1, 1_000))
    assert [(e.kind, e.status, len(e.transfers)) for e in mine] == [
        (EventKind.BATCH, TransferStatus.ACCEPTED, 2),
        (EventKind.BATCH, TransferStatus.RESERVED, 2),
        (EventKind.RESOLVED, TransferStatus.ACCEPTED, 1),
        (EventKind.RESOLVED, TransferStatus.REJECTED, 1),
        (EventKind.RECALL, TransferStatus.ACCEPTED, 1),
        (EventKind.RECALL, TransferStatus.ACCEPTED, 1),
    ]
    assert [r.state for r in (mine[4].recall, mine[5].recall) if r] == [
        RecallState.REQUESTED, RecallState.ACCEPTED
    ]  # fmt: skip
    theirs = write(db, lambda uow: uow.events.load(OTHER, 1, 1_000))
    assert [(e.kind, e.status, len(e.transfers)) for e in theirs] == [
        (EventKind.BATCH, TransferStatus.ACCEPTED, 1),
        (EventKind.BATCH, TransferStatus.RESERVED, 1),
        (EventKind.RESOLVED, TransferStatus.EXPIRED, 1),
    ]
    # The stored events hold the RecallState in their status column.
    snapshot = db.read(lambda uow: uow.views.audit_snapshot())
    kinds = [(e.kind, e.status) for e in snapshot.events if e.bank == PAYEE]
    assert kinds[-2:] == [
        (EventKind.RECALL, RecallState.REQUESTED),
        (EventKind.RECALL, RecallState.ACCEPTED),
    ]


def test_an_operator_cancel_after_acceptance_keeps_the_resolution(db: Database) -> None:
    held = reserved()
    write(db, lambda uow: _publish_batch(uow, [held], T0))
    (stamped,) = write(db, lambda uow: list(uow.transfers.existing([held.transfer_id]).values()))
    at = stamped.accepted_at + timedelta(seconds=1)
    accepted = stamped.resolved(TransferStatus.ACCEPTED, at, cycle_id=USD)

    def accept(uow: SqlUnitOfWork) -> None:
        uow.transfers.resolve([accepted])
        uow.events.publish(resolved_events([accepted]), at)

    write(db, accept)
    write(
        db, lambda uow: uow.transfers.cancel(held.transfer_id, at + timedelta(seconds=1), "fraud")
    )
    feed = write(db, lambda uow: uow.events.load(PAYEE, 1, 1_000))
    assert [(e.kind, e.status) for e in feed] == [
        (EventKind.BATCH, TransferStatus.RESERVED),
        (EventKind.RESOLVED, TransferStatus.ACCEPTED),
    ]
    (t,) = feed[1].transfers
    assert (t.status, t.resolved_at, t.reason) == (TransferStatus.CANCELLED, at, "fraud")


# ListTransfers -----------------------------------------------------------------


def test_list_transfers_filters(db: Database) -> None:
    times = iter(T0 + timedelta(seconds=s) for s in range(100))
    paid, refunded, recalled, held, rejected, expired = (
        netted(at=next(times)) for _ in range(6)
    )  # fmt: skip
    held = reserved(at=held.accepted_at)
    rejected = reserved(at=rejected.accepted_at)
    expired = reserved(at=expired.accepted_at)
    back = netted(PAYEE, SENDER, at=next(times))._replace(
        return_of=refunded.transfer_id, reason="AC04"
    )
    everything = [paid, refunded, recalled, held, rejected, expired, back]
    write(db, lambda uow: uow.transfers.add(everything, REGIONS))
    write(db, lambda uow: uow.transfers.mark_returned({refunded.transfer_id: back.transfer_id}))
    at = T0 + timedelta(minutes=5)
    write(db, lambda uow: uow.transfers.resolve([
        rejected.resolved(TransferStatus.REJECTED, at, "AC01"),
        expired.resolved(TransferStatus.EXPIRED, at, EXPIRY_REASON),
    ]))  # fmt: skip
    asked = recall(recalled)
    write(db, lambda uow: uow.recalls.add(asked, REGIONS[SENDER]))
    refused = recall(paid)
    write(db, lambda uow: uow.recalls.add(refused, REGIONS[SENDER]))
    refused = refused.answered(RecallState.REJECTED, at, reason="CUST")
    write(db, lambda uow: uow.recalls.update([refused]))

    def listed(bank: str = PAYEE, **filters: Any) -> list[str]:
        args: dict[str, Any] = {
            "bank": bank, "counterparty": "", "cycle_id": "", "status": None, "before": None,
            "limit": 50,
        }  # fmt: skip
        args.update(filters)
        found = db.read(lambda uow: uow.views.list_transfers(**args))
        return [t.transfer_id for t, _ in found]

    def newest_first(*ts: StoredTransfer) -> list[str]:
        return [t.transfer_id for t in sorted(ts, key=lambda t: t.accepted_at, reverse=True)]

    assert listed() == newest_first(*everything)
    assert listed(kind="return") == [back.transfer_id]
    assert listed(kind="payment") == newest_first(*everything[:-1])
    assert listed(returned=True) == [refunded.transfer_id]
    assert listed(returned=False) == newest_first(paid, recalled, held, rejected, expired, back)
    assert listed(kind="payment", returned=False) == newest_first(
        paid, recalled, held, rejected, expired
    )
    for bank in (SENDER, PAYEE):  # both sides see the recall
        assert listed(bank, recall_state=RecallState.REQUESTED) == [recalled.transfer_id]
        assert listed(bank, recall_state=RecallState.REJECTED) == [paid.transfer_id]
        assert listed(bank, recall_state=RecallState.ACCEPTED) == []
    assert listed(OTHER, recall_state=RecallState.REQUESTED) == []
    assert listed(SENDER, counterparty=PAYEE, recall_state=RecallState.REQUESTED) == [
        recalled.transfer_id
    ]
    assert listed(status=TransferStatus.RESERVED) == [held.transfer_id]
    assert listed(status=TransferStatus.REJECTED) == [rejected.transfer_id]
    assert listed(status=TransferStatus.EXPIRED) == [expired.transfer_id]
    # Reservations are in no cycle: not ACCEPTED, not SETTLED.
    accepted = newest_first(paid, refunded, recalled, back)
    assert listed(status=TransferStatus.ACCEPTED) == accepted
    assert listed(cycle_id=USD) == accepted
    with pytest.raises(ValueError):
        listed(kind="refund")


# PostgreSQL plans ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("repository", "index"),
    [
        ("transfers", "ix_transfers_reserved_deadline"),
        ("recalls", "ix_recalls_requested_deadline"),
    ],
)
def test_the_expirer_reads_its_partial_index(
    postgres_url: str, repository: str, index: str
) -> None:
    """due() is a range of the partial index, read in its order (no sort),
    in a generic plan too (the one a prepared statement settles on): the
    status / state predicate is a literal, not a parameter."""
    db = Database(postgres_url)
    captured: list[tuple[str, dict[str, Any]]] = []

    def capture(_c: Any, _cur: Any, statement: str, params: Any, _x: Any, _m: bool) -> None:
        captured.append((statement, dict(params)))

    try:
        with db.engine.begin() as conn:
            uow = SqlUnitOfWork(conn, db.features)
            event.listen(conn, "before_cursor_execute", capture)
            (uow.transfers if repository == "transfers" else uow.recalls).due(T0, 100)
            event.remove(conn, "before_cursor_execute", capture)
            ((statement, params),) = captured
            # The statement as the server prepares it: $1, $2, ... for its
            # parameters, whose values a generic plan does not know.
            for n, name in enumerate(params, 1):
                statement = statement.replace(f"%({name})s", f"${n}")
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
            conn.exec_driver_sql(f"PREPARE due_plan AS {statement}")
            values = ", ".join(
                f"'{v.isoformat()}'::timestamptz" if isinstance(v, datetime) else str(v)
                for v in params.values()
            )
            plan = "\n".join(
                str(r[0]) for r in conn.exec_driver_sql(f"EXPLAIN EXECUTE due_plan({values})")
            )
    finally:
        db.dispose()
    assert index in plan, plan
    assert "Sort" not in plan, plan


# Migration 0009 ------------------------------------------------------------------


def test_migration_0009_upgrades_a_0008_database_with_rows(db_url: str) -> None:
    database = Database(db_url)
    try:
        migrate.upgrade(database)
        config = migrate.alembic_config(database)
        command.downgrade(config, "0008")  # down through 0009 on PostgreSQL's template copy
        assert migrate.current(database) == "0008"
        old = tid()
        with database.engine.begin() as conn:
            assert "recalls" not in inspect(conn).get_table_names()
            conn.execute(
                insert(banks).values(
                    code=SENDER, name="old", home_region="us-east1", status=1, created_at=T0,
                    roles=1,
                )
            )  # fmt: skip
            conn.execute(
                insert(feed_heads).values(
                    bank_code=SENDER, seq=0, last_at=T0, started_at=T0, home_region="us-east1"
                )
            )
            conn.execute(
                insert(accounts).values(
                    id=account_id(SENDER, "USD"), owner=SENDER, currency="USD", kind="LIQUIDITY",
                    balance=900, net_debit_cap=100, unsettled_net=-40, entry_count=1,
                    opened_at=T0, home_region="us-east1",
                )
            )  # fmt: skip
            conn.execute(
                insert(transfers).values(
                    id=old, debtor_bank=SENDER, creditor_bank=HUB, currency="USD", amount=40,
                    remittance_info="before", status=1, cycle_id=USD, accepted_at=T0,
                    home_region="us-east1",
                )
            )  # fmt: skip
        migrate.upgrade(database, "0009")
        assert migrate.current(database) == "0009"
        with database.engine.connect() as conn:
            found = inspect(conn)
            names = {i["name"] for i in found.get_indexes("transfers")}
            assert {
                "ix_transfers_reserved_deadline",
                "uq_transfers_return_of",
                "ix_transfers_debtor_bank_resolved_at",
                "ix_transfers_creditor_bank_resolved_at",
            } <= names
            recall_indexes = {i["name"] for i in found.get_indexes("recalls")}
            assert {
                "ix_recalls_requested_deadline",
                "ix_recalls_debtor_bank_requested_at",
                "ix_recalls_creditor_bank_requested_at",
            } <= recall_indexes
        # The repositories are today's: read and write through them at head.
        migrate.upgrade(database)
        bank = database.read(lambda uow: uow.banks.get(SENDER))
        assert bank is not None and bank.requires_confirmation is False
        account = database.read(lambda uow: uow.accounts.get(account_id(SENDER, "USD")))
        assert account is not None and (account.reserved, account.unsettled_net) == (0, -40)
        t = database.read(lambda uow: uow.transfers.get(old))
        assert t == StoredTransfer(
            old, SENDER, HUB, "USD", 40, "before", TransferStatus.ACCEPTED, USD, T0
        )
        assert (t.deadline, t.resolved_at, t.reason, t.return_of, t.returned_by) == (None,) * 5
        # The new columns and table take writes at once.
        database.write("after", lambda uow: uow.transfers.mark_returned({old: tid()}))
        database.write("after", lambda uow: uow.banks.set_requires_confirmation(SENDER, True))
        later = database.read(lambda uow: uow.transfers.get(old))
        assert later is not None and later.returned_by is not None
        r = Recall(
            tid(), old, SENDER, HUB, "TECH", "", RecallState.REQUESTED, T0, T0 + timedelta(days=1)
        )
        database.write("after", lambda uow: uow.recalls.add(r, "us-east1"))
        assert database.read(lambda uow: uow.recalls.get(old)) == r
        # And back down and up again, with rows in the new columns.
        command.downgrade(config, "0008")
        with database.engine.connect() as conn:
            assert conn.execute(select(transfers.c.id).where(transfers.c.id == old)).first()
        migrate.upgrade(database)
        assert database.read(lambda uow: uow.transfers.get(old)) == t
    finally:
        database.dispose()


# Migration 0011 ------------------------------------------------------------------


def test_migration_0011_adds_the_purpose_and_round_trips(db_url: str) -> None:
    database = Database(db_url)
    try:
        migrate.upgrade(database)
        config = migrate.alembic_config(database)
        command.downgrade(config, "0010")
        assert migrate.current(database) == "0010"
        old = tid()
        with database.engine.begin() as conn:
            assert "purpose" not in {c["name"] for c in inspect(conn).get_columns("transfers")}
            conn.execute(
                insert(banks).values(
                    code=SENDER, name="old", home_region="us-east1", status=1, created_at=T0,
                    roles=1,
                )
            )  # fmt: skip
            conn.execute(
                insert(transfers).values(
                    id=old, debtor_bank=SENDER, creditor_bank=HUB, currency="USD", amount=40,
                    remittance_info="before", status=1, cycle_id=USD, accepted_at=T0,
                    home_region="us-east1",
                )
            )  # fmt: skip
        migrate.upgrade(database)
        # A transfer from before has no purpose; one written now keeps its own.
        t = database.read(lambda uow: uow.transfers.get(old))
        assert t is not None and t.purpose is None
        new = StoredTransfer(
            tid(), SENDER, HUB, "USD", 5, "", TransferStatus.ACCEPTED, USD, T0, purpose="SALA"
        )
        database.write("after", lambda uow: uow.transfers.add([new], {SENDER: "us-east1"}))
        assert database.read(lambda uow: uow.transfers.get(new.transfer_id)) == new
        # Down drops the column (and the purpose with it), the rows stay.
        command.downgrade(config, "0010")
        with database.engine.connect() as conn:
            ids = set(conn.execute(select(transfers.c.id)).scalars())
            assert {old, new.transfer_id} <= {str(i) for i in ids}
        migrate.upgrade(database)
        back = database.read(lambda uow: uow.transfers.get(new.transfer_id))
        assert back == new._replace(purpose=None)
    finally:
        database.dispose()
