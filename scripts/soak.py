"""`make soak`: run the network at a steady rate for a long time and report
whether memory and latency stay flat (slopes of RSS and p99 over time).

The hub runs in its own process on PostgreSQL at SERIALIZABLE. The run first
measures its own baseline: an unpaced burst of batches (several in flight)
for --baseline seconds against the same hub; then it paces batches through
real gRPC at half that throughput (or --rate), while cycles close and settle
every 30 s as they would in production. A batch that fails (the call raises,
or an item is refused: every bank is funded far beyond the load) is counted,
not swallowed; at the end the hub's audit (services/remitnet/services/service_layer/audit.py,
the one the tests use) recomputes every invariant from the rows. The exit
code is non-zero if any batch or settlement failed or the audit found a
violation. Writes build/soak/latest.json and latest.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.bank import BankClient
from remitnet.clients.base import ClientConfig
from remitnet.clients.operator import OperatorClient
from remitnet.common.v1.money_pb2 import Money
from remitnet.services.adapters.db.database import Database
from remitnet.services.service_layer.audit import audit

OUT = bench.ROOT / "build" / "soak"
BATCH = 500
BASELINE_IN_FLIGHT = 6  # batches in flight during the unpaced baseline burst


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


@dataclass
class Failures:
    batches: int = 0  # calls that raised, or returned refused items
    rejected_items: int = 0
    settlements: int = 0
    first: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        if len(self.first) < 10:
            self.first.append(what)


async def soak(seconds: float, rate: float, sample_s: float, baseline_s: float) -> dict[str, Any]:
    name, url = bench.fresh_database()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "hub.log").write_text("")
    hub = bench.start_hub(url, OUT / "hub.log")
    workload = bench.WORKLOADS["aggregated_payment"]
    rng = random.Random(5)
    samples: list[dict[str, float]] = []
    failures = Failures()
    baseline: dict[str, float] = {}
    violations: list[str] = []
    audited = 0
    try:
        await bench.onboard(hub.target, workload.banks)
        config = ClientConfig(target=hub.target, deadline_s=60.0)
        clients = {code: BankClient(code, config) for code in workload.banks}
        latencies: list[float] = []
        done = 0

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
            try:
                response = await clients[debtor].submit_batch(items)
            except Exception as exc:  # retries (same ids) exhausted, or worse
                failures.batches += 1
                failures.note(f"batch from {debtor}: {type(exc).__name__}: {exc}")
                return
            latencies.append((time.perf_counter() - t0) * 1000)
            done += response.accepted_count
            if response.rejected_count:
                failures.batches += 1
                failures.rejected_items += response.rejected_count
                reasons = sorted({r.error.reason for r in response.results if r.HasField("error")})
                failures.note(f"batch from {debtor}: {response.rejected_count} refused {reasons}")

        # Baseline: unpaced, several batches in flight, on this very hub.
        print(f"soak: measuring the baseline for {baseline_s:.0f} s (unpaced batches)", flush=True)
        burst_end = time.monotonic() + baseline_s

        async def burst() -> None:
            while time.monotonic() < burst_end:
                await one_batch()

        t0 = time.monotonic()
        await asyncio.gather(*(burst() for _ in range(BASELINE_IN_FLIGHT)))
        elapsed = time.monotonic() - t0
        baseline = {
            "seconds": round(elapsed, 1),
            "transfers": float(done),
            "transfers_per_s": done / elapsed if elapsed else 0.0,
            "failed_batches": float(failures.batches),
        }
        latencies.clear()
        done = 0
        if not rate:
            rate = baseline["transfers_per_s"] / 2
        if rate <= 0:
            raise RuntimeError("the baseline burst cleared nothing: no rate to soak at")
        print(
            f"soak: baseline {baseline['transfers_per_s']:,.0f} transfers/s; "
            f"{seconds:.0f} s at {rate:,.0f} transfers/s",
            flush=True,
        )
        interval = BATCH / rate

        async def settle_every(period: float, stop: asyncio.Event) -> None:
            async with OperatorClient(config) as op:
                while not stop.is_set():
                    await asyncio.sleep(period)
                    try:
                        closed = (await op.close_cycle("USD")).closed
                        await op.settle_cycle(closed.cycle_id)
                    except Exception as exc:
                        failures.settlements += 1
                        failures.note(f"close and settle: {type(exc).__name__}: {exc}")

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
                    "failed_batches": float(failures.batches),
                }
                window_start_done = done
                samples.append(sample)
                print(
                    f"  {sample['t']:6.0f} s  {sample['transfers_per_s']:8,.0f} transfers/s  "
                    f"p99 {sample['p99_ms']:7.1f} ms  hub RSS {sample['rss_mb']:6.1f} MB  "
                    f"failed batches {failures.batches}",
                    flush=True,
                )
                next_sample += sample_s
            await asyncio.sleep(max(0.0, min(next_send, next_sample) - time.monotonic()))
        stop.set()
        await asyncio.gather(*pending)  # one_batch counts its own failures
        settler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await settler
        for client in clients.values():
            await client.close()
    finally:
        hub.stop()
        # Quiescent: recompute every invariant from the rows.
        db = Database(url)
        try:
            report = audit(db)
            violations, audited = report.violations, report.transfers
        finally:
            db.dispose()
        if violations:
            print(f"soak: audit found violations; database {name} kept", flush=True)
        else:
            bench.drop_database(name)
    # The first minute is warm-up (caches, pools, allocator arenas).
    steady = [s for s in samples if s["t"] >= min(60.0, seconds / 3)]
    ts = [s["t"] for s in steady]
    return {
        "seconds": seconds,
        "baseline": baseline,
        "target_rate": rate,
        "achieved_rate": sum(s["transfers_per_s"] for s in samples) / len(samples)
        if samples
        else 0,
        "rss_slope_mb_per_min": slope_per_minute(ts, [s["rss_mb"] for s in steady]),
        "p99_slope_ms_per_min": slope_per_minute(ts, [s["p99_ms"] for s in steady]),
        "rss_mb_last": samples[-1]["rss_mb"] if samples else 0.0,
        "failed_batches": failures.batches,
        "rejected_items": failures.rejected_items,
        "failed_settlements": failures.settlements,
        "failures": failures.first,
        "audited_transfers": audited,
        "audit_violations": violations[:50],
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
        "--rate", type=float, default=0.0, help="transfers/s (default: half the baseline)"
    )
    parser.add_argument(
        "--baseline", type=float, default=12.0, help="seconds of the unpaced baseline burst"
    )
    parser.add_argument("--sample", type=float, default=5.0)
    args = parser.parse_args()
    result = asyncio.run(soak(args.seconds, args.rate, args.sample, args.baseline))
    (OUT / "latest.json").write_text(json.dumps(result, indent=2))
    plot(result)
    print(
        f"\nsoak: baseline {result['baseline'].get('transfers_per_s', 0):,.0f}/s, target "
        f"{result['target_rate']:,.0f}/s, achieved {result['achieved_rate']:,.0f}/s; RSS slope "
        f"{result['rss_slope_mb_per_min']:+.2f} MB/min (last {result['rss_mb_last']:.0f} MB); "
        f"p99 slope {result['p99_slope_ms_per_min']:+.2f} ms/min; plot {OUT / 'latest.png'}"
    )
    for failure in result["failures"]:
        print(f"  FAILED: {failure}")
    for violation in result["audit_violations"]:
        print(f"  VIOLATION: {violation}")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}))
    failed = result["failed_batches"] + result["failed_settlements"]
    return 1 if failed or result["audit_violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
