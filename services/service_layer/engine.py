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
from remitnet.services.domain.errors import Reason, RemitnetError, Unavailable
from remitnet.services.domain.model import Instruction
from remitnet.services.domain.netting import Accepted, Outcome, Rejected
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
                commit = await loop.run_in_executor(self._executor, commit_batch, self.db, items)
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
            outcomes = commit.result.outcomes
            offset = 0
            for r in requests:
                n = len(r.items)
                if not r.future.done():
                    r.future.set_result(outcomes[offset : offset + n])
                offset += n
            self.controller.observe(len(items), seconds, commit.attempts, self._queued_items)
            await self._record(commit, seconds)

    async def _record(self, commit: BatchCommit, seconds: float) -> None:
        result = commit.result
        metrics.BATCHES.inc()
        metrics.BATCH_SIZE.observe(len(result.outcomes))
        metrics.BATCH_SECONDS.observe(seconds)
        outcomes: Counter[tuple[str, str]] = Counter()
        for o in result.outcomes:
            if isinstance(o, Rejected):
                outcomes["rejected", o.error.reason] += 1
                if o.error.reason.startswith("QUOTE_"):
                    expired = o.error.reason == Reason.QUOTE_EXPIRED
                    metrics.FX_QUOTES.labels(
                        "expired" if expired else "refused", o.error.reason
                    ).inc()
            elif isinstance(o, Accepted) and o.replayed:
                outcomes["replayed", ""] += 1
        outcomes["accepted", ""] = len(result.new_transfers)
        for (outcome, reason), n in outcomes.items():
            if n:
                metrics.TRANSFERS.labels(outcome, reason).inc(n)
        value: Counter[str] = Counter()
        corridors: Counter[tuple[str, str, str]] = Counter()
        corridor_value: Counter[tuple[str, str, str]] = Counter()
        if any(
            t.debtor not in self._regions or t.creditor not in self._regions
            for t in result.new_transfers
        ):
            self._regions = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.db.read, repo.bank_regions
            )
        for t in result.new_transfers:
            value[t.currency] += t.amount
            if t.quote_id is not None:
                metrics.FX_QUOTES.labels("used", "").inc()
                metrics.FX_VOLUME.labels(t.currency, t.credit_currency).inc(t.amount)
            key = (self._regions.get(t.debtor, ""), self._regions.get(t.creditor, ""), t.currency)
            corridors[key] += 1
            corridor_value[key] += t.amount
        for currency, amount in value.items():
            metrics.TRANSFER_VALUE.labels(currency).inc(amount)
        for key, n in corridors.items():
            metrics.CORRIDOR_TRANSFERS.labels(*key).inc(n)
            metrics.CORRIDOR_VALUE.labels(*key).inc(corridor_value[key])
        for a in commit.accounts:
            metrics.BANK_UNSETTLED.labels(a.bank, a.currency).set(a.unsettled_net)
            metrics.BANK_HEADROOM.labels(a.bank, a.currency).set(a.headroom)
