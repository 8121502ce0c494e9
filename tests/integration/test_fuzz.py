"""Hypothesis-driven requests with edge and malformed values through real
gRPC, on SQLite and on PostgreSQL: every answer is OK or a defined status
with an ErrorInfo reason, the server stays healthy, and rejected input
changes nothing (for batches: the refused items are absent, the accepted
ones present with their content)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Table, func, select

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clearing.v1 import clearing_pb2_grpc as cgrpc
from remitnet.clients.bank import instruction
from remitnet.clients.base import MAX_BATCH_ITEMS
from remitnet.common.v1.money_pb2 import Money
from remitnet.fx.v1 import fx_pb2 as fxpb
from remitnet.fx.v1 import fx_pb2_grpc as fxgrpc
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.netting.v1 import netting_pb2_grpc as ngrpc
from remitnet.participants.v1 import participants_pb2 as ppb
from remitnet.participants.v1 import participants_pb2_grpc as pgrpc
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.schema import banks, cycles, fx_quotes
from remitnet.settlement.v1 import settlement_pb2 as spb
from remitnet.settlement.v1 import settlement_pb2_grpc as sgrpc
from tests.support import HubHandle, counts, start_hub

INT64 = st.integers(-(2**63), 2**63 - 1)
EDGE_INTS = st.sampled_from([-(2**63), -1, 0, 1, 2**31, 2**53 + 1, 2**63 - 1]) | INT64
# Control characters (NUL first among them), odd Unicode, empty and huge.
CONTROLS = st.sampled_from(
    ["\x00", "a\x00b", "\x01", "\x07", "\t", "\r\n", "\x1b[2J", "\x7f", "\x85", "\u2028", "\ufeff"]
)
TEXT = (
    st.text(max_size=300)
    | CONTROLS
    | st.sampled_from(
        ["", " ", "é" * 141, "🏦" * 50, "A" * 5000, "\u202eRTL", "\uff55\uff53\uff44"]
    )
)
IDS = (
    st.uuids().map(str)
    | st.uuids().map(lambda u: str(u).upper())
    | TEXT
    | st.sampled_from(
        [
            "00000000-0000-0000-0000-000000000000",
            "11111111-1111-4111-8111-111111111111",
            "11111111-1111-4111-8111-11111111111\x00",
            "{11111111-1111-4111-8111-111111111111}",
        ]
    )
)
BANKS = (
    st.sampled_from(["FUZZB01", "FUZZA01", "NOSUCH01", "", "fuzzb01", "HUB", "FUZZB01\x00"]) | TEXT
)
CURRENCIES = st.sampled_from(["USD", "EUR", "usd", "", "XXX", "JPY", "US\x00", "EUR "]) | TEXT
MODES = st.sampled_from([0, 1, 2, 3, 99, -1, 2**31 - 1])
CYCLE_IDS = (
    st.sampled_from(
        [
            "USD-000001",
            "EUR-000001",
            "USD-999999",
            "usd-000001",
            "USD-0",
            "USD--1",
            "USD-000001\x00",
            "",
        ]
    )
    | TEXT
)
ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
}
OPERATOR = (("x-remitnet-principal", "operator"),)
BANK_A = (("x-remitnet-principal", "bank:FUZZA01"),)


@pytest.fixture
async def fuzz_hub(db_url: str) -> AsyncIterator[HubHandle]:
    # db_url: one hub on SQLite and one on PostgreSQL per test function,
    # shared by that function's examples.
    hub = await start_hub(db_url)
    await hub.onboard(
        {"FUZZA01": "us-east1", "FUZZB01": "europe-west1"}, ["USD", "EUR"], deposit=10**9
    )
    await hub.operator.update_rates({("USD", "EUR"): "0.92"})
    try:
        yield hub
    finally:
        await hub.stop()


def reason_of(err: grpc.aio.AioRpcError) -> str:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    return ""


async def healthy(hub: HubHandle) -> bool:
    stub = health_pb2_grpc.HealthStub(hub.operator.channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest())
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def fingerprint(db: Database) -> tuple[Any, ...]:
    """Everything stored: the test suite's counts plus banks, cycles and
    quotes, which they do not cover."""

    def read(conn: Connection) -> tuple[Any, ...]:
        def count(table: Table) -> int:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

        states = tuple(conn.execute(select(cycles.c.id, cycles.c.state).order_by(cycles.c.id)))
        return count(banks), count(fx_quotes), tuple(tuple(r) for r in states)

    return counts(db), db.read(lambda uow: read(uow.conn))


async def answer(call: Awaitable[Any]) -> grpc.aio.AioRpcError | None:
    """None for OK; the error, once checked to be defined and to carry a
    reason, otherwise."""
    try:
        await call
        return None
    except grpc.aio.AioRpcError as err:
        assert err.code() in ALLOWED, (err.code(), err.details())
        assert reason_of(err), f"no reason for {err.code()}: {err.details()}"
        return err


def canonical(raw: str) -> str | None:
    """The id the hub would store for `raw`, or None if it accepts no such id."""
    if len(raw) != 36:
        return None
    try:
        value = uuid.UUID(raw)
    except ValueError:
        return None
    return None if value.int == 0 else str(value)


def stored(db: Database, ids: set[str]) -> dict[str, tuple[str, str, str, int, str]]:
    found = db.read(lambda uow: uow.transfers.existing(ids)) if ids else {}
    return {
        tid: (t.debtor, t.creditor, t.currency, t.amount, t.remittance_info)
        for tid, t in found.items()
    }


def content(item: cpb.TransferInstruction) -> tuple[str, str, str, int, str]:
    return (
        "FUZZA01",
        item.creditor_bank,
        item.amount.currency,
        item.amount.minor_units,
        item.remittance_info,
    )


def item_strategy() -> st.SearchStrategy[cpb.TransferInstruction]:
    return st.builds(
        lambda tid, creditor, currency, amount, info, mode, quote: cpb.TransferInstruction(
            transfer_id=tid,
            creditor_bank=creditor,
            amount=Money(currency=currency, minor_units=amount),
            remittance_info=info,
            settlement_mode=mode,
            quote_id=quote,
        ),
        IDS,
        BANKS,
        CURRENCIES,
        EDGE_INTS,
        TEXT,
        MODES,
        st.just("") | IDS,
    )


def valid_item() -> st.SearchStrategy[cpb.TransferInstruction]:
    """Items the hub accepts, to mix into batches of bad ones."""
    return st.builds(
        lambda amount, info: instruction("FUZZB01", "USD", amount, remittance_info=info),
        st.integers(1, 10_000),
        st.sampled_from(["", "invoice 42", "é" * 140]),
    )


FUZZ = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# Clearing ---------------------------------------------------------------------------


@FUZZ
@given(item=item_strategy())
async def test_fuzzed_single_transfers(fuzz_hub: HubHandle, item: cpb.TransferInstruction) -> None:
    before = fingerprint(fuzz_hub.db)
    stub = fuzz_hub.bank("FUZZA01").clearing
    try:
        response = await stub.SubmitTransfer(
            cpb.SubmitTransferRequest(transfer=item), metadata=BANK_A, timeout=30
        )
        tid = response.transfer.transfer_id
        assert stored(fuzz_hub.db, {tid}) == {tid: content(item)}
    except grpc.aio.AioRpcError as err:
        assert err.code() in ALLOWED, (err.code(), err.details())
        assert reason_of(err), f"no reason for {err.code()}: {err.details()}"
        assert fingerprint(fuzz_hub.db) == before
    assert await healthy(fuzz_hub)


@FUZZ
@given(
    bad=st.lists(item_strategy(), min_size=1, max_size=30),
    good=st.lists(valid_item(), max_size=10),
    order=st.randoms(use_true_random=False),
    dup=st.booleans(),
)
async def test_fuzzed_batches_partly_accepted(
    fuzz_hub: HubHandle,
    bad: list[cpb.TransferInstruction],
    good: list[cpb.TransferInstruction],
    order: Any,
    dup: bool,
) -> None:
    items = bad + good
    order.shuffle(items)
    if dup:
        items = items + items[: len(items) // 2]
    candidates = {c for c in (canonical(i.transfer_id) for i in items) if c}
    existed = set(stored(fuzz_hub.db, candidates))
    before = fingerprint(fuzz_hub.db)
    total_before = before[0].transfers
    stub = fuzz_hub.bank("FUZZA01").clearing
    response = await stub.SubmitTransfers(
        cpb.SubmitTransfersRequest(transfers=items), metadata=BANK_A, timeout=30
    )
    assert len(response.results) == len(items)
    accepted: dict[str, cpb.TransferInstruction] = {}
    refused: set[str] = set()
    for item, result in zip(items, response.results, strict=True):
        if result.HasField("error"):
            assert result.error.reason and result.error.code != 0, result
            if tid := canonical(item.transfer_id):
                refused.add(tid)
        else:
            assert result.HasField("transfer"), result
            accepted.setdefault(result.transfer.transfer_id, item)
    assert response.accepted_count == sum(1 for r in response.results if r.HasField("transfer"))
    now = stored(fuzz_hub.db, candidates | set(accepted))
    for tid in accepted:  # present, with the content of the item that won the id
        assert tid in now, f"accepted {tid} is not stored"
        if tid not in existed:
            assert now[tid] == content(accepted[tid])
    for tid in refused - set(accepted) - existed:
        assert tid not in now, f"refused {tid} is stored"
    new = set(accepted) - existed
    assert counts(fuzz_hub.db).transfers == total_before + len(new)
    if not new:
        assert fingerprint(fuzz_hub.db) == before
    assert await healthy(fuzz_hub)


@FUZZ
@given(tid=IDS)
async def test_fuzzed_cancellations(fuzz_hub: HubHandle, tid: str) -> None:
    before = fingerprint(fuzz_hub.db)
    stub = fuzz_hub.bank("FUZZA01").clearing
    err = await answer(
        stub.CancelTransfer(cpb.CancelTransferRequest(transfer_id=tid), metadata=BANK_A, timeout=30)
    )
    assert err is not None  # nothing of this hub's to cancel
    assert fingerprint(fuzz_hub.db) == before
    assert await healthy(fuzz_hub)


# Participants and treasury -----------------------------------------------------------


@FUZZ
@given(code=TEXT | BANKS, name=TEXT, region=TEXT, currencies=st.lists(CURRENCIES, max_size=4))
async def test_fuzzed_onboarding(
    fuzz_hub: HubHandle, code: str, name: str, region: str, currencies: list[str]
) -> None:
    before = fingerprint(fuzz_hub.db)
    stub = pgrpc.ParticipantsServiceStub(fuzz_hub.operator.channel)
    request = ppb.CreateBankRequest(code=code, name=name, home_region=region, currencies=currencies)
    if await answer(stub.CreateBank(request, metadata=OPERATOR, timeout=30)) is not None:
        assert fingerprint(fuzz_hub.db) == before
    assert await healthy(fuzz_hub)


@FUZZ
@given(
    call=st.sampled_from(["deposit", "withdraw", "cap"]),
    bank=BANKS,
    currency=CURRENCIES,
    amount=EDGE_INTS,
    op_id=IDS,
)
async def test_fuzzed_treasury(
    fuzz_hub: HubHandle, call: str, bank: str, currency: str, amount: int, op_id: str
) -> None:
    before = fingerprint(fuzz_hub.db)
    stub = pgrpc.ParticipantsServiceStub(fuzz_hub.operator.channel)
    money = Money(currency=currency, minor_units=amount)
    rpc: Awaitable[Any]
    if call == "deposit":
        rpc = stub.Deposit(
            ppb.DepositRequest(bank_code=bank, amount=money, deposit_id=op_id),
            metadata=OPERATOR,
            timeout=30,
        )
    elif call == "withdraw":
        rpc = stub.Withdraw(
            ppb.WithdrawRequest(bank_code=bank, amount=money, withdrawal_id=op_id),
            metadata=OPERATOR,
            timeout=30,
        )
    else:
        rpc = stub.SetNetDebitCap(
            ppb.SetNetDebitCapRequest(bank_code=bank, cap=money), metadata=OPERATOR, timeout=30
        )
    if await answer(rpc) is not None:
        assert fingerprint(fuzz_hub.db) == before
    assert await healthy(fuzz_hub)


# FX -------------------------------------------------------------------------------------


def quote_ask() -> st.SearchStrategy[fxpb.CreateQuoteRequest]:
    def build(source: str, target: str, which: str, amount: int) -> fxpb.CreateQuoteRequest:
        ask = fxpb.CreateQuoteRequest(source_currency=source, target_currency=target)
        if which == "source":
            ask.source_amount = amount
        elif which == "target":
            ask.target_amount = amount
        return ask

    return st.builds(
        build,
        CURRENCIES,
        CURRENCIES,
        st.sampled_from(["source", "target", "none"]),
        EDGE_INTS,
    )


@FUZZ
@given(ask=quote_ask())
async def test_fuzzed_quotes(fuzz_hub: HubHandle, ask: fxpb.CreateQuoteRequest) -> None:
    before = fingerprint(fuzz_hub.db)
    stub = fxgrpc.FxServiceStub(fuzz_hub.bank("FUZZA01").channel)
    try:
        response = await stub.CreateQuote(ask, metadata=BANK_A, timeout=30)
        assert response.quote.quote_id
        assert fingerprint(fuzz_hub.db)[1][1] == before[1][1] + 1
    except grpc.aio.AioRpcError as err:
        assert err.code() in ALLOWED, (err.code(), err.details())
        assert reason_of(err), f"no reason for {err.code()}: {err.details()}"
        assert fingerprint(fuzz_hub.db) == before
    assert await healthy(fuzz_hub)


@FUZZ
@given(
    asks=st.lists(quote_ask(), max_size=20),
    good=st.integers(0, 3),
)
async def test_fuzzed_quote_batches(
    fuzz_hub: HubHandle, asks: list[fxpb.CreateQuoteRequest], good: int
) -> None:
    asks = asks + [
        fxpb.CreateQuoteRequest(source_currency="USD", target_currency="EUR", source_amount=1000)
    ] * (good if asks else 0)
    before = fingerprint(fuzz_hub.db)
    stub = fxgrpc.FxServiceStub(fuzz_hub.bank("FUZZA01").channel)
    try:
        response = await stub.CreateQuotes(
            fxpb.CreateQuotesRequest(quotes=asks), metadata=BANK_A, timeout=30
        )
    except grpc.aio.AioRpcError as err:
        assert err.code() in ALLOWED, (err.code(), err.details())
        assert reason_of(err)
        assert fingerprint(fuzz_hub.db) == before
        return
    assert len(response.results) == len(asks)
    issued = 0
    for result in response.results:
        if result.HasField("error"):
            assert result.error.reason and result.error.code != 0, result
        else:
            assert result.quote.quote_id
            issued += 1
    assert response.issued_count == issued
    assert response.refused_count == len(asks) - issued
    assert fingerprint(fuzz_hub.db)[1][1] == before[1][1] + issued
    if not issued:
        assert fingerprint(fuzz_hub.db) == before
    assert await healthy(fuzz_hub)


# Netting and settlement -----------------------------------------------------------------


@FUZZ
@given(
    call=st.sampled_from(["get", "settle", "list"]),
    cycle_id=CYCLE_IDS,
    currency=CURRENCIES,
    state=st.sampled_from([0, 1, 2, 3, 77, -1, 2**31 - 1]),
)
async def test_fuzzed_cycle_calls(
    fuzz_hub: HubHandle, call: str, cycle_id: str, currency: str, state: int
) -> None:
    before = fingerprint(fuzz_hub.db)
    channel = fuzz_hub.operator.channel
    rpc: Awaitable[Any]
    if call == "get":
        rpc = ngrpc.NettingServiceStub(channel).GetCycle(
            npb.GetCycleRequest(cycle_id=cycle_id), metadata=OPERATOR, timeout=30
        )
    elif call == "settle":
        rpc = sgrpc.SettlementServiceStub(channel).SettleCycle(
            spb.SettleCycleRequest(cycle_id=cycle_id), metadata=OPERATOR, timeout=30
        )
    else:
        request = npb.ListCyclesRequest(currency=currency, state=state)  # type: ignore[arg-type]
        rpc = ngrpc.NettingServiceStub(channel).ListCycles(request, metadata=OPERATOR, timeout=30)
    await answer(rpc)
    # Only open cycles exist, and none of these calls may close one.
    assert fingerprint(fuzz_hub.db) == before
    assert await healthy(fuzz_hub)


EDGE_STRINGS = ["A" * 5000, "\x00", "a\x00b", "\x1b[2J", "\u2028", "\ud7ff" * 3, "\U0010ffff"]


async def test_edge_strings_in_every_field(fuzz_hub: HubHandle) -> None:
    """The same hostile strings in every string field of every call, so
    that what the random examples may miss is tried each run: each answer
    is OK or a defined status with a reason, and a refusal stores nothing."""
    op, bank = fuzz_hub.operator.channel, fuzz_hub.bank("FUZZA01").channel
    clearing = fuzz_hub.bank("FUZZA01").clearing
    participants = pgrpc.ParticipantsServiceStub(op)
    fx = fxgrpc.FxServiceStub(bank)
    netting = ngrpc.NettingServiceStub(op)
    settlement = sgrpc.SettlementServiceStub(op)

    def item(**fields: Any) -> cpb.TransferInstruction:
        base = {"creditor": "FUZZB01", "currency": "USD", "info": "", "tid": str(uuid.uuid4())}
        base.update(fields)
        return instruction(
            base["creditor"],
            base["currency"],
            100,
            transfer_id=base["tid"],
            remittance_info=base["info"],
        )

    def money(currency: str = "USD") -> Money:
        return Money(currency=currency, minor_units=100)

    calls: dict[str, Any] = {
        "SubmitTransfer.transfer_id": lambda v: clearing.SubmitTransfer(
            cpb.SubmitTransferRequest(transfer=item(tid=v)), metadata=BANK_A
        ),
        "SubmitTransfer.creditor_bank": lambda v: clearing.SubmitTransfer(
            cpb.SubmitTransferRequest(transfer=item(creditor=v)), metadata=BANK_A
        ),
        "SubmitTransfer.currency": lambda v: clearing.SubmitTransfer(
            cpb.SubmitTransferRequest(transfer=item(currency=v)), metadata=BANK_A
        ),
        "SubmitTransfer.remittance_info": lambda v: clearing.SubmitTransfer(
            cpb.SubmitTransferRequest(transfer=item(info=v)), metadata=BANK_A
        ),
        "GetTransfer.transfer_id": lambda v: clearing.GetTransfer(
            cpb.GetTransferRequest(transfer_id=v), metadata=BANK_A
        ),
        "CancelTransfer.transfer_id": lambda v: clearing.CancelTransfer(
            cpb.CancelTransferRequest(transfer_id=v), metadata=BANK_A
        ),
        "CreateQuote.source_currency": lambda v: fx.CreateQuote(
            fxpb.CreateQuoteRequest(source_currency=v, target_currency="EUR", source_amount=1),
            metadata=BANK_A,
        ),
        "CreateQuote.target_currency": lambda v: fx.CreateQuote(
            fxpb.CreateQuoteRequest(source_currency="USD", target_currency=v, target_amount=1),
            metadata=BANK_A,
        ),
        "GetQuote.quote_id": lambda v: fx.GetQuote(
            fxpb.GetQuoteRequest(quote_id=v), metadata=BANK_A
        ),
        "CreateBank.code": lambda v: participants.CreateBank(
            ppb.CreateBankRequest(code=v, name="N", home_region="us-east1", currencies=["USD"]),
            metadata=OPERATOR,
        ),
        "CreateBank.name": lambda v: participants.CreateBank(
            ppb.CreateBankRequest(
                code="FUZZC01", name=v, home_region="us-east1", currencies=["USD"]
            ),
            metadata=OPERATOR,
        ),
        "CreateBank.home_region": lambda v: participants.CreateBank(
            ppb.CreateBankRequest(code="FUZZC01", name="N", home_region=v, currencies=["USD"]),
            metadata=OPERATOR,
        ),
        "Deposit.bank_code": lambda v: participants.Deposit(
            ppb.DepositRequest(bank_code=v, amount=money(), deposit_id=str(uuid.uuid4())),
            metadata=OPERATOR,
        ),
        "Deposit.currency": lambda v: participants.Deposit(
            ppb.DepositRequest(bank_code="FUZZA01", amount=money(v), deposit_id=str(uuid.uuid4())),
            metadata=OPERATOR,
        ),
        "Deposit.deposit_id": lambda v: participants.Deposit(
            ppb.DepositRequest(bank_code="FUZZA01", amount=money(), deposit_id=v),
            metadata=OPERATOR,
        ),
        "Withdraw.withdrawal_id": lambda v: participants.Withdraw(
            ppb.WithdrawRequest(bank_code="FUZZA01", amount=money(), withdrawal_id=v),
            metadata=OPERATOR,
        ),
        "SetNetDebitCap.currency": lambda v: participants.SetNetDebitCap(
            ppb.SetNetDebitCapRequest(bank_code="FUZZA01", cap=money(v)), metadata=OPERATOR
        ),
        "GetCycle.cycle_id": lambda v: netting.GetCycle(
            npb.GetCycleRequest(cycle_id=v), metadata=OPERATOR
        ),
        "CloseCycle.currency": lambda v: netting.CloseCycle(
            npb.CloseCycleRequest(currency=v), metadata=OPERATOR
        ),
        "CloseCycle.cycle_id": lambda v: netting.CloseCycle(
            npb.CloseCycleRequest(currency="USD", cycle_id=v), metadata=OPERATOR
        ),
        "ListCycles.currency": lambda v: netting.ListCycles(
            npb.ListCyclesRequest(currency=v), metadata=OPERATOR
        ),
        "SettleCycle.cycle_id": lambda v: settlement.SettleCycle(
            spb.SettleCycleRequest(cycle_id=v), metadata=OPERATOR
        ),
    }
    failures: list[str] = []
    for name, call in calls.items():
        for value in EDGE_STRINGS:
            before = fingerprint(fuzz_hub.db)
            try:
                await call(value)
                continue  # accepted (an odd but valid value): nothing to check here
            except grpc.aio.AioRpcError as err:
                if err.code() not in ALLOWED or not reason_of(err):
                    failures.append(
                        f"{name}={value[:12]!r}: {err.code().name} "
                        f"{reason_of(err) or 'no reason'}: {(err.details() or '')[:100]}"
                    )
            if fingerprint(fuzz_hub.db) != before:
                failures.append(f"{name}={value[:12]!r}: refused, but the database changed")
            if not await healthy(fuzz_hub):
                failures.append(f"{name}={value[:12]!r}: the server is no longer healthy")
    assert not failures, "\n".join(failures)


async def test_limits_on_size(fuzz_hub: HubHandle) -> None:
    before = fingerprint(fuzz_hub.db)
    client = fuzz_hub.bank("FUZZA01")
    stub = client.clearing
    too_many = [instruction("FUZZB01", "USD", 1) for _ in range(MAX_BATCH_ITEMS + 1)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SubmitTransfers(cpb.SubmitTransfersRequest(transfers=too_many), metadata=BANK_A)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(err.value) == "BATCH_TOO_LARGE"
    # Beyond the server's 4 MiB receive limit: refused by gRPC itself.
    huge = [instruction("FUZZB01", "USD", 1, remittance_info="x" * 4000) for _ in range(9_000)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SubmitTransfers(cpb.SubmitTransfersRequest(transfers=huge), metadata=BANK_A)
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    unknown_status = cpb.ListTransfersRequest(status=77)  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListTransfers(unknown_status, metadata=BANK_A)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    too_many_quotes = [
        fxpb.CreateQuoteRequest(source_currency="USD", target_currency="EUR", source_amount=1)
    ] * (MAX_BATCH_ITEMS + 1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.fx.CreateQuotes(
            fxpb.CreateQuotesRequest(quotes=too_many_quotes), metadata=BANK_A
        )
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(err.value) == "BATCH_TOO_LARGE"
    assert fingerprint(fuzz_hub.db) == before
    assert await healthy(fuzz_hub)


TOKENS = (
    TEXT
    | st.binary(max_size=60).map(lambda b: base64.urlsafe_b64encode(b).decode())
    | st.builds(
        lambda seq, item: base64.urlsafe_b64encode(f"f1:{seq}:{item}".encode()).decode(),
        EDGE_INTS,
        EDGE_INTS,
    )
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    token=st.just("") | TOKENS,
    seconds=st.none() | EDGE_INTS,
    nanos=st.integers(-(2**31), 2**31 - 1),
)
async def test_watch_with_any_token_or_since(
    fuzz_hub: HubHandle, token: str, seconds: int | None, nanos: int
) -> None:
    """A stream either opens (headers at once, then events or nothing) or is
    refused with a defined status and reason; the hub stays healthy and
    nothing is stored."""
    before = fingerprint(fuzz_hub.db)
    stub = cgrpc.ClearingServiceStub(fuzz_hub.operator.channel)
    request = cpb.WatchTransfersRequest(resume_token=token)
    if seconds is not None:
        request.since.seconds = seconds
        request.since.nanos = nanos
    call = stub.WatchTransfers(request, metadata=BANK_A, timeout=2)
    try:
        async for _ in call:
            break
    except grpc.aio.AioRpcError as err:
        if err.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # an open, quiet stream
            assert err.code() in ALLOWED, (err.code(), err.details())
            assert reason_of(err), f"no reason for {err.code()}: {err.details()}"
    finally:
        call.cancel()
    assert await healthy(fuzz_hub)
    assert fingerprint(fuzz_hub.db) == before
