"""The per-bank change feed: written in the transaction of each change,
read by the status stream (services/remitnet/services/service_layer/watch.py).

A bank's events are numbered 1, 2, 3, ... by the counter in its
`feed_heads` row. Every transaction that appends to a bank's feed reads and
advances that row, so two writers of one bank conflict and one retries:
event numbers are gap-free and in commit order, and a reader that has seen
event N of a bank can never later find an event below N. That is what makes
a resume token exact, with no look-back window.

Each event's time is strictly later than the bank's previous event's
(`last_at`). A batch's transfers all carry the batch's time as accepted_at,
so one BATCH event stands for every transfer of that bank in the batch: the
reader finds them through the existing (debtor_bank, accepted_at) and
(creditor_bank, accepted_at) indexes, and the hot batch path writes one
event row per bank it touches, not one per transfer. A batch that reserved
some of its transfers for the creditor's confirmation writes a second BATCH
event at the same time, with status RESERVED, for those (the ones with a
deadline). Reserved transfers that leave RESERVED in one transaction carry
its time as resolved_at: one RESOLVED event per bank and resolution stands
for them, found through the partial (bank, resolved_at) indexes. A RECALL
event names the recalled transfer; its status column holds the RecallState
the recall moved to."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, insert, select, text, update

from remitnet.services.adapters.db.arrays import int_array, nullable_text_array, text_array
from remitnet.services.adapters.db.dialect import Dialect
from remitnet.services.adapters.db.keys import key_in
from remitnet.services.adapters.db.recalls import SqlRecalls
from remitnet.services.adapters.db.rows import TRANSFER_COLUMNS, cycle_of, transfer_of, utc
from remitnet.services.adapters.db.schema import cycles, events, feed_heads, transfers
from remitnet.services.adapters.db.transfers import SqlTransfers
from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.events import (
    TICK,
    EventKind,
    FeedEvent,
    Head,
    NewEvent,
    event_time,
)
from remitnet.services.domain.lifecycle import Recall, RecallState
from remitnet.services.domain.model import HUB, CycleState, StoredTransfer, TransferStatus

_ACCEPTED = TransferStatus.ACCEPTED
_RESERVED = TransferStatus.RESERVED


def recall_as_of(recall: Recall, state: RecallState) -> Recall:
    """The recall as it was when it moved to `state`: REQUESTED, unanswered
    yet; any later state is final, so what is stored now is what it was."""
    if state is RecallState.REQUESTED:
        return replace(recall, state=state, answered_at=None, answer_reason=None, return_id=None)
    return replace(recall, state=state)


_advance = (
    update(feed_heads)
    .where(feed_heads.c.bank_code == bindparam("b_code"))
    .values(seq=bindparam("b_seq"), last_at=bindparam("b_at"))
)

# With array parameters: the heads of a close's thousands of banks in one
# statement, their codes one array literal (adapters/db/arrays.py).
_HEADS_ARRAYS = text(
    "SELECT bank_code, seq, last_at, home_region FROM feed_heads "
    "WHERE bank_code IN (SELECT unnest(CAST(:codes AS VARCHAR[])))"
)

# With array parameters: a whole publish in one statement. The time (`t`)
# is the clock or just after the latest head of the banks written
# (event_time, with timestamps in microseconds: the later of the clock and
# latest + TICK). Every part of the statement reads the heads as they were
# before it (the same snapshot; a concurrent advance of one of them fails the
# serializable transaction, which is retried whole): the heads advance by
# their banks' event counts, and each event is numbered on from its bank's
# head as it was (`k`: 1 for its bank's first event of the publish). The
# events join the heads table, not the UPDATE's answer: joined to a CTE
# without statistics, the planner expects n * n / 200 rows, JIT-compiles the
# statement past a few thousand banks and sorts on disk. No head, no
# timestamp per bank comes back to be parsed: a close or a settlement tells
# thousands of banks. The codes are joined, not matched by `= ANY`: under a
# prepared statement's generic plan that can become a filter searching the
# array for every row.
_PUBLISH_ARRAYS = text(
    "WITH t AS (SELECT GREATEST(CAST(:clock AS TIMESTAMPTZ), "
    "COALESCE(max(f.last_at) + CAST(:tick AS INTERVAL), CAST(:clock AS TIMESTAMPTZ))) AS at "
    "FROM feed_heads AS f JOIN unnest(CAST(:codes AS VARCHAR[])) AS c(code) "
    "ON f.bank_code = c.code), "
    "h AS (UPDATE feed_heads SET seq = feed_heads.seq + v.n, last_at = t.at "
    "FROM unnest(CAST(:codes AS VARCHAR[]), CAST(:counts AS BIGINT[])) AS v(code, n), t "
    "WHERE feed_heads.bank_code = v.code RETURNING 1), "
    "e AS (INSERT INTO events (bank_code, seq, at, kind, status, transfer_id, cycle_id, "
    "other_cycle_id, item_count, home_region) "
    "SELECT f.bank_code, f.seq + n.k, t.at, n.kind, n.status, n.transfer_id, n.cycle_id, "
    "n.other_cycle_id, n.item_count, f.home_region "
    "FROM unnest(CAST(:banks AS VARCHAR[]), CAST(:ks AS BIGINT[]), CAST(:kinds AS SMALLINT[]), "
    "CAST(:statuses AS SMALLINT[]), CAST(:transfer_ids AS UUID[]), CAST(:cycle_ids AS VARCHAR[]), "
    "CAST(:other_cycle_ids AS VARCHAR[]), CAST(:items AS INTEGER[])) "
    "AS n(bank, k, kind, status, transfer_id, cycle_id, other_cycle_id, item_count) "
    "JOIN feed_heads AS f ON f.bank_code = n.bank CROSS JOIN t RETURNING 1) "
    "SELECT (SELECT count(*) FROM h), (SELECT count(*) FROM e), (SELECT at FROM t)"
)

# With array parameters: a batch's events and its banks' heads in one
# statement, one round trip (a batch writes one event per bank it touches,
# tens to a few thousand; COPY and an UPDATE took three). Numbered in
# Python from the heads the transaction read; both parts are counted, so
# that a head that is not there is found.
_APPEND_ARRAYS = text(
    "WITH h AS (UPDATE feed_heads SET seq = v.seq, last_at = :at "
    "FROM unnest(CAST(:codes AS VARCHAR[]), CAST(:seqs AS BIGINT[])) AS v(code, seq) "
    "WHERE feed_heads.bank_code = v.code RETURNING 1), "
    "e AS (INSERT INTO events (bank_code, seq, at, kind, status, transfer_id, cycle_id, "
    "other_cycle_id, item_count, home_region) "
    "SELECT n.bank, n.seq, CAST(:at AS TIMESTAMPTZ), n.kind, n.status, n.transfer_id, "
    "n.cycle_id, n.other_cycle_id, n.item_count, n.region "
    "FROM unnest(CAST(:banks AS VARCHAR[]), CAST(:ev_seqs AS BIGINT[]), "
    "CAST(:kinds AS SMALLINT[]), CAST(:statuses AS SMALLINT[]), CAST(:transfer_ids AS UUID[]), "
    "CAST(:cycle_ids AS VARCHAR[]), CAST(:other_cycle_ids AS VARCHAR[]), "
    "CAST(:items AS INTEGER[]), CAST(:regions AS VARCHAR[])) "
    "AS n(bank, seq, kind, status, transfer_id, cycle_id, other_cycle_id, item_count, region) "
    "RETURNING 1) "
    "SELECT (SELECT count(*) FROM h), (SELECT count(*) FROM e)"
)

# Built once: onboarding creates a head per bank, and a statement built per
# call costs more Python to coerce and cache-key than to run.
_INSERT_HEAD = insert(feed_heads)


def _event_arrays(new: Sequence[NewEvent]) -> dict[str, str]:
    """The events' own columns as array literals, as _APPEND_ARRAYS and
    _PUBLISH_ARRAYS take them."""
    return {
        "kinds": int_array([int(e.kind) for e in new]),
        "statuses": int_array([int(e.status) for e in new]),
        "transfer_ids": nullable_text_array([e.transfer_id for e in new]),
        "cycle_ids": nullable_text_array([e.cycle_id for e in new]),
        "other_cycle_ids": nullable_text_array([e.other_cycle_id for e in new]),
        "items": int_array([e.item_count for e in new]),
    }


class SqlEventFeed:
    """EventFeed over a Connection; it expands events into the transfers
    they stand for through `transfers`, and RECALL events into the recall
    through `recalls`."""

    __slots__ = ("conn", "dialect", "recalls", "transfers")

    def __init__(
        self,
        conn: Connection,
        dialect: Dialect,
        transfers: SqlTransfers,
        recalls: SqlRecalls | None = None,
    ) -> None:
        self.conn = conn
        self.dialect = dialect
        self.transfers = transfers
        self.recalls = SqlRecalls(conn, dialect) if recalls is None else recalls

    # Writing -----------------------------------------------------------------

    def create_head(self, bank: str, region: str, now: datetime) -> None:
        self.conn.execute(
            _INSERT_HEAD,
            {"bank_code": bank, "seq": 0, "last_at": now, "started_at": now, "home_region": region},
        )

    def heads(self, banks: Collection[str]) -> dict[str, Head]:
        """The feed heads of `banks` (unknown codes and the hub have none)."""
        wanted = [b for b in banks if b != HUB]
        if not wanted:
            return {}
        if self.dialect.arrays:
            rows = self.conn.execute(_HEADS_ARRAYS, {"codes": text_array(wanted)}).all()
        else:
            rows = self.conn.execute(
                select(
                    feed_heads.c.bank_code,
                    feed_heads.c.seq,
                    feed_heads.c.last_at,
                    feed_heads.c.home_region,
                ).where(key_in(feed_heads.c.bank_code, wanted, self.dialect))
            ).all()
        return {str(b): Head(int(s), utc(at), str(r)) for b, s, at, r in rows}

    def append(self, heads: Mapping[str, Head], new: Sequence[NewEvent], at: datetime) -> None:
        """Number `new` after each bank's head, in order, and store them with
        time `at` (from event_time over the same heads). Every bank named must
        be in `heads`, read in this transaction."""
        if not new:
            return
        if self.dialect.arrays:
            self._append_arrays(heads, new, at)
            return
        seqs: dict[str, int] = {}
        rows = []
        for e in new:
            seq = seqs.get(e.bank, heads[e.bank].seq) + 1
            seqs[e.bank] = seq
            rows.append(
                {
                    "bank_code": e.bank,
                    "seq": seq,
                    "at": at,
                    "kind": int(e.kind),
                    "status": int(e.status),
                    "transfer_id": e.transfer_id,
                    "cycle_id": e.cycle_id,
                    "other_cycle_id": e.other_cycle_id,
                    "item_count": e.item_count,
                    "home_region": heads[e.bank].region,
                }
            )
        self.conn.execute(insert(events), rows)
        self.conn.execute(
            _advance, [{"b_code": b, "b_seq": s, "b_at": at} for b, s in seqs.items()]
        )

    def _append_arrays(
        self, heads: Mapping[str, Head], new: Sequence[NewEvent], at: datetime
    ) -> None:
        """append in one statement (_APPEND_ARRAYS)."""
        seqs: dict[str, int] = {}
        numbered = []
        for e in new:
            seqs[e.bank] = seq = seqs.get(e.bank, heads[e.bank].seq) + 1
            numbered.append(seq)
        row = self.conn.execute(
            _APPEND_ARRAYS,
            {
                "at": at,
                "codes": text_array(seqs),
                "seqs": int_array(seqs.values()),
                "banks": text_array([e.bank for e in new]),
                "ev_seqs": int_array(numbered),
                **_event_arrays(new),
                "regions": text_array([heads[e.bank].region for e in new]),
            },
        ).one()
        if int(row[0]) != len(seqs) or int(row[1]) != len(new):
            raise AssertionError(f"{len(seqs) - int(row[0])} feed heads missing of {len(seqs)}")

    def publish(self, new: Sequence[NewEvent], clock: datetime) -> datetime:
        """Append `new` to its banks' feeds and return the transaction's time
        (event_time over those banks' heads), for the change's own rows. The
        batch path reads the heads itself: its time is decided before its
        events are known."""
        if self.dialect.arrays and new:
            return self._publish_arrays(new, clock)
        heads = self.heads({e.bank for e in new})
        at = event_time(heads, clock)
        self.append(heads, new, at)
        return at

    def _publish_arrays(self, new: Sequence[NewEvent], clock: datetime) -> datetime:
        """publish in one statement (_PUBLISH_ARRAYS)."""
        banks = [e.bank for e in new]
        counts = Counter(banks)
        if len(counts) == len(banks):
            ks = [1] * len(banks)  # an event per bank: a close's, a settlement's
        else:
            ks = []
            so_far: dict[str, int] = {}
            for bank in banks:
                so_far[bank] = k = so_far.get(bank, 0) + 1
                ks.append(k)
        row = self.conn.execute(
            _PUBLISH_ARRAYS,
            {
                "clock": clock,
                "tick": TICK,
                "codes": text_array(counts),
                "counts": int_array(counts.values()),
                "banks": text_array(banks),
                "ks": int_array(ks),
                **_event_arrays(new),
            },
        ).one()
        advanced, written, at = int(row[0]), int(row[1]), row[2]
        # An event of a bank without a head (the hub, an unknown code) joined
        # nothing: refused, as append refuses it.
        if advanced != len(counts) or written != len(new):
            raise AssertionError(f"{len(new) - written} events name banks without a feed head")
        return utc(at).astimezone(UTC)

    def legs_reaching(self, cycle_id: str, state: CycleState) -> list[tuple[str, str, int]]:
        """(bank, other cycle, how many) for the live cross-currency transfers
        with a leg in `cycle_id` whose other leg's cycle has already reached
        `state`, per party: when `cycle_id` reaches it too, these transfers do.
        Neither cycle takes transfers any more (both are at least closed), so
        the set a (bank, cycle, other cycle) names is fixed from now on. Reads
        the cycle's cross-currency legs alone, through two partial indexes."""
        live = transfers.c.status == int(TransferStatus.ACCEPTED)
        groups: dict[tuple[str, str, str], int] = defaultdict(int)
        for mine, theirs in (
            (transfers.c.cycle_id, transfers.c.creditor_cycle_id),
            (transfers.c.creditor_cycle_id, transfers.c.cycle_id),
        ):
            query = (
                select(transfers.c.debtor_bank, transfers.c.creditor_bank, theirs, func.count())
                .where(mine == cycle_id, transfers.c.creditor_cycle_id.is_not(None), live)
                .group_by(transfers.c.debtor_bank, transfers.c.creditor_bank, theirs)
            )
            for debtor, creditor, other_id, n in self.conn.execute(query):
                groups[(str(debtor), str(creditor), str(other_id))] += int(n)
        others = {other_id for _, _, other_id in groups}
        reached = (
            {
                str(c)
                for (c,) in self.conn.execute(
                    select(cycles.c.id).where(cycles.c.id.in_(others), cycles.c.state >= int(state))
                )
            }
            if others
            else set()
        )
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for (debtor, creditor, other_id), n in groups.items():
            if other_id in reached:
                counts[(debtor, other_id)] += n
                counts[(creditor, other_id)] += n
        return [(bank, other_id, n) for (bank, other_id), n in sorted(counts.items())]

    def cycle_events(
        self, cycle_id: str, state: CycleState, banks: Collection[str]
    ) -> list[NewEvent]:
        """What a cycle reaching `state` tells each bank: a CYCLE event for every
        bank with a position in it (its same-currency transfers there now have
        that status), and a LEGS event for each bank and other cycle whose
        cross-currency transfers have now both legs there; the reader expands it
        to one message per transfer. Writing one row per bank and cycle pair,
        not per transfer, keeps a close or a settlement as cheap as its
        positions."""
        status = TransferStatus.CLOSED if state is CycleState.CLOSED else TransferStatus.SETTLED
        out = [
            NewEvent(b, EventKind.CYCLE, status, cycle_id=cycle_id)
            for b in sorted(banks)
            if b != HUB
        ]
        for bank, other_id, n in self.legs_reaching(cycle_id, state):
            out.append(
                NewEvent(
                    bank, EventKind.LEGS, status, cycle_id=cycle_id, other_cycle_id=other_id,
                    item_count=n,
                )
            )  # fmt: skip
        return out

    # Reading -----------------------------------------------------------------

    def current_heads(self, banks: Collection[str]) -> dict[str, int]:
        """The last event number of each bank: the stream reader's one poll."""
        if not banks:
            return {}
        rows = self.conn.execute(
            select(feed_heads.c.bank_code, feed_heads.c.seq).where(
                feed_heads.c.bank_code.in_(banks)
            )
        )
        return {str(b): int(s) for b, s in rows}

    def seq_before(self, bank: str, since: datetime) -> int:
        """The number of the last event of `bank` before `since`."""
        row = self.conn.execute(
            select(events.c.seq)
            .where(events.c.bank_code == bank, events.c.at < since)
            .order_by(events.c.seq.desc())
            .limit(1)
        ).first()
        return 0 if row is None else int(row[0])

    def load(self, bank: str, from_seq: int, max_items: int) -> list[FeedEvent]:
        """Events of `bank` from number `from_seq` on, expanded, in order: whole
        events only, at least one, and about `max_items` items at the most."""
        rows = self.conn.execute(
            select(
                events.c.seq,
                events.c.at,
                events.c.kind,
                events.c.status,
                events.c.transfer_id,
                events.c.cycle_id,
                events.c.other_cycle_id,
                events.c.item_count,
            )
            .where(events.c.bank_code == bank, events.c.seq >= from_seq)
            .order_by(events.c.seq)
            .limit(max(1, min(max_items, 1_000)))
        ).all()
        taken: list[Row[Any]] = []
        items = 0
        for r in rows:
            if taken and items + int(r.item_count) > max_items:
                break
            taken.append(r)
            items += int(r.item_count)
        batches = {(utc(r.at), int(r.status)) for r in taken if r.kind == EventKind.BATCH}
        by_batch = self._batch_transfers(bank, batches) if batches else {}
        resolutions = {(utc(r.at), int(r.status)) for r in taken if r.kind == EventKind.RESOLVED}
        by_resolution = self._resolved_transfers(bank, resolutions) if resolutions else {}
        singles = [
            str(r.transfer_id) for r in taken if r.kind in (EventKind.TRANSFER, EventKind.RECALL)
        ]
        loaded = self.transfers.existing(singles) if singles else {}
        recalled = [str(r.transfer_id) for r in taken if r.kind == EventKind.RECALL]
        recalls = self.recalls.of_transfers(recalled) if recalled else {}
        cycle_ids = {str(r.cycle_id) for r in taken if r.kind == EventKind.CYCLE}
        found: dict[str, Cycle] = {}
        if cycle_ids:
            for row in self.conn.execute(select(cycles).where(cycles.c.id.in_(cycle_ids))):
                found[row.id] = cycle_of(row)
        out = []
        for r in taken:
            kind = EventKind(r.kind)
            at = utc(r.at)
            seq = int(r.seq)
            if kind is EventKind.RECALL:
                t = loaded[str(r.transfer_id)]
                recall = recall_as_of(recalls[t.transfer_id], RecallState(r.status))
                out.append(FeedEvent(seq, at, kind, t.status, (t,), None, recall))
                continue
            status = TransferStatus(r.status)
            if kind is EventKind.BATCH:
                ts = by_batch.get((at, status), ())
                out.append(FeedEvent(seq, at, kind, status, ts, None))
            elif kind is EventKind.RESOLVED:
                ts = by_resolution.get((at, status), ())
                out.append(FeedEvent(seq, at, kind, status, ts, None))
            elif kind is EventKind.TRANSFER:
                t = loaded[str(r.transfer_id)]
                out.append(FeedEvent(seq, at, kind, status, (t,), None))
            elif kind is EventKind.LEGS:
                pair = self._leg_transfers(bank, str(r.cycle_id), str(r.other_cycle_id))
                out.append(FeedEvent(seq, at, kind, status, pair, None))
            else:
                out.append(FeedEvent(seq, at, kind, status, (), found[str(r.cycle_id)]))
        return out

    def _batch_transfers(
        self, bank: str, batches: Collection[tuple[datetime, int]]
    ) -> dict[tuple[datetime, TransferStatus], tuple[StoredTransfer, ...]]:
        """The transfers `bank` is party to that each of the BATCH events
        `batches` (time, status) stands for, ordered by id within each: with
        accepted_at the event's time, the netted ones that were netted at
        once (no deadline) for status ACCEPTED, the reserved ones (whatever
        became of them since) for status RESERVED."""
        wanted = {(at, TransferStatus(s)) for at, s in batches}
        times = list({at for at, _ in wanted})
        found: dict[tuple[datetime, TransferStatus], list[StoredTransfer]] = defaultdict(list)
        # Gross transfers (no cycle, no deadline) are TRANSFER events of their own.
        told = (transfers.c.cycle_id != "") | transfers.c.deadline.is_not(None)
        for party in (transfers.c.debtor_bank, transfers.c.creditor_bank):
            query = select(*TRANSFER_COLUMNS).where(
                party == bank, transfers.c.accepted_at.in_(times), told
            )
            for row in self.conn.execute(query):
                t = transfer_of(tuple(row))
                key = (t.accepted_at, _ACCEPTED if t.deadline is None else _RESERVED)
                if key in wanted:
                    found[key].append(t)
        return {key: tuple(sorted(ts, key=lambda t: t.transfer_id)) for key, ts in found.items()}

    def _resolved_transfers(
        self, bank: str, resolutions: Collection[tuple[datetime, int]]
    ) -> dict[tuple[datetime, TransferStatus], tuple[StoredTransfer, ...]]:
        """The transfers `bank` is party to that each of the RESOLVED events
        `resolutions` (time, status) stands for, ordered by id within each:
        those that left RESERVED at the event's time (resolved_at) with that
        resolution (`StoredTransfer.resolution`: ACCEPTED once netted, even
        if the operator cancelled it later). Read through the partial
        (bank, resolved_at) indexes."""
        wanted = {(at, TransferStatus(s)) for at, s in resolutions}
        times = list({at for at, _ in wanted})
        found: dict[tuple[datetime, TransferStatus], list[StoredTransfer]] = defaultdict(list)
        for party in (transfers.c.debtor_bank, transfers.c.creditor_bank):
            query = select(*TRANSFER_COLUMNS).where(
                party == bank,
                transfers.c.resolved_at.is_not(None),
                transfers.c.resolved_at.in_(times),
            )
            for row in self.conn.execute(query):
                t = transfer_of(tuple(row))
                resolution = t.resolution
                if resolution is None or t.resolved_at is None:
                    continue
                key = (t.resolved_at, resolution)
                if key in wanted:
                    found[key].append(t)
        return {key: tuple(sorted(ts, key=lambda t: t.transfer_id)) for key, ts in found.items()}

    def _leg_transfers(self, bank: str, cycle_id: str, other_id: str) -> tuple[StoredTransfer, ...]:
        """The live cross-currency transfers `bank` is party to with one leg in
        each of the two cycles, ordered by id."""
        legs = (
            (transfers.c.cycle_id == cycle_id) & (transfers.c.creditor_cycle_id == other_id)
        ) | ((transfers.c.cycle_id == other_id) & (transfers.c.creditor_cycle_id == cycle_id))
        party = (transfers.c.debtor_bank == bank) | (transfers.c.creditor_bank == bank)
        live = transfers.c.status == int(TransferStatus.ACCEPTED)
        rows = self.conn.execute(
            select(*TRANSFER_COLUMNS).where(legs, party, live).order_by(transfers.c.id)
        )
        return tuple(transfer_of(tuple(r)) for r in rows)
