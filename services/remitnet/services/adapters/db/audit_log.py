"""The operator audit trail's SQL: append a record in the caller's
transaction, find the SettleCycle records of cycles, read the chain in order.

The chain head is the row with the highest seq, a single hot spot by nature:
every appender reads it and inserts the next seq, so two concurrent operator
actions conflict (a unique violation or a serialization failure) and one is
retried whole by Database.write. Operator actions are rare (onboarding,
funding, a few closes and settlements per currency and day), so that costs
nothing; the netting engine's batches never touch the table."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select

from remitnet.services.adapters.db.rows import utc
from remitnet.services.adapters.db.schema import operator_audit_log as log
from remitnet.services.domain.audit_trail import Action, AuditRecord, ChainHead, next_record

_COLUMNS = (
    log.c.seq,
    log.c.at,
    log.c.principal,
    log.c.action,
    log.c.subject,
    log.c.request,
    log.c.digest,
    log.c.prev_hash,
    log.c.hash,
)


def _record(row: Row[Any]) -> AuditRecord:
    return AuditRecord(
        seq=int(row.seq),
        at=utc(row.at),
        principal=row.principal,
        action=row.action,
        subject=row.subject,
        request=row.request,
        digest=row.digest,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


# Built once: one append per operator action, and a statement built per
# call (values() with literals) costs more Python than the insert.
_INSERT = insert(log)
_HEAD = select(*_COLUMNS).order_by(log.c.seq.desc()).limit(1)


class SqlOperatorTrail:
    """OperatorTrail over a Connection: one per transaction attempt (a unit
    of work's), so what it appended is the head until the transaction ends."""

    __slots__ = ("_head", "conn")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        # The record this transaction appended last: the chain's head for
        # the rest of the transaction (an operator action group appends one
        # per action; reading the head back each time cost a statement
        # each). A concurrent appender still conflicts on the seq it inserts.
        self._head: AuditRecord | None = None

    def head(self) -> AuditRecord | None:
        if self._head is not None:
            return self._head
        row = self.conn.execute(_HEAD).first()
        return None if row is None else _record(row)

    def append(
        self,
        principal: str,
        action: Action,
        request: Mapping[str, Any],
        now: datetime,
    ) -> AuditRecord:
        """Append the record of `action` after the current head, in this unit's
        transaction: it commits with the action or not at all."""
        record = next_record(self.head(), principal, now, action, request)
        self.conn.execute(
            _INSERT,
            {
                "seq": record.seq,
                "at": record.at,
                "principal": record.principal,
                "action": record.action,
                "subject": record.subject,
                "request": record.request,
                "digest": record.digest,
                "prev_hash": record.prev_hash,
                "hash": record.hash,
            },
        )
        self._head = record
        return record

    def settlement_heads(self, cycle_ids: Collection[str]) -> dict[str, ChainHead]:
        """The chain head each cycle's settlement appended (absent: not settled,
        or settled before the trail existed)."""
        if not cycle_ids:
            return {}
        rows = self.conn.execute(
            select(log.c.subject, log.c.seq, log.c.hash).where(
                log.c.subject.in_(sorted(set(cycle_ids))),
                log.c.action == str(Action.SETTLE_CYCLE),
            )
        )
        return {r.subject: ChainHead(int(r.seq), r.hash) for r in rows}

    def records(self, *, page: int = 1000) -> Iterator[AuditRecord]:
        """Every record in seq order, a page at a time (keyset on seq)."""
        after = 0
        while True:
            rows = self.conn.execute(
                select(*_COLUMNS).where(log.c.seq > after).order_by(log.c.seq).limit(page)
            ).all()
            for row in rows:
                yield _record(row)
            if len(rows) < page:
                return
            after = int(rows[-1].seq)
