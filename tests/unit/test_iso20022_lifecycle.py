"""Returns and recalls in ISO 20022 on the in-memory unit of work: the
readers, the mapping onto the lifecycle's use cases (pacs.004 ->
return_transfers, camt.056 -> recall_transfer, camt.029 -> reject_recall),
per-transaction refusals with their ISO codes, duplicates answered from the
message log, message-level refusals storing nothing, and every document
the hub builds valid against its official XSD."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from remitnet.services.adapters.iso20022 import camt029, camt056, pacs002, pacs004
from remitnet.services.domain import iso_status
from remitnet.services.domain.errors import (
    AlreadyExists,
    InvalidArgument,
    PermissionDenied,
    Reason,
    RemitnetError,
)
from remitnet.services.domain.iso_lifecycle import (
    ReturnNotice,
    ReturnsReport,
    decimal_text,
    id_from_max35,
    max35_id,
)
from remitnet.services.domain.lifecycle import RECALL_REJECT_REASONS, RecallState
from remitnet.services.domain.model import StoredTransfer
from remitnet.services.domain.netting import Accepted
from remitnet.services.service_layer import iso_lifecycle as uc
from remitnet.services.service_layer.clearing import commit_batch
from remitnet.services.service_layer.iso20022 import Answer
from remitnet.services.service_layer.participants import create_bank
from tests.fakes import FakeTransactions, instruction, seed_funds
from tests.iso20022_lifecycle_samples import (
    Ans,
    Cxl,
    Rtr,
    hex_id,
    resolution,
    returns,
)
from tests.iso20022_lifecycle_samples import (
    camt029 as camt029_doc,
)
from tests.iso20022_lifecycle_samples import (
    camt056 as camt056_doc,
)
from tests.iso20022_lifecycle_samples import (
    pacs004 as pacs004_doc,
)
from tests.iso20022_samples import statuses

US, PH = "BANKUS01", "BANKPH01"
US_BIC, PH_BIC = "BANKUS33", "BANKPHMM"
ORIGINAL = "8a562c67-ca16-48ba-b074-65581be6f011"


@pytest.fixture
def db() -> FakeTransactions:
    db = FakeTransactions()
    create_bank(db, US, "US", "us-east1", ["USD", "JPY"], bic=US_BIC)
    create_bank(db, PH, "PH", "us-east1", ["USD", "JPY"], bic=PH_BIC)
    seed_funds(db, US, {"USD": 100_000})
    seed_funds(db, PH, {"USD": 100_000})
    return db


def _paid(db: FakeTransactions, amount: int = 12_550) -> StoredTransfer:
    [outcome] = commit_batch(db, [instruction(US, PH, "USD", amount)]).result.outcomes
    assert isinstance(outcome, Accepted)
    return outcome.transfer


def _return(db: FakeTransactions, document: bytes, caller: str = PH) -> Answer:
    message = pacs004.read(document)
    digest = hashlib.sha256(document).hexdigest()
    answer, _ = uc.submit_pacs004(db, caller, message, digest, pacs002.build)
    return answer


def _recall(db: FakeTransactions, document: bytes, caller: str = US) -> Answer:
    message = camt056.read(document)
    digest = hashlib.sha256(document).hexdigest()
    answer, _ = uc.submit_camt056(db, caller, message, digest, camt029.build)
    return answer


def _answer(db: FakeTransactions, document: bytes, caller: str = PH) -> Answer:
    message = camt029.read(document)
    digest = hashlib.sha256(document).hexdigest()
    answer, _, _ = uc.submit_camt029(db, caller, message, digest, camt029.build)
    return answer


def test_ids_of_max35_text() -> None:
    raw = hex_id()
    assert max35_id(id_from_max35(raw, "RtrId")) == raw
    for bad, reason in [("", Reason.MISSING_FIELD), ("x" * 32, Reason.INVALID_ARGUMENT),
                        ("0" * 32, Reason.INVALID_ARGUMENT)]:  # fmt: skip
        with pytest.raises(InvalidArgument) as info:
            id_from_max35(bad, "RtrId")
        assert info.value.reason == reason
    assert decimal_text(12_550, "USD") == "125.50"
    assert decimal_text(100, "JPY") == "100"


def test_the_readers_take_what_the_schema_checked() -> None:
    original = "8a562c67-ca16-48ba-b074-65581be6f011"
    message = pacs004.read(
        pacs004_doc([Rtr(original, "1.50", info="closed")], instructing_bic=PH_BIC)
    )
    (r,) = message.returns
    assert (r.ref.uetr, r.amount, r.currency, r.reason, r.info) == (
        original,
        "1.50",
        "USD",
        "AC04",
        "closed",
    )
    assert (r.instructing_bic, message.declared_count, r.path) == (
        PH_BIC,
        "1",
        "/Document/PmtRtr/TxInf[1]",
    )
    recall = camt056.read(camt056_doc([Cxl(original, info="twice")], assigner_bic=US_BIC))
    assert (recall.msg_id, recall.assigner_bic, recall.recalls[0].reason) == (
        "CXL-1",
        US_BIC,
        "DUPL",
    )
    assert recall.recalls[0].info == "twice"
    answer = camt029.read(camt029_doc([Ans(original)], assigner_bic=PH_BIC))
    assert (answer.answers[0].status, answer.answers[0].reason) == ("RJCR", "NOAS")


def test_a_pacs004_returns_through_the_lifecycle_per_transaction(db: FakeTransactions) -> None:
    first, second, third = _paid(db), _paid(db, 500), _paid(db, 700)
    txs = [
        Rtr(first.transfer_id, "125.50", reason="AC04"),
        Rtr(second.transfer_id, "4.00"),  # not what PH received: AM12
        Rtr(third.transfer_id, "7.00", reason="ZZZZ"),  # no return reason: FF01
        Rtr(third.transfer_id, "7.00", return_id="not-hex"),  # RtrId: FF01
        Rtr(third.transfer_id, "7.00", reason=""),  # no reason: CH21
        Rtr(first.transfer_id, "125.50"),  # twice in one message: AM05
        Rtr("00000000-0000-4000-8000-000000000001", "1.00"),  # none: AG09
        Rtr(second.transfer_id, "5.001"),  # three decimals: CH20
    ]
    document = pacs004_doc(txs, instructing_bic=PH_BIC)
    answer = _return(db, document)
    got = statuses(answer.document)  # valid against the pacs.002.001.10 XSD
    assert [(s.uetr, s.status, s.reason) for s in got] == [
        (first.transfer_id, "ACSP", ""),
        (second.transfer_id, "RJCT", "AM12"),
        (third.transfer_id, "RJCT", "FF01"),
        (third.transfer_id, "RJCT", "FF01"),
        (third.transfer_id, "RJCT", "CH21"),
        (first.transfer_id, "RJCT", "AM05"),
        ("00000000-0000-4000-8000-000000000001", "RJCT", "AG09"),
        (second.transfer_id, "RJCT", "CH20"),
    ]
    assert got[1].info.startswith("INVALID_AMOUNT")
    back = db.store.transfers[id_from_max35(txs[0].return_id, "RtrId")]
    assert (back.debtor, back.creditor, back.amount, back.return_of, back.reason) == (
        PH,
        US,
        12_550,
        first.transfer_id,
        "AC04",
    )
    assert db.store.transfers[first.transfer_id].returned_by == back.transfer_id
    # The same document again: the first answer, nothing returned twice.
    stored = len(db.store.transfers)
    again = _return(db, document)
    assert again.replayed and again.document == answer.document
    assert len(db.store.transfers) == stored
    with pytest.raises(AlreadyExists) as dup:
        _return(db, pacs004_doc(txs[:1], instructing_bic=PH_BIC))
    assert dup.value.reason == Reason.DUPLICATE_WITH_DIFFERENT_CONTENT
    # The debtor cannot return what it sent.
    fourth = _paid(db, 100)
    theirs = _return(db, pacs004_doc([Rtr(fourth.transfer_id, "1.00")], msg_id="US-1",
                                     instructing_bic=US_BIC), caller=US)  # fmt: skip
    assert [(s.status, s.reason) for s in statuses(theirs.document)] == [("RJCT", "AGNT")]


@pytest.mark.parametrize(
    ("document", "error", "reason"),
    [
        (pacs004_doc([Rtr(ORIGINAL, "1.00")], instructing_bic="OTHRUS33"), PermissionDenied,
         Reason.NOT_OWN_BIC),
        (pacs004_doc([Rtr(ORIGINAL, "1.00")], instructing_bic=PH_BIC, declared=2),
         InvalidArgument, Reason.INVALID_ARGUMENT),
        (pacs004_doc([], instructing_bic=PH_BIC), InvalidArgument, Reason.INVALID_ARGUMENT),
        (pacs004_doc([], instructing_bic=PH_BIC).replace(b"pacs.004.001.09", b"pacs.004.001.10"),
         InvalidArgument, Reason.UNSUPPORTED_MESSAGE),
        (pacs004_doc([Rtr("not-a-uuid", "1.00")], instructing_bic=PH_BIC), InvalidArgument,
         Reason.SCHEMA_VIOLATION),
    ],
)  # fmt: skip
def test_bad_pacs004s_store_nothing(
    db: FakeTransactions, document: bytes, error: type[RemitnetError], reason: str
) -> None:
    _paid(db)
    before = (len(db.store.transfers), len(db.store.iso_messages))
    with pytest.raises(error) as info:
        _return(db, document)
    assert info.value.reason == reason
    assert (len(db.store.transfers), len(db.store.iso_messages)) == before


def test_a_recall_its_rejection_and_a_recall_accepted_by_a_focr_return(
    db: FakeTransactions,
) -> None:
    one, two = _paid(db), _paid(db, 300)
    ask = camt056_doc(
        [Cxl(one.transfer_id), Cxl(two.transfer_id, reason="FRAD"), Cxl(one.transfer_id),
         Cxl(two.transfer_id, reason="XXXX")],
        assigner_bic=US_BIC,
    )  # fmt: skip
    answer = _recall(db, ask)
    conf, got = resolution(answer.document)  # valid against the camt.029.001.09 XSD
    assert conf == "PDCR"
    assert [(s.uetr, s.status, s.reason) for s in got] == [
        (one.transfer_id, "PDCR", ""),
        (two.transfer_id, "PDCR", ""),
        (one.transfer_id, "RJCR", "AGNT"),  # another recall of it: RECALL_EXISTS
        (two.transfer_id, "RJCR", "AGNT"),  # an unknown reason code
    ]
    assert got[2].info.startswith("RECALL_EXISTS")
    assert db.store.recalls[one.transfer_id].state is RecallState.REQUESTED
    again = _recall(db, ask)
    assert again.replayed and again.document == answer.document

    # The creditor rejects the first; accepting by camt.029 is refused.
    reply = camt029_doc(
        [Ans(one.transfer_id, reason="NOAS"), Ans(two.transfer_id, status="ACCR", reason=""),
         Ans(two.transfer_id, reason="ZZZZ")],
        assigner_bic=PH_BIC,
    )  # fmt: skip
    conf, got = resolution(_answer(db, reply).document)
    assert conf == "RJCR"
    assert [(s.status, s.reason) for s in got] == [("RJCR", "NOAS"), ("", "AGNT"), ("", "AGNT")]
    assert "pacs.004" in got[1].info and got[2].info.startswith("UNKNOWN_REASON_CODE")
    assert db.store.recalls[one.transfer_id].state is RecallState.REJECTED
    assert db.store.recalls[two.transfer_id].state is RecallState.REQUESTED

    # A return with FOCR answers the second: ACCEPTED.
    rtr = Rtr(two.transfer_id, "3.00", reason="FOCR")
    returned = _return(db, pacs004_doc([rtr], msg_id="RTR-2", instructing_bic=PH_BIC))
    assert statuses(returned.document)[0].status == "ACSP"
    recall = db.store.recalls[two.transfer_id]
    assert recall.state is RecallState.ACCEPTED
    assert recall.return_id == id_from_max35(rtr.return_id, "RtrId")
    # Recalling it again now: refused ALREADY_RETURNED -> ARDT; none: NOOR.
    late = camt056_doc(
        [Cxl(two.transfer_id), Cxl("00000000-0000-4000-8000-000000000002")],
        msg_id="CXL-2",
        assigner_bic=US_BIC,
    )
    conf, got = resolution(_recall(db, late).document)
    assert conf == "RJCR"
    assert [(s.status, s.reason) for s in got] == [("RJCR", "AGNT"), ("RJCR", "NOOR")]
    assert got[0].info.startswith("RECALL_EXISTS")


def test_bad_recall_documents_store_nothing(db: FakeTransactions) -> None:
    t = _paid(db)
    for document, error, reason in [
        (camt056_doc([Cxl(t.transfer_id)], assigner_bic=PH_BIC), PermissionDenied,
         Reason.NOT_OWN_BIC),
        (camt056_doc([], assigner_bic=US_BIC), InvalidArgument, Reason.INVALID_ARGUMENT),
    ]:  # fmt: skip
        with pytest.raises(error) as info:
            _recall(db, document)
        assert info.value.reason == reason
    with pytest.raises(PermissionDenied):
        _answer(db, camt029_doc([Ans(t.transfer_id)], assigner_bic=US_BIC))
    assert len(db.store.recalls) == 0 and len(db.store.iso_messages) == 0


def test_the_debtor_pulls_the_returns_it_received(db: FakeTransactions) -> None:
    one, two = _paid(db), _paid(db, 300)
    rtr = Rtr(one.transfer_id, "125.50", reason="CUST", info="customer asked")
    _return(db, pacs004_doc([rtr], instructing_bic=PH_BIC))
    for asked in ([one.transfer_id, two.transfer_id], []):
        got = returns(uc.returns_received(db, US, asked, 0, pacs004.build))  # XSD-checked
        assert got == [
            type(got[0])(
                id_from_max35(rtr.return_id, "RtrId"),
                one.transfer_id,
                "125.50",
                "USD",
                "CUST",
                PH_BIC,
                US_BIC,
            )
        ]
    # The returning bank received no return; a bank not the debtor sees none.
    assert returns(uc.returns_received(db, PH, [], 0, pacs004.build)) == []
    assert returns(uc.returns_received(db, PH, [one.transfer_id], 0, pacs004.build)) == []
    with pytest.raises(InvalidArgument):
        uc.returns_received(db, US, [], 5_000, pacs004.build)


def test_the_builders_are_valid_against_their_schemas() -> None:
    notice = ReturnNotice(
        hex_id()[:8] + "-0000-4000-8000-000000000000",
        "8a562c67-ca16-48ba-b074-65581be6f011",
        "10.00",
        "USD",
        "10.00",
        "USD",
        "AC04",
        PH_BIC,
        US_BIC,
        datetime.now(UTC),
        "x" * 300,
    )
    empty = returns(pacs004.build(ReturnsReport("M1", datetime.now(UTC), ())))
    assert empty == []
    assert len(returns(pacs004.build(ReturnsReport("M2", datetime.now(UTC), (notice,))))) == 1


def test_recall_codes_are_cancellation_rejection_codes() -> None:
    assert set(iso_status.RECALL_REFUSALS.values()) <= set(RECALL_REJECT_REASONS)
    assert iso_status.RECALL_UNMAPPED in RECALL_REJECT_REASONS
    assert iso_status.RECALL_EXPIRED_CODE in RECALL_REJECT_REASONS
    assert iso_status.recall_status(RecallState.REQUESTED, None) == ("PDCR", "")
    assert iso_status.recall_status(RecallState.ACCEPTED, None) == ("ACCR", "")
    assert iso_status.recall_status(RecallState.REJECTED, "LEGL") == ("RJCR", "LEGL")
    assert iso_status.recall_status(RecallState.EXPIRED, None) == ("RJCR", "NOAS")
