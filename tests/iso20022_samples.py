"""ISO 20022 test documents, built with lxml's element API in the
schemas' element order: pacs.008.001.08 credit transfers and pacs.028.001.03
status requests, and a reader of pacs.002 answers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from lxml import etree

from remitnet.services.adapters.iso20022 import xml

PACS008 = xml.namespace("pacs.008.001.08")
PACS002 = xml.namespace("pacs.002.001.10")
PACS028 = xml.namespace("pacs.028.001.03")
CREATED = "2026-12-02T10:00:00Z"


def uetr() -> str:
    return str(uuid.uuid4())


@dataclass
class Tx:
    creditor_bic: str
    amount: str
    currency: str = "USD"
    uetr: str = field(default_factory=uetr)
    end_to_end_id: str = "E2E"
    remittance: tuple[str, ...] = ()
    instructing_bic: str | None = None  # its own InstgAgt (else none at this level)
    quote_id: str = ""  # RmtInf/Strd/AddtlRmtInf "/QUOTE/<id>"
    instructed: tuple[str, str] | None = None  # InstdAmt: (amount, Ccy)
    xchg_rate: str = ""
    purpose: str = ""  # Purp/Cd
    purpose_proprietary: str = ""  # Purp/Prtry (instead of Purp/Cd)


def _add(parent: etree._Element, ns: str, name: str, text: str | None = None) -> etree._Element:
    node = etree.SubElement(parent, f"{{{ns}}}{name}")
    if text is not None:
        node.text = text
    return node


def _agent(parent: etree._Element, ns: str, name: str, bic: str) -> None:
    _add(_add(_add(parent, ns, name), ns, "FinInstnId"), ns, "BICFI", bic)


def pacs008(
    txs: list[Tx],
    *,
    msg_id: str = "MSG-1",
    instructing_bic: str | None = None,
    declared: int | None = None,
) -> bytes:
    """A pacs.008.001.08 with `txs`; `instructing_bic`: GrpHdr/InstgAgt."""
    ns = PACS008
    root = etree.Element(f"{{{ns}}}Document", nsmap={None: ns})
    body = _add(root, ns, "FIToFICstmrCdtTrf")
    header = _add(body, ns, "GrpHdr")
    _add(header, ns, "MsgId", msg_id)
    _add(header, ns, "CreDtTm", CREATED)
    _add(header, ns, "NbOfTxs", str(len(txs) if declared is None else declared))
    _add(_add(header, ns, "SttlmInf"), ns, "SttlmMtd", "CLRG")
    if instructing_bic:
        _agent(header, ns, "InstgAgt", instructing_bic)
    for tx in txs:
        node = _add(body, ns, "CdtTrfTxInf")
        pid = _add(node, ns, "PmtId")
        _add(pid, ns, "EndToEndId", tx.end_to_end_id)
        if tx.uetr:
            _add(pid, ns, "UETR", tx.uetr)
        _add(node, ns, "IntrBkSttlmAmt", tx.amount).set("Ccy", tx.currency)
        if tx.instructed:
            _add(node, ns, "InstdAmt", tx.instructed[0]).set("Ccy", tx.instructed[1])
        if tx.xchg_rate:
            _add(node, ns, "XchgRate", tx.xchg_rate)
        _add(node, ns, "ChrgBr", "SHAR")
        if tx.instructing_bic:
            _agent(node, ns, "InstgAgt", tx.instructing_bic)
        _add(_add(node, ns, "Dbtr"), ns, "Nm", "Debtor")
        _agent(node, ns, "DbtrAgt", tx.instructing_bic or instructing_bic or "ZZZZUS33")
        _agent(node, ns, "CdtrAgt", tx.creditor_bic)
        _add(_add(node, ns, "Cdtr"), ns, "Nm", "Creditor")
        if tx.purpose:
            _add(_add(node, ns, "Purp"), ns, "Cd", tx.purpose)
        elif tx.purpose_proprietary:
            _add(_add(node, ns, "Purp"), ns, "Prtry", tx.purpose_proprietary)
        if tx.remittance or tx.quote_id:
            rmt = _add(node, ns, "RmtInf")
            for line in tx.remittance:
                _add(rmt, ns, "Ustrd", line)
            if tx.quote_id:
                _add(_add(rmt, ns, "Strd"), ns, "AddtlRmtInf", "/QUOTE/" + tx.quote_id)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def pacs028(
    uetrs: list[str], *, msg_id: str = "REQ-1", instructing_bic: str | None = None
) -> bytes:
    ns = PACS028
    root = etree.Element(f"{{{ns}}}Document", nsmap={None: ns})
    body = _add(root, ns, "FIToFIPmtStsReq")
    header = _add(body, ns, "GrpHdr")
    _add(header, ns, "MsgId", msg_id)
    _add(header, ns, "CreDtTm", CREATED)
    if instructing_bic:
        _agent(header, ns, "InstgAgt", instructing_bic)
    for u in uetrs:
        _add(_add(body, ns, "TxInf"), ns, "OrgnlUETR", u)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@dataclass(frozen=True)
class Status:
    uetr: str
    status: str
    reason: str
    info: str


def statuses(document: bytes) -> list[Status]:
    """The TxInfAndSts of a pacs.002, after checking it against its XSD."""
    root = etree.fromstring(document)
    xml.check(root.getroottree(), "pacs.002.001.10")
    p = {"p": PACS002}
    out = []
    for tx in root.iterfind("p:FIToFIPmtStsRpt/p:TxInfAndSts", p):
        out.append(
            Status(
                tx.findtext("p:OrgnlUETR", "", p),
                tx.findtext("p:TxSts", "", p),
                tx.findtext("p:StsRsnInf/p:Rsn/p:Cd", "", p),
                " ".join(e.text or "" for e in tx.iterfind("p:StsRsnInf/p:AddtlInf", p)),
            )
        )
    return out
