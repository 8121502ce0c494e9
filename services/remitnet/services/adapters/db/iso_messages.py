"""The ISO 20022 message log: the answer to each message a bank sent, by
(bank, MsgId), so a duplicate is answered as the first time (schema.py
iso_messages). Natural keys only: portable to CockroachDB."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select

from remitnet.services.adapters.db.rows import utc
from remitnet.services.adapters.db.schema import iso_messages
from remitnet.services.domain.iso20022 import AnsweredMessage


class SqlMessageLog:
    """MessageLog over a Connection."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get(self, bank: str, msg_id: str) -> AnsweredMessage | None:
        row = self.conn.execute(
            select(iso_messages).where(iso_messages.c.bank == bank, iso_messages.c.msg_id == msg_id)
        ).first()
        if row is None:
            return None
        m = row._mapping
        return AnsweredMessage(
            m["bank"],
            m["msg_id"],
            m["kind"],
            m["digest"],
            bytes(m["answer"]),
            utc(m["received_at"]),
        )

    def add(self, message: AnsweredMessage, region: str) -> None:
        self.conn.execute(
            insert(iso_messages).values(
                bank=message.bank,
                msg_id=message.msg_id,
                kind=message.kind,
                digest=message.digest,
                answer=message.answer,
                received_at=message.received_at,
                home_region=region,
            )
        )
