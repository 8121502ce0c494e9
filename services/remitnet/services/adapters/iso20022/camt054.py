"""camt.054.001.08 (BankToCustomerDebitCreditNotificationV08) out: the
credits and debits booked on a bank's account since a point, with lxml's
element API (the parts shared with camt.053 are camt053.Builder's)."""

from __future__ import annotations

from lxml import etree

from remitnet.services.adapters.iso20022 import xml
from remitnet.services.adapters.iso20022.camt053 import Builder
from remitnet.services.domain.iso_camt import CAMT_054, AccountReport

NS = xml.namespace(CAMT_054)


def build(report: AccountReport) -> bytes:
    """The camt.054 document of `report`: one Ntfctn, one Ntry per ledger
    entry (no balances: a notification has none)."""
    b = Builder(NS)
    root, body = b.root("BkToCstmrDbtCdtNtfctn")
    b.header(body, report)
    note = b.add(body, "Ntfctn")
    b.account_head(note, report)
    b.summary(note, report)
    for e in report.entries:
        b.entry(note, report.currency, e)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
