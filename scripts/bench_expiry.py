"""Expiry benchmark (issue 14): how long the hub's expirer takes to expire
100,000 reservations whose deadline has passed.

Against PostgreSQL (the CI database, SERIALIZABLE, synchronous_commit on),
in a fresh database per run:
- seed: `transfers` RESERVED transfers of the aggregated_payment workload's
  banks, through the real clearing use case
  (`service_layer.clearing.commit_batch`, batches of 5,000 instructions with
  `confirm=True` and a short timeout: what SubmitTransfers with
  require_confirmation and confirmation_timeout commits). Checked: every one
  RESERVED, accounts.reserved the sum of their amounts.
- wait until the last deadline has passed, then time
  `service_layer.lifecycle.expire_due(db, None, limit)` called in a loop
  until it finds none due (the hub's expirer does exactly that, limit 5,000
  by default), once per limit. Every statement is timed (SQLAlchemy cursor
  events), so the report says where the time goes: each statement, COMMIT
  (from the last statement to the unit's return) and the rest (Python).
- checked afterwards: every transfer EXPIRED with reason AB05 and a
  resolved_at, no reservation left (every accounts.reserved 0, nothing
  netted), and RESOLVED EXPIRED events counting each transfer for both banks.

Run alone: `python scripts/bench_expiry.py [--transfers 100000] [--limits
1000,5000,20000]` (JSON + table in build/bench/expiry.{json,md}); `make
bench` runs it as its `expiry` section.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from bench import FUNDS, OUT, WORKLOADS, drop_database, fresh_database, uuid4s
from sqlalchemy import event

from remitnet.services.adapters.db import migrate
from remitnet.services.adapters.db.database import Database
from remitnet.services.domain.model import Instruction, make_instruction
from remitnet.services.service_layer import lifecycle, participants
from remitnet.services.service_layer.clearing import commit_batch

TARGET_S = 5.0  # issue 14: 100,000 reservations expired in under 5 s
DEFAULT_LIMIT = lifecycle.LifecycleConfig().expiry_batch
SEED_BATCH = 5_000  # the largest SubmitTransfers call
SEED_TIMEOUT_MS = 1_000  # the seeded reservations' confirmation_timeout
WORKLOAD = "aggregated_payment"


class StatementClock:
    """Wall time per statement kind of every unit run on `db`, and of what
    follows a unit's last statement (its COMMIT)."""

    def __init__(self, db: Database) -> None:
        self.by_statement: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.last_end = 0.0
        self._started = 0.0
        event.listen(db.engine, "before_cursor_execute", self._before)
        event.listen(db.engine, "after_cursor_execute", self._after)

    @staticmethod
    def label(statement: str) -> str:
        """A statement's kind: its verb and table ("SELECT transfers")."""
        words = statement.split()
        verb = words[0].upper() if words else "?"
        lowered = [w.lower().strip('"(),') for w in words]
        key = {"UPDATE": "update", "INSERT": "into", "COPY": "copy"}.get(verb, "from")
        i = lowered.index(key) if key in lowered else -1
        table = lowered[i + 1] if 0 <= i < len(lowered) - 1 else "?"
        return f"{verb} {table}"

    def _before(self, *_: Any) -> None:
        self._started = time.perf_counter()

    def _after(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.last_end = time.perf_counter()
        key = self.label(statement)
        self.by_statement[key] += self.last_end - self._started
        self.calls[key] += 1

    def reset(self) -> None:
        self.by_statement.clear()
        self.calls.clear()


def seed_banks(db: Database) -> list[str]:
    banks = WORKLOADS[WORKLOAD].banks
    for code, region in banks.items():
        participants.create_bank(db, code, code, region, ["USD"])
        participants.deposit(db, code, "USD", FUNDS, "")  # a fresh deposit id
    return list(banks)


def instructions(rng: random.Random, n: int) -> Iterator[list[Instruction]]:
    """n reservation requests of the workload, SEED_BATCH at a time."""
    workload = WORKLOADS[WORKLOAD]
    lo, hi = workload.amounts
    made = 0
    while made < n:
        size = min(SEED_BATCH, n - made)
        batch: list[Instruction] = []
        ids = iter(uuid4s(rng, size + size // 4 + 16))
        while len(batch) < size:
            debtor, creditor = workload.pick(rng)
            if debtor == creditor:
                continue
            batch.append(
                make_instruction(
                    transfer_id=next(ids),
                    debtor=debtor,
                    creditor=creditor,
                    currency="USD",
                    amount=rng.randint(lo, hi),
                    confirm=True,
                    timeout_ms=SEED_TIMEOUT_MS,
                    max_timeout_ms=30_000,
                )
            )
        made += size
        yield batch


def seed_reservations(db: Database, n: int, seed: int) -> dict[str, Any]:
    """n RESERVED transfers through the clearing use case; their amounts'
    sum and the seeding rate."""
    t0 = time.perf_counter()
    reserved = held = 0
    last = t0
    for batch in instructions(random.Random(seed), n):
        commit = commit_batch(db, batch)
        reserved += sum(1 for t in commit.result.new_transfers if t.deadline is not None)
        held += sum(t.amount for t in commit.result.new_transfers if t.deadline is not None)
        assert len(commit.result.new_transfers) == len(batch), "a seeded item was refused"
        if time.perf_counter() - last >= 1.0 or reserved == n:
            last = time.perf_counter()
            print(
                f"  expiry: seeded {reserved:,} reservations ({reserved / (last - t0):,.0f}/s)",
                flush=True,
            )
    assert reserved == n, (reserved, n)
    return {"seconds": time.perf_counter() - t0, "held": held}


def database_state(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        t = conn.execute(
            b"SELECT count(*), "
            b"count(*) FILTER (WHERE status = 5), "
            b"count(*) FILTER (WHERE status = 7 AND reason = 'AB05' AND resolved_at IS NOT NULL "
            b"AND cycle_id = '' AND creditor_cycle_id IS NULL), "
            b"coalesce(max(deadline) FILTER (WHERE status = 5), '-infinity') > now() "
            b"FROM transfers"
        ).fetchone()
        a = conn.execute(
            b"SELECT coalesce(sum(reserved), 0), count(*) FILTER (WHERE reserved <> 0), "
            b"count(*) FILTER (WHERE unsettled_net <> 0) FROM accounts"
        ).fetchone()
        e = conn.execute(
            b"SELECT coalesce(sum(item_count), 0) FROM events WHERE kind = 5 AND status = 7"
        ).fetchone()
    assert t is not None and a is not None and e is not None
    return {
        "transfers": int(t[0]),
        "reserved_rows": int(t[1]),
        "expired_rows": int(t[2]),
        "not_yet_due": int(bool(t[3])),
        "reserved_sum": int(a[0]),
        "accounts_reserved_nonzero": int(a[1]),
        "accounts_unsettled_nonzero": int(a[2]),
        "expired_event_items": int(e[0]),
    }


def wait_due(dsn: str) -> None:
    """Until every seeded deadline has passed by the database's clock."""
    while database_state(dsn)["not_yet_due"]:
        time.sleep(0.1)


@contextmanager
def bench_database() -> Iterator[tuple[Database, str]]:
    name, url = fresh_database()
    db = Database(url)
    try:
        migrate.upgrade(db)
        yield db, f"host=127.0.0.1 port=5432 user=postgres dbname={name}"
    finally:
        db.dispose()
        drop_database(name)


def sweep_all(db: Database, limit: int, n: int, clock: StatementClock) -> dict[str, Any]:
    """expire_due(db, now, limit) until none are due, timed."""
    sweeps: list[float] = []
    commits = 0.0
    expired = 0
    t0 = last = time.perf_counter()
    while True:
        s0 = time.perf_counter()
        done = lifecycle.expire_due(db, None, limit)
        s1 = time.perf_counter()
        sweeps.append(s1 - s0)
        commits += max(0.0, s1 - max(clock.last_end, s0))
        expired += done.transfers
        if s1 - last >= 1.0:
            last = s1
            print(f"  expiry: limit {limit:,}: {expired:,} of {n:,} expired", flush=True)
        if done.transfers == 0 and done.recalls == 0:
            break
    seconds = time.perf_counter() - t0
    statements = {
        k: round(v, 4) for k, v in sorted(clock.by_statement.items(), key=lambda kv: -kv[1])
    }
    in_statements = sum(clock.by_statement.values())
    ordered = sorted(sweeps)
    return {
        "limit": limit,
        "expired": expired,
        "seconds": seconds,
        "rows_per_s": expired / seconds if seconds else 0.0,
        "sweeps": len(sweeps),
        "sweep_p50_ms": ordered[len(ordered) // 2] * 1000,
        "sweep_max_ms": ordered[-1] * 1000,
        "where": {
            "statements_s": statements,
            "statement_calls": dict(clock.calls),
            "commit_s": round(commits, 4),
            "python_and_other_s": round(max(0.0, seconds - in_statements - commits), 4),
        },
    }


def one_limit(n: int, limit: int, seed: int) -> dict[str, Any]:
    with bench_database() as (db, dsn):
        seed_banks(db)
        seeded = seed_reservations(db, n, seed)
        before = database_state(dsn)
        assert before["reserved_rows"] == n, before
        assert before["reserved_sum"] == seeded["held"], (before, seeded)
        wait_due(dsn)
        clock = StatementClock(db)
        run = sweep_all(db, limit, n, clock)
        after = database_state(dsn)
        checks = {
            "all_expired": after["expired_rows"] == n and after["reserved_rows"] == 0,
            "reserved_back_to_zero": after["reserved_sum"] == 0
            and after["accounts_reserved_nonzero"] == 0,
            "nothing_netted": after["accounts_unsettled_nonzero"] == 0,
            "events_both_parties": after["expired_event_items"] == 2 * n,
        }
        assert run["expired"] == n, (run["expired"], n)
        assert all(checks.values()), (checks, after)
        run |= {"seed_seconds": seeded["seconds"], "checks": checks, "after": after}
        print(
            f"  expiry: limit {limit:>6,}: {n:,} expired in {run['seconds']:.3f} s "
            f"({run['rows_per_s']:,.0f} rows/s, {run['sweeps']} sweeps, "
            f"p50 {run['sweep_p50_ms']:.0f} ms per sweep); checks {checks}",
            flush=True,
        )
        return run


def measure(transfers: int = 100_000, limits: tuple[int, ...] = (DEFAULT_LIMIT,)) -> dict[str, Any]:
    """One fresh database and seed per limit; the best and the default."""
    runs = [one_limit(transfers, limit, seed=1000 + i) for i, limit in enumerate(limits)]
    best = min(runs, key=lambda r: float(r["seconds"]))
    default = next((r for r in runs if r["limit"] == DEFAULT_LIMIT), best)
    return {
        "database": "postgresql (SERIALIZABLE, synchronous_commit on)",
        "transfers": transfers,
        "seeded_through": "service_layer.clearing.commit_batch, batches of "
        f"{SEED_BATCH:,}, confirm=True, timeout {SEED_TIMEOUT_MS} ms",
        "target_s": TARGET_S,
        "default_limit": DEFAULT_LIMIT,
        "runs": runs,
        "best": {
            "limit": best["limit"],
            "seconds": best["seconds"],
            "rows_per_s": best["rows_per_s"],
        },
        "default": {
            "limit": default["limit"],
            "seconds": default["seconds"],
            "rows_per_s": default["rows_per_s"],
            "within_target": default["seconds"] < TARGET_S,
        },
    }


def table(section: dict[str, Any]) -> str:
    ex = section["expiry"]
    lines = [
        f"Expiry of {ex['transfers']:,} reservations past their deadline "
        f"(`lifecycle.expire_due` until none due; {ex['database']}; seeded through "
        f"{ex['seeded_through']}); target under {ex['target_s']:g} s:",
        "",
        "| limit per sweep | seconds | rows/s | sweeps | p50 ms/sweep | max ms/sweep | "
        "in statements s | commit s | python s | target |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in ex["runs"]:
        w = r["where"]
        mark = " (default)" if r["limit"] == ex["default_limit"] else ""
        lines.append(
            f"| {r['limit']:,}{mark} | {r['seconds']:.3f} | {r['rows_per_s']:,.0f} | "
            f"{r['sweeps']} | {r['sweep_p50_ms']:.0f} | {r['sweep_max_ms']:.0f} | "
            f"{sum(w['statements_s'].values()):.3f} | {w['commit_s']:.3f} | "
            f"{w['python_and_other_s']:.3f} | "
            f"{'met' if r['seconds'] < ex['target_s'] else 'MISSED'} |"
        )
    d = next(r for r in ex["runs"] if r["limit"] == ex["best"]["limit"])
    top = ", ".join(
        f"{k} {v:.3f} s ({d['where']['statement_calls'].get(k, 0)}x)"
        for k, v in list(d["where"]["statements_s"].items())[:6]
    )
    lines += [
        "",
        f"Best: limit {ex['best']['limit']:,}, {ex['best']['seconds']:.3f} s "
        f"({ex['best']['rows_per_s']:,.0f} rows/s); default limit {ex['default']['limit']:,}: "
        f"{ex['default']['seconds']:.3f} s. Statements of the best run: {top}. After each run "
        "every transfer was EXPIRED (AB05) and every accounts.reserved back to 0.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transfers", type=int, default=100_000)
    parser.add_argument("--limits", default=f"1000,{DEFAULT_LIMIT},20000")
    args = parser.parse_args()
    limits = tuple(int(x) for x in args.limits.split(","))
    section = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "expiry": measure(args.transfers, limits),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "expiry.json").write_text(json.dumps(section, indent=2))
    text = table(section)
    (OUT / "expiry.md").write_text(text + "\n")
    print("\n" + text + f"\n\nwrote {OUT / 'expiry.json'} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
