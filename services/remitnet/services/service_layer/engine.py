"""The netting engine: group commit of concurrent submissions.

Every SubmitTransfer and SubmitTransfers call hands its items to the engine
and waits. One batch commits at a time; whatever arrives meanwhile forms
the next batch, decided while the previous one commits. Light load gives
batches of one (lowest latency) and heavy load gives large batches (highest
throughput) with no tuning. The controller caps the batch size and backs
off when serialization retries or batch latency rise above their objective.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from remitnet.services.domain.errors import (
    Reason,
    RemitnetError,
    ResourceExhausted,
    Unavailable,
    UnstorableValue,
)
from remitnet.services.domain.model import Instruction
from remitnet.services.domain.netting import Outcome, Rejected, one_answer_per_id
from remitnet.services.service_layer.clearing import (
    NOTHING_CARRIED,
    BatchCommit,
    Carried,
    Prepared,
    commit_batch,
    prepare_batch,
)
from remitnet.services.service_layer.results import (
    NO_OBSERVER,
    BankRefused,
    BatchCommitted,
    BatchLimits,
    Observer,
    QueueDepth,
    RequestsDropped,
    TransfersRefused,
)
from remitnet.services.service_layer.unit_of_work import Transactions

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_batch: int = 8000
    min_batch: int = 64
    # Time to wait for more items when the queue is short of the limit.
    max_linger_s: float = 0.002
    # Batch transaction time above which the controller shrinks batches.
    latency_objective_s: float = 0.5
    # Fair share. Items one bank may have waiting (its extra requests are
    # refused with RESOURCE_EXHAUSTED and a retry delay); at least one
    # request is always admitted, whatever its size.
    max_queued_per_bank: int = 20_000
    # Fair share between heavy and light banks. While a light bank (whose
    # requests fit in `bank_quantum` items) is active, every bank adds at
    # most `bank_quantum` items to a batch: a large request is cut into
    # slices, so a light bank's transfers never wait behind thousands of
    # another bank's, only behind a short batch. With only heavy banks
    # active, each gets a fair share of the limit; alone, a bank fills it.
    bank_quantum: int = 64
    # A bank counts as active for this long after its last request.
    fair_window_s: float = 1.0
    # Items waiting from which the next batch is decided while one commits
    # (below it, the reads ahead cost more than the decision they overlap).
    pipeline_min_items: int = 1000
    # The deadline of a transfer reserved for the creditor's confirmation,
    # unless it asks for less (the operator's LifecycleConfig sets it).
    default_timeout_ms: int = 30_000


@dataclass(slots=True)
class BatchController:
    """Adapts the batch limit: multiplicative decrease on a retried batch or
    one over its latency objective, additive increase while batches fill up
    cleanly (AIMD, as TCP does for the same reason)."""

    config: EngineConfig
    limit: int = 0
    linger_s: float = 0.0
    history: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=4096))
    observer: Observer = NO_OBSERVER

    def __post_init__(self) -> None:
        self.limit = self.config.max_batch
        self._export()

    def observe(self, size: int, seconds: float, attempts: int, queued: int) -> None:
        self.history.append((time.time(), size, self.limit))
        if attempts > 1 or seconds > self.config.latency_objective_s:
            self.limit = max(self.config.min_batch, self.limit // 2)
        elif size >= self.limit or queued > self.limit:
            self.limit = min(self.config.max_batch, self.limit + max(64, self.limit // 4))
        # Linger only when the engine is busy: at light load it would add
        # latency and buy nothing.
        self.linger_s = self.config.max_linger_s if queued > 0 else 0.0
        self._export()

    def _export(self) -> None:
        self.observer.observe(BatchLimits(self.limit, self.linger_s))


@dataclass(slots=True)
class _Request:
    bank: str
    items: Sequence[Instruction]
    future: asyncio.Future[list[Outcome]]
    # Items handed to batches so far, and the outcomes of those committed:
    # a large request may be cut into slices committed one after another, in
    # order, so its later items still see the liquidity used by earlier ones.
    taken: int = 0
    outcomes: list[Outcome] = field(default_factory=list)


@dataclass(slots=True)
class _Slice:
    request: _Request
    start: int
    stop: int


class NettingEngine:
    """Group commit with per-bank fair share: each bank has its own queue,
    batches are drained round-robin across the banks waiting, a bank's queued
    items are bounded, and requests whose callers went away before any of
    their items was taken are dropped.

    What happens (batches committed, queue depth, refusals, drops, the
    controller's limits) goes to `observer` as result values; the engine
    keeps no metrics and reads nothing for them."""

    def __init__(
        self, db: Transactions, config: EngineConfig | None = None, observer: Observer = NO_OBSERVER
    ) -> None:
        self.db = db
        self.config = config or EngineConfig()
        self.observer = observer
        self.controller = BatchController(self.config, observer=observer)
        # Per-bank FIFO of requests; `_ring` holds each bank with work once,
        # in the order in which the banks get their next turn.
        self._queues: dict[str, deque[_Request]] = {}
        self._ring: deque[str] = deque()
        self._bank_items: Counter[str] = Counter()
        self._queued_items = 0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        # One thread: batches commit one after another, which is what makes
        # the in-memory running headroom of a batch safe within a process.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netting")
        # The next batch is decided on its own thread while one commits: the
        # commit mostly waits for PostgreSQL, with the GIL free.
        self._ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netting-ahead")
        self._ahead_ok = False  # the last batch published its decision
        # Seconds per committed item, smoothed: what a refused bank is told
        # to wait before retrying.
        self._item_seconds = 0.0001
        self._last_seen: dict[str, float] = {}
        self._last_size: dict[str, int] = {}

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="netting-engine")

    def queued(self, bank: str) -> int:
        """Items of `bank` waiting for a batch."""
        return self._bank_items[bank]

    def check_room(self, bank: str, n: int) -> None:
        """Refuse, with RESOURCE_EXHAUSTED and a retry delay, a request of
        `n` items that would take `bank` past its bound of queued items (a
        bank with nothing queued is always admitted). Callers may check
        before converting a large request, so a refusal costs nothing."""
        waiting = self._bank_items[bank]
        if waiting and waiting + n > self.config.max_queued_per_bank:
            self.observer.observe(BankRefused(bank, Reason.BANK_QUEUE_FULL))
            retry = min(5.0, max(0.05, waiting * self._item_seconds))
            raise ResourceExhausted(
                Reason.BANK_QUEUE_FULL,
                f"{waiting} transfers of this bank are already waiting for the netting engine "
                f"(at most {self.config.max_queued_per_bank}); retry in {retry:.2f} s",
                retry_after_s=retry,
                queued=str(waiting),
                limit=str(self.config.max_queued_per_bank),
            )

    async def submit(self, items: Sequence[Instruction], bank: str | None = None) -> list[Outcome]:
        """Queue one request of `bank` (by default the debtor of its first
        item) and wait for its outcomes, one per item, in order."""
        if self._closing:
            raise Unavailable("SHUTTING_DOWN", "the hub is shutting down; retry on another replica")
        if not items:
            return []
        owner = bank if bank is not None else items[0].debtor
        self.check_room(owner, len(items))
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        request = _Request(owner, items, future)
        self._last_seen[owner] = time.monotonic()
        self._last_size[owner] = len(items)
        queue = self._queues.get(owner)
        if queue is None:
            queue = self._queues[owner] = deque()
        if not queue:
            self._ring.append(owner)
        queue.append(request)
        self._bank_items[owner] += len(items)
        self._queued_items += len(items)
        self.observer.observe(QueueDepth(self._queued_items))
        self._idle.clear()
        self._wakeup.set()
        return await future

    async def run_serial(self, fn: Callable[[], T]) -> T:
        """Run `fn` (a use case's transaction) on the netting thread, between
        batches: the lifecycle's calls write the same account rows as the
        batches do, and in one process they then never conflict with them."""
        if self._closing:
            raise Unavailable("SHUTTING_DOWN", "the hub is shutting down; retry on another replica")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def stop(self) -> None:
        """Refuse new work, commit what is queued, then stop."""
        self._closing = True
        await self._idle.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=True)
        self._ahead.shutdown(wait=True)

    def _forget(self, request: _Request) -> None:
        """Uncount the items of `request` that no batch will take."""
        left = len(request.items) - request.taken
        request.taken = len(request.items)
        self._bank_items[request.bank] -= left
        self._queued_items -= left
        if not self._bank_items[request.bank]:
            del self._bank_items[request.bank]

    def _head(self, bank: str) -> _Request | None:
        """The bank's next request with items to take, after dropping those
        whose caller is gone (cancelled: the client abandoned the call) or
        that already failed."""
        queue = self._queues[bank]
        while queue:
            request = queue[0]
            if request.future.done():
                if request.future.cancelled():
                    self.observer.observe(RequestsDropped(len(request.items) - request.taken))
                queue.popleft()
                self._forget(request)
                continue
            if request.taken < len(request.items):
                return request
            queue.popleft()  # wholly taken: its outcomes come from batches in flight
        return None

    def _take(self, committing: bool = True) -> list[_Slice]:
        """The next batch: one turn per waiting bank, round-robin, starting
        where the previous batch stopped.

        A batch's duration is what every bank in it waits for, so its size
        depends on who is active (waiting, or submitted within
        `fair_window_s`). While a light bank is active (its last request
        fitted in `bank_quantum` items), a turn is at most `bank_quantum`
        items: a bank sending maximum batches cannot make the light bank's
        transfers wait behind thousands of its own. When every active bank is heavy, a turn is a
        fair share of the batch limit and batches fill (the batch path's
        throughput); a bank alone fills the limit."""
        limit = self.controller.limit
        large = self._queued_items >= 2 * self.config.pipeline_min_items
        if not committing and large and self._ahead_ok:
            # Nothing commits: half of what waits, so that the other half is
            # decided while this one commits, rather than waiting whole
            # (while batches publish their decisions: they can be followed).
            limit = min(limit, -(-self._queued_items // 2))
        now = time.monotonic()
        window = self.config.fair_window_s
        # Active: waiting now, or submitted lately (a light bank's next items
        # are on their way while this batch commits).
        active = {b for b, t in self._last_seen.items() if now - t < window}
        active.update(self._ring)
        quantum = self.config.bank_quantum
        light = any(self._last_size.get(b, 0) <= quantum for b in active)
        waiting = len(self._ring)
        shared = len(active) > 1 and light
        turn = quantum if shared else max(quantum, limit // max(1, waiting))
        taken: list[_Slice] = []
        size = 0
        for _ in range(waiting):
            if size >= limit:
                break
            bank = self._ring.popleft()
            share = min(turn, limit - size)
            while share > 0:
                request = self._head(bank)
                if request is None:
                    break
                n = min(share, len(request.items) - request.taken)
                taken.append(_Slice(request, request.taken, request.taken + n))
                request.taken += n
                self._bank_items[bank] -= n
                share -= n
                size += n
            if self._head(bank) is not None:
                self._ring.append(bank)
            else:
                del self._queues[bank]
                self._bank_items.pop(bank, None)
        self._queued_items -= size
        self.observer.observe(QueueDepth(self._queued_items))
        for bank in [b for b, t in self._last_seen.items() if now - t >= window]:
            if bank not in self._queues:
                del self._last_seen[bank]
                self._last_size.pop(bank, None)
        return taken

    async def _run(self) -> None:
        """Batches commit one at a time, in order; the next one is taken and
        decided while the previous one commits (`prepare_batch`), against
        what that one leaves, and its transaction writes that decision only
        if it reads what the decision assumed."""
        loop = asyncio.get_running_loop()
        flight: _InFlight | None = None
        while True:
            if flight is not None and not flight.task.done():
                ahead = flight.decided.done()
                if not ahead or self._queued_items < self.config.pipeline_min_items:
                    # The next batch is taken once this one is decided (what
                    # arrives meanwhile joins it), and only if it is large: a
                    # small one's reads ahead cost more than its decision.
                    wakeup = asyncio.ensure_future(self._wakeup.wait())
                    waits: list[asyncio.Future[Any]] = [flight.task, wakeup]
                    if not ahead:
                        waits.append(flight.decided)
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    wakeup.cancel()
                    self._wakeup.clear()
                    continue
            if flight is not None and flight.task.done():
                self._finish(flight)
                flight = None
            if not self._ring:
                if flight is None:
                    self._idle.set()
                    await self._wakeup.wait()
                    self._wakeup.clear()
                continue
            linger = self.controller.linger_s
            if linger and self._queued_items < self.controller.limit:
                await asyncio.sleep(linger)
            slices = self._take(committing=flight is not None)
            if not slices:
                continue
            prepared = None
            if flight is not None:
                prepared = await self._prepare(loop, slices, flight)
                await asyncio.wait((flight.task,))
                self._finish(flight)
                flight = None
                # The previous batch failed requests this one holds slices
                # of: their later items are not committed either.
                kept = [s for s in slices if not s.request.future.done()]
                if len(kept) != len(slices):
                    slices, prepared = kept, None
                if not slices:
                    continue
            flight = self._start(loop, slices, prepared)

    async def _prepare(
        self, loop: asyncio.AbstractEventLoop, slices: list[_Slice], flight: _InFlight
    ) -> Prepared | None:
        """Decide `slices` on the second thread while `flight` commits,
        against what its decision leaves (made by now, or it failed). None
        when it cannot be decided ahead: it is then decided in its
        transaction, as always."""
        failed = flight.task.done() and flight.task.exception() is not None
        before = flight.latest if flight.latest is not None and not failed else NOTHING_CARRIED
        items = _items(slices)
        try:
            return await loop.run_in_executor(
                self._ahead,
                partial(
                    prepare_batch,
                    self.db,
                    items,
                    before,
                    default_timeout_ms=self.config.default_timeout_ms,
                ),
            )
        except Exception:  # only an optimisation: the transaction decides
            log.debug("deciding a batch ahead failed", exc_info=True)
            return None

    def _start(
        self, loop: asyncio.AbstractEventLoop, slices: list[_Slice], prepared: Prepared | None
    ) -> _InFlight:
        decided: asyncio.Future[None] = loop.create_future()
        flight = _InFlight(slices, decided)

        def on_decided(after: Carried) -> None:
            # On the netting thread, once per attempt: the latest decision
            # is the one that commits.
            flight.latest = after
            loop.call_soon_threadsafe(_settle, decided)

        flight.task = loop.run_in_executor(
            self._executor, self._timed_commit, _items(slices), prepared, on_decided
        )
        return flight

    def _finish(self, flight: _InFlight) -> None:
        """Answer what a committed (or failed) batch decided."""
        slices = flight.slices
        self._ahead_ok = flight.decided.done()
        try:
            outcomes, commits, seconds = flight.task.result()
        except RemitnetError as exc:
            self._fail(slices, exc)
            return
        except Exception as exc:  # the database is down or broken
            log.exception("netting batch of %d failed", sum(s.stop - s.start for s in slices))
            error = Unavailable("BATCH_FAILED", f"the batch could not commit: {type(exc).__name__}")
            self._fail(slices, error)
            return
        size = len(outcomes)
        self._item_seconds = 0.8 * self._item_seconds + 0.2 * (seconds / size)
        offset = 0
        for s in slices:
            n = s.stop - s.start
            r = s.request
            if not r.future.done():
                r.outcomes += outcomes[offset : offset + n]
                if len(r.outcomes) == len(r.items):
                    # Slices of one request commit apart: one id, one answer.
                    one_answer_per_id(r.items, r.outcomes)
                    r.future.set_result(r.outcomes)
            offset += n
        attempts = max((c.attempts for c in commits), default=1)
        self.controller.observe(size, seconds, attempts, self._queued_items)
        for commit in commits:
            result = commit.result
            self.observer.observe(
                BatchCommitted(result.outcomes, result.new_transfers, commit.regions, seconds)
            )
        isolated = size - sum(len(c.result.outcomes) for c in commits)
        if isolated:
            self.observer.observe(TransfersRefused({Reason.UNSTORABLE_VALUE: isolated}))

    def _fail(self, slices: list[_Slice], error: RemitnetError) -> None:
        """A batch failed: so does every request with items in it (their
        remaining slices are dropped; a retry with the same ids replays what
        earlier slices committed)."""
        for s in slices:
            if not s.request.future.done():
                s.request.future.set_exception(error)

    def _timed_commit(
        self,
        items: Sequence[Instruction],
        prepared: Prepared | None,
        on_decided: Callable[[Carried], None],
    ) -> tuple[list[Outcome], list[BatchCommit], float]:
        started = time.perf_counter()
        outcomes, commits = self._commit(items, prepared, on_decided)
        return outcomes, commits, time.perf_counter() - started

    def _commit(
        self,
        items: Sequence[Instruction],
        prepared: Prepared | None = None,
        on_decided: Callable[[Carried], None] | None = None,
    ) -> tuple[list[Outcome], list[BatchCommit]]:
        """Commit a batch. When the database refuses a value in it, commit the
        halves instead, down to single items: only the items that carry the
        refused value are rejected, not the other banks' requests that were
        merged into the same batch. Items later in the batch still see the
        liquidity used by earlier ones, each half being its own transaction
        committed in order."""
        try:
            commit = commit_batch(
                self.db,
                items,
                default_timeout_ms=self.config.default_timeout_ms,
                prepared=prepared,
                on_decided=on_decided,
            )
        except UnstorableValue as exc:
            if len(items) == 1:
                log.warning("isolated an unstorable transfer %s", items[0].transfer_id)
                return [Rejected(exc)], []
            middle = len(items) // 2
            left, left_commits = self._commit(items[:middle], None, on_decided)
            right, right_commits = self._commit(items[middle:], None, on_decided)
            return left + right, left_commits + right_commits
        return list(commit.result.outcomes), [commit]


@dataclass(slots=True)
class _InFlight:
    """The batch committing, and what its decision leaves once made."""

    slices: list[_Slice]
    decided: asyncio.Future[None]
    latest: Carried | None = None
    task: asyncio.Future[tuple[list[Outcome], list[BatchCommit], float]] = field(init=False)


def _items(slices: list[_Slice]) -> list[Instruction]:
    return [i for s in slices for i in s.request.items[s.start : s.stop]]


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
