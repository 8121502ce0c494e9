"""`make demo`: the clearing network end to end on the embedded default.

Starts the hub as its own process on SQLite, onboards banks in four regions,
funds them, drives same-currency and cross-currency (FX) traffic through
real concurrent gRPC clients, closes and settles every currency's cycle, and
prints what a hub operator would look at. Exits non-zero if any check fails.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.bank import BankClient, instruction
from remitnet.clients.base import ClientConfig
from remitnet.clients.errors import HubError
from remitnet.clients.operator import OperatorClient
from remitnet.services.domain.money import format_minor

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "demo"
LOG = os.path.relpath(WORK / "hub.log", ROOT)
SEED = 20261123

# code -> (name, home region, currencies, deposit in major units per currency)
BANKS: dict[str, tuple[str, str, list[str], int]] = {
    "BANKUS01": ("First Atlantic", "us-east1", ["USD"], 2_000_000),
    "BANKUS02": ("Pacific Union", "us-west1", ["USD"], 1_500_000),
    "BANKDE01": ("Rheinbank", "europe-west1", ["EUR", "USD"], 1_000_000),
    "BANKFR01": ("Banque Seine", "europe-west1", ["EUR"], 800_000),
    "BANKGB01": ("Thames Mutual", "europe-west2", ["GBP"], 900_000),
    "BANKPH01": ("Manila Remit", "asia-southeast1", ["PHP", "USD"], 50_000_000),
    "BANKIN01": ("Deccan Bank", "asia-south1", ["INR"], 80_000_000),
    "BANKNG01": ("Lagos Trust", "africa-west1", ["NGN"], 900_000_000),
}
RATES = {
    ("USD", "PHP"): "56.10",
    ("USD", "EUR"): "0.92",
    ("USD", "INR"): "83.20",
    ("USD", "GBP"): "0.79",
    ("USD", "NGN"): "1480.50",
}
# (debtors, creditor, source, target)
CORRIDORS = [
    (["BANKUS01", "BANKUS02"], "BANKPH01", "USD", "PHP"),
    (["BANKDE01", "BANKFR01"], "BANKIN01", "EUR", "INR"),
    (["BANKGB01"], "BANKNG01", "GBP", "NGN"),
]
SAME_CURRENCY = {
    "USD": ["BANKUS01", "BANKUS02", "BANKDE01", "BANKPH01"],
    "EUR": ["BANKDE01", "BANKFR01"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Tally:
    planned: int
    accepted: int = 0
    replayed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    fx: int = 0

    @property
    def done(self) -> int:
        return self.accepted + self.replayed + sum(self.rejected.values())


def start_hub(port: int, metrics_port: int) -> subprocess.Popen[bytes]:
    WORK.mkdir(parents=True, exist_ok=True)
    for old in WORK.glob("remitnet.db*"):
        old.unlink()
    rates = WORK / "rates.csv"
    now = datetime.now(UTC).isoformat()
    rates.write_text(
        "base,quote,rate,as_of\n" + "".join(f"{b},{q},{r},{now}\n" for (b, q), r in RATES.items())
    )
    log = (WORK / "hub.log").open("wb")
    command = [
        sys.executable, "-m", "remitnet.services.entrypoints.cli", "serve", "--insecure",
        "--db", f"sqlite:///{WORK / 'remitnet.db'}", "--port", str(port),
        "--metrics-port", str(metrics_port), "--fx-rates", str(rates),
        "--fx-corridor", "GBP:NGN=120",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


async def wait_serving(target: str, proc: subprocess.Popen[bytes]) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"the hub exited with {proc.returncode}; see {WORK / 'hub.log'}")
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the hub did not become healthy within 60 s")


async def onboard(op: OperatorClient) -> None:
    for code, (name, region, currencies, deposit) in BANKS.items():
        await op.create_bank(code, name, region, currencies)
        for currency in currencies:
            exponent = 10 ** {"USD": 2, "EUR": 2, "GBP": 2, "PHP": 2, "INR": 2, "NGN": 2}[currency]
            await op.deposit(code, currency, deposit * exponent)
            await op.set_cap(code, currency, deposit * exponent // 10)
    print(f"onboarded {len(BANKS)} banks in {len({b[1] for b in BANKS.values()})} regions")


async def same_currency(bank: BankClient, currency: str, peers: list[str], tally: Tally) -> None:
    rng = random.Random(f"{SEED}-{bank.bank_code}-{currency}")
    others = [p for p in peers if p != bank.bank_code]
    for round_ in range(4):
        items = [
            instruction(rng.choice(others), currency, rng.randint(1_000, 250_000))
            for _ in range(rng.randint(150, 300))
        ]
        response = await bank.submit_batch(items)
        for result in response.results:
            if result.HasField("transfer"):
                tally.accepted += 1
            else:
                tally.rejected[result.error.reason] += 1
        # Some unary calls too, several in flight at once.
        singles = [
            instruction(rng.choice(others), currency, rng.randint(100, 50_000)) for _ in range(20)
        ]
        outcomes = await asyncio.gather(*(bank.submit(i) for i in singles), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, HubError):
                tally.rejected[outcome.reason] += 1
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                tally.accepted += 1
        if round_ == 0:
            again = await bank.submit(singles[0])  # a retry of a transfer already accepted
            assert again.replayed
            tally.replayed += 1


async def corridor(bank: BankClient, creditor: str, source: str, target: str, tally: Tally) -> None:
    rng = random.Random(f"{SEED}-{bank.bank_code}-{target}")
    for _ in range(60):
        quote = await bank.quote(source, target, source_amount=rng.randint(5_000, 200_000))
        item = instruction(
            creditor,
            source,
            quote.source_amount.minor_units,
            quote_id=quote.quote_id,
            remittance_info="family support",
        )
        await bank.submit(item)
        tally.accepted += 1
        tally.fx += 1


async def bad_input(bank: BankClient, tally: Tally) -> None:
    for item in (
        instruction("BANKUS02", "USD", 10**13),  # far beyond liquidity plus cap
        instruction("NOSUCHBANK", "USD", 100),
        instruction("BANKFR01", "USD", 100),  # holds no USD account
    ):
        try:
            await bank.submit(item)
        except HubError as err:
            tally.rejected[err.reason] += 1
        else:
            raise AssertionError("bad input was accepted")


async def progress(tally: Tally, started: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(1.0)
        elapsed = time.perf_counter() - started
        rate = tally.done / elapsed
        print(f"  … {tally.done:>5} transfers answered in {elapsed:4.1f} s ({rate:,.0f}/s)")


async def traffic(config: ClientConfig) -> Tally:
    banks = {code: BankClient(code, config) for code in BANKS}
    shared = Tally(planned=0)
    jobs = [
        *(
            same_currency(banks[c], ccy, peers, shared)
            for ccy, peers in SAME_CURRENCY.items()
            for c in peers
        ),
        *(corridor(banks[d], cr, s, t, shared) for ds, cr, s, t in CORRIDORS for d in ds),
        bad_input(banks["BANKUS01"], shared),
    ]
    stop = asyncio.Event()
    started = time.perf_counter()
    ticker = asyncio.create_task(progress(shared, started, stop))
    try:
        await asyncio.gather(*jobs)
    finally:
        stop.set()
        await ticker
        for client in banks.values():
            await client.close()
    elapsed = time.perf_counter() - started
    print(
        f"{shared.done} transfers answered in {elapsed:.1f} s ({shared.done / elapsed:,.0f}/s) "
        f"by {len(banks)} concurrent bank clients: {shared.accepted} accepted "
        f"({shared.fx} cross-currency), {shared.replayed} replayed, "
        f"{sum(shared.rejected.values())} rejected {dict(shared.rejected)}"
    )
    return shared


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = (
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "  " + "  ".join(padded)

    return "\n".join([line(header), "  " + "  ".join("-" * w for w in widths), *map(line, rows)])


async def settle_and_report(op: OperatorClient, config: ClientConfig) -> bool:
    ok = True
    currencies = sorted({c for _n, _r, cs, _d in BANKS.values() for c in cs})
    print("\nSettlement cycles")
    for currency in currencies:
        closed = (await op.close_cycle(currency)).closed
        settle_started = time.perf_counter()
        settled = await op.settle_cycle(closed.cycle_id)
        settle_ms = (time.perf_counter() - settle_started) * 1000
        rec = await op.reconciliation(closed.cycle_id)
        ok &= rec.all_matched and sum(p.net for p in closed.positions) == 0
        efficiency = closed.gross_value / closed.net_value if closed.net_value else float("inf")
        print(
            f"\n{closed.cycle_id}: {closed.transfer_count} legs, "
            f"gross {format_minor(currency, closed.gross_value)}, "
            f"net {format_minor(currency, closed.net_value)}"
            f" (netting efficiency {efficiency:.1f}x), settled in {settle_ms:.0f} ms, "
            f"reconciliation {'matched' if rec.all_matched else 'MISMATCH'}"
        )
        rows = [
            [
                p.bank_code,
                format_minor(currency, p.sent),
                format_minor(currency, p.received),
                format_minor(currency, p.net),
                format_minor(
                    currency,
                    next((x.amount for x in settled.postings if x.bank_code == p.bank_code), 0),
                ),
            ]
            for p in closed.positions
        ]
        print(table(rows, ["participant", "sent", "received", "net position", "posted"]))
    print("\nHub FX revenue (spread), realised at settlement")
    for _debtors, _creditor, _source, target in CORRIDORS:
        statement = await op.statement("HUB", target)
        print(f"  {target}: {format_minor(target, statement.closing_balance.minor_units)}")
        ok &= statement.closing_balance.minor_units > 0
    print("\nLedger check (double entry: every currency sums to zero)")
    for total in (await op.ledger_balance()).currencies:
        good = total.balance_sum == 0 and total.entry_sum == 0
        ok &= good
        verdict = "OK" if good else "FAILED"
        print(
            f"  {total.currency}: {total.entry_count} entries, sum {total.entry_sum}, "
            f"balances {total.balance_sum}: {verdict}"
        )
    async with BankClient("BANKPH01", config) as ph:
        for currency in ("PHP", "USD"):
            st = await ph.statement(currency)
            summed = st.opening_balance.minor_units + sum(e.amount for e in st.entries)
            good = summed == st.closing_balance.minor_units
            ok &= good
            opening = format_minor(currency, st.opening_balance.minor_units)
            closing = format_minor(currency, st.closing_balance.minor_units)
            print(
                f"  statement BANKPH01 {currency}: opening {opening} + {len(st.entries)} entries "
                f"= closing {closing}: {'OK' if good else 'FAILED'}"
            )
        last = (await ph.list(page_size=1)).transfers[0]
        ok &= last.status == cpb.TRANSFER_STATUS_SETTLED
    return bool(ok)


async def run() -> int:
    port, metrics_port = free_port(), free_port()
    proc = start_hub(port, metrics_port)
    target = f"127.0.0.1:{port}"
    try:
        await wait_serving(target, proc)
        print(
            f"hub serving on {target} (SQLite {WORK / 'remitnet.db'}), metrics http://127.0.0.1:{metrics_port}/metrics"
        )
        config = ClientConfig(target=target, deadline_s=60.0)
        async with OperatorClient(config) as op:
            await onboard(op)
            await traffic(config)
            ok = await settle_and_report(op, config)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 60)
    print(f"\nhub stopped on SIGTERM (exit code {code}); log: {LOG}")
    if not ok or code != 0:
        print("DEMO FAILED")
        return 1
    print("demo OK")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(run()))
