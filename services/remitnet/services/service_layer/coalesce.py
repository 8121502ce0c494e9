"""Group commit for small calls: the calls that arrive while one group's
transaction runs wait, and run together as the next group, in one
transaction. A creditor bank confirms a few dozen transfers per call; one
transaction each would make the commit, not the work, the cost."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

C = TypeVar("C")
R = TypeVar("R")


class Coalescer(Generic[C, R]):
    """Runs calls of type C through `run`, which takes a group of them and
    answers each, in order (one R per call). At most one group runs at a
    time; a group holds at most `max_items` (by `size`) unless one call
    alone is larger. If `run` raises, every call of the group gets the
    error: they shared its transaction, so none of them took effect."""

    def __init__(
        self,
        run: Callable[[Sequence[C]], Awaitable[Sequence[R]]],
        *,
        size: Callable[[C], int],
        max_items: int,
    ) -> None:
        if max_items <= 0:
            raise ValueError("a group must hold at least one item")
        self._run = run
        self._size = size
        self._max_items = max_items
        self._waiting: list[tuple[C, asyncio.Future[R]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def __call__(self, call: C) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((call, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await future

    def _next_group(self) -> list[tuple[C, asyncio.Future[R]]]:
        # Calls whose caller has gone away (cancelled) are dropped before
        # they run, as a call never sent.
        waiting = [(c, f) for c, f in self._waiting if not f.done()]
        group: list[tuple[C, asyncio.Future[R]]] = []
        items = 0
        for call, future in waiting:
            n = self._size(call)
            if group and items + n > self._max_items:
                break
            group.append((call, future))
            items += n
        self._waiting = waiting[len(group) :]
        return group

    async def _drain(self) -> None:
        while group := self._next_group():
            futures = [f for _, f in group]
            try:
                answers = await self._run([c for c, _ in group])
            except asyncio.CancelledError:  # the loop is closing
                for future in futures:
                    future.cancel()
                raise
            except Exception as exc:  # each caller gets its group's error
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for future, answer in zip(futures, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
