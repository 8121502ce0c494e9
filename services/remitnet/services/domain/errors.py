"""One error hierarchy for the hub. Each error carries a stable reason code
(the `ErrorInfo.reason` banks see) and a kind that the gRPC edge maps to a
status code. The domain never imports gRPC."""

from __future__ import annotations

from enum import Enum
from typing import ClassVar

ERROR_DOMAIN = "remitnet.io"


class ErrorKind(Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    ABORTED = "ABORTED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


class RemitnetError(Exception):
    """Base of every error the hub reports to a caller."""

    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL

    def __init__(self, reason: str, message: str, **metadata: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = metadata

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, {self.message!r})"


class InvalidArgument(RemitnetError):
    kind = ErrorKind.INVALID_ARGUMENT


class NotFound(RemitnetError):
    kind = ErrorKind.NOT_FOUND


class AlreadyExists(RemitnetError):
    kind = ErrorKind.ALREADY_EXISTS


class FailedPrecondition(RemitnetError):
    kind = ErrorKind.FAILED_PRECONDITION


class PermissionDenied(RemitnetError):
    kind = ErrorKind.PERMISSION_DENIED


class Unauthenticated(RemitnetError):
    kind = ErrorKind.UNAUTHENTICATED


class Aborted(RemitnetError):
    """The unit of work could not commit within its retry budget."""

    kind = ErrorKind.ABORTED


class ResourceExhausted(RemitnetError):
    """A per-bank bound is reached (streams, queued items, concurrent calls):
    the caller may retry later; other banks are unaffected."""

    kind = ErrorKind.RESOURCE_EXHAUSTED

    def __init__(
        self, reason: str, message: str, *, retry_after_s: float | None = None, **metadata: str
    ) -> None:
        super().__init__(reason, message, **metadata)
        #: When to try again (google.rpc.RetryInfo at the gRPC edge).
        self.retry_after_s = retry_after_s


class Unavailable(RemitnetError):
    kind = ErrorKind.UNAVAILABLE


class UnstorableValue(InvalidArgument):
    """The database refused a value of the request (a total past int64, a
    character the column cannot hold): deterministic, so never retried, and
    the netting engine isolates the item that carries it."""


class Reason:
    """The reason codes, as constants so that tests and clients share them.
    The contract lists them in protos/remitnet/common/v1/errors.proto (enum
    ErrorReason, with each one's gRPC code and ErrorInfo metadata keys); a
    test keeps the two the same set, so a new reason goes into both."""

    INVALID_TRANSFER_ID = "INVALID_TRANSFER_ID"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    AMOUNT_OUT_OF_RANGE = "AMOUNT_OUT_OF_RANGE"
    UNKNOWN_CURRENCY = "UNKNOWN_CURRENCY"
    CURRENCY_NOT_SUPPORTED = "CURRENCY_NOT_SUPPORTED"
    UNKNOWN_PARTICIPANT = "UNKNOWN_PARTICIPANT"
    PARTICIPANT_SUSPENDED = "PARTICIPANT_SUSPENDED"
    SAME_DEBTOR_AND_CREDITOR = "SAME_DEBTOR_AND_CREDITOR"
    REMITTANCE_INFO_TOO_LONG = "REMITTANCE_INFO_TOO_LONG"
    INVALID_CHARACTERS = "INVALID_CHARACTERS"
    UNSTORABLE_VALUE = "UNSTORABLE_VALUE"
    INSUFFICIENT_LIQUIDITY = "INSUFFICIENT_LIQUIDITY"
    DUPLICATE_WITH_DIFFERENT_CONTENT = "DUPLICATE_WITH_DIFFERENT_CONTENT"
    EMPTY_BATCH = "EMPTY_BATCH"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    MISSING_FIELD = "MISSING_FIELD"
    TRANSFER_NOT_FOUND = "TRANSFER_NOT_FOUND"
    NOT_TRANSFER_DEBTOR = "NOT_TRANSFER_DEBTOR"
    CYCLE_NOT_OPEN = "CYCLE_NOT_OPEN"
    CYCLE_NOT_FOUND = "CYCLE_NOT_FOUND"
    CYCLE_NOT_CLOSED = "CYCLE_NOT_CLOSED"
    TRANSFER_NOT_CANCELLABLE = "TRANSFER_NOT_CANCELLABLE"
    CANCEL_EXCEEDS_CREDITOR_HEADROOM = "CANCEL_EXCEEDS_CREDITOR_HEADROOM"
    INVALID_BANK_CODE = "INVALID_BANK_CODE"
    INVALID_NAME = "INVALID_NAME"
    INVALID_REGION = "INVALID_REGION"
    BANK_EXISTS = "BANK_EXISTS"
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    CAP_BELOW_POSITION = "CAP_BELOW_POSITION"
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"
    INVALID_RESUME_TOKEN = "INVALID_RESUME_TOKEN"
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
    BANK_QUEUE_FULL = "BANK_QUEUE_FULL"
    TOO_MANY_CONCURRENT_CALLS = "TOO_MANY_CONCURRENT_CALLS"
    INVALID_PAGE_SIZE = "INVALID_PAGE_SIZE"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    MISSING_IDENTITY = "MISSING_IDENTITY"
    OPERATOR_ONLY = "OPERATOR_ONLY"
    BANK_ONLY = "BANK_ONLY"
    NOT_OWN_ACCOUNT = "NOT_OWN_ACCOUNT"
    RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    GROSS_NOT_CROSS_CURRENCY = "GROSS_NOT_CROSS_CURRENCY"
    GROSS_NOT_IN_BATCH = "GROSS_NOT_IN_BATCH"
    QUOTE_NOT_FOUND = "QUOTE_NOT_FOUND"
    QUOTE_EXPIRED = "QUOTE_EXPIRED"
    QUOTE_USED = "QUOTE_USED"
    QUOTE_NOT_OWNED = "QUOTE_NOT_OWNED"
    QUOTE_MISMATCH = "QUOTE_MISMATCH"
    RATE_STALE = "RATE_STALE"
    RATE_NOT_AVAILABLE = "RATE_NOT_AVAILABLE"
    INVALID_RATE = "INVALID_RATE"
    SAME_CURRENCY = "SAME_CURRENCY"
    DUPLICATE_RATE_PAIR = "DUPLICATE_RATE_PAIR"
    RATE_OLDER_THAN_STORED = "RATE_OLDER_THAN_STORED"
    FX_PROVIDER_INSUFFICIENT_LIQUIDITY = "FX_PROVIDER_INSUFFICIENT_LIQUIDITY"
    FX_PROVIDER_UNKNOWN = "FX_PROVIDER_UNKNOWN"
    FX_PROVIDER_SUSPENDED = "FX_PROVIDER_SUSPENDED"
    FX_PROVIDER_NO_ACCOUNT = "FX_PROVIDER_NO_ACCOUNT"
    NOT_AN_FX_PROVIDER = "NOT_AN_FX_PROVIDER"
    NOT_A_BANK = "NOT_A_BANK"
    PROVIDER_NOT_ALLOWED = "PROVIDER_NOT_ALLOWED"
    # The scheme lifecycle (payee confirmation, returns, recalls).
    CONFIRMATION_TIMEOUT_OUT_OF_RANGE = "CONFIRMATION_TIMEOUT_OUT_OF_RANGE"
    GROSS_NOT_CONFIRMABLE = "GROSS_NOT_CONFIRMABLE"
    NOT_TRANSFER_CREDITOR = "NOT_TRANSFER_CREDITOR"
    TRANSFER_NOT_RESERVED = "TRANSFER_NOT_RESERVED"
    TRANSFER_EXPIRED = "TRANSFER_EXPIRED"
    TRANSFER_REJECTED = "TRANSFER_REJECTED"
    TRANSFER_ALREADY_ACCEPTED = "TRANSFER_ALREADY_ACCEPTED"
    UNKNOWN_REASON_CODE = "UNKNOWN_REASON_CODE"
    TRANSFER_NOT_RETURNABLE = "TRANSFER_NOT_RETURNABLE"
    ALREADY_RETURNED = "ALREADY_RETURNED"
    RETURN_QUOTE_REQUIRED = "RETURN_QUOTE_REQUIRED"
    RECALL_EXISTS = "RECALL_EXISTS"
    RECALL_NOT_FOUND = "RECALL_NOT_FOUND"
    RECALL_NOT_OPEN = "RECALL_NOT_OPEN"
    # Banks' BICs and the ISO 20022 edge.
    INVALID_BIC = "INVALID_BIC"
    BIC_EXISTS = "BIC_EXISTS"
    BANK_HAS_NO_BIC = "BANK_HAS_NO_BIC"
    NOT_OWN_BIC = "NOT_OWN_BIC"
    DOCUMENT_TOO_LARGE = "DOCUMENT_TOO_LARGE"
    FORBIDDEN_XML = "FORBIDDEN_XML"
    MALFORMED_XML = "MALFORMED_XML"
    UNSUPPORTED_MESSAGE = "UNSUPPORTED_MESSAGE"
    SCHEMA_VIOLATION = "SCHEMA_VIOLATION"
    TOO_MANY_DECIMALS = "TOO_MANY_DECIMALS"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
