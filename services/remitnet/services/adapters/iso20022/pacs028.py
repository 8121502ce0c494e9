"""pacs.028.001.03 (FIToFIPaymentStatusRequestV03) in: which transactions'
status a bank asks for, as domain values."""

from __future__ import annotations

from lxml import etree

from remitnet.services.adapters.iso20022 import xml
from remitnet.services.domain.iso20022 import PACS_028, StatusRequest, TxRef

NS = xml.namespace(PACS_028)
_P = {"p": NS}


def _text(node: etree._Element | None, path: str) -> str:
    return xml.text_at(node, path, _P)


def read(data: bytes) -> StatusRequest:
    """Parse and validate `data` (xml.parse), then read it."""
    root = xml.parse(data, PACS_028)
    body = root[0]  # FIToFIPmtStsReq
    header = body.find("p:GrpHdr", _P)
    refs = tuple(
        TxRef(
            end_to_end_id=_text(tx, "p:OrgnlEndToEndId"),
            instr_id=_text(tx, "p:OrgnlInstrId"),
            tx_id=_text(tx, "p:OrgnlTxId"),
            uetr=_text(tx, "p:OrgnlUETR"),
        )
        for tx in body.iterfind("p:TxInf", _P)
    )
    return StatusRequest(
        msg_id=_text(header, "p:MsgId"),
        created_at=_text(header, "p:CreDtTm"),
        requester_bic=_text(header, "p:InstgAgt/p:FinInstnId/p:BICFI"),
        original_msg_id=_text(body, "p:OrgnlGrpInf/p:OrgnlMsgId"),
        refs=refs,
    )
