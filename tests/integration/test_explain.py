"""Every read a bank can call is bounded by an index, not by the bank's
history: on PostgreSQL with a bank holding tens of thousands of transfers
(COPY'd into settled cycles, ANALYZEd), each call's statements are captured
as the hub runs them and re-run under EXPLAIN ANALYZE; a sequential scan of
transfers, or any scan node reading more than a fraction of the bank's
history, fails the test with the plan."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.bank import instruction
from remitnet.fx.v1 import fx_pb2 as fxpb
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.services.domain.model import account_id
from remitnet.settlement.v1 import settlement_pb2 as spb
from tests.support import HubHandle, start_hub

pytestmark = pytest.mark.postgres

BIG, PEER, OTHER = "BIGBANK01", "PEERBANK01", "OTHERBANK01"
HISTORY = 60_000  # transfers of BIG (half sent, half received)
NOISE = 40_000  # between the two other banks
SEEDED_CYCLES = 30
ENTRIES = 20_000  # ledger entries of BIG's USD account
# A scan node may read at most this many rows: a page, a cycle's transfers
# (~3,300 here), never the bank's history.
BOUND = HISTORY // 10


def _seed(url: str, first_seq: int) -> str:
    """COPY old, settled history: SEEDED_CYCLES USD cycles before the live
    ones, BIG's transfers in them both ways, the others' noise, positions,
    and ledger entries of BIG's account after its live ones. Returns one
    seeded cycle id."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    per = timedelta(hours=1)
    cycles = io.StringIO()
    positions = io.StringIO()
    rows = io.StringIO()
    ids = [f"USD-9{n:05d}" for n in range(SEEDED_CYCLES)]
    for n, cid in enumerate(ids):
        opened, closed = start + n * per, start + (n + 1) * per
        cycles.write(f"{cid}\tUSD\t{90_000 + n}\t3\t{opened}\t{closed}\t{closed}\t0\t0\t0\n")
        for bank in (BIG, PEER, OTHER):
            positions.write(f"{cid}\t{bank}\t0\t0\t0\t0\t0\tus-east1\n")

    def transfer(i: int, debtor: str, creditor: str, total: int) -> None:
        n = i * SEEDED_CYCLES // total
        at = start + n * per + per * ((i % 997) / 1000)
        rows.write(
            f"{uuid.uuid4()}\t{debtor}\t{creditor}\tUSD\t{1 + i % 50}\t\t1\t{ids[n]}\t{at}\t"
            "\\N\t\\N\t\\N\t\\N\t\\N\t\\N\tus-east1\n"
        )

    for i in range(HISTORY):
        transfer(i, BIG, PEER, HISTORY) if i % 2 else transfer(i, PEER, BIG, HISTORY)
    for i in range(NOISE):
        transfer(i, PEER, OTHER, NOISE)
    entries = io.StringIO()
    account = account_id(BIG, "USD")
    for k in range(ENTRIES):
        at = start + k * per / 1000
        entries.write(f"{account}\t{first_seq + k}\tUSD\t1\t1\t{k}\tseed-{k}\tseed\t{at}\n")
    with psycopg.connect(url, autocommit=True) as conn:
        copies = (
            ("cycles (id, currency, seq, state, opened_at, closed_at, settled_at, "
             "transfer_count, gross_value, net_value)", cycles),
            ("positions (cycle_id, bank_code, sent, received, sent_count, received_count, fee, "
             "home_region)", positions),
            ("transfers (id, debtor_bank, creditor_bank, currency, amount, remittance_info, "
             "status, cycle_id, accepted_at, quote_id, creditor_currency, creditor_amount, "
             "creditor_cycle_id, fee, cancelled_at, home_region)", rows),
            ("ledger_entries (account_id, seq, currency, kind, amount, balance_after, "
             "posting_id, reference, posted_at)", entries),
        )  # fmt: skip
        for target, data in copies:
            with conn.cursor().copy(f"COPY {target} FROM STDIN".encode()) as copy:
                copy.write(data.getvalue())
        conn.execute(b"ANALYZE")
    return ids[SEEDED_CYCLES // 2]


class Statements:
    """SELECTs the hub's engines run while `capturing`."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.on = False

    def __call__(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if self.on and statement.lstrip().upper().startswith(("SELECT", "WITH")):
            self.seen.append((statement, params))


def _scans(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _scans(child)


def _rows_read(node: dict[str, Any]) -> float:
    loops = node.get("Actual Loops", 1) or 1
    removed = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
    return float((node.get("Actual Rows", 0) + removed) * loops)


def _check(url: str, where: str, statements: list[tuple[str, Any]]) -> list[str]:
    problems = []
    with psycopg.connect(url, autocommit=True) as conn:
        for statement, params in statements:
            explained = conn.execute(
                ("EXPLAIN (ANALYZE, FORMAT JSON) " + statement).encode(), params
            ).fetchone()
            assert explained is not None
            raw = explained[0]
            plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
            for node in _scans(plan):
                relation = node.get("Relation Name")
                if relation is None:
                    continue
                whole = node["Node Type"] == "Seq Scan" and relation in (
                    "transfers",
                    "ledger_entries",
                )
                if whole or _rows_read(node) > BOUND:
                    problems.append(
                        f"{where}: {node['Node Type']} on {relation} read {_rows_read(node):.0f} "
                        f"rows\n{statement}\n{json.dumps(plan, indent=1)[:4000]}"
                    )
    return problems


@pytest.fixture
async def seeded(postgres_url: str) -> Any:
    hub = await start_hub(postgres_url)
    try:
        op = hub.operator
        await op.update_rates({("USD", "EUR"): "0.92"})
        for code in (BIG, PEER, OTHER):
            await op.create_bank(code, code, "us-east1", ["USD", "EUR"])
            for ccy in ("USD", "EUR"):
                await op.deposit(code, ccy, 10**12)
        big, peer = hub.bank(BIG), hub.bank(PEER)
        # Live cycles: one settled, one closed, the open one; a cross-currency
        # transfer and a cancelled one.
        for _ in range(2):
            await big.submit(instruction(PEER, "USD", 100))
            await peer.submit(instruction(BIG, "USD", 50))
            closed = (await op.close_cycle("USD")).closed
            await op.settle_cycle(closed.cycle_id)
        await big.submit(instruction(PEER, "USD", 7))
        closed_id = (await op.close_cycle("USD")).closed.cycle_id
        await hub.fund_provider(["EUR"])  # the default provider FXHUB sells the EUR
        quote = await big.quote("USD", "EUR", source_amount=1_000)
        await big.submit(instruction(PEER, "USD", 1_000, quote_id=quote.quote_id))
        gone = (await big.submit(instruction(PEER, "USD", 3))).transfer
        await op.cancel_transfer(gone.transfer_id, "TECH: sent twice")
        kept = (await big.submit(instruction(PEER, "USD", 11))).transfer
        statement = await big.statement("USD")
        first_seq = max((e.sequence for e in statement.entries), default=0) + 1
        seeded_cycle = _seed(postgres_url, first_seq)
        yield hub, seeded_cycle, closed_id, kept.transfer_id, quote.quote_id
    finally:
        await hub.stop()


async def test_every_bank_read_is_bounded_by_an_index(seeded: Any, postgres_url: str) -> None:
    hub, seeded_cycle, closed_id, transfer_id, quote_id = seeded
    assert isinstance(hub, HubHandle)
    big = hub.bank(BIG)
    first = await big.list()
    assert len(first.transfers) == 100 and first.next_page_token
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "GetTransfer": lambda: big.get(transfer_id),
        "ListTransfers": lambda: big.list(),
        "ListTransfers page 2": lambda: big.list(page_token=first.next_page_token),
        "ListTransfers counterparty": lambda: big.list(counterparty=PEER),
        "ListTransfers seeded cycle": lambda: big.list(cycle_id=seeded_cycle),
        "ListTransfers closed cycle": lambda: big.list(cycle_id=closed_id),
        "ListTransfers ACCEPTED": lambda: big.list(status=cpb.TRANSFER_STATUS_ACCEPTED),
        "ListTransfers CLOSED": lambda: big.list(status=cpb.TRANSFER_STATUS_CLOSED),
        "ListTransfers SETTLED": lambda: big.list(status=cpb.TRANSFER_STATUS_SETTLED),
        "ListTransfers CANCELLED": lambda: big.list(status=cpb.TRANSFER_STATUS_CANCELLED),
        "ListCycles": lambda: big.call(big.netting.ListCycles, npb.ListCyclesRequest()),
        "ListCycles USD": lambda: big.call(
            big.netting.ListCycles, npb.ListCyclesRequest(currency="USD", page_size=5)
        ),
        "GetCycle": lambda: big.cycle(seeded_cycle),
        "GetPosition": lambda: big.position("USD"),
        "GetStatement": lambda: big.statement("USD"),
        "GetStatement later page": lambda: big.statement("USD", after_sequence=ENTRIES // 2),
        "GetReconciliation": lambda: big.call(
            big.settlement.GetReconciliation, spb.GetReconciliationRequest(cycle_id=seeded_cycle)
        ),
        "ListRates": lambda: big.call(big.fx.ListRates, fxpb.ListRatesRequest()),
        "GetQuote": lambda: big.call(big.fx.GetQuote, fxpb.GetQuoteRequest(quote_id=quote_id)),
    }
    capture = Statements()
    event.listen(Engine, "before_cursor_execute", capture)
    problems: list[str] = []
    try:
        for where, call in calls.items():
            capture.seen.clear()
            capture.on = True
            await call()
            capture.on = False
            assert capture.seen, f"{where}: no statement captured"
            problems += _check(postgres_url, where, list(capture.seen))
    finally:
        event.remove(Engine, "before_cursor_execute", capture)
    assert not problems, "\n\n".join(problems)


async def test_list_transfers_pages_merge_both_sides_in_order(seeded: Any) -> None:
    """The merged sides give the same order as one query would: newest
    first, keyset pages without gaps or repeats, both directions."""
    hub, *_ = seeded
    big = hub.bank(BIG)
    seen: list[tuple[str, str]] = []
    token = ""
    sides = set()
    for _ in range(5):
        page = await big.list(page_size=500, page_token=token)
        for t in page.transfers:
            seen.append((t.accepted_at.ToDatetime().isoformat(), t.transfer_id))
            sides.add(t.debtor_bank == BIG)
        token = page.next_page_token
    assert len(seen) == len(set(seen)) == 2_500
    assert seen == sorted(seen, reverse=True)
    assert sides == {True, False}
