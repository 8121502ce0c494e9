"""The ISO 20022 use cases on the in-memory unit of work, with a stand-in
for the netting engine: message-level refusals store nothing and reach no
engine; business-rule failures are per-transaction RJCTs while the others
go to the engine; a duplicate MsgId is answered from the message log."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from remitnet.services.adapters.iso20022 import pacs002, pacs008
from remitnet.services.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Reason,
)
from remitnet.services.domain.fx import Quote, QuoteTerms
from remitnet.services.domain.iso20022 import stated_rate
from remitnet.services.domain.model import Instruction, StoredTransfer
from remitnet.services.domain.netting import Accepted, Outcome
from remitnet.services.service_layer import iso20022 as uc
from remitnet.services.service_layer.participants import create_bank
from tests.fakes import FakeTransactions
from tests.iso20022_samples import Tx, statuses
from tests.iso20022_samples import pacs008 as pacs008_doc

US, PH = "BANKUS01", "BANKPH01"


class Engine:
    """Accepts every instruction (the engine's own refusals are the
    integration tests')."""

    def __init__(self) -> None:
        self.submitted: list[Instruction] = []

    def check_room(self, bank: str, n: int) -> None:
        pass

    async def submit(self, items: Sequence[Instruction], bank: str | None = None) -> list[Outcome]:
        self.submitted.extend(items)
        now = datetime.now(UTC)
        return [
            Accepted(StoredTransfer.from_instruction(i, accepted_at=now, cycle_id="USD-1"), False)
            for i in items
        ]


@pytest.fixture
def db() -> FakeTransactions:
    db = FakeTransactions()
    create_bank(db, US, "US", "us-east1", ["USD", "JPY"], bic="BANKUS33")
    create_bank(db, PH, "PH", "us-east1", ["USD", "JPY"], bic="BANKPHMM")
    create_bank(db, "NOBIC01", "None", "us-east1", ["USD"])
    return db


async def submit(db: FakeTransactions, engine: Engine, doc: bytes, caller: str = US) -> bytes:
    message = pacs008.read(doc)
    digest = hashlib.sha256(doc).hexdigest()
    answer = await uc.submit_pacs008(db, engine, caller, message, digest, pacs002.build)
    return answer.document


async def test_business_rule_failures_are_rjcts_and_the_others_clear(db: FakeTransactions) -> None:
    engine = Engine()
    txs = [
        Tx("BANKPHMM", "10.00"),
        Tx("NOPEUS33", "1.00"),
        Tx("BANKPHMM", "1.5", currency="JPY"),
        Tx("BANKPHMMXXX", "100", currency="JPY"),
        Tx("BANKPHMM", "0.00"),
    ]
    got = statuses(await submit(db, engine, pacs008_doc(txs, instructing_bic="BANKUS33")))
    assert [(s.status, s.reason) for s in got] == [
        ("ACSP", ""),
        ("RJCT", "CNOR"),
        ("RJCT", "CH20"),
        ("ACSP", ""),
        ("RJCT", "AM12"),
    ]
    assert [(i.transfer_id, i.creditor, i.amount) for i in engine.submitted] == [
        (txs[0].uetr, PH, 1000),
        (txs[3].uetr, PH, 100),
    ]
    assert len(db.store.iso_messages) == 1


async def test_a_duplicate_msgid_is_answered_from_the_log(db: FakeTransactions) -> None:
    engine = Engine()
    doc = pacs008_doc([Tx("BANKPHMM", "10.00")], instructing_bic="BANKUS33")
    first = await submit(db, engine, doc)
    assert await submit(db, engine, doc) == first
    assert len(engine.submitted) == 1
    other = pacs008_doc([Tx("BANKPHMM", "11.00")], instructing_bic="BANKUS33")
    with pytest.raises(AlreadyExists) as info:
        await submit(db, engine, other)
    assert info.value.reason == Reason.DUPLICATE_WITH_DIFFERENT_CONTENT


@pytest.mark.parametrize(
    ("doc", "caller", "error", "reason"),
    [
        (pacs008_doc([Tx("BANKPHMM", "1")], instructing_bic="BANKPHMM"), US,
         PermissionDenied, Reason.NOT_OWN_BIC),
        (pacs008_doc([Tx("BANKPHMM", "1")], instructing_bic="BANKUS33"), "NOBIC01",
         FailedPrecondition, Reason.BANK_HAS_NO_BIC),
        (pacs008_doc([Tx("BANKPHMM", "1", uetr="")], instructing_bic="BANKUS33"), US,
         InvalidArgument, Reason.MISSING_FIELD),
        (pacs008_doc([Tx("BANKPHMM", "1")]), US, InvalidArgument, Reason.MISSING_FIELD),
        (pacs008_doc([Tx("BANKPHMM", "1")], instructing_bic="BANKUS33", declared=3), US,
         InvalidArgument, Reason.INVALID_ARGUMENT),
    ],
)  # fmt: skip
async def test_message_level_refusals_store_nothing(
    db: FakeTransactions, doc: bytes, caller: str, error: type[Exception], reason: str
) -> None:
    engine = Engine()
    before = db.store.dump()
    with pytest.raises(error) as info:
        await submit(db, engine, doc, caller)
    assert getattr(info.value, "reason", None) == reason
    assert db.store.dump() == before and engine.submitted == []


# Cross-currency ---------------------------------------------------------------------

# 1,000.00 USD sold at 56.10 less 30 bp: 55,931.70 PHP delivered.
RATE = Decimal("55.9317")


def _quote(db: FakeTransactions, bank: str = US) -> str:
    terms = QuoteTerms(
        "USD", "PHP", 100_000, 5_593_170, Decimal("56.10"), RATE, 30, 16_830, "USD/PHP"
    )
    now = datetime.now(UTC)
    quote = Quote(str(uuid.uuid4()), bank, terms, now, now + timedelta(minutes=1), None, "FXPA0001")
    db.write("quote", lambda uow: uow.quotes.add([quote]))
    return quote.quote_id


async def test_a_cross_currency_transaction_is_checked_against_its_quote(
    db: FakeTransactions,
) -> None:
    engine = Engine()
    q = [_quote(db) for _ in range(7)]
    theirs = _quote(db, bank=PH)
    txs = [
        Tx("BANKPHMM", "1000.00", quote_id=q[0], instructed=("55931.70", "PHP"),
           xchg_rate="55.9317"),
        Tx("BANKPHMM", "1000.00", quote_id=q[1], instructed=("1000", "USD")),
        Tx("BANKPHMM", "1000.00", quote_id=q[2], xchg_rate="55.931700000"),
        Tx("BANKPHMM", "1000.00", quote_id=q[3], instructed=("55931.71", "PHP")),
        Tx("BANKPHMM", "1000.00", quote_id=q[4], xchg_rate="55.9318"),
        Tx("BANKPHMM", "1000.00", quote_id=q[5], instructed=("1000.00", "EUR")),
        Tx("BANKPHMM", "1000.00", xchg_rate="55.9317"),
        Tx("BANKPHMM", "1000.00", instructed=("55931.70", "PHP")),
        Tx("BANKPHMM", "1000.00", instructed=("999.99", "USD")),
        Tx("BANKPHMM", "1000.00", quote_id="not-a-uuid"),
        # Another bank's quote: its terms are not checked (nor told); the
        # engine refuses it QUOTE_NOT_OWNED, as in SubmitTransfers.
        Tx("BANKPHMM", "1000.00", quote_id=theirs, xchg_rate="1"),
    ]  # fmt: skip
    doc = pacs008_doc(txs, instructing_bic="BANKUS33")
    got = statuses(await submit(db, engine, doc))
    assert [(s.status, s.reason) for s in got] == [
        ("ACSP", ""),
        ("ACSP", ""),
        ("ACSP", ""),
        ("RJCT", "AM09"),
        ("RJCT", "AM09"),
        ("RJCT", "AM09"),
        ("RJCT", "CH21"),
        ("RJCT", "CH21"),
        ("RJCT", "AM12"),
        ("RJCT", "FF01"),
        ("ACSP", ""),
    ]
    assert "InstdAmt 55931.71 PHP is not the quote's 55931.70 PHP" in got[3].info
    assert "XchgRate 55.9318 is not the quote's rate 55.9317" in got[4].info
    assert [(i.transfer_id, i.quote_id) for i in engine.submitted] == [
        (txs[0].uetr, q[0]),
        (txs[1].uetr, q[1]),
        (txs[2].uetr, q[2]),
        (txs[10].uetr, theirs),
    ]


async def test_two_quotes_in_one_transaction_are_refused(db: FakeTransactions) -> None:
    engine = Engine()
    tx = Tx("BANKPHMM", "1000.00", quote_id=_quote(db), remittance=("x",))
    message = pacs008.read(pacs008_doc([tx], instructing_bic="BANKUS33"))
    twice = replace(message.transfers[0], quotes=message.transfers[0].quotes * 2)
    message = replace(message, transfers=(twice,))
    answer = await uc.submit_pacs008(db, engine, US, message, "d", pacs002.build)
    assert [(s.status, s.reason) for s in statuses(answer.document)] == [("RJCT", "FF01")]
    assert engine.submitted == []


@pytest.mark.parametrize(
    ("rate", "stated"),
    [
        ("55.9317", "55.9317"),
        ("0.017825311942959", "0.0178253119"),
        ("12345.678901234", "12345.678901"),
        ("0.00001234567890123", "0.0000123457"),
    ],
)
def test_a_rate_is_stated_as_a_base_one_rate(rate: str, stated: str) -> None:
    assert stated_rate(Decimal(rate)) == Decimal(stated)
