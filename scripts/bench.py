"""Throughput benchmark: batch netting versus gross settlement on the seed
paper's three workloads (`make bench`, `make bench-quick`).

The hub runs in its own process(es) on PostgreSQL at SERIALIZABLE with
synchronous commit on; load comes from separate client processes over real
gRPC. For each workload it measures three paths: batch (SubmitTransfers of
1,000 items, several clients), unary (SubmitTransfer, >= 64 in flight) and
gross (SubmitTransfer in gross settlement mode: one serializable transaction
per transfer moving both banks' balances). Then it closes and settles the
cycle, and at the end it measures settling one large cycle and the batch path
split over two clearing processes. The cross-currency workload converts
through two funded FX providers competing on spread (FX_PROVIDERS), and its
rates against the same-currency workload's are reported in the same run.
Writes build/bench/latest.{json,md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import psycopg
from hubs import HubExited, HubProcess
from hubs import start_hub as spawn_hub

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clearing.v1 import clearing_pb2_grpc as cgrpc
from remitnet.clients.base import ClientConfig
from remitnet.clients.errors import HubError
from remitnet.clients.operator import Onboarding, OperatorClient
from remitnet.clients.provider import ProviderClient
from remitnet.common.v1.money_pb2 import Money
from remitnet.fx.v1 import fx_pb2 as fxpb
from remitnet.fx.v1 import fx_pb2_grpc as fxgrpc

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
FUNDS = 10**15  # nothing in the benchmark is refused for liquidity
PRINCIPAL = "x-remitnet-principal"


@dataclass(frozen=True)
class Profile:
    name: str
    path_seconds: float
    batch_clients: int
    unary_clients: int
    unary_in_flight: int  # per client process
    settle_transfers: int
    settle_banks: int
    split_seconds: float
    stream_seconds: float = 30.0
    # ListTransfers' first page is timed at each of these history sizes.
    history_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    # Expiry (scripts/bench_expiry.py): reservations expired, and the
    # expirer's rows per transaction tried (one fresh seed each).
    expiry_transfers: int = 100_000
    expiry_limits: tuple[int, ...] = (1_000, 2_500, 5_000, 10_000, 20_000)
    # The confirmed path: how long a creditor bank gathers what it received
    # before it answers (_creditors).
    confirm_linger_s: float = 0.25


PROFILES = {
    "full": Profile("full", 20.0, 3, 2, 48, 1_000_000, 100, 20.0),
    "quick": Profile(
        "quick", 6.0, 3, 2, 40, 100_000, 100, 6.0, 6.0, (10_000, 100_000), 100_000, (5_000, 20_000)
    ),
}


# Workloads ------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    banks: dict[str, str]  # code -> region
    # (debtor, creditor) pairs drawn for a transfer, by a seeded RNG
    pick: Callable[[random.Random], tuple[str, str]]
    amounts: tuple[int, int]
    # bank -> home currency, for cross-currency workloads (None: all USD).
    # Each bank also holds USD, the currency of the gross baseline.
    currency_of: dict[str, str] | None = None

    def currency(self, bank: str) -> str:
        return self.currency_of[bank] if self.currency_of else "USD"


def aggregated_payment() -> Workload:
    payers = [f"PAY{i:03d}" for i in range(60)]
    aggregators = [f"AGG{i:03d}" for i in range(4)]
    banks = {b: "us-east1" for b in payers} | {a: "us-west1" for a in aggregators}

    def pick(rng: random.Random) -> tuple[str, str]:
        if rng.random() < 0.85:  # a payment to a merchant behind an aggregator
            return rng.choice(payers), rng.choice(aggregators)
        return rng.choice(aggregators), rng.choice(payers)  # payouts and refunds

    return Workload("aggregated_payment", banks, pick, (100, 20_000))


def high_speed_sales() -> Workload:
    buyers = [f"BUY{i:03d}" for i in range(50)]
    banks = {b: "europe-west1" for b in buyers} | {"FLASH001": "europe-west1"}

    def pick(rng: random.Random) -> tuple[str, str]:
        if rng.random() < 0.85:  # the flash sale: one merchant's bank
            return rng.choice(buyers), "FLASH001"
        a, b = rng.sample(buyers, 2)
        return a, b

    return Workload("high_speed_sales", banks, pick, (500, 50_000))


# Cross-currency corridors price through these mid rates (cross via USD).
REGION_CURRENCY = {
    "us-east1": "USD",
    "europe-west1": "EUR",
    "asia-southeast1": "PHP",
    "africa-west1": "NGN",
}
USD_RATES = {"EUR": "0.92", "PHP": "56.10", "NGN": "1480"}
# FX providers of the cross-currency workload: the same mids, their own
# spreads per USD pair (basis points), funded with FUNDS in every currency, so
# nothing is refused for a provider's liquidity either. Best price: FXPALPHA
# wins USD->PHP and PHP->USD, FXPBETA USD->NGN; EUR->NGN is a cross, priced at
# the hub's corridor spread for both, and goes to FXPALPHA on the tie.
FX_PROVIDERS = {
    "FXPALPHA": {("USD", "EUR"): 30, ("USD", "PHP"): 25, ("USD", "NGN"): 45},
    "FXPBETA": {("USD", "EUR"): 35, ("USD", "PHP"): 40, ("USD", "NGN"): 30},
}


def remittance_channel() -> Workload:
    regions = ["us-east1", "europe-west1", "asia-southeast1", "africa-west1"]
    banks = {f"REM{r[:2].upper()}{i:02d}": r for r in regions for i in range(10)}
    by_region: dict[str, list[str]] = {}
    for code, region in banks.items():
        by_region.setdefault(region, []).append(code)
    corridors = [("us-east1", "asia-southeast1"), ("europe-west1", "africa-west1"),
                 ("us-east1", "africa-west1"), ("asia-southeast1", "us-east1")]  # fmt: skip

    def pick(rng: random.Random) -> tuple[str, str]:
        src, dst = rng.choice(corridors)
        return rng.choice(by_region[src]), rng.choice(by_region[dst])

    currency_of = {code: REGION_CURRENCY[region] for code, region in banks.items()}
    return Workload("remittance_channel", banks, pick, (2_000, 300_000), currency_of)


def big_cycle(banks: int = 100) -> Workload:
    """Uniform traffic among many banks: the large cycle settlement is timed on."""
    codes = {f"BIG{i:03d}": "us-east1" for i in range(banks)}
    names = list(codes)

    def pick(rng: random.Random) -> tuple[str, str]:
        a, b = rng.sample(names, 2)
        return a, b

    return Workload("big_cycle", codes, pick, (1, 10_000))


def one_creditor() -> Workload:
    """Every transfer credits one bank: the status stream's flood
    (scripts/bench_stream.py)."""
    senders = [f"SRC{i:03d}" for i in range(20)]
    banks = {b: "us-east1" for b in senders} | {"SINK0001": "us-east1"}

    def pick(rng: random.Random) -> tuple[str, str]:
        return rng.choice(senders), "SINK0001"

    return Workload("one_creditor", banks, pick, (100, 20_000))


WORKLOADS = {w.name: w for w in (aggregated_payment(), high_speed_sales(), remittance_channel())}
EXTRA_WORKLOADS = {"big_cycle": big_cycle(), "one_creditor": one_creditor()}


def workload_named(name: str) -> Workload:
    """A workload by name; `big_cycle:N` is the uniform one over N banks."""
    if name.startswith("big_cycle:"):
        return big_cycle(int(name.split(":", 1)[1]))
    return WORKLOADS.get(name) or EXTRA_WORKLOADS[name]


def instruction(
    rng: random.Random, creditor: str, lo: int, hi: int, currency: str = "USD"
) -> cpb.TransferInstruction:
    return cpb.TransferInstruction(
        transfer_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        creditor_bank=creditor,
        amount=Money(currency=currency, minor_units=rng.randint(lo, hi)),
    )


def uuid4s(rng: random.Random, n: int) -> list[str]:
    """n random (version 4) UUIDs in canonical form from one draw of bytes:
    several times cheaper than n calls of uuid.UUID."""
    h = rng.randbytes(16 * n).hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{'89ab'[int(h[i + 16], 16) & 3]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


# Hub processes --------------------------------------------------------------


def start_hub(db_url: str, log: Path, *only: str, tree: Path = ROOT) -> HubProcess:
    """A hub of this tree, or (for an A/B, scripts/ab.py) of another checkout
    with its own .venv; the run ends if it does not become healthy."""
    python = sys.executable if tree == ROOT else str(tree / ".venv" / "bin" / "python")
    try:
        return spawn_hub(db_url, only=only, log=log, cwd=tree, python=python, wait=60)
    except (HubExited, TimeoutError) as exc:
        raise SystemExit(str(exc)) from exc


def fresh_database() -> tuple[str, str]:
    name = f"remitnet_bench_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
        conn.execute(f"CREATE DATABASE {name}".encode())
        sync = conn.execute(b"SHOW synchronous_commit").fetchone()
    assert sync is not None and sync[0] == "on", "the benchmark runs with durable commits"
    return name, f"postgresql://postgres@127.0.0.1:5432/{name}"


def stored_transfers(name: str) -> int:
    with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={name}") as conn:
        row = conn.execute(b"SELECT count(*) FROM transfers").fetchone()
    return int(row[0]) if row else 0


def reserved_left(name: str) -> int:
    """Stored transfers still RESERVED (the confirmed path answers all)."""
    with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={name}") as conn:
        row = conn.execute(b"SELECT count(*) FROM transfers WHERE status = 5").fetchone()
    return int(row[0]) if row else 0


def conversions_by_provider(name: str) -> dict[str, int]:
    """Stored cross-currency transfers per FX provider (none through the hub)."""
    with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={name}") as conn:
        rows = conn.execute(
            b"SELECT coalesce(fx_provider, 'HUB'), count(*) FROM transfers "
            b"WHERE creditor_currency IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).fetchall()
    return {str(code): int(n) for code, n in rows}


def drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


async def onboard_providers(op: OperatorClient, currencies: list[str]) -> None:
    """FX_PROVIDERS, funded in every currency (they sell each in some
    corridor), publishing their rates as themselves (fxp:CODE). A hub from
    before FX providers (an A/B base, scripts/ab.py) refuses that principal:
    the operator's rates are then its dealer's, as they were."""
    existing = {b.code for b in await op.list_banks()}
    mids = {("USD", c): r for c, r in USD_RATES.items()}
    for code, spreads in FX_PROVIDERS.items():
        if code not in existing:
            await op.create_provider(code, code, "us-east1", currencies)
            for currency in currencies:
                await op.deposit(code, currency, FUNDS)
        async with ProviderClient(code, op.config) as fxp:
            try:
                await fxp.publish_rates(mids, spreads=spreads)
            except HubError as err:
                if err.code not in (
                    grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.UNAUTHENTICATED,
                ):
                    raise
                await op.update_rates(mids)
                return


async def onboard(
    target: str,
    banks: dict[str, str],
    currency_of: dict[str, str] | None = None,
    bics: dict[str, str] | None = None,
) -> None:
    """Create and fund `banks` (code -> region) not there yet; `bics`: their
    BICs, for the ISO 20022 edge (bench_iso20022.py)."""
    async with OperatorClient(ClientConfig(target=target, deadline_s=60)) as op:
        if currency_of:
            await onboard_providers(op, sorted({"USD", *currency_of.values()}))
        existing = {b.code for b in await op.list_banks()}
        # Every deposit is a debit of the hub's reserve account: past about
        # 9,000 banks at FUNDS each it would leave int64 (the hub refuses
        # the deposit, AMOUNT_OUT_OF_RANGE), so many banks get less each.
        funds = min(FUNDS, (2**63 - 1) // (2 * len(banks) + 64))
        todo = []
        for code, region in banks.items():
            if code in existing:
                continue
            currencies = sorted({"USD", currency_of[code]} if currency_of else {"USD"})
            todo.append(
                Onboarding(
                    code, code, region, currencies,
                    deposits=dict.fromkeys(currencies, funds), bic=(bics or {}).get(code, ""),
                )
            )  # fmt: skip
        # The operator's bulk path: a sliding window of banks in flight.
        for answer in await op.onboard_many(todo):
            if isinstance(answer, HubError):
                raise answer


# Load generators (separate processes) -----------------------------------------


@dataclass
class LoadResult:
    transfers: int = 0
    rejected: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    resubmitted: int = 0
    started: float = 0.0
    finished: float = 0.0
    # The confirmed path: transfers answered RESERVED by SubmitTransfers
    # (`transfers` counts those the creditors then confirmed ACCEPTED), and
    # the ConfirmTransfers calls that did it.
    reserved: int = 0
    confirm_calls: int = 0
    submit_ms: list[float] = field(default_factory=list)  # per SubmitTransfers call
    confirm_ms: list[float] = field(default_factory=list)  # per ConfirmTransfers call

    @staticmethod
    def merge(results: Sequence[LoadResult]) -> LoadResult:
        """The client processes' results as one load: counts summed,
        latencies pooled, from the first start to the last finish."""
        return LoadResult(
            transfers=sum(r.transfers for r in results),
            rejected=sum(r.rejected for r in results),
            resubmitted=sum(r.resubmitted for r in results),
            latencies_ms=[x for r in results for x in r.latencies_ms],
            started=min(r.started for r in results),
            finished=max(r.finished for r in results),
        )


def _client_main(
    path: str,
    target: str,
    workload: str,
    seed: int,
    seconds: float,
    in_flight: int,
    out: Any,
    handoff: Any = None,
) -> None:
    chosen = workload_named(workload)
    result = asyncio.run(_client(path, target, chosen, seed, seconds, in_flight, handoff))
    out.send(asdict(result))
    out.close()


async def _client(
    path: str,
    target: str,
    workload: Workload,
    seed: int,
    seconds: float,
    in_flight: int,
    handoff: Any = None,
) -> LoadResult:
    """One client process. On the confirmed path each batch asks for the
    creditor's confirmation (require_confirmation) and the ids its answer
    reports RESERVED go, by creditor, to `handoff` (the creditor-side
    process, `_creditor_main`), followed by None when the time is up."""
    rng = random.Random(seed)
    channel = grpc.aio.insecure_channel(
        target,
        options=[
            # The hub's documented limit (README "Limits"), as a bank's stack.
            ("grpc.max_send_message_length", 4 << 20),
            ("grpc.max_receive_message_length", 4 << 20),
        ],
    )
    stub = cgrpc.ClearingServiceStub(channel)
    fx = fxgrpc.FxServiceStub(channel)
    result = LoadResult()
    lo, hi = workload.amounts
    deadline = time.monotonic() + seconds
    result.started = time.time()

    confirm = path == "confirmed"

    def next_batch() -> tuple[str, cpb.SubmitTransfersRequest]:
        # Every item of a batch is sent by the calling bank; creditors follow
        # the workload's distribution. Built in place and with ids from one
        # random draw: the load generator shares the cores with the hub, so
        # its own cost per item is kept small.
        debtor, _ = workload.pick(rng)
        currency = workload.currency(debtor)
        request = cpb.SubmitTransfersRequest()
        add = request.transfers.add
        ids = iter(uuid4s(rng, 1100))
        while len(request.transfers) < 1000:
            _, creditor = workload.pick(rng)
            if creditor != debtor:
                item = add()
                item.transfer_id = next(ids)
                item.creditor_bank = creditor
                if confirm:
                    item.require_confirmation = True
                amount = item.amount
                amount.currency = currency
                amount.minor_units = rng.randint(lo, hi)
        return debtor, request

    async def quote_all(debtor: str, items: list[cpb.TransferInstruction]) -> None:
        """Lock a quote for every cross-currency item, in one CreateQuotes
        call, as a bank batching its remittances would."""
        cross = [i for i in items if workload.currency(i.creditor_bank) != i.amount.currency]
        if not cross:
            return
        asks = [
            fxpb.CreateQuoteRequest(
                source_currency=i.amount.currency,
                target_currency=workload.currency(i.creditor_bank),
                source_amount=i.amount.minor_units,
            )
            for i in cross
        ]
        quotes = await fx.CreateQuotes(
            fxpb.CreateQuotesRequest(quotes=asks),
            metadata=((PRINCIPAL, f"bank:{debtor}"),),
            timeout=120,
        )
        for item, outcome in zip(cross, quotes.results, strict=True):
            if outcome.HasField("error"):
                raise RuntimeError(f"quote refused: {outcome.error.reason}")
            item.quote_id = outcome.quote.quote_id

    async def batch_worker() -> None:
        while time.monotonic() < deadline:
            debtor, request = next_batch()
            t0 = time.perf_counter()
            await quote_all(debtor, list(request.transfers))
            for attempt in range(10):
                try:
                    response = await stub.SubmitTransfers(
                        request, metadata=((PRINCIPAL, f"bank:{debtor}"),), timeout=120
                    )
                    break
                except grpc.aio.AioRpcError as err:
                    # The hub gave up on a contended commit: resubmit the same
                    # ids, as a bank would (idempotent).
                    retryable = (grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE)
                    if err.code() not in retryable or attempt == 9:
                        raise
                    result.resubmitted += 1
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            result.rejected += response.rejected_count
            if not confirm:
                result.transfers += response.accepted_count
                continue
            # Hand the reserved ids to their creditors, with the time the
            # submission started (the end-to-end latency's start).
            by_creditor: dict[str, list[str]] = {}
            for item, answer in zip(request.transfers, response.results, strict=True):
                if answer.WhichOneof("outcome") == "transfer":
                    if answer.transfer.status == cpb.TRANSFER_STATUS_RESERVED:
                        by_creditor.setdefault(item.creditor_bank, []).append(answer.transfer_id)
                    else:  # not reserved (cannot happen here): counted as refused
                        result.rejected += 1
            result.reserved += sum(len(v) for v in by_creditor.values())
            handoff.put((time.time() - (time.perf_counter() - t0), by_creditor))

    async def unary_worker(gross: bool) -> None:
        mode = cpb.SETTLEMENT_MODE_GROSS if gross else cpb.SETTLEMENT_MODE_NETTED
        while time.monotonic() < deadline:
            debtor, creditor = workload.pick(rng)
            # Gross settlement is same-currency: its legs move USD, which
            # every bank holds.
            currency = "USD" if gross else workload.currency(debtor)
            item = instruction(rng, creditor, lo, hi, currency)
            item.settlement_mode = mode
            t0 = time.perf_counter()
            try:
                if not gross:
                    await quote_all(debtor, [item])
                await stub.SubmitTransfer(
                    cpb.SubmitTransferRequest(transfer=item),
                    metadata=((PRINCIPAL, f"bank:{debtor}"),),
                    timeout=60,
                )
                result.transfers += 1
            except grpc.aio.AioRpcError:
                result.rejected += 1
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)

    if path in ("batch", "confirmed"):
        workers = [batch_worker() for _ in range(in_flight)]
    else:
        workers = [unary_worker(path == "gross") for _ in range(in_flight)]
    await asyncio.gather(*workers)
    result.finished = time.time()
    if confirm:
        handoff.put(None)
    await channel.close()
    return result


# The creditor side of the confirmed path: one process answering for every
# creditor bank, one ConfirmTransfers call in flight per bank. A bank sends
# what it has received once its oldest unanswered reservation has waited
# Profile.confirm_linger_s (or it holds MAX_CONFIRM items), as a bank
# batching its answers would: a call per batch received would be ~60 tiny
# calls per batch.
MAX_CONFIRM = 5_000  # the largest ConfirmTransfers call
CONFIRM_LINGER_S = Profile.confirm_linger_s


def _creditor_main(target: str, handoff: Any, submitters: int, linger: float, out: Any) -> None:
    result = asyncio.run(_creditors(target, handoff, submitters, linger))
    out.send(asdict(result))
    out.close()


async def _creditors(target: str, handoff: Any, submitters: int, linger: float) -> LoadResult:
    """Confirms (ACCEPT) every id handed over, until every submitter has
    finished and nothing is left. `transfers`: answered ACCEPTED;
    `latencies_ms`: per submitted chunk, from its SubmitTransfers call's
    start to its ConfirmTransfers answer (end to end); `finished`: the last
    answer."""
    loop = asyncio.get_running_loop()
    channel = grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.max_send_message_length", 4 << 20),
            ("grpc.max_receive_message_length", 4 << 20),
        ],
    )
    stub = cgrpc.ClearingServiceStub(channel)
    result = LoadResult()
    pending: dict[str, list[tuple[float, list[str]]]] = {}
    wake: dict[str, asyncio.Event] = {}
    tasks: list[asyncio.Task[None]] = []
    done = asyncio.Event()
    finished = 0

    async def answer(bank: str, chunks: list[tuple[float, list[str]]]) -> None:
        request = cpb.ConfirmTransfersRequest()
        add = request.confirmations.add
        for _, ids in chunks:
            for tid in ids:
                c = add()
                c.transfer_id = tid
                c.decision = cpb.CONFIRMATION_DECISION_ACCEPT
        t0 = time.perf_counter()
        for attempt in range(10):
            try:
                response = await stub.ConfirmTransfers(
                    request, metadata=((PRINCIPAL, f"bank:{bank}"),), timeout=120
                )
                break
            except grpc.aio.AioRpcError as err:
                # Resent whole: an answer given twice is a replay.
                retryable = (grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE)
                if err.code() not in retryable or attempt == 9:
                    raise
                result.resubmitted += 1
        now = time.time()
        result.confirm_ms.append((time.perf_counter() - t0) * 1000)
        result.confirm_calls += 1
        result.finished = now
        result.latencies_ms += [(now - at) * 1000 for at, _ in chunks]
        for r in response.results:
            if r.WhichOneof("outcome") == "transfer" and (
                r.transfer.status == cpb.TRANSFER_STATUS_ACCEPTED
            ):
                result.transfers += 1
            else:
                result.rejected += 1

    async def creditor(bank: str) -> None:
        queue = pending[bank]
        while True:
            if not queue:
                if done.is_set():
                    return
                wake[bank].clear()
                await wake[bank].wait()
                continue
            held = sum(len(ids) for _, ids in queue)
            age = time.time() - queue[0][0]
            if held < MAX_CONFIRM and age < linger and not done.is_set():
                await asyncio.sleep(linger - age)
                continue
            chunks: list[tuple[float, list[str]]] = []
            taken = 0
            while queue and taken < MAX_CONFIRM:
                at, ids = queue[0]
                room = MAX_CONFIRM - taken
                if len(ids) > room:
                    chunks.append((at, ids[:room]))
                    queue[0] = (at, ids[room:])
                    taken = MAX_CONFIRM
                    break
                chunks.append(queue.pop(0))
                taken += len(ids)
            await answer(bank, chunks)

    def deliver(item: tuple[float, dict[str, list[str]]] | None) -> None:
        nonlocal finished
        if item is None:
            finished += 1
            if finished == submitters:
                done.set()
                for event in wake.values():
                    event.set()
            return
        at, by_creditor = item
        for bank, ids in by_creditor.items():
            if bank not in pending:
                pending[bank] = []
                wake[bank] = asyncio.Event()
                tasks.append(loop.create_task(creditor(bank)))
            pending[bank].append((at, ids))
            wake[bank].set()

    def reader() -> None:
        for _ in range(submitters):
            while (item := handoff.get()) is not None:
                loop.call_soon_threadsafe(deliver, item)
            loop.call_soon_threadsafe(deliver, None)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    await done.wait()
    thread.join()
    while tasks:  # banks first seen in the last deliveries start late
        running = list(tasks)
        tasks.clear()
        await asyncio.gather(*running)
    await channel.close()
    return result


def run_load(
    path: str,
    targets: list[str],
    workload: str,
    processes: int,
    in_flight: int,
    seconds: float,
    confirm_linger: float = CONFIRM_LINGER_S,
) -> LoadResult:
    ctx = mp.get_context("spawn")
    # Fresh ids on every call: a load that repeated an earlier one's ids would
    # be answered from the idempotency records and counted twice.
    salt = int.from_bytes(os.urandom(4), "big")
    pipes = []
    procs = []
    handoff = ctx.Queue() if path == "confirmed" else None
    creditor_pipe = None
    if handoff is not None:
        creditor_pipe, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_creditor_main, args=(targets[0], handoff, processes, confirm_linger, child)
        )
        proc.start()
        procs.append(proc)
    for i in range(processes):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_client_main,
            args=(
                path,
                targets[i % len(targets)],
                workload,
                salt + i,
                seconds,
                in_flight,
                child,
                handoff,
            ),
        )
        proc.start()
        procs.append(proc)
        pipes.append(parent)
    results = [LoadResult(**p.recv()) for p in pipes]
    if creditor_pipe is not None:
        creditors = LoadResult(**creditor_pipe.recv())
        for proc in procs:
            proc.join()
        # Confirmed end to end: from the first submission to the last answer.
        return LoadResult(
            transfers=creditors.transfers,
            rejected=sum(r.rejected for r in results) + creditors.rejected,
            resubmitted=sum(r.resubmitted for r in results) + creditors.resubmitted,
            latencies_ms=creditors.latencies_ms,
            started=min(r.started for r in results),
            finished=max(creditors.finished, *(r.finished for r in results)),
            reserved=sum(r.reserved for r in results),
            confirm_calls=creditors.confirm_calls,
            submit_ms=[x for r in results for x in r.latencies_ms],
            confirm_ms=creditors.confirm_ms,
        )
    for proc in procs:
        proc.join()
    merged = LoadResult.merge(results)
    return merged


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# Metrics sampling: the adaptive controller's view over time ---------------------


class Sampler(threading.Thread):
    def __init__(self, hubs: list[HubProcess]) -> None:
        super().__init__(daemon=True)
        self.hubs = hubs
        self.samples: list[dict[str, Any]] = []
        self.phase = ""
        self.stop_event = threading.Event()
        self.t0 = time.time()

    def run(self) -> None:
        last: dict[str, float] = {}
        while not self.stop_event.wait(0.5):
            try:
                m = self.hubs[0].metrics()
            except OSError:
                continue
            count = m.get("remitnet_netting_batch_size_count", 0.0)
            total = m.get("remitnet_netting_batch_size_sum", 0.0)
            dc, dt = count - last.get("c", count), total - last.get("s", total)
            last = {"c": count, "s": total}
            self.samples.append(
                {
                    "t": time.time() - self.t0,
                    "limit": m.get("remitnet_netting_batch_limit", 0.0),
                    "mean_batch": dt / dc if dc else 0.0,
                    "batches_per_s": dc / 0.5,
                    "label": self.phase,
                }
            )


def batch_sizes(hub: HubProcess) -> tuple[float, float]:
    """Batches committed so far and the items they held."""
    m = hub.metrics()
    return (
        m.get("remitnet_netting_batch_size_count", 0.0),
        m.get("remitnet_netting_batch_size_sum", 0.0),
    )


def against_limits(results: dict[str, Any], profile: Profile) -> dict[str, Any]:
    """The limits measured now (bench_limits.py): the raw PostgreSQL loop at
    each workload's mean committed batch size and the bare grpc.aio echo
    under the unary path's load; each path's ratio goes into its figures."""
    import bench_limits  # here, not at the top: it imports nothing of this module's

    sizes = {
        name: max(100, round(sc["batch"].get("mean_batch", 1000) / 100) * 100)
        for name, sc in results["scenarios"].items()
        if "batch" in sc
    }
    limits = bench_limits.measure(
        sorted(set(sizes.values())),
        min(10.0, profile.path_seconds / 2),
        profile.unary_clients,
        profile.unary_in_flight,
    )
    echo = limits["echo"]["calls_per_s"]
    for name, sc in results["scenarios"].items():
        if name in sizes:
            db = bench_limits.at_size(limits["database"], sizes[name])
            sc["batch"]["limit"] = db["transfers_per_s"]
            sc["batch"]["of_limit"] = sc["batch"]["transfers_per_s"] / db["transfers_per_s"]
        if "unary" in sc and echo:
            sc["unary"]["limit"] = echo
            sc["unary"]["of_limit"] = sc["unary"]["transfers_per_s"] / echo
    return limits


def retries(hub: HubProcess) -> float:
    return sum(
        v for k, v in hub.metrics().items() if k.startswith("remitnet_db_transaction_retries_total")
    )


def retries_by_reason(hubs: list[HubProcess]) -> dict[str, float]:
    """Retries summed over `hubs` by their reason label (write_conflict:
    two writers of one row; serialization: a read/write cycle)."""
    out: dict[str, float] = {}
    for hub in hubs:
        for k, v in hub.metrics().items():
            if k.startswith("remitnet_db_transaction_retries_total") and 'reason="' in k:
                reason = k.split('reason="', 1)[1].split('"', 1)[0]
                out[reason] = out.get(reason, 0.0) + v
    return out


def committed_batches(hub: HubProcess) -> float:
    return sum(
        v
        for k, v in hub.metrics().items()
        if k.startswith("remitnet_db_transactions_total")
        and 'outcome="committed"' in k
        and 'unit="clear_batch"' in k
    )


# The benchmark ----------------------------------------------------------------


def measure_path(
    path: str, hub: HubProcess, workload: str, profile: Profile, sampler: Sampler
) -> dict[str, Any]:
    sampler.phase = f"{workload}/{path}"
    before = retries(hub)
    sized = batch_sizes(hub)
    if path in ("batch", "confirmed"):
        load = run_load(
            path,
            [hub.target],
            workload,
            profile.batch_clients,
            2,
            profile.path_seconds,
            profile.confirm_linger_s,
        )
    else:
        clients, in_flight = profile.unary_clients, profile.unary_in_flight
        load = run_load(path, [hub.target], workload, clients, in_flight, profile.path_seconds)
    elapsed = load.finished - load.started
    figures = {
        "transfers_per_s": load.transfers / elapsed if elapsed else 0.0,
        "p50_ms": percentile(load.latencies_ms, 0.50),
        "p99_ms": percentile(load.latencies_ms, 0.99),
        "retries": int(retries(hub) - before),
        "transfers": load.transfers,
        "rejected": load.rejected,
        "seconds": elapsed,
    }
    if path == "batch":
        figures["items_per_call"] = 1000
        # What the hub committed per transaction: the raw PostgreSQL loop
        # (bench_limits.py) is measured at the same size.
        count, total = (a - b for a, b in zip(batch_sizes(hub), sized, strict=True))
        figures["mean_batch"] = total / count if count else 0.0
    if path == "confirmed":
        # Latencies are end to end (submission start to the creditor's
        # answer), per submitted chunk; `transfers` were confirmed ACCEPTED.
        figures["items_per_call"] = 1000
        figures["reserved"] = load.reserved
        figures["confirm_calls"] = load.confirm_calls
        figures["confirm_items_per_call"] = (
            load.transfers / load.confirm_calls if load.confirm_calls else 0.0
        )
        figures["resubmitted"] = load.resubmitted
        figures["submit_p50_ms"] = percentile(load.submit_ms, 0.50)
        figures["submit_p99_ms"] = percentile(load.submit_ms, 0.99)
        figures["confirm_call_p50_ms"] = percentile(load.confirm_ms, 0.50)
        figures["confirm_call_p99_ms"] = percentile(load.confirm_ms, 0.99)
        print(
            f"  {workload:<20} confirmed: {load.reserved:,} reserved in {len(load.submit_ms)} "
            f"SubmitTransfers (p50 {figures['submit_p50_ms']:.0f} ms), {load.transfers:,} "
            f"accepted in {load.confirm_calls} ConfirmTransfers (p50 "
            f"{figures['confirm_call_p50_ms']:.0f} ms, p99 {figures['confirm_call_p99_ms']:.0f} "
            f"ms, {figures['confirm_items_per_call']:,.0f} items each)",
            flush=True,
        )
    print(
        f"  {workload:<20} {path:<6} {figures['transfers_per_s']:>10,.0f} transfers/s  "
        f"p50 {figures['p50_ms']:7.1f} ms  p99 {figures['p99_ms']:7.1f} ms  "
        f"retries {figures['retries']}",
        flush=True,
    )
    return figures


async def close_and_settle(target: str, currencies: tuple[str, ...] = ("USD",)) -> dict[str, Any]:
    """Close and settle the open cycle of every currency; values summed in
    USD at the mid rates, so a cross-currency workload has one efficiency."""
    async with OperatorClient(ClientConfig(target=target, deadline_s=600)) as op:
        t0 = time.perf_counter()
        closed = []
        for currency in currencies:
            cycle = (await op.close_cycle(currency)).closed
            await op.settle_cycle(cycle.cycle_id)
            closed.append((currency, cycle))
        seconds = time.perf_counter() - t0
        gross = net = 0.0
        banks: set[str] = set()
        by_currency: dict[str, float] = {}
        for currency, cycle in closed:
            rec = await op.reconciliation(cycle.cycle_id)
            assert rec.all_matched, "reconciliation mismatch"
            rate = float(USD_RATES.get(currency, "1"))
            gross += cycle.gross_value / rate
            net += cycle.net_value / rate
            banks.update(p.bank_code for p in cycle.positions)
            by_currency[currency] = cycle.gross_value / cycle.net_value if cycle.net_value else 0.0
        ledger = await op.ledger_balance()
        assert all(c.balance_sum == 0 and c.entry_sum == 0 for c in ledger.currencies)
    return {
        "gross": gross,
        "net": net,
        "transfers": sum(cycle.transfer_count for _, cycle in closed),
        "banks": len(banks),
        "seconds": seconds,
        "efficiency_by_currency": by_currency,
    }


def settle_large(profile: Profile, log: Path) -> dict[str, Any]:
    """One cycle of `settle_transfers` across `settle_banks`, loaded through
    the batch path, then timed from CloseCycle to settled."""
    name, url = fresh_database()
    hub = start_hub(url, log)
    try:
        assert profile.settle_banks == len(EXTRA_WORKLOADS["big_cycle"].banks)
        asyncio.run(onboard(hub.target, EXTRA_WORKLOADS["big_cycle"].banks))
        loaded = 0
        t0 = time.perf_counter()
        while loaded < profile.settle_transfers:
            chunk = run_load("batch", [hub.target], "big_cycle", 3, 2, 10.0)
            loaded += chunk.transfers
            rate = loaded / (time.perf_counter() - t0)
            print(f"  settle: loaded {loaded:,} transfers ({rate:,.0f}/s)", flush=True)
        result = asyncio.run(close_and_settle(hub.target))
        assert int(result["transfers"]) == loaded, (result["transfers"], loaded)
        return {
            "transfers": int(result["transfers"]),
            "banks": int(result["banks"]),
            "seconds": result["seconds"],
            "peak_rss_mb": hub.peak_rss_mb(),
            "load_transfers_per_s": loaded / (time.perf_counter() - t0),
        }
    finally:
        hub.stop()
        drop_database(name)


def split_processes(profile: Profile, log: Path) -> dict[str, float]:
    """The batch path with clearing in two processes against one database,
    against one process, same workload and clients."""
    out: dict[str, float] = {}
    for label, clearing in (("one_process", 1), ("two_processes", 2)):
        name, url = fresh_database()
        rest = start_hub(url, log, "participants,netting,settlement,fx")
        hubs = [start_hub(url, log, "clearing") for _ in range(clearing)]
        try:
            asyncio.run(onboard(rest.target, WORKLOADS["aggregated_payment"].banks))
            load = run_load(
                "batch", [h.target for h in hubs], "aggregated_payment", 4, 2, profile.split_seconds
            )
            out[label] = load.transfers / (load.finished - load.started)
            by_reason = retries_by_reason(hubs)
            out[f"{label}_retries"] = sum(by_reason.values())
            for reason in ("write_conflict", "serialization"):
                out[f"{label}_retries_{reason}"] = by_reason.get(reason, 0.0)
            out[f"{label}_resubmitted"] = load.resubmitted
            # The target's unit (issue 17: at most 1% of batches retried):
            # retries per committed batch transaction.
            batches = sum(committed_batches(h) for h in hubs)
            out[f"{label}_retried_share"] = out[f"{label}_retries"] / batches if batches else 0.0
            print(
                f"  split: clearing in {clearing} process(es): {out[label]:,.0f} transfers/s, "
                f"{out[f'{label}_retries']:.0f} serialization retries over {batches:.0f} "
                f"committed batches ({out[f'{label}_retries_write_conflict']:.0f} write-write on "
                f"one row, {out[f'{label}_retries_serialization']:.0f} read/write cycles), "
                f"{load.resubmitted} batches resubmitted after ABORTED",
                flush=True,
            )
        finally:
            for h in [*hubs, rest]:
                h.stop()
            drop_database(name)
    out["ratio"] = out["two_processes"] / out["one_process"] if out["one_process"] else 0.0
    return out


FX_WORKLOAD, SAME_CURRENCY_WORKLOAD = "remittance_channel", "aggregated_payment"
# The payee-confirmed variant (issue 14) runs on this workload, right after
# its immediate batch path, against the same hub: at least CONFIRMED_TARGET
# times the batch path's rate.
CONFIRMED_WORKLOAD, CONFIRMED_TARGET = "aggregated_payment", 0.4


def paths_of(workload: str) -> tuple[str, ...]:
    if workload == CONFIRMED_WORKLOAD:
        return ("batch", "confirmed", "unary", "gross")
    return ("batch", "unary", "gross")


def confirmed_against_batch(scenarios: dict[str, Any]) -> dict[str, Any] | None:
    """The payee-confirmed batch path over the immediate one, same run."""
    sc = scenarios.get(CONFIRMED_WORKLOAD)
    if sc is None or "confirmed" not in sc:
        return None
    a, b = sc["confirmed"]["transfers_per_s"], sc["batch"]["transfers_per_s"]
    out = {
        "workload": CONFIRMED_WORKLOAD,
        "confirmed": a,
        "batch": b,
        "ratio": a / b if b else 0.0,
        "target": CONFIRMED_TARGET,
        "confirm_items_per_call": sc["confirmed"]["confirm_items_per_call"],
        "ids_from": "the SubmitTransfers answers, handed to a creditor-side process",
    }
    out["met"] = out["ratio"] >= CONFIRMED_TARGET
    print(
        f"  {CONFIRMED_WORKLOAD} payee-confirmed: {a:,.0f} transfers/s confirmed end to end "
        f"against {b:,.0f}/s immediate (ratio {out['ratio']:.2f}, target >= "
        f"{CONFIRMED_TARGET}: {'met' if out['met'] else 'NOT met'})",
        flush=True,
    )
    return out


def fx_against_same_currency(scenarios: dict[str, Any]) -> dict[str, Any] | None:
    """The cross-currency workload (through FX providers) over the
    same-currency one, per path, from the same run."""
    fx, same = scenarios.get(FX_WORKLOAD), scenarios.get(SAME_CURRENCY_WORKLOAD)
    if fx is None or same is None:
        return None
    out: dict[str, Any] = {"workload": FX_WORKLOAD, "against": SAME_CURRENCY_WORKLOAD}
    for path in ("batch", "unary"):
        a, b = fx[path]["transfers_per_s"], same[path]["transfers_per_s"]
        out[path] = {"fx": a, "same_currency": b, "ratio": a / b if b else 0.0}
    out["conversions_by_provider"] = fx.get("conversions_by_provider", {})
    print(
        f"  {FX_WORKLOAD} through FX providers {out['conversions_by_provider']}: batch "
        f"{out['batch']['fx']:,.0f}/s against {out['batch']['same_currency']:,.0f}/s same-currency "
        f"(ratio {out['batch']['ratio']:.2f}), unary {out['unary']['fx']:,.0f}/s against "
        f"{out['unary']['same_currency']:,.0f}/s (ratio {out['unary']['ratio']:.2f})",
        flush=True,
    )
    return out


def report(results: dict[str, Any], samples: list[dict[str, Any]]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "latest.json").write_text(json.dumps(results, indent=2))
    lines = [
        f"# remitnet benchmark ({results['profile']}, {results['when']})",
        "",
        "PostgreSQL at SERIALIZABLE, synchronous_commit on; hub, clients and database on one "
        f"{os.cpu_count()}-core machine. remittance_channel is cross-currency (USD, EUR, PHP, "
        "NGN) through two funded FX providers competing on price: a batch locks its quotes "
        "with one CreateQuotes call, a unary transfer with one quote call, both timed; its "
        "gross baseline moves the USD legs.",
        "",
        "Of limit: the batch path against a raw PostgreSQL loop doing what a batch must do at "
        "the hub's mean batch size, the unary path against a bare grpc.aio echo, both measured "
        "in this run (table below).",
        "",
        "| workload | path | transfers/s | p50 ms | p99 ms | retries | of limit |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, sc in results["scenarios"].items():
        for path in paths_of(name):
            if path not in sc:
                continue
            f = sc[path]
            share = f"{f['of_limit']:.2f}" if "of_limit" in f else ""
            lines.append(
                f"| {name} | {path} | {f['transfers_per_s']:,.0f} | {f['p50_ms']:.1f} | "
                f"{f['p99_ms']:.1f} | {f['retries']} | {share} |"
            )
    if limits := results.get("limits"):
        import bench_limits

        lines += ["", bench_limits.table(limits)]
    lines += [
        "",
        "| workload | batch/gross | netting efficiency | close→settled s |",
        "|---|---:|---:|---:|",
    ]
    for name, sc in results["scenarios"].items():
        lines.append(
            f"| {name} | {sc['batch_over_gross']:.1f} | {sc['netting_efficiency']:.1f} | "
            f"{sc['settle']['seconds']:.3f} |"
        )
    if fx := results.get("fx_against_same_currency"):
        by = ", ".join(f"{p} {n:,}" for p, n in fx["conversions_by_provider"].items())
        lines += [
            "",
            f"Cross-currency through FX providers ({fx['workload']}; conversions by provider: "
            f"{by}) against same-currency ({fx['against']}): batch "
            f"{fx['batch']['fx']:,.0f} against {fx['batch']['same_currency']:,.0f} transfers/s "
            f"(ratio {fx['batch']['ratio']:.2f}), unary {fx['unary']['fx']:,.0f} against "
            f"{fx['unary']['same_currency']:,.0f} (ratio {fx['unary']['ratio']:.2f}).",
        ]
    if c := results.get("confirmed_against_batch"):
        lines += [
            "",
            f"Payee-confirmed {c['workload']} (SubmitTransfers with require_confirmation, "
            "each creditor accepting with ConfirmTransfers batches; ids from the submit "
            f"answers; {c['confirm_items_per_call']:,.0f} items per ConfirmTransfers call; "
            "its p50/p99 above are end to end, submission to confirmation): "
            f"{c['confirmed']:,.0f} transfers/s confirmed against {c['batch']:,.0f} on the "
            f"immediate batch path: ratio {c['ratio']:.2f}, target >= {c['target']} "
            f"({'met' if c['met'] else 'NOT met'}).",
        ]
    if ex := results.get("expiry"):
        import bench_expiry  # here, not at the top: it imports this module

        lines += ["", bench_expiry.table({"expiry": ex})]
    big = results["settle_large"]
    lines += [
        "",
        f"Settling one cycle of {big['transfers']:,} transfers across {big['banks']} banks: "
        f"{big['seconds']:.3f} s from CloseCycle to settled; "
        f"hub peak RSS {big['peak_rss_mb']:.0f} MB.",
        "",
        f"Batch path, clearing split over two processes: {results['split']['two_processes']:,.0f} "
        f"transfers/s versus {results['split']['one_process']:,.0f} in one "
        f"(ratio {results['split']['ratio']:.2f}; retries per committed batch "
        f"{results['split']['two_processes_retried_share']:.2f} in two, target <= 0.01; "
        f"{results['split'].get('two_processes_retries_write_conflict', 0):.0f} of its retries "
        f"write-write on one row, "
        f"{results['split'].get('two_processes_retries_serialization', 0):.0f} read/write "
        "cycles).",
    ]
    table = "\n".join(lines)
    (OUT / "latest.md").write_text(table + "\n")
    print("\n" + table)
    plot(results, samples)


def plot(results: dict[str, Any], samples: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["scenarios"])
    paths = ["batch", "unary", "gross"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    width = 0.25
    for j, path in enumerate(paths):
        xs = [i + (j - 1) * width for i in range(len(names))]
        axes[0].bar(
            xs, [results["scenarios"][n][path]["transfers_per_s"] for n in names], width, label=path
        )
        axes[1].bar(xs, [results["scenarios"][n][path]["p99_ms"] for n in names], width, label=path)
    for ax, title in (
        (axes[0], "throughput (transfers/s)"),
        (axes[1], "p99 latency per call (ms)"),
    ):
        ax.set_xticks(range(len(names)), names, rotation=10)
        ax.set_title(title)
        ax.legend()
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    ts = [s["t"] for s in samples]
    axes[2].plot(ts, [s["mean_batch"] for s in samples], label="mean batch size (committed)")
    axes[2].plot(ts, [s["limit"] for s in samples], label="controller batch limit", linestyle="--")
    axes[2].set_title("adaptive batching: batch size over time")
    axes[2].set_xlabel("seconds")
    axes[2].set_yscale("symlog")
    last = ""
    for s in samples:
        if s["label"] != last:
            axes[2].axvline(s["t"], color="grey", alpha=0.3)
            axes[2].text(s["t"], 1, str(s["label"]).replace("/", "\n"), fontsize=6, rotation=90)
            last = str(s["label"])
    axes[2].legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(OUT / "latest.png", dpi=110)


def only_confirmed(profile: Profile, log: Path) -> int:
    """`--only confirmed`: the immediate batch path and its payee-confirmed
    variant of CONFIRMED_WORKLOAD on one fresh hub, as in the full run."""
    print(f"\n{CONFIRMED_WORKLOAD}: batch and payee-confirmed", flush=True)
    name, url = fresh_database()
    hub = start_hub(url, log)
    sampler = Sampler([hub])
    try:
        asyncio.run(onboard(hub.target, WORKLOADS[CONFIRMED_WORKLOAD].banks))
        scenario = {p: measure_path(p, hub, CONFIRMED_WORKLOAD, profile, sampler)
                    for p in ("batch", "confirmed")}  # fmt: skip
        left = reserved_left(name)
        assert (
            left == 0 and scenario["confirmed"]["transfers"] == scenario["confirmed"]["reserved"]
        ), (left, scenario["confirmed"])
        expected = scenario["batch"]["transfers"] + scenario["confirmed"]["reserved"]
        assert stored_transfers(name) == expected, (stored_transfers(name), expected)
    finally:
        hub.stop()
        drop_database(name)
    section: dict[str, Any] = {
        "profile": profile.name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "scenarios": {CONFIRMED_WORKLOAD: scenario},
    }
    section["confirmed_against_batch"] = confirmed_against_batch(section["scenarios"])
    (OUT / "confirmed.json").write_text(json.dumps(section, indent=2))
    c = section["confirmed_against_batch"]
    lines = ["| path | transfers/s | p50 ms | p99 ms | retries |", "|---|---:|---:|---:|---:|"]
    for path, f in scenario.items():
        lines.append(
            f"| {path} | {f['transfers_per_s']:,.0f} | {f['p50_ms']:.1f} | {f['p99_ms']:.1f} | "
            f"{f['retries']} |"
        )
    lines += [
        "",
        f"confirmed / batch = {c['ratio']:.2f} (target >= {c['target']}: "
        f"{'met' if c['met'] else 'NOT met'}); {c['confirm_items_per_call']:,.0f} items per "
        "ConfirmTransfers call; confirmed p50/p99 are end to end.",
    ]
    text = "\n".join(lines)
    (OUT / "confirmed.md").write_text(text + "\n")
    print("\n" + text + f"\n\nwrote {OUT / 'confirmed'}.json and .md")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument(
        "--only",
        choices=("noisy_neighbour", "list_transfers", "confirmed", "expiry", "banks", "iso20022"),
        help="run only this section; writes build/bench/<section>.{json,md}",
    )
    parser.add_argument(
        "--confirm-linger",
        type=float,
        help="seconds a creditor bank of the confirmed path gathers before it answers "
        f"(default {CONFIRM_LINGER_S})",
    )
    args = parser.parse_args()
    profile = PROFILES[args.profile]
    if args.confirm_linger is not None:
        profile = replace(profile, confirm_linger_s=args.confirm_linger)
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "hub.log"
    log.write_text("")
    if args.only == "confirmed":
        return only_confirmed(profile, log)
    if args.only == "expiry":
        import bench_expiry  # here, not at the top: it imports this module

        print("\nexpiry", flush=True)
        ex = {"expiry": bench_expiry.measure(profile.expiry_transfers, profile.expiry_limits)}
        (OUT / "expiry.json").write_text(json.dumps(ex, indent=2))
        text = bench_expiry.table(ex)
        (OUT / "expiry.md").write_text(text + "\n")
        print("\n" + text + f"\n\nwrote {OUT / 'expiry'}.json and .md")
        return 0
    if args.only == "banks":
        import bench_banks  # here, not at the top: it imports this module

        print("\nbanks", flush=True)
        seconds = min(profile.path_seconds, 15.0)
        many = {"banks": bench_banks.measure(seconds=seconds, log=log)}
        (OUT / "banks.json").write_text(json.dumps(many, indent=2))
        text = bench_banks.table(many)
        (OUT / "banks.md").write_text(text + "\n")
        print("\n" + text + f"\n\nwrote {OUT / 'banks'}.json and .md")
        return 0
    if args.only == "iso20022":
        import bench_iso20022  # here, not at the top: it imports this module

        print("\niso20022", flush=True)
        iso = {"iso20022": bench_iso20022.measure(min(profile.path_seconds, 15.0), log)}
        (OUT / "iso20022.json").write_text(json.dumps(iso, indent=2))
        text = bench_iso20022.table(iso["iso20022"])
        (OUT / "iso20022.md").write_text(text + "\n")
        print("\n" + text + f"\n\nwrote {OUT / 'iso20022'}.json and .md")
        return 0
    import bench_fair  # here, not at the top: it imports this module

    fair_sections = {
        "noisy_neighbour": bench_fair.noisy_neighbour,
        "list_transfers": bench_fair.list_transfers_growth,
    }
    if args.only:
        print(f"\n{args.only}", flush=True)
        section = {
            "profile": profile.name,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            args.only: fair_sections[args.only](profile, log),
        }
        (OUT / f"{args.only}.json").write_text(json.dumps(section, indent=2))
        text = bench_fair.table(section)
        (OUT / f"{args.only}.md").write_text(text + "\n")
        print("\n" + text + f"\n\nwrote {OUT / args.only}.json and .md")
        return 0
    started = time.perf_counter()
    results: dict[str, Any] = {
        "profile": profile.name,
        "confirm_linger_s": profile.confirm_linger_s,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "scenarios": {},
    }
    samples: list[dict[str, Any]] = []
    for workload in args.workloads.split(","):
        print(f"\n{workload}", flush=True)
        name, url = fresh_database()
        hub = start_hub(url, log)
        sampler = Sampler([hub])
        sampler.t0 = time.time() - (samples[-1]["t"] if samples else 0.0)
        sampler.start()
        try:
            chosen = WORKLOADS[workload]
            asyncio.run(onboard(hub.target, chosen.banks, chosen.currency_of))
            scenario: dict[str, Any] = {}
            for path in paths_of(workload):
                scenario[path] = measure_path(path, hub, workload, profile, sampler)
            if "confirmed" in scenario:
                # Every reservation was answered, and accepted.
                left = reserved_left(name)
                c = scenario["confirmed"]
                assert left == 0 and c["transfers"] == c["reserved"], (left, c)
            sampler.phase = f"{workload}/settle"
            currencies = tuple(sorted({chosen.currency(b) for b in chosen.banks} | {"USD"}))
            cycle = asyncio.run(close_and_settle(hub.target, currencies))
            # Every acknowledged transfer is a distinct stored one: the figures
            # count no idempotent replays.
            acknowledged = sum(scenario[p]["transfers"] for p in ("batch", "unary", "gross"))
            acknowledged += scenario.get("confirmed", {}).get("reserved", 0)
            assert stored_transfers(name) == acknowledged, (stored_transfers(name), acknowledged)
            scenario["netting_efficiency"] = cycle["gross"] / cycle["net"] if cycle["net"] else 0.0
            if len(currencies) > 1:
                scenario["netting_efficiency_by_currency"] = cycle["efficiency_by_currency"]
                # Every conversion went through a funded provider, none through the hub.
                scenario["conversions_by_provider"] = conversions_by_provider(name)
                assert set(scenario["conversions_by_provider"]) <= set(FX_PROVIDERS), scenario
            scenario["settle"] = {
                # Netted transfers (gross ones settled at once); a
                # cross-currency transfer has a leg in two cycles.
                "transfers": acknowledged - scenario["gross"]["transfers"],
                "cycles": len(currencies),
                "banks": int(cycle["banks"]),
                "seconds": cycle["seconds"],
                "peak_rss_mb": hub.peak_rss_mb(),
            }
            gross = scenario["gross"]["transfers_per_s"]
            scenario["batch_over_gross"] = (
                scenario["batch"]["transfers_per_s"] / gross if gross else 0.0
            )
            results["scenarios"][workload] = scenario
        finally:
            sampler.stop_event.set()
            sampler.join()
            samples += sampler.samples
            hub.stop()
            drop_database(name)
    print("\nlimits", flush=True)
    results["limits"] = against_limits(results, profile)
    if fx := fx_against_same_currency(results["scenarios"]):
        results["fx_against_same_currency"] = fx
    if confirmed := confirmed_against_batch(results["scenarios"]):
        results["confirmed_against_batch"] = confirmed
    print("\nexpiry", flush=True)
    import bench_expiry  # here, not at the top: it imports this module

    results["expiry"] = bench_expiry.measure(profile.expiry_transfers, profile.expiry_limits)
    print("\nsettling one large cycle", flush=True)
    results["settle_large"] = settle_large(profile, log)
    print("\nscaling past one process", flush=True)
    results["split"] = split_processes(profile, log)
    print("\nstatus stream", flush=True)
    import bench_stream  # here, not at the top: it imports this module

    results["status_stream"] = bench_stream.measure(profile.stream_seconds, log)
    for part, measure in fair_sections.items():
        print(f"\n{part}", flush=True)
        results[part] = measure(profile, log)
    print("\nbanks", flush=True)
    import bench_banks  # here, not at the top: it imports this module

    results["banks"] = bench_banks.measure(seconds=min(profile.path_seconds, 15.0), log=log)
    print("\niso20022", flush=True)
    import bench_iso20022  # here, not at the top: it imports this module

    results["iso20022"] = bench_iso20022.measure(min(profile.path_seconds, 15.0), log)
    results["seconds"] = time.perf_counter() - started
    report(results, samples)
    stream_table = bench_stream.table(results["status_stream"])
    with (OUT / "latest.md").open("a") as md:
        md.write("\n" + stream_table + "\n")
    print("\n" + stream_table)
    fair_table = bench_fair.table(results)
    with (OUT / "latest.md").open("a") as md:
        md.write("\n" + fair_table + "\n")
    print("\n" + fair_table)
    banks_table = bench_banks.table(results)
    with (OUT / "latest.md").open("a") as md:
        md.write("\n" + banks_table + "\n")
    print("\n" + banks_table)
    iso_table = bench_iso20022.table(results["iso20022"])
    with (OUT / "latest.md").open("a") as md:
        md.write("\n" + iso_table + "\n")
    print("\n" + iso_table)
    print(f"\nwrote {OUT / 'latest.json'}, latest.md and latest.png in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
