"""Many-banks benchmark (issue 17, "As the network grows"): what the hub
costs as the number of banks grows, in one run.

For each bank count (default 50, 500 and 5,000), on PostgreSQL (the CI
database, SERIALIZABLE, synchronous_commit on) in a fresh database with a
hub of its own, started as scripts/bench.py starts it:
- onboarding: every bank created and funded through gRPC (bench.onboard,
  OperatorClient.onboard_many: each bank's Deposit right after its own
  CreateBank, a sliding window of banks in flight), timed;
- ListBanks: every bank, page after page (OperatorClient.list_banks), timed;
- batch: SubmitTransfers of 1,000 items with uniform pairs (bench.big_cycle:
  every debtor and creditor equally likely), 3 client processes with 2
  calls in flight each (bench's batch path), transfers/s and the hub's CPU
  per transfer; the throughput is then compared with the first (smallest)
  count's in the same run;
- close->settled: CloseCycle then SettleCycle of the cycle the load filled
  (bench.close_and_settle, which also checks reconciliation and that the
  ledger sums to zero), timed. Checked too: every acknowledged transfer is
  stored, once.
`--settle-banks` adds counts measured for onboarding, ListBanks and
close->settled only (a shorter load, enough to give most banks a position):
the issue's 50,000-bank cycle.

Run alone: `python scripts/bench_banks.py [--banks 50,500,5000]
[--settle-banks 50000] [--seconds 15] [--quick]` (JSON + table in
build/bench/banks.{json,md}); `make bench` runs it as its `banks` section
(`scripts/bench.py --only banks` alone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from bench import (
    OUT,
    LoadResult,
    _client,
    big_cycle,
    close_and_settle,
    drop_database,
    fresh_database,
    onboard,
    retries,
    start_hub,
    stored_transfers,
)
from bench_limits import database_limit
from hubs import HubProcess

from remitnet.clients.base import ClientConfig
from remitnet.clients.operator import OperatorClient

BANKS = (50, 500, 5_000)
CLIENTS, IN_FLIGHT = 3, 2  # bench.py's batch path
BATCH = 1_000  # items per SubmitTransfers request (bench.big_cycle)
# Issue 17's targets.
RATIO_TARGET = 0.8  # at 5,000 banks, of the 50-bank throughput
SETTLE_TARGET_S = {5_000: 0.25, 50_000: 2.5}
ONBOARD_TARGET_S = {5_000: 20.0}
LIST_TARGET_S = {5_000: 0.2}


def _dsn(name: str) -> str:
    return f"host=127.0.0.1 port=5432 user=postgres dbname={name}"


def _inserted(name: str, table: str) -> int:
    """Rows inserted into `table` so far, from the statistics (cheap, and a
    second or so behind: for progress lines only)."""
    with psycopg.connect(_dsn(name)) as conn:
        row = conn.execute(
            b"SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables WHERE relname = %s",
            (table,),
        ).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def progress(line: Callable[[], str], every_s: float = 2.0) -> Iterator[None]:
    """Print `line()` every `every_s` seconds while the block runs."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every_s):
            with suppress(psycopg.Error):  # a progress line missed, no more
                print(line(), flush=True)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def cpu_seconds(hub: HubProcess) -> float:
    """User plus system CPU time of the hub's process so far."""
    fields = Path(f"/proc/{hub.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _client_main(target: str, banks: int, seed: int, seconds: float, out: Any) -> None:
    result = asyncio.run(_client("batch", target, big_cycle(banks), seed, seconds, IN_FLIGHT))
    out.send(asdict(result))
    out.close()


def batch_load(target: str, banks: int, seconds: float) -> LoadResult:
    """bench.py's batch path on the uniform workload of `banks` banks."""
    ctx = mp.get_context("spawn")
    salt = int.from_bytes(os.urandom(4), "big")  # fresh ids on every call
    pipes, procs = [], []
    for i in range(CLIENTS):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_client_main, args=(target, banks, salt + i, seconds, child))
        proc.start()
        procs.append(proc)
        pipes.append(parent)
    results = [LoadResult(**p.recv()) for p in pipes]
    for proc in procs:
        proc.join()
    return LoadResult.merge(results)


async def list_all(target: str) -> tuple[int, float]:
    """Every bank through ListBanks (pages of 1,000): how many, in how long."""
    async with OperatorClient(ClientConfig(target=target, deadline_s=60)) as op:
        await op.list_banks(page_size=1)  # the channel is up before the clock starts
        t0 = time.perf_counter()
        found = await op.list_banks()
        return len(found), time.perf_counter() - t0


def one_count(banks: int, seconds: float, log: Path, *, load: bool = True) -> dict[str, Any]:
    """Onboarding, ListBanks, (with `load`) the batch path, and close->settled
    of `banks` banks, in a fresh database with a hub of its own."""
    tag = f"  {banks:,} banks:"
    name, url = fresh_database()
    hub = start_hub(url, log)
    try:
        workload = big_cycle(banks)
        t0 = time.perf_counter()
        with progress(lambda: f"{tag} onboarded {_inserted(name, 'banks'):,} so far"):
            asyncio.run(onboard(hub.target, workload.banks))
        onboard_s = time.perf_counter() - t0
        print(f"{tag} onboarded and funded in {onboard_s:.2f} s", flush=True)
        listed, list_s = asyncio.run(list_all(hub.target))
        # The hub's own FX provider (FXHUB) is a participant too.
        assert listed >= banks, (listed, banks)
        print(f"{tag} ListBanks of {listed:,} in {list_s * 1000:.0f} ms", flush=True)
        out: dict[str, Any] = {
            "banks": banks,
            "onboard_s": onboard_s,
            "onboard_banks_per_s": banks / onboard_s,
            "listed": listed,
            "list_banks_s": list_s,
        }
        before_retries, before_cpu = retries(hub), cpu_seconds(hub)
        with progress(lambda: f"{tag} {_inserted(name, 'transfers'):,} transfers so far"):
            result = batch_load(hub.target, banks, seconds)
        elapsed = result.finished - result.started
        tps = result.transfers / elapsed if elapsed else 0.0
        cpu = cpu_seconds(hub) - before_cpu
        if load:
            out["batch"] = {
                "transfers_per_s": tps,
                "transfers": result.transfers,
                "rejected": result.rejected,
                "seconds": elapsed,
                "hub_cpu_us_per_transfer": cpu / result.transfers * 1e6 if result.transfers else 0,
                "retries": int(retries(hub) - before_retries),
            }
            print(
                f"{tag} batch {tps:,.0f} transfers/s ({result.transfers:,} in {elapsed:.1f} s, "
                f"hub {out['batch']['hub_cpu_us_per_transfer']:.0f} us CPU per transfer)",
                flush=True,
            )
        assert stored_transfers(name) == result.transfers, (stored_transfers(name), result)
        cycle = asyncio.run(close_and_settle(hub.target))
        assert int(cycle["transfers"]) == result.transfers, (cycle["transfers"], result)
        out["settle"] = {
            "seconds": cycle["seconds"],
            "banks": int(cycle["banks"]),
            "transfers": int(cycle["transfers"]),
        }
        out["peak_rss_mb"] = hub.peak_rss_mb()
        print(
            f"{tag} close->settled {cycle['seconds']:.3f} s ({int(cycle['banks']):,} banks "
            f"with a position, {int(cycle['transfers']):,} transfers)",
            flush=True,
        )
        return out
    finally:
        hub.stop()
        drop_database(name)


def measure(
    counts: tuple[int, ...] = BANKS,
    seconds: float = 15.0,
    settle_counts: tuple[int, ...] = (),
    log: Path | None = None,
) -> dict[str, Any]:
    log = log or OUT / "hub.log"
    runs = []
    for n in counts:
        # The physical limit at this count, before the hub starts: the raw
        # loop doing a batch's writes for batches shaped like this load (as
        # many banks touched per batch), so the decline with the number of
        # banks can be split into what the database's rows cost anyway and
        # what the hub adds.
        # The hub commits several requests a batch (about 4 here): the
        # better of the two sizes is the limit.
        sizes = database_limit([BATCH, 4 * BATCH], min(seconds, 5.0), n, uniform=True)
        limit = max(sizes.values(), key=lambda f: f["transfers_per_s"])
        run = one_count(n, seconds, log)
        run["batch"]["db_limit"] = limit
        run["batch"]["ratio_to_limit"] = run["batch"]["transfers_per_s"] / limit["transfers_per_s"]
        runs.append(run)
    base = runs[0]["batch"]["transfers_per_s"] if runs else 0.0
    base_limit = runs[0]["batch"]["db_limit"]["transfers_per_s"] if runs else 0.0
    for r in runs:
        batch = r["batch"]
        batch["ratio_to_smallest"] = batch["transfers_per_s"] / base if base else 0.0
        batch["db_limit_ratio_to_smallest"] = (
            batch["db_limit"]["transfers_per_s"] / base_limit if base_limit else 0.0
        )
    # Enough transfers to give most of the banks a position in the cycle.
    settle_only = [one_count(n, max(seconds, 10.0), log, load=False) for n in settle_counts]
    return {
        "database": "postgresql (SERIALIZABLE, synchronous_commit on)",
        "workload": "uniform pairs (bench.big_cycle), SubmitTransfers of 1,000 items, "
        f"{CLIENTS} clients x {IN_FLIGHT} in flight",
        "seconds": seconds,
        "runs": runs,
        "settle_only": settle_only,
        "targets": {
            "ratio_at_5000": RATIO_TARGET,
            "settle_s": SETTLE_TARGET_S,
            "onboard_s": ONBOARD_TARGET_S,
            "list_banks_s": LIST_TARGET_S,
        },
    }


def _verdict(value: float, target: float | None, *, at_least: bool = False) -> str:
    if target is None:
        return ""
    met = value >= target if at_least else value <= target
    return f" ({'met' if met else 'MISSED'}: {'≥' if at_least else '≤'} {target:g})"


def table(section: dict[str, Any]) -> str:
    b = section["banks"]
    lines = [
        f"Many banks ({b['workload']}, {b['seconds']:g} s of load each; {b['database']}):",
        "",
        "| banks | batch transfers/s | ratio to smallest | hub CPU us/transfer | "
        "DB limit transfers/s (its ratio to smallest) | batch / DB limit | "
        "close->settled s | banks settled | onboarding s | banks/s | ListBanks s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in [*b["runs"], *b["settle_only"]]:
        n, batch, settle = r["banks"], r.get("batch"), r["settle"]
        tps = ratio = cpu = limit = to_limit = "-"
        if batch:
            tps = f"{batch['transfers_per_s']:,.0f}"
            cpu = f"{batch['hub_cpu_us_per_transfer']:.0f}"
            if "db_limit" in batch:
                limit = (
                    f"{batch['db_limit']['transfers_per_s']:,.0f} "
                    f"({batch['db_limit_ratio_to_smallest']:.2f})"
                )
                to_limit = f"{batch['ratio_to_limit']:.2f}"
            at_5000 = RATIO_TARGET if n == 5_000 else None
            ratio = f"{batch['ratio_to_smallest']:.2f}" + _verdict(
                batch["ratio_to_smallest"], at_5000, at_least=True
            )
        settled = f"{settle['seconds']:.3f}" + _verdict(settle["seconds"], SETTLE_TARGET_S.get(n))
        onboarded = f"{r['onboard_s']:.1f}" + _verdict(r["onboard_s"], ONBOARD_TARGET_S.get(n))
        listed = f"{r['list_banks_s']:.3f}" + _verdict(r["list_banks_s"], LIST_TARGET_S.get(n))
        lines.append(
            f"| {n:,} | {tps} | {ratio} | {cpu} | {limit} | {to_limit} | {settled} | "
            f"{settle['banks']:,} | {onboarded} | {r['onboard_banks_per_s']:,.0f} | {listed} |"
        )
    lines += [
        "",
        "Onboarding: CreateBank and a Deposit per bank through gRPC (OperatorClient.onboard_many, "
        "a sliding window of banks in flight). "
        "ListBanks: every participant, pages of 1,000. close->settled: CloseCycle then "
        "SettleCycle; reconciliation matched and the ledger summed to zero after each. "
        "DB limit: scripts/bench_limits.py's raw PostgreSQL loop (COPY, one account update "
        "and one position upsert per touched bank, commit), requests of "
        f"{BATCH:,} items from one debtor to uniform creditors among that many banks, "
        f"batches of {BATCH:,} or {4 * BATCH:,} items (the faster), measured just before "
        "the hub's load.",
    ]
    return "\n".join(lines)


def _counts(text: str) -> tuple[int, ...]:
    return tuple(int(x.replace("_", "")) for x in text.split(",") if x.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--banks", default=",".join(str(n) for n in BANKS))
    parser.add_argument(
        "--settle-banks", default="", help="counts measured without the batch load, e.g. 50000"
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="batch load per count")
    parser.add_argument("--quick", action="store_true", help="5 s of load per count")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else args.seconds
    OUT.mkdir(parents=True, exist_ok=True)
    section = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "banks": measure(_counts(args.banks), seconds, _counts(args.settle_banks)),
    }
    (OUT / "banks.json").write_text(json.dumps(section, indent=2))
    text = table(section)
    (OUT / "banks.md").write_text(text + "\n")
    print("\n" + text + f"\n\nwrote {OUT / 'banks.json'} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
