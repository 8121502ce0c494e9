"""What the hub reads from and answers to ISO 20022 messages, as plain
values: the XML itself (parsing, schemas, building) is an adapter's
(services/remitnet/services/adapters/iso20022). Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Final

from remitnet.services.domain.errors import InvalidArgument, Reason
from remitnet.services.domain.fx import QuoteTerms
from remitnet.services.domain.money import INT64_MAX, exponent

PACS_008: Final = "pacs.008.001.08"
PACS_002: Final = "pacs.002.001.10"
PACS_028: Final = "pacs.028.001.03"

# Text of RmtInf/Ustrd lines is joined by this into the transfer's
# remittance_info (which refuses control characters, so no newline).
USTRD_SEPARATOR: Final = " "

# pacs.008.001.08 has no element for a quote id: as BIS Nexus does, a
# transaction names the quote it was priced with in its structured
# remittance information, one RmtInf/Strd/AddtlRmtInf of this prefix and
# the quote's UUID (the codeword form of SWIFT's /ACC/ and /INS/).
QUOTE_PREFIX: Final = "/QUOTE/"

# XchgRate is a BaseOneRate: at most 11 digits, 10 of them after the point.
RATE_DIGITS: Final = 11
RATE_DECIMALS: Final = 10


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
    quotes: tuple[str, ...] = ()  # the ids of RmtInf/Strd/AddtlRmtInf "/QUOTE/<id>"
    instructed_amount: str = ""  # InstdAmt ("" if absent)
    instructed_currency: str = ""  # its Ccy
    exchange_rate: str = ""  # XchgRate ("" if absent)
    purpose: str = ""  # Purp/Cd, an ExternalPurpose1Code ("" if absent)


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


def quote_id(tx: CreditTransfer) -> str:
    """The quote a transaction names ("" for none); more than one is refused,
    since a transfer is priced with one."""
    if len(tx.quotes) > 1:
        raise InvalidArgument(
            Reason.INVALID_ARGUMENT,
            f"{tx.path}/RmtInf names {len(tx.quotes)} quotes ({QUOTE_PREFIX}); a transfer "
            "is priced with one",
            field="RmtInf/Strd/AddtlRmtInf",
        )
    return tx.quotes[0] if tx.quotes else ""


def stated_rate(rate: Decimal) -> Decimal:
    """A quote's all-in rate as an XchgRate (BaseOneRate) can state it:
    rounded half-even to at most RATE_DIGITS digits and RATE_DECIMALS
    decimals. A rate with fewer digits is itself."""
    places = min(RATE_DECIMALS, RATE_DIGITS - 1 - rate.adjusted())
    return rate.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def check_conversion(tx: CreditTransfer, terms: QuoteTerms | None) -> None:
    """InstdAmt and XchgRate, where present, agree with the quote the
    transaction is priced with (`terms`; None: it names none).

    InstdAmt may be stated in either currency: in the target currency it is
    what the creditor is credited (the quote's target amount), in the
    source currency what the debtor pays, which is IntrBkSttlmAmt (the hub
    charges nothing). XchgRate is the quote's all-in rate (target per
    source, applied to IntrBkSttlmAmt, as in Nexus) as a BaseOneRate can
    state it (`stated_rate`). Without a quote neither may name another
    currency or a rate: the hub converts only at a quote."""
    instructed, ccy, rate = tx.instructed_amount, tx.instructed_currency, tx.exchange_rate
    if terms is None:
        if rate or (instructed and ccy != tx.currency):
            raise InvalidArgument(
                Reason.MISSING_FIELD,
                f"{tx.path} asks for a conversion (InstdAmt in another currency or XchgRate) "
                f"but names no quote: add RmtInf/Strd/AddtlRmtInf {QUOTE_PREFIX}<quote id>",
                field="RmtInf/Strd/AddtlRmtInf",
            )
        if instructed and Decimal(instructed) != Decimal(tx.amount):
            raise InvalidArgument(
                Reason.INVALID_AMOUNT,
                f"InstdAmt {instructed[:40]} is not IntrBkSttlmAmt {tx.amount[:40]}",
                field="InstdAmt",
            )
        return
    if instructed:
        if ccy == terms.target_currency:
            expected = terms.target_amount
        elif ccy == terms.source_currency:
            expected = terms.source_amount
        else:
            raise _mismatch(
                f"InstdAmt is in {ccy}; the quote converts "
                f"{terms.source_currency} to {terms.target_currency}",
                "InstdAmt",
            )
        if minor_units(instructed, ccy, field="InstdAmt") != expected:
            raise _mismatch(
                f"InstdAmt {instructed[:40]} {ccy} is not the quote's "
                f"{_major(expected, ccy)} {ccy}",
                "InstdAmt",
            )
    if rate:
        stated = stated_rate(terms.rate)
        if Decimal(rate) != stated:
            raise _mismatch(
                f"XchgRate {rate[:40]} is not the quote's rate {stated.normalize():f}",
                "XchgRate",
            )


def _major(units: int, currency: str) -> str:
    return f"{Decimal(units).scaleb(-exponent(currency)):f}"


def _mismatch(message: str, field: str) -> InvalidArgument:
    return InvalidArgument(Reason.QUOTE_MISMATCH, message, field=field)
