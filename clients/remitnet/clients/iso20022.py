"""A bank that speaks ISO 20022 to the hub (remitnet.iso20022.v1): documents
in, documents out. Retries are safe: a pacs.008 is idempotent on its MsgId
(the same document again is answered as the first time), and a pacs.028
only reads."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from lxml import etree

from remitnet.clients.base import ClientConfig, HubClient
from remitnet.clients.format import renderer
from remitnet.iso20022.v1 import iso20022_pb2 as pb
from remitnet.iso20022.v1 import iso20022_pb2_grpc as pb_grpc

PACS_028 = "urn:iso:std:iso:20022:tech:xsd:pacs.028.001.03"


def status_request(uetrs: Sequence[str], *, msg_id: str = "") -> bytes:
    """A pacs.028.001.03 asking for the status of `uetrs`, built with lxml's
    element API in the schema's order."""

    def add(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
        node = etree.SubElement(parent, f"{{{PACS_028}}}{name}")
        node.text = text
        return node

    root = etree.Element(f"{{{PACS_028}}}Document", nsmap={None: PACS_028})
    body = add(root, "FIToFIPmtStsReq")
    header = add(body, "GrpHdr")
    add(header, "MsgId", msg_id or uuid.uuid4().hex[:35])
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    add(header, "CreDtTm", now)
    for uetr in uetrs:
        add(add(body, "TxInf"), "OrgnlUETR", uetr)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class Iso20022Client(HubClient):
    def __init__(self, bank_code: str, config: ClientConfig | None = None) -> None:
        super().__init__(f"bank:{bank_code}", config)
        self.bank_code = bank_code
        self.iso20022 = pb_grpc.Iso20022ServiceStub(self.channel)

    async def submit_pacs008(self, document: bytes) -> pb.SubmitPacs008Response:
        """Clear a pacs.008.001.08; the answer holds the pacs.002.001.10."""
        return await self.call(
            self.iso20022.SubmitPacs008, pb.SubmitPacs008Request(document=document)
        )

    async def status(self, uetrs: Sequence[str]) -> pb.GetStatusPacs028Response:
        """The pacs.002.001.10 with the current status of `uetrs` (a
        pacs.028.001.03 built here)."""
        request = pb.GetStatusPacs028Request(document=status_request(uetrs))
        return await self.call(self.iso20022.GetStatusPacs028, request)

    async def statement(
        self,
        currency: str,
        *,
        cycle_id: str = "",
        from_date: str = "",
        to_date: str = "",
        after_sequence: int = 0,
        page_size: int = 0,
    ) -> pb.GetStatementCamt053Response:
        """A camt.053.001.08 of the bank's `currency` account: of a settled
        cycle, of UTC booking days (YYYY-MM-DD, inclusive) or of all entries;
        paged by next_after_sequence."""
        request = pb.GetStatementCamt053Request(
            currency=currency,
            cycle_id=cycle_id,
            from_date=from_date,
            to_date=to_date,
            after_sequence=after_sequence,
            page_size=page_size,
        )
        return await self.call(self.iso20022.GetStatementCamt053, request)

    async def notifications(
        self, currency: str, after_sequence: int = 0, page_size: int = 0
    ) -> pb.GetNotificationsCamt054Response:
        """A camt.054.001.08 of the credits and debits booked after
        `after_sequence`; pull again with the next_after_sequence returned."""
        request = pb.GetNotificationsCamt054Request(
            currency=currency, after_sequence=after_sequence, page_size=page_size
        )
        return await self.call(self.iso20022.GetNotificationsCamt054, request)

    async def submit_pacs004(self, document: bytes) -> pb.SubmitPacs004Response:
        """Return transfers with a pacs.004.001.09 (as their creditor); the
        answer holds the pacs.002.001.10. Reason FOCR accepts an open recall."""
        return await self.call(
            self.iso20022.SubmitPacs004, pb.SubmitPacs004Request(document=document)
        )

    async def returns(
        self, original_uetrs: Sequence[str] = (), limit: int = 0
    ) -> pb.GetReturnsPacs004Response:
        """A pacs.004.001.09 of the returns the bank received (as the
        original's debtor): of `original_uetrs`, else the newest `limit`."""
        request = pb.GetReturnsPacs004Request(original_uetrs=list(original_uetrs), limit=limit)
        return await self.call(self.iso20022.GetReturnsPacs004, request)

    async def submit_camt056(self, document: bytes) -> pb.SubmitCamt056Response:
        """Recall transfers with a camt.056.001.08 (as their debtor); the
        answer holds the hub's camt.029.001.09."""
        return await self.call(
            self.iso20022.SubmitCamt056, pb.SubmitCamt056Request(document=document)
        )

    async def submit_camt029(self, document: bytes) -> pb.SubmitCamt029Response:
        """Reject recalls with a camt.029.001.09 (as the creditor); the
        answer holds the hub's camt.029.001.09."""
        return await self.call(
            self.iso20022.SubmitCamt029, pb.SubmitCamt029Request(document=document)
        )


# The human form of the answers is the document itself, as sent: a script
# can write it to a file and read it as the pacs.002 (--json adds `replayed`).
def _document(document: bytes) -> str:
    return document.decode("utf-8").rstrip("\n") or "(no document)"


@renderer(pb.SubmitPacs008Response)
def submitted(response: pb.SubmitPacs008Response, _currency: str = "") -> str:
    return _document(response.document)


@renderer(pb.GetStatusPacs028Response)
def status(response: pb.GetStatusPacs028Response, _currency: str = "") -> str:
    return _document(response.document)


@renderer(pb.GetStatementCamt053Response)
def statement(response: pb.GetStatementCamt053Response, _currency: str = "") -> str:
    return _document(response.document)


@renderer(pb.GetNotificationsCamt054Response)
def notifications(response: pb.GetNotificationsCamt054Response, _currency: str = "") -> str:
    return _document(response.document)


@renderer(pb.SubmitPacs004Response)
def returned(response: pb.SubmitPacs004Response, _currency: str = "") -> str:
    return _document(response.document)


@renderer(pb.GetReturnsPacs004Response)
def returns(response: pb.GetReturnsPacs004Response, _currency: str = "") -> str:
    return _document(response.document)


@renderer(pb.SubmitCamt056Response)
def recalled(response: pb.SubmitCamt056Response, _currency: str = "") -> str:
    return _document(response.document)


@renderer(pb.SubmitCamt029Response)
def recall_answered(response: pb.SubmitCamt029Response, _currency: str = "") -> str:
    return _document(response.document)
