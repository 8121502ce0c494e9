"""Fair-share and bounded-read benchmarks (issue 18, items 1 and 6).

- noisy_neighbour: a victim bank sends unary transfers at a steady offered
  rate, first alone, then while a flooding bank sends maximum-size
  SubmitTransfers batches as fast as it can (several in flight, honouring
  RetryInfo when refused). Reported: `victim_p99_ratio` (victim p99 under the
  flood over its p99 alone; target <= 2.0) and `victim_throughput_ratio`
  (victim transfers/s under the flood over alone; target >= 0.9), with the
  flood's own throughput and refusals. Latency is taken from each call's
  scheduled send time, so a stalled hub cannot hide behind fewer sends.
- list_transfers: the first page of ListTransfers (over gRPC) as one bank's
  history grows (10k -> 100k -> 1M transfers COPY'd straight into the
  database, ANALYZEd), next to the former single query
  (`debtor = X OR creditor = X ORDER BY accepted_at DESC LIMIT 100`) run on
  the same data.

Run alone: `python scripts/bench.py --only noisy_neighbour` (or
`list_transfers`); the full `make bench` runs both as sections of its JSON.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing as mp
import os
import random
import statistics
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
from bench import (
    PRINCIPAL,
    LoadResult,
    Profile,
    drop_database,
    fresh_database,
    onboard,
    percentile,
    start_hub,
    uuid4s,
)
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hubs import HubProcess

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clearing.v1 import clearing_pb2_grpc as cgrpc
from remitnet.services.adapters.grpc.limits import MAX_BATCH_ITEMS

FLOODER = "FLOOD001"
VICTIM = "VICTIM01"
PAYEES = [f"PAYEE{i:03d}" for i in range(8)]
NOISY_BANKS = {FLOODER: "us-east1", VICTIM: "europe-west1"} | {p: "us-east1" for p in PAYEES}
FLOOD_IN_FLIGHT = 6  # maximum batches in flight: past the per-bank queue bound
VICTIM_RATE = 200.0  # victim transfers offered per second
VICTIM_MAX_IN_FLIGHT = 48  # below the hub's per-bank bound of concurrent calls
SETTLE_S = 1.0  # after the flood starts or ends, before a window opens


def _retry_delay(err: grpc.aio.AioRpcError) -> float:
    status = rpc_status.from_call(err)
    for detail in status.details if status is not None else ():
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return float(info.retry_delay.ToNanoseconds()) / 1e9
    return 0.05


async def _flood(stub: Any, seconds: float, seed: int) -> LoadResult:
    rng = random.Random(seed)
    metadata = ((PRINCIPAL, f"bank:{FLOODER}"),)
    result = LoadResult(started=time.time())
    deadline = time.monotonic() + seconds

    def batch() -> cpb.SubmitTransfersRequest:
        request = cpb.SubmitTransfersRequest()
        add = request.transfers.add
        for tid in uuid4s(rng, MAX_BATCH_ITEMS):
            item = add()
            item.transfer_id = tid
            item.creditor_bank = rng.choice(PAYEES)
            item.amount.currency = "USD"
            item.amount.minor_units = rng.randint(100, 20_000)
        return request

    async def worker() -> None:
        while time.monotonic() < deadline:
            request = batch()
            t0 = time.perf_counter()
            try:
                response = await stub.SubmitTransfers(request, metadata=metadata, timeout=120)
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                result.rejected += 1  # refused calls (BANK_QUEUE_FULL or concurrency)
                await asyncio.sleep(_retry_delay(err))
                continue
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            result.transfers += response.accepted_count

    await asyncio.gather(*(worker() for _ in range(FLOOD_IN_FLIGHT)))
    result.finished = time.time()
    return result


async def _victim(stub: Any, stop: Any, seed: int) -> list[tuple[float, float, bool]]:
    """Unary transfers at VICTIM_RATE until `stop` is set: per call, its
    scheduled wall time, its latency from that time, and whether it was
    accepted."""
    rng = random.Random(seed)
    metadata = ((PRINCIPAL, f"bank:{VICTIM}"),)
    samples: list[tuple[float, float, bool]] = []
    slots = asyncio.Semaphore(VICTIM_MAX_IN_FLIGHT)
    pending: set[asyncio.Task[None]] = set()
    wall0, mono0 = time.time(), time.perf_counter()

    async def one(scheduled: float) -> None:
        ok = False
        async with slots:
            item = cpb.TransferInstruction(
                transfer_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                creditor_bank=rng.choice(PAYEES),
            )
            item.amount.currency = "USD"
            item.amount.minor_units = rng.randint(100, 20_000)
            try:
                await stub.SubmitTransfer(
                    cpb.SubmitTransferRequest(transfer=item), metadata=metadata, timeout=30
                )
                ok = True
            except grpc.aio.AioRpcError:
                pass
        samples.append((wall0 + (scheduled - mono0), (time.perf_counter() - scheduled) * 1000, ok))

    interval = 1.0 / VICTIM_RATE
    n = 0
    while not stop.is_set():
        scheduled = mono0 + n * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
    await asyncio.gather(*pending)
    return samples


def _noisy_main(role: str, target: str, seconds: float, stop: Any, seed: int, out: Any) -> None:
    async def run() -> Any:
        options = [("grpc.max_send_message_length", 8 << 20)]
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            stub = cgrpc.ClearingServiceStub(channel)
            if role == "flood":
                stop.set()  # here: "started"
                return asdict(await _flood(stub, seconds, seed))
            return await _victim(stub, stop, seed)

    out.send(asyncio.run(run()))
    out.close()


_CTX = mp.get_context("spawn")


def _spawn(role: str, target: str, seconds: float = 0.0, stop: Any = None) -> tuple[Any, Any]:
    parent, child = _CTX.Pipe(duplex=False)
    seed = int.from_bytes(os.urandom(4), "big")
    proc = _CTX.Process(target=_noisy_main, args=(role, target, seconds, stop, seed, child))
    proc.start()
    return proc, parent


def _collect(proc: Any, pipe: Any) -> Any:
    result = pipe.recv()
    proc.join()
    return result


def _figures(load: LoadResult) -> dict[str, float]:
    elapsed = load.finished - load.started
    return {
        "transfers_per_s": load.transfers / elapsed if elapsed else 0.0,
        "p50_ms": percentile(load.latencies_ms, 0.50),
        "p99_ms": percentile(load.latencies_ms, 0.99),
        "transfers": load.transfers,
        "refused": load.rejected,
        "seconds": elapsed,
    }


def _batches(hub: HubProcess, since: dict[str, float] | None = None) -> dict[str, float]:
    """The hub's netting batches (count, mean size, mean seconds), in total
    or since an earlier reading."""
    m = hub.metrics()
    now = {
        "count": m.get("remitnet_netting_batch_size_count", 0.0),
        "items": m.get("remitnet_netting_batch_size_sum", 0.0),
        "seconds": m.get("remitnet_netting_batch_duration_seconds_sum", 0.0),
    }
    if since is None:
        return now
    n = now["count"] - since["count"]
    return {
        "count": n,
        "mean_size": (now["items"] - since["items"]) / n if n else 0.0,
        "mean_ms": 1000 * (now["seconds"] - since["seconds"]) / n if n else 0.0,
    }


def _window(
    samples: list[tuple[float, float, bool]], windows: list[tuple[float, float]]
) -> dict[str, float]:
    """The victim's figures over `windows` (wall-time intervals): latency of
    the calls scheduled in them; throughput as the calls scheduled in them
    and answered by the window's end, over their length."""
    latencies = []
    answered = 0
    for at, ms, ok in samples:
        for lo, hi in windows:
            if lo <= at < hi:
                latencies.append(ms)
                answered += ok and at + ms / 1000 <= hi
                break
    seconds = sum(hi - lo for lo, hi in windows)
    return {
        "transfers_per_s": answered / seconds if seconds else 0.0,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "calls": len(latencies),
        "seconds": seconds,
    }


def _pooled_batches(readings: list[dict[str, float]]) -> dict[str, float]:
    n = sum(r["count"] for r in readings)
    return {
        "count": n,
        "mean_size": sum(r["mean_size"] * r["count"] for r in readings) / n if n else 0.0,
        "mean_ms": sum(r["mean_ms"] * r["count"] for r in readings) / n if n else 0.0,
    }


def noisy_neighbour(profile: Profile, log: Path) -> dict[str, Any]:
    """The victim sends throughout; the flood comes and goes in alternating
    rounds, so drift in the shared machine's load falls on both sides alike.
    A window starts SETTLE_S after the flood started (or after its last call
    was answered) and ends when the next change begins."""
    seconds = profile.path_seconds / 2
    rounds = 2 if profile.name == "quick" else 3
    name, url = fresh_database()
    hub = start_hub(url, log)
    windows: dict[str, list[tuple[float, float]]] = {"alone": [], "flooded": []}
    batches: dict[str, list[dict[str, float]]] = {"alone": [], "flooded": []}
    floods: list[LoadResult] = []
    try:
        asyncio.run(onboard(hub.target, NOISY_BANKS))
        stop = _CTX.Event()
        victim = _spawn("victim", hub.target, stop=stop)
        time.sleep(2 * SETTLE_S)  # warm-up, not measured
        for r in range(rounds):
            t0 = time.time() + SETTLE_S
            time.sleep(SETTLE_S)
            before = _batches(hub)
            time.sleep(seconds)
            windows["alone"].append((t0, time.time()))
            batches["alone"].append(_batches(hub, before))
            started = _CTX.Event()
            flooder = _spawn("flood", hub.target, seconds + SETTLE_S, stop=started)
            started.wait(60)
            t0 = time.time() + SETTLE_S
            time.sleep(SETTLE_S)
            before = _batches(hub)
            time.sleep(seconds)
            windows["flooded"].append((t0, time.time()))
            batches["flooded"].append(_batches(hub, before))
            floods.append(LoadResult(**_collect(*flooder)))  # waits for its last answers
            print(f"  noisy_neighbour: round {r + 1} of {rounds} done", flush=True)
        time.sleep(SETTLE_S)
        stop.set()
        samples = _collect(*victim)
    finally:
        hub.stop()
        drop_database(name)
    alone: dict[str, Any] = _window(samples, windows["alone"])
    alone["batches"] = _pooled_batches(batches["alone"])
    flooded: dict[str, Any] = _window(samples, windows["flooded"]) | {
        "batches": _pooled_batches(batches["flooded"])
    }
    flood = _figures(
        LoadResult(
            transfers=sum(f.transfers for f in floods),
            rejected=sum(f.rejected for f in floods),
            latencies_ms=[x for f in floods for x in f.latencies_ms],
            started=0.0,
            finished=sum(f.finished - f.started for f in floods),
        )
    )
    p99_ratio = flooded["p99_ms"] / alone["p99_ms"] if alone["p99_ms"] else 0.0
    tps_ratio = (
        flooded["transfers_per_s"] / alone["transfers_per_s"] if alone["transfers_per_s"] else 0.0
    )
    out = {
        "victim_offered_per_s": VICTIM_RATE,
        "rounds": rounds,
        "seconds_per_phase": seconds,
        "flood_batch_items": MAX_BATCH_ITEMS,
        "flood_in_flight": FLOOD_IN_FLIGHT,
        "victim_alone": alone,
        "victim_flooded": flooded,
        "flood": flood,
        "victim_p99_ratio": p99_ratio,
        "victim_throughput_ratio": tps_ratio,
        # Per round, to tell a steady figure from one spike (the machine is shared).
        "victim_p99_ms_by_round": [
            {
                "alone": _window(samples, [a])["p99_ms"],
                "flooded": _window(samples, [f])["p99_ms"],
            }
            for a, f in zip(windows["alone"], windows["flooded"], strict=True)
        ],
        "targets": {"victim_p99_ratio": 2.0, "victim_throughput_ratio": 0.9},
    }
    print(
        f"  noisy_neighbour: victim p99 {alone['p99_ms']:.1f} ms alone, "
        f"{flooded['p99_ms']:.1f} ms under flood; flood {flood['transfers_per_s']:,.0f} "
        f"transfers/s, {flood['refused']:.0f} calls refused; victim_p99_ratio {p99_ratio:.2f} "
        f"(<= 2.0), victim_throughput_ratio {tps_ratio:.2f} (>= 0.9)",
        flush=True,
    )
    return out


# ListTransfers as history grows ----------------------------------------------

HISTORY_BANK = "HIST0001"
HISTORY_PEERS = ["HPEER001", "HPEER002"]
SEED_CYCLE = "USD-900000"
OLD_QUERY = (
    "SELECT id FROM transfers WHERE debtor_bank = %(b)s OR creditor_bank = %(b)s "
    "ORDER BY accepted_at DESC, id DESC LIMIT 100"
)


def _copy_history(url: str, first: int, count: int, start: datetime) -> None:
    """COPY `count` transfers of HISTORY_BANK (alternately sent and received)
    into a settled cycle, numbered from `first`, one a second in time."""
    buf = io.StringIO()
    rng = random.Random(first)
    for i in range(first, first + count):
        peer = HISTORY_PEERS[i % 2]
        debtor, creditor = (HISTORY_BANK, peer) if i % 3 else (peer, HISTORY_BANK)
        at = start + timedelta(seconds=i)
        buf.write(
            f"{uuid.UUID(int=rng.getrandbits(128), version=4)}\t{debtor}\t{creditor}\tUSD\t"
            f"{1 + i % 9_999}\t\t1\t{SEED_CYCLE}\t{at.isoformat()}\t"
            "\\N\t\\N\t\\N\t\\N\t\\N\t\\N\tus-east1\n"
        )
    columns = (
        "id, debtor_bank, creditor_bank, currency, amount, remittance_info, status, cycle_id, "
        "accepted_at, quote_id, creditor_currency, creditor_amount, creditor_cycle_id, fee, "
        "cancelled_at, home_region"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor().copy(f"COPY transfers ({columns}) FROM STDIN".encode()) as copy:
            copy.write(buf.getvalue())
        conn.execute(b"ANALYZE transfers")


def _old_query_ms(url: str, runs: int) -> float:
    times = []
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(runs):
            t0 = time.perf_counter()
            conn.execute(OLD_QUERY.encode(), {"b": HISTORY_BANK}).fetchall()
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _first_page_ms(target: str, runs: int) -> tuple[float, float]:
    metadata = ((PRINCIPAL, f"bank:{HISTORY_BANK}"),)
    times = []
    with grpc.insecure_channel(target) as channel:
        stub = cgrpc.ClearingServiceStub(channel)
        for _ in range(runs):
            t0 = time.perf_counter()
            page = stub.ListTransfers(
                cpb.ListTransfersRequest(page_size=100), metadata=metadata, timeout=60
            )
            times.append((time.perf_counter() - t0) * 1000)
            assert len(page.transfers) == 100
    return statistics.median(times), percentile(times, 0.99)


def list_transfers_growth(profile: Profile, log: Path) -> dict[str, Any]:
    sizes = profile.history_sizes
    name, url = fresh_database()
    hub = start_hub(url, log)
    steps: list[dict[str, float]] = []
    try:
        banks = dict.fromkeys([HISTORY_BANK, *HISTORY_PEERS], "us-east1")
        asyncio.run(onboard(hub.target, banks))
        start = datetime(2025, 1, 1, tzinfo=UTC)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                b"INSERT INTO cycles (id, currency, seq, state, opened_at, closed_at, settled_at, "
                b"transfer_count, gross_value, net_value) VALUES (%s, 'USD', 900000, 3, %s, %s, %s,"
                b" 0, 0, 0)",
                (SEED_CYCLE, start, start, start),
            )
        inserted = 0
        for size in sizes:
            t0 = time.perf_counter()
            for first in range(inserted, size, 200_000):
                _copy_history(url, first, min(200_000, size - first), start)
            load_s = time.perf_counter() - t0
            inserted = size
            p50, p99 = _first_page_ms(hub.target, 50)
            old = _old_query_ms(url, 10)
            steps.append(
                {
                    "history": size,
                    "first_page_p50_ms": p50,
                    "first_page_p99_ms": p99,
                    "single_or_query_ms": old,
                    "copy_seconds": load_s,
                }
            )
            print(
                f"  list_transfers: history {size:>9,}: first page p50 {p50:6.2f} ms "
                f"p99 {p99:6.2f} ms (gRPC); former OR query {old:8.2f} ms (SQL only)",
                flush=True,
            )
    finally:
        hub.stop()
        drop_database(name)
    low, high = steps[0], steps[-1]
    return {
        "bank": HISTORY_BANK,
        "steps": steps,
        "first_page_growth": high["first_page_p50_ms"] / low["first_page_p50_ms"],
        "single_or_query_growth": high["single_or_query_ms"] / low["single_or_query_ms"],
    }


def table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    nn = results.get("noisy_neighbour")
    if nn:
        a, f, fl = nn["victim_alone"], nn["victim_flooded"], nn["flood"]
        lines += [
            f"Noisy neighbour: a victim bank offers {nn['victim_offered_per_s']:.0f} unary "
            f"transfers/s, alone and while another bank floods {nn['flood_in_flight']} "
            f"SubmitTransfers of {nn['flood_batch_items']:,} items in flight "
            f"({nn['rounds']} alternating rounds of {nn['seconds_per_phase']:.0f} s, pooled).",
            "",
            "| | victim transfers/s | victim p50 ms | victim p99 ms | hub batches: mean items "
            "| mean ms |",
            "|---|---:|---:|---:|---:|---:|",
            *(
                f"| {label} | {x['transfers_per_s']:,.0f} | {x['p50_ms']:.1f} | "
                f"{x['p99_ms']:.1f} | {x['batches']['mean_size']:.0f} | "
                f"{x['batches']['mean_ms']:.1f} |"
                for label, x in (("alone", a), ("under flood", f))
            ),
            "",
            f"victim_p99_ratio {nn['victim_p99_ratio']:.2f} (target <= 2.0), "
            f"victim_throughput_ratio {nn['victim_throughput_ratio']:.2f} (target >= 0.9); "
            f"the flood cleared {fl['transfers_per_s']:,.0f} transfers/s "
            f"(batch p99 {fl['p99_ms']:.0f} ms), {fl['refused']:.0f} of its calls refused "
            "with RESOURCE_EXHAUSTED.",
        ]
    lt = results.get("list_transfers")
    if lt:
        if lines:
            lines.append("")
        lines += [
            "ListTransfers first page (100) of one bank as its history grows (COPY'd):",
            "",
            "| history | first page p50 ms | p99 ms | former OR query ms |",
            "|---:|---:|---:|---:|",
        ]
        for s in lt["steps"]:
            lines.append(
                f"| {s['history']:,} | {s['first_page_p50_ms']:.2f} | "
                f"{s['first_page_p99_ms']:.2f} | {s['single_or_query_ms']:.2f} |"
            )
        lines += [
            "",
            f"First page x{lt['first_page_growth']:.2f} from the smallest to the largest "
            f"history; the former single query x{lt['single_or_query_growth']:.1f}.",
        ]
    return "\n".join(lines)
