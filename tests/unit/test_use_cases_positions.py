"""get_position, a bank's own liquidity and open-cycle totals, on the
in-memory fake."""

from __future__ import annotations

import pytest

from remitnet.services.domain.errors import NotFound, Reason, RemitnetError
from remitnet.services.domain.netting import PositionDelta
from remitnet.services.service_layer.clearing import commit_batch
from remitnet.services.service_layer.positions import get_position
from tests.fakes import FakeTransactions, instruction, seed_bank, seed_close

A, B = "BANKA01", "BANKB01"


@pytest.fixture
def tx() -> FakeTransactions:
    tx = FakeTransactions()
    seed_bank(tx, A, ["USD", "EUR"], deposit=10_000, cap=2_000)
    seed_bank(tx, B, ["USD"], deposit=10_000)
    commit_batch(tx, [instruction(A, B, "USD", 3_000), instruction(B, A, "USD", 500)])
    return tx


def test_a_position_shows_liquidity_headroom_and_open_cycle_totals(tx: FakeTransactions) -> None:
    position = get_position(tx, A)
    assert position.bank == A
    eur, usd = position.currencies  # by currency
    assert (usd.currency, usd.balance, usd.net_debit_cap, usd.unsettled_net) == (
        "USD",
        10_000,
        2_000,
        -2_500,
    )
    assert usd.headroom == 10_000 + 2_000 - 2_500
    assert usd.open_cycle_id == "USD-000001"
    assert usd.open_cycle == PositionDelta(3_000, 500, 1, 1, 0)
    assert (eur.currency, eur.headroom, eur.open_cycle_id) == ("EUR", 12_000, "EUR-000001")
    assert eur.open_cycle == PositionDelta()
    # A consistent snapshot, not a stale read: banks size payments on it.
    assert tx.reads == [False]


def test_one_currency_and_a_new_cycle(tx: FakeTransactions) -> None:
    seed_close(tx, "USD")
    [usd] = get_position(tx, B, "USD").currencies
    assert (usd.open_cycle_id, usd.open_cycle) == ("USD-000002", PositionDelta())
    assert usd.unsettled_net == 2_500  # until the closed cycle settles


def test_unknown_banks_and_accounts_are_not_found(tx: FakeTransactions) -> None:
    with pytest.raises(NotFound) as err:
        get_position(tx, "NOBANK01")
    assert err.value.reason == Reason.UNKNOWN_PARTICIPANT
    with pytest.raises(NotFound) as missing:
        get_position(tx, B, "EUR")
    assert missing.value.reason == Reason.ACCOUNT_NOT_FOUND
    with pytest.raises(RemitnetError) as bad:
        get_position(tx, B, "ZZZ")
    assert bad.value.reason == Reason.UNKNOWN_CURRENCY
