"""`make profile`: where the hub's time goes under the benchmark's load.

Runs the hub on PostgreSQL (as `make bench` does), drives the batch and the
unary path of one workload from separate client processes, and meanwhile
samples the hub with py-spy and every process's CPU time from /proc. Writes
build/profile/<path>.txt (py-spy's collapsed stacks, for flamegraph tools),
build/profile/latest.json and a table of:

- CPU share per process group (hub, PostgreSQL, load clients) over the run,
  which says whether the hub or the database is the bottleneck;
- the hub's samples by layer (gRPC runtime, protobuf, remitnet's own code,
  SQLAlchemy, the psycopg driver), and the hottest leaf functions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import bench

OUT = bench.ROOT / "build" / "profile"
TICKS = os.sysconf("SC_CLK_TCK")
PY_SPY = str(Path(sys.executable).parent / "py-spy")

# Ordered: the first prefix of a frame's file (as py-spy prints it, relative
# to its sys.path entry) names its layer.
LAYERS = [
    ("grpc runtime", ("grpc/", "src/python/grpcio")),
    ("protobuf", ("google/protobuf/", "google/rpc/", "protobuf/")),
    ("psycopg driver", ("psycopg/", "psycopg_binary/")),
    ("sqlalchemy", ("sqlalchemy/",)),
    ("prometheus", ("prometheus_client/",)),
    ("remitnet", ("remitnet/",)),
    ("asyncio loop", ("asyncio/", "selectors.py")),
    ("thread pool", ("threading.py", "concurrent/", "queue.py")),
    ("dataclass __init__", ("<string>",)),
    ("uuid", ("uuid.py",)),
]


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def group_of(pid: int, hub_pid: int) -> str:
    if pid == hub_pid:
        return "hub"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
    if comm.startswith("postgres") or "postgres:" in cmd:
        return "postgresql"
    if "multiprocessing" in cmd and "spawn" in cmd:
        return "load clients"
    if "py-spy" in cmd:
        return "py-spy"
    return ""


class CpuMeter(threading.Thread):
    """CPU seconds per process group, including processes that come and go."""

    def __init__(self, hub_pid: int) -> None:
        super().__init__(daemon=True)
        self.hub_pid = hub_pid
        self.last: dict[int, tuple[str, float]] = {}
        self.totals: dict[str, float] = {}
        self.stop_event = threading.Event()

    def sample(self) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            group = self.last[pid][0] if pid in self.last else group_of(pid, self.hub_pid)
            if not group:
                continue
            now = cpu_seconds(pid)
            before = self.last[pid][1] if pid in self.last else now
            self.totals[group] = self.totals.get(group, 0.0) + max(0.0, now - before)
            self.last[pid] = (group, now)

    def run(self) -> None:
        self.sample()
        while not self.stop_event.wait(0.25):
            self.sample()


def layer_of(frame: str) -> str:
    where = frame.rpartition(" (")[2]
    for layer, prefixes in LAYERS:
        if where.startswith(prefixes):
            return layer
    return "other python"


def thread_of(stack: str) -> str:
    # The hub runs units of work in a thread pool; the event loop thread
    # does the gRPC handling and protobuf conversion.
    if "_worker (concurrent/futures" in stack:
        return "database unit-of-work threads"
    return "event loop thread"


def summarise(collapsed: Path) -> dict[str, Any]:
    """Leaf (self) samples per layer and per function from py-spy's raw output."""
    layers: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        leaf = stack.split(";")[-1]
        layers[layer_of(leaf)] += n
        threads[thread_of(stack)] += n
        leaves[leaf] += n
    return {
        "samples": total,
        "layers": {k: v / total for k, v in layers.most_common()} if total else {},
        "threads": {k: v / total for k, v in threads.most_common()} if total else {},
        "hottest": [(k, v / total) for k, v in leaves.most_common(12)] if total else [],
    }


def profile_path(path: str, workload: str, seconds: float) -> dict[str, Any]:
    name, url = bench.fresh_database()
    log = OUT / f"hub-{path}.log"
    log.write_text("")
    hub = bench.start_hub(url, log)
    try:
        chosen = bench.workload_named(workload)
        asyncio.run(bench.onboard(hub.target, chosen.banks, chosen.currency_of))
        collapsed = OUT / f"{path}.txt"
        spy = subprocess.Popen(
            [PY_SPY, "record", "--pid", str(hub.proc.pid), "--rate", "250",
             "--duration", str(int(seconds)), "--format", "raw", "--output", str(collapsed),
             "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        meter = CpuMeter(hub.proc.pid)
        meter.start()
        if path == "batch":
            load = bench.run_load(path, [hub.target], workload, 3, 2, seconds)
        else:
            load = bench.run_load(path, [hub.target], workload, 2, 48, seconds)
        meter.stop_event.set()
        meter.join()
        _, err = spy.communicate(timeout=60)
        if spy.returncode != 0:
            raise SystemExit(f"py-spy failed: {err.decode()[-500:]}")
        wall = load.finished - load.started
        cpu = {k: v / wall for k, v in meter.totals.items()}
        return {
            "transfers_per_s": load.transfers / wall,
            "p99_ms": bench.percentile(load.latencies_ms, 0.99),
            "cpu_cores": cpu,
            **summarise(collapsed),
        }
    finally:
        hub.stop()
        bench.drop_database(name)


def table(results: dict[str, Any]) -> str:
    lines = []
    for path, r in results["paths"].items():
        lines.append(
            f"\n## {path} ({results['workload']}): {r['transfers_per_s']:,.0f} transfers/s, "
            f"p99 {r['p99_ms']:.1f} ms, {r['samples']} py-spy samples"
        )
        lines.append("\nCPU in cores (of 2) over the run:\n\n| process | cores |\n|---|---|")
        for group, cores in sorted(r["cpu_cores"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {group} | {cores:.2f} |")
        lines.append("\nHub samples by thread:\n\n| thread | share |\n|---|---|")
        for thread, share in r["threads"].items():
            lines.append(f"| {thread} | {share:.1%} |")
        lines.append("\nHub samples by layer (where the leaf frame is):\n")
        lines.append("| layer | share |\n|---|---|")
        for layer, share in r["layers"].items():
            lines.append(f"| {layer} | {share:.1%} |")
        lines.append("\nHottest leaf functions:\n\n| function | share |\n|---|---|")
        for fn, share in r["hottest"]:
            lines.append(f"| `{fn[:110]}` | {share:.1%} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="aggregated_payment", choices=sorted(bench.WORKLOADS))
    parser.add_argument(
        "--banks", type=int, help="uniform pairs over this many banks instead of --workload"
    )
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--paths", default="batch,unary", help="comma-separated: batch, unary")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    workload = f"big_cycle:{args.banks}" if args.banks else args.workload
    results: dict[str, Any] = {"workload": workload, "paths": {}}
    for path in args.paths.split(","):
        print(f"… profiling the {path} path for {args.seconds:.0f} s", flush=True)
        results["paths"][path] = profile_path(path, workload, args.seconds)
    (OUT / "latest.json").write_text(json.dumps(results, indent=2))
    report = f"# remitnet hub profile\n{table(results)}\n"
    (OUT / "latest.md").write_text(report)
    print(report)
    print(f"wrote {OUT / 'latest.json'}, latest.md and the collapsed stacks batch.txt, unary.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
