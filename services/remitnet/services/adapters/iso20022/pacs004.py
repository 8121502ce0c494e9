"""pacs.004.001.09 (PaymentReturnV09): a creditor's returns in, as domain
values, and the returns a debtor received out, built with lxml's element
API in the schema's element order (never by joining strings)."""

from __future__ import annotations

from lxml import etree

from remitnet.services.adapters.iso20022 import xml
from remitnet.services.adapters.iso20022.pacs002 import iso_datetime
from remitnet.services.domain.iso20022 import TxRef
from remitnet.services.domain.iso_lifecycle import (
    PACS_004,
    Pacs004,
    PaymentReturn,
    ReturnNotice,
    ReturnsReport,
    max35_id,
)

NS = xml.namespace(PACS_004)
_P = {"p": NS}
MAX_INFO = 105  # AddtlInf is Max105Text


def _text(node: etree._Element | None, path: str) -> str:
    return xml.text_at(node, path, _P)


def read(data: bytes) -> Pacs004:
    """Parse and validate `data` (xml.parse: hardened, against the official
    XSD), then read it."""
    root = xml.parse(data, PACS_004)
    body = root[0]  # PmtRtr: the schema admits nothing else
    header = body.find("p:GrpHdr", _P)
    group_bic = _text(header, "p:InstgAgt/p:FinInstnId/p:BICFI")
    returns = []
    for index, tx in enumerate(body.iterfind("p:TxInf", _P), start=1):
        amount = tx.find("p:RtrdIntrBkSttlmAmt", _P)
        assert amount is not None  # required by the schema
        # The first RtrRsnInf is the return's reason; the schema allows more.
        why = tx.find("p:RtrRsnInf", _P)
        lines = () if why is None else why.iterfind("p:AddtlInf", _P)
        info = " ".join(a.text or "" for a in lines)
        returns.append(
            PaymentReturn(
                ref=TxRef(
                    end_to_end_id=_text(tx, "p:OrgnlEndToEndId"),
                    instr_id=_text(tx, "p:OrgnlInstrId"),
                    tx_id=_text(tx, "p:RtrId"),
                    uetr=_text(tx, "p:OrgnlUETR"),
                ),
                path=f"/Document/PmtRtr/TxInf[{index}]",
                return_id=_text(tx, "p:RtrId"),
                amount=(amount.text or "").strip(),
                currency=amount.get("Ccy", ""),
                reason=_text(why, "p:Rsn/p:Cd"),
                instructing_bic=_text(tx, "p:InstgAgt/p:FinInstnId/p:BICFI") or group_bic,
                info=info,
            )
        )
    return Pacs004(
        msg_id=_text(header, "p:MsgId"),
        created_at=_text(header, "p:CreDtTm"),
        declared_count=_text(header, "p:NbOfTxs"),
        returns=tuple(returns),
    )


def _add(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    return xml.add(parent, NS, name, text)


def _agent(parent: etree._Element, name: str, bic: str) -> None:
    _add(_add(_add(parent, name), "FinInstnId"), "BICFI", bic)


def _return(body: etree._Element, r: ReturnNotice) -> None:
    # PaymentTransaction112, in schema order.
    tx = _add(body, "TxInf")
    _add(tx, "RtrId", max35_id(r.return_id))
    _add(tx, "OrgnlUETR", r.original_id)
    _add(tx, "OrgnlIntrBkSttlmAmt", r.original_amount).set("Ccy", r.original_currency)
    _add(tx, "RtrdIntrBkSttlmAmt", r.amount).set("Ccy", r.currency)
    _add(tx, "IntrBkSttlmDt", r.returned_at.date().isoformat())
    if r.returning_bic:
        _agent(tx, "InstgAgt", r.returning_bic)
    if r.receiving_bic:
        _agent(tx, "InstdAgt", r.receiving_bic)
    reason = _add(tx, "RtrRsnInf")
    _add(_add(reason, "Rsn"), "Cd", r.reason)
    for start in range(0, min(len(r.info), 3 * MAX_INFO), MAX_INFO):
        _add(reason, "AddtlInf", r.info[start : start + MAX_INFO])


def build(report: ReturnsReport) -> bytes:
    """The pacs.004 of `report`, UTF-8 with an XML declaration: the hub
    tells the original's debtor what was returned to it."""
    root = xml.document(NS)
    body = _add(root, "PmtRtr")
    header = _add(body, "GrpHdr")
    _add(header, "MsgId", report.msg_id)
    _add(header, "CreDtTm", iso_datetime(report.created_at))
    _add(header, "NbOfTxs", str(len(report.returns)))
    # Returns settle through the hub's cycles, like any transfer.
    _add(_add(header, "SttlmInf"), "SttlmMtd", "CLRG")
    for r in report.returns:
        _return(body, r)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
