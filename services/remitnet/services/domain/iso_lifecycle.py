"""Returns and recalls at the ISO 20022 edge, as plain values: pacs.004
returns in and out, camt.056 recall requests, camt.029 answers. The XML is
an adapter's (adapters/iso20022); the rules are the lifecycle's
(domain/lifecycle.py), which these messages only carry. Pure: no I/O."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from remitnet.services.domain.errors import InvalidArgument, Reason
from remitnet.services.domain.iso20022 import TxRef
from remitnet.services.domain.money import exponent

PACS_004: Final = "pacs.004.001.09"
CAMT_056: Final = "camt.056.001.08"
CAMT_029: Final = "camt.029.001.09"

# Transactions per pacs.004, camt.056 or camt.029: each is a lifecycle call
# of its own on the netting thread, so fewer than a pacs.008 takes.
MAX_LIFECYCLE_TRANSACTIONS: Final = 1_000
# Returns one pull (GetReturnsPacs004) answers at most, and by default.
MAX_RETURNS_PULLED: Final = 1_000
DEFAULT_RETURNS_PULLED: Final = 100

# CancellationIndividualStatus1Code (camt.029 TxCxlSts).
RECALL_PENDING: Final = "PDCR"
RECALL_ACCEPTED: Final = "ACCR"
RECALL_REJECTED: Final = "RJCR"

# RtrId and CxlId are Max35Text: the 36 characters of a UUID's 8-4-4-4-12
# form do not fit, its 32 hex digits do.
_HEX_UUID = re.compile(r"[0-9a-fA-F]{32}")


def id_from_max35(raw: str, field: str) -> str:
    """The canonical UUID a Max35Text id carries as 32 hex digits (RtrId,
    CxlId); MISSING_FIELD or INVALID_ARGUMENT otherwise."""
    if not raw:
        raise InvalidArgument(Reason.MISSING_FIELD, f"{field} is required", field=field)
    if not _HEX_UUID.fullmatch(raw) or int(raw, 16) == 0:
        raise InvalidArgument(
            Reason.INVALID_ARGUMENT,
            f"{field} must be a UUID written as its 32 hex digits, got {raw[:35]!r}",
            field=field,
        )
    return str(uuid.UUID(hex=raw))


def max35_id(canonical: str) -> str:
    """A UUID as the 32 hex digits RtrId and CxlId hold."""
    return uuid.UUID(canonical).hex


@dataclass(frozen=True, slots=True)
class PaymentReturn:
    """One pacs.004 TxInf as read. `ref` names it back in the pacs.002:
    tx_id is its RtrId, uetr the original's (OrgnlUETR)."""

    ref: TxRef
    path: str
    return_id: str  # RtrId as in the document
    amount: str  # RtrdIntrBkSttlmAmt
    currency: str
    reason: str  # RtrRsnInf/Rsn/Cd ("" if absent)
    instructing_bic: str  # its InstgAgt, else the group's
    info: str = ""  # RtrRsnInf/AddtlInf, joined


@dataclass(frozen=True, slots=True)
class Pacs004:
    msg_id: str
    created_at: str
    declared_count: str
    returns: tuple[PaymentReturn, ...]


@dataclass(frozen=True, slots=True)
class RecallTx:
    """One camt.056 Undrlyg/TxInf: ref.tx_id is its CxlId."""

    ref: TxRef
    path: str
    cancellation_id: str  # CxlId as in the document
    reason: str  # CxlRsnInf/Rsn/Cd
    info: str = ""  # CxlRsnInf/AddtlInf, joined


@dataclass(frozen=True, slots=True)
class Camt056:
    msg_id: str  # Assgnmt/Id: a camt.056 has no GrpHdr
    created_at: str
    assigner_bic: str  # Assgnmt/Assgnr/Agt ("" if a party, not an agent)
    case_id: str  # Case/Id ("" if absent)
    recalls: tuple[RecallTx, ...]
    whole_groups: int = 0  # Undrlyg naming no TxInf (a whole-message recall)


@dataclass(frozen=True, slots=True)
class RecallAnswer:
    """One camt.029 CxlDtls/TxInfAndSts: ref.tx_id is its CxlStsId."""

    ref: TxRef
    path: str
    status: str  # TxCxlSts ("" if absent)
    reason: str  # CxlStsRsnInf/Rsn/Cd ("" if absent)


@dataclass(frozen=True, slots=True)
class Camt029:
    msg_id: str  # Assgnmt/Id
    created_at: str
    assigner_bic: str
    case_id: str  # RslvdCase/Id
    answers: tuple[RecallAnswer, ...]


@dataclass(frozen=True, slots=True)
class CancellationStatus:
    """One TxInfAndSts of the hub's camt.029: `status` "" when the answer
    it reports was refused."""

    ref: TxRef
    status: str
    reason_code: str = ""  # ExternalPaymentCancellationRejection1Code
    info: str = ""  # the hub's reason and message


@dataclass(frozen=True, slots=True)
class Resolution:
    """The hub's camt.029.001.09, to `assignee_bic`, about case `case_id`."""

    msg_id: str
    created_at: datetime
    assignee_bic: str
    case_id: str
    confirmation: str  # Sts/Conf
    transactions: tuple[CancellationStatus, ...]


@dataclass(frozen=True, slots=True)
class ReturnNotice:
    """One return as the original's debtor receives it (pacs.004 out)."""

    return_id: str
    original_id: str
    original_amount: str  # decimal text, the original's IntrBkSttlmAmt
    original_currency: str
    amount: str  # what is returned, decimal text
    currency: str
    reason: str  # ExternalReturnReason1Code
    returning_bic: str
    receiving_bic: str
    returned_at: datetime
    info: str = ""


@dataclass(frozen=True, slots=True)
class ReturnsReport:
    msg_id: str
    created_at: datetime
    returns: tuple[ReturnNotice, ...]


def decimal_text(units: int, currency: str) -> str:
    """Minor units as an ISO 20022 amount: 12550 USD is 125.50, 100 JPY 100."""
    return f"{Decimal(units).scaleb(-exponent(currency)):f}"
