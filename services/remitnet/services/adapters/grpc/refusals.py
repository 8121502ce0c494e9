"""Counting the refusals of single lifecycle calls.

A call that answers one item and refuses it by raising (RecallTransfer,
AnswerRecall, CancelTransfer, and ConfirmTransfer / ReturnTransfer) reports
that refusal to its servicer's observer as a `LifecycleRefused` of its
operation, once, whatever raised it: validation, the use case, or the
servicer itself re-raising an item's refusal. What a call answers without
raising is the servicer's to report (`ConfirmationsAnswered`, ...)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from remitnet.services.domain.errors import RemitnetError
from remitnet.services.service_layer.results import LifecycleRefused, Observer


class _Observed(Protocol):
    @property
    def observer(self) -> Observer: ...


S = TypeVar("S", bound=_Observed)
P = ParamSpec("P")
R = TypeVar("R")


def refusals_counted(
    operation: str,
) -> Callable[
    [Callable[Concatenate[S, P], Awaitable[R]]], Callable[Concatenate[S, P], Awaitable[R]]
]:
    """Decorate a servicer's method: a `RemitnetError` it raises is observed
    as one refusal of `operation`, with its reason, then raised on."""

    def decorate(
        method: Callable[Concatenate[S, P], Awaitable[R]],
    ) -> Callable[Concatenate[S, P], Awaitable[R]]:
        @functools.wraps(method)
        async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(self, *args, **kwargs)
            except RemitnetError as err:
                self.observer.observe(LifecycleRefused(operation, {err.reason: 1}))
                raise

        return wrapper

    return decorate
