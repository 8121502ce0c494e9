"""ISO 20022 use cases: a pacs.008 cleared through the netting engine's
batch path (the same instructions, checks and idempotency as
SubmitTransfers) and answered with a pacs.002; a pacs.028 answered with the
current statuses. Documents are parsed, checked against their schemas and
built by the adapter (adapters/iso20022); here they are domain values, and
the answer's bytes come from the `render` the adapter passes in.

Idempotency: the answer to each message is stored by (bank, MsgId) in the
message log, after its transfers cleared and before it is returned. The
same message again is answered from the log; one whose answer was never
stored (the hub stopped in between) clears again, and each of its
transfers is then a replay of the one stored under its UETR, so nothing
clears twice."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

from remitnet.services.domain.bic import primary
from remitnet.services.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    RemitnetError,
)
from remitnet.services.domain.fx import Quote
from remitnet.services.domain.iso20022 import (
    PACS_008,
    PACS_028,
    AnsweredMessage,
    CreditTransfer,
    Pacs008,
    Report,
    StatusRequest,
    TxReport,
    check_conversion,
    minor_units,
    quote_id,
    remittance_info,
)
from remitnet.services.domain.iso_status import REJECTED, refusal_code, transfer_status
from remitnet.services.domain.model import (
    Instruction,
    canonical_uuid,
    effective_status,
    make_instruction,
)
from remitnet.services.domain.netting import Accepted, Outcome
from remitnet.services.service_layer.results import Observer, TransfersRefused
from remitnet.services.service_layer.unit_of_work import Transactions, UnitOfWork

# Transactions per pacs.008, as per SubmitTransfers call; status requests.
MAX_TRANSACTIONS: Final = 5_000
MAX_STATUS_QUERIES: Final = 1_000

Render = Callable[[Report], bytes]


class Clearing(Protocol):
    """What the use case needs of the netting engine."""

    def check_room(self, bank: str, n: int) -> None: ...
    async def submit(
        self, items: Sequence[Instruction], bank: str | None = None
    ) -> list[Outcome]: ...


@dataclass(frozen=True, slots=True)
class Answer:
    document: bytes
    replayed: bool


@dataclass(frozen=True, slots=True)
class _Caller:
    bic: str
    region: str
    prior: AnsweredMessage | None
    codes: dict[str, str]  # BIC -> participant code, of the message's agents
    quotes: dict[str, Quote]  # the quotes its transactions name, that exist


def new_message_id() -> str:
    """A MsgId of the hub's own (Max35Text): unique without a sequence."""
    return "RMTN" + uuid.uuid4().hex[:31]


def caller_unit(
    caller: str, msg_id: str, bics: set[str], quote_ids: frozenset[str] = frozenset()
) -> Callable[[UnitOfWork], _Caller]:
    def unit(uow: UnitOfWork) -> _Caller:
        bank = uow.banks.get(caller)
        if bank is None or not bank.bic:
            raise FailedPrecondition(
                Reason.BANK_HAS_NO_BIC,
                f"bank {caller} has no BIC: onboard it with one to use ISO 20022",
                bank=caller,
            )
        prior = uow.messages.get(caller, msg_id) if msg_id else None
        codes = uow.banks.codes_by_bic(bics) if bics and prior is None else {}
        quotes = uow.quotes.get_many(quote_ids) if quote_ids and prior is None else {}
        return _Caller(bank.bic, bank.home_region, prior, codes, quotes)

    return unit


def check_shape(message: Pacs008) -> None:
    """The message-level rules no database is needed for (iso20022.proto)."""
    count = len(message.transfers)
    if count > MAX_TRANSACTIONS:
        raise InvalidArgument(
            Reason.BATCH_TOO_LARGE,
            f"a pacs.008 holds at most {MAX_TRANSACTIONS} CdtTrfTxInf, this one {count}",
            limit=str(MAX_TRANSACTIONS),
        )
    if message.declared_count != str(count):
        raise InvalidArgument(
            Reason.INVALID_ARGUMENT,
            f"GrpHdr/NbOfTxs is {message.declared_count[:15]}, the message holds {count}",
            field="GrpHdr/NbOfTxs",
        )
    for index, tx in enumerate(message.transfers):
        if not tx.ref.uetr:
            raise InvalidArgument(
                Reason.MISSING_FIELD,
                f"{tx.path}/PmtId/UETR is required: it is the transfer id",
                field="PmtId/UETR",
                index=str(index),
            )
        if not tx.instructing_bic:
            raise InvalidArgument(
                Reason.MISSING_FIELD,
                f"{tx.path}: an instructing agent BICFI (its InstgAgt or GrpHdr/InstgAgt) "
                "is required",
                field="InstgAgt/FinInstnId/BICFI",
                index=str(index),
            )


def _check_instructing(message: Pacs008, own_bic: str) -> None:
    for tx in message.transfers:
        if primary(tx.instructing_bic) != own_bic:
            raise PermissionDenied(
                Reason.NOT_OWN_BIC,
                f"{tx.path}: the instructing agent {tx.instructing_bic} is not the caller's "
                f"BIC {own_bic}; nothing was stored",
                bic=tx.instructing_bic,
                path=tx.path[-64:],
            )


def _quote_ids(message: Pacs008) -> frozenset[str]:
    """The canonical ids of the quotes the transactions name; one that is no
    UUID is refused with its transaction (make_instruction)."""
    ids = set()
    for tx in message.transfers:
        for raw in tx.quotes:
            with contextlib.suppress(RemitnetError):
                ids.add(canonical_uuid(raw, "quote_id"))
    return frozenset(ids)


def _instruction(
    tx: CreditTransfer,
    debtor: str,
    who: _Caller,
    max_timeout_ms: int,
) -> Instruction:
    if not tx.creditor_bic:
        raise InvalidArgument(
            Reason.MISSING_FIELD,
            f"{tx.path}/CdtrAgt/FinInstnId/BICFI is required: it names the creditor bank",
            field="CdtrAgt/FinInstnId/BICFI",
        )
    creditor = who.codes.get(primary(tx.creditor_bic))
    if creditor is None:
        raise NotFound(
            Reason.UNKNOWN_PARTICIPANT,
            f"no participant has the creditor agent's BIC {tx.creditor_bic}",
            bank=tx.creditor_bic,
        )
    instruction = make_instruction(
        transfer_id=tx.ref.uetr,
        debtor=debtor,
        creditor=creditor,
        currency=tx.currency,
        amount=minor_units(tx.amount, tx.currency),
        remittance_info=remittance_info(tx.remittance),
        quote_id=quote_id(tx),
        max_timeout_ms=max_timeout_ms,
        purpose=tx.purpose,
    )
    if instruction.quote_id is None:
        check_conversion(tx, None)
    else:
        # A quote that is missing or another bank's is refused by the engine
        # as for SubmitTransfers (QUOTE_NOT_FOUND, QUOTE_NOT_OWNED), without
        # telling the caller its terms. Terms never change once quoted, so
        # checking them outside the clearing transaction is safe.
        quote = who.quotes.get(instruction.quote_id)
        if quote is not None and quote.bank == debtor:
            check_conversion(tx, quote.terms)
    return instruction


def _refused(tx: CreditTransfer, error: RemitnetError) -> TxReport:
    return TxReport(tx.ref, REJECTED, refusal_code(error.reason), f"{error.reason}: {error}")


def _report(tx: CreditTransfer, outcome: Outcome) -> TxReport:
    if isinstance(outcome, Accepted):
        t = outcome.transfer
        status, code = transfer_status(t.status, t.reason)
        return TxReport(tx.ref, status, code, accepted_at=t.accepted_at)
    return _refused(tx, outcome.error)


async def submit_pacs008(
    db: Transactions,
    engine: Clearing,
    caller: str,
    message: Pacs008,
    digest: str,
    render: Render,
    *,
    max_timeout_ms: int | None = None,
    observer: Observer | None = None,
) -> Answer:
    """Clear the transfers of a schema-valid pacs.008 of bank `caller`
    (`digest`: SHA-256 of its bytes) and answer with the pacs.002 `render`
    builds; a message-level failure raises before anything is stored."""
    check_shape(message)
    bics = {primary(tx.creditor_bic) for tx in message.transfers if tx.creditor_bic}
    quotes = _quote_ids(message)
    who = await asyncio.to_thread(db.read, caller_unit(caller, message.msg_id, bics, quotes))
    if who.prior is not None:
        return replay(who.prior, digest)
    _check_instructing(message, who.bic)
    errors: dict[int, RemitnetError] = {}
    valid: list[Instruction] = []
    for index, tx in enumerate(message.transfers):
        try:
            valid.append(_instruction(tx, caller, who, max_timeout_ms or 0))
        except RemitnetError as err:
            errors[index] = err
    if errors and observer is not None:
        observer.observe(TransfersRefused.of(errors.values()))
    outcomes: list[Outcome] = []
    if valid:
        engine.check_room(caller, len(valid))
        outcomes = await engine.submit(valid, caller)
    decided = iter(outcomes)
    reports = []
    for index, tx in enumerate(message.transfers):
        error = errors.get(index)
        reports.append(_refused(tx, error) if error is not None else _report(tx, next(decided)))
    now = datetime.now(UTC)
    document = render(
        Report(new_message_id(), now, message.msg_id, PACS_008, message.created_at, tuple(reports))
    )
    answered = AnsweredMessage(caller, message.msg_id, PACS_008, digest, document, now)
    stored = await asyncio.to_thread(db.write, "iso_message", store_unit(answered, who.region))
    if stored is not answered:
        # Another call with the same MsgId stored its answer first: its
        # transfers were these (replays by UETR), its answer is the one.
        return replay(stored, digest)
    return Answer(document, False)


def replay(prior: AnsweredMessage, digest: str) -> Answer:
    if prior.digest != digest:
        raise AlreadyExists(
            Reason.DUPLICATE_WITH_DIFFERENT_CONTENT,
            f"MsgId {prior.msg_id} was sent before with other content",
        )
    return Answer(prior.answer, True)


def store_unit(answered: AnsweredMessage, region: str) -> Callable[[UnitOfWork], AnsweredMessage]:
    def unit(uow: UnitOfWork) -> AnsweredMessage:
        existing = uow.messages.get(answered.bank, answered.msg_id)
        if existing is not None:
            return existing
        uow.messages.add(answered, region)
        return answered

    return unit


def status_report(db: Transactions, caller: str, request: StatusRequest, render: Render) -> bytes:
    """The pacs.002 with the current status of each transaction a pacs.028
    asks for (by OrgnlUETR). Reads only."""
    count = len(request.refs)
    if count > MAX_STATUS_QUERIES:
        raise InvalidArgument(
            Reason.BATCH_TOO_LARGE,
            f"a pacs.028 asks for at most {MAX_STATUS_QUERIES} transactions, this one {count}",
            limit=str(MAX_STATUS_QUERIES),
        )
    for index, ref in enumerate(request.refs):
        if not ref.uetr:
            raise InvalidArgument(
                Reason.MISSING_FIELD,
                f"/Document/FIToFIPmtStsReq/TxInf[{index + 1}]/OrgnlUETR is required",
                field="TxInf/OrgnlUETR",
                index=str(index),
            )

    def unit(uow: UnitOfWork) -> tuple[TxReport, ...]:
        bank = uow.banks.get(caller)
        if bank is None or not bank.bic:
            raise FailedPrecondition(
                Reason.BANK_HAS_NO_BIC, f"bank {caller} has no BIC", bank=caller
            )
        if request.requester_bic and primary(request.requester_bic) != bank.bic:
            raise PermissionDenied(
                Reason.NOT_OWN_BIC,
                f"the requesting agent {request.requester_bic} is not the caller's BIC {bank.bic}",
                bic=request.requester_bic,
                path="/Document/FIToFIPmtStsReq/GrpHdr/InstgAgt",
            )
        found = uow.transfers.existing([r.uetr for r in request.refs])
        cycles = {c for t in found.values() for c in (t.cycle_id, t.creditor_cycle_id) if c}
        states = uow.cycles.states(cycles) if cycles else {}
        out = []
        for ref in request.refs:
            t = found.get(ref.uetr)
            if t is None or not t.visible_to(caller):
                code = refusal_code(Reason.TRANSFER_NOT_FOUND)
                out.append(TxReport(ref, REJECTED, code, f"no transfer {ref.uetr} of {caller}"))
                continue
            legs = [states[c] for c in (t.cycle_id, t.creditor_cycle_id) if c in states]
            status, code = transfer_status(effective_status(t.status, *legs), t.reason)
            out.append(TxReport(ref, status, code, accepted_at=t.accepted_at))
        return tuple(out)

    reports = db.read(unit)
    # The report is about the original pacs.008 where the request names it,
    # else about the request itself.
    if request.original_msg_id:
        original, kind, created = request.original_msg_id, PACS_008, ""
    else:
        original, kind, created = request.msg_id, PACS_028, request.created_at
    return render(Report(new_message_id(), datetime.now(UTC), original, kind, created, reports))
