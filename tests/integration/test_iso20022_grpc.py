"""The ISO 20022 edge through a real gRPC hub, on SQLite and PostgreSQL:
banks onboarded with BICs, a multi-transaction pacs.008 whose refused
transactions are RJCTs while the others clear, pacs.002 answers valid
against the official XSD, duplicate MsgIds answered as the first time with
nothing cleared twice, pacs.028 status requests, and bad documents refused
with their reason and nothing stored."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.errors import HubError
from remitnet.clients.iso20022 import Iso20022Client
from remitnet.participants.v1 import participants_pb2 as ppb
from remitnet.services.adapters.db.schema import iso_messages
from remitnet.services.domain.errors import Reason
from tests.iso20022_samples import Tx, pacs008, statuses, uetr
from tests.support import HubHandle, counts, start_hub

US, PH, NOBIC = "BANKUS01", "BANKPH01", "NOBIC01"
US_BIC, PH_BIC = "BANKUS33", "BANKPHMM"
FUNDS = 100_000  # minor units
PROVIDER = ppb.PARTICIPANT_ROLE_FX_PROVIDER


@pytest.fixture
async def iso_hub(db_url: str) -> AsyncIterator[HubHandle]:
    hub = await start_hub(db_url)
    try:
        op = hub.operator
        await op.create_bank(US, "US Bank", "us-east1", ["USD", "JPY"], bic=US_BIC)
        await op.create_bank(PH, "PH Bank", "asia-southeast1", ["USD", "JPY"], bic=PH_BIC + "XXX")
        await op.create_bank(NOBIC, "No BIC", "us-east1", ["USD"])
        await op.deposit(US, "USD", FUNDS)
        yield hub
    finally:
        await hub.stop()


async def _transfer(hub: HubHandle, tid: str) -> cpb.Transfer:
    bank = hub.bank(US)
    answer = await bank.call(bank.clearing.GetTransfer, cpb.GetTransferRequest(transfer_id=tid))
    return answer.transfer


async def _client(hub: HubHandle, code: str = US) -> Iso20022Client:
    return Iso20022Client(code, hub.config)


def _stored_messages(hub: HubHandle) -> int:
    with hub.db.engine.connect() as conn:
        return len(conn.execute(iso_messages.select()).all())


async def test_bics_are_onboarded_unique_and_shown(iso_hub: HubHandle) -> None:
    op = iso_hub.operator
    assert (await op.get_bank(US)).bic == US_BIC
    assert (await op.get_bank(PH)).bic == PH_BIC  # the XXX branch is the BIC8
    assert (await op.get_bank(NOBIC)).bic == ""
    with pytest.raises(HubError) as taken:
        await op.create_bank("OTHER01", "Other", "us-east1", ["USD"], bic=US_BIC)
    assert taken.value.reason == Reason.BIC_EXISTS
    for bad in ["BANK US33", "bankus33", "BANKUS3", "1ANKUS33", "BANKUS33XX"]:
        with pytest.raises(HubError) as invalid:
            await op.create_bank("OTHER02", "Other", "us-east1", ["USD"], bic=bad)
        assert invalid.value.reason == Reason.INVALID_BIC
        assert invalid.value.code is grpc.StatusCode.INVALID_ARGUMENT
    # The same onboarding again is a no-op; another BIC for the code is not.
    await op.create_bank(US, "US Bank", "us-east1", ["USD", "JPY"], bic=US_BIC)
    with pytest.raises(HubError) as other:
        await op.create_bank(US, "US Bank", "us-east1", ["USD"], bic="BANKUS44")
    assert other.value.reason == Reason.BANK_EXISTS


async def test_a_pacs008_clears_per_transaction(iso_hub: HubHandle) -> None:
    client = await _client(iso_hub)
    txs = [
        Tx(PH_BIC, "125.50", remittance=("invoice 7", "thanks")),
        Tx(PH_BIC + "XXX", "1000.00"),  # more than US holds: AM04
        Tx("UNKNUS33", "1.00"),  # no participant has it: CNOR
        Tx(PH_BIC, "1.005"),  # three decimals in USD: CH20
        Tx(PH_BIC, "2.00", currency="XYZ"),  # unknown currency: AM11
        Tx(PH_BIC, "10.00"),
    ]
    answer = await client.submit_pacs008(pacs008(txs, instructing_bic=US_BIC))
    assert not answer.replayed
    got = statuses(answer.document)  # valid against the pacs.002.001.10 XSD
    assert [(s.uetr, s.status, s.reason) for s in got] == [
        (txs[0].uetr, "ACSP", ""),
        (txs[1].uetr, "RJCT", "AM04"),
        (txs[2].uetr, "RJCT", "CNOR"),
        (txs[3].uetr, "RJCT", "CH20"),
        (txs[4].uetr, "RJCT", "AM11"),
        (txs[5].uetr, "ACSP", ""),
    ]
    assert got[1].info.startswith("INSUFFICIENT_LIQUIDITY")
    first = await _transfer(iso_hub, txs[0].uetr)
    assert (first.creditor_bank, first.amount.minor_units) == (PH, 12550)
    assert first.remittance_info == "invoice 7 thanks"
    assert (await _transfer(iso_hub, txs[5].uetr)).amount.minor_units == 1000

    # The same message again: the first answer, nothing cleared twice.
    before = counts(iso_hub.db)
    again = await client.submit_pacs008(pacs008(txs, instructing_bic=US_BIC))
    assert again.replayed and again.document == answer.document
    assert counts(iso_hub.db) == before
    # Its MsgId with other content is refused.
    with pytest.raises(HubError) as dup:
        await client.submit_pacs008(pacs008(txs[:1], instructing_bic=US_BIC))
    assert dup.value.reason == Reason.DUPLICATE_WITH_DIFFERENT_CONTENT
    assert dup.value.code is grpc.StatusCode.ALREADY_EXISTS

    # A status request (pacs.028) answers the current statuses.
    stranger = uetr()
    status = await client.status([txs[0].uetr, txs[1].uetr, stranger])
    assert [(s.status, s.reason) for s in statuses(status.document)] == [
        ("ACSP", ""),
        ("RJCT", "AG09"),  # refused, so never stored
        ("RJCT", "AG09"),
    ]
    # The creditor sees it too; a third bank does not.
    ph = await _client(iso_hub, PH)
    assert statuses((await ph.status([txs[0].uetr])).document)[0].status == "ACSP"
    await iso_hub.operator.set_confirmation_required(PH)
    pending = Tx(PH_BIC, "5.00")
    answer = await client.submit_pacs008(pacs008([pending], msg_id="MSG-2", instructing_bic=US_BIC))
    assert statuses(answer.document)[0].status == "PDNG"
    closed = (await iso_hub.operator.close_cycle("USD")).closed
    await iso_hub.operator.settle_cycle(closed.cycle_id)
    status = await client.status([txs[0].uetr, pending.uetr])
    assert [s.status for s in statuses(status.document)] == ["ACCC", "PDNG"]
    await client.close()
    await ph.close()


BAD_DOCUMENTS = {
    "malformed": (b"<Document><oops></Document>", Reason.MALFORMED_XML),
    "xml bomb": (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08">&b;</Document>',
        Reason.FORBIDDEN_XML,
    ),
    "external entity": (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08">&x;</Document>',
        Reason.FORBIDDEN_XML,
    ),
    "oversized": (b"<a/>" + b" " * (3 * 1024 * 1024), Reason.DOCUMENT_TOO_LARGE),
    "wrong version": (
        pacs008([Tx(PH_BIC, "1.00")], instructing_bic=US_BIC).replace(
            b"pacs.008.001.08", b"pacs.008.001.09"
        ),
        Reason.UNSUPPORTED_MESSAGE,
    ),
    "not a uuid v4": (
        pacs008(
            [Tx(PH_BIC, "1.00", uetr="c232ab00-9414-11ec-b3c8-9f6bdeced846")],
            instructing_bic=US_BIC,
        ),
        Reason.SCHEMA_VIOLATION,
    ),
    "no uetr": (
        pacs008([Tx(PH_BIC, "1.00", uetr="")], instructing_bic=US_BIC),
        Reason.MISSING_FIELD,
    ),
    "count": (
        pacs008([Tx(PH_BIC, "1.00")], instructing_bic=US_BIC, declared=2),
        Reason.INVALID_ARGUMENT,
    ),
    "not the caller's bic": (
        pacs008([Tx(PH_BIC, "1.00")], instructing_bic="OTHRUS33"),
        Reason.NOT_OWN_BIC,
    ),
    "another's bic per transaction": (
        pacs008(
            [Tx(PH_BIC, "1.00"), Tx(PH_BIC, "1.00", instructing_bic=PH_BIC)], instructing_bic=US_BIC
        ),
        Reason.NOT_OWN_BIC,
    ),
}


@pytest.mark.parametrize("name", list(BAD_DOCUMENTS))
async def test_bad_documents_are_refused_and_store_nothing(iso_hub: HubHandle, name: str) -> None:
    document, reason = BAD_DOCUMENTS[name]
    client = await _client(iso_hub)
    before = counts(iso_hub.db)
    with pytest.raises(HubError) as info:
        await client.submit_pacs008(document)
    assert info.value.reason == reason, info.value
    expected = (
        grpc.StatusCode.PERMISSION_DENIED
        if reason == Reason.NOT_OWN_BIC
        else grpc.StatusCode.INVALID_ARGUMENT
    )
    assert info.value.code is expected
    assert counts(iso_hub.db) == before
    assert _stored_messages(iso_hub) == 0
    await client.close()


async def test_a_bank_without_a_bic_and_the_operator_are_refused(iso_hub: HubHandle) -> None:
    client = await _client(iso_hub, NOBIC)
    with pytest.raises(HubError) as info:
        await client.submit_pacs008(pacs008([Tx(PH_BIC, "1.00")], instructing_bic=US_BIC))
    assert info.value.reason == Reason.BANK_HAS_NO_BIC
    assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(HubError) as status:
        await client.status([uetr()])
    assert status.value.reason == Reason.BANK_HAS_NO_BIC
    await client.close()


async def test_a_pacs008_keeps_each_transactions_purpose(iso_hub: HubHandle) -> None:
    client = await _client(iso_hub)
    txs = [
        Tx(PH_BIC, "1.00", purpose="SALA"),
        Tx(PH_BIC, "2.00"),
        Tx(PH_BIC, "3.00", purpose_proprietary="BILATERAL"),  # ignored
        Tx(PH_BIC, "4.00", purpose="sala"),  # schema-valid, not a code: RR10
    ]
    answer = await client.submit_pacs008(pacs008(txs, msg_id="MSG-P", instructing_bic=US_BIC))
    assert [(s.status, s.reason) for s in statuses(answer.document)] == [
        ("ACSP", ""),
        ("ACSP", ""),
        ("ACSP", ""),
        ("RJCT", "RR10"),
    ]
    assert [(await _transfer(iso_hub, tx.uetr)).purpose for tx in txs[:3]] == ["SALA", "", ""]
    # The creditor reads it too.
    ph = iso_hub.bank(PH)
    got = await ph.call(ph.clearing.GetTransfer, cpb.GetTransferRequest(transfer_id=txs[0].uetr))
    assert got.transfer.purpose == "SALA"
    await client.close()


async def test_a_cross_currency_pacs008_clears_at_its_quote(hub: HubHandle) -> None:
    """USD -> PHP through a funded FX provider: the quote is named in
    RmtInf/Strd/AddtlRmtInf, InstdAmt and XchgRate checked against it."""
    op = hub.operator
    await op.create_bank(US, "US Bank", "us-east1", ["USD"], bic=US_BIC)
    await op.create_bank(PH, "PH Bank", "asia-southeast1", ["PHP"], bic=PH_BIC)
    await op.deposit(US, "USD", 10**9)
    fxp = "FXPA0001"
    await op.create_bank(fxp, "FX A", "us-east1", ["USD", "PHP"], roles=[PROVIDER])
    await op.deposit(fxp, "PHP", 10**10)
    await hub.provider(fxp).publish_rates({("USD", "PHP"): "56.10"}, spreads={("USD", "PHP"): 30})
    us = hub.bank(US)
    quotes = [await us.quote("USD", "PHP", source_amount=100_000) for _ in range(3)]
    q = quotes[0]
    assert (q.provider, q.rate, q.target_amount.minor_units) == (fxp, "55.9317", 5_593_170)
    txs = [
        Tx(PH_BIC, "1000.00", quote_id=q.quote_id, instructed=("55931.70", "PHP"),
           xchg_rate="55.9317", remittance=("fx",)),
        Tx(PH_BIC, "1000.00", quote_id=quotes[1].quote_id, instructed=("55931.71", "PHP")),
        Tx(PH_BIC, "999.00", quote_id=quotes[2].quote_id),  # not what it sells
        Tx(PH_BIC, "1000.00", quote_id=q.quote_id),  # used above, in this message
        Tx(PH_BIC, "1000.00", quote_id=uetr()),  # no such quote
    ]  # fmt: skip
    client = await _client(hub)
    answer = await client.submit_pacs008(pacs008(txs, instructing_bic=US_BIC))
    got = statuses(answer.document)  # valid against the pacs.002.001.10 XSD
    assert [(s.status, s.reason) for s in got] == [
        ("ACSP", ""),
        ("RJCT", "AM09"),
        ("RJCT", "AM09"),
        ("RJCT", "DUPL"),
        ("RJCT", "AG01"),
    ]
    assert got[1].info.startswith("QUOTE_MISMATCH")
    assert got[2].info.startswith("QUOTE_MISMATCH")
    stored = await _transfer(hub, txs[0].uetr)
    assert stored.quote_id == q.quote_id
    assert (stored.amount.currency, stored.amount.minor_units) == ("USD", 100_000)
    assert (stored.creditor_amount.currency, stored.creditor_amount.minor_units) == (
        "PHP",
        5_593_170,
    )
    # A refused transaction used nothing: its quote still pays, as a
    # SubmitTransfers or a pacs.008 that gets it right.
    retry = Tx(PH_BIC, "1000.00", quote_id=quotes[1].quote_id, instructed=("55931.70", "PHP"))
    again = await client.submit_pacs008(pacs008([retry], msg_id="MSG-FX2", instructing_bic=US_BIC))
    assert [(s.status, s.reason) for s in statuses(again.document)] == [("ACSP", "")]
    assert (await _transfer(hub, retry.uetr)).creditor_amount.minor_units == 5_593_170
