"""`make demo`: the hub in its own process on SQLite, banks in seven regions driving
same-currency and FX traffic through concurrent gRPC clients, two FX providers
competing for every corridor (best price wins; one runs out of a currency and the
other takes over), the scheme lifecycle (payee confirmation: a transfer confirmed,
one rejected, one expired by the hub; a return; recalls accepted and rejected;
cancels by the debtor and the operator), a bank that speaks ISO 20022 only (pacs.008
in, pacs.002 back, camt.053 after settlement), every cycle closed and settled, the
checks a hub operator would look at. Exits non-zero if a check fails."""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import grpc
import hubs
from lxml import etree

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients import format as fmt
from remitnet.clients.bank import BankClient, acceptance, instruction, rejection
from remitnet.clients.base import ClientConfig
from remitnet.clients.errors import HubError
from remitnet.clients.iso20022 import Iso20022Client
from remitnet.clients.iso_messages import CreditTransfer, pacs008, statement, statuses
from remitnet.clients.operator import Onboarding, OperatorClient
from remitnet.clients.provider import ProviderClient
from remitnet.fx.v1 import fx_pb2 as fxpb
from remitnet.participants.v1 import participants_pb2 as ppb
from remitnet.services.adapters.iso20022 import xml as iso_xml
from remitnet.services.domain.errors import InvalidArgument
from remitnet.services.domain.model import DEFAULT_PROVIDER, HUB
from remitnet.services.domain.money import exponent

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "demo"
LOG = WORK.relative_to(ROOT) / "hub.log"
SEED = 20261123

# code -> (name, home region, currencies, deposit in major units per currency).
# A bank that sends same-currency traffic may see all of it leave before its
# peers' payments to it arrive: its deposit and cap cover its whole gross outflow
# (1.3 to 2.0 million a currency with this seed, plus at most 0.14 million of
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
# The hub's default provider FXHUB gets these from --fx-rates but is never funded
# here: it quotes every corridor and can deliver none.
RATES = {("USD", "PHP"): "56.10", ("USD", "EUR"): "0.92", ("USD", "INR"): "83.20"}
RATES |= {("USD", "GBP"): "0.79", ("USD", "NGN"): "1480.50"}
# FX providers: code -> (name, home region, funds in major units per currency it
# sells, spread in basis points per pair it quotes). Both publish the same mids,
# so the narrower spread is the better price: FXPALPHA wins USD->PHP and
# GBP->NGN, FXPBETA EUR->INR. FXPALPHA holds little PHP: the demo spends all of
# it (one quote for its exact headroom, before the concurrent traffic, so it runs
# out whatever order batches commit in) and FXPBETA takes USD->PHP over. The
# others are funded far beyond the traffic (at most 13.4 million PHP, 21.7
# million INR and 225 million NGN with these amounts).
MIDS = {("USD", "PHP"): "56.10", ("EUR", "INR"): "90.40", ("GBP", "NGN"): "1874.05"}
PROVIDERS: dict[str, tuple[str, str, dict[str, int], dict[tuple[str, str], int]]] = {
    "FXPALPHA": (
        "Alpha FX", "europe-west2", {"PHP": 500_000, "INR": 50_000_000, "NGN": 1_000_000_000},
        {("USD", "PHP"): 25, ("EUR", "INR"): 60, ("GBP", "NGN"): 80},
    ),
    "FXPBETA": (
        "Beta Markets", "asia-southeast1",
        {"PHP": 50_000_000, "INR": 50_000_000, "NGN": 1_000_000_000},
        {("USD", "PHP"): 45, ("EUR", "INR"): 30, ("GBP", "NGN"): 110},
    ),
}  # fmt: skip
THIN = ("FXPALPHA", "PHP")  # the provider that runs out, and of what
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
ROUNDS, FX_PER_DEBTOR, EDGE_CASES = 3, 60, 7
SHOWN_STATEMENTS = [("BANKPH01", "PHP"), THIN]  # printed entry by entry after settlement
WATCHED_BANK = "BANKPH01"  # its status stream is followed through the demo
# The bank that speaks ISO 20022 only, and the BICs its messages name.
ISO_BANK, ISO_CCY, ISO_FUNDS = "BANKSG01", "USD", 50_000
BICS = {ISO_BANK: "LCTBSGSG", "BANKUS01": "FATLUS33", "BANKUS02": "PCUNUS6L"}
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


@dataclass
class Book:
    """The quotes transfers were accepted with, by provider: who delivered
    which corridor, and the spread each kept (Quote.fee, in the target
    currency: what it delivered less than the mid; nothing is posted for it)."""

    quotes: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (src, tgt, provider)
    spread: Counter[tuple[str, str]] = field(default_factory=Counter)  # (provider, currency)

    def used(self, quote: fxpb.Quote) -> None:
        source, target = quote.source_amount.currency, quote.target_amount.currency
        self.quotes[(source, target, quote.provider)] += 1
        self.spread[(quote.provider, quote.fee.currency)] += quote.fee.minor_units


def best(source: str, target: str, without: str = "") -> str:
    """The provider the hub should pick for (source, target): same mids, so the
    narrowest spread; a tie goes to the smallest code."""
    offers = [(spreads[(source, target)], code) for code, (*_x, spreads) in PROVIDERS.items()]
    return min(o for o in offers if o[1] != without)[1]


def remit_item(creditor: str, quote: fxpb.Quote, transfer_id: str) -> cpb.TransferInstruction:
    """The transfer that pays with `quote`: the source amount it charges."""
    paid = quote.source_amount
    item = instruction(creditor, paid.currency, paid.minor_units, transfer_id=transfer_id)
    item.quote_id, item.remittance_info = quote.quote_id, "family support"
    return item


async def headroom(config: ClientConfig, provider: str, currency: str) -> int:
    """What `provider` can still deliver in `currency`, as it reads it itself."""
    async with ProviderClient(provider, config) as fxp:
        return int((await fxp.position(currency)).positions[0].headroom)


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
    # The banks at once, as `remitnet onboard-file banks.csv` onboards a
    # scheme's (OperatorClient.onboard_many: each bank's deposits right
    # after its CreateBank, several banks in flight); then their caps.
    banks = [
        Onboarding(
            code,
            name,
            region,
            currencies,
            {c: deposit * 10 ** exponent(c) for c in currencies},
            bic=BICS.get(code, ""),
        )
        for code, (name, region, currencies, deposit) in BANKS.items()
    ]
    refused = [r for r in await op.onboard_many(banks) if isinstance(r, HubError)]
    if refused:
        raise refused[0]
    for b in banks:
        for currency, funds in b.deposits.items():
            await op.set_cap(b.code, currency, funds // 10)
    # A provider holds an account in every currency it deals in: funded in
    # those it sells (what it delivers comes from there), empty in those it
    # buys (the banks' payments to it arrive there at settlement).
    for code, (name, region, sells, spreads) in PROVIDERS.items():
        buys = {base for base, _quote in spreads}
        await op.create_provider(code, name, region, sorted(buys | set(sells)))
        for currency, funds in sells.items():
            await op.deposit(code, currency, funds * 10 ** exponent(currency))
    regions = len({b[1] for b in BANKS.values()})
    print(
        f"\nonboarded {len(BANKS)} banks in {regions} regions (as remitnet onboard-file does) and "
        f"{len(PROVIDERS)} FX providers (remitnet banks; {DEFAULT_PROVIDER} is the hub's default "
        "provider, not funded here)"
    )
    print(fmt.indent(fmt.render(ppb.ListBanksResponse(banks=await op.list_banks()))))
    # Each provider publishes its own mids and spreads, as itself (fxp:CODE).
    for code, (*_x, spreads) in PROVIDERS.items():
        async with ProviderClient(code, op.config) as fxp:
            await fxp.publish_rates({pair: MIDS[pair] for pair in spreads}, spreads=spreads)
    print("\nrates by provider (ProviderClient.publish_rates as fxp:CODE; remitnet rates list)")
    rows = [
        [r.provider, f"{r.base_currency}/{r.quote_currency}", r.mid_rate,
         f"{r.spread_bps} bps" if r.HasField("spread_bps") else "the hub's corridor spread"]
        for r in sorted(await op.list_rates(), key=lambda r: (r.provider, r.base_currency))
    ]  # fmt: skip
    print(fmt.indent(fmt.table(rows, ["provider", "pair", "mid", "spread"], "lllr")))


async def best_price(config: ClientConfig) -> bool:
    """One ask per corridor to each provider by name, then to all: the hub
    picks the best price among the providers that can deliver."""
    print("\nbest price: the same ask to each provider by name, then to any (CreateQuote)")
    ok, rows, refusals = True, [], Counter[str]()
    for debtors, _creditor, source, target in CORRIDORS:
        amount = 1_000 * 10 ** exponent(source)
        async with BankClient(debtors[0], config) as bank:
            offers = {
                p: await bank.quote(source, target, source_amount=amount, provider=p)
                for p in sorted(PROVIDERS)
            }
            chosen = await bank.quote(source, target, source_amount=amount)
            try:
                await bank.quote(source, target, source_amount=amount, provider=DEFAULT_PROVIDER)
                ok = False
            except HubError as err:
                refusals[err.reason] += 1
        # Largest target amount for the same source amount; first in code order on a tie.
        top = max(offers, key=lambda p: offers[p].target_amount.minor_units)
        ok &= chosen.provider == top == best(source, target)
        ok &= chosen.target_amount == offers[top].target_amount
        cells = [f"{fmt.money_of(q.target_amount)} ({q.spread_bps} bps)" for q in offers.values()]
        rows.append([f"{source}->{target}", debtors[0], fmt.money(source, amount), *cells,
                     f"{chosen.provider}: delivers the most"])  # fmt: skip
    header = ["corridor", "bank", "pays", *(f"{p} delivers" for p in sorted(PROVIDERS)), "best"]
    print(fmt.indent(fmt.table(rows, header, "lllrrl")))
    print(f"  {DEFAULT_PROVIDER} quotes these corridors too (--fx-rates) but holds no liquidity: "
          f"asked by name, refused {dict(refusals)}")  # fmt: skip
    ok &= refusals == Counter({"FX_PROVIDER_INSUFFICIENT_LIQUIDITY": len(CORRIDORS)})
    return bool(ok)


async def run_out(config: ClientConfig, book: Book) -> bool:
    """The provider with the best USD->PHP price spends all its PHP: a quote
    taken before is refused when it clears, new ones go to the other
    provider. Sequential, before the concurrent traffic, so it ends the same
    way every run; afterwards the thin provider's PHP headroom is exactly 0
    and no quote of the traffic can go to it."""
    provider, currency = THIN
    debtors, creditor, source, target = next(c for c in CORRIDORS if c[3] == currency)
    rng = random.Random(f"{SEED}-run-out")
    left = await headroom(config, provider, currency)
    ok = best(source, target) == provider
    print(f"\n{provider} runs out of {currency}: it can deliver {fmt.money(currency, left)} "
          f"(its headroom; remitnet position --as fxp:{provider})")  # fmt: skip
    async with BankClient(debtors[0], config) as a, BankClient(debtors[1], config) as b:
        early = await a.quote(source, target, target_amount=left * 3 // 5)
        got, pays = fmt.money_of(early.target_amount), fmt.money_of(early.source_amount)
        print(f"  {a.bank_code} quotes {got} for {pays}: {early.provider} (best price), unpaid")
        whole = await b.quote(source, target, target_amount=left)
        await b.submit(remit_item(creditor, whole, uetr(rng)))
        book.used(whole)
        now = await headroom(config, provider, currency)
        ok &= early.provider == whole.provider == provider and now == 0
        print(f"  {b.bank_code} quotes all of it, {fmt.money_of(whole.target_amount)}, from "
              f"{whole.provider} and pays with it: accepted; {provider} can now deliver "
              f"{fmt.money(currency, now)}")  # fmt: skip
        reasons = []
        try:
            await a.submit(remit_item(creditor, early, uetr(rng)))
        except HubError as err:
            reasons.append(err.reason)
            print(f"  {a.bank_code} pays with the quote it took before: refused when it clears, "
                  f"{err.reason}")  # fmt: skip
        ask = early.target_amount.minor_units
        try:
            await a.quote(source, target, target_amount=ask, provider=provider)
        except HubError as err:
            reasons.append(err.reason)
            print(f"  {a.bank_code} asks {provider} by name again: refused at quote time, "
                  f"{err.reason}")  # fmt: skip
        again = await a.quote(source, target, target_amount=ask)
        await a.submit(remit_item(creditor, again, uetr(rng)))
        book.used(again)
        ok &= again.provider == best(source, target, without=provider)
        print(f"  {a.bank_code} asks any provider: {again.provider} takes over at "
              f"{again.spread_bps} bps, {fmt.money_of(again.source_amount)} instead of {pays} "
              f"for the same {got}: accepted")  # fmt: skip
        beyond = await headroom(config, again.provider, currency) + 1
        try:
            await a.quote(source, target, target_amount=beyond)
        except HubError as err:
            reasons.append(err.reason)
            print(f"  more than any provider can deliver ({fmt.money(currency, beyond)}): "
                  f"refused at quote time, {err.reason}")  # fmt: skip
    ok &= reasons == ["FX_PROVIDER_INSUFFICIENT_LIQUIDITY"] * 3
    return bool(ok)


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


async def corridor(
    bank: BankClient, creditor: str, source: str, target: str, tally: Tally, book: Book
) -> None:
    rng = random.Random(f"{SEED}-{bank.bank_code}-{target}")

    async def remit(amount: int, transfer_id: str) -> None:
        quote = await bank.quote(source, target, source_amount=amount)
        await bank.submit(remit_item(creditor, quote, transfer_id))
        book.used(quote)
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
        instruction("FXPALPHA", "USD", 100),  # an FX provider, not a bank: NOT_A_BANK
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


async def traffic(config: ClientConfig, book: Book) -> Tally:
    banks = {code: BankClient(code, config) for code in BANKS}
    plans = [(c, plan(c, ccy, peers)) for ccy, peers in SAME_CURRENCY.items() for c in peers]
    debtors = sum(len(ds) for ds, *_ in CORRIDORS)
    items = sum(len(step[1]) for _c, steps in plans for step in steps)
    tally = Tally(planned=items + debtors * FX_PER_DEBTOR + EDGE_CASES)
    print(f"\nsending {tally.planned} transfers through {len(banks)} concurrent bank clients")
    jobs = [
        *(drive(banks[c], steps, tally) for c, steps in plans),
        *(corridor(banks[d], cr, s, t, tally, book) for ds, cr, s, t in CORRIDORS for d in ds),
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
    # Every corridor's quotes went to its best price among the providers that
    # could deliver: the thin one is out of its currency by now.
    print("  cross-currency quotes by provider (best price among those that can deliver):")
    for senders, _creditor, source, target in CORRIDORS:
        without = THIN[0] if target == THIN[1] else ""
        want = best(source, target, without)
        got = {p: k for (s, t, p), k in book.quotes.items() if (s, t) == (source, target)}
        n = len(senders) * FX_PER_DEBTOR
        # The run-out's two accepted quotes are in the book too, one each.
        tally.ok &= got == ({want: n + 1, without: 1} if without else {want: n})
        why = f" (with the run-out's two; {without} has no {target} left)" if without else ""
        listed = ", ".join(f"{p} {k}" for p, k in sorted(got.items()))
        print(f"    {source}->{target}: {listed}{why}")
    return tally


async def provider_positions(config: ClientConfig) -> None:
    print("\nFX providers' positions before settlement (remitnet position --as fxp:CODE)")
    rows = []
    for code in PROVIDERS:
        async with ProviderClient(code, config) as fxp:
            for p in (await fxp.position()).positions:
                rows.append([code, p.currency, *(fmt.money(p.currency, v) for v in
                             (p.balance, p.unsettled_net, p.headroom))])  # fmt: skip
    header = ["provider", "ccy", "balance", "unsettled net", "headroom (can deliver)"]
    print(fmt.indent(fmt.table(rows, header, "llrrr")))


async def settle_and_report(op: OperatorClient, book: Book) -> bool:
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
        ok &= HUB not in nets  # the providers are the conversions' counterparties
        ratio = closed.gross_value / closed.net_value if closed.net_value else float("inf")
        print(
            f"\n{closed.cycle_id}: {fmt.count(closed.transfer_count)} transfers, "
            f"gross {fmt.money(currency, closed.gross_value)}, "
            f"net {fmt.money(currency, closed.net_value)}"
            f" (netting efficiency gross/net {ratio:.1f}x), {len(settled.postings)} postings"
            f" settled, reconciliation {'matched' if rec.all_matched else 'MISMATCH'}"
        )
        print(fmt.indent(fmt.positions(closed, posted)))
    print(f"\nno {HUB} position in any cycle: the FX providers, not the hub, are the "
          f"counterparties of every conversion: {'OK' if ok else 'FAILED'}")  # fmt: skip
    kept = "; ".join(
        f"{p} " + ", ".join(fmt.money(c, v) for (q, c), v in sorted(book.spread.items()) if q == p)
        for p in sorted(PROVIDERS)
    )
    print(f"spread kept by the providers (Quote.fee: delivered below mid; the hub charges "
          f"no conversion fee): {kept}")  # fmt: skip
    print("\nStatements after settlement (opening + entries = closing)")
    accounts = [(c, ccy) for c, (_n, _r, cs, _d) in BANKS.items() for ccy in cs]
    accounts += [(c, ccy) for c, (_n, _r, sells, spreads) in PROVIDERS.items()
                 for ccy in sorted({b for b, _q in spreads} | set(sells))]  # fmt: skip
    rows = []
    for code, currency in accounts:
        st = await op.statement(code, currency)
        opening, closing = st.opening_balance.minor_units, st.closing_balance.minor_units
        if code in PROVIDERS and not st.entries:
            continue  # a currency a provider dealt in only through the other corridors
        good = opening + sum(e.amount for e in st.entries) == closing
        good &= not st.next_after_sequence and st.entries[-1].balance_after == closing
        ok &= good
        rows.append([code, currency, fmt.money(currency, opening), fmt.count(len(st.entries)),
                     fmt.money(currency, closing), "OK" if good else "FAILED"])  # fmt: skip
    header = ["account", "ccy", "opening", "entries", "closing balance", "sum check"]
    print(fmt.indent(fmt.table(rows, header, "llrrrl")))
    for code, currency in SHOWN_STATEMENTS:
        if code in PROVIDERS:  # as the provider reads its own
            async with ProviderClient(code, op.config) as fxp:
                shown = await fxp.statement(currency)
            how = f"--as fxp:{code} "
        else:
            shown, how = await op.statement(code, currency), ""
        print(f"\nOne of them in full (remitnet statement {how}{code} {currency})")
        print(fmt.indent(fmt.render(shown)))
    print("\nLedger check (double entry, GetLedgerBalance; remitnet ledger)")
    ledger = await op.ledger_balance()
    ok &= all(t.balance_sum == 0 and t.entry_sum == 0 for t in ledger.currencies)
    print(fmt.indent(fmt.render(ledger)))
    return bool(ok)


# -- the scheme lifecycle: payee confirmation, expiry, returns, recalls ------

LC_DEBTOR, LC_CREDITOR, LC_CCY = "BANKUS01", WATCHED_BANK, "USD"
# label -> (what happens to it, amount in minor units); the creditor requires
# confirmation, so each of them is RESERVED first.
STORY: dict[str, tuple[str, int]] = {
    "A": ("confirmed by the creditor", 100_000),
    "B": ("rejected AC04 by the creditor", 25_000),
    "C": ("expired (1 s to confirm)", 7_500),
    "D": ("accepted, then returned AC01", 40_000),
    "E": ("accepted, recalled DUPL, recall accepted", 60_000),
    "F": ("accepted, recalled DUPL, recall rejected NOAS", 30_000),
    "G": ("accepted, cancelled by the operator", 15_000),
    "H": ("cancelled by its debtor while reserved", 5_000),
}
STANDING = ("A", "F")  # netted and still standing once the act is over
OPERATOR_REASON = "sent twice by a faulty batch (ticket OPS-1042)"


@dataclass
class Story:
    ids: dict[str, str] = field(default_factory=dict)  # label -> transfer id
    returns: dict[str, str] = field(default_factory=dict)  # label -> its return's id
    ok: bool = True

    def label(self, transfer_id: str) -> str:
        for name, tid in self.ids.items():
            if tid == transfer_id:
                return name
        for name, rid in self.returns.items():
            if rid == transfer_id:
                return f"return of {name}"
        return transfer_id[:8]

    def check(self, good: bool, what: str) -> None:
        if not good:
            self.ok = False
            print(f"  CHECK FAILED: {what}")


async def refusal(call: Awaitable[object]) -> HubError | None:
    """The hub's refusal of a call (None: it was not refused)."""
    try:
        await call
    except HubError as err:
        return err
    return None


async def lifecycle(config: ClientConfig, op: OperatorClient, watched: Watched) -> Story:
    """Payee confirmation, hub-enforced expiry, returns and recalls, between
    BANKUS01 and BANKPH01 in USD through the SDK, with the matching
    `remitnet` commands named. BANKPH01's status stream (the watcher) gets
    the RESERVED and recall events: its cues to act."""
    story = Story()
    rng = random.Random(f"{SEED}-lifecycle")
    story.ids = {name: uetr(rng) for name in STORY}
    watched.follow |= set(story.ids.values())
    print(f"\nPayee confirmation, expiry, returns and recalls ({LC_DEBTOR} -> {LC_CREDITOR}, "
          f"{LC_CCY})")  # fmt: skip
    bank = await op.set_confirmation_required(LC_CREDITOR)
    story.check(bank.requires_confirmation, "the creditor requires confirmation")
    print(f"  the operator makes {LC_CREDITOR} require confirmation "
          f"(remitnet require-confirmation {LC_CREDITOR}): requires confirmation "
          f"{fmt.yes_no(bank.requires_confirmation)}")  # fmt: skip
    async with BankClient(LC_DEBTOR, config) as us, BankClient(LC_CREDITOR, config) as ph:
        before = (await us.position(LC_CCY)).positions[0]

        def item(name: str) -> cpb.TransferInstruction:
            return instruction(LC_CREDITOR, LC_CCY, STORY[name][1], transfer_id=story.ids[name],
                               remittance_info=f"lifecycle {name}")  # fmt: skip

        # C first, with 1 s to confirm: the wait overlaps the rest of the act.
        c = (await us.submit(item("C"), confirmation_timeout=1.0)).transfer
        submitted_at = time.perf_counter()
        rest = [item(n) for n in STORY if n != "C"]
        results = (await us.submit_batch(rest)).results
        statuses = {c.status, *(r.transfer.status for r in results)}
        story.check(statuses == {cpb.TRANSFER_STATUS_RESERVED}, f"all RESERVED: {statuses}")
        print(f"  {LC_DEBTOR} submits {len(STORY)} transfers: all RESERVED, in no cycle yet; "
              f"C with 1 s to confirm (remitnet submit --as {LC_DEBTOR} --to {LC_CREDITOR} "
              f"--timeout 1 USD 75.00), the others the hub's default 30 s")  # fmt: skip
        held = (await us.position(LC_CCY)).positions[0]
        total = sum(amount for _what, amount in STORY.values())
        story.check(held.reserved - before.reserved == total, "reserved what was submitted")
        story.check(before.headroom - held.headroom == total, "headroom held")
        print(f"  {LC_DEBTOR}'s headroom is held: reserved {fmt.money(LC_CCY, held.reserved)}, "
              f"headroom {fmt.money(LC_CCY, before.headroom)} -> "
              f"{fmt.money(LC_CCY, held.headroom)} "
              f"(remitnet position --as {LC_DEBTOR})")  # fmt: skip
        waiting = await ph.awaiting_confirmation()
        names = [story.label(t.transfer_id) for t in waiting]
        story.check(sorted(names) == sorted(STORY), f"awaiting confirmation: {names}")
        print(f"  {LC_CREDITOR} has {len(waiting)} to answer, soonest deadline first: "
              f"{' '.join(names)} (remitnet transfers list --as {LC_CREDITOR} "
              f"--status reserved)")  # fmt: skip

        a = await ph.confirm(story.ids["A"])
        again = await ph.confirm(story.ids["A"])
        story.check(a.transfer.status == cpb.TRANSFER_STATUS_ACCEPTED and a.transfer.cycle_id != ""
                    and again.replayed, "A accepted, and a replay after")  # fmt: skip
        print(f"  {LC_CREDITOR} accepts A (remitnet confirm --as {LC_CREDITOR} ID): ACCEPTED, "
              f"netted into {a.transfer.cycle_id}; accepting again is a replay "
              f"(replayed={again.replayed})")  # fmt: skip
        answers = [rejection(story.ids["B"], "AC04"),
                   *(acceptance(story.ids[n]) for n in ("D", "E", "F", "G"))]  # fmt: skip
        many = await ph.confirm_many(answers)
        got = {story.label(r.transfer_id): fmt.enum_name(cpb.TransferStatus, r.transfer.status)
               for r in many.results}  # fmt: skip
        story.check(got == {"B": "REJECTED", "D": "ACCEPTED", "E": "ACCEPTED", "F": "ACCEPTED",
                            "G": "ACCEPTED"}, f"batch answers {got}")  # fmt: skip
        print(
            f"  {LC_CREDITOR} answers 5 in one ConfirmTransfers call: "
            + ", ".join(f"{k} {v}" for k, v in got.items())
            + f" (B: remitnet confirm --as {LC_CREDITOR} ID --reject AC04)"
        )
        err = await refusal(ph.confirm(story.ids["B"]))
        story.check(err is not None and err.reason == "TRANSFER_REJECTED", "accept after reject")
        print(f"  accepting B after rejecting it: refused, {err.reason if err else '-'}")

        cancelled = await us.cancel(story.ids["H"])
        story.check(cancelled.status == cpb.TRANSFER_STATUS_CANCELLED, "H cancelled")
        err = await refusal(us.cancel(story.ids["A"]))
        story.check(err is not None and err.reason == "TRANSFER_NOT_CANCELLABLE", "cancel netted")
        print(
            f"  {LC_DEBTOR} cancels H, still reserved: CANCELLED, released; cancelling A, "
            f"netted, is refused {err.reason if err else '-'}: a netted transfer is recalled"
        )
        g = await op.cancel_transfer(story.ids["G"], OPERATOR_REASON)
        story.check(g.status == cpb.TRANSFER_STATUS_CANCELLED and g.reason == OPERATOR_REASON,
                    "operator cancel")  # fmt: skip
        print(f"  the operator cancels G, netted, with a reason (remitnet cancel ID --reason ...): "
              f"{fmt.enum_name(cpb.TransferStatus, g.status)}, reason {g.reason!r} "
              f"(recorded in the operator audit trail)")  # fmt: skip

        story.returns["D"] = uetr(rng)
        ret = await ph.return_transfer(story.ids["D"], "AC01", return_id=story.returns["D"])
        twice = await ph.return_transfer(story.ids["D"], "AC01", return_id=story.returns["D"])
        err = await refusal(ph.return_transfer(story.ids["D"], "AC01", return_id=uetr(rng)))
        r = ret.return_transfer
        story.check(r.return_of_transfer_id == story.ids["D"] and r.reason == "AC01"
                    and r.debtor_bank == LC_CREDITOR and r.status == cpb.TRANSFER_STATUS_ACCEPTED
                    and twice.replayed and err is not None and err.reason == "ALREADY_RETURNED",
                    "the return of D")  # fmt: skip
        print(f"  {LC_CREDITOR} returns D, AC01 (remitnet return --as {LC_CREDITOR} ID --reason "
              f"AC01): a transfer of its own, {r.debtor_bank} -> {r.creditor_bank} "
              f"{fmt.money_of(r.amount)}, ACCEPTED into {r.cycle_id}; the same return again is "
              f"a replay, another return of D refused {err.reason if err else '-'}")  # fmt: skip
        received = await ph.list_transfers(counterparty=LC_DEBTOR, limit=300)
        converted = next(
            (t for t in received if t.creditor_cycle_id and t.creditor_bank == LC_CREDITOR), None
        )
        if converted is not None:
            err = await refusal(ph.return_transfer(converted.transfer_id, "AC01"))
            story.check(err is not None and err.reason == "RETURN_QUOTE_REQUIRED", "FX return")
            need = err.metadata if err else {}
            print(f"  returning a converted transfer ({fmt.money_of(converted.amount)} -> "
                  f"{fmt.money_of(converted.creditor_amount)}) without a quote: refused "
                  f"{err.reason if err else '-'}: it goes back at a NEW quote selling "
                  f"{fmt.money(need.get('currency', '?'), int(need.get('amount', '0')))}, "
                  f"not the original's rate")  # fmt: skip

        e = (await us.recall(story.ids["E"], "DUPL", recall_id=uetr(rng))).recall
        f = (await us.recall(story.ids["F"], "DUPL", recall_id=uetr(rng),
                             additional_info="paid twice")).recall  # fmt: skip
        story.check({e.state, f.state} == {cpb.RECALL_STATE_REQUESTED}, "recalls requested")
        asked = sorted(story.label(t.transfer_id) for t in await ph.open_recalls())
        story.check(asked == ["E", "F"], f"open recalls {asked}")
        print(f"  {LC_DEBTOR} recalls E and F, DUPL (remitnet recall --as {LC_DEBTOR} ID --reason "
              f"DUPL): REQUESTED, answer by {fmt.timestamp(e.deadline)}; {LC_CREDITOR} lists "
              f"{' '.join(asked)} (remitnet transfers list --as {LC_CREDITOR} --recall "
              f"requested)")  # fmt: skip
        story.returns["E"] = uetr(rng)
        yes = await ph.answer_recall(story.ids["E"], accept=True, return_id=story.returns["E"])
        no = await ph.answer_recall(story.ids["F"], accept=False, reason="NOAS")
        story.check(yes.recall.state == cpb.RECALL_STATE_ACCEPTED
                    and yes.recall.return_transfer_id == story.returns["E"]
                    and yes.return_transfer.reason == "FOCR"
                    and no.recall.state == cpb.RECALL_STATE_REJECTED
                    and no.recall.answer_reason == "NOAS", "recall answers")  # fmt: skip
        print(f"  {LC_CREDITOR} accepts E's recall (remitnet answer-recall --as {LC_CREDITOR} ID "
              f"--accept): ACCEPTED, answered by a return (reason "
              f"{yes.return_transfer.reason}); rejects F's (--reject NOAS): REJECTED, nothing "
              f"moves")  # fmt: skip

        # The hub expires C by itself: nothing about C is asked here until its
        # EXPIRED event has reached BANKPH01's stream.
        for _ in range(100):
            if cpb.TRANSFER_STATUS_EXPIRED in watched.statuses.get(story.ids["C"], []):
                break
            await asyncio.sleep(0.1)
        waited = time.perf_counter() - submitted_at
        expired = await us.get(story.ids["C"])
        story.check(expired.status == cpb.TRANSFER_STATUS_EXPIRED and expired.reason == "AB05",
                    "C expired")  # fmt: skip
        err = await refusal(ph.confirm(story.ids["C"]))
        story.check(err is not None and err.reason == "TRANSFER_EXPIRED", "accept after expiry")
        print(f"  C: nobody answers; the hub expires it with no request arriving, its EXPIRED "
              f"event on {LC_CREDITOR}'s stream {waited:.1f} s after it was submitted, reason "
              f"{fmt.transfer_reason(expired)}; accepting it now: refused "
              f"{err.reason if err else '-'}")  # fmt: skip

        after = (await us.position(LC_CCY)).positions[0]
        standing = sum(STORY[n][1] for n in STANDING)
        story.check(after.reserved == before.reserved, "every reservation released")
        story.check(before.headroom - after.headroom == standing, "headroom: what stands")
        print(f"  {LC_DEBTOR} afterwards: reserved {fmt.money(LC_CCY, after.reserved)}, headroom "
              f"{fmt.money(LC_CCY, before.headroom)} less "
              f"{fmt.money(LC_CCY, standing)} (A and F, which stand): every reservation "
              f"released exactly, D and E came back by their returns")  # fmt: skip

        filters = {
            "--status rejected": await us.list_transfers(status=cpb.TRANSFER_STATUS_REJECTED),
            "--status expired": await us.list_transfers(status=cpb.TRANSFER_STATUS_EXPIRED),
            "--kind return": await us.list_transfers(kind=cpb.TRANSFER_KIND_RETURN),
            "--returned": await us.list_transfers(returned_only=True),
            "--recall rejected": await us.list_transfers(recall_state=cpb.RECALL_STATE_REJECTED),
        }
        found = {k: sorted(story.label(t.transfer_id) for t in v) for k, v in filters.items()}
        story.check(found == {"--status rejected": ["B"], "--status expired": ["C"],
                              "--kind return": ["return of D", "return of E"],
                              "--returned": ["D", "E"], "--recall rejected": ["F"]},
                    f"list filters {found}")  # fmt: skip
        print("  remitnet transfers list --as BANKUS01 " + "; ".join(
            f"{k}: {', '.join(v)}" for k, v in found.items()))  # fmt: skip

        rows = []
        for name, (what, _amount) in STORY.items():
            t = await us.get(story.ids[name])
            link = (
                f"by {story.label(t.returned_by_transfer_id)}" if t.returned_by_transfer_id else ""
            )
            recall = fmt.recall_line(t.recall) if t.HasField("recall") else "-"
            reason = fmt.transfer_reason(t) if t.reason else "-"
            if t.status == cpb.TRANSFER_STATUS_CANCELLED and len(reason) > 24:
                reason = "operator: " + reason[:14] + "…"
            rows.append([name, what, fmt.money_of(t.amount),
                         fmt.enum_name(cpb.TransferStatus, t.status), reason,
                         t.cycle_id or "-", link or "-", recall])  # fmt: skip
        for name, rid in story.returns.items():
            t = await us.get(rid)
            rows.append([f"R{name}", f"the return of {name}", fmt.money_of(t.amount),
                         fmt.enum_name(cpb.TransferStatus, t.status), fmt.transfer_reason(t),
                         t.cycle_id or "-", f"of {name}", "-"])  # fmt: skip
        print(f"\n  the transfers as {LC_DEBTOR} reads them (GetTransfer; remitnet status)")
        header = ["", "story", "amount", "status", "reason", "cycle", "return", "recall"]
        print(fmt.indent(fmt.table(rows, header, "llrlllll"), "    "))
    await stream_shows(story, watched)
    return story


async def stream_shows(story: Story, watched: Watched) -> None:
    """BANKPH01's stream carries every step: a RESERVED event per transfer
    (its cue to confirm), each resolution, the returns, and the recall
    events (REQUESTED: its cue to answer)."""
    want = {("transfer", n, "RESERVED") for n in STORY}
    want |= {("transfer", "B", "REJECTED"), ("transfer", "C", "EXPIRED"),
             ("transfer", "H", "CANCELLED"), ("transfer", "G", "CANCELLED"),
             ("return", "return of D", "ACCEPTED"), ("return", "return of E", "ACCEPTED"),
             ("recall", "E", "REQUESTED"), ("recall", "F", "REQUESTED"),
             ("recall", "E", "ACCEPTED"), ("recall", "F", "REJECTED")}  # fmt: skip

    def seen() -> list[tuple[str, str, str, str]]:
        out = []
        for e in watched.followed:
            if e.HasField("recall"):
                r = e.recall
                note = f"{r.reason}" + (f" -> {r.answer_reason}" if r.answer_reason else "")
                if r.state == cpb.RECALL_STATE_REQUESTED:
                    note += f", answer by {fmt.timestamp(r.deadline)}"
                out.append(("recall", story.label(r.transfer_id),
                            fmt.enum_name(cpb.RecallState, r.state), note))  # fmt: skip
            else:
                t = e.transfer
                kind = "return" if t.return_of_transfer_id else "transfer"
                note = fmt.transfer_reason(t) if t.reason else ""
                note = note if len(note) <= 36 else note[:35] + "…"
                if t.status == cpb.TRANSFER_STATUS_RESERVED:
                    note = f"confirm by {fmt.timestamp(t.confirmation_deadline)}"
                out.append((kind, story.label(t.transfer_id),
                            fmt.enum_name(cpb.TransferStatus, t.status), note))  # fmt: skip
        return out

    for _ in range(50):
        if want <= {row[:3] for row in seen()}:
            break
        await asyncio.sleep(0.1)
    rows = seen()
    missing = want - {row[:3] for row in rows}
    story.check(not missing, f"events missing from the stream: {sorted(missing)}")
    print(f"\n  {LC_CREDITOR}'s status stream (remitnet watch --as {LC_CREDITOR}): "
          f"{len(rows)} events for them, in order")  # fmt: skip
    print(fmt.indent(fmt.table([list(r) for r in rows], ["event", "of", "status", "detail"],
                               "llll"), "    "))  # fmt: skip


async def settled_story(config: ClientConfig, story: Story) -> bool:
    """After settlement: what stands is SETTLED, returns and returned
    transfers with it; rejected, expired and cancelled stay as they were."""
    want = {"A": "SETTLED", "B": "REJECTED", "C": "EXPIRED", "D": "SETTLED", "E": "SETTLED",
            "F": "SETTLED", "G": "CANCELLED", "H": "CANCELLED",
            "return of D": "SETTLED", "return of E": "SETTLED"}  # fmt: skip
    got = {}
    async with BankClient(LC_CREDITOR, config) as ph:
        for tid in [*story.ids.values(), *story.returns.values()]:
            got[story.label(tid)] = fmt.enum_name(cpb.TransferStatus, (await ph.get(tid)).status)
    ok = got == want and story.ok
    print(
        "\nafter settlement (GetTransfer): "
        + ", ".join(f"{k} {v}" for k, v in got.items())
        + f": {'OK' if ok else 'FAILED'}"
    )
    return ok


@dataclass
class Watched:
    """BANKPH01's status stream as its integration would follow it: events
    counted by kind, the stream cut once and resumed from the last token."""

    seen: Counter[str] = field(default_factory=Counter)
    ids: list[tuple[str, int]] = field(default_factory=list)
    token: str = ""
    resumed_at: int = 0
    settled_cycles: set[str] = field(default_factory=set)
    reconnects: int = 0  # after the hub ended the stream UNAVAILABLE
    # The lifecycle act's transfers: their events (and their returns' and
    # recalls'), in order, and each transfer's statuses as the stream told.
    follow: set[str] = field(default_factory=set)
    followed: list[cpb.StatusEvent] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)


async def watch_bank(config: ClientConfig, code: str, watched: Watched) -> None:
    async with BankClient(code, config) as bank:
        since = datetime.now(UTC)
        while True:
            stream = bank.watch(watched.token) if watched.token else bank.watch(since=since)
            cut = False
            try:
                async for event in stream:
                    count(watched, event)
                    if not watched.resumed_at and len(watched.ids) >= 25:
                        watched.resumed_at = len(watched.ids)
                        cut = True
                        break  # a disconnect: carry on from the token
            except grpc.aio.AioRpcError as err:
                # The hub ended or refused the stream (UNAVAILABLE: a replica
                # going away, a stream refused on the connection): as an
                # integration does, reconnect and resume from the last token.
                if err.code() != grpc.StatusCode.UNAVAILABLE or watched.reconnects >= 5:
                    raise
                watched.reconnects += 1
                cut = True
                await asyncio.sleep(0.2)
            finally:
                await stream.aclose()
            if not cut:
                return


def count(watched: Watched, event: cpb.StatusEvent) -> None:
    if event.HasField("transfer"):
        t = event.transfer
        kind = "cross-currency" if t.creditor_cycle_id else "same-currency"
        what = "return" if t.return_of_transfer_id else "transfer"
        status = fmt.enum_name(cpb.TransferStatus, t.status)
        watched.seen[f"{kind} {what} {status}"] += 1
        watched.ids.append((t.transfer_id, t.status))
        if watched.follow & {t.transfer_id, t.return_of_transfer_id}:
            watched.followed.append(event)
            watched.statuses.setdefault(t.transfer_id, []).append(t.status)
    elif event.HasField("recall"):
        r = event.recall
        watched.seen[f"recall {fmt.enum_name(cpb.RecallState, r.state)}"] += 1
        if r.transfer_id in watched.follow:
            watched.followed.append(event)
    else:
        status = fmt.enum_name(cpb.TransferStatus, event.cycle.status)
        watched.seen[f"cycle {status}"] += 1
        if event.cycle.status == cpb.TRANSFER_STATUS_SETTLED:
            watched.settled_cycles.add(event.cycle.cycle_id)
    watched.token = event.resume_token


def report_stream(code: str, watched: Watched, cycles: int) -> bool:
    repeats = len(watched.ids) - len(set(watched.ids))
    print(f"\nStatus stream of {code} (WatchTransfers, resumed once from its last token)")
    rows = [[kind, str(n)] for kind, n in sorted(watched.seen.items())]
    print(fmt.indent(fmt.table(rows, ["event", "count"], "lr")))
    n = watched.reconnects
    again = f", reconnected {n} times after UNAVAILABLE" if n else ""
    print(f"  cut after {watched.resumed_at} events and resumed: {repeats} repeated, "
          f"settled cycles seen {len(watched.settled_cycles)} of {cycles}{again}")  # fmt: skip
    return repeats == 0 and len(watched.settled_cycles) == cycles


# -- a bank that speaks ISO 20022 only ---------------------------------------


@dataclass
class IsoBank:
    accepted: list[str] = field(default_factory=list)  # UETRs answered ACSP
    refused: list[str] = field(default_factory=list)
    ok: bool = True


async def iso_bank(config: ClientConfig, op: OperatorClient) -> IsoBank:
    """BANKSG01 is onboarded with a BIC and from then on sends and reads
    only ISO 20022 documents (remitnet.iso20022.v1): a pacs.008 whose
    refused transactions are RJCTs while the others clear."""
    seen = IsoBank()
    await op.create_bank(ISO_BANK, "Lion City Bank", "asia-southeast1", [ISO_CCY],
                         bic=BICS[ISO_BANK])  # fmt: skip
    await op.deposit(ISO_BANK, ISO_CCY, ISO_FUNDS * 10 ** exponent(ISO_CCY))
    print(f"\n{ISO_BANK} speaks ISO 20022 only (remitnet onboard {ISO_BANK} --bic "
          f"{BICS[ISO_BANK]}; funded {ISO_FUNDS:,} {ISO_CCY})")  # fmt: skip
    txs = [
        (CreditTransfer(BICS["BANKUS01"], "2500.00", ISO_CCY, "INV-2026-118",
                        remittance="invoice 2026-118"), "ACSP", ""),
        (CreditTransfer(BICS["BANKUS02"], "1750.25", ISO_CCY, "PAYROLL-12"), "ACSP", ""),
        (CreditTransfer(BICS["BANKUS01"], "999999.00", ISO_CCY, "TOO-MUCH"), "RJCT", "AM04"),
        (CreditTransfer("UNKNGB2L", "10.00", ISO_CCY, "NOBODY"), "RJCT", "CNOR"),
        (CreditTransfer(BICS["BANKUS02"], "10.005", ISO_CCY, "DECIMALS"), "RJCT", "CH20"),
    ]  # fmt: skip
    document = pacs008(BICS[ISO_BANK], [t for t, _s, _r in txs], msg_id="LCTB-2026-0001")
    (WORK / "pacs008-BANKSG01.xml").write_bytes(document)
    async with Iso20022Client(ISO_BANK, config) as iso:
        answer = await iso.submit_pacs008(document)
        got = statuses(answer.document)
        print(f"  pacs.008.001.08 of {len(txs)} transactions built with lxml "
              f"(remitnet iso20022 submit --as {ISO_BANK} build/demo/pacs008-BANKSG01.xml); "
              f"the pacs.002.001.10 answer:")  # fmt: skip
        rows = []
        for (tx, status, reason), st in zip(txs, got, strict=True):
            good = (st.uetr, st.status, st.reason) == (tx.uetr, status, reason)
            seen.ok &= good
            (seen.accepted if st.status == "ACSP" else seen.refused).append(tx.uetr)
            rows.append([tx.end_to_end_id, tx.uetr[:8], f"{tx.amount} {tx.currency}",
                         tx.creditor_bic, st.status, st.reason or "-",
                         "OK" if good else "FAILED"])  # fmt: skip
        header = ["EndToEndId", "UETR", "IntrBkSttlmAmt", "CdtrAgt", "TxSts", "Rsn", "expected"]
        print(fmt.indent(fmt.table(rows, header, "lllllll"), "    "))
        again = await iso.submit_pacs008(document)
        same = again.replayed and again.document == answer.document
        seen.ok &= same and len(got) == len(txs)
        print(f"  the same MsgId again: replayed={again.replayed}, the first pacs.002 byte for "
              f"byte: {'OK' if same else 'FAILED'}")  # fmt: skip
    return seen


async def iso_statement(config: ClientConfig, op: OperatorClient, seen: IsoBank) -> bool:
    """After settlement: the pacs.028 statuses are ACCC, and the camt.053
    adds up and agrees with the hub's own statement of the account."""
    ok = seen.ok
    async with Iso20022Client(ISO_BANK, config) as iso:
        status = statuses((await iso.status(seen.accepted + seen.refused[:1])).document)
        want = ["ACCC"] * len(seen.accepted) + ["RJCT"]
        ok &= [s.status for s in status] == want
        print(f"\n{ISO_BANK} after settlement: pacs.028 -> pacs.002 "
              f"{', '.join(f'{s.uetr[:8]} {s.status}' for s in status)}"
              f" (remitnet iso20022 status --as {ISO_BANK} UETR...)")  # fmt: skip
        answer = await iso.statement(ISO_CCY)
        (WORK / "camt053-BANKSG01.xml").write_bytes(answer.document)
        try:
            iso_xml.check(etree.fromstring(answer.document).getroottree(), "camt.053.001.08")
            valid = True
        except InvalidArgument as err:
            print(f"  camt.053 not valid: {err}")
            valid = False
        st = statement(answer.document)
        cycles = [e.cycle for e in st.entries if e.cycle]
        by_cycle = statement((await iso.statement(ISO_CCY, cycle_id=cycles[-1])).document)
    hub = await op.statement(ISO_BANK, ISO_CCY)
    scale = Decimal(1).scaleb(-exponent(ISO_CCY))
    adds_up = st.opening + sum(e.amount for e in st.entries) == st.closing
    agrees = st.closing == Decimal(hub.closing_balance.minor_units) * scale
    agrees &= len(by_cycle.entries) == 1 and by_cycle.closing == st.closing
    ok &= valid and adds_up and agrees and st.last_page
    print(f"  camt.053.001.08 (remitnet iso20022 statement --as {ISO_BANK} {ISO_CCY}; "
          f"build/demo/camt053-BANKSG01.xml), {len(answer.document):,} bytes:")  # fmt: skip
    rows = [["OPBD", "", "", f"{st.opening:,} {ISO_CCY}", ""]]
    rows += [[f"Ntry {e.ref}", e.booked[:19], e.code, f"{e.amount:+,} {ISO_CCY}", e.cycle]
             for e in st.entries]  # fmt: skip
    rows.append(["CLBD", "", "", f"{st.closing:,} {ISO_CCY}", ""])
    header = ["", "BookgDt", "BkTxCd", "Amt", "ClrSysRef"]
    print(fmt.indent(fmt.table(rows, header, "lllrl"), "    "))
    print(f"  valid against the camt.053.001.08 XSD: {'OK' if valid else 'FAILED'}; "
          f"opening + entries = closing: {'OK' if adds_up else 'FAILED'}; the same as the "
          f"hub's statement and the cycle's own camt.053 (--cycle {cycles[-1]}): "
          f"{'OK' if agrees else 'FAILED'}")  # fmt: skip
    return bool(ok)


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
            book = Book()
            fx_ok = await best_price(config)
            fx_ok &= await run_out(config, book)
            tally = await traffic(config, book)
            story = await lifecycle(config, op, watched)
            iso = await iso_bank(config, op)
            async with BankClient("BANKUS01", config) as us:
                print("\nBANKUS01's own position before settlement (remitnet position)")
                print(fmt.indent(fmt.render(await us.position())))
            await provider_positions(config)
            ok = await settle_and_report(op, book) and fx_ok
            ok &= await settled_story(config, story)
            ok &= await iso_statement(config, op, iso)
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
