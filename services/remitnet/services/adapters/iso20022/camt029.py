"""camt.029.001.09 (ResolutionOfInvestigationV09): a creditor's answers to
recalls in, as domain values, and the hub's answers out (to a camt.056 or
a camt.029), built with lxml's element API in the schema's element order."""

from __future__ import annotations

from lxml import etree

from remitnet.services.adapters.iso20022 import xml
from remitnet.services.adapters.iso20022.pacs002 import iso_datetime
from remitnet.services.domain.iso20022 import TxRef
from remitnet.services.domain.iso_lifecycle import (
    CAMT_029,
    Camt029,
    CancellationStatus,
    RecallAnswer,
    Resolution,
)

NS = xml.namespace(CAMT_029)
_P = {"p": NS}
MAX_INFO = 105  # AddtlInf is Max105Text
# The hub has no BIC of its own: it names itself as a party.
HUB_NAME = "remitnet clearing hub"


def _text(node: etree._Element | None, path: str) -> str:
    return xml.text_at(node, path, _P)


def read(data: bytes) -> Camt029:
    """Parse and validate `data` (xml.parse), then read it."""
    root = xml.parse(data, CAMT_029)
    body = root[0]  # RsltnOfInvstgtn
    assignment = body.find("p:Assgnmt", _P)
    answers = []
    for d, details in enumerate(body.iterfind("p:CxlDtls", _P), start=1):
        for index, tx in enumerate(details.iterfind("p:TxInfAndSts", _P), start=1):
            answers.append(
                RecallAnswer(
                    ref=TxRef(
                        end_to_end_id=_text(tx, "p:OrgnlEndToEndId"),
                        instr_id=_text(tx, "p:OrgnlInstrId"),
                        tx_id=_text(tx, "p:OrgnlTxId"),
                        uetr=_text(tx, "p:OrgnlUETR"),
                    ),
                    path=f"/Document/RsltnOfInvstgtn/CxlDtls[{d}]/TxInfAndSts[{index}]",
                    status=_text(tx, "p:TxCxlSts"),
                    reason=_text(tx, "p:CxlStsRsnInf/p:Rsn/p:Cd"),
                )
            )
    return Camt029(
        msg_id=_text(assignment, "p:Id"),
        created_at=_text(assignment, "p:CreDtTm"),
        assigner_bic=_text(assignment, "p:Assgnr/p:Agt/p:FinInstnId/p:BICFI"),
        case_id=_text(body, "p:RslvdCase/p:Id"),
        answers=tuple(answers),
    )


def _add(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    return xml.add(parent, NS, name, text)


def _hub(parent: etree._Element, name: str) -> None:
    _add(_add(_add(parent, name), "Pty"), "Nm", HUB_NAME)


def _agent(parent: etree._Element, name: str, bic: str) -> None:
    _add(_add(_add(_add(parent, name), "Agt"), "FinInstnId"), "BICFI", bic)


def _transaction(parent: etree._Element, tx: CancellationStatus) -> None:
    # PaymentTransaction102, in schema order.
    node = _add(parent, "TxInfAndSts")
    if tx.ref.instr_id:
        _add(node, "OrgnlInstrId", tx.ref.instr_id)
    if tx.ref.end_to_end_id:
        _add(node, "OrgnlEndToEndId", tx.ref.end_to_end_id)
    if tx.ref.tx_id:
        _add(node, "OrgnlTxId", tx.ref.tx_id)
    if tx.ref.uetr:
        _add(node, "OrgnlUETR", tx.ref.uetr)
    if tx.status:
        _add(node, "TxCxlSts", tx.status)
    if tx.reason_code or tx.info:
        reason = _add(node, "CxlStsRsnInf")
        if tx.reason_code:
            _add(_add(reason, "Rsn"), "Cd", tx.reason_code)
        for start in range(0, min(len(tx.info), 3 * MAX_INFO), MAX_INFO):
            _add(reason, "AddtlInf", tx.info[start : start + MAX_INFO])


def build(resolution: Resolution) -> bytes:
    """The hub's camt.029 of `resolution`, UTF-8 with an XML declaration."""
    root = xml.document(NS)
    body = _add(root, "RsltnOfInvstgtn")
    assignment = _add(body, "Assgnmt")
    _add(assignment, "Id", resolution.msg_id)
    _hub(assignment, "Assgnr")
    _agent(assignment, "Assgne", resolution.assignee_bic)
    _add(assignment, "CreDtTm", iso_datetime(resolution.created_at))
    if resolution.case_id:
        case = _add(body, "RslvdCase")
        _add(case, "Id", resolution.case_id)
        _agent(case, "Cretr", resolution.assignee_bic)
    _add(_add(body, "Sts"), "Conf", resolution.confirmation)
    if resolution.transactions:
        details = _add(body, "CxlDtls")
        for tx in resolution.transactions:
            _transaction(details, tx)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
