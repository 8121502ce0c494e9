"""The recalls repository: the debtor's requests for a transfer back
(camt.056), at most one per transfer, their answers and the expirer's read
of the open ones past their deadline."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import UUID

from remitnet.services.adapters.db.dialect import Dialect
from remitnet.services.adapters.db.keys import key_in
from remitnet.services.adapters.db.rows import utc
from remitnet.services.adapters.db.schema import recalls
from remitnet.services.domain.lifecycle import Recall, RecallState

RECALL_COLUMNS = (
    recalls.c.id,
    recalls.c.transfer_id,
    recalls.c.debtor_bank,
    recalls.c.creditor_bank,
    recalls.c.reason,
    recalls.c.info,
    recalls.c.state,
    recalls.c.requested_at,
    recalls.c.deadline,
    recalls.c.answered_at,
    recalls.c.answer_reason,
    recalls.c.return_id,
)


def recall_of(r: tuple[Any, ...]) -> Recall:
    """A Recall from a row of RECALL_COLUMNS (as a tuple): the columns are
    the fields in order."""
    rid, tid, debtor, creditor, reason, info, state, requested, deadline = r[:9]
    answered, answer_reason, return_id = r[9:12]
    return Recall(
        str(rid),
        str(tid),
        str(debtor),
        str(creditor),
        str(reason),
        str(info),
        RecallState(state),
        utc(requested),
        utc(deadline),
        None if answered is None else utc(answered),
        answer_reason,
        None if return_id is None else str(return_id),
    )


_update = (
    update(recalls)
    .where(recalls.c.id == bindparam("r_id"))
    .values(
        state=bindparam("r_state"),
        answered_at=bindparam("r_answered"),
        answer_reason=bindparam("r_reason"),
        return_id=bindparam("r_return"),
    )
)

# With array parameters: every recall of the set in one statement.
_UPDATE_ARRAYS = text(
    "UPDATE recalls SET state = v.state, answered_at = v.answered_at, "
    "answer_reason = v.answer_reason, return_id = v.return_id "
    "FROM unnest(CAST(:ids AS UUID[]), CAST(:states AS SMALLINT[]), "
    "CAST(:answered AS TIMESTAMPTZ[]), CAST(:reasons AS VARCHAR[]), "
    "CAST(:returns AS UUID[])) AS v(id, state, answered_at, answer_reason, return_id) "
    "WHERE recalls.id = v.id"
)


class SqlRecalls:
    """RecallRepository over a Connection."""

    __slots__ = ("conn", "dialect")

    def __init__(self, conn: Connection, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect

    def get(self, transfer_id: str) -> Recall | None:
        """The recall of a transfer (at most one each: unique transfer_id)."""
        row = self.conn.execute(
            select(*RECALL_COLUMNS).where(recalls.c.transfer_id == transfer_id)
        ).first()
        return None if row is None else recall_of(tuple(row))

    def by_id(self, recall_id: str) -> Recall | None:
        """The recall with the client's id `recall_id` (its idempotency key)."""
        row = self.conn.execute(select(*RECALL_COLUMNS).where(recalls.c.id == recall_id)).first()
        return None if row is None else recall_of(tuple(row))

    def of_transfers(self, ids: Collection[str]) -> dict[str, Recall]:
        """transfer id -> its recall, for those of `ids` that have one."""
        if not ids:
            return {}
        match = key_in(recalls.c.transfer_id, ids, self.dialect, UUID())
        rows = self.conn.execute(select(*RECALL_COLUMNS).where(match))
        out = {}
        for r in rows:
            recall = recall_of(tuple(r))
            out[recall.transfer_id] = recall
        return out

    def add(self, recall: Recall, region: str) -> None:
        """`region`: the home region of the recall's debtor."""
        self.conn.execute(
            insert(recalls).values(
                id=recall.recall_id,
                transfer_id=recall.transfer_id,
                debtor_bank=recall.debtor,
                creditor_bank=recall.creditor,
                reason=recall.reason,
                info=recall.info,
                state=int(recall.state),
                requested_at=recall.requested_at,
                deadline=recall.deadline,
                answered_at=recall.answered_at,
                answer_reason=recall.answer_reason,
                return_id=recall.return_id,
                home_region=region,
            )
        )

    def update(self, changed: Sequence[Recall]) -> None:
        """Write each recall's state, answered_at, answer_reason and
        return_id. One statement with array parameters, else one
        executemany."""
        if not changed:
            return
        if self.dialect.arrays:
            self.conn.execute(
                _UPDATE_ARRAYS,
                {
                    "ids": [r.recall_id for r in changed],
                    "states": [int(r.state) for r in changed],
                    "answered": [r.answered_at for r in changed],
                    "reasons": [r.answer_reason for r in changed],
                    "returns": [r.return_id for r in changed],
                },
            )
            return
        self.conn.execute(
            _update,
            [
                {
                    "r_id": r.recall_id,
                    "r_state": int(r.state),
                    "r_answered": r.answered_at,
                    "r_reason": r.answer_reason,
                    "r_return": r.return_id,
                }
                for r in changed
            ],
        )

    def due(self, now: datetime, limit: int) -> list[Recall]:
        """REQUESTED recalls whose deadline is at or before `now`, oldest
        deadline first, at most `limit`: a range of the partial index of the
        open recalls (state 1, a literal so that every plan can use it)."""
        rows = self.conn.execute(
            select(*RECALL_COLUMNS)
            .where(
                recalls.c.state == literal_column(str(int(RecallState.REQUESTED))),
                recalls.c.deadline <= now,
            )
            .order_by(recalls.c.deadline)
            .limit(limit)
        )
        return [recall_of(tuple(r)) for r in rows]
