"""camt.053.001.08 (BankToCustomerStatementV08) out: a bank's statement of
one currency, built with lxml's element API in the schema's element order.
The account part and the entries are shared with camt.054 (camt054.py):
both messages use the same types (CashAccount39, ReportEntry10), each in
its own namespace."""

from __future__ import annotations

from lxml import etree

from remitnet.services.adapters.iso20022 import xml
from remitnet.services.adapters.iso20022.pacs002 import iso_datetime
from remitnet.services.domain.iso_camt import (
    CAMT_053,
    CODE_ISSUER,
    ENTRY_CODES,
    AccountReport,
    decimal_amount,
    direction,
)
from remitnet.services.domain.ledger import EntryKind, LedgerEntry

NS = xml.namespace(CAMT_053)
# Max35Text: a longer reference goes to AddtlNtryInf (Max500Text) only.
MAX_REF = 35
MAX_INFO = 500


class Builder:
    """Adds elements of one namespace."""

    def __init__(self, ns: str) -> None:
        self.ns = ns

    def add(self, parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
        node = etree.SubElement(parent, f"{{{self.ns}}}{name}")
        if text is not None:
            node.text = text
        return node

    def root(self, body: str) -> tuple[etree._Element, etree._Element]:
        root = etree.Element(f"{{{self.ns}}}Document", nsmap={None: self.ns})
        return root, self.add(root, body)

    def header(self, body: etree._Element, report: AccountReport) -> None:
        # GroupHeader81.
        header = self.add(body, "GrpHdr")
        self.add(header, "MsgId", report.msg_id)
        self.add(header, "CreDtTm", iso_datetime(report.created_at))
        paging = self.add(header, "MsgPgntn")
        self.add(paging, "PgNb", str(report.page))
        self.add(paging, "LastPgInd", "true" if report.last_page else "false")

    def account_head(self, node: etree._Element, report: AccountReport) -> None:
        """Id .. Acct of AccountStatement9 / AccountNotification17."""
        self.add(node, "Id", report.report_id)
        self.add(node, "CreDtTm", iso_datetime(report.created_at))
        if report.period is not None:
            period = self.add(node, "FrToDt")
            self.add(period, "FrDtTm", iso_datetime(report.period[0]))
            self.add(period, "ToDtTm", iso_datetime(report.period[1]))
        acct = self.add(node, "Acct")
        self.add(self.add(self.add(acct, "Id"), "Othr"), "Id", report.account_id)
        self.add(acct, "Ccy", report.currency)
        if report.bic:
            owner = self.add(acct, "Ownr")
            self.add(owner, "Nm", report.bank)
            self.add(self.add(self.add(owner, "Id"), "OrgId"), "AnyBIC", report.bic)

    def amount(self, parent: etree._Element, name: str, currency: str, minor: int) -> None:
        self.add(parent, name, decimal_amount(currency, minor)).set("Ccy", currency)

    def summary(self, node: etree._Element, report: AccountReport) -> None:
        # TotalTransactions6: the page's entries, credits and debits.
        ccy = report.currency
        summary = self.add(node, "TxsSummry")
        total = self.add(summary, "TtlNtries")
        self.add(total, "NbOfNtries", str(len(report.entries)))
        net = sum(e.amount for e in report.entries)
        self.add(total, "Sum", decimal_amount(ccy, sum(abs(e.amount) for e in report.entries)))
        net_node = self.add(total, "TtlNetNtry")
        self.add(net_node, "Amt", decimal_amount(ccy, net))
        self.add(net_node, "CdtDbtInd", direction(net))
        for name, (count, amount) in (
            ("TtlCdtNtries", report.credits),
            ("TtlDbtNtries", report.debits),
        ):
            part = self.add(summary, name)
            self.add(part, "NbOfNtries", str(count))
            self.add(part, "Sum", decimal_amount(ccy, amount))

    def entry(self, parent: etree._Element, currency: str, e: LedgerEntry) -> None:
        # ReportEntry10, in schema order. NtryRef is the entry's sequence
        # number on the account (what GetStatement's after_sequence takes),
        # AcctSvcrRef the posting id.
        node = self.add(parent, "Ntry")
        self.add(node, "NtryRef", str(e.seq))
        self.amount(node, "Amt", currency, e.amount)
        self.add(node, "CdtDbtInd", direction(e.amount))
        self.add(self.add(node, "Sts"), "Cd", "BOOK")
        self.add(self.add(node, "BookgDt"), "DtTm", iso_datetime(e.posted_at))
        self.add(self.add(node, "ValDt"), "Dt", e.posted_at.date().isoformat())
        if len(e.posting_id) <= MAX_REF:
            self.add(node, "AcctSvcrRef", e.posting_id)
        code = self.add(self.add(node, "BkTxCd"), "Prtry")
        self.add(code, "Cd", ENTRY_CODES.get(e.kind, "OTHER"))
        self.add(code, "Issr", CODE_ISSUER)
        if e.reference and len(e.reference) <= MAX_REF:
            refs = self.add(self.add(self.add(node, "NtryDtls"), "TxDtls"), "Refs")
            if len(e.posting_id) <= MAX_REF:
                self.add(refs, "AcctSvcrRef", e.posting_id)
            # A settlement's reference is its cycle: the clearing system's
            # reference; a gross transfer's is the transfer id.
            name = "ClrSysRef" if e.kind in (EntryKind.SETTLEMENT, EntryKind.FX_REVENUE) else "TxId"
            self.add(refs, name, e.reference)
        info = f"posting {e.posting_id}; reference {e.reference}" if e.reference else ""
        self.add(node, "AddtlNtryInf", (info or f"posting {e.posting_id}")[:MAX_INFO])

    def balance(
        self, parent: etree._Element, code: str, currency: str, minor: int, at: str
    ) -> None:
        # CashBalance8.
        bal = self.add(parent, "Bal")
        self.add(self.add(self.add(bal, "Tp"), "CdOrPrtry"), "Cd", code)
        self.amount(bal, "Amt", currency, minor)
        self.add(bal, "CdtDbtInd", direction(minor))
        self.add(self.add(bal, "Dt"), "DtTm", at)


def _balance_times(report: AccountReport) -> tuple[str, str]:
    """OPBD is dated at the start of the period (or the first entry), CLBD
    at its end (or the last entry, or now)."""
    if report.period is not None:
        return iso_datetime(report.period[0]), iso_datetime(report.period[1])
    if report.entries:
        return (
            iso_datetime(report.entries[0].posted_at),
            iso_datetime(report.entries[-1].posted_at),
        )
    now = iso_datetime(report.created_at)
    return now, now


def build(report: AccountReport) -> bytes:
    """The camt.053 document of `report`, UTF-8 with an XML declaration."""
    b = Builder(NS)
    root, body = b.root("BkToCstmrStmt")
    b.header(body, report)
    stmt = b.add(body, "Stmt")
    b.account_head(stmt, report)
    opened, closed = _balance_times(report)
    b.balance(stmt, "OPBD", report.currency, report.opening, opened)
    b.balance(stmt, "CLBD", report.currency, report.closing, closed)
    b.summary(stmt, report)
    for e in report.entries:
        b.entry(stmt, report.currency, e)
    if report.cycle_id:
        b.add(stmt, "AddtlStmtInf", f"settlement cycle {report.cycle_id}")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
