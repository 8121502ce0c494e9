"""`make demo`: the hub in its own process on SQLite, banks in seven regions driving
same-currency and FX traffic through concurrent gRPC clients, every cycle closed and
settled, the checks a hub operator would look at. Exits non-zero if a check fails."""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import hubs

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients import format as fmt
from remitnet.clients.bank import BankClient, instruction
from remitnet.clients.base import ClientConfig
from remitnet.clients.errors import HubError
from remitnet.clients.operator import OperatorClient
from remitnet.participants.v1 import participants_pb2 as ppb
from remitnet.services.domain.money import exponent

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "demo"
LOG = WORK.relative_to(ROOT) / "hub.log"
SEED = 20261123

# code -> (name, home region, currencies, deposit in major units per currency).
# A bank that sends same-currency traffic may see all of it leave before its
# peers' payments to it arrive: its deposit and cap cover its whole gross outflow
# (1.3 to 2.0 million a currency with this seed, plus at most 0.12 million of
# remittances), so its cross-currency remittances are never refused for
# liquidity whatever order the concurrent clients' batches commit in.
BANKS: dict[str, tuple[str, str, list[str], int]] = {
    "BANKUS01": ("First Atlantic", "us-east1", ["USD"], 2_000_000),
    "BANKUS02": ("Pacific Union", "us-west1", ["USD"], 3_000_000),
    "BANKDE01": ("Rheinbank", "europe-west1", ["EUR", "USD"], 3_000_000),
    "BANKFR01": ("Banque Seine", "europe-west1", ["EUR"], 3_000_000),
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
SHOWN_STATEMENT = ("BANKPH01", "PHP")  # printed entry by entry after settlement
WATCHED_BANK = "BANKPH01"  # its status stream is followed through the demo
Step = tuple[bool, list[cpb.TransferInstruction]]  # (as one batch?, items)


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


def start_hub() -> hubs.HubProcess:
    WORK.mkdir(parents=True, exist_ok=True)
    for old in WORK.glob("remitnet.db*"):
        old.unlink()
    rates = WORK / "rates.csv"
    now = datetime.now(UTC).isoformat()
    rows = "".join(f"{b},{q},{r},{now}\n" for (b, q), r in RATES.items())
    rates.write_text("base,quote,rate,as_of\n" + rows)
    (WORK / "hub.log").write_bytes(b"")
    return hubs.start_hub(
        "sqlite:///build/demo/remitnet.db",
        extra=["--fx-rates", str(rates), "--fx-corridor", "GBP:NGN=120"],
        log=ROOT / LOG,
        cwd=ROOT,
        wait=None,
    )


async def onboard(op: OperatorClient) -> None:
    for code, (name, region, currencies, deposit) in BANKS.items():
        await op.create_bank(code, name, region, currencies)
        for currency in currencies:
            funds = deposit * 10 ** exponent(currency)
            await op.deposit(code, currency, funds)
            await op.set_cap(code, currency, funds // 10)
    regions = len({b[1] for b in BANKS.values()})
    print(f"\nonboarded {len(BANKS)} banks in {regions} regions (remitnet banks)")
    print(fmt.indent(fmt.render(ppb.ListBanksResponse(banks=await op.list_banks()))))


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
            f"\n{closed.cycle_id}: {fmt.count(closed.transfer_count)} transfers, "
            f"gross {fmt.money(currency, closed.gross_value)}, "
            f"net {fmt.money(currency, closed.net_value)}"
            f" (netting efficiency gross/net {ratio:.1f}x), {len(settled.postings)} postings"
            f" settled, reconciliation {'matched' if rec.all_matched else 'MISMATCH'}"
        )
        print(fmt.indent(fmt.positions(closed, posted)))
    print("\nStatements after settlement (opening + entries = closing)")
    accounts = [(c, ccy) for c, (_n, _r, cs, _d) in BANKS.items() for ccy in cs]
    accounts += [("HUB", target) for *_x, target in CORRIDORS]  # the hub's FX spread, realised
    rows, shown = [], None
    for code, currency in accounts:
        st = await op.statement(code, currency)
        opening, closing = st.opening_balance.minor_units, st.closing_balance.minor_units
        good = opening + sum(e.amount for e in st.entries) == closing
        good &= not st.next_after_sequence and st.entries[-1].balance_after == closing
        ok &= good
        shown = st if (code, currency) == SHOWN_STATEMENT else shown
        rows.append([code, currency, fmt.money(currency, opening), fmt.count(len(st.entries)),
                     fmt.money(currency, closing), "OK" if good else "FAILED"])  # fmt: skip
    header = ["account", "ccy", "opening", "entries", "closing balance", "sum check"]
    print(fmt.indent(fmt.table(rows, header, "llrrrl")))
    if shown is not None:
        print(f"\nOne of them in full (remitnet statement {' '.join(SHOWN_STATEMENT)})")
        print(fmt.indent(fmt.render(shown)))
    print("\nLedger check (double entry, GetLedgerBalance; remitnet ledger)")
    ledger = await op.ledger_balance()
    ok &= all(t.balance_sum == 0 and t.entry_sum == 0 for t in ledger.currencies)
    print(fmt.indent(fmt.render(ledger)))
    async with BankClient("BANKPH01", op.config) as ph:
        status = (await ph.list(page_size=1)).transfers[0].status
        ok &= status == cpb.TRANSFER_STATUS_SETTLED
        print(f"  BANKPH01's latest transfer is {fmt.enum_name(cpb.TransferStatus, status)}")
    return bool(ok)


@dataclass
class Watched:
    """BANKPH01's status stream as its integration would follow it: events
    counted by kind, the stream cut once and resumed from the last token."""

    seen: Counter[str] = field(default_factory=Counter)
    ids: list[tuple[str, int]] = field(default_factory=list)
    token: str = ""
    resumed_at: int = 0
    settled_cycles: set[str] = field(default_factory=set)


async def watch_bank(config: ClientConfig, code: str, watched: Watched) -> None:
    async with BankClient(code, config) as bank:
        since = datetime.now(UTC)
        while True:
            stream = bank.watch(watched.token) if watched.token else bank.watch(since=since)
            cut = False
            async for event in stream:
                if event.HasField("transfer"):
                    t = event.transfer
                    kind = "cross-currency" if t.creditor_cycle_id else "same-currency"
                    status = fmt.enum_name(cpb.TransferStatus, t.status)
                    watched.seen[f"{kind} transfer {status}"] += 1
                    watched.ids.append((t.transfer_id, t.status))
                else:
                    status = fmt.enum_name(cpb.TransferStatus, event.cycle.status)
                    watched.seen[f"cycle {status}"] += 1
                    if event.cycle.status == cpb.TRANSFER_STATUS_SETTLED:
                        watched.settled_cycles.add(event.cycle.cycle_id)
                watched.token = event.resume_token
                if not watched.resumed_at and len(watched.ids) >= 25:
                    watched.resumed_at = len(watched.ids)
                    cut = True
                    break  # a disconnect: carry on from the token
            await stream.aclose()
            if not cut:
                return


def report_stream(code: str, watched: Watched, cycles: int) -> bool:
    repeats = len(watched.ids) - len(set(watched.ids))
    print(f"\nStatus stream of {code} (WatchTransfers, resumed once from its last token)")
    rows = [[kind, str(n)] for kind, n in sorted(watched.seen.items())]
    print(fmt.indent(fmt.table(rows, ["event", "count"], "lr")))
    print(f"  cut after {watched.resumed_at} events and resumed: {repeats} repeated, "
          f"settled cycles seen {len(watched.settled_cycles)} of {cycles}")  # fmt: skip
    return repeats == 0 and len(watched.settled_cycles) == cycles


async def run() -> int:
    started = time.perf_counter()
    hub = start_hub()
    target, ok, tally = hub.target, False, Tally(planned=0)
    try:
        try:
            await hub.wait_healthy(60)
        except (hubs.HubExited, TimeoutError) as exc:
            raise SystemExit(str(exc)) from exc
        print(f"hub serving gRPC on {target} (SQLite build/demo/remitnet.db), "
              f"metrics http://127.0.0.1:{hub.metrics_port}/metrics, log {LOG}")  # fmt: skip
        config = ClientConfig(target=target, deadline_s=60.0)
        async with OperatorClient(config) as op:
            await onboard(op)
            watched = Watched()
            watcher = asyncio.create_task(watch_bank(config, WATCHED_BANK, watched))
            tally = await traffic(config)
            async with BankClient("BANKUS01", config) as us:
                print("\nBANKUS01's own position before settlement (remitnet position)")
                print(fmt.indent(fmt.render(await us.position())))
            ok = await settle_and_report(op)
            cycles = len(BANKS[WATCHED_BANK][2])
            for _ in range(100):  # the settlement events reach the stream
                if len(watched.settled_cycles) >= cycles:
                    break
                await asyncio.sleep(0.1)
            if watcher.done() and watcher.exception() is not None:
                print(f"\nthe status stream failed: {watcher.exception()!r}")
                ok = False
            watcher.cancel()
            ok &= report_stream(WATCHED_BANK, watched, cycles)
        ok &= tally.ok and tally.done == tally.planned
    finally:
        code = await asyncio.to_thread(hub.stop, 30)
        if hub.killed:
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
