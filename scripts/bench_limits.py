"""The limits the hub's two submission paths are measured against, on the
same machine and in the same run (`make bench` calls `measure`; alone:
`python scripts/bench_limits.py [--sizes 1000,4000] [--seconds 5]`).

- **database**: a raw PostgreSQL loop doing what a batch must do, with no
  hub in between: one SERIALIZABLE transaction per batch that COPYs N
  transfers into the hub's own `transfers` table (migrated schema, every
  index), updates each touched bank's account (one row per bank, one
  statement) and upserts its position, then commits with
  synchronous_commit on. One connection, one transaction at a time: every
  batch updates the creditors' rows, so batches serialise on them whatever
  the number of writers. Batches are shaped like aggregated_payment's
  (requests of 1,000 items from one payer, creditors among 4 aggregators),
  or, for the many-banks benchmark (`bench_banks.py`), like its load:
  requests from one debtor each to creditors drawn uniformly among `banks`
  banks, so that a batch touches as many rows as the hub's batch does there.
- **echo**: a bare `grpc.aio` server answering each unary call with its
  request's bytes, driven like the bench's unary path (client processes,
  calls in flight each) with a SubmitTransferRequest-sized message.

Writes build/bench/limits.{json,md} when run alone; prints progress.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psycopg

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
BANKS = 64  # aggregated_payment: 60 payers, 4 aggregators
REQUEST_ITEMS = 1000  # items per SubmitTransfers request of the bench
ECHO_METHOD = "/remitnet.bench.v1.Echo/Echo"

_COPY = (
    "COPY transfers (id, debtor_bank, creditor_bank, currency, amount, remittance_info, status, "
    "cycle_id, accepted_at, home_region) FROM STDIN"
)
_ACCOUNTS = (
    "UPDATE accounts SET unsettled_net = accounts.unsettled_net + v.delta "
    "FROM unnest(%s::varchar[], %s::bigint[]) AS v(id, delta) WHERE accounts.id = v.id"
)
_POSITIONS = (
    "INSERT INTO positions (cycle_id, bank_code, sent, received, sent_count, received_count, "
    "fee, home_region) SELECT c, b, s, r, sc, rc, 0, 'us-east1' FROM unnest(%s::varchar[], "
    "%s::varchar[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[]) "
    "AS v(c, b, s, r, sc, rc) ON CONFLICT (cycle_id, bank_code) DO UPDATE SET "
    "sent = positions.sent + excluded.sent, received = positions.received + excluded.received, "
    "sent_count = positions.sent_count + excluded.sent_count, "
    "received_count = positions.received_count + excluded.received_count"
)
CYCLE = "USD-20260101T000000-001"


def _say(text: str) -> None:
    print(text, flush=True)


# The database limit ---------------------------------------------------------


def _fresh_schema(banks: int = BANKS) -> tuple[str, str]:
    """A database with the hub's migrated schema (the same tables and
    indexes a batch writes) and one account per bank."""
    from remitnet.services.adapters.db import migrate
    from remitnet.services.adapters.db.database import Database

    name = f"remitnet_limits_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
        conn.execute(f"CREATE DATABASE {name}".encode())
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    db = Database(url)
    try:
        migrate.upgrade(db)
    finally:
        db.dispose()
    dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={name}"
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO accounts (id, owner, currency, kind, balance, net_debit_cap, "
            "unsettled_net, entry_count, opened_at, home_region) "
            "SELECT 'B' || i || ':USD', 'B' || i, 'USD', 'bank', 1000000000000000, 0, 0, 0, "
            "now(), 'us-east1' FROM generate_series(0, %s) AS i",
            (banks - 1,),
        )
    return name, dsn


@dataclass
class _Sums:
    """A batch's per-bank sums: what its one update per bank writes."""

    sent: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    sent_count: dict[str, int] = field(default_factory=dict)
    received_count: dict[str, int] = field(default_factory=dict)

    def add(self, debtor: str, creditor: str, amount: int) -> None:
        self.sent[debtor] = self.sent.get(debtor, 0) + amount
        self.sent_count[debtor] = self.sent_count.get(debtor, 0) + 1
        self.received[creditor] = self.received.get(creditor, 0) + amount
        self.received_count[creditor] = self.received_count.get(creditor, 0) + 1


def _batch(
    rng: random.Random, size: int, stamp: str, banks: int = BANKS, *, uniform: bool = False
) -> tuple[str, _Sums]:
    """COPY text of `size` transfers, and their per-bank sums: requests of
    REQUEST_ITEMS items from one debtor each. `uniform`: every debtor and
    creditor equally likely among `banks` (bench_banks' load); otherwise
    aggregated_payment's shape."""
    sums = _Sums()
    lines = []
    ids = os.urandom(16 * size).hex()
    creditors = [f"B{banks - 1 - k}" for k in range(4)]
    for i in range(size):
        if i % REQUEST_ITEMS == 0:
            debtor_i = rng.randrange(banks if uniform else banks - 4)
            debtor = f"B{debtor_i}"
        if uniform:
            creditor = f"B{(debtor_i + 1 + rng.randrange(banks - 1)) % banks}"
        else:
            creditor = creditors[i & 3]
        h = ids[32 * i : 32 * i + 32]
        amount = 100 + (i * 7919) % 9900
        sums.add(debtor, creditor, amount)
        lines.append(
            f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}\t{debtor}\t{creditor}\tUSD\t"
            f"{amount}\t\t1\t{CYCLE}\t{stamp}\tus-east1\n"
        )
    return "".join(lines), sums


def _db_loop(
    dsn: str, size: int, seconds: float, banks: int = BANKS, *, uniform: bool = False
) -> dict[str, float]:
    rng = random.Random(size)
    done = batches = touched_rows = 0
    latencies: list[float] = []
    with psycopg.connect(dsn) as conn:
        conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00")
            payload, sums = _batch(rng, size, stamp, banks, uniform=uniform)
            sent, received = sums.sent, sums.received
            touched = sorted(set(sent) | set(received))
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(_COPY) as copy:
                    copy.write(payload)
                cur.execute(
                    _ACCOUNTS,
                    (
                        [f"{b}:USD" for b in touched],
                        [received.get(b, 0) - sent.get(b, 0) for b in touched],
                    ),
                )
                cur.execute(
                    _POSITIONS,
                    (
                        [CYCLE] * len(touched),
                        touched,
                        [sent.get(b, 0) for b in touched],
                        [received.get(b, 0) for b in touched],
                        [sums.sent_count.get(b, 0) for b in touched],
                        [sums.received_count.get(b, 0) for b in touched],
                    ),
                )
            latencies.append(time.perf_counter() - t0)
            done += size
            batches += 1
            touched_rows += len(touched)
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "batch_size": size,
        "transfers_per_s": done / elapsed,
        "batches": batches,
        "banks": banks,
        "banks_per_batch": touched_rows / batches if batches else 0.0,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000,
    }


def database_limit(
    sizes: list[int], seconds: float, banks: int = BANKS, *, uniform: bool = False
) -> dict[str, dict[str, float]]:
    """Transfers/s of the raw loop at each batch size (keyed by size);
    `banks` and `uniform` as in `_batch`."""
    name, dsn = _fresh_schema(banks)
    out: dict[str, dict[str, float]] = {}
    shape = f"uniform creditors among {banks:,} banks" if uniform else f"{banks} banks"
    try:
        for size in sizes:
            _say(f"  limit: raw PostgreSQL loop, batches of {size:,}, {shape}, {seconds:.0f} s ...")
            figures = _db_loop(dsn, size, seconds, banks, uniform=uniform)
            out[str(size)] = figures
            _say(
                f"  limit: raw PostgreSQL loop, batches of {size:,}: "
                f"{figures['transfers_per_s']:>10,.0f} transfers/s  "
                f"p50 {figures['p50_ms']:.1f} ms  p99 {figures['p99_ms']:.1f} ms"
            )
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
    return out


def at_size(limits: dict[str, dict[str, float]], size: float) -> dict[str, float]:
    """The measured limit whose batch size is nearest `size`."""
    best = min(limits.values(), key=lambda f: abs(f["batch_size"] - size))
    return best


# The echo limit ---------------------------------------------------------------


def _echo_server(port: int, ready: Any) -> None:
    async def serve() -> None:
        async def echo(request: bytes, _context: Any) -> bytes:
            return request

        handler = grpc.method_handlers_generic_handler(
            "remitnet.bench.v1.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        await server.wait_for_termination()

    asyncio.run(serve())


def _echo_message() -> bytes:
    """A SubmitTransferRequest as the bench's unary path sends it."""
    from remitnet.clearing.v1 import clearing_pb2 as cpb
    from remitnet.common.v1.money_pb2 import Money

    item = cpb.TransferInstruction(
        transfer_id="0b8f6c1e-3f5a-4c2e-9d7b-2a1c5e6f7a8b",
        creditor_bank="AGG001",
        amount=Money(currency="USD", minor_units=123456),
        settlement_mode=cpb.SETTLEMENT_MODE_NETTED,
    )
    return cpb.SubmitTransferRequest(transfer=item).SerializeToString()


def _echo_client(target: str, in_flight: int, seconds: float, out: Any) -> None:
    async def run() -> tuple[int, list[float], float]:
        payload = _echo_message()
        latencies: list[float] = []
        async with grpc.aio.insecure_channel(target) as channel:
            call: Any = channel.unary_unary(ECHO_METHOD)
            await call(payload, timeout=10)  # connected before the clock starts
            deadline = time.monotonic() + seconds

            async def worker() -> None:
                while time.monotonic() < deadline:
                    t0 = time.perf_counter()
                    await call(payload, timeout=10)
                    latencies.append((time.perf_counter() - t0) * 1000)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(in_flight)))
            return len(latencies), latencies, time.perf_counter() - started

    calls, latencies, elapsed = asyncio.run(run())
    out.send((calls, latencies, elapsed))
    out.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def echo_limit(processes: int, in_flight: int, seconds: float) -> dict[str, float]:
    """Unary calls/s of a bare grpc.aio echo, `processes` clients with
    `in_flight` calls each (the bench's unary load)."""
    _say(f"  limit: grpc.aio echo, {processes} x {in_flight} calls in flight, {seconds:.0f} s ...")
    ctx = mp.get_context("spawn")
    port = _free_port()
    ready = ctx.Event()
    server = ctx.Process(target=_echo_server, args=(port, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise SystemExit("the echo server did not start")
        pipes, procs = [], []
        for _ in range(processes):
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_echo_client, args=(f"127.0.0.1:{port}", in_flight, seconds, child)
            )
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        results = [p.recv() for p in pipes]
        for proc in procs:
            proc.join()
    finally:
        server.terminate()
        server.join(10)
    latencies = sorted(x for _, lat, _ in results for x in lat)
    rate = sum(calls / elapsed for calls, _, elapsed in results)
    figures = {
        "calls_per_s": rate,
        "p50_ms": latencies[len(latencies) // 2] if latencies else 0.0,
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        if latencies
        else 0.0,
        "processes": processes,
        "in_flight": in_flight,
    }
    _say(
        f"  limit: grpc.aio echo: {rate:>10,.0f} calls/s  p50 {figures['p50_ms']:.1f} ms  "
        f"p99 {figures['p99_ms']:.1f} ms"
    )
    return figures


def measure(
    sizes: list[int],
    seconds: float,
    echo_processes: int = 2,
    echo_in_flight: int = 48,
    banks: int = BANKS,
    uniform: bool = False,
) -> dict[str, Any]:
    return {
        "database": database_limit(sizes, seconds, banks, uniform=uniform),
        "echo": echo_limit(echo_processes, echo_in_flight, seconds),
    }


def table(limits: dict[str, Any]) -> str:
    lines = [
        "| limit | batch size | per second | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for f in limits["database"].values():
        lines.append(
            f"| raw PostgreSQL loop (COPY + account and position per bank + commit) | "
            f"{f['batch_size']:,} | {f['transfers_per_s']:,.0f} transfers | {f['p50_ms']:.1f} | "
            f"{f['p99_ms']:.1f} |"
        )
    e = limits["echo"]
    lines.append(
        f"| bare grpc.aio echo ({e['processes']} x {e['in_flight']} in flight) | 1 | "
        f"{e['calls_per_s']:,.0f} calls | {e['p50_ms']:.1f} | {e['p99_ms']:.1f} |"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,2000,4000,8000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--echo-processes", type=int, default=2)
    parser.add_argument("--echo-in-flight", type=int, default=48)
    parser.add_argument("--banks", type=int, default=BANKS, help="banks in the raw loop")
    parser.add_argument(
        "--uniform", action="store_true", help="uniform creditors (bench_banks' load)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    limits = measure(
        sizes, args.seconds, args.echo_processes, args.echo_in_flight, args.banks, args.uniform
    )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "limits.json").write_text(json.dumps(limits, indent=2))
    text = table(limits)
    (OUT / "limits.md").write_text(text + "\n")
    print("\n" + text + f"\n\nwrote {OUT / 'limits'}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
