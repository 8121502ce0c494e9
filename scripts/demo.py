"""`make demo`: the hub in its own process on SQLite, banks in seven regions driving
same-currency and FX traffic through concurrent gRPC clients, every cycle closed and
settled, the checks a hub operator would look at. Exits non-zero if a check fails."""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
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
from remitnet.services.domain.money import Money, exponent, format_minor

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "demo"
LOG = WORK.relative_to(ROOT) / "hub.log"
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
RATES = {("USD", "PHP"): "56.10", ("USD", "EUR"): "0.92", ("USD", "INR"): "83.20"}
RATES |= {("USD", "GBP"): "0.79", ("USD", "NGN"): "1480.50"}
# (debtors, creditor, source, target): cross-border corridors through FX quotes
CORRIDORS = [
    (["BANKUS01", "BANKUS02"], "BANKPH01", "USD", "PHP"),
    (["BANKDE01", "BANKFR01"], "BANKIN01", "EUR", "INR"),
    (["BANKGB01"], "BANKNG01", "GBP", "NGN"),
]
SAME_CURRENCY = {
    "USD": ["BANKUS01", "BANKUS02", "BANKDE01", "BANKPH01"],
    "EUR": ["BANKDE01", "BANKFR01"],
}
ROUNDS, FX_PER_DEBTOR, EDGE_CASES = 3, 60, 6
Step = tuple[bool, list[cpb.TransferInstruction]]  # (as one batch?, items)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uetr(rng: random.Random) -> str:
    """A UUIDv4 transfer id drawn from the seeded generator: reruns are identical."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class Tally:
    planned: int
    accepted: int = 0
    replayed: int = 0
    fx: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    ok: bool = True

    @property
    def done(self) -> int:
        return self.accepted + self.replayed + sum(self.rejected.values())


def start_hub(port: int, metrics_port: int) -> subprocess.Popen[bytes]:
    WORK.mkdir(parents=True, exist_ok=True)
    for old in WORK.glob("remitnet.db*"):
        old.unlink()
    rates = WORK / "rates.csv"
    now = datetime.now(UTC).isoformat()
    rows = "".join(f"{b},{q},{r},{now}\n" for (b, q), r in RATES.items())
    rates.write_text("base,quote,rate,as_of\n" + rows)
    log = (WORK / "hub.log").open("wb")
    command = [
        sys.executable, "-m", "remitnet.services.entrypoints.cli", "serve", "--insecure",
        "--db", "sqlite:///build/demo/remitnet.db", "--port", str(port),
        "--metrics-port", str(metrics_port), "--fx-rates", str(rates),
        "--fx-corridor", "GBP:NGN=120",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


async def wait_serving(target: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"the hub exited with {proc.returncode}; see {LOG}")
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"the hub did not report SERVING within {timeout_s:.0f} s; see {LOG}")


def table(rows: list[list[str]], header: list[str], left: int = 1) -> str:
    """A plain-text table; the first `left` columns are text, the others numbers."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        aligned = zip(cells, widths, strict=True)
        padded = (c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(aligned))
        return "  " + "  ".join(padded)

    return "\n".join([line(header), "  " + "  ".join("-" * w for w in widths), *map(line, rows)])


async def onboard(op: OperatorClient) -> None:
    rows = []
    for code, (name, region, currencies, deposit) in BANKS.items():
        await op.create_bank(code, name, region, currencies)
        for currency in currencies:
            funds = Money(currency, deposit * 10 ** exponent(currency))
            cap = Money(currency, funds.minor_units // 10)
            await op.deposit(code, currency, funds.minor_units)
            await op.set_cap(code, currency, cap.minor_units)
            rows.append([code, name, region, funds.format(), cap.format()])
    regions = len({b[1] for b in BANKS.values()})
    print(f"\nonboarded {len(BANKS)} banks in {regions} regions")
    print(table(rows, ["bank", "name", "home region", "prefunded liquidity", "net debit cap"], 3))


def plan(code: str, currency: str, peers: list[str]) -> list[Step]:
    """Seeded traffic of one bank in one currency: big batches and unary bursts."""
    rng = random.Random(f"{SEED}-{code}-{currency}")
    others = [p for p in peers if p != code]

    def item(low: int, high: int) -> cpb.TransferInstruction:
        amount = rng.randint(low, high)
        return instruction(rng.choice(others), currency, amount, transfer_id=uetr(rng))

    steps: list[Step] = []
    for _ in range(ROUNDS):
        steps.append((True, [item(1_000, 250_000) for _ in range(rng.randint(250, 600))]))
        steps.append((False, [item(100, 50_000) for _ in range(24)]))
    return steps


async def drive(bank: BankClient, steps: list[Step], tally: Tally) -> None:
    for as_batch, items in steps:
        if as_batch:
            for result in (await bank.submit_batch(items)).results:
                if result.HasField("error"):
                    tally.rejected[result.error.reason] += 1
                else:
                    tally.accepted += 1
            continue
        # Unary calls, all of this burst in flight at once.
        outcomes = await asyncio.gather(*map(bank.submit, items), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, HubError):
                tally.rejected[outcome.reason] += 1
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                tally.accepted += 1


async def corridor(bank: BankClient, creditor: str, source: str, target: str, tally: Tally) -> None:
    rng = random.Random(f"{SEED}-{bank.bank_code}-{target}")

    async def remit(amount: int, transfer_id: str) -> None:
        quote = await bank.quote(source, target, source_amount=amount)
        paid = quote.source_amount.minor_units
        item = instruction(creditor, source, paid, transfer_id=transfer_id)
        item.quote_id, item.remittance_info = quote.quote_id, "family support"
        await bank.submit(item)
        tally.accepted += 1
        tally.fx += 1

    for _ in range(FX_PER_DEBTOR // 10):
        await asyncio.gather(*(remit(rng.randint(5_000, 200_000), uetr(rng)) for _ in range(10)))


async def edge_cases(bank: BankClient, tally: Tally) -> None:
    rng = random.Random(f"{SEED}-edge")
    item = instruction("BANKUS02", "USD", 12_345, transfer_id=uetr(rng))
    first, again = await bank.submit(item), await bank.submit(item)
    tally.accepted += 1
    tally.replayed += 1
    same = again.transfer == first.transfer
    tally.notes.append(
        f"resubmitted {item.transfer_id}: replayed={again.replayed}, original returned: {same}"
    )
    tally.ok &= again.replayed and same
    reused = item.transfer_id
    for bad in (
        instruction("BANKUS02", "USD", 99_999, transfer_id=reused),  # same id, other content
        instruction("BANKUS02", "USD", 10**13),  # far beyond liquidity plus cap
        instruction("NOSUCHBANK", "USD", 100),
        instruction("BANKFR01", "USD", 100),  # holds no USD account
    ):
        try:
            await bank.submit(bad)
        except HubError as err:
            tally.rejected[err.reason] += 1
        else:
            tally.ok = False
            tally.notes.append(f"bad input accepted: {bad}")


async def progress(tally: Tally, started: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except TimeoutError:
            elapsed = time.perf_counter() - started
            print(f"  … {tally.done:>5} / {tally.planned} transfers answered in {elapsed:4.1f} s"
                  f" ({tally.done / elapsed:,.0f}/s)")  # fmt: skip


async def traffic(config: ClientConfig) -> Tally:
    banks = {code: BankClient(code, config) for code in BANKS}
    plans = [(c, plan(c, ccy, peers)) for ccy, peers in SAME_CURRENCY.items() for c in peers]
    debtors = sum(len(ds) for ds, *_ in CORRIDORS)
    items = sum(len(step[1]) for _c, steps in plans for step in steps)
    tally = Tally(planned=items + debtors * FX_PER_DEBTOR + EDGE_CASES)
    print(f"\nsending {tally.planned} transfers through {len(banks)} concurrent bank clients")
    jobs = [
        *(drive(banks[c], steps, tally) for c, steps in plans),
        *(corridor(banks[d], cr, s, t, tally) for ds, cr, s, t in CORRIDORS for d in ds),
        edge_cases(banks["BANKUS01"], tally),
    ]
    stop = asyncio.Event()
    started = time.perf_counter()
    ticker = asyncio.create_task(progress(tally, started, stop))
    try:
        await asyncio.gather(*jobs)
    finally:
        elapsed = time.perf_counter() - started
        stop.set()
        await ticker
        for client in banks.values():
            await client.close()
    rejected = sum(tally.rejected.values())
    print(
        f"{tally.done} transfers answered in {elapsed:.2f} s ({tally.done / elapsed:,.0f}/s): "
        f"{tally.accepted} accepted ({tally.fx} cross-currency), {tally.replayed} replayed, "
        f"{rejected} rejected by reason {dict(sorted(tally.rejected.items()))}"
    )
    print("\n".join(f"  {note}" for note in tally.notes))
    return tally


async def settle_and_report(op: OperatorClient) -> bool:
    ok = True
    currencies = sorted({c for _n, _r, cs, _d in BANKS.values() for c in cs})
    print("\nSettlement cycles (per-bank multilateral net positions)")
    for currency in currencies:
        closed = (await op.close_cycle(currency)).closed
        settled = await op.settle_cycle(closed.cycle_id)
        rec = await op.reconciliation(closed.cycle_id)
        posted = {x.bank_code: x.amount for x in settled.postings}
        nets = {p.bank_code: p.net for p in closed.positions}
        ok &= rec.all_matched and sum(nets.values()) == 0
        ok &= posted == {b: n for b, n in nets.items() if n}
        ratio = closed.gross_value / closed.net_value if closed.net_value else float("inf")
        print(
            f"\n{closed.cycle_id}: {closed.transfer_count} transfers, "
            f"gross {format_minor(currency, closed.gross_value)}, "
            f"net {format_minor(currency, closed.net_value)}"
            f" (netting efficiency gross/net {ratio:.1f}x), {len(settled.postings)} postings"
            f" settled, reconciliation {'matched' if rec.all_matched else 'MISMATCH'}"
        )
        rows = [
            [p.bank_code, *(format_minor(currency, v) for v in (p.sent, p.received, p.net)),
             format_minor(currency, posted.get(p.bank_code, 0))]
            for p in closed.positions
        ]  # fmt: skip
        print(table(rows, ["participant", "sent", "received", "net position", "posted"]))
    print("\nStatements after settlement (opening + entries = closing)")
    accounts = [(c, ccy) for c, (_n, _r, cs, _d) in BANKS.items() for ccy in cs]
    accounts += [("HUB", target) for *_x, target in CORRIDORS]  # the hub's FX spread, realised
    rows = []
    for code, currency in accounts:
        st = await op.statement(code, currency)
        opening, closing = st.opening_balance.minor_units, st.closing_balance.minor_units
        good = opening + sum(e.amount for e in st.entries) == closing
        good &= not st.next_after_sequence and st.entries[-1].balance_after == closing
        ok &= good
        rows.append([code, currency, format_minor(currency, opening), str(len(st.entries)),
                     format_minor(currency, closing), "OK" if good else "FAILED"])  # fmt: skip
    print(table(rows, ["account", "ccy", "opening", "entries", "closing balance", "sum check"], 2))
    print("\nLedger check (double entry, GetLedgerBalance)")
    for total in (await op.ledger_balance()).currencies:
        good = total.balance_sum == 0 and total.entry_sum == 0
        ok &= good
        print(
            f"  {total.currency}: {total.entry_count} entries, entry sum {total.entry_sum}, "
            f"balance sum {total.balance_sum}: ledger sums to zero: {'OK' if good else 'FAILED'}"
        )
    async with BankClient("BANKPH01", op.config) as ph:
        status = (await ph.list(page_size=1)).transfers[0].status
        ok &= status == cpb.TRANSFER_STATUS_SETTLED
        print(f"  BANKPH01's latest transfer is {cpb.TransferStatus.Name(status)}")
    return bool(ok)


async def run() -> int:
    started = time.perf_counter()
    port, metrics_port = free_port(), free_port()
    proc = start_hub(port, metrics_port)
    target, ok, tally = f"127.0.0.1:{port}", False, Tally(planned=0)
    try:
        await wait_serving(target, proc)
        print(f"hub serving gRPC on {target} (SQLite build/demo/remitnet.db), "
              f"metrics http://127.0.0.1:{metrics_port}/metrics, log {LOG}")  # fmt: skip
        config = ClientConfig(target=target, deadline_s=60.0)
        async with OperatorClient(config) as op:
            await onboard(op)
            tally = await traffic(config)
            ok = await settle_and_report(op)
        ok &= tally.ok and tally.done == tally.planned
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = await asyncio.to_thread(proc.wait)
            print("the hub did not stop within 30 s of SIGTERM and was killed")
    elapsed = time.perf_counter() - started
    print(f"\nhub stopped on SIGTERM (exit code {code}); log: {LOG}")
    print(f"demo took {elapsed:.1f} s end to end ({tally.done / elapsed:,.0f} transfers/s overall)")
    if not ok or code != 0:
        print("DEMO FAILED")
        return 1
    print("demo OK")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(run()))
