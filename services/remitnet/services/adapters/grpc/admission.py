"""Per-principal admission: a small bound on the unary calls one caller may
have in flight on this server. Past it a call is refused at once with
RESOURCE_EXHAUSTED, a reason and a retry delay, before it does any work: one
bank's burst of calls cannot take the server's capacity from the others.
The operator is not bounded (its calls are few and administrative)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from remitnet.services.adapters import metrics
from remitnet.services.domain.errors import Reason, ResourceExhausted

#: Unary calls one bank may have in flight per server process.
MAX_CONCURRENT_UNARY = 64
RETRY_AFTER_S = 0.05


class Admission:
    def __init__(self, max_concurrent: int | None = None) -> None:
        self.max_concurrent = MAX_CONCURRENT_UNARY if max_concurrent is None else max_concurrent
        self._in_flight: Counter[str] = Counter()

    def in_flight(self, who: str) -> int:
        return self._in_flight[who]

    @contextmanager
    def admit(self, who: str | None) -> Iterator[None]:
        """Hold one of `who`'s call slots for the duration (None: unbounded)."""
        if who is None:
            yield
            return
        if self._in_flight[who] >= self.max_concurrent:
            metrics.BANK_REFUSALS.labels(who, Reason.TOO_MANY_CONCURRENT_CALLS).inc()
            raise ResourceExhausted(
                Reason.TOO_MANY_CONCURRENT_CALLS,
                f"at most {self.max_concurrent} calls of one bank in flight on a server; "
                "wait for some to finish",
                retry_after_s=RETRY_AFTER_S,
                limit=str(self.max_concurrent),
            )
        self._in_flight[who] += 1
        try:
            yield
        finally:
            self._in_flight[who] -= 1
            if not self._in_flight[who]:
                del self._in_flight[who]
