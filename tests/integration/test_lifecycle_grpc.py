"""The scheme lifecycle through a real gRPC hub on SQLite: payee
confirmation (reserve, accept, reject, replays, the hub's own expiry with
no request arriving), returns, recalls and their answers, cancels (the
debtor's of a reserved transfer, the operator's with a reason), the
operator's confirmation setting, the status stream's RESERVED and recall
events, and bad input: each refusal with its status and reason, and
nothing stored."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.bank import BankClient
from remitnet.clients.errors import HubError
from remitnet.common.v1.money_pb2 import Money
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.participants.v1 import participants_pb2 as ppb
from remitnet.participants.v1 import participants_pb2_grpc as ppb_grpc
from remitnet.services.adapters.db.schema import (
    accounts,
    events,
    operator_audit_log,
    recalls,
    transfers,
)
from remitnet.services.domain.errors import Reason
from remitnet.services.service_layer.lifecycle import LifecycleConfig
from tests.support import HubHandle, counts, start_hub

D, C, T = "DEBTORBK01", "CREDITBK01", "THIRDBK01"  # C requires confirmation
FUNDS = 1_000_000
ACCEPT, REJECT = cpb.CONFIRMATION_DECISION_ACCEPT, cpb.CONFIRMATION_DECISION_REJECT

Status = tuple[grpc.StatusCode, str]
INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def new_id() -> str:
    return str(uuid.uuid4())


async def _hub(url: str, **lifecycle: Any) -> HubHandle:
    config = LifecycleConfig(**{"expiry_interval_s": 0.05, **lifecycle})
    hub = await start_hub(url, lifecycle=config)
    op = hub.operator
    await op.call(
        op.participants.CreateBank,
        ppb.CreateBankRequest(
            code=C,
            name="Creditor",
            home_region="us-east1",
            currencies=["USD"],
            requires_confirmation=True,
        ),
    )
    for code in (D, T):
        await op.create_bank(code, code, "us-east1", ["USD"])
    for code in (D, C, T):
        await op.deposit(code, "USD", FUNDS)
    return hub


@pytest.fixture
async def lc(sqlite_url: str) -> AsyncIterator[HubHandle]:
    hub = await _hub(sqlite_url)
    try:
        yield hub
    finally:
        await hub.stop()


async def _refused(call: Awaitable[Any]) -> Status:
    with pytest.raises(HubError) as err:
        await call
    return err.value.code, err.value.reason


async def _metadata(call: Awaitable[Any]) -> dict[str, str]:
    with pytest.raises(HubError) as err:
        await call
    return dict(err.value.metadata)


def _stored(hub: HubHandle) -> tuple[object, ...]:
    """Everything a refused call must leave as it was: the counts of
    `tests.support.counts`, every account's reservation, every transfer's
    and recall's state, the feed and the operator trail."""

    def read(uow: Any) -> tuple[object, ...]:
        conn = uow.conn
        held = conn.execute(select(accounts.c.id, accounts.c.reserved).order_by(accounts.c.id))
        rows = conn.execute(
            select(
                transfers.c.id,
                transfers.c.status,
                transfers.c.reason,
                transfers.c.returned_by,
            ).order_by(transfers.c.id)
        )
        asked = conn.execute(select(recalls.c.id, recalls.c.state).order_by(recalls.c.id))
        feed = conn.execute(select(func.count()).select_from(events)).scalar_one()
        trail = conn.execute(select(func.count()).select_from(operator_audit_log)).scalar_one()
        return (
            tuple(map(tuple, held)),
            tuple(map(tuple, rows)),
            tuple(map(tuple, asked)),
            feed,
            trail,
        )

    return (counts(hub.db), hub.db.read(read))


async def _unchanged(hub: HubHandle, call: Awaitable[Any], expected: Status) -> None:
    before = _stored(hub)
    assert await _refused(call) == expected
    assert _stored(hub) == before


def _instruction(
    creditor: str,
    amount: int = 100,
    *,
    confirm: bool = False,
    timeout: timedelta | None = None,
    gross: bool = False,
) -> cpb.TransferInstruction:
    item = cpb.TransferInstruction(
        transfer_id=new_id(),
        creditor_bank=creditor,
        amount=Money(currency="USD", minor_units=amount),
        require_confirmation=confirm,
        settlement_mode=cpb.SETTLEMENT_MODE_GROSS if gross else cpb.SETTLEMENT_MODE_NETTED,
    )
    if timeout is not None:
        item.confirmation_timeout.FromTimedelta(timeout)
    return item


async def _submit(bank: BankClient, item: cpb.TransferInstruction) -> cpb.Transfer:
    response = await bank.call(
        bank.clearing.SubmitTransfer, cpb.SubmitTransferRequest(transfer=item)
    )
    return response.transfer


def _confirm(
    bank: BankClient, transfer_id: str, decision: int, reason: str = ""
) -> Awaitable[cpb.ConfirmTransferResponse]:
    request = cpb.ConfirmTransferRequest(
        transfer_id=transfer_id,
        decision=decision,  # type: ignore[arg-type]
        reason=reason,
    )
    return bank.call(bank.clearing.ConfirmTransfer, request)


def _return(
    bank: BankClient, transfer_id: str, reason: str, return_id: str | None = None
) -> Awaitable[cpb.ReturnTransferResponse]:
    request = cpb.ReturnTransferRequest(
        return_id=return_id or new_id(), transfer_id=transfer_id, reason=reason
    )
    return bank.call(bank.clearing.ReturnTransfer, request)


def _recall(
    bank: BankClient, transfer_id: str, reason: str, recall_id: str | None = None, info: str = ""
) -> Awaitable[cpb.RecallTransferResponse]:
    request = cpb.RecallTransferRequest(
        recall_id=recall_id or new_id(),
        transfer_id=transfer_id,
        reason=reason,
        additional_info=info,
    )
    return bank.call(bank.clearing.RecallTransfer, request)


def _answer(
    bank: BankClient, transfer_id: str, decision: int, *, reason: str = "", return_id: str = ""
) -> Awaitable[cpb.AnswerRecallResponse]:
    request = cpb.AnswerRecallRequest(
        transfer_id=transfer_id,
        decision=decision,  # type: ignore[arg-type]
        reason=reason,
        return_id=return_id,
    )
    return bank.call(bank.clearing.AnswerRecall, request)


async def _get(bank: BankClient, transfer_id: str) -> cpb.Transfer:
    response = await bank.call(
        bank.clearing.GetTransfer, cpb.GetTransferRequest(transfer_id=transfer_id)
    )
    return response.transfer


async def _list(bank: BankClient, **filters: Any) -> list[str]:
    response = await bank.call(
        bank.clearing.ListTransfers, cpb.ListTransfersRequest(page_size=1000, **filters)
    )
    return [t.transfer_id for t in response.transfers]


async def _usd(hub: HubHandle, code: str) -> npb.CurrencyPosition:
    op = hub.operator
    response = await op.call(
        op.netting.GetPosition, npb.GetPositionRequest(bank_code=code, currency="USD")
    )
    return response.positions[0]


async def _held(hub: HubHandle, code: str) -> tuple[int, int, int]:
    """(reserved, unsettled net, headroom) of `code` in USD."""
    p = await _usd(hub, code)
    return p.reserved, p.unsettled_net, p.headroom


def _operator_cancel(
    hub: HubHandle, transfer_id: str, reason: str
) -> Awaitable[npb.CancelTransferResponse]:
    op = hub.operator
    request = npb.CancelTransferRequest(transfer_id=transfer_id, reason=reason)
    return op.call(op.netting.CancelTransfer, request)


# Payee confirmation --------------------------------------------------------------


async def test_a_reserved_transfer_is_accepted_or_rejected_once(lc: HubHandle) -> None:
    d, c = lc.bank(D), lc.bank(C)
    assert (await lc.operator.get_bank(C)).requires_confirmation
    assert not (await lc.operator.get_bank(D)).requires_confirmation
    t1 = await _submit(d, _instruction(C, 100))
    assert t1.status == cpb.TRANSFER_STATUS_RESERVED
    assert (t1.cycle_id, t1.creditor_cycle_id) == ("", "")
    deadline = t1.confirmation_deadline.ToDatetime(tzinfo=UTC)
    accepted_at = t1.accepted_at.ToDatetime(tzinfo=UTC)
    assert deadline - accepted_at == timedelta(seconds=30)  # the hub's default
    assert not t1.HasField("resolved_at")
    # The debtor's headroom is held; no position is taken on either side.
    assert await _held(lc, D) == (100, 0, FUNDS - 100)
    assert await _held(lc, C) == (0, 0, FUNDS)
    assert await _list(c, status=cpb.TRANSFER_STATUS_RESERVED) == [t1.transfer_id]

    accepted = await _confirm(c, t1.transfer_id, ACCEPT)
    assert not accepted.replayed
    assert accepted.transfer.status == cpb.TRANSFER_STATUS_ACCEPTED
    assert accepted.transfer.cycle_id == "USD-000001"
    assert accepted.transfer.HasField("resolved_at")
    assert accepted.transfer.confirmation_deadline == t1.confirmation_deadline
    assert await _held(lc, D) == (0, -100, FUNDS - 100)  # what was held is now its position
    assert await _held(lc, C) == (0, 100, FUNDS + 100)
    again = await _confirm(c, t1.transfer_id, ACCEPT)
    assert again.replayed and again.transfer.status == cpb.TRANSFER_STATUS_ACCEPTED
    await _unchanged(
        lc,
        _confirm(c, t1.transfer_id, REJECT, "AC04"),
        (PRECONDITION, Reason.TRANSFER_ALREADY_ACCEPTED),
    )

    t2 = await _submit(d, _instruction(C, 250))
    assert await _held(lc, D) == (250, -100, FUNDS - 350)
    rejected = await _confirm(c, t2.transfer_id, REJECT, "AC04")
    assert rejected.transfer.status == cpb.TRANSFER_STATUS_REJECTED
    assert rejected.transfer.reason == "AC04"
    assert rejected.transfer.cycle_id == ""
    assert await _held(lc, D) == (0, -100, FUNDS - 100)  # released exactly
    got = await _get(d, t2.transfer_id)
    assert (got.status, got.reason) == (cpb.TRANSFER_STATUS_REJECTED, "AC04")
    # A second rejection is a replay (the first reason stands); an
    # acceptance after it is refused with its reason.
    replay = await _confirm(c, t2.transfer_id, REJECT, "BE01")
    assert replay.replayed and replay.transfer.reason == "AC04"
    await _unchanged(
        lc, _confirm(c, t2.transfer_id, ACCEPT), (PRECONDITION, Reason.TRANSFER_REJECTED)
    )
    assert await _list(c, status=cpb.TRANSFER_STATUS_REJECTED) == [t2.transfer_id]


async def test_confirm_transfers_answers_each_item(lc: HubHandle) -> None:
    d, c = lc.bank(D), lc.bank(C)
    a = await _submit(d, _instruction(C, 10))
    b = await _submit(d, _instruction(C, 20))
    pending = await _submit(d, _instruction(C, 30))
    unknown = new_id()
    items = [
        cpb.ConfirmTransferRequest(transfer_id=a.transfer_id, decision=ACCEPT),
        cpb.ConfirmTransferRequest(transfer_id=b.transfer_id, decision=REJECT, reason="AM05"),
        cpb.ConfirmTransferRequest(transfer_id=a.transfer_id, decision=ACCEPT),  # again
        cpb.ConfirmTransferRequest(transfer_id=pending.transfer_id, decision=REJECT, reason="ZZ99"),
        cpb.ConfirmTransferRequest(transfer_id=unknown, decision=ACCEPT),
        cpb.ConfirmTransferRequest(transfer_id="not-a-uuid", decision=ACCEPT),
    ]
    response = await c.call(
        c.clearing.ConfirmTransfers, cpb.ConfirmTransfersRequest(confirmations=items)
    )
    assert (response.accepted_count, response.rejected_count) == (3, 3)
    r = response.results
    assert [x.WhichOneof("outcome") for x in r] == [
        "transfer",
        "transfer",
        "transfer",
        "error",
        "error",
        "error",
    ]
    assert r[0].transfer.status == cpb.TRANSFER_STATUS_ACCEPTED and not r[0].replayed
    assert (r[1].transfer.status, r[1].transfer.reason) == (cpb.TRANSFER_STATUS_REJECTED, "AM05")
    assert r[2].replayed and r[2].transfer.transfer_id == a.transfer_id
    assert (r[3].transfer_id, r[3].error.code, r[3].error.reason) == (
        pending.transfer_id,
        INVALID.value[0],
        Reason.UNKNOWN_REASON_CODE,
    )
    assert (r[4].error.code, r[4].error.reason) == (
        grpc.StatusCode.NOT_FOUND.value[0],
        Reason.TRANSFER_NOT_FOUND,
    )
    assert r[5].error.reason == Reason.INVALID_TRANSFER_ID
    assert (await _get(d, pending.transfer_id)).status == cpb.TRANSFER_STATUS_RESERVED
    assert await _held(lc, D) == (30, -10, FUNDS - 40)
    empty = cpb.ConfirmTransfersRequest()
    await _unchanged(lc, c.call(c.clearing.ConfirmTransfers, empty), (INVALID, Reason.EMPTY_BATCH))
    too_many = cpb.ConfirmTransfersRequest(confirmations=[items[0]] * 5_001)
    await _unchanged(
        lc, c.call(c.clearing.ConfirmTransfers, too_many), (INVALID, Reason.BATCH_TOO_LARGE)
    )


async def test_the_hub_expires_a_reservation_with_no_request(lc: HubHandle) -> None:
    d, c = lc.bank(D), lc.bank(C)
    # Asking for a deadline asks for confirmation: to T, which does not require it.
    t = await _submit(d, _instruction(T, 500, timeout=timedelta(milliseconds=300)))
    assert t.status == cpb.TRANSFER_STATUS_RESERVED
    deadline = t.confirmation_deadline.ToDatetime(tzinfo=UTC)
    assert deadline - t.accepted_at.ToDatetime(tzinfo=UTC) == timedelta(milliseconds=300)
    assert (await _held(lc, D))[0] == 500
    # Nobody calls anything: the hub's expirer releases it.
    for _ in range(100):
        got = await _get(d, t.transfer_id)
        if got.status != cpb.TRANSFER_STATUS_RESERVED:
            break
        await asyncio.sleep(0.05)
    assert (got.status, got.reason) == (cpb.TRANSFER_STATUS_EXPIRED, "AB05")
    assert got.resolved_at.ToDatetime(tzinfo=UTC) >= deadline
    assert await _held(lc, D) == (0, 0, FUNDS)
    await _unchanged(
        lc, _confirm(lc.bank(T), t.transfer_id, ACCEPT), (PRECONDITION, Reason.TRANSFER_EXPIRED)
    )
    assert await _list(d, status=cpb.TRANSFER_STATUS_EXPIRED) == [t.transfer_id]
    # The creditor's own setting with a per-transfer timeout below the maximum.
    short = await _submit(d, _instruction(C, 1, timeout=timedelta(seconds=1.5)))
    assert short.confirmation_deadline.ToDatetime(tzinfo=UTC) - short.accepted_at.ToDatetime(
        tzinfo=UTC
    ) == timedelta(seconds=1.5)
    # A rejection after the deadline is refused too (the hub expired it).
    await asyncio.sleep(1.7)
    assert await _refused(_confirm(c, short.transfer_id, REJECT, "AC01")) == (
        PRECONDITION,
        Reason.TRANSFER_EXPIRED,
    )


# Returns -------------------------------------------------------------------------


async def test_a_transfer_is_returned_once_whole(lc: HubHandle) -> None:
    d, t3 = lc.bank(D), lc.bank(T)
    t = await _submit(d, _instruction(T, 700))  # netted at once: T requires nothing
    assert t.status == cpb.TRANSFER_STATUS_ACCEPTED and not t.HasField("confirmation_deadline")
    return_id = new_id()
    await _unchanged(
        lc, _return(d, t.transfer_id, "AC04"), (PRECONDITION, Reason.NOT_TRANSFER_CREDITOR)
    )
    await _unchanged(lc, _return(t3, t.transfer_id, "XXXX"), (INVALID, Reason.UNKNOWN_REASON_CODE))
    await _unchanged(
        lc, _return(t3, t.transfer_id, "AC04", t.transfer_id), (INVALID, Reason.INVALID_ARGUMENT)
    )
    returned = await _return(t3, t.transfer_id, "AC04", return_id)
    r = returned.return_transfer
    assert not returned.replayed
    assert (r.transfer_id, r.debtor_bank, r.creditor_bank) == (return_id, T, D)
    assert (r.amount.currency, r.amount.minor_units) == ("USD", 700)
    assert (r.return_of_transfer_id, r.reason) == (t.transfer_id, "AC04")
    assert r.status == cpb.TRANSFER_STATUS_ACCEPTED and r.cycle_id == t.cycle_id
    original = await _get(d, t.transfer_id)
    assert original.status == cpb.TRANSFER_STATUS_ACCEPTED  # keeps its status
    assert original.returned_by_transfer_id == return_id
    assert await _held(lc, D) == (0, 0, FUNDS)
    assert await _held(lc, T) == (0, 0, FUNDS)
    replay = await _return(t3, t.transfer_id, "AC04", return_id)
    assert replay.replayed and replay.return_transfer.transfer_id == return_id
    # Once: another return id is ALREADY_RETURNED, naming the return.
    twice = _return(t3, t.transfer_id, "MS03")
    await _unchanged(lc, twice, (PRECONDITION, Reason.ALREADY_RETURNED))
    assert (await _metadata(_return(t3, t.transfer_id, "MS03")))["return_id"] == return_id
    # The same return id with other content is a duplicate.
    await _unchanged(
        lc,
        _return(t3, t.transfer_id, "MS03", return_id),
        (grpc.StatusCode.ALREADY_EXISTS, Reason.DUPLICATE_WITH_DIFFERENT_CONTENT),
    )
    # A return is not returned.
    await _unchanged(
        lc, _return(d, return_id, "AC04"), (PRECONDITION, Reason.TRANSFER_NOT_RETURNABLE)
    )
    # A reserved (or rejected) transfer is not returnable.
    reserved = await _submit(d, _instruction(C, 5))
    await _unchanged(
        lc,
        _return(lc.bank(C), reserved.transfer_id, "AC04"),
        (PRECONDITION, Reason.TRANSFER_NOT_RETURNABLE),
    )
    assert await _list(d, kind=cpb.TRANSFER_KIND_RETURN) == [return_id]
    assert await _list(t3, returned_only=True) == [t.transfer_id]
    assert return_id not in await _list(d, kind=cpb.TRANSFER_KIND_PAYMENT)


# Recalls -------------------------------------------------------------------------


async def test_a_recall_accepted_is_answered_by_a_return(lc: HubHandle) -> None:
    d, t3 = lc.bank(D), lc.bank(T)
    t = await _submit(d, _instruction(T, 900))
    recall_id = new_id()
    await _unchanged(
        lc, _recall(t3, t.transfer_id, "DUPL"), (PRECONDITION, Reason.NOT_TRANSFER_DEBTOR)
    )
    await _unchanged(lc, _recall(d, t.transfer_id, "OOPS"), (INVALID, Reason.UNKNOWN_REASON_CODE))
    await _unchanged(
        lc, _recall(d, t.transfer_id, "DUPL", info="x" * 106), (INVALID, Reason.INVALID_ARGUMENT)
    )
    asked = await _recall(d, t.transfer_id, "DUPL", recall_id, info="sent twice")
    rc = asked.recall
    assert not asked.replayed
    assert (rc.recall_id, rc.transfer_id, rc.debtor_bank, rc.creditor_bank) == (
        recall_id,
        t.transfer_id,
        D,
        T,
    )
    assert (rc.reason, rc.additional_info, rc.state) == (
        "DUPL",
        "sent twice",
        cpb.RECALL_STATE_REQUESTED,
    )
    window = rc.deadline.ToDatetime(tzinfo=UTC) - rc.requested_at.ToDatetime(tzinfo=UTC)
    assert window == timedelta(days=1)
    replay = await _recall(d, t.transfer_id, "DUPL", recall_id, info="sent twice")
    assert replay.replayed and replay.recall.recall_id == recall_id
    await _unchanged(
        lc,
        _recall(d, t.transfer_id, "DUPL"),
        (grpc.StatusCode.ALREADY_EXISTS, Reason.RECALL_EXISTS),
    )
    assert (await _get(t3, t.transfer_id)).recall.state == cpb.RECALL_STATE_REQUESTED
    assert await _list(t3, recall_state=cpb.RECALL_STATE_REQUESTED) == [t.transfer_id]
    # Only the creditor answers.
    await _unchanged(
        lc,
        _answer(d, t.transfer_id, cpb.RECALL_DECISION_ACCEPT, return_id=new_id()),
        (PRECONDITION, Reason.NOT_TRANSFER_CREDITOR),
    )
    await _unchanged(
        lc, _answer(t3, t.transfer_id, cpb.RECALL_DECISION_ACCEPT), (INVALID, Reason.MISSING_FIELD)
    )
    return_id = new_id()
    answered = await _answer(t3, t.transfer_id, cpb.RECALL_DECISION_ACCEPT, return_id=return_id)
    assert not answered.replayed
    assert answered.recall.state == cpb.RECALL_STATE_ACCEPTED
    assert answered.recall.return_transfer_id == return_id
    assert answered.recall.HasField("answered_at")
    r = answered.return_transfer
    assert (r.transfer_id, r.reason, r.return_of_transfer_id) == (return_id, "FOCR", t.transfer_id)
    assert (r.debtor_bank, r.creditor_bank, r.amount.minor_units) == (T, D, 900)
    again = await _answer(t3, t.transfer_id, cpb.RECALL_DECISION_ACCEPT, return_id=return_id)
    assert again.replayed and again.return_transfer.transfer_id == return_id
    await _unchanged(
        lc,
        _answer(t3, t.transfer_id, cpb.RECALL_DECISION_REJECT, reason="LEGL"),
        (PRECONDITION, Reason.RECALL_NOT_OPEN),
    )
    got = await _get(d, t.transfer_id)
    assert got.returned_by_transfer_id == return_id
    assert got.recall.state == cpb.RECALL_STATE_ACCEPTED
    assert await _held(lc, D) == (0, 0, FUNDS)


async def test_a_recall_rejected_moves_nothing(lc: HubHandle) -> None:
    d, t3 = lc.bank(D), lc.bank(T)
    t = await _submit(d, _instruction(T, 40))
    await _unchanged(
        lc,
        _answer(t3, t.transfer_id, cpb.RECALL_DECISION_REJECT, reason="LEGL"),
        (grpc.StatusCode.NOT_FOUND, Reason.RECALL_NOT_FOUND),
    )
    await _recall(d, t.transfer_id, "FRAD")
    await _unchanged(
        lc,
        _answer(t3, t.transfer_id, cpb.RECALL_DECISION_REJECT, reason="DUPL"),
        (INVALID, Reason.UNKNOWN_REASON_CODE),
    )
    await _unchanged(lc, _answer(t3, t.transfer_id, 0), (INVALID, Reason.INVALID_ARGUMENT))
    before = (await _held(lc, D), await _held(lc, T))
    no = await _answer(t3, t.transfer_id, cpb.RECALL_DECISION_REJECT, reason="LEGL")
    assert not no.replayed
    assert (no.recall.state, no.recall.answer_reason) == (cpb.RECALL_STATE_REJECTED, "LEGL")
    assert not no.HasField("return_transfer")
    assert (await _held(lc, D), await _held(lc, T)) == before
    replay = await _answer(t3, t.transfer_id, cpb.RECALL_DECISION_REJECT, reason="LEGL")
    assert replay.replayed and replay.recall.answer_reason == "LEGL"
    await _unchanged(
        lc,
        _answer(t3, t.transfer_id, cpb.RECALL_DECISION_ACCEPT, return_id=new_id()),
        (PRECONDITION, Reason.RECALL_NOT_OPEN),
    )
    got = await _get(d, t.transfer_id)
    assert (got.status, got.returned_by_transfer_id) == (cpb.TRANSFER_STATUS_ACCEPTED, "")
    assert await _list(d, recall_state=cpb.RECALL_STATE_REJECTED) == [t.transfer_id]
    # A reserved transfer is cancelled, not recalled.
    reserved = await _submit(d, _instruction(C, 5))
    await _unchanged(
        lc, _recall(d, reserved.transfer_id, "DUPL"), (PRECONDITION, Reason.TRANSFER_NOT_RETURNABLE)
    )


async def test_an_unanswered_recall_expires(sqlite_url: str) -> None:
    hub = await _hub(sqlite_url, recall_window_s=0.3)
    try:
        d, t3 = hub.bank(D), hub.bank(T)
        t = await _submit(d, _instruction(T, 40))
        await _recall(d, t.transfer_id, "TECH")
        for _ in range(100):
            got = await _get(d, t.transfer_id)
            if got.recall.state != cpb.RECALL_STATE_REQUESTED:
                break
            await asyncio.sleep(0.05)
        assert got.recall.state == cpb.RECALL_STATE_EXPIRED
        assert got.recall.HasField("answered_at")
        assert await _refused(
            _answer(t3, t.transfer_id, cpb.RECALL_DECISION_ACCEPT, return_id=new_id())
        ) == (PRECONDITION, Reason.RECALL_NOT_OPEN)
        # The creditor may still return it of its own accord.
        r = await _return(t3, t.transfer_id, "CUST")
        assert r.return_transfer.return_of_transfer_id == t.transfer_id
    finally:
        await hub.stop()


# Cancels -------------------------------------------------------------------------


async def test_cancels_by_the_debtor_and_by_the_operator(lc: HubHandle) -> None:
    d, c = lc.bank(D), lc.bank(C)
    reserved = await _submit(d, _instruction(C, 300))
    cancelled = await d.call(
        d.clearing.CancelTransfer, cpb.CancelTransferRequest(transfer_id=reserved.transfer_id)
    )
    assert cancelled.transfer.status == cpb.TRANSFER_STATUS_CANCELLED
    assert cancelled.transfer.HasField("resolved_at")
    assert await _held(lc, D) == (0, 0, FUNDS)
    await _unchanged(
        lc,
        _confirm(c, reserved.transfer_id, ACCEPT),
        (PRECONDITION, Reason.TRANSFER_NOT_CANCELLABLE),
    )
    # Netted: the debtor can no longer cancel it (it recalls it); the
    # operator can, with a reason that is recorded.
    netted = await _submit(d, _instruction(T, 200))
    await _unchanged(
        lc,
        d.call(
            d.clearing.CancelTransfer, cpb.CancelTransferRequest(transfer_id=netted.transfer_id)
        ),
        (PRECONDITION, Reason.TRANSFER_NOT_CANCELLABLE),
    )
    await _unchanged(
        lc, _operator_cancel(lc, netted.transfer_id, ""), (INVALID, Reason.MISSING_FIELD)
    )
    await _unchanged(
        lc,
        d.call(
            d.netting.CancelTransfer,
            npb.CancelTransferRequest(transfer_id=netted.transfer_id, reason="x"),
        ),
        (grpc.StatusCode.PERMISSION_DENIED, Reason.OPERATOR_ONLY),
    )
    why = "court order 42: duplicate settlement"
    done = await _operator_cancel(lc, netted.transfer_id, why)
    assert (done.transfer.status, done.transfer.reason) == (cpb.TRANSFER_STATUS_CANCELLED, why)
    got = await _get(d, netted.transfer_id)
    assert (got.status, got.reason) == (cpb.TRANSFER_STATUS_CANCELLED, why)
    assert await _held(lc, D) == (0, 0, FUNDS)
    assert await _held(lc, T) == (0, 0, FUNDS)
    again = await _operator_cancel(lc, netted.transfer_id, "another reason")
    assert again.transfer.reason == why  # the first reason stands
    # The operator cancels a reserved one too.
    other = await _submit(d, _instruction(C, 50))
    gone = await _operator_cancel(lc, other.transfer_id, "customer complaint")
    assert gone.transfer.status == cpb.TRANSFER_STATUS_CANCELLED
    assert await _held(lc, D) == (0, 0, FUNDS)

    def trail(uow: Any) -> list[tuple[str, str]]:
        query = select(operator_audit_log.c.action, operator_audit_log.c.subject).where(
            operator_audit_log.c.action == "CancelTransfer"
        )
        return [tuple(r) for r in uow.conn.execute(query.order_by(operator_audit_log.c.seq))]

    assert lc.db.read(trail) == [
        ("CancelTransfer", netted.transfer_id),
        ("CancelTransfer", other.transfer_id),
    ]


# Bad input -----------------------------------------------------------------------


async def test_bad_input_is_refused_with_its_reason_and_stores_nothing(lc: HubHandle) -> None:
    d, c, t3 = lc.bank(D), lc.bank(C), lc.bank(T)
    t = await _submit(d, _instruction(C, 100))
    await _unchanged(
        lc,
        _confirm(t3, t.transfer_id, ACCEPT),
        (grpc.StatusCode.NOT_FOUND, Reason.TRANSFER_NOT_FOUND),
    )
    await _unchanged(
        lc, _confirm(d, t.transfer_id, ACCEPT), (PRECONDITION, Reason.NOT_TRANSFER_CREDITOR)
    )
    await _unchanged(
        lc, _confirm(c, t.transfer_id, REJECT, "XX99"), (INVALID, Reason.UNKNOWN_REASON_CODE)
    )
    await _unchanged(lc, _confirm(c, t.transfer_id, REJECT), (INVALID, Reason.UNKNOWN_REASON_CODE))
    await _unchanged(
        lc, _confirm(c, t.transfer_id, ACCEPT, "AC01"), (INVALID, Reason.INVALID_ARGUMENT)
    )
    await _unchanged(lc, _confirm(c, t.transfer_id, 0), (INVALID, Reason.INVALID_ARGUMENT))
    await _unchanged(lc, _confirm(c, t.transfer_id, 7), (INVALID, Reason.INVALID_ARGUMENT))
    netted = await _submit(d, _instruction(T, 10))
    await _unchanged(
        lc,
        _confirm(t3, netted.transfer_id, REJECT, "AC01"),
        (PRECONDITION, Reason.TRANSFER_NOT_RESERVED),
    )
    too_long = _instruction(C, 1, timeout=timedelta(seconds=30, milliseconds=1))
    await _unchanged(lc, _submit(d, too_long), (INVALID, Reason.CONFIRMATION_TIMEOUT_OUT_OF_RANGE))
    assert (await _metadata(_submit(d, too_long)))["limit"] == "30000"
    negative = _instruction(T, 1, timeout=timedelta(seconds=-1))
    await _unchanged(lc, _submit(d, negative), (INVALID, Reason.CONFIRMATION_TIMEOUT_OUT_OF_RANGE))
    gross = _instruction(T, 1, confirm=True, gross=True)
    await _unchanged(lc, _submit(d, gross), (INVALID, Reason.GROSS_NOT_CONFIRMABLE))
    # In a batch, the same refusals are per item.
    batch = await d.call(
        d.clearing.SubmitTransfers,
        cpb.SubmitTransfersRequest(transfers=[too_long, _instruction(C, 2)]),
    )
    assert [r.WhichOneof("outcome") for r in batch.results] == ["error", "transfer"]
    assert batch.results[0].error.reason == Reason.CONFIRMATION_TIMEOUT_OUT_OF_RANGE
    assert batch.results[1].transfer.status == cpb.TRANSFER_STATUS_RESERVED
    await _unchanged(
        lc,
        d.call(d.clearing.ListTransfers, cpb.ListTransfersRequest(kind=9)),  # type: ignore[arg-type]
        (INVALID, Reason.INVALID_ARGUMENT),
    )
    await _unchanged(
        lc,
        d.call(d.clearing.ListTransfers, cpb.ListTransfersRequest(recall_state=9)),  # type: ignore[arg-type]
        (INVALID, Reason.INVALID_ARGUMENT),
    )


# The operator's setting ----------------------------------------------------------


async def test_the_operator_sets_whether_a_bank_confirms(lc: HubHandle) -> None:
    op, d = lc.operator, lc.bank(D)

    def setting(code: str, required: bool) -> Awaitable[ppb.SetConfirmationRequiredResponse]:
        request = ppb.SetConfirmationRequiredRequest(code=code, required=required)
        return op.call(op.participants.SetConfirmationRequired, request)

    assert (await setting(T, True)).bank.requires_confirmation
    assert (await op.get_bank(T)).requires_confirmation
    assert (await _submit(d, _instruction(T))).status == cpb.TRANSFER_STATUS_RESERVED
    assert not (await setting(T, False)).bank.requires_confirmation
    assert (await _submit(d, _instruction(T))).status == cpb.TRANSFER_STATUS_ACCEPTED
    # A bank cannot change it (its own or another's).
    participants = ppb_grpc.ParticipantsServiceStub(d.channel)
    await _unchanged(
        lc,
        d.call(
            participants.SetConfirmationRequired,
            ppb.SetConfirmationRequiredRequest(code=D, required=True),
        ),
        (grpc.StatusCode.PERMISSION_DENIED, Reason.OPERATOR_ONLY),
    )
    await _unchanged(
        lc, setting("NOSUCHBANK", True), (grpc.StatusCode.NOT_FOUND, Reason.UNKNOWN_PARTICIPANT)
    )
    # The same CreateBank with another confirmation setting is another bank.
    again = ppb.CreateBankRequest(
        code=C, name="Creditor", home_region="us-east1", currencies=["USD"]
    )
    await _unchanged(
        lc,
        op.call(op.participants.CreateBank, again),
        (grpc.StatusCode.ALREADY_EXISTS, Reason.BANK_EXISTS),
    )

    def records(uow: Any) -> list[str]:
        query = select(operator_audit_log.c.action).where(
            operator_audit_log.c.action == "SetConfirmationRequired"
        )
        return [r[0] for r in uow.conn.execute(query)]

    assert lc.db.read(records) == ["SetConfirmationRequired"] * 2
    assert (await setting(T, False)).bank.requires_confirmation is False
    assert lc.db.read(records) == ["SetConfirmationRequired"] * 2  # no change, no record


# The status stream ---------------------------------------------------------------


async def test_the_creditor_sees_reserved_and_recall_events(lc: HubHandle) -> None:
    d, c = lc.bank(D), lc.bank(C)
    start = datetime.now(UTC)
    t = await _submit(d, _instruction(C, 60))
    await _confirm(c, t.transfer_id, ACCEPT)
    await _recall(d, t.transfer_id, "CUST")
    await _answer(c, t.transfer_id, cpb.RECALL_DECISION_REJECT, reason="CUST")
    for bank in (c, d):
        seen: list[tuple[str, int]] = []

        async def collect(watcher: BankClient = bank, into: list[tuple[str, int]] = seen) -> None:
            async for event in watcher.watch(since=start):
                kind = event.WhichOneof("event")
                if kind == "transfer":
                    assert event.transfer.transfer_id == t.transfer_id
                    into.append((kind, event.transfer.status))
                elif kind == "recall":
                    assert event.recall.transfer_id == t.transfer_id
                    assert (event.recall.debtor_bank, event.recall.creditor_bank) == (D, C)
                    into.append((kind, event.recall.state))
                if len(into) == 4:
                    return

        await asyncio.wait_for(collect(), 10)
        assert seen == [
            ("transfer", cpb.TRANSFER_STATUS_RESERVED),
            ("transfer", cpb.TRANSFER_STATUS_ACCEPTED),
            ("recall", cpb.RECALL_STATE_REQUESTED),
            ("recall", cpb.RECALL_STATE_REJECTED),
        ], bank.bank_code


async def test_a_restarted_hub_expires_what_passed_its_deadline_while_down(
    sqlite_url: str,
) -> None:
    """The expiry is the database's state, not a timer of the process that
    reserved: a hub that never got to expire a reservation (its expirer
    idle here) leaves it to the next one, which expires it once at start."""
    first = await _hub(sqlite_url, expiry_interval_s=3_600.0)
    try:
        t = await _submit(first.bank(D), _instruction(C, 80, timeout=timedelta(milliseconds=100)))
        assert t.status == cpb.TRANSFER_STATUS_RESERVED
        await asyncio.sleep(0.3)
        assert (await _get(first.bank(D), t.transfer_id)).status == cpb.TRANSFER_STATUS_RESERVED
    finally:
        await first.stop()
    second = await start_hub(sqlite_url, lifecycle=LifecycleConfig(expiry_interval_s=0.05))
    try:
        for _ in range(100):
            got = await _get(second.bank(D), t.transfer_id)
            if got.status != cpb.TRANSFER_STATUS_RESERVED:
                break
            await asyncio.sleep(0.05)
        assert (got.status, got.reason) == (cpb.TRANSFER_STATUS_EXPIRED, "AB05")
        assert await _held(second, D) == (0, 0, FUNDS)
    finally:
        await second.stop()
