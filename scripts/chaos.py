"""`make chaos`: a bank-invariant chaos run in the spirit of Jepsen's bank test.

The hub runs as three processes (two clearing, one for the rest, which
settles closed cycles by itself: `--auto-settle`) on PostgreSQL at
SERIALIZABLE. Client processes submit the seed paper's three workloads,
single and batch, retrying with the same ids, and log every acknowledgement,
rejection (with its status code) and ambiguous outcome. The remittance
workload is cross-currency where the creditor's home currency is not USD:
each such item is paid with a quote (CreateQuotes) from one of two FX
providers competing on spread, funded in the currencies they sell and topped
up by the operator like the banks, so batches that draw on the providers'
liquidity are killed, crashed and refused (FX_PROVIDER_INSUFFICIENT_LIQUIDITY)
like any other. Meanwhile a nemesis
SIGKILLs and restarts hub processes, restarts PostgreSQL, and crashes
processes inside batch commits, cycle closes and settlements
(REMITNET_CRASH_AT); an operator closes and settles cycles and tops banks up.

A fault is counted as *fired* only when it was seen to happen: a kill only if
the process was running and died of SIGKILL and its successor became
healthy; a PostgreSQL restart only if `pg_ctlcluster` succeeded and the
postmaster's start time changed (a failed restart is an error of the run); a
crash point only if the process exited with 137 and its own log shows the
crash point was reached. Armed and fired are reported separately. The first
round of the nemesis holds every kind of fault, close together, so that even
a one-minute run fires each of them.

After quiescence the open cycle is closed on a core that dies inside the
settlement its auto-settle starts, every hub process is restarted, and the
checker waits (bounded) for the recovered hub to settle every closed cycle
on its own; it never settles anything itself. It resolves every ambiguous outcome
through GetTransfer (through both clearing processes: the answers must
agree) and verifies the invariants with the functions below, which take
plain data so that tests can feed them bad histories
(tests/test_chaos_checker.py). The stored state is read once, as the hub's
audit snapshot (remitnet.services.domain.audit.AuditSnapshot), and what the
checker shares with the audit is the audit's own pure checks over it:

- client outcomes (`check_outcomes`): acknowledged exists once with the
  acknowledged content; definitely rejected does not exist; acknowledged and
  definitely rejected is a violation (only a transient rejection, such as
  UNAVAILABLE, ABORTED or DEADLINE_EXCEEDED, may precede an acceptance of
  the same id: it is treated as ambiguous); ambiguous resolves to exactly
  once or absent; nothing is stored that no client asked for;
- statuses only move forward (`moved_backwards`);
- no cycle settled twice (the audit's `check_settled_once`), every closed
  cycle settled (`check_settlements`);
- every currency's ledger sums to zero (the audit's `check_ledger`);
- no bank or FX provider ever beyond liquidity plus cap, over the whole
  history (`check_limit_history`, see there, replaying the ledger entries and
  the transfers' legs, `StoredTransfer.legs`, whose conversion legs are paid
  by and to the providers), on a one-second timer during the run (current
  account rows, the audit's `beyond_limit`) and at the end;
- the hub carries no currency position: no leg of a conversion is the hub's
  (the audit's `check_hub_unfunded`);
- every other check of the hub's audit over the same snapshot (balance
  chains, balances and positions against ledger entries and transfers,
  settlement postings against nets, the change feed, the operator trail),
  reported as "audit: ..." unless a check above reported it already;
- every bank's status stream delivered its feed (`check_streams`).

The last line is JSON with "violations" and "errors"; the exit code is
non-zero on any violation or error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psycopg
from hubs import HubProcess, free_port, start_hub, wait_healthy
from sqlalchemy import Connection, select

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clearing.v1 import clearing_pb2_grpc as cgrpc
from remitnet.clients.bank import BankClient, instruction
from remitnet.clients.base import ClientConfig
from remitnet.clients.errors import HubError
from remitnet.clients.operator import OperatorClient
from remitnet.clients.provider import ProviderClient
from remitnet.fx.v1 import fx_pb2 as fxpb
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.schema import cycles
from remitnet.services.domain.audit import (
    AuditSnapshot,
    beyond_limit,
    check_hub_unfunded,
    check_ledger,
    check_settled_once,
    is_settlement,
)
from remitnet.services.domain.model import (
    AccountKind,
    CycleState,
    TransferStatus,
    position_account_id,
)
from remitnet.services.service_layer.audit import audit_snapshot, read_snapshot
from remitnet.services.service_layer.unit_of_work import UnitOfWork

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "chaos"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
REGIONS = ["us-east1", "europe-west1", "asia-southeast1"]
BANKS = {f"CH{r[:2].upper()}{i:02d}": r for r in REGIONS for i in range(4)}
# Every bank pays in USD; a remittance to a bank whose home currency is
# another is converted by an FX provider.
HOME_CURRENCY = {"us-east1": "USD", "europe-west1": "EUR", "asia-southeast1": "PHP"}
LIQUIDITY = 5_000_000
CAP = 1_000_000
# FX providers: their spread per pair (same mids: the narrower wins while it
# can deliver) and what they are funded with, and topped up to, in each
# currency they sell. A provider's target-currency liquidity only falls (it
# is paid in USD), so it runs low between top-ups and while the core (the
# operator's deposits) is down: quotes and transfers are then refused
# FX_PROVIDER_INSUFFICIENT_LIQUIDITY or go to the other provider.
MIDS = {("USD", "EUR"): "0.92", ("USD", "PHP"): "56.10"}
PROVIDERS = {
    "CHFXA": {("USD", "EUR"): 30, ("USD", "PHP"): 25},
    "CHFXB": {("USD", "EUR"): 20, ("USD", "PHP"): 45},
}
PROVIDER_LIQUIDITY = {"EUR": 2_000_000, "PHP": 100_000_000}  # a few batches' worth
# Business outcomes: the hub decided, and said no. Anything else (transport
# trouble, a restart, a deadline) leaves the outcome unknown.
DEFINITE = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
DEFINITE_NAMES = frozenset(c.name for c in DEFINITE)
CODE_NAMES = {int(c.value[0]): c.name for c in grpc.StatusCode}
DUPLICATE = "DUPLICATE_WITH_DIFFERENT_CONTENT"
KINDS = (
    "kill_clearing", "kill_core", "restart_postgres", "crash_batch_before_commit",
    "crash_batch_after_commit", "crash_close", "crash_settle",
)  # fmt: skip
CRASH_WAIT_S = 15.0  # an armed crash point that is not reached by then is disarmed
SETTLE_WAIT_S = 60.0  # bound on the recovered hub settling every closed cycle
# How far apart in time a commit's timestamp (taken when its transaction
# starts) may be from the moment it became visible to others.
LIMIT_SLACK_S = 2.0


# Processes --------------------------------------------------------------------


@dataclass
class Service:
    name: str
    only: str
    port: int
    hub: HubProcess | None = None
    crash_at: str = ""
    down: bool = False  # deliberately stopped by the nemesis
    log: Path | None = None
    generation: int = 0
    crashes: int = 0  # crash points seen reached (exit 137 and the log line)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.hub.proc if self.hub else None


class Supervisor:
    def __init__(self, db_url: str, logs: Path) -> None:
        self.db_url = db_url
        self.logs = logs
        self.unexpected: list[str] = []
        self.services = {
            "core": Service("core", "participants,netting,settlement,fx", free_port()),
            "clear1": Service("clear1", "clearing", free_port()),
            "clear2": Service("clear2", "clearing", free_port()),
        }

    def start(self, name: str, crash_at: str = "") -> None:
        svc = self.services[name]
        extra = ["--no-migrate", "--grace", "2"]
        if name == "core":
            extra.append("--auto-settle")  # a restarted hub finishes what it started
        svc.generation += 1
        svc.log = self.logs / f"{name}-{svc.generation:03d}.log"
        svc.hub = start_hub(
            self.db_url,
            port=svc.port,
            metrics=False,
            only=[svc.only],
            extra=extra,
            log=svc.log,
            crash_at=crash_at,
            wait=None,
        )
        svc.crash_at = crash_at
        svc.down = False

    def kill(self, name: str) -> bool:
        """SIGKILL; True if a running process died of it."""
        svc = self.services[name]
        svc.down = True
        if svc.hub is None or svc.hub.proc.poll() is not None:
            return False
        return svc.hub.kill() == -signal.SIGKILL

    def reap(self) -> None:
        """Restart processes that died on their own: at an armed crash point
        (exit 137 and the crash line in their log), or unexpectedly."""
        for name, svc in self.services.items():
            if svc.down or svc.proc is None or svc.proc.poll() is None:
                continue
            code = svc.proc.returncode
            point = ":".join(svc.crash_at.split(":")[:2])
            text = svc.log.read_text(errors="replace") if svc.log else ""
            if svc.crash_at and code == 137 and f"crash injected at {point}" in text:
                svc.crashes += 1
            else:
                log = svc.log.name if svc.log else "?"
                self.unexpected.append(f"{name} exited on its own with {code} (see {log})")
            self.start(name)

    def stop_all(self) -> None:
        hubs = [svc.hub for svc in self.services.values() if svc.hub is not None]
        for hub in hubs:
            hub.terminate()
        for hub in hubs:
            hub.stop(30)


def postgres_version() -> str:
    return sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(x) for x in v.split(".")])[-1]


def postmaster_started() -> str:
    with psycopg.connect(PG_ADMIN) as conn:
        row = conn.execute(b"SELECT pg_postmaster_start_time()::text").fetchone()
    assert row is not None
    return str(row[0])


def restart_postgres() -> bool:
    """Restart the cluster; True once it is back under a new postmaster.
    A failed restart raises: it is an error of the run, not a fault."""
    before = postmaster_started()
    command = [
        "pg_ctlcluster", "--skip-systemctl-redirect", postgres_version(), "main", "restart",
        "-m", "fast",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"pg_ctlcluster restart exited with {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()[-300:]}"
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            return postmaster_started() != before
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


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


def home(code: str) -> str:
    return HOME_CURRENCY[BANKS[code]]


def client_main(
    index: int, targets: list[str], fx_target: str, seconds: float, seed: int, path: str
) -> None:
    asyncio.run(client(index, targets, fx_target, seconds, seed, Path(path)))


async def client(
    index: int, targets: list[str], fx_target: str, seconds: float, seed: int, path: Path
) -> None:
    rng = random.Random(seed * 1000 + index)
    deadline = time.monotonic() + seconds
    out = path.open("w")

    def record(kind: str, tid: str, content: list[Any], **extra: Any) -> None:
        out.write(json.dumps({"kind": kind, "id": tid, "content": content, **extra}) + "\n")

    clients: dict[tuple[str, str], BankClient] = {}
    clients_once: dict[tuple[str, str], BankClient] = {}
    quoters: dict[str, BankClient] = {}

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

    def quoter(code: str) -> BankClient:
        # Quotes come from the core process (FxService); while it is down
        # the client moves on to other work rather than wait for it.
        if code not in quoters:
            config = ClientConfig(target=fx_target, deadline_s=2.0, max_attempts=2)
            quoters[code] = BankClient(code, config)
        return quoters[code]

    async def convert(debtor: str, items: list[cpb.TransferInstruction]) -> bool:
        """Lock a quote for each cross-currency item, one CreateQuotes call;
        items whose quote is refused (no provider can deliver) are dropped.
        False if the call failed: nothing is submitted then."""
        # One quote per transfer id: a duplicate inside the batch is the same item.
        cross = list(
            {i.transfer_id: i for i in items if home(i.creditor_bank) != i.amount.currency}.values()
        )
        if not cross:
            return True
        asks = [
            fxpb.CreateQuoteRequest(
                source_currency=i.amount.currency,
                target_currency=home(i.creditor_bank),
                source_amount=i.amount.minor_units,
            )
            for i in cross
        ]
        try:
            answer = await quoter(debtor).quotes(asks, deadline_s=2.0)
        except (HubError, TimeoutError, grpc.aio.AioRpcError) as exc:
            reason = (
                (exc.reason or exc.code.name) if isinstance(exc, HubError) else type(exc).__name__
            )
            out.write(json.dumps({"kind": "quote", "id": "", "failed": reason}) + "\n")
            return False
        refused: set[str] = set()
        for item, result in zip(cross, answer.results, strict=True):
            if result.HasField("error"):
                refused.add(item.transfer_id)
                out.write(
                    json.dumps({"kind": "quote", "id": "", "refused": result.error.reason}) + "\n"
                )
            else:
                item.quote_id = result.quote.quote_id
                out.write(
                    json.dumps({"kind": "quote", "id": "", "provider": result.quote.provider})
                    + "\n"
                )
        items[:] = [i for i in items if i.transfer_id not in refused]
        return True

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
        if workload == "remittance_channel" and not await convert(debtor, items):
            continue
        if not items:
            continue
        contents = {i.transfer_id: [debtor, i.creditor_bank, i.amount.minor_units] for i in items}
        patient = rng.random() >= 0.2
        try:
            if len(items) == 1:
                tid = items[0].transfer_id
                await bank(debtor, patient).submit(items[0])
                record("ack", tid, contents[tid])
                acked.append((tid, debtor))
            else:
                batch = await bank(debtor, patient).submit_batch(
                    items, deadline_s=10.0 if patient else 1.0
                )
                for result in batch.results:
                    tid = result.transfer_id
                    if result.HasField("transfer"):
                        record("ack", tid, contents[tid])
                        acked.append((tid, debtor))
                    else:
                        code = CODE_NAMES.get(result.error.code, str(result.error.code))
                        record("rej", tid, contents[tid], code=code, reason=result.error.reason)
        except HubError as err:
            # The whole call failed: a business refusal of every item, or,
            # with retries exhausted across restarts, an unknown outcome.
            kind = "rej" if err.code in DEFINITE else "ambiguous"
            for tid, content in contents.items():
                record(kind, tid, content, code=err.code.name, reason=err.reason)
        except (TimeoutError, grpc.aio.AioRpcError) as exc:
            for tid, content in contents.items():
                record("ambiguous", tid, content, code="", reason=type(exc).__name__)
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
                out.write(
                    json.dumps(
                        {
                            "kind": "status",
                            "id": tid,
                            "status": int(t.transfer.status),
                            "began": began,
                            "ended": time.time(),
                        }
                    )
                    + "\n"
                )
            except HubError:
                pass  # the hub is restarting
    out.close()
    for c in [*clients.values(), *clients_once.values(), *quoters.values()]:
        await c.close()


# Operator, nemesis, samplers ----------------------------------------------------------


def funding(code: str, currency: str) -> int:
    """What a participant is funded with, and topped up by, in a currency:
    a bank in USD (what it pays in), a provider in what it sells; 0 where
    it only receives."""
    if code in BANKS:
        return LIQUIDITY if currency == "USD" else 0
    return PROVIDER_LIQUIDITY.get(currency, 0) if code in PROVIDERS else 0


async def publish_rates(config: ClientConfig) -> None:
    """Each provider sets its own mids and spreads, as itself (fxp:CODE)."""
    for code, spreads in PROVIDERS.items():
        async with ProviderClient(code, config) as fxp:
            await fxp.publish_rates(MIDS, spreads=spreads)


async def operator_loop(sup: Supervisor, stop: asyncio.Event, ops: Counter[str]) -> None:
    config = ClientConfig(target=sup.services["core"].target, deadline_s=5.0, max_attempts=3)
    treasury_round = 0
    published = time.monotonic()
    currencies = sorted(set(HOME_CURRENCY.values()))
    async with OperatorClient(config) as op:
        while not stop.is_set():
            await asyncio.sleep(random.uniform(1.0, 2.5))
            try:
                for currency in currencies:
                    open_ = await op.list_cycles(currency, npb.CYCLE_STATE_OPEN)
                    if open_:
                        await op.close_cycle(currency, cycle_id=open_[0].cycle_id)
                        ops["close"] += 1
                    for c in await op.list_cycles(currency, npb.CYCLE_STATE_CLOSED):
                        await op.settle_cycle(c.cycle_id)  # races the hub's own auto-settle
                        ops["settle"] += 1
                # Treasury: payer banks drain towards the aggregators, and
                # providers' target currencies towards the creditors; top
                # them up, so the run keeps clearing rather than only
                # refusing, and deposits race with clearing and settlement.
                # The id is fixed per account and round so a retry is one deposit.
                treasury_round += 1
                for b in await op.list_banks():
                    for account in b.accounts:
                        funds = funding(b.code, account.currency)
                        if funds and account.headroom < funds // 2:
                            key = f"{b.code}/{account.currency}/{treasury_round}"
                            await op.deposit(
                                b.code,
                                account.currency,
                                funds,
                                str(uuid.uuid5(uuid.NAMESPACE_URL, key)),
                            )
                            ops["deposit_provider" if b.code in PROVIDERS else "deposit"] += 1
                # Fresh rates now and then, published while faults go on.
                if time.monotonic() - published > 20.0:
                    await publish_rates(config)
                    published = time.monotonic()
                    ops["publish_rates"] += 1
            except HubError:
                ops["call_failed"] += 1


async def inject(sup: Supervisor, kind: str, rng: random.Random, soon: bool = False) -> bool:
    """Inject one fault; True only if it was seen to take effect. Raises on
    a failure of the run itself (PostgreSQL does not restart, a process does
    not come back). `soon`: crash in the first batch, not one of the first four."""
    if kind in ("kill_clearing", "kill_core"):
        name = rng.choice(["clear1", "clear2"]) if kind == "kill_clearing" else "core"
        took = sup.kill(name)
        await asyncio.sleep(rng.uniform(0.2, 1.5))
        sup.start(name)
        await wait_healthy(sup.services[name].target)
        return took
    if kind == "restart_postgres":
        return await asyncio.to_thread(restart_postgres)
    if kind.startswith("crash_batch"):
        name = rng.choice(["clear1", "clear2"])
        point = "before_commit" if kind.endswith("before_commit") else "after_commit"
        crash_at = f"clear_batch:{point}:{1 if soon else rng.randint(1, 4)}"
    else:
        name = "core"
        unit = "close_cycle" if kind == "crash_close" else "settle_cycle"
        crash_at = f"{unit}:{rng.choice(['before_commit', 'after_commit'])}:1"
    svc = sup.services[name]
    sup.kill(name)
    sup.start(name, crash_at)
    before = svc.crashes
    deadline = time.monotonic() + CRASH_WAIT_S
    while svc.crashes == before and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        sup.reap()  # restarts it (without the crash point) once it died there
    fired = svc.crashes > before
    if not fired:  # not reached in time: disarm
        sup.kill(name)
        sup.start(name)
    await wait_healthy(svc.target)
    return fired


async def nemesis(
    sup: Supervisor,
    stop: asyncio.Event,
    armed: Counter[str],
    fired: Counter[str],
    errors: list[str],
    seed: int,
) -> None:
    rng = random.Random(seed * 7 + 1)
    # Shuffled rounds rather than independent draws; the first round holds
    # every kind of fault, close together, and a kind of it that did not fire
    # is tried again at once, so a short run fires each one.
    plan = rng.sample(KINDS, len(KINDS))
    first_round = set(KINDS)
    retries: Counter[str] = Counter()
    while not stop.is_set():
        gap = rng.uniform(0.5, 1.5) if first_round else rng.uniform(2.0, 4.0)
        try:
            await asyncio.wait_for(stop.wait(), gap)
            break
        except TimeoutError:
            pass
        if not plan:
            plan = rng.sample(KINDS, len(KINDS))
        kind = plan.pop(0)
        armed[kind] += 1
        took = False
        try:
            took = await inject(sup, kind, rng, soon=kind in first_round)
        except Exception as exc:
            errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            await asyncio.to_thread(ensure_postgres)
        if took:
            fired[kind] += 1
            first_round.discard(kind)
        elif kind in first_round:
            retries[kind] += 1
            if retries[kind] <= 2:
                plan.insert(0, kind)
            else:
                first_round.discard(kind)


async def reviver(sup: Supervisor, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(0.3)
        sup.reap()


async def limit_sampler(
    db: Database, stop: asyncio.Event, bad: list[str], stats: Counter[str], t0: float
) -> None:
    """Liquidity plus cap, sampled from the account rows once a second for
    the whole run (not only after faults)."""
    seen: set[str] = set()
    while not stop.is_set():
        try:
            rows = await asyncio.to_thread(
                db.read, lambda uow: uow.accounts.all(AccountKind.LIQUIDITY)
            )
            stats["limit_samples"] += 1
            for a in beyond_limit(rows):
                if a.id not in seen:
                    seen.add(a.id)
                    bad.append(
                        f"during run (+{time.monotonic() - t0:.0f} s): {a.id} is beyond its "
                        f"liquidity plus cap (balance {a.balance}, cap {a.net_debit_cap}, "
                        f"unsettled {a.unsettled_net})"
                    )
        except Exception:  # the database is restarting
            stats["limit_samples_skipped"] += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


# Checker: plain functions over plain data ---------------------------------------------

Content = list[Any]  # [debtor, creditor, amount]


@dataclass(frozen=True)
class Rejection:
    code: str
    reason: str
    content: Content


@dataclass
class History:
    """What the clients saw, from their logs."""

    acked: dict[str, Content] = field(default_factory=dict)
    rejected: dict[str, list[Rejection]] = field(default_factory=dict)  # definite only
    ambiguous: dict[str, Content] = field(default_factory=dict)  # incl. transient rejections
    transient: Counter[str] = field(default_factory=Counter)  # code -> rejections
    statuses: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)
    operations: int = 0
    violations: list[str] = field(default_factory=list)
    # Quotes asked for cross-currency items: by provider, refused by reason,
    # calls failed ("refused:REASON", "failed:REASON"); no transfer was sent
    # for a refused or failed one.
    quotes: Counter[str] = field(default_factory=Counter)


def read_history(events: Iterable[Mapping[str, Any]]) -> History:
    h = History()
    for e in events:
        kind, tid = e["kind"], e["id"]
        if kind == "status":
            h.statuses.setdefault(tid, []).append((e["began"], e["ended"], e["status"]))
            continue
        if kind == "quote":
            if e.get("provider"):
                h.quotes[str(e["provider"])] += 1
            else:
                h.quotes[
                    f"refused:{e['refused']}" if "refused" in e else f"failed:{e['failed']}"
                ] += 1
            continue
        h.operations += 1
        content = list(e["content"])
        if kind == "ack":
            if tid in h.acked and h.acked[tid] != content:
                h.violations.append(
                    f"{tid} acknowledged as {h.acked[tid]} and as {content}: one id, two contents"
                )
            h.acked.setdefault(tid, content)
        elif kind == "rej" and e.get("code") in DEFINITE_NAMES:
            h.rejected.setdefault(tid, []).append(Rejection(e["code"], e["reason"], content))
        else:  # ambiguous, or a transient rejection: it may or may not have happened
            if kind == "rej":
                h.transient[e.get("code") or "?"] += 1
            h.ambiguous.setdefault(tid, content)
    return h


def check_outcomes(
    h: History,
    stored: Iterable[tuple[str, Content]],
    probes: Mapping[str, Sequence[Content | None]],
) -> tuple[list[str], Counter[str]]:
    """Client outcomes against the stored transfers. `stored` is every row
    (id, content); `probes` holds, per ambiguous id, what each GetTransfer
    said (the content, or None for TRANSFER_NOT_FOUND)."""
    bad = list(h.violations)
    figures: Counter[str] = Counter()
    rows: dict[str, list[Content]] = defaultdict(list)
    for tid, content in stored:
        rows[tid].append(list(content))
    for tid, copies in rows.items():
        if len(copies) > 1:
            bad.append(f"transfer {tid} is stored {len(copies)} times")
    for tid, content in h.acked.items():
        if tid not in rows:
            bad.append(f"acknowledged {tid} is missing")
        elif rows[tid][0] != content:
            bad.append(f"acknowledged {tid} is stored as {rows[tid][0]}, acknowledged as {content}")
    reported: set[str] = set()
    for tid, rejections in h.rejected.items():
        if tid in h.acked:
            r = rejections[0]
            bad.append(f"{tid} was acknowledged and also definitely rejected ({r.code} {r.reason})")
            continue
        for r in rejections:
            if tid not in rows:
                continue
            # "this id exists with other content" rejects the content, not the id
            if r.reason == DUPLICATE and all(c != r.content for c in rows[tid]):
                continue
            bad.append(f"rejected {tid} ({r.code} {r.reason}) exists")
            reported.add(tid)
    found: set[str] = set()
    for tid, content in h.ambiguous.items():
        if tid in h.acked:
            figures["ambiguous_acknowledged_later"] += 1
            continue
        answers = list(probes.get(tid, ()))
        if not answers:
            bad.append(f"ambiguous {tid} was not resolved")
            continue
        if any(a != answers[0] for a in answers[1:]):
            bad.append(f"ambiguous {tid} resolved differently by different reads: {answers}")
        answer = answers[0]
        if answer is None:
            figures["ambiguous_absent"] += 1
            if tid in rows:
                bad.append(f"ambiguous {tid} reported absent but exists")
            continue
        figures["ambiguous_exists"] += 1
        found.add(tid)
        if list(answer) != content:
            bad.append(f"ambiguous {tid} resolved as {answer}, submitted as {content}")
        if tid not in rows:
            bad.append(f"ambiguous {tid} reported to exist but is not stored")
        elif rows[tid][0] != content:
            bad.append(f"ambiguous {tid} is stored as {rows[tid][0]}, submitted as {content}")
    # Nothing may exist that no client asked for: every stored transfer is
    # one acknowledged or one ambiguous submission that took effect.
    for tid in sorted(set(rows) - set(h.acked) - found):
        if tid not in reported:
            bad.append(f"transfer {tid} exists but no client submission explains it")
    return bad, figures


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


def check_settlements(snapshot: AuditSnapshot) -> list[str]:
    """A cycle is settled at most once (one posting, one entry per
    participant's account; the hub's settlement account is every entry's
    counterpart) and only when it is SETTLED: the audit's
    `check_settled_once`; and every closed cycle has been settled (called
    after the recovered hub had its chance)."""
    bad = check_settled_once(snapshot)
    for c in sorted(snapshot.cycles, key=lambda c: c.id):
        if c.state is CycleState.CLOSED:
            bad.append(f"cycle {c.id} is closed but was not settled after recovery")
    return bad


@dataclass(frozen=True)
class LimitEvent:
    at: float  # epoch seconds the change was stamped with
    account: str
    amount: int  # its effect on the account's balance plus unsettled net
    what: str


def check_limit_history(
    events: Iterable[LimitEvent], caps: Mapping[str, int], slack_s: float = LIMIT_SLACK_S
) -> list[str]:
    """No bank was ever beyond its liquidity plus cap, over the whole run.

    A bank's headroom is balance + cap + unsettled net, and balance plus
    unsettled net is its deposits minus withdrawals and gross payments plus
    the net of its accepted, not cancelled, netted transfers (settlement only
    moves amounts from unsettled to balance). So replaying every stored
    change in time order gives the position at every moment: it must never
    fall below minus the cap. Caps are not historized; the chaos run sets
    them once before any transfer, so the current cap is the cap at every
    moment (`caps`). Every change touching an account also writes the
    account's row, so commits touching one account are serialized; but a
    change is stamped when its transaction starts, not when it commits, so
    credits are moved `slack_s` earlier (a debit may have seen a credit whose
    stamp is a little later than its own). A batch's items share a stamp and
    the batch commits as a whole, so ties put credits first."""
    bad: list[str] = []
    by_account: dict[str, list[LimitEvent]] = defaultdict(list)
    for e in events:
        by_account[e.account].append(e)
    for aid, cap in sorted(caps.items()):
        ordered = sorted(
            by_account.get(aid, []),
            key=lambda e: (e.at - slack_s if e.amount > 0 else e.at, e.amount <= 0),
        )
        position = 0
        for e in ordered:
            position += e.amount
            if e.amount < 0 and position + cap < 0:
                bad.append(
                    f"{aid} went {-(position + cap)} beyond its liquidity plus cap "
                    f"at {e.at:.3f} ({e.what})"
                )
                break
    return bad


def limit_events(snapshot: AuditSnapshot) -> tuple[list[LimitEvent], dict[str, int]]:
    """Every stored change of a participant's balance plus unsettled net
    (its ledger entries other than settlements, which only move unsettled to
    balance, and its transfers' legs, and their cancellations), and the
    caps: the input of `check_limit_history`. An FX provider's liquidity
    accounts are replayed like a bank's: a conversion's legs are paid to it
    in the source currency and by it in the target currency."""
    caps = {a.id: a.net_debit_cap for a in snapshot.accounts if a.kind == AccountKind.LIQUIDITY}
    events = [
        LimitEvent(e.posted_at.timestamp(), e.account_id, e.amount, e.posting_id)
        for e in snapshot.entries
        if e.account_id in caps and not is_settlement(e)
    ]
    for t in snapshot.transfers:  # gross ones have no legs: their entries are the change
        cancelled = snapshot.cancelled_at.get(t.transfer_id)
        if t.status is not TransferStatus.CANCELLED:
            cancelled = None
        for leg in t.legs():
            for party, delta in ((leg.payer, -leg.amount), (leg.payee, leg.amount)):
                aid = position_account_id(party, leg.currency)
                if aid not in caps:  # the hub's FX account: a leg from before FX providers
                    continue
                events.append(
                    LimitEvent(t.accepted_at.timestamp(), aid, delta, f"transfer {t.transfer_id}")
                )
                if cancelled is not None:
                    events.append(
                        LimitEvent(cancelled.timestamp(), aid, -delta, f"cancel of {t.transfer_id}")
                    )
    return events, caps


# The run ----------------------------------------------------------------------


def closed_cycles(conn: Connection) -> list[str]:
    query = select(cycles.c.id).where(cycles.c.state == CycleState.CLOSED)
    return [str(r[0]) for r in conn.execute(query)]


async def leave_a_cycle_half_settled(sup: Supervisor) -> bool:
    """Close the open cycle on a core that dies inside the settlement its
    auto-settle then starts: the recovered hub must finish it. True if the
    crash happened (the cycle is left closed)."""
    core = sup.services["core"]
    sup.kill("core")
    sup.start("core", "settle_cycle:before_commit:1")
    await wait_healthy(core.target)
    config = ClientConfig(target=core.target, deadline_s=10.0, max_attempts=3)
    async with OperatorClient(config) as op:
        await op.close_cycle("USD")
    deadline = time.monotonic() + CRASH_WAIT_S
    while time.monotonic() < deadline:
        if core.proc is None or core.proc.poll() is not None:
            break
        await asyncio.sleep(0.1)
    text = core.log.read_text(errors="replace") if core.log else ""
    return (
        core.proc is not None
        and core.proc.returncode == 137
        and "crash injected at settle_cycle:before_commit" in text
    )


async def recover(sup: Supervisor, db: Database, bad: list[str]) -> dict[str, Any]:
    """Restart every process (without crash points), then wait (bounded)
    for the recovered hub to settle every closed cycle by itself."""
    half_settled = await leave_a_cycle_half_settled(sup)
    left_closed = await asyncio.to_thread(db.read, lambda uow: closed_cycles(uow.conn))
    started = time.monotonic()
    for name in sup.services:
        sup.kill(name)
        sup.start(name)
    for svc in sup.services.values():
        await wait_healthy(svc.target)
    while left := await asyncio.to_thread(db.read, lambda uow: closed_cycles(uow.conn)):
        if time.monotonic() - started > SETTLE_WAIT_S:
            bad.append(f"the recovered hub did not settle {left} within {SETTLE_WAIT_S:.0f} s")
            break
        await asyncio.sleep(0.5)
    return {
        "final_settlement_crashed": half_settled,
        "closed_cycles_at_recovery": len(left_closed),
        "recovered_hub_settled_them_within_s": round(time.monotonic() - started, 1),
    }


async def resolve(
    sup: Supervisor, ids: Mapping[str, Content], bad: list[str]
) -> dict[str, list[Content | None]]:
    """Ask GetTransfer, through each clearing process, about every id."""
    probes: dict[str, list[Content | None]] = defaultdict(list)
    clients: dict[tuple[str, str], BankClient] = {}
    gate = asyncio.Semaphore(32)

    async def probe(tid: str, debtor: str, target: str) -> None:
        key = (debtor, target)
        if key not in clients:
            clients[key] = BankClient(debtor, ClientConfig(target=target, deadline_s=10.0))
        async with gate:
            try:
                t = await clients[key].get(tid)
                probes[tid].append([t.debtor_bank, t.creditor_bank, t.amount.minor_units])
            except HubError as err:
                if err.reason == "TRANSFER_NOT_FOUND":
                    probes[tid].append(None)
                else:
                    bad.append(f"ambiguous {tid} could not be resolved through {target}: {err}")

    targets = [sup.services["clear1"].target, sup.services["clear2"].target]
    await asyncio.gather(
        *(probe(tid, content[0], target) for tid, content in ids.items() for target in targets)
    )
    for c in clients.values():
        await c.close()
    return probes


# Status streams ---------------------------------------------------------------

StreamItem = tuple[str, str, int]  # ("transfer" | "cycle", id, status)


def stream_item(e: cpb.StatusEvent) -> StreamItem:
    if e.HasField("transfer"):
        return ("transfer", e.transfer.transfer_id, int(e.transfer.status))
    return ("cycle", e.cycle.cycle_id, int(e.cycle.status))


@dataclass
class Watched:
    """What one bank's status stream delivered across every reconnect."""

    items: list[StreamItem] = field(default_factory=list)
    token: str = ""
    reconnects: int = 0
    errors: Counter[str] = field(default_factory=Counter)


async def stream_watcher(
    targets: list[str], watched: Mapping[str, Watched], stop: asyncio.Event
) -> None:
    """Keep a status stream open per bank through every kill and restart,
    reconnecting (to either clearing process in turn) from the last token,
    until `stop` is set."""
    since = cpb.WatchTransfersRequest()
    since.since.FromSeconds(0)

    async def follow(bank: str, w: Watched) -> None:
        attempt = 0
        while not stop.is_set():
            target = targets[attempt % len(targets)]
            attempt += 1
            async with grpc.aio.insecure_channel(target) as channel:
                stub = cgrpc.ClearingServiceStub(channel)
                request = cpb.WatchTransfersRequest(resume_token=w.token) if w.token else since
                try:
                    call = stub.WatchTransfers(
                        request, metadata=(("x-remitnet-principal", f"bank:{bank}"),)
                    )
                    async for message in call:
                        w.items += map(stream_item, message.events)
                        w.token = message.events[-1].resume_token
                except grpc.aio.AioRpcError as err:
                    w.errors[err.code().name] += 1
            w.reconnects += 1
            await asyncio.sleep(0.2)

    tasks = [asyncio.create_task(follow(b, w)) for b, w in watched.items()]
    await stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def drain_streams(
    db: Database, watched: Mapping[str, Watched], seconds: float = 60.0
) -> dict[str, list[StreamItem]]:
    """With the hub quiet, wait (bounded) until every bank's stream has
    caught up with its feed, and return each feed as the database holds it,
    expanded, for check_streams."""
    expected = {
        bank: await asyncio.to_thread(db.read, lambda uow, b=bank: feed_rows(uow, b))
        for bank in watched
    }
    for _ in range(int(seconds / 0.2)):
        if all(len(w.items) - w.reconnects >= len(expected[b]) for b, w in watched.items()):
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)  # anything past the feed would show now
    return expected


def feed_rows(uow: UnitOfWork, bank: str) -> list[StreamItem]:
    out: list[StreamItem] = []
    seq = 1
    while page := uow.events.load(bank, seq, 20_000):
        for event in page:
            if event.cycle is not None:
                out.append(("cycle", event.cycle.id, int(event.status)))
            out += [("transfer", t.transfer_id, int(event.status)) for t in event.transfers]
        seq = page[-1].seq + 1
    return out


def check_streams(
    watched: Mapping[str, Sequence[StreamItem]],
    expected: Mapping[str, Sequence[StreamItem]],
    acked: Mapping[str, Content],
    reconnects: Mapping[str, int],
) -> list[str]:
    """Every bank's stream, across its reconnects, delivered its feed in
    order: each event once, except at most the one in flight at each
    reconnect; every acknowledged transfer the bank is party to is in it,
    accepted."""
    bad: list[str] = []
    for bank, items in watched.items():
        want = list(expected.get(bank, []))
        got: list[StreamItem] = []
        repeats = 0
        for item in items:
            if got and item == got[-1]:
                repeats += 1
                continue
            got.append(item)
        if repeats > reconnects.get(bank, 0):
            bad.append(
                f"stream of {bank}: {repeats} repeats over {reconnects.get(bank, 0)} reconnects"
            )
        if got != want:
            at = next((i for i, (g, w) in enumerate(zip(got, want, strict=False)) if g != w), None)
            where = min(len(got), len(want)) if at is None else at
            bad.append(
                f"stream of {bank}: delivered {len(got)} events, the feed holds {len(want)}; "
                f"first difference at {where}"
            )
        accepted = {i[1] for i in got if i[0] == "transfer" and i[2] == TransferStatus.ACCEPTED}
        missing = [t for t, c in acked.items() if bank in (c[0], c[1]) and t not in accepted]
        if missing:
            bad.append(f"stream of {bank}: {len(missing)} acknowledged transfers never arrived")
    return bad


def stored_contents(snapshot: AuditSnapshot) -> list[tuple[str, Content]]:
    """Every stored transfer's (id, content), for `check_outcomes`."""
    return [(t.transfer_id, [t.debtor, t.creditor, t.amount]) for t in snapshot.transfers]


async def check(sup: Supervisor, db: Database, logs: list[Path], bad: list[str]) -> dict[str, Any]:
    h = read_history(
        json.loads(line) for log in logs for line in log.read_text().splitlines() if line
    )
    snapshot = await asyncio.to_thread(read_snapshot, db)
    unresolved = {tid: c for tid, c in h.ambiguous.items() if tid not in h.acked}
    probes = await resolve(sup, unresolved, bad)
    outcome_violations, resolved = check_outcomes(h, stored_contents(snapshot), probes)
    bad += outcome_violations
    for tid, seen in h.statuses.items():
        if backwards := moved_backwards(seen):
            bad.append(f"status of {tid} moved backwards: {backwards}")
    bad += check_settlements(snapshot)
    bad += check_ledger(snapshot)
    bad += check_hub_unfunded(snapshot)
    limits, caps = limit_events(snapshot)
    bad += check_limit_history(limits, caps)
    # The hub's audit over the same snapshot, less what was reported above.
    report = audit_snapshot(snapshot)
    reported = set(bad)
    bad += [f"audit: {v}" for v in report.violations if v not in reported]
    reasons = Counter(r.reason for rs in h.rejected.values() for r in rs)
    return {
        "operations": h.operations,
        "acknowledged": len(h.acked),
        "rejected": len(h.rejected),
        "rejected_by_reason": dict(reasons.most_common()),
        "transient_rejections": dict(h.transient),
        "quotes": dict(h.quotes.most_common()),
        "ambiguous": len(h.ambiguous),
        "ambiguous_exists": resolved["ambiguous_exists"],
        "ambiguous_absent": resolved["ambiguous_absent"],
        "ambiguous_acknowledged_later": resolved["ambiguous_acknowledged_later"],
        "status_samples": sum(len(v) for v in h.statuses.values()),
        "limit_events_replayed": len(limits),
        "transfers_stored": report.transfers,
        "conversions_by_provider": dict(
            Counter(
                t.fx_provider or "HUB" for t in snapshot.transfers if t.creditor_cycle_id
            ).most_common()
        ),
        "cycles": report.cycles,
        "cycles_settled": sum(1 for c in snapshot.cycles if c.state is CycleState.SETTLED),
        "ledger_entries": report.entries,
    }


async def run(seconds: float, clients: int, seed: int) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    logs_dir = OUT / "logs"
    logs_dir.mkdir(exist_ok=True)
    for old in logs_dir.glob("*.log"):
        old.unlink()
    ensure_postgres()
    name = f"remitnet_chaos_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
        conn.execute(f"CREATE DATABASE {name}".encode())
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    db = Database(url)
    from remitnet.services.adapters.db import migrate

    migrate.upgrade(db)
    sup = Supervisor(url, logs_dir)
    armed: Counter[str] = Counter()
    fired: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    stats: Counter[str] = Counter()
    bad: list[str] = []
    errors: list[str] = []
    figures: dict[str, Any] = {}
    recovery: dict[str, Any] = {}
    started = time.perf_counter()
    streams: asyncio.Task[None] | None = None
    streams_stop = asyncio.Event()
    try:
        for service_name in sup.services:
            sup.start(service_name)
        for service in sup.services.values():
            await wait_healthy(service.target)
        core_config = ClientConfig(target=sup.services["core"].target)
        async with OperatorClient(core_config) as op:
            for code, region in BANKS.items():
                await op.create_bank(code, code, region, sorted({"USD", HOME_CURRENCY[region]}))
                await op.deposit(
                    code, "USD", LIQUIDITY, deposit_id=str(uuid.uuid5(uuid.NAMESPACE_DNS, code))
                )
                await op.set_cap(code, "USD", CAP)
            for code in PROVIDERS:
                await op.create_provider(code, code, "us-east1", sorted(HOME_CURRENCY.values()))
                for currency, funds in PROVIDER_LIQUIDITY.items():
                    key = f"{code}/{currency}"
                    await op.deposit(
                        code, currency, funds, deposit_id=str(uuid.uuid5(uuid.NAMESPACE_DNS, key))
                    )
        await publish_rates(core_config)
        print(
            f"chaos: {len(BANKS)} banks, {len(PROVIDERS)} FX providers, {clients} client "
            f"processes, {seconds:.0f} s of faults",
            flush=True,
        )
        ctx = mp.get_context("spawn")
        logs = [OUT / f"client-{i}.jsonl" for i in range(clients)]
        targets = [sup.services["clear1"].target, sup.services["clear2"].target]
        watched = {bank: Watched() for bank in BANKS}
        streams = asyncio.create_task(stream_watcher(targets, watched, streams_stop))
        fx_target = sup.services["core"].target
        procs = [
            ctx.Process(
                target=client_main, args=(i, targets, fx_target, seconds, seed, str(logs[i]))
            )
            for i in range(clients)
        ]
        for p in procs:
            p.start()
        stop = asyncio.Event()
        t0 = time.monotonic()
        tasks = [
            asyncio.create_task(nemesis(sup, stop, armed, fired, errors, seed)),
            asyncio.create_task(operator_loop(sup, stop, ops)),
            asyncio.create_task(reviver(sup, stop)),
            asyncio.create_task(limit_sampler(db, stop, bad, stats, t0)),
        ]
        while any(p.is_alive() for p in procs):
            await asyncio.sleep(5)
            print(
                f"  … {time.monotonic() - t0:4.0f} s, faults fired {dict(fired)}, "
                f"armed {sum(armed.values())}",
                flush=True,
            )
        stop.set()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, BaseException):
                errors.append(f"background task failed: {type(result).__name__}: {result}")
        for p in procs:
            p.join()
            if p.exitcode != 0:
                errors.append(f"client process {p.name} exited with {p.exitcode}")
        sup.reap()
        ensure_postgres()
        recovery = await recover(sup, db, bad)
        expected = await drain_streams(db, watched)
        streams_stop.set()
        await streams
        figures = await check(sup, db, logs, bad)
        acked = read_history(
            json.loads(line) for log in logs for line in log.read_text().splitlines() if line
        ).acked
        bad += check_streams(
            {b: w.items for b, w in watched.items()},
            expected,
            acked,
            {b: w.reconnects for b, w in watched.items()},
        )
        figures["stream_events_delivered"] = sum(len(w.items) for w in watched.values())
        figures["stream_reconnects"] = sum(w.reconnects for w in watched.values())
        figures["stream_errors"] = dict(sum((w.errors for w in watched.values()), Counter()))
    except Exception as exc:
        errors.append(f"run failed: {type(exc).__name__}: {exc}")
    finally:
        if streams is not None:
            streams_stop.set()
            await asyncio.gather(streams, return_exceptions=True)
        sup.stop_all()
        ensure_postgres()
        db.dispose()
    errors += sup.unexpected
    summary = {
        "seconds": round(time.perf_counter() - started, 1),
        "clients": clients,
        **figures,
        **recovery,
        "limit_samples": stats["limit_samples"],
        "limit_samples_skipped": stats["limit_samples_skipped"],
        "operator": dict(ops),
        "faults_armed": {k: armed[k] for k in KINDS},
        "faults_fired": {k: fired[k] for k in KINDS},
        "errors": errors,
        "violations": len(bad),
    }
    print("\nchaos summary")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    for v in bad[:50]:
        print(f"  VIOLATION: {v}")
    for e in errors[:50]:
        print(f"  ERROR: {e}")
    (OUT / "latest.json").write_text(json.dumps(summary, indent=2))
    if not bad and not errors:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
    print(json.dumps(summary))
    return 1 if bad or errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    return asyncio.run(run(args.seconds, args.clients, args.seed))


if __name__ == "__main__":
    sys.exit(main())
