"""pacs.008.001.08 (FIToFICustomerCreditTransferV08) in: the schema-valid
document's content as domain values (domain/iso20022.py). Nothing is
checked here that the schema checks; the hub's own rules come after."""

from __future__ import annotations

from lxml import etree

from remitnet.services.adapters.iso20022 import xml
from remitnet.services.domain.iso20022 import (
    PACS_008,
    QUOTE_PREFIX,
    CreditTransfer,
    Pacs008,
    TxRef,
)

NS = xml.namespace(PACS_008)
_P = {"p": NS}


def _text(node: etree._Element | None, path: str) -> str:
    return xml.text_at(node, path, _P)


def _bic(agent: etree._Element | None) -> str:
    return _text(agent, "p:FinInstnId/p:BICFI")


def _quotes(rmt: etree._Element | None) -> tuple[str, ...]:
    """The quote ids named in RmtInf/Strd/AddtlRmtInf (QUOTE_PREFIX)."""
    if rmt is None:
        return ()
    texts = ((n.text or "").strip() for n in rmt.iterfind("p:Strd/p:AddtlRmtInf", _P))
    return tuple(t[len(QUOTE_PREFIX) :] for t in texts if t.startswith(QUOTE_PREFIX))


def read(data: bytes) -> Pacs008:
    """Parse and validate `data` (xml.parse: hardened, against the official
    XSD), then read it."""
    return from_root(xml.parse(data, PACS_008))


def from_root(root: etree._Element) -> Pacs008:
    body = root[0]  # FIToFICstmrCdtTrf: the schema admits nothing else
    header = body.find("p:GrpHdr", _P)
    assert header is not None  # required by the schema
    group_bic = _bic(header.find("p:InstgAgt", _P))
    transfers = []
    for index, tx in enumerate(body.iterfind("p:CdtTrfTxInf", _P), start=1):
        pid = tx.find("p:PmtId", _P)
        amount = tx.find("p:IntrBkSttlmAmt", _P)
        assert pid is not None and amount is not None  # required by the schema
        own_bic = _bic(tx.find("p:InstgAgt", _P))
        rmt = tx.find("p:RmtInf", _P)
        lines = () if rmt is None else tuple(u.text or "" for u in rmt.iterfind("p:Ustrd", _P))
        instructed = tx.find("p:InstdAmt", _P)
        transfers.append(
            CreditTransfer(
                ref=TxRef(
                    end_to_end_id=_text(pid, "p:EndToEndId"),
                    instr_id=_text(pid, "p:InstrId"),
                    tx_id=_text(pid, "p:TxId"),
                    uetr=_text(pid, "p:UETR"),
                ),
                path=f"/Document/FIToFICstmrCdtTrf/CdtTrfTxInf[{index}]",
                amount=(amount.text or "").strip(),
                currency=amount.get("Ccy", ""),
                creditor_bic=_bic(tx.find("p:CdtrAgt", _P)),
                instructing_bic=own_bic or group_bic,
                remittance=lines,
                quotes=_quotes(rmt),
                instructed_amount="" if instructed is None else (instructed.text or "").strip(),
                instructed_currency="" if instructed is None else instructed.get("Ccy", ""),
                exchange_rate=_text(tx, "p:XchgRate").strip(),
                # Purp/Prtry (a bilateral code) is ignored: the hub keeps
                # only the ISO list's codes, which every bank can read.
                purpose=_text(tx, "p:Purp/p:Cd"),
            )
        )
    return Pacs008(
        msg_id=_text(header, "p:MsgId"),
        created_at=_text(header, "p:CreDtTm"),
        declared_count=_text(header, "p:NbOfTxs"),
        transfers=tuple(transfers),
    )
