"""The hub's reasons and statuses as ISO 20022 codes, for pacs.002: every
reason a transfer can be refused with has its ExternalStatusReason1Code
(README "ISO 20022" publishes the table; a test keeps every Reason either
here or in NOT_TRANSFER_REFUSALS, so a new reason must be placed). Pure."""

from __future__ import annotations

from typing import Final

from remitnet.services.domain.errors import Reason
from remitnet.services.domain.lifecycle import (
    EXPIRY_REASON,
    RECALL_REJECT_REASONS,
    REJECT_REASONS,
    RecallState,
)
from remitnet.services.domain.model import TransferStatus

# The ExternalStatusReason1Code values used here, with their ISO names (ISO
# 20022 external code sets, ExternalStatusReason1Code).
CODE_NAMES: Final[dict[str, str]] = {
    "AB02": "AbortedClearingFatalError",
    "AB05": "TimeoutCreditorAgent",
    "AG01": "TransactionForbidden",
    "AG03": "TransactionNotSupported",
    "AG09": "PaymentNotReceived",
    "AG10": "AgentSuspended",
    "AG12": "NotAllowedBookTransfer",
    "AGNT": "IncorrectAgent",
    "AM02": "NotAllowedAmount",
    "AM03": "NotAllowedCurrency",
    "AM04": "InsufficientFunds",
    "AM09": "WrongAmount",
    "AM11": "InvalidTransactionCurrency",
    "AM12": "InvalidAmount",
    "CH20": "DecimalPointsNotCompatibleWithCurrency",
    "CH21": "RequiredCompulsoryElementMissing",
    "CNOR": "CreditorBankIsNotRegistered",
    "CUST": "RequestedByCustomer",
    "DNOR": "DebtorBankIsNotRegistered",
    "DUPL": "DuplicatePayment",
    "ED06": "SettlementSystemNotAvailable",
    "FF01": "InvalidFileFormat",
    "FF08": "InvalidEndToEndId",
    "FF10": "BankSystemProcessingError",
    "MS03": "NotSpecifiedReasonAgentGenerated",
    "NARR": "Narrative",
    "RC01": "BankIdentifierIncorrect",
    "RR07": "RemittanceInformationInvalid",
    "RR10": "InvalidCharacterSet",
    "TM01": "InvalidCutOffTime",
} | REJECT_REASONS

# Every reason a transfer can be refused with (before the engine, by it, or
# later as its status), as the code its pacs.002 RJCT carries.
TRANSFER_REFUSALS: Final[dict[str, str]] = {
    Reason.INSUFFICIENT_LIQUIDITY: "AM04",
    Reason.DUPLICATE_WITH_DIFFERENT_CONTENT: "DUPL",
    Reason.UNKNOWN_PARTICIPANT: "CNOR",
    Reason.NOT_A_BANK: "AG01",
    Reason.PARTICIPANT_SUSPENDED: "AG10",
    Reason.SAME_DEBTOR_AND_CREDITOR: "AG12",
    Reason.INVALID_BANK_CODE: "RC01",
    Reason.INVALID_BIC: "RC01",
    Reason.BANK_HAS_NO_BIC: "DNOR",
    Reason.NOT_OWN_BIC: "AGNT",
    Reason.INVALID_TRANSFER_ID: "FF08",
    Reason.INVALID_AMOUNT: "AM12",
    Reason.TOO_MANY_DECIMALS: "CH20",
    Reason.AMOUNT_OUT_OF_RANGE: "AM02",
    Reason.UNKNOWN_CURRENCY: "AM11",
    Reason.CURRENCY_NOT_SUPPORTED: "AM03",
    Reason.REMITTANCE_INFO_TOO_LONG: "RR07",
    Reason.INVALID_CHARACTERS: "RR10",
    Reason.MISSING_FIELD: "CH21",
    Reason.INVALID_ARGUMENT: "FF01",
    Reason.UNSTORABLE_VALUE: "FF10",
    Reason.CYCLE_NOT_OPEN: "TM01",
    Reason.RETRIES_EXHAUSTED: "AB02",
    Reason.SHUTTING_DOWN: "ED06",
    Reason.DATABASE_UNAVAILABLE: "ED06",
    Reason.BANK_QUEUE_FULL: "ED06",
    Reason.TOO_MANY_CONCURRENT_CALLS: "ED06",
    Reason.GROSS_NOT_CROSS_CURRENCY: "AG03",
    Reason.GROSS_NOT_IN_BATCH: "AG03",
    Reason.GROSS_NOT_CONFIRMABLE: "AG03",
    Reason.CONFIRMATION_TIMEOUT_OUT_OF_RANGE: "FF01",
    Reason.QUOTE_NOT_FOUND: "AG01",
    Reason.QUOTE_NOT_OWNED: "AG01",
    Reason.QUOTE_EXPIRED: "TM01",
    Reason.QUOTE_USED: "DUPL",
    Reason.QUOTE_MISMATCH: "AM09",
    Reason.FX_PROVIDER_INSUFFICIENT_LIQUIDITY: "AM04",
    Reason.FX_PROVIDER_UNKNOWN: "AGNT",
    Reason.FX_PROVIDER_SUSPENDED: "AG10",
    Reason.FX_PROVIDER_NO_ACCOUNT: "AM03",
    Reason.NOT_AN_FX_PROVIDER: "AGNT",
    # A pacs.004's returns, refused by the lifecycle's rules (a return is a
    # transfer: its pacs.002 RJCT carries these).
    Reason.NOT_TRANSFER_CREDITOR: "AGNT",
    Reason.TRANSFER_NOT_RETURNABLE: "AG01",
    Reason.ALREADY_RETURNED: "AM05",
    Reason.RETURN_QUOTE_REQUIRED: "AG03",
    Reason.UNKNOWN_REASON_CODE: "FF01",
    # Statuses a transfer ends in after it was taken (GetStatusPacs028):
    # a creditor's rejection carries the creditor's own code (stored with
    # it), this is the code when none was stored.
    Reason.TRANSFER_REJECTED: "MS03",
    Reason.TRANSFER_EXPIRED: EXPIRY_REASON,
    Reason.TRANSFER_NOT_FOUND: "AG09",
}

# The reasons no transfer is refused with: operator actions, reads, cycles,
# rates, the lifecycle's own calls, identity, and the document-level checks
# of the ISO 20022 edge (those end the call with a gRPC status instead).
NOT_TRANSFER_REFUSALS: Final[frozenset[str]] = frozenset(
    {
        Reason.EMPTY_BATCH,
        Reason.BATCH_TOO_LARGE,
        Reason.NOT_TRANSFER_DEBTOR,
        Reason.CYCLE_NOT_FOUND,
        Reason.CYCLE_NOT_CLOSED,
        Reason.TRANSFER_NOT_CANCELLABLE,
        Reason.CANCEL_EXCEEDS_CREDITOR_HEADROOM,
        Reason.INVALID_NAME,
        Reason.INVALID_REGION,
        Reason.BANK_EXISTS,
        Reason.BIC_EXISTS,
        Reason.ACCOUNT_NOT_FOUND,
        Reason.CAP_BELOW_POSITION,
        Reason.INVALID_PAGE_TOKEN,
        Reason.INVALID_RESUME_TOKEN,
        Reason.INVALID_TIMESTAMP,
        Reason.TOO_MANY_STREAMS,
        Reason.INVALID_PAGE_SIZE,
        Reason.MISSING_IDENTITY,
        Reason.OPERATOR_ONLY,
        Reason.BANK_ONLY,
        Reason.NOT_OWN_ACCOUNT,
        Reason.RATE_STALE,
        Reason.RATE_NOT_AVAILABLE,
        Reason.INVALID_RATE,
        Reason.SAME_CURRENCY,
        Reason.DUPLICATE_RATE_PAIR,
        Reason.RATE_OLDER_THAN_STORED,
        Reason.PROVIDER_NOT_ALLOWED,
        Reason.TRANSFER_NOT_RESERVED,
        Reason.TRANSFER_ALREADY_ACCEPTED,
        Reason.RECALL_EXISTS,
        Reason.RECALL_NOT_FOUND,
        Reason.RECALL_NOT_OPEN,
        Reason.DOCUMENT_TOO_LARGE,
        Reason.FORBIDDEN_XML,
        Reason.MALFORMED_XML,
        Reason.UNSUPPORTED_MESSAGE,
        Reason.SCHEMA_VIOLATION,
    }
)

# A reason outside the table (none today: the test sees to it).
UNMAPPED: Final = "MS03"

# pacs.002 TxSts (ExternalPaymentTransactionStatus1Code).
ACCEPTED: Final = "ACSP"  # AcceptedSettlementInProcess: netted, not settled yet
SETTLED: Final = "ACCC"  # AcceptedSettlementCompleted (on the creditor's side)
PENDING: Final = "PDNG"  # awaiting the creditor's payee confirmation
REJECTED: Final = "RJCT"

# Why a transfer was cancelled while it awaited confirmation, or after.
CANCELLED_REASON: Final = "CUST"


# A recall (camt.056) or a recall's answer (camt.029) the hub refuses, as
# the ExternalPaymentCancellationRejection1Code of its camt.029 answer; the
# hub's own reason follows in AddtlInf. Any other reason is AGNT.
RECALL_REFUSALS: Final[dict[str, str]] = {
    Reason.TRANSFER_NOT_FOUND: "NOOR",
    Reason.RECALL_NOT_FOUND: "NOOR",
    Reason.ALREADY_RETURNED: "ARDT",
}
RECALL_UNMAPPED: Final = "AGNT"

# camt.029 TxCxlSts (CancellationIndividualStatus1Code) of a recall's state.
_RECALL_STATUS: Final[dict[RecallState, str]] = {
    RecallState.REQUESTED: "PDCR",
    RecallState.ACCEPTED: "ACCR",
    RecallState.REJECTED: "RJCR",
    RecallState.EXPIRED: "RJCR",
}
# An expired recall went unanswered: NoAnswerFromCustomer.
RECALL_EXPIRED_CODE: Final = "NOAS"


def recall_refusal_code(reason: str) -> str:
    return RECALL_REFUSALS.get(reason, RECALL_UNMAPPED)


def recall_status(state: RecallState, answer_reason: str | None) -> tuple[str, str]:
    """A recall's (TxCxlSts, CxlStsRsnInf/Rsn/Cd) in a camt.029."""
    if state is RecallState.EXPIRED:
        return _RECALL_STATUS[state], RECALL_EXPIRED_CODE
    if state is RecallState.REJECTED:
        code = answer_reason if answer_reason in RECALL_REJECT_REASONS else RECALL_UNMAPPED
        return _RECALL_STATUS[state], code
    return _RECALL_STATUS[state], ""


def refusal_code(reason: str) -> str:
    """The ExternalStatusReason1Code of a refusal of the hub."""
    return TRANSFER_REFUSALS.get(reason, UNMAPPED)


def transfer_status(status: TransferStatus, reason: str | None) -> tuple[str, str]:
    """A stored transfer's (TxSts, StsRsnInf/Rsn/Cd) in a pacs.002, from its
    effective status and its stored reason (a creditor's ISO code, AB05, or
    an operator's cancel reason)."""
    if status is TransferStatus.SETTLED:
        return SETTLED, ""
    if status in (TransferStatus.ACCEPTED, TransferStatus.CLOSED):
        return ACCEPTED, ""
    if status is TransferStatus.RESERVED:
        return PENDING, ""
    if status is TransferStatus.REJECTED:
        code = reason if reason in CODE_NAMES else TRANSFER_REFUSALS[Reason.TRANSFER_REJECTED]
        return REJECTED, code
    if status is TransferStatus.EXPIRED:
        return REJECTED, EXPIRY_REASON
    return REJECTED, CANCELLED_REASON
