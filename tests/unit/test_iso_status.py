"""Every reason a transfer can be refused with has its ISO 20022
ExternalStatusReason1Code, and the README publishes the same table."""

from __future__ import annotations

import re
from pathlib import Path

from remitnet.services.domain import iso_status
from remitnet.services.domain.errors import Reason
from remitnet.services.domain.model import TransferStatus

ROOT = Path(__file__).resolve().parent.parent.parent

# The ExternalStatusReason1Code values of the ISO 20022 external code sets
# that the hub uses (the published list has many more).
_CODES = """
AB02 AB05 AC01 AC04 AC06 AC07 AG01 AG03 AG09 AG10 AG12 AGNT AM02 AM03 AM04 AM05 AM09
AM11 AM12 BE01 BE05 CH20 CH21 CNOR CUST DNOR DUPL ED06 FF01 FF08 FF10 MS02 MS03 NARR
RC01 RR01 RR02 RR03 RR04 RR07 RR10 TM01
"""
OFFICIAL = set(_CODES.split())


def every_reason() -> set[str]:
    return {v for k, v in vars(Reason).items() if k.isupper() and isinstance(v, str)}


def test_every_reason_is_placed_once() -> None:
    mapped = set(iso_status.TRANSFER_REFUSALS)
    assert mapped & iso_status.NOT_TRANSFER_REFUSALS == set()
    assert mapped | iso_status.NOT_TRANSFER_REFUSALS == every_reason(), (
        "a new Reason: map it in TRANSFER_REFUSALS or list it in NOT_TRANSFER_REFUSALS"
    )


def test_every_code_is_an_external_status_reason_code() -> None:
    assert set(iso_status.CODE_NAMES) <= OFFICIAL
    assert set(iso_status.TRANSFER_REFUSALS.values()) <= set(iso_status.CODE_NAMES)
    assert iso_status.refusal_code(Reason.INSUFFICIENT_LIQUIDITY) == "AM04"
    assert iso_status.refusal_code(Reason.DUPLICATE_WITH_DIFFERENT_CONTENT) == "DUPL"


def test_the_readme_publishes_the_table() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| `([A-Z0-9]{4})` \|", readme, re.M))
    assert rows == iso_status.TRANSFER_REFUSALS


def test_statuses() -> None:
    s = iso_status.transfer_status
    assert s(TransferStatus.ACCEPTED, None) == ("ACSP", "")
    assert s(TransferStatus.CLOSED, None) == ("ACSP", "")
    assert s(TransferStatus.SETTLED, None) == ("ACCC", "")
    assert s(TransferStatus.RESERVED, None) == ("PDNG", "")
    assert s(TransferStatus.REJECTED, "AC04") == ("RJCT", "AC04")
    assert s(TransferStatus.REJECTED, None) == ("RJCT", "MS03")
    assert s(TransferStatus.EXPIRED, "AB05") == ("RJCT", "AB05")
    assert s(TransferStatus.CANCELLED, "operator said so") == ("RJCT", "CUST")
