"""`make soak`: run the network at a steady rate for a long time and report
whether memory and latency stay flat (slopes of RSS and p99 over time).

The hub runs in its own process on PostgreSQL at SERIALIZABLE; the load is
paced batches through real gRPC; cycles close and settle every 30 s as they
would in production. Writes build/soak/latest.json and latest.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.bank import BankClient
from remitnet.clients.base import ClientConfig
from remitnet.clients.operator import OperatorClient
from remitnet.common.v1.money_pb2 import Money

OUT = bench.ROOT / "build" / "soak"
BATCH = 500


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def slope_per_minute(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope, per minute of x (seconds)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return (
        60.0 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    )


def default_rate() -> float:
    """Half the batch throughput the last benchmark measured, or a
    conservative figure if there is none."""
    latest = bench.OUT / "latest.json"
    if latest.exists():
        figures = json.loads(latest.read_text())["scenarios"]["aggregated_payment"]["batch"]
        return float(figures["transfers_per_s"]) / 2
    return 5_000.0


async def soak(seconds: float, rate: float, sample_s: float) -> dict[str, Any]:
    name, url = bench.fresh_database()
    OUT.mkdir(parents=True, exist_ok=True)
    hub = bench.start_hub(url, OUT / "hub.log")
    workload = bench.WORKLOADS["aggregated_payment"]
    rng = random.Random(5)
    samples: list[dict[str, float]] = []
    try:
        await bench.onboard(hub.target, workload.banks)
        config = ClientConfig(target=hub.target, deadline_s=60.0)
        clients = {code: BankClient(code, config) for code in workload.banks}
        latencies: list[float] = []
        done = 0
        interval = BATCH / rate

        async def one_batch() -> None:
            nonlocal done
            debtor, _ = workload.pick(rng)
            items: list[cpb.TransferInstruction] = []
            while len(items) < BATCH:
                _, creditor = workload.pick(rng)
                if creditor != debtor:
                    items.append(
                        cpb.TransferInstruction(
                            transfer_id=str(uuid.uuid4()),
                            creditor_bank=creditor,
                            amount=Money(currency="USD", minor_units=rng.randint(100, 20_000)),
                        )
                    )
            t0 = time.perf_counter()
            response = await clients[debtor].submit_batch(items)
            latencies.append((time.perf_counter() - t0) * 1000)
            done += response.accepted_count

        async def settle_every(period: float, stop: asyncio.Event) -> None:
            async with OperatorClient(config) as op:
                while not stop.is_set():
                    await asyncio.sleep(period)
                    closed = (await op.close_cycle("USD")).closed
                    await op.settle_cycle(closed.cycle_id)

        stop = asyncio.Event()
        settler = asyncio.create_task(settle_every(30.0, stop))
        started = time.monotonic()
        next_send = started
        next_sample = started + sample_s
        window_start_done = 0
        pending: set[asyncio.Task[None]] = set()
        while time.monotonic() - started < seconds:
            now = time.monotonic()
            if now >= next_send:
                task = asyncio.create_task(one_batch())
                pending.add(task)
                task.add_done_callback(pending.discard)
                next_send += interval
            if now >= next_sample:
                window = sorted(latencies)
                latencies.clear()
                sample = {
                    "t": now - started,
                    "rss_mb": rss_mb(hub.proc.pid),
                    "p99_ms": window[min(len(window) - 1, int(0.99 * len(window)))]
                    if window
                    else 0.0,
                    "transfers_per_s": (done - window_start_done) / sample_s,
                    "in_flight": float(len(pending)),
                }
                window_start_done = done
                samples.append(sample)
                print(
                    f"  {sample['t']:6.0f} s  {sample['transfers_per_s']:8,.0f} transfers/s  "
                    f"p99 {sample['p99_ms']:7.1f} ms  hub RSS {sample['rss_mb']:6.1f} MB",
                    flush=True,
                )
                next_sample += sample_s
            await asyncio.sleep(max(0.0, min(next_send, next_sample) - time.monotonic()))
        stop.set()
        await asyncio.gather(*pending, return_exceptions=True)
        settler.cancel()
        for client in clients.values():
            await client.close()
    finally:
        hub.stop()
        bench.drop_database(name)
    # The first minute is warm-up (caches, pools, allocator arenas).
    steady = [s for s in samples if s["t"] >= min(60.0, seconds / 3)]
    ts = [s["t"] for s in steady]
    return {
        "seconds": seconds,
        "target_rate": rate,
        "achieved_rate": sum(s["transfers_per_s"] for s in samples) / len(samples)
        if samples
        else 0,
        "rss_slope_mb_per_min": slope_per_minute(ts, [s["rss_mb"] for s in steady]),
        "p99_slope_ms_per_min": slope_per_minute(ts, [s["p99_ms"] for s in steady]),
        "rss_mb_last": samples[-1]["rss_mb"] if samples else 0.0,
        "samples": samples,
    }


def plot(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    ts = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    axes[0].plot(ts, [s["rss_mb"] for s in samples])
    axes[0].set_ylabel("hub RSS (MB)")
    axes[0].set_title(f"RSS slope {result['rss_slope_mb_per_min']:+.2f} MB/min")
    axes[1].plot(ts, [s["p99_ms"] for s in samples], color="tab:red")
    axes[1].set_ylabel("batch p99 (ms)")
    axes[1].set_title(f"p99 slope {result['p99_slope_ms_per_min']:+.2f} ms/min")
    axes[2].plot(ts, [s["transfers_per_s"] for s in samples], color="tab:green")
    axes[2].set_ylabel("transfers/s")
    axes[2].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(OUT / "latest.png", dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="transfers/s (default: half of bench)"
    )
    parser.add_argument("--sample", type=float, default=5.0)
    args = parser.parse_args()
    rate = args.rate or default_rate()
    print(f"soak: {args.seconds:.0f} s at {rate:,.0f} transfers/s", flush=True)
    result = asyncio.run(soak(args.seconds, rate, args.sample))
    (OUT / "latest.json").write_text(json.dumps(result, indent=2))
    plot(result)
    print(
        f"\nsoak: achieved {result['achieved_rate']:,.0f}/s; RSS slope "
        f"{result['rss_slope_mb_per_min']:+.2f} MB/min (last {result['rss_mb_last']:.0f} MB); "
        f"p99 slope {result['p99_slope_ms_per_min']:+.2f} ms/min; plot {OUT / 'latest.png'}"
    )
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
