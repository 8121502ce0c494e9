"""The status stream a bank watches: every event of its feed, in feed order,
exactly once across reconnects (the item in flight at a disconnect may
repeat), resumable from a token.

One reader per process tails the feed (the unit of work's `events`) for
every bank that has a stream open: a single query of those banks' feed
heads per poll, then one read of what is new for each bank that moved,
kept in a bounded per-bank buffer that all of that bank's streams are
served from. A stream that falls behind the buffer (a resume from an old
token, or a slow client) reads its own pages from the database until it
catches up; it never waits on the others, and none ever stalls."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, TypeVar

from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.errors import (
    InvalidArgument,
    Reason,
    ResourceExhausted,
    Unavailable,
)
from remitnet.services.domain.events import FeedEvent
from remitnet.services.domain.lifecycle import Recall
from remitnet.services.domain.model import StoredTransfer, TransferStatus
from remitnet.services.service_layer.unit_of_work import Transactions, UnitOfWork

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Stands for "every item of the event": a cursor (seq, LAST) is after all of it.
LAST = 2**31 - 1
_TOKEN_PREFIX = "f1:"


@dataclass(frozen=True, slots=True)
class WatchConfig:
    # How often the reader looks at the feed heads of the banks it serves.
    poll_s: float = 0.1
    # Items one database read loads at most (whole events, at least one).
    page_items: int = 5_000
    # Items of recent events kept per bank for that bank's streams.
    buffer_items: int = 50_000
    # Open streams per bank in one process; more are RESOURCE_EXHAUSTED.
    max_streams_per_bank: int = 8
    # Events one stream message carries at the most.
    max_events_per_message: int = 1_000


class Cursor(NamedTuple):
    """A place in a bank's feed: after item `item` of event `seq`."""

    seq: int
    item: int


class Item(NamedTuple):
    """One message of the stream."""

    seq: int
    item: int  # its place among its event's items
    at: datetime
    status: TransferStatus
    transfer: StoredTransfer | None
    cycle: Cycle | None
    # A recall event: the recall as it was then (its state the event's),
    # and `transfer` the recalled transfer.
    recall: Recall | None = None

    @property
    def token(self) -> str:
        raw = f"{_TOKEN_PREFIX}{self.seq}:{self.item}".encode()
        return base64.urlsafe_b64encode(raw).decode()


def decode_token(token: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
        if not raw.startswith(_TOKEN_PREFIX):
            raise ValueError(raw)
        seq, item = (int(p) for p in raw[len(_TOKEN_PREFIX) :].split(":"))
        if seq < 1 or not 0 <= item <= LAST:
            raise ValueError(raw)
    except (ValueError, binascii.Error, UnicodeError):
        raise InvalidArgument(
            Reason.INVALID_RESUME_TOKEN,
            "resume_token is not one this hub issued; start again with `since`",
            field="resume_token",
        ) from None
    return Cursor(seq, item)


def items_of(event: FeedEvent) -> Iterator[Item]:
    if event.cycle is not None:
        yield Item(event.seq, 0, event.at, event.status, None, event.cycle)
        return
    if event.recall is not None:
        t = event.transfers[0] if event.transfers else None
        yield Item(event.seq, 0, event.at, event.status, t, None, event.recall)
        return
    for n, t in enumerate(event.transfers):
        yield Item(event.seq, n, event.at, event.status, t, None)


def after(events: Iterable[FeedEvent], cursor: Cursor) -> list[Item]:
    return [
        i for e in events if e.seq >= cursor.seq for i in items_of(e) if (i.seq, i.item) > cursor
    ]


@dataclass(slots=True)
class _Tail:
    """What the reader holds for one bank: the events after `first - 1` up
    to `loaded`, contiguous."""

    loaded: int
    events: deque[FeedEvent] = field(default_factory=deque)
    items: int = 0
    streams: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def first(self) -> int:
        return self.events[0].seq if self.events else self.loaded + 1

    def serve(self, cursor: Cursor) -> list[Item] | None:
        """The buffered items after `cursor`, or None when some are older
        than the buffer (the stream must read them from the database)."""
        if cursor.seq >= self.loaded and (cursor.seq > self.loaded or cursor.item == LAST):
            return []
        if cursor.seq < self.first - (0 if cursor.item < LAST else 1):
            return None
        return after(self.events, cursor)

    def add(self, new: list[FeedEvent], limit: int) -> None:
        for e in new:
            self.events.append(e)
            self.items += e.size
            self.loaded = e.seq
        while len(self.events) > 1 and self.items > limit:
            self.items -= self.events.popleft().size
        self.changed.set()
        self.changed = asyncio.Event()


class FeedReader:
    def __init__(self, db: Transactions, config: WatchConfig | None = None) -> None:
        self.db = db
        self.config = config or WatchConfig()
        self._tails: dict[str, _Tail] = {}
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._closing = False

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="feed-reader")

    def close_streams(self) -> None:
        """End every stream with UNAVAILABLE (shutting down): clients resume
        from their last token on another replica, and the server's graceful
        stop does not wait on streams that never end."""
        self._closing = True
        for tail in self._tails.values():
            tail.changed.set()

    async def stop(self) -> None:
        self.close_streams()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def poke(self) -> None:
        """Look at the feed now: this process has just committed events."""
        self._wakeup.set()

    def streams(self, bank: str) -> int:
        tail = self._tails.get(bank)
        return 0 if tail is None else tail.streams

    async def _read(self, fn: Callable[[UnitOfWork], T]) -> T:
        return await asyncio.to_thread(self.db.read, fn)

    async def _heads(self, banks: list[str]) -> dict[str, int]:
        return await self._read(lambda uow: uow.events.current_heads(banks))

    async def _load(self, bank: str, from_seq: int) -> list[FeedEvent]:
        size = self.config.page_items
        return await self._read(lambda uow: uow.events.load(bank, from_seq, size))

    async def open(
        self, bank: str, *, resume_token: str = "", since: datetime | None = None
    ) -> AsyncGenerator[list[Item]]:
        """Check the request and the bank's bound, then return its stream:
        lists of items in feed order, each as many as are ready (at most
        max_events_per_message). Refusals are raised here, before any
        message is sent."""
        cursor = decode_token(resume_token) if resume_token else None
        if self._closing:
            raise Unavailable(
                Reason.SHUTTING_DOWN, "the hub is shutting down; retry on another replica"
            )
        tail = self._tails.get(bank)
        if tail is not None and tail.streams >= self.config.max_streams_per_bank:
            raise ResourceExhausted(
                Reason.TOO_MANY_STREAMS,
                f"bank {bank} has {tail.streams} status streams open on this hub replica "
                f"(at most {self.config.max_streams_per_bank}); close one or retry later",
                bank=bank,
                limit=str(self.config.max_streams_per_bank),
            )
        heads = await self._heads([bank])
        head = heads.get(bank, 0)
        if cursor is not None and cursor.seq > head:
            raise InvalidArgument(
                Reason.INVALID_RESUME_TOKEN,
                "resume_token is ahead of this bank's feed; it is not one this hub issued",
                field="resume_token",
            )
        if cursor is None:
            start = head
            if since is not None:
                start = await self._read(lambda uow: uow.events.seq_before(bank, since))
            cursor = Cursor(start, LAST)
        tail = self._tails.get(bank)
        if tail is None:
            tail = self._tails[bank] = _Tail(loaded=head)
        tail.streams += 1
        return self._stream(bank, tail, cursor)

    async def _stream(self, bank: str, tail: _Tail, cursor: Cursor) -> AsyncGenerator[list[Item]]:
        try:
            while True:
                if self._closing:
                    raise Unavailable(
                        Reason.SHUTTING_DOWN,
                        "the hub is shutting down; resume from the last token on another replica",
                    )
                waiting = tail.changed
                items = tail.serve(cursor)
                if items is None:
                    from_seq = cursor.seq if cursor.item < LAST else cursor.seq + 1
                    page = await self._load(bank, from_seq)
                    items = after(page, cursor)
                if not items:
                    await waiting.wait()
                    continue
                size = self.config.max_events_per_message
                for start in range(0, len(items), size):
                    chunk = items[start : start + size]
                    yield chunk
                    cursor = Cursor(chunk[-1].seq, chunk[-1].item)
        finally:
            tail.streams -= 1
            if tail.streams == 0 and self._tails.get(bank) is tail:
                del self._tails[bank]

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.config.poll_s)
            self._wakeup.clear()
            banks = list(self._tails)
            if not banks:
                continue
            try:
                heads = await self._heads(banks)
                for bank, head in heads.items():
                    tail = self._tails.get(bank)
                    while tail is not None and head > tail.loaded:
                        new = await self._load(bank, tail.loaded + 1)
                        if not new:
                            break
                        tail.add(new, self.config.buffer_items)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away: streams wait, the reader retries
                log.warning("feed reader could not read the feed", exc_info=True)
                await asyncio.sleep(self.config.poll_s)
