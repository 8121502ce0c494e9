"""A/B of the hub's batch and unary paths against another checkout, in the
same run, alternating, so that the noise of a shared machine (about 2x
between machines, and load from anything else running) falls on both sides.

    python scripts/ab.py --base /path/to/other/checkout [--rounds 3] [--seconds 10]

The other checkout needs its own .venv (`make venv` there). Each round
starts a fresh database and hub for each side in turn, onboards the
workload's banks and drives the same load from this tree's load generator
(scripts/bench.py). Prints a table and the JSON of every run; the ratio is
this tree's median over the base's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from bench import (
    OUT,
    ROOT,
    WORKLOADS,
    drop_database,
    fresh_database,
    onboard,
    percentile,
    run_load,
    start_hub,
)

IN_FLIGHT = {"batch": (3, 2), "unary": (2, 48)}


def one_run(tree: Path, path: str, workload: str, seconds: float, log: Path) -> dict[str, Any]:
    name, url = fresh_database()
    hub = start_hub(url, log, tree=tree)
    try:
        chosen = WORKLOADS[workload]
        asyncio.run(onboard(hub.target, chosen.banks, chosen.currency_of))
        processes, in_flight = IN_FLIGHT[path]
        load = run_load(path, [hub.target], workload, processes, in_flight, seconds)
        elapsed = load.finished - load.started
        return {
            "transfers_per_s": load.transfers / elapsed if elapsed else 0.0,
            "p99_ms": percentile(load.latencies_ms, 0.99),
        }
    finally:
        hub.stop()
        drop_database(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--paths", default="batch,unary")
    parser.add_argument("--workload", default="aggregated_payment", choices=sorted(WORKLOADS))
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "ab-hub.log"
    log.write_text("")
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for path in args.paths.split(","):
        runs[path] = {"this": [], "base": []}
        for n in range(args.rounds):
            for side, tree in (("base", args.base.resolve()), ("this", ROOT)):
                figures = one_run(tree, path, args.workload, args.seconds, log)
                runs[path][side].append(figures)
                print(
                    f"  {path:<6} round {n + 1}/{args.rounds} {side:<4} "
                    f"{figures['transfers_per_s']:>9,.0f} transfers/s  "
                    f"p99 {figures['p99_ms']:7.1f} ms",
                    flush=True,
                )
    summary: dict[str, Any] = {"workload": args.workload, "base": str(args.base), "paths": {}}
    print("\n| path | base transfers/s | this transfers/s | ratio |\n|---|---:|---:|---:|")
    for path, sides in runs.items():
        base = statistics.median(r["transfers_per_s"] for r in sides["base"])
        this = statistics.median(r["transfers_per_s"] for r in sides["this"])
        ratio = this / base if base else 0.0
        summary["paths"][path] = {"base": base, "this": this, "ratio": ratio, "runs": sides}
        print(f"| {path} | {base:,.0f} | {this:,.0f} | {ratio:.2f} |")
    (OUT / "ab.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
