"""Crash injection for recovery tests and the chaos run.

REMITNET_CRASH_AT="<unit>:<point>[:<n>]" makes the process die with
os._exit(137), as SIGKILL would leave it, at the n-th (default first) time
the unit of work reaches the point: `before_commit` (the transaction is
written but not committed: it must vanish) or `after_commit` (committed but
not yet acknowledged: the client must recover it through its idempotency
key). Units are the names Database.write runs: clear_batch, close_cycle,
settle_cycle, gross_transfer, deposit, ...
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from sqlalchemy import Connection

from remitnet.services.adapters.db.database import Database

ENV = "REMITNET_CRASH_AT"
POINTS = ("before_commit", "after_commit")


@dataclass
class CrashPlan:
    unit: str
    point: str
    nth: int = 1
    seen: int = 0

    @classmethod
    def parse(cls, text: str) -> CrashPlan:
        parts = text.split(":")
        if len(parts) not in (2, 3) or parts[1] not in POINTS:
            raise ValueError(
                f"{ENV} must be <unit>:<before_commit|after_commit>[:<n>], got {text!r}"
            )
        return cls(parts[0], parts[1], int(parts[2]) if len(parts) == 3 else 1)

    def reached(self, unit: str, point: str) -> None:
        if unit == self.unit and point == self.point:
            self.seen += 1
            if self.seen == self.nth:
                print(f"crash injected at {unit}:{point}", file=sys.stderr, flush=True)
                os._exit(137)


def install_from_env(db: Database) -> CrashPlan | None:
    text = os.environ.get(ENV, "")
    if not text:
        return None
    plan = CrashPlan.parse(text)

    def before(_conn: Connection, unit: str, _attempt: int) -> None:
        plan.reached(unit, "before_commit")

    def after(unit: str) -> None:
        plan.reached(unit, "after_commit")

    db.fault_hook = before
    db.after_commit_hook = after
    return plan
