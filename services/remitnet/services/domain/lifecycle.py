"""The scheme lifecycle after clearing: payee confirmation of reserved
transfers, their expiry, returns and recalls. Pure: the rules and the ISO
20022 reason codes they take.

- A transfer whose creditor requires confirmation (its operator setting), or
  whose debtor asks for it, is RESERVED: the debtor's headroom (and a
  cross-currency transfer's FX provider's) is held until the creditor
  accepts (netted into the then-open cycle), rejects (released, with an
  ExternalStatusReason1Code), or its deadline passes (EXPIRED, AB05,
  released by the hub with no request arriving).
- A return is a transfer of its own, from the original's creditor back to
  its debtor, of exactly what the creditor received, in that currency: a
  transfer is returned at most once, whole. Across currencies it goes back
  through an FX provider at a *new* quote that the returning bank asks for
  (see `return_instruction`).
- A recall is the debtor's request (camt.056) for a transfer back; the
  creditor answers (camt.029) by returning it (the return answers the
  recall) or rejecting it with a reason; an unanswered one expires.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import IntEnum
from typing import Final, NamedTuple

from remitnet.services.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Reason,
)
from remitnet.services.domain.model import (
    Instruction,
    StoredTransfer,
    TransferStatus,
    canonical_transfer_id,
    canonical_uuid,
    check_text,
)

# ExternalStatusReason1Code (ISO 20022 external code sets): why a creditor
# agent rejects a transfer awaiting its confirmation (pacs.002 RJCT).
REJECT_REASONS: Final[dict[str, str]] = {
    "AC01": "IncorrectAccountNumber",
    "AC04": "ClosedAccountNumber",
    "AC06": "BlockedAccount",
    "AC07": "ClosedCreditorAccountNumber",
    "AG01": "TransactionForbidden",
    "AG03": "TransactionNotSupported",
    "AM05": "Duplication",
    "BE01": "InconsistentWithEndCustomer",
    "BE05": "UnrecognisedInitiatingParty",
    "CNOR": "CreditorBankIsNotRegistered",
    "FF01": "InvalidFileFormat",
    "MS02": "NotSpecifiedReasonCustomerGenerated",
    "MS03": "NotSpecifiedReasonAgentGenerated",
    "RC01": "BankIdentifierIncorrect",
    "RR01": "MissingDebtorAccountOrIdentification",
    "RR02": "MissingDebtorNameOrAddress",
    "RR03": "MissingCreditorNameOrAddress",
    "RR04": "RegulatoryReason",
}
# ExternalStatusReason1Code AB05 TimeoutCreditorAgent: what the hub records
# when a reservation expires unanswered.
EXPIRY_REASON: Final = "AB05"

# ExternalReturnReason1Code: why a creditor agent returns a transfer (pacs.004).
RETURN_REASONS: Final[dict[str, str]] = {
    "AC01": "IncorrectAccountNumber",
    "AC03": "InvalidCreditorAccountNumber",
    "AC04": "ClosedAccountNumber",
    "AC06": "BlockedAccount",
    "AG01": "TransactionForbidden",
    "AM05": "Duplication",
    "BE04": "MissingCreditorAddress",
    "CUST": "RequestedByCustomer",
    "FOCR": "FollowingCancellationRequest",
    "FR01": "Fraud",
    "MD07": "EndCustomerDeceased",
    "MS02": "NotSpecifiedReasonCustomerGenerated",
    "MS03": "NotSpecifiedReasonAgentGenerated",
    "RC01": "BankIdentifierIncorrect",
    "RR04": "RegulatoryReason",
}
# The return that answers a recall carries this reason.
RECALL_RETURN_REASON: Final = "FOCR"

# ExternalCancellationReason1Code: why a debtor agent recalls (camt.056).
RECALL_REASONS: Final[dict[str, str]] = {
    "AC03": "InvalidCreditorAccountNumber",
    "AGNT": "IncorrectAgent",
    "AM09": "WrongAmount",
    "CURR": "IncorrectCurrency",
    "CUST": "RequestedByCustomer",
    "CUTA": "CancelUponUnableToApply",
    "DUPL": "DuplicatePayment",
    "FRAD": "FraudulentOrigin",
    "TECH": "TechnicalProblem",
    "UPAY": "UnduePayment",
}

# ExternalPaymentCancellationRejection1Code: why a creditor agent refuses a
# recall (camt.029 RJCR).
RECALL_REJECT_REASONS: Final[dict[str, str]] = {
    "AC04": "ClosedAccountNumber",
    "AGNT": "AgentDecision",
    "AM04": "InsufficientFunds",
    "ARDT": "AlreadyReturned",
    "CUST": "CustomerDecision",
    "LEGL": "LegalDecision",
    "NOAS": "NoAnswerFromCustomer",
    "NOOR": "NoOriginalTransactionReceived",
}

MAX_RECALL_INFO: Final = 105  # camt.056 AddtlInf, Max105Text
MAX_CANCEL_REASON: Final = 140


def check_code(code: str, codes: dict[str, str], *, field: str, what: str) -> str:
    """`code` is one of `codes` (UNKNOWN_REASON_CODE, listing them)."""
    if code not in codes:
        raise InvalidArgument(
            Reason.UNKNOWN_REASON_CODE,
            f"{field} must be an ISO 20022 {what} code: one of {', '.join(sorted(codes))}; "
            f"got {code[:8]!r}",
            field=field,
        )
    return code


def deadline_for(now: datetime, timeout_ms: int, default_ms: int) -> datetime:
    """When a reservation taken at `now` expires: after its own timeout
    (already checked against the maximum), or the hub's default."""
    return now + timedelta(milliseconds=timeout_ms or default_ms)


class Confirmation(NamedTuple):
    """The creditor's answer to one reserved transfer."""

    transfer_id: str
    accept: bool
    reason: str = ""  # a rejection's ExternalStatusReason1Code


def make_confirmation(transfer_id: str, accept: bool, reason: str) -> Confirmation:
    """Stateless validation: a canonical id; a rejection names one of
    REJECT_REASONS, an acceptance none."""
    tid = canonical_transfer_id(transfer_id)
    if accept:
        if reason:
            raise InvalidArgument(
                Reason.INVALID_ARGUMENT, "an acceptance carries no reason", field="reason"
            )
    else:
        check_code(reason, REJECT_REASONS, field="reason", what="ExternalStatusReason1Code")
    return Confirmation(tid, accept, reason)


class Step(IntEnum):
    """What the hub does with a confirmation (`confirmation_step`)."""

    ACCEPT = 1  # net it into the open cycle
    REJECT = 2  # release it, REJECTED
    REPLAY = 3  # the same answer again: nothing to do
    EXPIRE = 4  # past its deadline: expire it (then refuse TRANSFER_EXPIRED)


def expired_refusal(t: StoredTransfer) -> FailedPrecondition:
    return FailedPrecondition(
        Reason.TRANSFER_EXPIRED,
        f"transfer {t.transfer_id} expired unconfirmed at {t.deadline}",
        transfer_id=t.transfer_id,
    )


def confirmation_step(
    t: StoredTransfer | None, caller: str, answer: Confirmation, now: datetime
) -> Step:
    """The rules of a creditor's answer, in this order: the transfer exists
    for the caller (TRANSFER_NOT_FOUND: a third bank learns nothing); the
    caller is its creditor (NOT_TRANSFER_CREDITOR); it awaited confirmation
    (TRANSFER_NOT_RESERVED). Then by its status: RESERVED before its
    deadline takes the answer, after it expires (no transfer is both
    accepted and expired); the same answer again is a replay; any other is
    refused with the state it is in (TRANSFER_ALREADY_ACCEPTED,
    TRANSFER_REJECTED, TRANSFER_EXPIRED, TRANSFER_NOT_CANCELLABLE for a
    cancelled one)."""
    if t is None or not t.visible_to(caller):
        raise NotFound(Reason.TRANSFER_NOT_FOUND, f"no transfer {answer.transfer_id}")
    if t.creditor != caller:
        raise FailedPrecondition(
            Reason.NOT_TRANSFER_CREDITOR, "only the creditor bank can accept or reject a transfer"
        )
    if t.deadline is None:
        raise FailedPrecondition(
            Reason.TRANSFER_NOT_RESERVED,
            "this transfer was netted at once: it awaits no confirmation (return it instead)",
        )
    status = t.status
    if status is TransferStatus.RESERVED:
        if now >= t.deadline:
            return Step.EXPIRE
        return Step.ACCEPT if answer.accept else Step.REJECT
    if status is TransferStatus.EXPIRED:
        raise expired_refusal(t)
    if status is TransferStatus.REJECTED:
        if not answer.accept:
            return Step.REPLAY
        raise FailedPrecondition(
            Reason.TRANSFER_REJECTED,
            f"transfer {t.transfer_id} was rejected ({t.reason})",
            transfer_id=t.transfer_id,
        )
    if status is TransferStatus.CANCELLED:
        raise FailedPrecondition(
            Reason.TRANSFER_NOT_CANCELLABLE,
            f"transfer {t.transfer_id} was cancelled",
            transfer_id=t.transfer_id,
        )
    # ACCEPTED (and SETTLED): accepted earlier.
    if answer.accept:
        return Step.REPLAY
    raise FailedPrecondition(
        Reason.TRANSFER_ALREADY_ACCEPTED,
        f"transfer {t.transfer_id} was accepted; return it instead",
        transfer_id=t.transfer_id,
    )


# --- returns ---------------------------------------------------------------

_RETURNABLE: Final = frozenset({TransferStatus.ACCEPTED, TransferStatus.SETTLED})


def return_refusal(
    original: StoredTransfer | None, caller: str, original_id: str
) -> FailedPrecondition | NotFound | None:
    """Whether `caller` may return `original` (its stored row: ACCEPTED or
    SETTLED as stored, whatever its cycle's state): the transfer exists for
    the caller (TRANSFER_NOT_FOUND), the caller is its creditor
    (NOT_TRANSFER_CREDITOR), it was netted or settled (not reserved,
    rejected, expired or cancelled) and is no return itself
    (TRANSFER_NOT_RETURNABLE), and it was not returned before
    (ALREADY_RETURNED)."""
    if original is None or not original.visible_to(caller):
        return NotFound(Reason.TRANSFER_NOT_FOUND, f"no transfer {original_id}")
    if original.creditor != caller:
        return FailedPrecondition(
            Reason.NOT_TRANSFER_CREDITOR, "only the creditor bank can return a transfer"
        )
    if original.return_of is not None:
        return FailedPrecondition(
            Reason.TRANSFER_NOT_RETURNABLE,
            "a return cannot be returned",
            transfer_id=original.transfer_id,
        )
    if original.status not in _RETURNABLE:
        return FailedPrecondition(
            Reason.TRANSFER_NOT_RETURNABLE,
            f"transfer {original.transfer_id} is {original.status.name.lower()}: "
            "only accepted or settled transfers can be returned",
            transfer_id=original.transfer_id,
        )
    if original.returned_by is not None:
        return FailedPrecondition(
            Reason.ALREADY_RETURNED,
            f"transfer {original.transfer_id} was returned by {original.returned_by}",
            transfer_id=original.transfer_id,
            return_id=original.returned_by,
        )
    return None


class ReturnRequest(NamedTuple):
    """What a returning bank sends (pacs.004): validated by `make_return`."""

    return_id: str
    original_id: str
    reason: str
    quote_id: str | None = None
    info: str = ""


def make_return(
    return_id: str, original_id: str, reason: str, quote_id: str = "", info: str = ""
) -> ReturnRequest:
    rid = canonical_uuid(return_id, "return_id") if return_id else ""
    if not rid:
        raise InvalidArgument(Reason.MISSING_FIELD, "return_id is required", field="return_id")
    oid = canonical_transfer_id(original_id)
    if rid == oid:
        raise InvalidArgument(
            Reason.INVALID_ARGUMENT, "a return needs an id of its own", field="return_id"
        )
    check_code(reason, RETURN_REASONS, field="reason", what="ExternalReturnReason1Code")
    check_text(info, field="remittance_info", limit=140, too_long=Reason.REMITTANCE_INFO_TOO_LONG)
    quote = canonical_uuid(quote_id, "quote_id") if quote_id else None
    return ReturnRequest(rid, oid, reason, quote, info)


def return_instruction(original: StoredTransfer, request: ReturnRequest) -> Instruction:
    """The return of `original` as an instruction the netting path clears:
    from its creditor back to its debtor, exactly what the creditor
    received (`credit_amount` in `credit_currency`), so a return never
    exceeds its original.

    Across currencies it needs a quote (RETURN_QUOTE_REQUIRED) that sells
    that amount into the original's source currency: a *new* quote, asked
    by the returning bank from any FX provider at today's rate, not the
    original's rate. A return can come days later; holding a provider to
    the original rate would hand the returning side a free option and
    leave the provider a position it never priced or funded, where a new
    quote is priced and funded (its provider's headroom is checked) like
    any conversion. The original debtor receives what that conversion
    yields, which the return's `creditor_amount` reports. The quote's
    terms are checked by the netting path as for any transfer (QUOTE_*)."""
    cross = original.creditor_currency is not None
    if cross and request.quote_id is None:
        raise FailedPrecondition(
            Reason.RETURN_QUOTE_REQUIRED,
            f"transfer {original.transfer_id} was converted: return it with a quote from "
            f"{original.credit_currency} to {original.currency} for {original.credit_amount}",
            currency=original.credit_currency,
            amount=str(original.credit_amount),
        )
    if not cross and request.quote_id is not None:
        raise InvalidArgument(
            Reason.INVALID_ARGUMENT,
            "a same-currency transfer is returned in its currency, without a quote",
            field="quote_id",
        )
    return Instruction(
        request.return_id,
        original.creditor,
        original.debtor,
        original.credit_currency,
        original.credit_amount,
        request.info,
        request.quote_id,
        False,
        False,
        0,
        original.transfer_id,
        request.reason,
    )


# --- recalls ---------------------------------------------------------------


class RecallState(IntEnum):
    """Values equal the proto enum's."""

    REQUESTED = 1  # awaiting the creditor's answer
    ACCEPTED = 2  # answered by a return (`return_id`)
    REJECTED = 3  # refused by the creditor, with a reason
    EXPIRED = 4  # unanswered within the window


@dataclass(frozen=True, slots=True)
class Recall:
    recall_id: str
    transfer_id: str
    debtor: str  # who asks (the transfer's debtor)
    creditor: str  # who answers
    reason: str  # ExternalCancellationReason1Code
    info: str
    state: RecallState
    requested_at: datetime
    deadline: datetime
    answered_at: datetime | None = None
    answer_reason: str | None = None  # a rejection's code
    return_id: str | None = None

    def visible_to(self, caller: str | None) -> bool:
        return caller is None or caller in (self.debtor, self.creditor)

    def same_request(self, other: RecallRequest) -> bool:
        return (
            self.transfer_id == other.transfer_id
            and self.reason == other.reason
            and self.info == other.info
        )

    def answered(
        self,
        state: RecallState,
        now: datetime,
        *,
        reason: str | None = None,
        return_id: str | None = None,
    ) -> Recall:
        return replace(
            self, state=state, answered_at=now, answer_reason=reason, return_id=return_id
        )

    def check_rejectable(self, caller: str, now: datetime) -> bool:
        """The creditor alone answers (NOT_TRANSFER_CREDITOR) an open recall
        (RECALL_NOT_OPEN). False: rejected already, a replay. An open one
        past its deadline is expired (RECALL_NOT_OPEN too)."""
        if self.creditor != caller:
            raise FailedPrecondition(
                Reason.NOT_TRANSFER_CREDITOR, "only the creditor bank answers a recall"
            )
        if self.state is RecallState.REJECTED:
            return False
        if self.state is not RecallState.REQUESTED or now >= self.deadline:
            raise FailedPrecondition(
                Reason.RECALL_NOT_OPEN,
                f"the recall of {self.transfer_id} is {self.state_at(now).name.lower()}",
                transfer_id=self.transfer_id,
            )
        return True

    def state_at(self, now: datetime) -> RecallState:
        if self.state is RecallState.REQUESTED and now >= self.deadline:
            return RecallState.EXPIRED
        return self.state


class RecallRequest(NamedTuple):
    recall_id: str
    transfer_id: str
    reason: str
    info: str = ""


def make_recall(recall_id: str, transfer_id: str, reason: str, info: str = "") -> RecallRequest:
    rid = canonical_uuid(recall_id, "recall_id") if recall_id else ""
    if not rid:
        raise InvalidArgument(Reason.MISSING_FIELD, "recall_id is required", field="recall_id")
    tid = canonical_transfer_id(transfer_id)
    check_code(reason, RECALL_REASONS, field="reason", what="ExternalCancellationReason1Code")
    check_text(
        info, field="additional_info", limit=MAX_RECALL_INFO, too_long=Reason.INVALID_ARGUMENT
    )
    return RecallRequest(rid, tid, reason, info)


def recall_refusal(
    t: StoredTransfer | None, caller: str, transfer_id: str
) -> FailedPrecondition | NotFound | None:
    """The debtor alone (NOT_TRANSFER_DEBTOR) recalls a transfer it can see
    (TRANSFER_NOT_FOUND) that the creditor holds: netted or settled, not a
    return, not returned (TRANSFER_NOT_RETURNABLE, ALREADY_RETURNED)."""
    if t is None or not t.visible_to(caller):
        return NotFound(Reason.TRANSFER_NOT_FOUND, f"no transfer {transfer_id}")
    if t.debtor != caller:
        return FailedPrecondition(
            Reason.NOT_TRANSFER_DEBTOR, "only the debtor bank can recall a transfer"
        )
    if t.status is TransferStatus.RESERVED:
        return FailedPrecondition(
            Reason.TRANSFER_NOT_RETURNABLE,
            "the transfer awaits the creditor's confirmation: cancel it instead",
            transfer_id=t.transfer_id,
        )
    if t.return_of is not None or t.status not in _RETURNABLE:
        return FailedPrecondition(
            Reason.TRANSFER_NOT_RETURNABLE,
            f"transfer {t.transfer_id} is {t.status.name.lower()}"
            + (" (a return)" if t.return_of is not None else "")
            + ": only accepted or settled transfers can be recalled",
            transfer_id=t.transfer_id,
        )
    if t.returned_by is not None:
        return FailedPrecondition(
            Reason.ALREADY_RETURNED,
            f"transfer {t.transfer_id} was returned by {t.returned_by}",
            transfer_id=t.transfer_id,
            return_id=t.returned_by,
        )
    return None


def check_cancel_reason(reason: str) -> str:
    """An operator's cancel carries a reason for the record."""
    if not reason.strip():
        raise InvalidArgument(
            Reason.MISSING_FIELD, "an operator cancel states its reason", field="reason"
        )
    return check_text(
        reason, field="reason", limit=MAX_CANCEL_REASON, too_long=Reason.INVALID_ARGUMENT
    )
