"""The netting engine's fair share, without a database: batches drained
round-robin across banks, a bank's queued items bounded, abandoned calls
dropped before their batch, large requests sliced and answered in order."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from remitnet.services.adapters import metrics
from remitnet.services.adapters.observe import MetricsObserver
from remitnet.services.domain.errors import (
    FailedPrecondition,
    Reason,
    ResourceExhausted,
    UnstorableValue,
)
from remitnet.services.domain.model import (
    Instruction,
    StoredTransfer,
    TransferStatus,
    make_instruction,
)
from remitnet.services.domain.netting import Accepted, Outcome, Rejected
from remitnet.services.service_layer.clearing import BatchCommit
from remitnet.services.service_layer.engine import EngineConfig, NettingEngine


def items(debtor: str, n: int) -> list[Instruction]:
    return [
        make_instruction(
            transfer_id=str(uuid.uuid4()),
            debtor=debtor,
            creditor="OTHER01",
            currency="USD",
            amount=1,
            remittance_info="",
            quote_id="",
            gross=False,
        )
        for _ in range(n)
    ]


class Recording(NettingEngine):
    """Commits nothing: records each batch's debtors and answers every item
    with a rejection naming its transfer id. `gate` holds the commit thread.
    Wired to the metrics observer, as the server wires the engine."""

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(cast(Any, None), config, observer=MetricsObserver())
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def _commit(
        self, batch: Sequence[Instruction], prepared: object = None, on_decided: object = None
    ) -> tuple[list[Outcome], list[BatchCommit]]:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append([i.debtor for i in batch])
        return [Rejected(UnstorableValue("X", i.transfer_id)) for i in batch], []


def ids(outcomes: list[Outcome]) -> list[str]:
    return [cast(Rejected, o).error.message for o in outcomes]


async def test_batches_take_turns_across_banks_and_slice_large_requests() -> None:
    engine = Recording(EngineConfig(bank_quantum=100, max_batch=8000))
    await engine.start()
    engine.gate.clear()
    first = asyncio.create_task(engine.submit(items("WARMUP01", 1)))
    await asyncio.to_thread(engine.entered.wait, 5)  # the commit thread is now busy
    flood = items("FLOOD01", 1000)
    flooding = asyncio.create_task(engine.submit(flood))
    await asyncio.sleep(0)
    victim = items("VICTIM01", 3)
    victimised = asyncio.create_task(engine.submit(victim))
    await asyncio.sleep(0)
    engine.gate.set()
    assert ids(await victimised) == [i.transfer_id for i in victim]
    # The victim's items went into the first batch after the one in flight,
    # next to at most one quantum of the flood.
    second = engine.batches[1]
    assert second.count("VICTIM01") == 3 and second.count("FLOOD01") <= 100
    # The flood is answered whole, in order, though it was cut into slices.
    assert ids(await flooding) == [i.transfer_id for i in flood]
    assert sum(b.count("FLOOD01") for b in engine.batches) == 1000
    await first
    await engine.stop()


async def test_a_bank_alone_fills_the_batch() -> None:
    engine = Recording(EngineConfig(bank_quantum=100, max_batch=8000, fair_window_s=0.0))
    await engine.start()
    outcomes = await engine.submit(items("FLOOD01", 5000))
    assert len(outcomes) == 5000 and [len(b) for b in engine.batches] == [5000]
    await engine.stop()


async def test_a_banks_queue_is_bounded_and_others_still_get_in() -> None:
    engine = Recording(EngineConfig(max_queued_per_bank=100))
    await engine.start()
    engine.gate.clear()
    busy = asyncio.create_task(engine.submit(items("WARMUP01", 1)))
    await asyncio.to_thread(engine.entered.wait, 5)
    queued = asyncio.create_task(engine.submit(items("FLOOD01", 80)))
    await asyncio.sleep(0)
    assert engine.queued("FLOOD01") == 80
    before = metrics.BANK_REFUSALS.labels("FLOOD01", Reason.BANK_QUEUE_FULL)._value.get()
    with pytest.raises(ResourceExhausted) as refused:
        await engine.submit(items("FLOOD01", 30))
    assert refused.value.reason == Reason.BANK_QUEUE_FULL
    assert refused.value.retry_after_s is not None and refused.value.retry_after_s > 0
    after = metrics.BANK_REFUSALS.labels("FLOOD01", Reason.BANK_QUEUE_FULL)._value.get()
    assert after == before + 1
    other = asyncio.create_task(engine.submit(items("OTHER02", 100)))
    await asyncio.sleep(0)
    engine.gate.set()
    assert len(await other) == 100 and len(await queued) == 80
    await busy
    # One request is always admitted, however large.
    assert len(await engine.submit(items("FLOOD01", 150))) == 150
    await engine.stop()


async def test_abandoned_calls_are_dropped_before_their_batch() -> None:
    engine = Recording(EngineConfig())
    await engine.start()
    engine.gate.clear()
    busy = asyncio.create_task(engine.submit(items("WARMUP01", 1)))
    await asyncio.to_thread(engine.entered.wait, 5)
    abandoned = asyncio.create_task(engine.submit(items("GONE01", 50)))
    kept = asyncio.create_task(engine.submit(items("KEPT01", 2)))
    await asyncio.sleep(0)
    dropped = metrics.NETTING_DROPPED._value.get()
    abandoned.cancel()  # what gRPC does when the client cancels or its deadline passes
    await asyncio.sleep(0)
    engine.gate.set()
    assert len(await kept) == 2
    await busy
    assert not any("GONE01" in b for b in engine.batches)
    assert metrics.NETTING_DROPPED._value.get() == dropped + 50
    assert engine.queued("GONE01") == 0
    await engine.stop()


async def test_heavy_banks_alone_share_full_batches() -> None:
    """Only heavy banks active (the batch path): no slicing to the quantum,
    each gets a fair share of the limit and the batch fills."""
    engine = Recording(EngineConfig(bank_quantum=100, max_batch=8000))
    await engine.start()
    engine.gate.clear()
    busy = asyncio.create_task(engine.submit(items("HEAVY00", 1000)))
    await asyncio.to_thread(engine.entered.wait, 5)
    heavy = [asyncio.create_task(engine.submit(items(f"HEAVY{k:02d}", 1000))) for k in range(1, 5)]
    await asyncio.sleep(0)
    engine.gate.set()
    for task in heavy:
        assert len(await task) == 1000
    await busy
    assert [len(b) for b in engine.batches] == [1000, 4000]
    await engine.stop()


NOW = datetime(2026, 1, 1, tzinfo=UTC)


class FirstRefused(Recording):
    """Refuses an id the first time a batch holds it, accepts it after (as
    when a later credit provides the liquidity), and accepts the rest."""

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self.seen: set[str] = set()

    def _commit(
        self, batch: Sequence[Instruction], prepared: object = None, on_decided: object = None
    ) -> tuple[list[Outcome], list[BatchCommit]]:
        self.entered.set()
        self.gate.wait(10)
        self.batches.append([i.debtor for i in batch])
        out: list[Outcome] = []
        for i in batch:
            if i.transfer_id in self.seen or i.debtor != "FLOOD01":
                stored = StoredTransfer(
                    i.transfer_id, i.debtor, i.creditor, i.currency, i.amount, "",
                    TransferStatus.ACCEPTED, "USD-000001", NOW,
                )  # fmt: skip
                out.append(Accepted(stored, False))
            else:
                self.seen.add(i.transfer_id)
                out.append(Rejected(FailedPrecondition(Reason.INSUFFICIENT_LIQUIDITY, "short")))
        return out, []


async def test_one_id_in_two_slices_of_a_request_gets_one_answer() -> None:
    """A request cut into slices commits them apart: an id the bank repeated
    at its end is refused in the first slice and accepted in the last; the
    request is answered with the acceptance for both."""
    engine = FirstRefused(EngineConfig(bank_quantum=100, max_batch=8000))
    await engine.start()
    engine.gate.clear()
    first = asyncio.create_task(engine.submit(items("WARMUP01", 1)))
    await asyncio.to_thread(engine.entered.wait, 5)
    flood = items("FLOOD01", 250)
    flood.append(flood[0])
    flooding = asyncio.create_task(engine.submit(flood))
    await asyncio.sleep(0)
    victim = asyncio.create_task(engine.submit(items("VICTIM01", 3)))
    await asyncio.sleep(0)
    engine.gate.set()
    await victim
    outcomes = await flooding
    assert len(engine.batches) > 2  # it was sliced
    head, tail = outcomes[0], outcomes[-1]
    assert isinstance(head, Accepted) and head.replayed
    assert isinstance(tail, Accepted) and not tail.replayed
    assert sum(isinstance(o, Rejected) for o in outcomes) == 249  # the others stay refused
    await first
    await engine.stop()
