"""ISO 20022 benchmark (issue 15): pacs.008 documents of 1,000 transactions
validated (hardened parse, the official pacs.008.001.08 XSD), cleared and
answered with their pacs.002.001.10 over gRPC, against the protobuf batch
path (SubmitTransfers of 1,000 items) in the same run.

On PostgreSQL (SERIALIZABLE, synchronous_commit on) in a fresh database
with a hub of its own, started as scripts/bench.py starts it, with the
aggregated_payment workload's banks (bench.onboard, each with a BIC):
- protobuf: bench's own batch path (bench.run_load "batch": client
  processes with 2 calls in flight each), transfers/s;
- iso20022: as many client processes with 2 SubmitPacs008 calls in flight
  each; every document is one debtor's 1,000 CdtTrfTxInf to creditors drawn
  as the workload draws them, built with lxml (clients/iso_messages.py)
  before the clock starts, so the figure is the hub's. Transactions/s
  counts those the pacs.002 answers ACSP;
- the ratio of the two, and, in this process without the hub, what parsing
  and validating one such pacs.008 and building its pacs.002 cost.
Checked: every acknowledged transfer is a distinct stored one.

Run alone: `python scripts/bench_iso20022.py [--seconds 15]` (JSON + table
in build/bench/iso20022.{json,md}); `make bench` runs it as its `iso20022`
section (`scripts/bench.py --only iso20022` alone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from bench import (
    OUT,
    PRINCIPAL,
    LoadResult,
    Workload,
    aggregated_payment,
    drop_database,
    fresh_database,
    onboard,
    percentile,
    retries,
    run_load,
    start_hub,
    stored_transfers,
    uuid4s,
)

from remitnet.clients.iso_messages import CreditTransfer, pacs008
from remitnet.iso20022.v1 import iso20022_pb2 as ipb
from remitnet.iso20022.v1 import iso20022_pb2_grpc as igrpc

WORKLOAD = "aggregated_payment"
TRANSACTIONS = 1_000  # per pacs.008, as per SubmitTransfers call
TARGET = 5_000.0  # transactions/s (issue 15)
PROCESSES, IN_FLIGHT = 3, 2  # as bench's batch path
# Documents each client builds before the clock starts: enough for this
# many transactions/s over the run (it stops early when they run out).
HEADROOM_TPS = 12_000
ACSP = b"<TxSts>ACSP</TxSts>"


def bic(code: str) -> str:
    """A BIC11 of a benchmark bank (PAY017 -> PAYXUS33017): letters first,
    as ISO 9362 wants, and unique per code."""
    return f"{code[:3]}XUS33{code[3:]:0>3}"


def documents(workload: Workload, seed: int, count: int) -> list[tuple[str, bytes]]:
    """`count` pacs.008 of TRANSACTIONS each, one debtor per document, with
    fresh UETRs and MsgIds (a repeated one would be a replay)."""
    rng = random.Random(seed)
    lo, hi = workload.amounts
    out = []
    for n in range(count):
        debtor, _ = workload.pick(rng)
        ids = iter(uuid4s(rng, TRANSACTIONS + 100))
        txs: list[CreditTransfer] = []
        while len(txs) < TRANSACTIONS:
            _, creditor = workload.pick(rng)
            if creditor != debtor:
                cents = rng.randint(lo, hi)
                txs.append(
                    CreditTransfer(
                        bic(creditor), f"{cents // 100}.{cents % 100:02d}", "USD", uetr=next(ids)
                    )
                )
        out.append((debtor, pacs008(bic(debtor), txs, msg_id=f"B{seed:x}-{n}"[:35])))
    return out


async def _iso_client(target: str, docs: list[tuple[str, bytes]], seconds: float) -> LoadResult:
    channel = grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.max_send_message_length", 4 << 20),
            ("grpc.max_receive_message_length", 4 << 20),
        ],
    )
    stub = igrpc.Iso20022ServiceStub(channel)
    result = LoadResult()
    queue = iter(docs)
    deadline = time.monotonic() + seconds
    result.started = time.time()

    async def worker() -> None:
        for debtor, document in queue:
            if time.monotonic() >= deadline:
                return
            t0 = time.perf_counter()
            answer = await stub.SubmitPacs008(
                ipb.SubmitPacs008Request(document=document),
                metadata=((PRINCIPAL, f"bank:{debtor}"),),
                timeout=120,
            )
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            # The pacs.002 is schema-valid (the tests check it); counting its
            # ACSP statuses is enough here and costs the client little.
            accepted = answer.document.count(ACSP)
            result.transfers += accepted
            result.rejected += TRANSACTIONS - accepted

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    result.finished = time.time()
    await channel.close()
    return result


def _iso_main(target: str, seed: int, seconds: float, ready: Any, go: Any, out: Any) -> None:
    count = max(2, int(seconds * HEADROOM_TPS / TRANSACTIONS / PROCESSES) + IN_FLIGHT)
    docs = documents(aggregated_payment(), seed, count)
    ready.put(sum(len(d) for _, d in docs) / len(docs))
    go.wait()
    result = asyncio.run(_iso_client(target, docs, seconds))
    out.send(asdict(result))
    out.close()


def iso_load(target: str, seconds: float) -> tuple[LoadResult, float]:
    """The ISO path's load from PROCESSES client processes, and the mean
    size of a document in bytes."""
    ctx = mp.get_context("spawn")
    salt = int.from_bytes(os.urandom(4), "big")
    ready, go = ctx.Queue(), ctx.Event()
    pipes, procs = [], []
    for i in range(PROCESSES):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_iso_main, args=(target, salt + i, seconds, ready, go, child))
        proc.start()
        procs.append(proc)
        pipes.append(parent)
    print(f"  building documents in {PROCESSES} client processes ...", flush=True)
    sizes = [ready.get(timeout=600) for _ in procs]
    go.set()
    results = [LoadResult(**p.recv()) for p in pipes]
    for proc in procs:
        proc.join()
    return LoadResult.merge(results), statistics.mean(sizes)


def local_costs(repeat: int = 5) -> dict[str, float]:
    """Milliseconds, in this process and without a hub, to parse and
    validate one pacs.008 of TRANSACTIONS (the hub's pacs008.read) and to
    build its pacs.002 (pacs002.build): the ISO edge's own work."""
    from remitnet.services.adapters.iso20022 import pacs002
    from remitnet.services.adapters.iso20022 import pacs008 as reader
    from remitnet.services.domain.iso20022 import PACS_008, Report, TxReport

    _, document = documents(aggregated_payment(), 7, 1)[0]
    parse = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        message = reader.read(document)
        parse.append((time.perf_counter() - t0) * 1000)
    now = datetime.now(UTC)
    txs = tuple(TxReport(t.ref, "ACSP", "", accepted_at=now) for t in message.transfers)
    report = Report("RMTN1", now, message.msg_id, PACS_008, message.created_at, txs)
    build = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        pacs002.build(report)
        build.append((time.perf_counter() - t0) * 1000)
    return {"parse_validate_ms": min(parse), "build_pacs002_ms": min(build)}


def _figures(load: LoadResult, before: float, after: float) -> dict[str, Any]:
    elapsed = load.finished - load.started
    return {
        "transactions_per_s": load.transfers / elapsed if elapsed else 0.0,
        "transactions": load.transfers,
        "rejected": load.rejected,
        "calls": len(load.latencies_ms),
        "p50_ms": percentile(load.latencies_ms, 0.50),
        "p99_ms": percentile(load.latencies_ms, 0.99),
        "retries": int(after - before),
        "seconds": elapsed,
    }


def measure(seconds: float, log: Path) -> dict[str, Any]:
    workload = aggregated_payment()
    name, url = fresh_database()
    hub = start_hub(url, log)
    try:
        print(f"  onboarding {len(workload.banks)} banks with BICs", flush=True)
        asyncio.run(onboard(hub.target, workload.banks, bics={c: bic(c) for c in workload.banks}))
        print(f"  protobuf SubmitTransfers, {seconds:.0f} s ...", flush=True)
        before = retries(hub)
        proto = _figures(
            run_load("batch", [hub.target], WORKLOAD, PROCESSES, IN_FLIGHT, seconds),
            before,
            retries(hub),
        )
        print(f"  protobuf  {proto['transactions_per_s']:>9,.0f} transfers/s  "
              f"p50 {proto['p50_ms']:.0f} ms", flush=True)  # fmt: skip
        print(f"  iso20022 SubmitPacs008, {seconds:.0f} s ...", flush=True)
        before = retries(hub)
        load, size = iso_load(hub.target, seconds)
        iso = _figures(load, before, retries(hub))
        iso["document_bytes"] = size
        print(f"  iso20022  {iso['transactions_per_s']:>9,.0f} transactions/s  "
              f"p50 {iso['p50_ms']:.0f} ms", flush=True)  # fmt: skip
        stored = stored_transfers(name)
        acknowledged = proto["transactions"] + iso["transactions"]
        assert stored == acknowledged, (stored, acknowledged)
    finally:
        hub.stop()
        drop_database(name)
    print("  parsing, validating and building without the hub ...", flush=True)
    local = local_costs()
    rate = proto["transactions_per_s"]
    ratio = iso["transactions_per_s"] / rate if rate else 0.0
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "workload": WORKLOAD,
        "transactions_per_message": TRANSACTIONS,
        "processes": PROCESSES,
        "in_flight_per_process": IN_FLIGHT,
        "iso20022": iso,
        "protobuf_batch": proto,
        "ratio": ratio,
        "target_transactions_per_s": TARGET,
        "met": iso["transactions_per_s"] >= TARGET,
        "local": local,
        "stored_equals_acknowledged": True,
    }


def table(section: dict[str, Any]) -> str:
    iso, proto, local = section["iso20022"], section["protobuf_batch"], section["local"]
    lines = [
        f"ISO 20022 ({section['workload']}, {section['transactions_per_message']:,} transactions "
        f"a call, {section['processes']} client processes x {section['in_flight_per_process']} "
        "in flight, PostgreSQL)",
        "",
        "| path | transactions/s | p50 ms | p99 ms | calls | retries |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, f in (("SubmitPacs008 (pacs.008 -> pacs.002)", iso),
                     ("SubmitTransfers (protobuf batch)", proto)):  # fmt: skip
        lines.append(
            f"| {label} | {f['transactions_per_s']:,.0f} | {f['p50_ms']:.1f} | "
            f"{f['p99_ms']:.1f} | {f['calls']:,} | {f['retries']} |"
        )
    verdict = "met" if section["met"] else "NOT met"
    lines += [
        "",
        f"ISO / protobuf = {section['ratio']:.2f}; target >= "
        f"{section['target_transactions_per_s']:,.0f} transactions/s: {verdict}. "
        f"A pacs.008 of 1,000 is {iso['document_bytes'] / 1024:,.0f} KiB; without the hub, "
        f"parsing and validating it takes {local['parse_validate_ms']:.0f} ms and building its "
        f"pacs.002 {local['build_pacs002_ms']:.0f} ms. Every acknowledged transfer is stored, "
        "once.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "hub-iso20022.log"
    log.write_text("")
    print("\niso20022", flush=True)
    section = {"iso20022": measure(args.seconds, log)}
    (OUT / "iso20022.json").write_text(json.dumps(section, indent=2))
    text = table(section["iso20022"])
    (OUT / "iso20022.md").write_text(text + "\n")
    print("\n" + text + f"\n\nwrote {OUT / 'iso20022'}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
