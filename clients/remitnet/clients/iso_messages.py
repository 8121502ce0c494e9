"""ISO 20022 documents for a bank that speaks them to the hub, with lxml's
element API in the schemas' element order (never by joining strings): a
pacs.008.001.08 out, and what a bank reads back from a pacs.002.001.10 and
a camt.053.001.08. The hub checks every inbound document against its
official XSD, so these build only what the schema admits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from lxml import etree

_NS = "urn:iso:std:iso:20022:tech:xsd:"
PACS_008 = _NS + "pacs.008.001.08"
PACS_002 = _NS + "pacs.002.001.10"
CAMT_053 = _NS + "camt.053.001.08"


@dataclass(frozen=True, slots=True)
class CreditTransfer:
    """One CdtTrfTxInf: `amount` in major units as written (e.g. "125.50")."""

    creditor_bic: str
    amount: str
    currency: str
    end_to_end_id: str = "NOTPROVIDED"
    uetr: str = field(default_factory=lambda: str(uuid.uuid4()))
    remittance: str = ""
    # Cross-currency: the quote it is priced with (`amount` and `currency`
    # are then the quote's source amount), named as the hub reads it, in
    # RmtInf/Strd/AddtlRmtInf "/QUOTE/<id>" (as BIS Nexus does); and,
    # optionally, InstdAmt (amount, currency) and XchgRate to be checked
    # against the quote.
    quote_id: str = ""
    instructed: tuple[str, str] | None = None
    exchange_rate: str = ""


def _add(parent: etree._Element, ns: str, name: str, text: str | None = None) -> etree._Element:
    node = etree.SubElement(parent, f"{{{ns}}}{name}")
    if text is not None:
        node.text = text
    return node


def _agent(parent: etree._Element, name: str, bic: str) -> None:
    _add(_add(_add(parent, PACS_008, name), PACS_008, "FinInstnId"), PACS_008, "BICFI", bic)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def pacs008(
    instructing_bic: str,
    transfers: Sequence[CreditTransfer],
    *,
    msg_id: str = "",
    debtor: str = "Debtor",
    creditor: str = "Creditor",
) -> bytes:
    """A pacs.008.001.08 from the bank `instructing_bic` (GrpHdr/InstgAgt,
    also the debtor agent), cleared through the hub (SttlmMtd CLRG)."""
    ns = PACS_008
    root = etree.Element(f"{{{ns}}}Document", nsmap={None: ns})
    body = _add(root, ns, "FIToFICstmrCdtTrf")
    header = _add(body, ns, "GrpHdr")
    _add(header, ns, "MsgId", msg_id or uuid.uuid4().hex[:35])
    _add(header, ns, "CreDtTm", _now())
    _add(header, ns, "NbOfTxs", str(len(transfers)))
    _add(_add(header, ns, "SttlmInf"), ns, "SttlmMtd", "CLRG")
    _agent(header, "InstgAgt", instructing_bic)
    for tx in transfers:
        node = _add(body, ns, "CdtTrfTxInf")
        pid = _add(node, ns, "PmtId")
        _add(pid, ns, "EndToEndId", tx.end_to_end_id)
        _add(pid, ns, "UETR", tx.uetr)
        _add(node, ns, "IntrBkSttlmAmt", tx.amount).set("Ccy", tx.currency)
        if tx.instructed:
            _add(node, ns, "InstdAmt", tx.instructed[0]).set("Ccy", tx.instructed[1])
        if tx.exchange_rate:
            _add(node, ns, "XchgRate", tx.exchange_rate)
        _add(node, ns, "ChrgBr", "SHAR")
        _add(_add(node, ns, "Dbtr"), ns, "Nm", debtor)
        _agent(node, "DbtrAgt", instructing_bic)
        _agent(node, "CdtrAgt", tx.creditor_bic)
        _add(_add(node, ns, "Cdtr"), ns, "Nm", creditor)
        if tx.remittance or tx.quote_id:
            rmt = _add(node, ns, "RmtInf")
            if tx.remittance:
                _add(rmt, ns, "Ustrd", tx.remittance)
            if tx.quote_id:
                _add(_add(rmt, ns, "Strd"), ns, "AddtlRmtInf", "/QUOTE/" + tx.quote_id)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@dataclass(frozen=True, slots=True)
class TxStatus:
    uetr: str
    status: str  # ACSP, ACCC, PDNG, RJCT
    reason: str  # StsRsnInf/Rsn/Cd, for a RJCT


def statuses(pacs002: bytes) -> list[TxStatus]:
    """The TxInfAndSts of a pacs.002, in order."""
    root = etree.fromstring(pacs002)
    p = {"p": PACS_002}
    return [
        TxStatus(
            tx.findtext("p:OrgnlUETR", "", p),
            tx.findtext("p:TxSts", "", p),
            tx.findtext("p:StsRsnInf/p:Rsn/p:Cd", "", p),
        )
        for tx in root.iterfind("p:FIToFIPmtStsRpt/p:TxInfAndSts", p)
    ]


@dataclass(frozen=True, slots=True)
class StatementEntry:
    ref: str  # NtryRef: the entry's sequence number on the account
    booked: str  # BookgDt/DtTm
    amount: Decimal  # signed by CdtDbtInd
    code: str  # BkTxCd/Prtry/Cd
    cycle: str  # NtryDtls/TxDtls/Refs/ClrSysRef, of a settlement


@dataclass(frozen=True, slots=True)
class Statement:
    currency: str
    opening: Decimal  # OPBD, signed
    closing: Decimal  # CLBD, signed
    entries: list[StatementEntry]
    last_page: bool


def _signed(node: etree._Element, p: dict[str, str]) -> Decimal:
    value = Decimal(node.findtext("p:Amt", "0", p))
    return -value if node.findtext("p:CdtDbtInd", "", p) == "DBIT" else value


def statement(camt053: bytes) -> Statement:
    """The balances and entries of a camt.053's (first) Stmt."""
    root = etree.fromstring(camt053)
    p = {"p": CAMT_053}
    stmt = root.find("p:BkToCstmrStmt/p:Stmt", p)
    if stmt is None:
        raise ValueError("not a camt.053.001.08 statement")
    balances = {
        b.findtext("p:Tp/p:CdOrPrtry/p:Cd", "", p): _signed(b, p) for b in stmt.iterfind("p:Bal", p)
    }
    entries = [
        StatementEntry(
            n.findtext("p:NtryRef", "", p),
            n.findtext("p:BookgDt/p:DtTm", "", p),
            _signed(n, p),
            n.findtext("p:BkTxCd/p:Prtry/p:Cd", "", p),
            n.findtext("p:NtryDtls/p:TxDtls/p:Refs/p:ClrSysRef", "", p),
        )
        for n in stmt.iterfind("p:Ntry", p)
    ]
    return Statement(
        stmt.findtext("p:Acct/p:Ccy", "", p),
        balances.get("OPBD", Decimal(0)),
        balances.get("CLBD", Decimal(0)),
        entries,
        root.findtext("p:BkToCstmrStmt/p:GrpHdr/p:MsgPgntn/p:LastPgInd", "true", p) == "true",
    )
