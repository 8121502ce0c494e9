"""ISO 20022 test documents for returns and recalls, built with lxml's
element API in the schemas' element order: pacs.004.001.09 returns,
camt.056.001.08 recall requests, camt.029.001.09 answers; and readers of
what the hub sends back (each checked against its XSD first)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from lxml import etree

from remitnet.services.adapters.iso20022 import xml

PACS004 = xml.namespace("pacs.004.001.09")
CAMT056 = xml.namespace("camt.056.001.08")
CAMT029 = xml.namespace("camt.029.001.09")
CREATED = "2026-12-02T10:00:00Z"


def hex_id() -> str:
    """A UUID as its 32 hex digits (RtrId, CxlId are Max35Text)."""
    return uuid.uuid4().hex


def _add(parent: etree._Element, ns: str, name: str, text: str | None = None) -> etree._Element:
    node = etree.SubElement(parent, f"{{{ns}}}{name}")
    if text is not None:
        node.text = text
    return node


def _agent(parent: etree._Element, ns: str, name: str, bic: str) -> None:
    _add(_add(_add(parent, ns, name), ns, "FinInstnId"), ns, "BICFI", bic)


def _assignment(body: etree._Element, ns: str, msg_id: str, bic: str) -> None:
    node = _add(body, ns, "Assgnmt")
    _add(node, ns, "Id", msg_id)
    _add(_add(_add(_add(node, ns, "Assgnr"), ns, "Agt"), ns, "FinInstnId"), ns, "BICFI", bic)
    _add(_add(_add(_add(node, ns, "Assgne"), ns, "Agt"), ns, "FinInstnId"), ns, "Nm", "hub")
    _add(node, ns, "CreDtTm", CREATED)


@dataclass
class Rtr:
    original: str  # OrgnlUETR
    amount: str
    currency: str = "USD"
    reason: str = "AC04"
    return_id: str = field(default_factory=hex_id)
    info: str = ""


def pacs004(
    returns: list[Rtr], *, msg_id: str = "RTR-1", instructing_bic: str, declared: int | None = None
) -> bytes:
    ns = PACS004
    root = etree.Element(f"{{{ns}}}Document", nsmap={None: ns})
    body = _add(root, ns, "PmtRtr")
    header = _add(body, ns, "GrpHdr")
    _add(header, ns, "MsgId", msg_id)
    _add(header, ns, "CreDtTm", CREATED)
    _add(header, ns, "NbOfTxs", str(len(returns) if declared is None else declared))
    _add(_add(header, ns, "SttlmInf"), ns, "SttlmMtd", "CLRG")
    _agent(header, ns, "InstgAgt", instructing_bic)
    for r in returns:
        tx = _add(body, ns, "TxInf")
        if r.return_id:
            _add(tx, ns, "RtrId", r.return_id)
        if r.original:
            _add(tx, ns, "OrgnlUETR", r.original)
        _add(tx, ns, "RtrdIntrBkSttlmAmt", r.amount).set("Ccy", r.currency)
        if r.reason or r.info:
            why = _add(tx, ns, "RtrRsnInf")
            if r.reason:
                _add(_add(why, ns, "Rsn"), ns, "Cd", r.reason)
            if r.info:
                _add(why, ns, "AddtlInf", r.info)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@dataclass
class Cxl:
    original: str
    reason: str = "DUPL"
    cancellation_id: str = field(default_factory=hex_id)
    info: str = ""


def camt056(recalls: list[Cxl], *, msg_id: str = "CXL-1", assigner_bic: str) -> bytes:
    ns = CAMT056
    root = etree.Element(f"{{{ns}}}Document", nsmap={None: ns})
    body = _add(root, ns, "FIToFIPmtCxlReq")
    _assignment(body, ns, msg_id, assigner_bic)
    underlying = _add(body, ns, "Undrlyg")
    for c in recalls:
        tx = _add(underlying, ns, "TxInf")
        if c.cancellation_id:
            _add(tx, ns, "CxlId", c.cancellation_id)
        if c.original:
            _add(tx, ns, "OrgnlUETR", c.original)
        why = _add(tx, ns, "CxlRsnInf")
        if c.reason:
            _add(_add(why, ns, "Rsn"), ns, "Cd", c.reason)
        if c.info:
            _add(why, ns, "AddtlInf", c.info)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@dataclass
class Ans:
    original: str
    status: str = "RJCR"
    reason: str = "NOAS"


def camt029(answers: list[Ans], *, msg_id: str = "ANS-1", assigner_bic: str) -> bytes:
    ns = CAMT029
    root = etree.Element(f"{{{ns}}}Document", nsmap={None: ns})
    body = _add(root, ns, "RsltnOfInvstgtn")
    _assignment(body, ns, msg_id, assigner_bic)
    _add(_add(body, ns, "Sts"), ns, "Conf", "RJCR")
    details = _add(body, ns, "CxlDtls")
    for a in answers:
        tx = _add(details, ns, "TxInfAndSts")
        if a.original:
            _add(tx, ns, "OrgnlUETR", a.original)
        if a.status:
            _add(tx, ns, "TxCxlSts", a.status)
        if a.reason:
            _add(_add(_add(tx, ns, "CxlStsRsnInf"), ns, "Rsn"), ns, "Cd", a.reason)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@dataclass(frozen=True)
class CxlStatus:
    uetr: str
    status: str
    reason: str
    info: str


def resolution(document: bytes) -> tuple[str, list[CxlStatus]]:
    """The hub's camt.029: (Sts/Conf, each TxInfAndSts), after its XSD."""
    root = etree.fromstring(document)
    xml.check(root.getroottree(), "camt.029.001.09")
    p = {"p": CAMT029}
    out = [
        CxlStatus(
            tx.findtext("p:OrgnlUETR", "", p),
            tx.findtext("p:TxCxlSts", "", p),
            tx.findtext("p:CxlStsRsnInf/p:Rsn/p:Cd", "", p),
            " ".join(e.text or "" for e in tx.iterfind("p:CxlStsRsnInf/p:AddtlInf", p)),
        )
        for tx in root.iterfind("p:RsltnOfInvstgtn/p:CxlDtls/p:TxInfAndSts", p)
    ]
    return root.findtext("p:RsltnOfInvstgtn/p:Sts/p:Conf", "", p), out


@dataclass(frozen=True)
class Returned:
    return_id: str
    original: str
    amount: str
    currency: str
    reason: str
    returning_bic: str
    receiving_bic: str


def returns(document: bytes) -> list[Returned]:
    """The TxInf of a pacs.004 the hub sent, after checking its XSD."""
    root = etree.fromstring(document)
    xml.check(root.getroottree(), "pacs.004.001.09")
    p = {"p": PACS004}
    out = []
    for tx in root.iterfind("p:PmtRtr/p:TxInf", p):
        amount = tx.find("p:RtrdIntrBkSttlmAmt", p)
        assert amount is not None
        out.append(
            Returned(
                str(uuid.UUID(hex=tx.findtext("p:RtrId", "", p))),
                tx.findtext("p:OrgnlUETR", "", p),
                amount.text or "",
                amount.get("Ccy", ""),
                tx.findtext("p:RtrRsnInf/p:Rsn/p:Cd", "", p),
                tx.findtext("p:InstgAgt/p:FinInstnId/p:BICFI", "", p),
                tx.findtext("p:InstdAgt/p:FinInstnId/p:BICFI", "", p),
            )
        )
    return out
