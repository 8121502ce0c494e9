"""What the hub reads from and answers to ISO 20022 messages, as plain
values: the XML itself (parsing, schemas, building) is an adapter's
(services/remitnet/services/adapters/iso20022). Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Final

from remitnet.services.domain.errors import InvalidArgument, Reason
from remitnet.services.domain.money import INT64_MAX, exponent

PACS_008: Final = "pacs.008.001.08"
PACS_002: Final = "pacs.002.001.10"
PACS_028: Final = "pacs.028.001.03"

# Text of RmtInf/Ustrd lines is joined by this into the transfer's
# remittance_info (which refuses control characters, so no newline).
USTRD_SEPARATOR: Final = " "


@dataclass(frozen=True, slots=True)
class TxRef:
    """How a transaction is named back in a pacs.002 (its Orgnl* ids)."""

    end_to_end_id: str
    instr_id: str = ""
    tx_id: str = ""
    uetr: str = ""


@dataclass(frozen=True, slots=True)
class CreditTransfer:
    """One CdtTrfTxInf of a pacs.008, as read (nothing checked but the
    schema). `path` names it in the document, for error messages."""

    ref: TxRef
    path: str
    amount: str  # IntrBkSttlmAmt, decimal text as in the document
    currency: str  # its Ccy
    creditor_bic: str  # CdtrAgt/FinInstnId/BICFI ("" if absent)
    instructing_bic: str  # its own InstgAgt BICFI, else the group's ("" if none)
    remittance: tuple[str, ...] = ()  # RmtInf/Ustrd


@dataclass(frozen=True, slots=True)
class Pacs008:
    msg_id: str
    created_at: str  # GrpHdr/CreDtTm as in the document
    declared_count: str  # GrpHdr/NbOfTxs as in the document
    transfers: tuple[CreditTransfer, ...]


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """A pacs.028: the UETRs whose status is asked for."""

    msg_id: str
    created_at: str
    requester_bic: str  # GrpHdr/InstgAgt BICFI ("" if absent)
    original_msg_id: str  # OrgnlGrpInf/OrgnlMsgId of the first one ("" if none)
    refs: tuple[TxRef, ...]


@dataclass(frozen=True, slots=True)
class TxReport:
    """One TxInfAndSts of a pacs.002."""

    ref: TxRef
    status: str  # ExternalPaymentTransactionStatus1Code: ACSP, ACCC, PDNG, RJCT
    reason_code: str = ""  # ExternalStatusReason1Code, for RJCT (and PDNG)
    info: str = ""  # StsRsnInf/AddtlInf: the hub's reason and message
    accepted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """A pacs.002: the answer to `original_msg_id` (a message of
    `original_kind`), one TxReport per transaction, in order."""

    msg_id: str
    created_at: datetime
    original_msg_id: str
    original_kind: str
    original_created_at: str
    transactions: tuple[TxReport, ...]


@dataclass(frozen=True, slots=True)
class AnsweredMessage:
    """An inbound message the hub answered: the answer is kept, keyed by
    the sending bank and the message's MsgId, to answer a duplicate."""

    bank: str
    msg_id: str
    kind: str
    digest: str  # SHA-256 of the inbound document's bytes, hex
    answer: bytes
    received_at: datetime


def minor_units(amount: str, currency: str, *, field: str = "IntrBkSttlmAmt") -> int:
    """An ISO 20022 decimal amount in minor units of `currency`: refused
    (TOO_MANY_DECIMALS) if it has more decimals than the currency has minor
    units, by value (100.10 USD is 10010; 100.5 JPY is refused; 100.0 JPY
    is 100), never rounded."""
    exp = exponent(currency)
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise InvalidArgument(
            Reason.INVALID_AMOUNT, f"{field} {amount[:40]!r} is not a decimal", field=field
        ) from None
    scaled = value.scaleb(exp)
    if not value.is_finite() or scaled != scaled.to_integral_value():
        raise InvalidArgument(
            Reason.TOO_MANY_DECIMALS,
            f"{field} {amount[:40]} has more decimals than {currency} allows ({exp})",
            field=field,
            currency=currency,
        )
    units = int(scaled)
    if units <= 0:
        raise InvalidArgument(Reason.INVALID_AMOUNT, f"{field} must be positive", field=field)
    if units > INT64_MAX:
        raise InvalidArgument(
            Reason.AMOUNT_OUT_OF_RANGE, f"{field} exceeds the int64 range", field=field
        )
    return units


def remittance_info(lines: tuple[str, ...]) -> str:
    return USTRD_SEPARATOR.join(lines)
