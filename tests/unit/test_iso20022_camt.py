"""The camt.053 and camt.054 builders: every document valid against its
official XSD, amounts in the currency's decimals with the sign in
CdtDbtInd, and references that do not fit Max35Text kept in AddtlNtryInf."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lxml import etree

from remitnet.services.adapters.iso20022 import camt053, camt054, xml
from remitnet.services.domain.iso_camt import (
    CAMT_053,
    CAMT_054,
    AccountReport,
    decimal_amount,
    direction,
)
from remitnet.services.domain.ledger import EntryKind, LedgerEntry

AT = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
LONG = "deposit:" + "x" * 40


def _entry(
    seq: int, kind: EntryKind, amount: int, balance: int, posting: str, ref: str
) -> LedgerEntry:
    return LedgerEntry("BANKJP01/JPY/liquidity", seq, kind, amount, balance, posting, ref, AT)


def _report(**kw: object) -> AccountReport:
    entries = (
        _entry(1, EntryKind.DEPOSIT, 500, 500, LONG, "wire 42"),
        _entry(2, EntryKind.SETTLEMENT, -700, -200, "settle:JPY-000001", "JPY-000001"),
        _entry(3, EntryKind.GROSS, 50, -150, "gross:t1", "t1"),
    )
    base: dict[str, object] = dict(
        msg_id="RMTN1", created_at=AT, report_id="RMTN2", bank="BANKJP01", bic="BANKJPJT",
        currency="JPY", account_id="BANKJP01/JPY/liquidity", opening=0, closing=-150,
        entries=entries,
    )  # fmt: skip
    base.update(kw)
    return AccountReport(**base)  # type: ignore[arg-type]


def test_amounts_carry_the_currency_decimals_and_no_sign() -> None:
    assert decimal_amount("USD", -123456) == "1234.56"
    assert decimal_amount("JPY", 500) == "500"
    assert decimal_amount("BHD", 5) == "0.005"
    assert (direction(-1), direction(0), direction(1)) == ("DBIT", "CRDT", "CRDT")


@pytest.mark.parametrize(
    "report",
    [
        _report(),
        _report(entries=(), opening=7, closing=7, cycle_id="JPY-000001"),
        _report(period=(AT, AT), page=2, last_page=False, bic=""),
    ],
)
def test_the_statement_is_schema_valid(report: AccountReport) -> None:
    root = etree.fromstring(camt053.build(report))
    xml.check(root.getroottree(), CAMT_053)


def test_the_statement_names_balances_entries_and_references() -> None:
    root = etree.fromstring(camt053.build(_report()))
    p = {"p": xml.namespace(CAMT_053)}
    stmt = root.find("p:BkToCstmrStmt/p:Stmt", p)
    assert stmt is not None
    closing = stmt.find("p:Bal[2]", p)
    assert closing is not None
    assert closing.findtext("p:Tp/p:CdOrPrtry/p:Cd", "", p) == "CLBD"
    assert (closing.findtext("p:Amt", "", p), closing.findtext("p:CdtDbtInd", "", p)) == (
        "150",
        "DBIT",
    )
    first, settle, gross = stmt.findall("p:Ntry", p)
    assert first.find("p:AcctSvcrRef", p) is None  # longer than Max35Text
    assert LONG in first.findtext("p:AddtlNtryInf", "", p)
    assert settle.findtext("p:AcctSvcrRef", "", p) == "settle:JPY-000001"
    assert settle.findtext("p:NtryDtls/p:TxDtls/p:Refs/p:ClrSysRef", "", p) == "JPY-000001"
    assert gross.findtext("p:NtryDtls/p:TxDtls/p:Refs/p:TxId", "", p) == "t1"
    summary = stmt.find("p:TxsSummry", p)
    assert summary is not None
    assert summary.findtext("p:TtlNtries/p:TtlNetNtry/p:Amt", "", p) == "150"
    assert summary.findtext("p:TtlCdtNtries/p:Sum", "", p) == "550"
    assert summary.findtext("p:TtlDbtNtries/p:NbOfNtries", "", p) == "1"


def test_the_notification_is_schema_valid_and_has_no_balances() -> None:
    for report in (_report(), _report(entries=())):
        root = etree.fromstring(camt054.build(report))
        xml.check(root.getroottree(), CAMT_054)
        p = {"p": xml.namespace(CAMT_054)}
        assert root.find("p:BkToCstmrDbtCdtNtfctn/p:Ntfctn/p:Bal", p) is None
