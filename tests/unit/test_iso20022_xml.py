"""The ISO 20022 edge reads documents safely and checks them against their
official schemas: every bad input is a clear INVALID_ARGUMENT reason that
says where, and every document the hub sends validates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from remitnet.services.adapters.iso20022 import pacs002, pacs008, pacs028, xml
from remitnet.services.domain.errors import InvalidArgument, Reason
from remitnet.services.domain.iso20022 import PACS_008, Report, TxRef, TxReport
from tests.iso20022_samples import Tx, statuses, uetr
from tests.iso20022_samples import pacs008 as pacs008_doc
from tests.iso20022_samples import pacs028 as pacs028_doc

BIC = "BANKUS33"


def refused(data: bytes, kind: str = PACS_008) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        xml.parse(data, kind)
    return info.value


def test_a_valid_pacs008_is_read() -> None:
    doc = pacs008_doc(
        [Tx("BANKPHMM", "125.50", remittance=("invoice 7", "thanks")), Tx("BANKPHMMXXX", "3")],
        instructing_bic=BIC,
    )
    message = pacs008.read(doc)
    assert message.msg_id == "MSG-1" and message.declared_count == "2"
    first, second = message.transfers
    assert (first.amount, first.currency, first.creditor_bic) == ("125.50", "USD", "BANKPHMM")
    assert first.instructing_bic == BIC and first.remittance == ("invoice 7", "thanks")
    assert second.path == "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf[2]"


def test_malformed_xml_is_refused_with_its_line() -> None:
    err = refused(b"<?xml version='1.0'?>\n<Document><unclosed></Document>")
    assert err.reason == Reason.MALFORMED_XML and err.metadata["line"] == "2"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08">&lol3;</Document>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08">&x;</Document>"""

REMOTE_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE Document SYSTEM "http://example.invalid/evil.dtd">
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08"/>"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL_ENTITY, REMOTE_DTD])
def test_xml_bombs_external_entities_and_dtds_are_refused(data: bytes) -> None:
    err = refused(data)
    assert err.reason == Reason.FORBIDDEN_XML
    assert err.metadata["construct"] == "DOCTYPE"


def test_an_undeclared_entity_reference_is_not_resolved() -> None:
    data = b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08">&x;</Document>'
    assert refused(data).reason == Reason.MALFORMED_XML


def test_utf16_is_refused_so_no_marker_hides_from_the_scan() -> None:
    data = (
        pacs008_doc([Tx("BANKPHMM", "1")], instructing_bic=BIC).decode().replace("UTF-8", "UTF-16")
    )
    err = refused(data.encode("utf-16"))
    assert err.reason == Reason.FORBIDDEN_XML and err.metadata["construct"] == "encoding"


def test_a_document_in_another_declared_encoding_is_refused() -> None:
    data = pacs008_doc([Tx("BANKPHMM", "1")], instructing_bic=BIC).replace(
        b"encoding='UTF-8'", b"encoding='ISO-8859-1'"
    )
    assert b"ISO-8859-1" in data
    err = refused(data)
    assert err.reason == Reason.FORBIDDEN_XML and err.metadata["construct"] == "encoding"


def test_an_oversized_document_is_refused_unread() -> None:
    err = refused(b" " * (xml.MAX_DOCUMENT_BYTES + 1))
    assert err.reason == Reason.DOCUMENT_TOO_LARGE
    assert err.metadata["limit"] == str(xml.MAX_DOCUMENT_BYTES)


def test_a_deeply_nested_document_is_refused() -> None:
    ns = xml.namespace(PACS_008)
    data = f'<Document xmlns="{ns}">{"<a>" * 60}{"</a>" * 60}</Document>'.encode()
    assert refused(data).reason == Reason.DOCUMENT_TOO_LARGE


@pytest.mark.parametrize(
    "namespace",
    [
        "urn:iso:std:iso:20022:tech:xsd:pacs.008.001.09",  # another version
        "urn:iso:std:iso:20022:tech:xsd:pacs.009.001.08",  # another message
        "",  # none
    ],
)
def test_the_wrong_namespace_or_version_is_refused(namespace: str) -> None:
    data = pacs008_doc([Tx("BANKPHMM", "1")], instructing_bic=BIC).replace(
        xml.namespace(PACS_008).encode(), namespace.encode()
    )
    if not namespace:
        data = data.replace(b' xmlns=""', b"")
    err = refused(data)
    assert err.reason == Reason.UNSUPPORTED_MESSAGE
    assert err.metadata["expected"] == xml.namespace(PACS_008)


def test_a_schema_violation_names_the_element_path_and_rule() -> None:
    data = pacs008_doc(
        [Tx("BANKPHMM", "1"), Tx("BANKPHMM", "1", uetr="not-a-uuid")], instructing_bic=BIC
    )
    err = refused(data)
    assert err.reason == Reason.SCHEMA_VIOLATION
    assert err.metadata["path"] == "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf[2]/PmtId/UETR"
    assert err.metadata["rule"] == "pattern"
    assert "CdtTrfTxInf[2]/PmtId/UETR" in err.message


def test_a_uetr_that_is_a_uuid_but_not_v4_is_a_schema_violation() -> None:
    v1 = "c232ab00-9414-11ec-b3c8-9f6bdeced846"
    err = refused(pacs008_doc([Tx("BANKPHMM", "1", uetr=v1)], instructing_bic=BIC))
    assert err.reason == Reason.SCHEMA_VIOLATION and err.metadata["rule"] == "pattern"


def test_a_missing_required_element_is_a_content_violation() -> None:
    data = pacs008_doc([Tx("BANKPHMM", "1")], instructing_bic=BIC).replace(
        b"<ChrgBr>SHAR</ChrgBr>", b""
    )
    err = refused(data)
    assert err.reason == Reason.SCHEMA_VIOLATION and err.metadata["rule"] == "content"
    assert err.metadata["path"].startswith("/Document/FIToFICstmrCdtTrf/CdtTrfTxInf/")


def test_the_pacs002_built_validates_against_its_schema() -> None:
    ref = TxRef("E2E", "I1", "T1", uetr())
    report = Report(
        "RMTN1",
        datetime(2026, 12, 2, tzinfo=UTC),
        "MSG-1",
        PACS_008,
        "2026-12-02T10:00:00Z",
        (
            TxReport(ref, "ACSP", accepted_at=datetime.now(UTC)),
            TxReport(TxRef("E2"), "RJCT", "AM04", "INSUFFICIENT_LIQUIDITY: " + "x" * 400),
            TxReport(TxRef("E3"), "PDNG"),
        ),
    )
    document = pacs002.build(report)
    assert b"<?xml" in document[:10]
    got = statuses(document)  # checks the XSD
    assert [s.status for s in got] == ["ACSP", "RJCT", "PDNG"]
    assert got[0].uetr == ref.uetr and got[1].reason == "AM04"


def test_a_status_request_is_read() -> None:
    u = uetr()
    query = pacs028.read(pacs028_doc([u], instructing_bic=BIC))
    assert query.requester_bic == BIC and [r.uetr for r in query.refs] == [u]
