"""Returns and recalls in ISO 20022 through a real gRPC hub, on SQLite and
PostgreSQL: a pacs.008 cleared, then returned by pacs.004 (pacs.002
answer), recalled by camt.056 and rejected by camt.029 (the hub's camt.029
answers), a recall accepted by a FOCR return, the debtor pulling its
returns as a pacs.004; every answer valid against its official XSD;
duplicates answered as the first time with nothing done twice; bad
documents refused with nothing stored."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.errors import HubError
from remitnet.clients.iso20022 import Iso20022Client
from remitnet.services.domain.errors import Reason
from tests.iso20022_lifecycle_samples import (
    Ans,
    Cxl,
    Rtr,
    camt029,
    camt056,
    pacs004,
    resolution,
    returns,
)
from tests.iso20022_samples import Tx, pacs008, statuses
from tests.support import HubHandle, counts, start_hub

US, PH = "BANKUS01", "BANKPH01"
US_BIC, PH_BIC = "BANKUS33", "BANKPHMM"


@pytest.fixture
async def iso_hub(db_url: str) -> AsyncIterator[HubHandle]:
    hub = await start_hub(db_url)
    try:
        op = hub.operator
        await op.create_bank(US, "US Bank", "us-east1", ["USD"], bic=US_BIC)
        await op.create_bank(PH, "PH Bank", "asia-southeast1", ["USD"], bic=PH_BIC)
        await op.deposit(US, "USD", 100_000)
        await op.deposit(PH, "USD", 100_000)
        yield hub
    finally:
        await hub.stop()


async def _transfer(hub: HubHandle, tid: str) -> cpb.Transfer:
    bank = hub.bank(US)
    answer = await bank.call(bank.clearing.GetTransfer, cpb.GetTransferRequest(transfer_id=tid))
    return answer.transfer


async def test_returns_and_recalls_end_to_end(iso_hub: HubHandle) -> None:
    us, ph = Iso20022Client(US, iso_hub.config), Iso20022Client(PH, iso_hub.config)
    txs = [Tx(PH_BIC, "125.50"), Tx(PH_BIC, "3.00"), Tx(PH_BIC, "7.00")]
    sent = await us.submit_pacs008(pacs008(txs, instructing_bic=US_BIC))
    assert [s.status for s in statuses(sent.document)] == ["ACSP"] * 3
    one, two, three = (t.uetr for t in txs)

    # PH returns the first (and tries a wrong amount on the third).
    back = Rtr(one, "125.50", reason="AC04")
    document = pacs004([back, Rtr(three, "6.00")], instructing_bic=PH_BIC)
    answer = await ph.submit_pacs004(document)
    got = statuses(answer.document)  # valid against the pacs.002.001.10 XSD
    assert [(s.uetr, s.status, s.reason) for s in got] == [
        (one, "ACSP", ""),
        (three, "RJCT", "AM12"),
    ]
    original = await _transfer(iso_hub, one)
    assert original.returned_by_transfer_id
    before = counts(iso_hub.db)
    again = await ph.submit_pacs004(document)
    assert again.replayed and again.document == answer.document
    assert counts(iso_hub.db) == before

    # US recalls the second and third; PH rejects the third, returns the second (FOCR).
    ask = camt056([Cxl(two), Cxl(three, reason="FRAD"), Cxl(one)], assigner_bic=US_BIC)
    recalled = await us.submit_camt056(ask)
    conf, rows = resolution(recalled.document)  # valid against the camt.029.001.09 XSD
    assert conf == "PDCR"
    assert [(r.status, r.reason) for r in rows] == [("PDCR", ""), ("PDCR", ""), ("RJCR", "ARDT")]
    assert rows[2].info.startswith("ALREADY_RETURNED")
    assert (await us.submit_camt056(ask)).replayed
    answered = await ph.submit_camt029(
        camt029(
            [Ans(three, reason="LEGL"), Ans(two, status="ACCR", reason="")], assigner_bic=PH_BIC
        )
    )
    conf, rows = resolution(answered.document)
    assert [(r.status, r.reason) for r in rows] == [("RJCR", "LEGL"), ("", "AGNT")]
    assert (await _transfer(iso_hub, three)).recall.state == cpb.RECALL_STATE_REJECTED
    focr = Rtr(two, "3.00", reason="FOCR")
    accepted = await ph.submit_pacs004(pacs004([focr], msg_id="RTR-2", instructing_bic=PH_BIC))
    assert statuses(accepted.document)[0].status == "ACSP"
    assert (await _transfer(iso_hub, two)).recall.state == cpb.RECALL_STATE_ACCEPTED

    # US pulls what was returned to it, as a pacs.004 (valid against its XSD).
    pulled = returns((await us.returns()).document)
    assert sorted((r.original, r.amount, r.reason) for r in pulled) == sorted(
        [(one, "125.50", "AC04"), (two, "3.00", "FOCR")]
    )
    assert {(r.returning_bic, r.receiving_bic) for r in pulled} == {(PH_BIC, US_BIC)}
    assert [r.original for r in returns((await us.returns([two, three])).document)] == [two]
    assert returns((await ph.returns()).document) == []
    await us.close()
    await ph.close()


@pytest.mark.parametrize(
    ("call", "document", "reason"),
    [
        ("submit_pacs004", pacs004([Rtr("8a562c67-ca16-48ba-b074-65581be6f011", "1.00")],
                                   instructing_bic=US_BIC), Reason.NOT_OWN_BIC),
        ("submit_pacs004", b"<Document><oops></Document>", Reason.MALFORMED_XML),
        ("submit_pacs004", pacs004([Rtr("nope", "1.00")], instructing_bic=PH_BIC),
         Reason.SCHEMA_VIOLATION),
        ("submit_camt056", camt056([Cxl("8a562c67-ca16-48ba-b074-65581be6f011")],
                                   assigner_bic=US_BIC), Reason.NOT_OWN_BIC),
        ("submit_camt029", pacs004([], instructing_bic=PH_BIC), Reason.UNSUPPORTED_MESSAGE),
    ],
)  # fmt: skip
async def test_bad_documents_store_nothing(
    iso_hub: HubHandle, call: str, document: bytes, reason: str
) -> None:
    ph = Iso20022Client(PH, iso_hub.config)
    before = counts(iso_hub.db)
    with pytest.raises(HubError) as info:
        await getattr(ph, call)(document)
    assert info.value.reason == reason, info.value
    expected = (
        grpc.StatusCode.PERMISSION_DENIED
        if reason == Reason.NOT_OWN_BIC
        else grpc.StatusCode.INVALID_ARGUMENT
    )
    assert info.value.code is expected
    assert counts(iso_hub.db) == before
    await ph.close()
