"""camt.056.001.08 (FIToFIPaymentCancellationRequestV08) in: a debtor's
recall requests, as domain values. Nothing is checked here that the schema
checks; the hub's own rules come after."""

from __future__ import annotations

from lxml import etree

from remitnet.services.adapters.iso20022 import xml
from remitnet.services.domain.iso20022 import TxRef
from remitnet.services.domain.iso_lifecycle import CAMT_056, Camt056, RecallTx

NS = xml.namespace(CAMT_056)
_P = {"p": NS}


def _text(node: etree._Element | None, path: str) -> str:
    return xml.text_at(node, path, _P)


def read(data: bytes) -> Camt056:
    """Parse and validate `data` (xml.parse), then read it."""
    root = xml.parse(data, CAMT_056)
    body = root[0]  # FIToFIPmtCxlReq
    assignment = body.find("p:Assgnmt", _P)
    recalls = []
    whole = 0
    for u, underlying in enumerate(body.iterfind("p:Undrlyg", _P), start=1):
        txs = underlying.findall("p:TxInf", _P)
        if not txs:
            whole += 1
        for index, tx in enumerate(txs, start=1):
            # The first CxlRsnInf is the recall's reason; the schema allows more.
            why = tx.find("p:CxlRsnInf", _P)
            lines = () if why is None else why.iterfind("p:AddtlInf", _P)
            recalls.append(
                RecallTx(
                    ref=TxRef(
                        end_to_end_id=_text(tx, "p:OrgnlEndToEndId"),
                        instr_id=_text(tx, "p:OrgnlInstrId"),
                        tx_id=_text(tx, "p:OrgnlTxId"),
                        uetr=_text(tx, "p:OrgnlUETR"),
                    ),
                    path=f"/Document/FIToFIPmtCxlReq/Undrlyg[{u}]/TxInf[{index}]",
                    cancellation_id=_text(tx, "p:CxlId"),
                    reason=_text(why, "p:Rsn/p:Cd"),
                    info=" ".join(a.text or "" for a in lines),
                )
            )
    return Camt056(
        msg_id=_text(assignment, "p:Id"),
        created_at=_text(assignment, "p:CreDtTm"),
        assigner_bic=_text(assignment, "p:Assgnr/p:Agt/p:FinInstnId/p:BICFI"),
        case_id=_text(body, "p:Case/p:Id"),
        recalls=tuple(recalls),
        whole_groups=whole,
    )
