"""pacs.002.001.10 (FIToFIPaymentStatusReportV10) out, built with lxml's
element API (never by joining strings), in the schema's element order."""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree

from remitnet.services.adapters.iso20022 import xml
from remitnet.services.domain.iso20022 import PACS_002, Report, TxReport

NS = xml.namespace(PACS_002)
# StsRsnInf/AddtlInf is Max105Text.
MAX_INFO = 105


def _add(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    return xml.add(parent, NS, name, text)


def iso_datetime(at: datetime) -> str:
    """ISODateTime in UTC, to the millisecond, with Z."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _transaction(parent: etree._Element, tx: TxReport, report: Report) -> None:
    # PaymentTransaction110, in schema order.
    node = _add(parent, "TxInfAndSts")
    group = _add(node, "OrgnlGrpInf")
    _add(group, "OrgnlMsgId", report.original_msg_id)
    _add(group, "OrgnlMsgNmId", report.original_kind)
    if tx.ref.instr_id:
        _add(node, "OrgnlInstrId", tx.ref.instr_id)
    if tx.ref.end_to_end_id:
        _add(node, "OrgnlEndToEndId", tx.ref.end_to_end_id)
    if tx.ref.tx_id:
        _add(node, "OrgnlTxId", tx.ref.tx_id)
    if tx.ref.uetr:
        _add(node, "OrgnlUETR", tx.ref.uetr)
    _add(node, "TxSts", tx.status)
    if tx.reason_code or tx.info:
        reason = _add(node, "StsRsnInf")
        if tx.reason_code:
            _add(_add(reason, "Rsn"), "Cd", tx.reason_code)
        info = tx.info
        # Max105Text, repeated: long information spans several (at most 3).
        for start in range(0, min(len(info), 3 * MAX_INFO), MAX_INFO):
            _add(reason, "AddtlInf", info[start : start + MAX_INFO])
    if tx.accepted_at is not None:
        _add(node, "AccptncDtTm", iso_datetime(tx.accepted_at))


def build(report: Report) -> bytes:
    """The pacs.002 document of `report`, UTF-8 with an XML declaration."""
    root = xml.document(NS)
    body = _add(root, "FIToFIPmtStsRpt")
    header = _add(body, "GrpHdr")
    _add(header, "MsgId", report.msg_id)
    _add(header, "CreDtTm", iso_datetime(report.created_at))
    group = _add(body, "OrgnlGrpInfAndSts")
    _add(group, "OrgnlMsgId", report.original_msg_id)
    _add(group, "OrgnlMsgNmId", report.original_kind)
    if report.original_created_at:
        _add(group, "OrgnlCreDtTm", report.original_created_at)
    _add(group, "OrgnlNbOfTxs", str(len(report.transactions)))
    for tx in report.transactions:
        _transaction(body, tx, report)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
