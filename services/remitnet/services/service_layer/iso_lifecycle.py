"""Returns and recalls in ISO 20022, mapped onto the lifecycle's use cases
(service_layer/lifecycle.py), whose rules they do not repeat: a pacs.004
is `return_transfers` (answered with a pacs.002), a camt.056 is
`recall_transfer` per transaction and a camt.029 rejection `reject_recall`
(each answered with the hub's camt.029); a debtor pulls the returns it
received as a pacs.004. Documents are domain values here; their bytes come
from the `render` the adapter passes in.

These are synchronous: the servicer runs each on the netting engine's
thread (`NettingEngine.run_serial`), as it runs the lifecycle's calls.
Idempotency is the message log's, as for a pacs.008: the answer is stored
by (bank, MsgId, or Assgnmt/Id for camt messages) after the calls it made
and returned again for the same document; a message whose answer was
never stored runs again, and each of its calls is then a replay (a return
by its id, a recall by its id, a rejection given before)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Final

from remitnet.services.domain.bic import primary
from remitnet.services.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Reason,
    RemitnetError,
)
from remitnet.services.domain.iso20022 import (
    AnsweredMessage,
    Report,
    TxRef,
    TxReport,
    minor_units,
)
from remitnet.services.domain.iso_lifecycle import (
    CAMT_029,
    CAMT_056,
    DEFAULT_RETURNS_PULLED,
    MAX_LIFECYCLE_TRANSACTIONS,
    MAX_RETURNS_PULLED,
    PACS_004,
    RECALL_ACCEPTED,
    RECALL_PENDING,
    RECALL_REJECTED,
    Camt029,
    Camt056,
    CancellationStatus,
    Pacs004,
    PaymentReturn,
    Resolution,
    ReturnNotice,
    ReturnsReport,
    decimal_text,
    id_from_max35,
)
from remitnet.services.domain.iso_status import (
    REJECTED,
    recall_refusal_code,
    recall_status,
    refusal_code,
    transfer_status,
)
from remitnet.services.domain.lifecycle import (
    RECALL_RETURN_REASON,
    Recall,
    ReturnRequest,
    make_recall,
    make_return,
)
from remitnet.services.domain.model import StoredTransfer, canonical_transfer_id
from remitnet.services.domain.netting import Accepted, Outcome, Rejected
from remitnet.services.service_layer import lifecycle
from remitnet.services.service_layer.iso20022 import (
    Answer,
    caller_unit,
    new_message_id,
    replay,
    store_unit,
)
from remitnet.services.service_layer.results import LifecycleRefused, ReturnsCleared
from remitnet.services.service_layer.unit_of_work import Transactions, UnitOfWork

RenderReport = Callable[[Report], bytes]
RenderResolution = Callable[[Resolution], bytes]
RenderReturns = Callable[[ReturnsReport], bytes]

# The hub's camt.029 Sts/Conf (ExternalInvestigationExecutionConfirmation1Code).
_CANCELLED: Final = "CNCL"

# The operation AnswerRecall's refusals are counted under (its metrics label).
ANSWER_RECALL: Final = "answer_recall"


# --- shared -----------------------------------------------------------------


def _check_count(count: int, declared: str | None, kind: str) -> None:
    if count > MAX_LIFECYCLE_TRANSACTIONS:
        raise InvalidArgument(
            Reason.BATCH_TOO_LARGE,
            f"a {kind} holds at most {MAX_LIFECYCLE_TRANSACTIONS} transactions, this one {count}",
            limit=str(MAX_LIFECYCLE_TRANSACTIONS),
        )
    if declared is not None and declared != str(count):
        raise InvalidArgument(
            Reason.INVALID_ARGUMENT,
            f"GrpHdr/NbOfTxs is {declared[:15]}, the message holds {count}",
            field="GrpHdr/NbOfTxs",
        )


def _check_own(bic: str, own: str, path: str) -> None:
    if primary(bic) != own:
        raise PermissionDenied(
            Reason.NOT_OWN_BIC,
            f"{path}: the agent {bic} is not the caller's BIC {own}; nothing was stored",
            bic=bic,
            path=path[-64:],
        )


def _required(value: str, path: str, field: str) -> str:
    if not value:
        raise InvalidArgument(Reason.MISSING_FIELD, f"{path}/{field} is required", field=field)
    return value


def _store(db: Transactions, answered: AnsweredMessage, region: str, digest: str) -> Answer:
    stored = db.write("iso_message", store_unit(answered, region))
    if stored is not answered:
        # Another call with this MsgId stored its answer first: its calls
        # were these (replays), its answer is the one.
        return replay(stored, digest)
    return Answer(answered.answer, False)


def _info(error: RemitnetError) -> str:
    return f"{error.reason}: {error}"


# --- pacs.004 in ------------------------------------------------------------


def _return_request(tx: PaymentReturn) -> ReturnRequest:
    original = _required(tx.ref.uetr, tx.path, "OrgnlUETR")
    return_id = id_from_max35(tx.return_id, "RtrId")
    reason = _required(tx.reason, tx.path, "RtrRsnInf/Rsn/Cd")
    return make_return(return_id, original, reason, "", tx.info)


def _amount_refusal(
    tx: PaymentReturn, original: StoredTransfer | None, caller: str
) -> RemitnetError | None:
    """What the lifecycle leaves to the message: RtrdIntrBkSttlmAmt is
    exactly what the creditor received. Only for the original's creditor
    (the lifecycle refuses anyone else, saying nothing of the transfer)."""
    if original is None or original.creditor != caller or original.return_of is not None:
        return None
    if original.creditor_currency is not None:
        # A pacs.004 has no element for the new quote a converted return
        # needs (README "Cross-currency returns take a new quote").
        return FailedPrecondition(
            Reason.RETURN_QUOTE_REQUIRED,
            f"transfer {original.transfer_id} was converted: its return needs a new quote, "
            "which a pacs.004 cannot carry yet; return it with ClearingService.ReturnTransfer",
            currency=original.credit_currency,
            amount=str(original.credit_amount),
        )
    expected = decimal_text(original.credit_amount, original.credit_currency)
    try:
        units = minor_units(tx.amount, tx.currency, field="RtrdIntrBkSttlmAmt")
    except RemitnetError as err:
        return err
    if tx.currency != original.credit_currency or units != original.credit_amount:
        return InvalidArgument(
            Reason.INVALID_AMOUNT,
            f"{tx.path}/RtrdIntrBkSttlmAmt must be what the creditor received, "
            f"{expected} {original.credit_currency}; got {tx.amount[:40]} {tx.currency}",
            field="RtrdIntrBkSttlmAmt",
        )
    return None


def submit_pacs004(
    db: Transactions,
    caller: str,
    message: Pacs004,
    digest: str,
    render: RenderReport,
    *,
    default_timeout_ms: int = 30_000,
) -> tuple[Answer, ReturnsCleared]:
    """The creditor `caller` returns the transfers of a schema-valid
    pacs.004 through `lifecycle.return_transfers`; the pacs.002 answer has
    one TxInfAndSts per TxInf (ACSP, or RJCT with its code). What was
    decided comes back as ReturnTransfer's result (one outcome per TxInf,
    a refusal of the message's own rules among them, and the recalls the
    returns answered), to be observed the same; empty for a replayed
    message, which decides nothing."""
    if not message.returns:
        raise InvalidArgument(
            Reason.INVALID_ARGUMENT,
            "a pacs.004 returns transfers in TxInf; it has none",
            field="TxInf",
        )
    _check_count(len(message.returns), message.declared_count, "pacs.004")
    for tx in message.returns:
        _required(tx.instructing_bic, tx.path, "InstgAgt/FinInstnId/BICFI")
    who = db.read(caller_unit(caller, message.msg_id, set()))
    if who.prior is not None:
        return replay(who.prior, digest), ReturnsCleared([])
    for tx in message.returns:
        _check_own(tx.instructing_bic, who.bic, tx.path)
    errors: dict[int, RemitnetError] = {}
    requests: dict[int, ReturnRequest] = {}
    for index, tx in enumerate(message.returns):
        try:
            requests[index] = _return_request(tx)
        except RemitnetError as err:
            errors[index] = err
    originals = db.read(
        lambda uow: uow.transfers.existing([r.original_id for r in requests.values()])
    )
    for index, request in list(requests.items()):
        error = _amount_refusal(message.returns[index], originals.get(request.original_id), caller)
        if error is not None:
            errors[index] = error
            del requests[index]
    outcomes: dict[int, Outcome] = {}
    recalls: list[Recall] = []
    if requests:
        returned = lifecycle.return_transfers(
            db, caller, list(requests.values()), default_timeout_ms=default_timeout_ms
        )
        outcomes = dict(zip(requests, returned.outcomes, strict=True))
        recalls = returned.recalls
    reports = []
    decided: list[Outcome] = []
    for index, tx in enumerate(message.returns):
        outcome = outcomes.get(index)
        if outcome is None:
            outcome = Rejected(errors[index])
        decided.append(outcome)
        if isinstance(outcome, Accepted):
            t = outcome.transfer
            status, code = transfer_status(t.status, None)
            reports.append(TxReport(tx.ref, status, code, accepted_at=t.accepted_at))
            continue
        error = outcome.error
        reports.append(TxReport(tx.ref, REJECTED, refusal_code(error.reason), _info(error)))
    now = datetime.now(UTC)
    document = render(
        Report(new_message_id(), now, message.msg_id, PACS_004, message.created_at, tuple(reports))
    )
    answered = AnsweredMessage(caller, message.msg_id, PACS_004, digest, document, now)
    return _store(db, answered, who.region, digest), ReturnsCleared(decided, recalls)


# --- camt.056 in ------------------------------------------------------------


def _recall_row(recall: Recall, ref: TxRef) -> CancellationStatus:
    status, code = recall_status(recall.state, recall.answer_reason)
    return CancellationStatus(ref, status, code)


def _confirmation(rows: Sequence[CancellationStatus]) -> str:
    """Sts/Conf of the whole: every recall refused (RJCR), every one
    answered by a return (CNCL), else pending with the creditor (PDCR)."""
    statuses = {r.status for r in rows}
    if statuses == {RECALL_REJECTED}:
        return RECALL_REJECTED
    if statuses == {RECALL_ACCEPTED}:
        return _CANCELLED
    return RECALL_PENDING


def submit_camt056(
    db: Transactions,
    caller: str,
    message: Camt056,
    digest: str,
    render: RenderResolution,
    *,
    window_s: float = 86_400.0,
) -> tuple[Answer, list[tuple[Recall, bool]]]:
    """The debtor `caller` recalls the transactions of a schema-valid
    camt.056, each through `lifecycle.recall_transfer`; the hub's camt.029
    answers each: PDCR (requested, the creditor's to answer), or the state
    of the recall it replays, or RJCR with the refusal's code."""
    if message.whole_groups or not message.recalls:
        raise InvalidArgument(
            Reason.INVALID_ARGUMENT,
            "each Undrlyg must name the transactions it recalls (TxInf with OrgnlUETR); "
            "a whole-message recall is not taken",
            field="Undrlyg/TxInf",
        )
    _check_count(len(message.recalls), None, "camt.056")
    assignment = "/Document/FIToFIPmtCxlReq/Assgnmt"
    _required(message.assigner_bic, assignment, "Assgnr/Agt/FinInstnId/BICFI")
    who = db.read(caller_unit(caller, message.msg_id, set()))
    if who.prior is not None:
        return replay(who.prior, digest), []
    _check_own(message.assigner_bic, who.bic, assignment + "/Assgnr")
    rows: list[CancellationStatus] = []
    made: list[tuple[Recall, bool]] = []
    for tx in message.recalls:
        try:
            request = make_recall(
                id_from_max35(tx.cancellation_id, "CxlId"),
                _required(tx.ref.uetr, tx.path, "OrgnlUETR"),
                _required(tx.reason, tx.path, "CxlRsnInf/Rsn/Cd"),
                tx.info,
            )
            recall, replayed = lifecycle.recall_transfer(db, caller, request, window_s=window_s)
        except RemitnetError as err:
            code = recall_refusal_code(err.reason)
            rows.append(CancellationStatus(tx.ref, RECALL_REJECTED, code, _info(err)))
            continue
        made.append((recall, replayed))
        rows.append(_recall_row(recall, tx.ref))
    now = datetime.now(UTC)
    document = render(
        Resolution(
            new_message_id(),
            now,
            who.bic,
            message.case_id or message.msg_id,
            _confirmation(rows),
            tuple(rows),
        )
    )
    answered = AnsweredMessage(caller, message.msg_id, CAMT_056, digest, document, now)
    return _store(db, answered, who.region, digest), made


# --- camt.029 in ------------------------------------------------------------


def _rejection(db: Transactions, caller: str, status: str, reason: str, uetr: str) -> Recall:
    if status == RECALL_ACCEPTED:
        raise InvalidArgument(
            Reason.INVALID_ARGUMENT,
            "a recall is accepted by returning the transfer: send the pacs.004 with "
            f"RtrRsnInf/Rsn/Cd {RECALL_RETURN_REASON}",
            field="TxCxlSts",
        )
    if status != RECALL_REJECTED:
        raise InvalidArgument(
            Reason.INVALID_ARGUMENT,
            f"TxCxlSts must be {RECALL_REJECTED} (a rejection); got {status[:4]!r}",
            field="TxCxlSts",
        )
    return lifecycle.reject_recall(db, caller, uetr, reason)


def submit_camt029(
    db: Transactions,
    caller: str,
    message: Camt029,
    digest: str,
    render: RenderResolution,
) -> tuple[Answer, list[Recall], LifecycleRefused]:
    """The creditor `caller` rejects recalls with a schema-valid camt.029,
    each TxInfAndSts through `lifecycle.reject_recall` (TxCxlSts RJCR and a
    CxlStsRsnInf/Rsn/Cd of RECALL_REJECT_REASONS); the hub's camt.029
    answers each: RJCR with the code recorded, or no TxCxlSts and the
    refusal's code (ACCR among them: acceptance is a pacs.004 FOCR). The
    recalls rejected (or found rejected before) and the refusals come back
    to be observed as AnswerRecall's; none for a replayed message."""
    if not message.answers:
        raise InvalidArgument(
            Reason.INVALID_ARGUMENT,
            "a camt.029 answers recalls in CxlDtls/TxInfAndSts; this one has none",
            field="CxlDtls/TxInfAndSts",
        )
    _check_count(len(message.answers), None, "camt.029")
    assignment = "/Document/RsltnOfInvstgtn/Assgnmt"
    _required(message.assigner_bic, assignment, "Assgnr/Agt/FinInstnId/BICFI")
    who = db.read(caller_unit(caller, message.msg_id, set()))
    if who.prior is not None:
        return replay(who.prior, digest), [], LifecycleRefused(ANSWER_RECALL, {})
    _check_own(message.assigner_bic, who.bic, assignment + "/Assgnr")
    rows: list[CancellationStatus] = []
    answered_recalls: list[Recall] = []
    refusals: list[RemitnetError] = []
    for tx in message.answers:
        try:
            uetr = _required(tx.ref.uetr, tx.path, "OrgnlUETR")
            if tx.status == RECALL_REJECTED:
                _required(tx.reason, tx.path, "CxlStsRsnInf/Rsn/Cd")
            recall = _rejection(db, caller, tx.status, tx.reason, uetr)
        except RemitnetError as err:
            refusals.append(err)
            rows.append(CancellationStatus(tx.ref, "", recall_refusal_code(err.reason), _info(err)))
            continue
        answered_recalls.append(recall)
        rows.append(_recall_row(recall, tx.ref))
    now = datetime.now(UTC)
    document = render(
        Resolution(
            new_message_id(),
            now,
            who.bic,
            message.case_id or message.msg_id,
            RECALL_REJECTED,
            tuple(rows),
        )
    )
    answered = AnsweredMessage(caller, message.msg_id, CAMT_029, digest, document, now)
    refused = LifecycleRefused.of(ANSWER_RECALL, refusals)
    return _store(db, answered, who.region, digest), answered_recalls, refused


# --- pacs.004 out -----------------------------------------------------------


def _received(uow: UnitOfWork, caller: str, limit: int) -> list[StoredTransfer]:
    """The newest `limit` returns `caller` received, paging its listing
    (which holds what it sent too)."""
    out: list[StoredTransfer] = []
    before: tuple[datetime, str] | None = None
    while len(out) < limit:
        page = uow.views.list_transfers(
            bank=caller,
            counterparty="",
            cycle_id="",
            status=None,
            before=before,
            limit=limit,
            kind="return",
        )
        out += [t for t, _ in page if t.creditor == caller][: limit - len(out)]
        if len(page) < limit:
            break
        last = page[-1][0]
        before = (last.accepted_at, last.transfer_id)
    return out


def returns_received(
    db: Transactions,
    caller: str,
    original_ids: Sequence[str],
    limit: int,
    render: RenderReturns,
) -> bytes:
    """The pacs.004 of the returns the debtor `caller` received: of
    `original_ids` (those the caller is the debtor of and that were
    returned), or else its newest `limit` (0: DEFAULT_RETURNS_PULLED).
    Reads only."""
    if len(original_ids) > MAX_RETURNS_PULLED:
        raise InvalidArgument(
            Reason.BATCH_TOO_LARGE,
            f"at most {MAX_RETURNS_PULLED} original UETRs per call, got {len(original_ids)}",
            limit=str(MAX_RETURNS_PULLED),
        )
    if not 0 <= limit <= MAX_RETURNS_PULLED:
        raise InvalidArgument(
            Reason.INVALID_ARGUMENT,
            f"limit must be within 0..{MAX_RETURNS_PULLED}, got {limit}",
            field="limit",
        )
    ids = [canonical_transfer_id(i) for i in original_ids]

    def unit(uow: UnitOfWork) -> tuple[ReturnNotice, ...]:
        bank = uow.banks.get(caller)
        if bank is None or not bank.bic:
            raise FailedPrecondition(
                Reason.BANK_HAS_NO_BIC, f"bank {caller} has no BIC", bank=caller
            )
        if ids:
            asked = uow.transfers.existing(ids)
            mine = [asked[i] for i in ids if i in asked and asked[i].debtor == caller]
            by_id = uow.transfers.existing([t.returned_by for t in mine if t.returned_by])
            returns = [by_id[t.returned_by] for t in mine if t.returned_by in by_id]
            originals = {t.transfer_id: t for t in mine}
        else:
            returns = _received(uow, caller, limit or DEFAULT_RETURNS_PULLED)
            originals = uow.transfers.existing([t.return_of for t in returns if t.return_of])
        bics = {code: "" for t in returns for code in (t.debtor, t.creditor)}
        for code in bics:
            found = uow.banks.get(code)
            bics[code] = found.bic if found is not None and found.bic else ""
        out = []
        for r in returns:
            o = originals.get(r.return_of or "")
            if o is None:
                continue  # pragma: no cover - a return's original is always stored
            out.append(
                ReturnNotice(
                    return_id=r.transfer_id,
                    original_id=o.transfer_id,
                    original_amount=decimal_text(o.amount, o.currency),
                    original_currency=o.currency,
                    # What the receiving bank is credited, in its currency.
                    amount=decimal_text(r.credit_amount, r.credit_currency),
                    currency=r.credit_currency,
                    reason=r.reason or "",
                    returning_bic=bics[r.debtor],
                    receiving_bic=bics[r.creditor],
                    returned_at=r.accepted_at,
                    info=r.remittance_info,
                )
            )
        return tuple(out)

    notices = db.read(unit)
    return render(ReturnsReport(new_message_id(), datetime.now(UTC), notices))
