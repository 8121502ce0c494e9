"""Clearing through real gRPC servers, on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid

import grpc
import pytest

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.bank import instruction
from remitnet.clients.errors import HubError
from remitnet.services.domain.errors import Reason
from remitnet.services.service_layer.audit import audit
from tests.support import HubHandle, counts

BANKS = {"BANKUS01": "us-east1", "BANKEU01": "europe-west1", "BANKAS01": "asia-southeast1"}


@pytest.fixture
async def net(hub: HubHandle) -> HubHandle:
    await hub.onboard(BANKS, ["USD", "EUR"], deposit=100_000)
    await hub.operator.create_bank("BANKJP01", "JP Bank", "asia-northeast1", ["JPY"])
    return hub


async def test_submit_accepts_and_nets(net: HubHandle) -> None:
    us = net.bank("BANKUS01")
    response = await us.submit(instruction("BANKEU01", "USD", 2_500, remittance_info="inv 42"))
    t = response.transfer
    assert not response.replayed
    assert (t.debtor_bank, t.creditor_bank, t.amount.minor_units) == ("BANKUS01", "BANKEU01", 2_500)
    assert t.status == cpb.TRANSFER_STATUS_ACCEPTED and t.cycle_id == "USD-000001"
    fetched = await net.bank("BANKEU01").get(t.transfer_id)
    assert fetched == t
    bank = await net.operator.get_bank("BANKUS01")
    usd = next(a for a in bank.accounts if a.currency == "USD")
    assert (usd.unsettled_net, usd.headroom) == (-2_500, 97_500)
    assert audit(net.db).ok


async def test_resubmission_is_idempotent(net: HubHandle) -> None:
    us = net.bank("BANKUS01")
    item = instruction("BANKEU01", "USD", 700)
    first = await us.submit(item)
    before = counts(net.db)
    again = await us.submit(item)
    assert again.replayed and again.transfer == first.transfer
    changed = cpb.TransferInstruction()
    changed.CopyFrom(item)
    changed.amount.minor_units = 701
    with pytest.raises(HubError) as err:
        await us.submit(changed)
    assert err.value.code is grpc.StatusCode.ALREADY_EXISTS
    assert err.value.reason == Reason.DUPLICATE_WITH_DIFFERENT_CONTENT
    assert counts(net.db) == before


async def test_batch_results_per_item_with_duplicates_inside(net: HubHandle) -> None:
    us = net.bank("BANKUS01")
    dup = str(uuid.uuid4())
    items = [instruction("BANKEU01", "USD", 10) for _ in range(500)]
    items += [
        instruction("BANKAS01", "USD", 5, transfer_id=dup),
        instruction("BANKAS01", "USD", 5, transfer_id=dup),
        instruction("BANKAS01", "USD", 6, transfer_id=dup),
        instruction("BANKJP01", "USD", 5),
        instruction("NOSUCHBANK", "USD", 5),
        instruction("BANKEU01", "USD", 10**9),
        instruction("BANKEU01", "USD", -3),
    ]
    response = await us.submit_batch(items)
    assert len(response.results) == len(items)
    assert [r.transfer_id for r in response.results] == [i.transfer_id for i in items]
    assert response.accepted_count == 502 and response.rejected_count == 5
    tail = response.results[500:]
    assert tail[0].HasField("transfer") and not tail[0].replayed
    assert tail[1].HasField("transfer") and tail[1].replayed
    assert [r.error.reason for r in tail[2:]] == [
        Reason.DUPLICATE_WITH_DIFFERENT_CONTENT,
        Reason.CURRENCY_NOT_SUPPORTED,
        Reason.UNKNOWN_PARTICIPANT,
        Reason.INSUFFICIENT_LIQUIDITY,
        Reason.INVALID_AMOUNT,
    ]
    assert tail[2].error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert counts(net.db).transfers == 501
    assert audit(net.db).ok


async def test_a_batch_keeps_each_transfers_purpose(net: HubHandle) -> None:
    us = net.bank("BANKUS01")
    items = [
        instruction("BANKEU01", "USD", 10, purpose="SALA"),
        instruction("BANKEU01", "USD", 11),
        instruction("BANKAS01", "USD", 12, purpose="GDDS"),
    ]
    response = await us.submit_batch(items)
    assert response.accepted_count == 3
    # A code, not free text: batch answers carry it.
    assert [r.transfer.purpose for r in response.results] == ["SALA", "", "GDDS"]
    for item, want in zip(items, ["SALA", "", "GDDS"], strict=True):
        assert (await us.get(item.transfer_id)).purpose == want
    # A replay with another purpose (or none) is other content.
    changed = [cpb.TransferInstruction(), cpb.TransferInstruction()]
    changed[0].CopyFrom(items[0])
    changed[0].purpose = "SUPP"
    changed[1].CopyFrom(items[1])
    changed[1].purpose = "SALA"
    before = counts(net.db)
    again = await us.submit_batch([*changed, items[2]])
    assert [r.error.reason for r in again.results[:2]] == [
        Reason.DUPLICATE_WITH_DIFFERENT_CONTENT
    ] * 2
    assert again.results[2].replayed and again.results[2].transfer.purpose == "GDDS"
    assert counts(net.db) == before
    # A gross transfer (submitted alone) keeps it too.
    gross = await us.submit(instruction("BANKAS01", "USD", 13, purpose="TAXS", gross=True))
    assert gross.transfer.purpose == "TAXS"
    assert (await us.get(gross.transfer.transfer_id)).purpose == "TAXS"


async def test_batch_of_eight_thousand(net: HubHandle) -> None:
    await net.operator.deposit("BANKUS01", "EUR", 10_000_000)
    items = [instruction("BANKEU01", "EUR", 1 + i % 50) for i in range(8_000)]
    # More than one call holds (MAX_BATCH_ITEMS): the SDK splits it.
    responses = await net.bank("BANKUS01").submit_batches(items)
    assert [r.accepted_count for r in responses] == [5_000, 3_000]
    cycle = await net.operator.get_cycle("EUR-000001")
    assert cycle.transfer_count == 8_000
    assert cycle.gross_value == sum(1 + i % 50 for i in range(8_000))
    assert audit(net.db).ok


BAD_INPUT = [
    (lambda i: setattr(i.amount, "minor_units", -1), Reason.INVALID_AMOUNT),
    (lambda i: setattr(i.amount, "minor_units", 0), Reason.INVALID_AMOUNT),
    (lambda i: setattr(i.amount, "currency", "ZZZ"), Reason.UNKNOWN_CURRENCY),
    (lambda i: setattr(i, "creditor_bank", "NOSUCHBANK"), Reason.UNKNOWN_PARTICIPANT),
    (lambda i: setattr(i, "transfer_id", "12345"), Reason.INVALID_TRANSFER_ID),
    (lambda i: setattr(i, "creditor_bank", "BANKUS01"), Reason.SAME_DEBTOR_AND_CREDITOR),
    (lambda i: setattr(i, "remittance_info", "é" * 141), Reason.REMITTANCE_INFO_TOO_LONG),
    (lambda i: setattr(i, "purpose", "sala"), Reason.INVALID_CHARACTERS),
    (lambda i: setattr(i, "purpose", "SALAR"), Reason.INVALID_CHARACTERS),
    (lambda i: i.ClearField("amount"), Reason.MISSING_FIELD),
    (lambda i: setattr(i, "creditor_bank", "BANKJP01"), Reason.CURRENCY_NOT_SUPPORTED),
    (lambda i: setattr(i.amount, "minor_units", 2**63 - 1), Reason.INSUFFICIENT_LIQUIDITY),
]


@pytest.mark.parametrize(("mutate", "reason"), BAD_INPUT)
async def test_bad_input_is_rejected_with_reason_and_nothing_stored(
    net: HubHandle, mutate: object, reason: str
) -> None:
    before = counts(net.db)
    item = instruction("BANKEU01", "USD", 100)
    mutate(item)  # type: ignore[operator]
    with pytest.raises(HubError) as err:
        await net.bank("BANKUS01").submit(item)
    assert err.value.reason == reason
    assert err.value.code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert counts(net.db) == before


async def test_overflowing_amount_is_refused_by_the_wire_type(net: HubHandle) -> None:
    item = instruction("BANKEU01", "USD", 1)
    with pytest.raises(ValueError):
        item.amount.minor_units = 2**63  # int64 cannot carry it: the client refuses to send


@pytest.mark.parametrize(
    ("size", "reason"), [(0, Reason.EMPTY_BATCH), (10_001, Reason.BATCH_TOO_LARGE)]
)
async def test_empty_and_oversize_batches(net: HubHandle, size: int, reason: str) -> None:
    before = counts(net.db)
    items = [instruction("BANKEU01", "USD", 1) for _ in range(size)]
    with pytest.raises(HubError) as err:
        await net.bank("BANKUS01").submit_batch(items)
    assert (err.value.code, err.value.reason) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    assert counts(net.db) == before


async def test_suspended_bank_cannot_send_or_receive(net: HubHandle) -> None:
    await net.operator.suspend("BANKEU01")
    with pytest.raises(HubError) as err:
        await net.bank("BANKUS01").submit(instruction("BANKEU01", "USD", 1))
    assert err.value.reason == Reason.PARTICIPANT_SUSPENDED
    await net.operator.resume("BANKEU01")
    await net.bank("BANKUS01").submit(instruction("BANKEU01", "USD", 1))


async def test_only_parties_see_a_transfer_and_only_the_operator_cancels_it(
    net: HubHandle,
) -> None:
    t = (await net.bank("BANKUS01").submit(instruction("BANKEU01", "USD", 300))).transfer
    with pytest.raises(HubError) as err:
        await net.bank("BANKAS01").get(t.transfer_id)
    assert err.value.reason == Reason.TRANSFER_NOT_FOUND
    with pytest.raises(HubError) as err:
        await net.bank("BANKEU01").cancel(t.transfer_id)
    assert err.value.reason == Reason.NOT_TRANSFER_DEBTOR
    # Netted: the creditor holds it; the debtor alone cannot take it back.
    with pytest.raises(HubError) as err:
        await net.bank("BANKUS01").cancel(t.transfer_id)
    assert err.value.reason == Reason.TRANSFER_NOT_CANCELLABLE
    cancelled = await net.operator.cancel_transfer(t.transfer_id, "TECH: sent twice")
    assert cancelled.status == cpb.TRANSFER_STATUS_CANCELLED
    again = await net.operator.cancel_transfer(t.transfer_id, "TECH: sent twice")
    assert again.status == cpb.TRANSFER_STATUS_CANCELLED
    bank = await net.operator.get_bank("BANKUS01")
    assert next(a for a in bank.accounts if a.currency == "USD").unsettled_net == 0
    assert audit(net.db).ok


async def test_cancel_refused_once_the_cycle_closed(net: HubHandle) -> None:
    t = (await net.bank("BANKUS01").submit(instruction("BANKEU01", "USD", 300))).transfer
    await net.operator.close_cycle("USD")
    with pytest.raises(HubError) as err:
        await net.operator.cancel_transfer(t.transfer_id, "TECH: sent twice")
    assert err.value.reason == Reason.CYCLE_NOT_OPEN
    assert (await net.bank("BANKUS01").get(t.transfer_id)).status == cpb.TRANSFER_STATUS_CLOSED


async def test_cancel_refused_when_the_creditor_spent_the_credit(net: HubHandle) -> None:
    t = (await net.bank("BANKUS01").submit(instruction("BANKEU01", "USD", 50_000))).transfer
    # EUR01 spends its own 100,000 plus the 50,000 it received.
    await net.bank("BANKEU01").submit(instruction("BANKAS01", "USD", 150_000))
    with pytest.raises(HubError) as err:
        await net.operator.cancel_transfer(t.transfer_id, "TECH: sent twice")
    assert err.value.reason == Reason.CANCEL_EXCEEDS_CREDITOR_HEADROOM
    assert audit(net.db).ok


async def test_list_transfers_filters_and_pages(net: HubHandle) -> None:
    us = net.bank("BANKUS01")
    await us.submit_batch([instruction("BANKEU01", "USD", 1) for _ in range(25)])
    await us.submit_batch([instruction("BANKAS01", "USD", 1) for _ in range(10)])
    seen: list[str] = []
    token = ""
    while True:
        page = await us.list(counterparty="BANKEU01", page_size=10, page_token=token)
        seen += [t.transfer_id for t in page.transfers]
        assert all(t.creditor_bank == "BANKEU01" for t in page.transfers)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 25
    await net.operator.close_cycle("USD")
    closed = await us.list(status=cpb.TRANSFER_STATUS_CLOSED, page_size=100)
    assert len(closed.transfers) == 35
    assert not (await us.list(status=cpb.TRANSFER_STATUS_ACCEPTED)).transfers
    by_cycle = await net.bank("BANKAS01").list(cycle_id="USD-000001")
    assert len(by_cycle.transfers) == 10


async def test_identity_and_roles(net: HubHandle) -> None:
    with pytest.raises(HubError) as err:
        await net.bank("BANKUS01").call(
            net.operator.participants.CreateBank,
            __import__(
                "remitnet.participants.v1.participants_pb2", fromlist=["x"]
            ).CreateBankRequest(code="EVIL01", name="x", home_region="us-east1"),
        )
    assert (err.value.code, err.value.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        Reason.OPERATOR_ONLY,
    )
    stub = net.bank("BANKUS01").clearing
    with pytest.raises(grpc.aio.AioRpcError) as raw:
        await stub.SubmitTransfer(
            cpb.SubmitTransferRequest(transfer=instruction("BANKEU01", "USD", 1))
        )
    assert raw.value.code() is grpc.StatusCode.UNAUTHENTICATED
