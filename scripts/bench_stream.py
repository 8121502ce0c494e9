"""Status-stream benchmark (issue 11): one creditor receiving the batch path's
whole flow while its WatchTransfers stream is open, idle streams, and resume.

- flood: every transfer of the `one_creditor` workload credits SINK0001 for
  `seconds`; one stream of SINK0001 must deliver every accepted transfer.
  Reported: transfers/s cleared, events/s delivered, and the delivery lag
  (receipt minus the event's time, the batch's time taken before its commit,
  so the figure is an upper bound on commit-to-receipt).
- idle: the hub's and PostgreSQL's CPU over a quiet interval with no stream,
  then with 50 idle streams of 50 banks (one reader polls their feed heads).
- resume: a stream cut after some events and reopened from its last token;
  reported: events delivered twice.

Run alone: `python scripts/bench_stream.py [--seconds 30]` (JSON + table); the
full `make bench` runs it as its `status_stream` section.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import psycopg
from bench import (
    OUT,
    PG_ADMIN,
    PRINCIPAL,
    drop_database,
    fresh_database,
    onboard,
    percentile,
    run_load,
    start_hub,
)
from hubs import HubProcess

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clearing.v1 import clearing_pb2_grpc as cgrpc

SINK = "SINK0001"
IDLE_BANKS = [f"IDLE{i:04d}" for i in range(50)]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    return total


def backend_pids(database: str) -> list[int]:
    """The PostgreSQL backends serving `database` (not other databases'
    work on the same server)."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        rows = conn.execute(
            b"SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchall()
    return [int(r[0]) for r in rows]


def stream(target: str, bank: str, token: str = "") -> Any:
    channel = grpc.aio.insecure_channel(
        target, options=[("grpc.max_receive_message_length", 4 << 20)]
    )
    stub = cgrpc.ClearingServiceStub(channel)
    call = stub.WatchTransfers(
        cpb.WatchTransfersRequest(resume_token=token), metadata=((PRINCIPAL, f"bank:{bank}"),)
    )
    return channel, call


async def flood(hub: HubProcess, seconds: float) -> dict[str, Any]:
    channel, call = stream(hub.target, SINK)
    await call.initial_metadata()
    lags: list[float] = []
    accepted = 0
    stop = asyncio.Event()

    async def consume() -> None:
        nonlocal accepted
        async for message in call:
            now = time.time()
            for e in message.events:
                if e.HasField("transfer") and e.transfer.status == cpb.TRANSFER_STATUS_ACCEPTED:
                    accepted += 1
                    lags.append(now - (e.at.seconds + e.at.nanos / 1e9))
            if stop.is_set() and accepted >= target_count:
                return

    target_count = 1 << 62
    consumer = asyncio.create_task(consume())
    t0 = time.perf_counter()
    load = await asyncio.to_thread(run_load, "batch", [hub.target], "one_creditor", 3, 2, seconds)
    cleared_s = time.perf_counter() - t0
    target_count = load.transfers
    stop.set()
    drain_started = time.perf_counter()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(consumer, 120)
    drained_s = time.perf_counter() - drain_started
    call.cancel()
    await channel.close()
    elapsed = load.finished - load.started
    return {
        "transfers": load.transfers,
        "transfers_per_s": load.transfers / elapsed if elapsed else 0.0,
        "events_delivered": accepted,
        "events_per_s": accepted / (cleared_s + drained_s),
        "all_delivered": accepted == load.transfers,
        "lag_p50_s": percentile(lags, 0.50),
        "lag_p99_s": percentile(lags, 0.99),
        "lag_max_s": max(lags, default=0.0),
        "drain_after_load_s": drained_s,
    }


async def idle(hub: HubProcess, database: str, seconds: float = 10.0) -> dict[str, Any]:
    pids = [hub.proc.pid, *backend_pids(database)]

    async def measure() -> float:
        before = cpu_seconds(pids)
        await asyncio.sleep(seconds)
        return (cpu_seconds(pids) - before) / seconds

    baseline = await measure()
    opened = [stream(hub.target, bank) for bank in IDLE_BANKS]
    for _, call in opened:
        await call.initial_metadata()
    with_streams = await measure()
    for channel, call in opened:
        call.cancel()
        await channel.close()
    return {
        "streams": len(opened),
        "cpu_cores_without": baseline,
        "cpu_cores_with": with_streams,
        "cost_cores": with_streams - baseline,
    }


async def resume(hub: HubProcess) -> dict[str, Any]:
    load = asyncio.create_task(
        asyncio.to_thread(run_load, "batch", [hub.target], "one_creditor", 1, 1, 3.0)
    )
    channel, call = stream(hub.target, SINK)
    seen: list[tuple[str, int]] = []
    token = ""
    async for message in call:
        for e in message.events:
            seen.append((e.transfer.transfer_id, e.transfer.status))
            token = e.resume_token
            if len(seen) >= 3_000:
                break
        if len(seen) >= 3_000:
            break
    call.cancel()
    await channel.close()
    channel, call = stream(hub.target, SINK, token)
    again: list[tuple[str, int]] = []
    async for message in call:
        again += [(e.transfer.transfer_id, e.transfer.status) for e in message.events]
        if len(again) >= 1_000:
            break
    call.cancel()
    await channel.close()
    await load
    return {"before_cut": len(seen), "after": len(again), "repeated": len(set(seen) & set(again))}


def measure(seconds: float, log: Path) -> dict[str, Any]:
    name, url = fresh_database()
    hub = start_hub(url, log)
    try:
        banks = {SINK: "us-east1", **{b: "us-east1" for b in IDLE_BANKS}}
        banks |= {f"SRC{i:03d}": "us-east1" for i in range(20)}
        asyncio.run(onboard(hub.target, banks))
        out = {"idle": asyncio.run(idle(hub, name))}
        print(
            f"  idle: {out['idle']['streams']} idle streams cost "
            f"{out['idle']['cost_cores'] * 100:.1f}% of a core (hub + PostgreSQL)",
            flush=True,
        )
        alone = run_load("batch", [hub.target], "one_creditor", 3, 2, seconds)
        out["flood"] = asyncio.run(flood(hub, seconds))
        f = out["flood"]
        f["transfers_per_s_without_stream"] = alone.transfers / (alone.finished - alone.started)
        f["ratio_to_without_stream"] = f["transfers_per_s"] / f["transfers_per_s_without_stream"]
        print(
            f"  flood: {f['transfers_per_s']:,.0f} transfers/s to one creditor, "
            f"{f['events_delivered']:,} of {f['transfers']:,} delivered, lag p50 "
            f"{f['lag_p50_s']:.3f} s p99 {f['lag_p99_s']:.3f} s; without the stream "
            f"{f['transfers_per_s_without_stream']:,.0f}/s "
            f"(ratio {f['ratio_to_without_stream']:.2f})",
            flush=True,
        )
        out["resume"] = asyncio.run(resume(hub))
        print(f"  resume: {out['resume']['repeated']} events delivered twice", flush=True)
        return out
    finally:
        hub.stop()
        drop_database(name)


def table(figures: dict[str, Any]) -> str:
    f, i, r = figures["flood"], figures["idle"], figures["resume"]
    rows = [
        ("one creditor: transfers/s cleared", f"{f['transfers_per_s']:,.0f}", ">= 20,000"),
        (
            "same load, no stream open (same run)",
            f"{f['transfers_per_s_without_stream']:,.0f} "
            f"(ratio {f['ratio_to_without_stream']:.2f})",
            "",
        ),
        (
            "one creditor: events delivered",
            f"{f['events_delivered']:,} / {f['transfers']:,}",
            "all",
        ),
        ("delivery lag p50 / p99 (s)", f"{f['lag_p50_s']:.3f} / {f['lag_p99_s']:.3f}", "p99 <= 1"),
        ("50 idle streams (cores)", f"{i['cost_cores']:.3f}", "< 0.05"),
        ("events repeated on resume", str(r["repeated"]), "<= 1"),
    ]
    lines = ["| status stream | measured | target |", "|---|---:|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "hub-stream.log"
    log.write_text("")
    figures = measure(args.seconds, log)
    (OUT / "stream.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))
    print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
