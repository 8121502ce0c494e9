"""The netting engine: group commit of concurrent submissions.

Every SubmitTransfer and SubmitTransfers call hands its items to the engine
and waits. One batch is in flight at a time; whatever arrives meanwhile
forms the next batch, so light load gives batches of one (lowest latency)
and heavy load gives large batches (highest throughput) with no tuning. The
controller caps the batch size and backs off when serialization retries or
batch latency rise above their objective.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from remitnet.services.adapters import metrics
from remitnet.services.adapters.db import repository as repo
from remitnet.services.adapters.db.database import Database
from remitnet.services.domain.errors import Reason, RemitnetError, Unavailable, UnstorableValue
from remitnet.services.domain.model import Instruction
from remitnet.services.domain.netting import Outcome, Rejected
from remitnet.services.service_layer.clearing import BatchCommit, commit_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_batch: int = 8000
    min_batch: int = 64
    # Time to wait for more items when the queue is short of the limit.
    max_linger_s: float = 0.002
    # Batch transaction time above which the controller shrinks batches.
    latency_objective_s: float = 0.5


@dataclass(slots=True)
class BatchController:
    """Adapts the batch limit: multiplicative decrease on a retried batch or
    one over its latency objective, additive increase while batches fill up
    cleanly (AIMD, as TCP does for the same reason)."""

    config: EngineConfig
    limit: int = 0
    linger_s: float = 0.0
    history: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=4096))

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
        metrics.BATCH_LIMIT.set(self.limit)
        metrics.BATCH_LINGER.set(self.linger_s)


@dataclass(slots=True)
class _Request:
    items: Sequence[Instruction]
    future: asyncio.Future[list[Outcome]]


class NettingEngine:
    def __init__(self, db: Database, config: EngineConfig | None = None) -> None:
        self.db = db
        self.config = config or EngineConfig()
        self.controller = BatchController(self.config)
        self._queue: deque[_Request] = deque()
        self._queued_items = 0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        # One thread: batches commit one after another, which is what makes
        # the in-memory running headroom of a batch safe within a process.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netting")
        self._regions: dict[str, str] = {}

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="netting-engine")

    async def submit(self, items: Sequence[Instruction]) -> list[Outcome]:
        if self._closing:
            raise Unavailable("SHUTTING_DOWN", "the hub is shutting down; retry on another replica")
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(items, future))
        self._queued_items += len(items)
        metrics.QUEUE_ITEMS.set(self._queued_items)
        self._idle.clear()
        self._wakeup.set()
        return await future

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

    def _take(self) -> list[_Request]:
        limit = self.controller.limit
        taken: list[_Request] = []
        size = 0
        while self._queue and (not taken or size + len(self._queue[0].items) <= limit):
            request = self._queue.popleft()
            taken.append(request)
            size += len(request.items)
        self._queued_items -= size
        metrics.QUEUE_ITEMS.set(self._queued_items)
        return taken

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._idle.set()
                await self._wakeup.wait()
                self._wakeup.clear()
                continue
            linger = self.controller.linger_s
            if linger and self._queued_items < self.controller.limit:
                await asyncio.sleep(linger)
            requests = self._take()
            items = [i for r in requests for i in r.items]
            started = time.perf_counter()
            try:
                outcomes, commits = await loop.run_in_executor(self._executor, self._commit, items)
            except RemitnetError as exc:
                for r in requests:
                    if not r.future.done():
                        r.future.set_exception(exc)
                continue
            except Exception as exc:  # the database is down or broken
                log.exception("netting batch of %d failed", len(items))
                error = Unavailable(
                    "BATCH_FAILED", f"the batch could not commit: {type(exc).__name__}"
                )
                for r in requests:
                    if not r.future.done():
                        r.future.set_exception(error)
                continue
            seconds = time.perf_counter() - started
            offset = 0
            for r in requests:
                n = len(r.items)
                if not r.future.done():
                    r.future.set_result(outcomes[offset : offset + n])
                offset += n
            attempts = max((c.attempts for c in commits), default=1)
            self.controller.observe(len(items), seconds, attempts, self._queued_items)
            for commit in commits:
                await self._record(commit, seconds)
            isolated = len(items) - sum(len(c.result.outcomes) for c in commits)
            if isolated:
                metrics.TRANSFERS.labels("rejected", Reason.UNSTORABLE_VALUE).inc(isolated)

    def _commit(self, items: Sequence[Instruction]) -> tuple[list[Outcome], list[BatchCommit]]:
        """Commit a batch. When the database refuses a value in it, commit the
        halves instead, down to single items: only the items that carry the
        refused value are rejected, not the other banks' requests that were
        merged into the same batch. Items later in the batch still see the
        liquidity used by earlier ones, each half being its own transaction
        committed in order."""
        try:
            commit = commit_batch(self.db, items)
        except UnstorableValue as exc:
            if len(items) == 1:
                log.warning("isolated an unstorable transfer %s", items[0].transfer_id)
                return [Rejected(exc)], []
            middle = len(items) // 2
            left, left_commits = self._commit(items[:middle])
            right, right_commits = self._commit(items[middle:])
            return left + right, left_commits + right_commits
        return list(commit.result.outcomes), [commit]

    async def _record(self, commit: BatchCommit, seconds: float) -> None:
        result = commit.result
        metrics.BATCHES.inc()
        metrics.BATCH_SIZE.observe(len(result.outcomes))
        metrics.BATCH_SECONDS.observe(seconds)
        new = result.new_transfers
        outcomes: Counter[tuple[str, str]] = Counter()
        if len(result.outcomes) != len(new):  # some were rejected or replayed
            for o in result.outcomes:
                if isinstance(o, Rejected):
                    outcomes["rejected", o.error.reason] += 1
                    if o.error.reason.startswith("QUOTE_"):
                        expired = o.error.reason == Reason.QUOTE_EXPIRED
                        metrics.FX_QUOTES.labels(
                            "expired" if expired else "refused", o.error.reason
                        ).inc()
                elif o.replayed:
                    outcomes["replayed", ""] += 1
        outcomes["accepted", ""] = len(new)
        for (outcome, reason), n in outcomes.items():
            if n:
                metrics.TRANSFERS.labels(outcome, reason).inc(n)
        # Aggregate per (debtor, creditor, currency, credited currency) first:
        # a batch holds thousands of transfers between a few dozen pairs, and
        # a labelled metric update costs far more than a dict update.
        # creditor_currency is set exactly on cross-currency transfers.
        count: Counter[tuple[str, str, str, str | None]] = Counter()
        value: Counter[tuple[str, str, str, str | None]] = Counter()
        for t in new:
            key = (t.debtor, t.creditor, t.currency, t.creditor_currency)
            count[key] += 1
            value[key] += t.amount
        if any(d not in self._regions or c not in self._regions for d, c, _, _ in count):
            self._regions = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.db.read, repo.bank_regions
            )
        by_currency: Counter[str] = Counter()
        corridors: Counter[tuple[str, str, str]] = Counter()
        corridor_value: Counter[tuple[str, str, str]] = Counter()
        fx_volume: Counter[tuple[str, str]] = Counter()
        fx_used = 0
        for key, n in count.items():
            debtor, creditor, currency, credited = key
            amount = value[key]
            by_currency[currency] += amount
            corridor = (self._regions.get(debtor, ""), self._regions.get(creditor, ""), currency)
            corridors[corridor] += n
            corridor_value[corridor] += amount
            if credited is not None:
                fx_used += n
                fx_volume[currency, credited] += amount
        for currency, amount in by_currency.items():
            metrics.TRANSFER_VALUE.labels(currency).inc(amount)
        for corridor, n in corridors.items():
            metrics.CORRIDOR_TRANSFERS.labels(*corridor).inc(n)
            metrics.CORRIDOR_VALUE.labels(*corridor).inc(corridor_value[corridor])
        if fx_used:
            metrics.FX_QUOTES.labels("used", "").inc(fx_used)
        for (source, target), amount in fx_volume.items():
            metrics.FX_VOLUME.labels(source, target).inc(amount)
        for a in commit.accounts:
            metrics.BANK_UNSETTLED.labels(a.bank, a.currency).set(a.unsettled_net)
            metrics.BANK_HEADROOM.labels(a.bank, a.currency).set(a.headroom)
