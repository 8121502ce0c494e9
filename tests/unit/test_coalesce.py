"""The group commit of small calls (`Coalescer`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from remitnet.services.service_layer.coalesce import Coalescer


class Recorder:
    """A `run` that records its groups and holds each until released."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.gate = asyncio.Event()
        self.fail: Exception | None = None

    async def run(self, calls: Sequence[int]) -> list[str]:
        self.groups.append(list(calls))
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [f"answer {c}" for c in calls]


async def test_calls_arriving_while_a_group_runs_form_the_next_group() -> None:
    r = Recorder()
    group = Coalescer(r.run, size=lambda c: 1, max_items=100)
    first = asyncio.create_task(group(1))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(group(c)) for c in (2, 3, 4)]
    await asyncio.sleep(0)
    r.gate.set()
    assert await first == "answer 1"
    assert [await w for w in waiting] == ["answer 2", "answer 3", "answer 4"]
    assert r.groups == [[1], [2, 3, 4]]


async def test_a_group_holds_at_most_its_items_unless_one_call_is_larger() -> None:
    r = Recorder()
    r.gate.set()
    group = Coalescer(r.run, size=lambda c: c, max_items=10)
    answers = await asyncio.gather(*(group(c) for c in (4, 5, 3, 12, 1)))
    assert answers == [f"answer {c}" for c in (4, 5, 3, 12, 1)]
    assert r.groups == [[4, 5], [3], [12], [1]]


async def test_every_call_of_a_failed_group_gets_its_error_and_the_next_group_runs() -> None:
    r = Recorder()
    group = Coalescer(r.run, size=lambda c: 1, max_items=100)
    r.fail = RuntimeError("the database is away")
    calls = [asyncio.create_task(group(c)) for c in (1, 2)]
    await asyncio.sleep(0)
    r.gate.set()
    for call in calls:
        with pytest.raises(RuntimeError, match="away"):
            await call
    r.fail = None
    assert await group(3) == "answer 3"


async def test_a_call_cancelled_before_its_group_runs_is_never_sent() -> None:
    r = Recorder()
    group = Coalescer(r.run, size=lambda c: 1, max_items=100)
    first = asyncio.create_task(group(1))
    await asyncio.sleep(0)
    gone = asyncio.create_task(group(2))
    kept = asyncio.create_task(group(3))
    await asyncio.sleep(0)
    gone.cancel()
    r.gate.set()
    assert (await first, await kept) == ("answer 1", "answer 3")
    assert r.groups == [[1], [3]]
