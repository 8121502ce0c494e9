"""The status stream a bank watches: at-least-once, in time order,
resumable. There is no change feed to subscribe to (LISTEN/NOTIFY is not
portable to CockroachDB), so the stream polls with a look-back window that
catches transactions committing after later-stamped ones, and drops repeats
it has already sent."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy import Connection

from remitnet.services.adapters.db import repository as repo
from remitnet.services.adapters.db.database import Database
from remitnet.services.domain.errors import InvalidArgument, Reason
from remitnet.services.domain.model import StoredTransfer, TransferStatus

LOOKBACK = timedelta(seconds=10)
POLL_S = 0.25
PAGE = 2_000

Row = tuple[datetime, TransferStatus, StoredTransfer | None, repo.CycleRow | None]


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime
    # The status the transfer (or every transfer of the bank in the cycle) moved to.
    status: TransferStatus
    transfer: StoredTransfer | None
    cycle: repo.CycleRow | None

    @property
    def key(self) -> tuple[str, int]:
        if self.transfer is not None:
            return (self.transfer.transfer_id, int(self.status))
        assert self.cycle is not None
        return (self.cycle.id, int(self.status))


def encode_token(at: datetime) -> str:
    return base64.urlsafe_b64encode(at.isoformat().encode()).decode()


def decode_token(token: str) -> datetime:
    try:
        return datetime.fromisoformat(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(
            Reason.INVALID_PAGE_TOKEN, "resume_token is not one we issued"
        ) from None


def _events(conn: Connection, *, bank: str, since: datetime) -> list[Row]:
    return repo.transfer_events(conn, bank, since, PAGE)


async def watch(
    db: Database, bank: str, *, resume_token: str = "", since: datetime | None = None
) -> AsyncIterator[Event]:
    start = since or datetime.now(UTC)
    floor = decode_token(resume_token) - LOOKBACK if resume_token else start
    cursor = floor
    sent: dict[tuple[str, int], datetime] = {}
    while True:
        scan_from = max(floor, cursor - LOOKBACK)
        rows = await asyncio.to_thread(db.read, partial(_events, bank=bank, since=scan_from))
        for at, status, transfer, cycle in rows:
            event = Event(at, status, transfer, cycle)
            if event.key in sent:
                continue
            sent[event.key] = at
            cursor = max(cursor, at)
            yield event
        horizon = cursor - LOOKBACK
        for key in [k for k, at in sent.items() if at < horizon]:
            del sent[key]
        if len(rows) < PAGE:
            await asyncio.sleep(POLL_S)
