"""close_cycle and the cycle reads on the in-memory fake."""

from __future__ import annotations

import json

import pytest

from remitnet.services.domain.audit_trail import Action
from remitnet.services.domain.errors import Reason, RemitnetError
from remitnet.services.domain.events import EventKind
from remitnet.services.domain.model import DEFAULT_PROVIDER, HUB, CycleState, TransferStatus
from remitnet.services.service_layer.clearing import commit_batch
from remitnet.services.service_layer.cycles import close_cycle, get_cycle, list_cycles
from tests.fakes import (
    FakeTransactions,
    instruction,
    seed_bank,
    seed_funds,
    seed_quote,
    seed_rates,
)

A, B, C = "BANKA01", "BANKB01", "BANKC01"


@pytest.fixture
def tx() -> FakeTransactions:
    tx = FakeTransactions()
    for code in (A, B, C):
        seed_bank(tx, code, ["USD", "EUR"], deposit=1_000_000)
    commit_batch(
        tx,
        [
            instruction(A, B, "USD", 700),
            instruction(B, C, "USD", 200),
            instruction(A, C, "USD", 100),
        ],
    )
    return tx


def test_closing_seals_the_cycle_and_opens_the_next(tx: FakeTransactions) -> None:
    closed, opened = close_cycle(tx, "USD", actor="operator")
    c = closed.cycle
    assert (c.id, c.state) == ("USD-000001", CycleState.CLOSED)
    assert (c.transfer_count, c.gross_value, c.net_value) == (3, 1_000, 800)
    assert (closed.transfer_count, closed.gross_value, closed.net_value) == (3, 1_000, 800)
    assert {b: p.net for b, p in closed.positions.items()} == {A: -800, B: 500, C: 300}
    o = opened.cycle
    assert (o.id, o.seq, o.state, o.opened_at) == ("USD-000002", 2, CycleState.OPEN, c.closed_at)
    assert opened.positions == {}
    stored = tx.store.cycles
    assert stored["USD-000001"] == c and stored["USD-000002"] == o
    assert stored["EUR-000001"].state is CycleState.OPEN  # other currencies stay open
    # One audit record, and a CYCLE event for each bank with a position.
    [record] = tx.uow().trail.records()
    assert (record.action, record.principal, record.subject) == (
        str(Action.CLOSE_CYCLE),
        "operator",
        "USD-000001",
    )
    assert json.loads(record.request) == {"currency": "USD", "cycle_id": "USD-000001"}
    for bank in (A, B, C):
        last = tx.feed(bank)[-1]
        assert (last.kind, last.status, last.cycle_id, last.at) == (
            EventKind.CYCLE,
            TransferStatus.CLOSED,
            "USD-000001",
            c.closed_at,
        )
    assert tx.violations() == []


def test_the_scheduler_closes_as_the_hub(tx: FakeTransactions) -> None:
    close_cycle(tx, "USD", expected="USD-000001")
    [record] = tx.uow().trail.records()
    assert record.principal == "hub"


def test_a_close_keyed_by_a_closed_cycle_is_a_replay(tx: FakeTransactions) -> None:
    first, _ = close_cycle(tx, "USD")
    before = tx.store.dump()
    closed, following = close_cycle(tx, "USD", expected="USD-000001")
    assert closed.cycle == first.cycle and closed.positions == first.positions
    assert following.cycle.id == "USD-000002"
    assert tx.store.dump() == before


def test_a_close_rerun_after_an_ambiguous_commit_closes_one_cycle(tx: FakeTransactions) -> None:
    tx.fail_next("close_cycle", point="after_commit")
    closed, opened = close_cycle(tx, "USD")
    assert tx.attempts["close_cycle"] == 2
    assert (closed.cycle.id, opened.cycle.id) == ("USD-000001", "USD-000002")
    assert tx.store.cycles["USD-000002"].state is CycleState.OPEN
    assert "USD-000003" not in tx.store.cycles
    assert len(tx.store.trail) == 1
    assert tx.violations() == []


def test_a_retried_close_closes_once(tx: FakeTransactions) -> None:
    tx.fail_next("close_cycle")
    close_cycle(tx, "USD")
    assert sorted(tx.store.cycles) == ["EUR-000001", "USD-000001", "USD-000002"]
    assert len(tx.store.trail) == 1
    assert [e.kind for e in tx.feed(A)] == [EventKind.BATCH, EventKind.CYCLE]


def test_refused_closes_store_nothing(tx: FakeTransactions) -> None:
    before = tx.store.dump()
    cases = [
        (("JPY",), {}, Reason.CURRENCY_NOT_SUPPORTED),  # no bank holds JPY
        (("ZZZ",), {}, Reason.UNKNOWN_CURRENCY),
        (("USD",), {"expected": "USD-999999"}, Reason.CYCLE_NOT_FOUND),
        (("EUR",), {"expected": "USD-000001"}, Reason.CYCLE_NOT_FOUND),
    ]
    for args, kwargs, reason in cases:
        with pytest.raises(RemitnetError) as err:
            close_cycle(tx, *args, **kwargs)
        assert err.value.reason == reason, args
    assert tx.store.dump() == before


def test_closing_the_second_leg_cycle_tells_cross_currency_parties(tx: FakeTransactions) -> None:
    seed_funds(tx, DEFAULT_PROVIDER, {"EUR": 10_000})
    seed_rates(tx, {("USD", "EUR"): "0.92"})
    quote = seed_quote(tx, A, "USD", "EUR", 1_000)
    commit_batch(tx, [instruction(A, B, "USD", 1_000, quote_id=quote.quote_id)])
    close_cycle(tx, "USD")
    assert not [e for e in tx.feed(A) if e.kind is EventKind.LEGS]
    close_cycle(tx, "EUR")
    for bank in (A, B):
        [legs] = [e for e in tx.feed(bank) if e.kind is EventKind.LEGS]
        assert (legs.status, legs.cycle_id, legs.other_cycle_id, legs.item_count) == (
            TransferStatus.CLOSED,
            "EUR-000001",
            "USD-000001",
            1,
        )
    # The hub's own positions tell no feed, and it has none here; the FX
    # provider's tell its feed, as a bank's do: a CYCLE event per cycle.
    assert HUB not in tx.store.feed_heads
    assert not [k for k in tx.store.positions if k[1] == HUB]
    cycles = [e.cycle_id for e in tx.feed(DEFAULT_PROVIDER) if e.kind is EventKind.CYCLE]
    assert cycles == ["USD-000001", "EUR-000001"]
    assert tx.violations() == []


def test_cycle_reads(tx: FakeTransactions) -> None:
    close_cycle(tx, "USD")
    view = get_cycle(tx, "USD-000001")
    assert view.cycle.state is CycleState.CLOSED and view.audit_head is None
    assert get_cycle(tx, "USD-000002").transfer_count == 0
    with pytest.raises(RemitnetError) as err:
        get_cycle(tx, "USD-999999")
    assert err.value.reason == Reason.CYCLE_NOT_FOUND
    listed = list_cycles(tx, "USD", None, None, 10)
    assert [v.cycle.id for v in listed] == ["USD-000002", "USD-000001"]
    assert listed[1].positions == view.positions
    assert [v.cycle.id for v in list_cycles(tx, "", CycleState.OPEN, None, 10)] == [
        "USD-000002",
        "EUR-000001",
    ]
