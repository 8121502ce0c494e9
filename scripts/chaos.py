"""`make chaos`: a bank-invariant chaos run in the spirit of Jepsen's bank test.

The hub runs as three processes (two clearing, one for the rest) on
PostgreSQL at SERIALIZABLE. Client processes submit the seed paper's three
workloads, single and batch, retrying with the same ids, and log every
acknowledgement, rejection and ambiguous outcome. Meanwhile a nemesis
SIGKILLs and restarts hub processes, restarts PostgreSQL, crashes processes
inside batch commits, cycle closes and settlements (REMITNET_CRASH_AT), and
an operator closes and settles cycles. After quiescence the checker recovers
(settles every closed cycle, resolves every ambiguous outcome through
GetTransfer) and verifies the invariants. The last line is JSON with
"violations"; the exit code is non-zero on any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import select

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.bank import BankClient, instruction
from remitnet.clients.base import ClientConfig
from remitnet.clients.errors import HubError
from remitnet.clients.operator import OperatorClient
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.schema import cycles, transfers
from remitnet.services.service_layer.audit import audit

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "chaos"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
REGIONS = ["us-east1", "europe-west1", "asia-southeast1"]
BANKS = {f"CH{r[:2].upper()}{i:02d}": r for r in REGIONS for i in range(4)}
LIQUIDITY = 5_000_000
CAP = 1_000_000
# Business outcomes a client may see; anything else is a transport problem.
DEFINITE = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Processes --------------------------------------------------------------------


@dataclass
class Service:
    name: str
    only: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    crash_at: str = ""
    down: bool = False  # deliberately stopped by the nemesis

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


class Supervisor:
    def __init__(self, db_url: str, log: Path) -> None:
        self.db_url = db_url
        self.log = log
        self.services = {
            "core": Service("core", "participants,netting,settlement,fx", free_port()),
            "clear1": Service("clear1", "clearing", free_port()),
            "clear2": Service("clear2", "clearing", free_port()),
        }

    def start(self, name: str, crash_at: str = "") -> None:
        svc = self.services[name]
        env = {k: v for k, v in os.environ.items() if k != "REMITNET_CRASH_AT"}
        if crash_at:
            env["REMITNET_CRASH_AT"] = crash_at
        command = [
            sys.executable, "-m", "remitnet.services.entrypoints.cli", "serve", "--insecure",
            "--db", self.db_url, "--port", str(svc.port), "--metrics-port", "-1",
            "--only", svc.only, "--no-migrate", "--grace", "2",
        ]  # fmt: skip
        with self.log.open("ab") as sink:
            svc.proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        svc.crash_at = crash_at
        svc.down = False

    def kill(self, name: str) -> None:
        svc = self.services[name]
        if svc.proc is not None and svc.proc.poll() is None:
            svc.proc.send_signal(signal.SIGKILL)
            svc.proc.wait()
        svc.down = True

    def revive_dead(self) -> list[str]:
        """Restart processes that died on their own (crash points)."""
        revived = []
        for name, svc in self.services.items():
            if not svc.down and svc.proc is not None and svc.proc.poll() is not None:
                self.start(name)
                revived.append(name)
        return revived

    def stop_all(self) -> None:
        for svc in self.services.values():
            if svc.proc is not None and svc.proc.poll() is None:
                svc.proc.send_signal(signal.SIGTERM)
        for svc in self.services.values():
            if svc.proc is not None:
                try:
                    svc.proc.wait(30)
                except subprocess.TimeoutExpired:
                    svc.proc.kill()


def postgres_version() -> str:
    return sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(x) for x in v.split(".")])[-1]


def restart_postgres() -> None:
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            postgres_version(),
            "main",
            "restart",
            "-m",
            "fast",
        ],
        check=False,
        capture_output=True,
        timeout=120,
    )


def ensure_postgres() -> None:
    for _ in range(60):
        try:
            with psycopg.connect(PG_ADMIN) as conn:
                conn.execute(b"SELECT 1")
                return
        except psycopg.OperationalError:
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", postgres_version(), "main", "start"],
                check=False,
                capture_output=True,
                timeout=120,
            )
            time.sleep(1)
    raise SystemExit("PostgreSQL did not come back")


async def wait_healthy(target: str, timeout_s: float = 60.0) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{target} is not healthy")


# Clients (separate processes) -----------------------------------------------------


def pick(rng: random.Random, workload: str) -> tuple[str, str]:
    codes = list(BANKS)
    if workload == "aggregated_payment":  # many payers, a few aggregators
        aggregators = codes[:2]
        if rng.random() < 0.8:
            return rng.choice(codes[2:]), rng.choice(aggregators)
        return rng.choice(aggregators), rng.choice(codes[2:])
    if workload == "high_speed_sales" and rng.random() < 0.85:  # a flash sale to one bank
        return rng.choice(codes[1:]), codes[0]
    debtor = rng.choice(codes)  # cross-region corridors
    creditor = rng.choice([c for c in codes if BANKS[c] != BANKS[debtor]])
    return debtor, creditor


def client_main(index: int, targets: list[str], seconds: float, seed: int, path: str) -> None:
    asyncio.run(client(index, targets, seconds, seed, Path(path)))


async def client(index: int, targets: list[str], seconds: float, seed: int, path: Path) -> None:
    rng = random.Random(seed * 1000 + index)
    deadline = time.monotonic() + seconds
    out = path.open("w")

    def record(**event: Any) -> None:
        out.write(json.dumps(event) + "\n")

    clients: dict[tuple[str, str], BankClient] = {}

    clients_once: dict[tuple[str, str], BankClient] = {}

    def bank(code: str, patient: bool = True) -> BankClient:
        # A patient client retries across a restart, so most calls end
        # definite; an impatient one gives up after one short attempt, which
        # leaves ambiguous outcomes for the checker to resolve.
        target = rng.choice(targets)
        key = (code, target)
        pool = clients if patient else clients_once
        if key not in pool:
            config = (
                ClientConfig(target=target, deadline_s=5.0, max_attempts=6)
                if patient
                else ClientConfig(target=target, deadline_s=1.0, max_attempts=1)
            )
            pool[key] = BankClient(code, config)
        return pool[key]

    acked: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        workload = rng.choice(["aggregated_payment", "high_speed_sales", "remittance_channel"])
        debtor, _ = pick(rng, workload)
        if rng.random() < 0.5:
            items = []
            for _ in range(rng.randint(20, 120)):
                _d, creditor = pick(rng, workload)
                if creditor != debtor:
                    items.append(instruction(creditor, "USD", rng.randint(100, 60_000)))
            items = items + items[: rng.randint(0, 3)]  # duplicates inside the batch
        else:
            _d, creditor = pick(rng, workload)
            if creditor == debtor:
                continue
            items = [instruction(creditor, "USD", rng.randint(100, 200_000))]
        contents = {i.transfer_id: [debtor, i.creditor_bank, i.amount.minor_units] for i in items}
        patient = rng.random() >= 0.2
        try:
            if len(items) == 1:
                try:
                    await bank(debtor, patient).submit(items[0])
                    record(
                        kind="ack", id=items[0].transfer_id, content=contents[items[0].transfer_id]
                    )
                    acked.append((items[0].transfer_id, debtor))
                except HubError as err:
                    if err.code in DEFINITE:
                        record(kind="rej", id=items[0].transfer_id, reason=err.reason)
                    else:
                        raise
            else:
                batch = await bank(debtor, patient).submit_batch(
                    items, deadline_s=10.0 if patient else 1.0
                )
                for result in batch.results:
                    if result.HasField("transfer"):
                        record(
                            kind="ack", id=result.transfer_id, content=contents[result.transfer_id]
                        )
                        acked.append((result.transfer_id, debtor))
                    elif result.error.reason != "DUPLICATE_WITH_DIFFERENT_CONTENT":
                        record(kind="rej", id=result.transfer_id, reason=result.error.reason)
        except (TimeoutError, HubError, grpc.aio.AioRpcError) as err:
            # Retries exhausted across restarts: the outcome is unknown.
            for tid, content in contents.items():
                record(kind="ambiguous", id=tid, content=content, error=str(err)[:80])
        # Follow a few acknowledged transfers: their status may only move forward.
        for tid, sender in rng.sample(acked, min(3, len(acked))):
            try:
                follower = bank(sender)
                began = time.time()
                t = await follower.call(
                    follower.clearing.GetTransfer,
                    cpb.GetTransferRequest(transfer_id=tid),
                    retry=False,
                    deadline_s=2.0,
                )
                record(
                    kind="status",
                    id=tid,
                    status=int(t.transfer.status),
                    began=began,
                    ended=time.time(),
                )
            except HubError:
                pass  # not ours to see, or the hub is restarting
    out.close()
    for c in [*clients.values(), *clients_once.values()]:
        await c.close()


# Operator and nemesis ----------------------------------------------------------------


async def operator_loop(sup: Supervisor, stop: asyncio.Event, faults: Counter[str]) -> None:
    config = ClientConfig(target=sup.services["core"].target, deadline_s=5.0, max_attempts=3)
    treasury_round = 0
    async with OperatorClient(config) as op:
        while not stop.is_set():
            await asyncio.sleep(random.uniform(1.0, 2.5))
            try:
                open_ = await op.list_cycles("USD", npb.CYCLE_STATE_OPEN)
                if open_:
                    await op.close_cycle("USD", cycle_id=open_[0].cycle_id)
                    faults["operator_close"] += 1
                for c in await op.list_cycles("USD", npb.CYCLE_STATE_CLOSED):
                    await op.settle_cycle(c.cycle_id)
                    faults["operator_settle"] += 1
                # Treasury: payer banks drain towards the aggregators; top
                # them up, so the run keeps clearing rather than only
                # refusing, and deposits race with clearing and settlement.
                # The id is fixed per bank and round so a retry is one deposit.
                treasury_round += 1
                for b in await op.list_banks():
                    account = next(a for a in b.accounts if a.currency == "USD")
                    if account.headroom < LIQUIDITY // 2:
                        key = f"{b.code}/{treasury_round}"
                        await op.deposit(
                            b.code, "USD", LIQUIDITY, str(uuid.uuid5(uuid.NAMESPACE_URL, key))
                        )
                        faults["operator_deposit"] += 1
            except HubError:
                faults["operator_call_failed"] += 1


async def nemesis(
    sup: Supervisor, stop: asyncio.Event, faults: Counter[str], db: Database, bad: list[str]
) -> None:
    rng = random.Random(7)
    kinds = [
        "kill_clearing", "kill_core", "restart_postgres", "crash_batch_before_commit",
        "crash_batch_after_commit", "crash_close", "crash_settle",
    ]  # fmt: skip
    # Shuffled rounds rather than independent draws: every kind of fault
    # comes once per round, so even a one-minute run injects each of them.
    plan: list[str] = []
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(2.0, 4.0))
        if stop.is_set():
            break
        if not plan:
            plan = rng.sample(kinds, len(kinds))
        kind = plan.pop()
        faults[kind] += 1
        if kind == "kill_clearing":
            name = rng.choice(["clear1", "clear2"])
            sup.kill(name)
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            sup.start(name)
        elif kind == "kill_core":
            sup.kill("core")
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            sup.start("core")
        elif kind == "restart_postgres":
            await asyncio.to_thread(restart_postgres)
        elif kind.startswith("crash_batch"):
            name = rng.choice(["clear1", "clear2"])
            point = "before_commit" if kind.endswith("before_commit") else "after_commit"
            sup.kill(name)
            sup.start(name, f"clear_batch:{point}:{rng.randint(1, 4)}")
        else:
            unit = "close_cycle" if kind == "crash_close" else "settle_cycle"
            sup.kill("core")
            sup.start("core", f"{unit}:{rng.choice(['before_commit', 'after_commit'])}:1")
        # Limits must hold at every moment, not only at the end.
        try:
            report = await asyncio.to_thread(audit, db)
            bad += [f"during run: {v}" for v in report.violations if "beyond" in v]
        except Exception:  # the database may be restarting
            faults["audit_skipped"] += 1


async def reviver(sup: Supervisor, stop: asyncio.Event, faults: Counter[str]) -> None:
    while not stop.is_set():
        await asyncio.sleep(0.3)
        for name in sup.revive_dead():
            faults[f"crashed_and_restarted_{name}"] += 1


# The run ----------------------------------------------------------------------


async def recover(sup: Supervisor) -> None:
    for name in sup.services:
        sup.kill(name)
        sup.start(name)
    for svc in sup.services.values():
        await wait_healthy(svc.target)
    config = ClientConfig(target=sup.services["core"].target, deadline_s=30.0)
    async with OperatorClient(config) as op:
        for c in await op.list_cycles("USD", npb.CYCLE_STATE_OPEN):
            await op.close_cycle("USD", cycle_id=c.cycle_id)
        for c in await op.list_cycles("USD", npb.CYCLE_STATE_CLOSED):
            await op.settle_cycle(c.cycle_id)


def moved_backwards(reads: list[tuple[float, float, int]]) -> tuple[int, int] | None:
    """A pair (earlier, later) of statuses where a read that ended before
    another began saw a later status. Reads that overlap in time may see
    either order, so they are not compared."""
    by_end = sorted(reads, key=lambda r: r[1])
    highest, i = 0, 0
    for began, _ended, status in sorted(reads):
        while i < len(by_end) and by_end[i][1] < began:
            highest = max(highest, by_end[i][2])
            i += 1
        if status < highest:
            return highest, status
    return None


async def check(sup: Supervisor, db: Database, logs: list[Path], bad: list[str]) -> dict[str, Any]:
    acked: dict[str, list[Any]] = {}
    rejected: dict[str, str] = {}
    ambiguous: dict[str, list[Any]] = {}
    statuses: dict[str, list[tuple[float, float, int]]] = {}
    for log in logs:
        for line in log.read_text().splitlines():
            e = json.loads(line)
            if e["kind"] == "ack":
                acked[e["id"]] = e["content"]
            elif e["kind"] == "rej":
                rejected[e["id"]] = e["reason"]
            elif e["kind"] == "ambiguous":
                ambiguous[e["id"]] = e["content"]
            else:
                statuses.setdefault(e["id"], []).append((e["began"], e["ended"], e["status"]))
    rows = db.read(
        lambda conn: {
            str(r[0]): [r[1], r[2], r[3]]
            for r in conn.execute(
                select(
                    transfers.c.id,
                    transfers.c.debtor_bank,
                    transfers.c.creditor_bank,
                    transfers.c.amount,
                )
            )
        }
    )
    for tid, content in acked.items():
        if rows.get(tid) != content:
            bad.append(f"acknowledged {tid} is {rows.get(tid)}, acknowledged as {content}")
    for tid, reason in rejected.items():
        if tid in rows and tid not in acked:
            bad.append(f"rejected {tid} ({reason}) exists")
    resolved = Counter[str]()
    config = ClientConfig(target=sup.services["clear1"].target, deadline_s=10.0)
    clients: dict[str, BankClient] = {}
    found: set[str] = set()
    for tid, content in ambiguous.items():
        if tid in acked:
            resolved["acknowledged_later"] += 1
            continue
        debtor = content[0]
        client = clients.setdefault(debtor, BankClient(debtor, config))
        try:
            t = await client.get(tid)
            resolved["exists"] += 1
            found.add(tid)
            if [t.debtor_bank, t.creditor_bank, t.amount.minor_units] != content:
                bad.append(f"ambiguous {tid} resolved with other content")
        except HubError as err:
            if err.reason != "TRANSFER_NOT_FOUND":
                bad.append(f"ambiguous {tid} could not be resolved: {err}")
            resolved["absent"] += 1
            if tid in rows:
                bad.append(f"ambiguous {tid} reported absent but exists")
    for c in clients.values():
        await c.close()
    # Nothing may exist that no client asked for: every stored transfer is
    # one acknowledged or one ambiguous submission that took effect.
    for tid in set(rows) - set(acked) - found:
        bad.append(f"transfer {tid} exists but no client submission explains it")
    for tid, seen in statuses.items():
        if backwards := moved_backwards(seen):
            bad.append(f"status of {tid} moved backwards: {backwards}")
    unsettled = db.read(
        lambda conn: conn.execute(select(cycles.c.id).where(cycles.c.state != 3)).all()
    )
    if len(unsettled) != 1:  # only the freshly opened cycle may be unsettled
        bad.append(f"cycles not settled after recovery: {[r[0] for r in unsettled]}")
    report = audit(db)
    bad += report.violations
    return {
        "acknowledged": len(acked),
        "rejected": len(rejected),
        "rejected_by_reason": dict(Counter(rejected.values()).most_common()),
        "ambiguous": len(ambiguous),
        "ambiguous_exists": resolved["exists"],
        "ambiguous_absent": resolved["absent"],
        "ambiguous_acknowledged_later": resolved["acknowledged_later"],
        "status_samples": sum(len(v) for v in statuses.values()),
        "transfers_stored": report.transfers,
        "cycles": report.cycles,
        "ledger_entries": report.entries,
    }


async def run(seconds: float, clients: int, seed: int) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "hub.log"
    log.write_text("")
    ensure_postgres()
    name = f"remitnet_chaos_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
        conn.execute(f"CREATE DATABASE {name}".encode())
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    db = Database(url)
    from remitnet.services.adapters.db import migrate

    migrate.upgrade(db)
    sup = Supervisor(url, log)
    faults: Counter[str] = Counter()
    bad: list[str] = []
    started = time.perf_counter()
    try:
        for service_name in sup.services:
            sup.start(service_name)
        for service in sup.services.values():
            await wait_healthy(service.target)
        async with OperatorClient(ClientConfig(target=sup.services["core"].target)) as op:
            for code, region in BANKS.items():
                await op.create_bank(code, code, region, ["USD"])
                await op.deposit(
                    code, "USD", LIQUIDITY, deposit_id=str(uuid.uuid5(uuid.NAMESPACE_DNS, code))
                )
                await op.set_cap(code, "USD", CAP)
        print(
            f"chaos: {len(BANKS)} banks, {clients} client processes, {seconds:.0f} s of faults",
            flush=True,
        )
        ctx = mp.get_context("spawn")
        logs = [OUT / f"client-{i}.jsonl" for i in range(clients)]
        targets = [sup.services["clear1"].target, sup.services["clear2"].target]
        procs = [
            ctx.Process(target=client_main, args=(i, targets, seconds, seed, str(logs[i])))
            for i in range(clients)
        ]
        for p in procs:
            p.start()
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(nemesis(sup, stop, faults, db, bad)),
            asyncio.create_task(operator_loop(sup, stop, faults)),
            asyncio.create_task(reviver(sup, stop, faults)),
        ]
        t0 = time.monotonic()
        while any(p.is_alive() for p in procs):
            await asyncio.sleep(5)
            print(f"  … {time.monotonic() - t0:4.0f} s, faults so far {dict(faults)}", flush=True)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for p in procs:
            p.join()
        ensure_postgres()
        await recover(sup)
        figures = await check(sup, db, logs, bad)
    finally:
        sup.stop_all()
        ensure_postgres()
        db.dispose()
    summary = {
        "seconds": round(time.perf_counter() - started, 1),
        "clients": clients,
        **figures,
        "faults": dict(faults),
        "violations": len(bad),
    }
    print("\nchaos summary")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    for v in bad[:50]:
        print(f"  VIOLATION: {v}")
    (OUT / "latest.json").write_text(json.dumps(summary, indent=2))
    if not bad:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
    print(json.dumps(summary))
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    return asyncio.run(run(args.seconds, args.clients, args.seed))


if __name__ == "__main__":
    sys.exit(main())
