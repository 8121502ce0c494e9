"""camt.053 statements and camt.054 notifications through a real gRPC hub:
a bank's settled cycle, a period and all entries, paging, and the pull of
notifications; every document valid against its official XSD."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from hubs import CLI
from lxml import etree

from remitnet.clients.errors import HubError
from remitnet.clients.iso20022 import Iso20022Client
from remitnet.services.adapters.iso20022 import xml
from remitnet.services.domain.errors import Reason
from tests.iso20022_samples import Tx, pacs008
from tests.support import HubHandle, start_hub

US, PH, NOBIC = "BANKUS01", "BANKPH01", "NOBIC01"
US_BIC, PH_BIC = "BANKUS33", "BANKPHMM"


@dataclass(frozen=True)
class Entry:
    ref: str
    amount: str
    sign: str
    code: str
    posting: str
    cycle: str


@dataclass(frozen=True)
class Report:
    balances: dict[str, tuple[str, str]]  # OPBD/CLBD -> (amount, CdtDbtInd)
    entries: list[Entry]
    last_page: bool
    owner_bic: str


def read(document: bytes, kind: str) -> Report:
    """A camt.053 or camt.054, after checking it against its XSD."""
    root = etree.fromstring(document)
    xml.check(root.getroottree(), kind)
    p = {"p": xml.namespace(kind)}
    body = root[0]
    part = body.find("p:Stmt", p) if kind.startswith("camt.053") else body.find("p:Ntfctn", p)
    assert part is not None
    balances = {
        b.findtext("p:Tp/p:CdOrPrtry/p:Cd", "", p): (
            b.findtext("p:Amt", "", p),
            b.findtext("p:CdtDbtInd", "", p),
        )
        for b in part.iterfind("p:Bal", p)
    }
    entries = [
        Entry(
            n.findtext("p:NtryRef", "", p),
            n.findtext("p:Amt", "", p),
            n.findtext("p:CdtDbtInd", "", p),
            n.findtext("p:BkTxCd/p:Prtry/p:Cd", "", p),
            n.findtext("p:AcctSvcrRef", "", p),
            n.findtext("p:NtryDtls/p:TxDtls/p:Refs/p:ClrSysRef", "", p),
        )
        for n in part.iterfind("p:Ntry", p)
    ]
    return Report(
        balances,
        entries,
        body.findtext("p:GrpHdr/p:MsgPgntn/p:LastPgInd", "", p) == "true",
        part.findtext("p:Acct/p:Ownr/p:Id/p:OrgId/p:AnyBIC", "", p),
    )


@pytest.fixture
async def camt_hub(db_url: str) -> AsyncIterator[tuple[HubHandle, str]]:
    """US funded with 1,000.00 USD, then a settled cycle of 135.50 to PH."""
    hub = await start_hub(db_url)
    try:
        op = hub.operator
        await op.create_bank(US, "US Bank", "us-east1", ["USD", "JPY"], bic=US_BIC)
        await op.create_bank(PH, "PH Bank", "asia-southeast1", ["USD"], bic=PH_BIC)
        await op.create_bank(NOBIC, "No BIC", "us-east1", ["USD"])
        await op.deposit(US, "USD", 100_000)
        client = Iso20022Client(US, hub.config)
        txs = [Tx(PH_BIC, "125.50"), Tx(PH_BIC, "10.00")]
        await client.submit_pacs008(pacs008(txs, instructing_bic=US_BIC))
        await client.close()
        closed = (await op.close_cycle("USD")).closed
        await op.settle_cycle(closed.cycle_id)
        yield hub, closed.cycle_id
    finally:
        await hub.stop()


async def test_the_statement_of_a_settled_cycle(camt_hub: tuple[HubHandle, str]) -> None:
    hub, cycle = camt_hub
    us, ph = Iso20022Client(US, hub.config), Iso20022Client(PH, hub.config)
    answer = await us.statement("USD", cycle_id=cycle)
    got = read(answer.document, "camt.053.001.08")
    assert answer.next_after_sequence == 0 and got.last_page
    assert got.owner_bic == US_BIC
    assert got.balances == {"OPBD": ("1000.00", "CRDT"), "CLBD": ("864.50", "CRDT")}
    assert got.entries == [Entry("2", "135.50", "DBIT", "NET_SETTLEMENT", f"settle:{cycle}", cycle)]
    theirs = read((await ph.statement("USD", cycle_id=cycle)).document, "camt.053.001.08")
    assert theirs.balances == {"OPBD": ("0.00", "CRDT"), "CLBD": ("135.50", "CRDT")}
    assert [(e.amount, e.sign) for e in theirs.entries] == [("135.50", "CRDT")]
    await us.close()
    await ph.close()


async def test_statements_of_periods_and_pages(camt_hub: tuple[HubHandle, str]) -> None:
    hub, _ = camt_hub
    us = Iso20022Client(US, hub.config)
    full = read((await us.statement("USD")).document, "camt.053.001.08")
    assert full.balances == {"OPBD": ("0.00", "CRDT"), "CLBD": ("864.50", "CRDT")}
    assert [(e.ref, e.amount, e.sign, e.code) for e in full.entries] == [
        ("1", "1000.00", "CRDT", "DEPOSIT"),
        ("2", "135.50", "DBIT", "NET_SETTLEMENT"),
    ]
    today = datetime.now(UTC).date()
    day = read((await us.statement("USD", from_date=str(today), to_date=str(today))).document,
               "camt.053.001.08")  # fmt: skip
    assert day.entries == full.entries and day.balances == full.balances
    later = await us.statement("USD", from_date=str(today + timedelta(days=1)))
    assert read(later.document, "camt.053.001.08").balances["OPBD"] == ("864.50", "CRDT")
    earlier = await us.statement("USD", to_date=str(today - timedelta(days=1)))
    assert read(earlier.document, "camt.053.001.08").entries == []

    first = await us.statement("USD", page_size=1)
    page = read(first.document, "camt.053.001.08")
    assert first.next_after_sequence == 1 and not page.last_page
    assert page.balances == {"OPBD": ("0.00", "CRDT"), "CLBD": ("1000.00", "CRDT")}
    second = await us.statement("USD", page_size=1, after_sequence=first.next_after_sequence)
    rest = read(second.document, "camt.053.001.08")
    assert second.next_after_sequence == 0 and rest.last_page
    assert rest.balances == {"OPBD": ("1000.00", "CRDT"), "CLBD": ("864.50", "CRDT")}
    await us.close()


async def test_notifications_are_pulled_since_an_entry(camt_hub: tuple[HubHandle, str]) -> None:
    hub, cycle = camt_hub
    us = Iso20022Client(US, hub.config)
    first = await us.notifications("USD")
    got = read(first.document, "camt.054.001.08")
    assert first.next_after_sequence == 2 and got.balances == {}
    assert [(e.amount, e.sign, e.cycle) for e in got.entries] == [
        ("1000.00", "CRDT", ""),
        ("135.50", "DBIT", cycle),
    ]
    again = await us.notifications("USD", first.next_after_sequence)
    assert again.next_after_sequence == 2
    assert read(again.document, "camt.054.001.08").entries == []
    await hub.operator.deposit(US, "USD", 5)
    new = await us.notifications("USD", again.next_after_sequence)
    assert [(e.ref, e.amount) for e in read(new.document, "camt.054.001.08").entries] == [
        ("3", "0.05")
    ]
    await us.close()


async def test_statement_refusals(camt_hub: tuple[HubHandle, str]) -> None:
    hub, cycle = camt_hub
    us = Iso20022Client(US, hub.config)
    open_cycle = (await hub.operator.close_cycle("USD")).opened.cycle_id
    cases = [
        (us.statement("USD", cycle_id=open_cycle), Reason.CYCLE_NOT_CLOSED,
         grpc.StatusCode.FAILED_PRECONDITION),
        (us.statement("USD", cycle_id="USD-999999"), Reason.CYCLE_NOT_FOUND,
         grpc.StatusCode.NOT_FOUND),
        (us.statement("JPY", cycle_id=cycle), Reason.CYCLE_NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (us.statement("EUR"), Reason.ACCOUNT_NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (us.statement("USD", from_date="12/01/2026"), Reason.INVALID_TIMESTAMP,
         grpc.StatusCode.INVALID_ARGUMENT),
        (us.statement("USD", cycle_id=cycle, to_date="2026-12-01"), Reason.INVALID_ARGUMENT,
         grpc.StatusCode.INVALID_ARGUMENT),
        (us.statement("USD", page_size=-1), Reason.INVALID_PAGE_SIZE,
         grpc.StatusCode.INVALID_ARGUMENT),
    ]  # fmt: skip
    for call, reason, code in cases:
        with pytest.raises(HubError) as info:
            await call
        assert (info.value.reason, info.value.code) == (reason, code)
    nobic = Iso20022Client(NOBIC, hub.config)
    with pytest.raises(HubError) as info:
        await nobic.notifications("USD")
    assert info.value.reason == Reason.BANK_HAS_NO_BIC
    await us.close()
    await nobic.close()


async def test_the_cli_prints_the_documents(camt_hub: tuple[HubHandle, str]) -> None:
    hub, cycle = camt_hub
    base = [*CLI, "--target", hub.config.target, "iso20022"]
    for args, kind in (
        (["statement", "--as", US, "USD", "--cycle", cycle], "camt.053.001.08"),
        (["notifications", "--as", US, "usd", "--after", "1"], "camt.054.001.08"),
    ):
        done = await asyncio.to_thread(
            subprocess.run, [*base, *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        got = read(done.stdout.encode(), kind)
        assert [e.cycle for e in got.entries] == [cycle]
