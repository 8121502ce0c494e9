"""The rules the domain entities hold: accounts, banks, cycles, quotes and
stored transfers (issue 12)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remitnet.services.domain.account import Account, headroom, within_limit
from remitnet.services.domain.bank import Bank
from remitnet.services.domain.cycle import Cycle
from remitnet.services.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Reason,
    RemitnetError,
)
from remitnet.services.domain.fx import Quote, QuoteTerms
from remitnet.services.domain.model import (
    HUB,
    BankStatus,
    CycleState,
    Instruction,
    StoredTransfer,
    TransferStatus,
    account_id,
    position_account_id,
)
from remitnet.services.domain.money import INT64_MAX, INT64_MIN
from remitnet.services.domain.netting import AccountState, PositionDelta, take_back

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TID = "0b8f3a52-6f3e-4c1e-9a57-2d1f6f1c9e11"
QID = "5c1d0e2a-3b4c-4d5e-8f90-a1b2c3d4e5f6"


def account(balance: int, cap: int = 0, unsettled: int = 0) -> Account:
    aid = account_id("BANKA01", "USD")
    return Account(aid, "BANKA01", "USD", "LIQUIDITY", balance, cap, unsettled, 0, NOW)


def raised(fn: object, *args: object) -> RemitnetError:
    assert callable(fn)
    with pytest.raises(RemitnetError) as err:
        fn(*args)
    return err.value


# Account ---------------------------------------------------------------------


def test_headroom_is_balance_plus_cap_plus_the_unsettled_net() -> None:
    assert account(100, 50, -30).headroom == 120
    assert account(100, 50, 30).headroom == 180  # received credits count
    assert headroom(100, 50, -30) == 120


@given(st.integers(INT64_MIN, INT64_MAX), st.integers(0, INT64_MAX), st.integers(-(2**63), 2**63))
def test_the_working_copy_has_the_same_headroom_and_limit(bal: int, cap: int, net: int) -> None:
    state = AccountState("X/USD/LIQUIDITY", "X", "USD", bal, cap, net)
    assert state.headroom == headroom(bal, cap, net)
    assert state.within_limit is within_limit(bal, cap, net)


def test_within_limit_bounds_the_net_debit_by_liquidity_plus_cap() -> None:
    assert within_limit(100, 50, -150)
    assert not within_limit(100, 50, -151)
    assert within_limit(0, 0, 10**9)  # a net credit is always within


def test_withdrawable_is_the_balance_less_an_unsettled_debit_only() -> None:
    assert account(100, 500, -30).withdrawable() == 70
    assert account(100, 500, 30).withdrawable() == 100  # credits are not cash yet
    assert account(100, 500, -130).withdrawable() == -30  # the cap covers the rest


def test_a_withdrawal_takes_at_most_what_is_withdrawable() -> None:
    a = account(100, 500, -30)
    a.check_withdrawal(70)
    err = raised(a.check_withdrawal, 71)
    assert isinstance(err, FailedPrecondition)
    assert err.reason == Reason.INSUFFICIENT_LIQUIDITY
    assert err.message == "at most 70 minor units can be withdrawn"
    assert err.metadata == {"bank": "BANKA01", "currency": "USD", "headroom": "70", "amount": "71"}
    # Nothing withdrawable is reported as 0, not as a negative amount.
    err = raised(account(100, 500, -130).check_withdrawal, 1)
    assert err.message == "at most 0 minor units can be withdrawn"
    assert err.metadata["headroom"] == "0"


def test_a_deposit_keeps_the_balance_within_int64() -> None:
    account(INT64_MAX - 5).check_deposit(5)
    err = raised(account(INT64_MAX - 5).check_deposit, 6)
    assert isinstance(err, InvalidArgument)
    assert (err.reason, err.message) == (Reason.AMOUNT_OUT_OF_RANGE, "balance would overflow int64")


def test_a_cap_may_not_fall_below_the_current_position() -> None:
    a = account(100, 500, -300)
    a.check_cap(200)
    err = raised(a.check_cap, 199)
    assert isinstance(err, FailedPrecondition)
    assert err.reason == Reason.CAP_BELOW_POSITION
    assert err.message == (
        "the bank's current net debit position exceeds its liquidity plus this cap"
    )
    assert err.metadata == {"bank": "BANKA01", "currency": "USD"}


# Bank ------------------------------------------------------------------------


def test_only_an_active_bank_takes_part() -> None:
    active = Bank("BANKA01", "A", "us-east1", BankStatus.ACTIVE, NOW)
    suspended = Bank("BANKS01", "S", "us-east1", BankStatus.SUSPENDED, NOW)
    assert active.is_active and not suspended.is_active
    assert active.refusal() is None
    active.check_active()
    err = raised(suspended.check_active)
    assert isinstance(err, FailedPrecondition)
    assert (err.reason, err.message) == (Reason.PARTICIPANT_SUSPENDED, "bank BANKS01 is suspended")
    assert err.metadata == {"bank": "BANKS01"}
    refusal = suspended.refusal()
    assert refusal is not None and refusal.reason == Reason.PARTICIPANT_SUSPENDED


# Cycle -----------------------------------------------------------------------


def cycle(state: CycleState, seq: int = 7) -> Cycle:
    return Cycle(f"USD-{seq:06d}", "USD", seq, state, NOW, None, None, 0, 0, 0)


def test_cycle_states() -> None:
    assert cycle(CycleState.OPEN).is_open and not cycle(CycleState.OPEN).is_settled
    assert not cycle(CycleState.CLOSED).is_open and not cycle(CycleState.CLOSED).is_settled
    assert cycle(CycleState.SETTLED).is_settled and not cycle(CycleState.SETTLED).is_open


def test_closing_seals_the_totals_and_names_the_next_cycle() -> None:
    positions = {
        "A": PositionDelta(sent=70, received=20, sent_count=2, received_count=1),
        "B": PositionDelta(sent=20, received=70, sent_count=1, received_count=2),
    }
    closing = cycle(CycleState.OPEN, seq=7).close(positions)
    assert (closing.next_id, closing.next_seq) == ("USD-000008", 8)
    assert closing.totals.transfer_count == 3
    assert closing.totals.gross_value == 90
    assert closing.totals.net_value == 50


def test_only_an_open_cycle_closes_and_its_nets_must_balance() -> None:
    cycle(CycleState.OPEN).check_closable()
    for state in (CycleState.CLOSED, CycleState.SETTLED):
        err = raised(cycle(state).check_closable)
        assert err.reason == Reason.CYCLE_NOT_OPEN
        with pytest.raises(FailedPrecondition):
            cycle(state).close({})
    with pytest.raises(AssertionError):
        cycle(CycleState.OPEN).close({"A": PositionDelta(sent=5), "B": PositionDelta(received=4)})


def test_an_open_cycle_is_not_settleable() -> None:
    err = raised(cycle(CycleState.OPEN).check_settleable)
    assert isinstance(err, FailedPrecondition)
    assert (err.reason, err.message) == (
        Reason.CYCLE_NOT_CLOSED,
        "cycle USD-000007 is open; close it first",
    )
    cycle(CycleState.CLOSED).check_settleable()
    cycle(CycleState.SETTLED).check_settleable()  # a replay, see is_settled


def test_transfers_are_cancellable_only_in_an_open_cycle() -> None:
    cycle(CycleState.OPEN).check_cancellable()
    for state in (CycleState.CLOSED, CycleState.SETTLED):
        err = raised(cycle(state).check_cancellable)
        assert isinstance(err, FailedPrecondition)
        assert (err.reason, err.message) == (
            Reason.CYCLE_NOT_OPEN,
            "cycle USD-000007 is closed; the transfer can no longer be cancelled",
        )


# Quote -----------------------------------------------------------------------

TERMS = QuoteTerms("USD", "JPY", 100, 15_000, Decimal(151), Decimal(150), 66, 100, "USD/JPY")


def quote(
    bank: str = "BANKA01",
    expires: timedelta = timedelta(minutes=1),
    used: str | None = None,
    provider: str | None = "FXP01",
) -> Quote:
    return Quote(QID, bank, TERMS, NOW, NOW + expires, used, provider)


def test_a_quote_is_seen_by_its_bank_and_the_operator() -> None:
    assert quote().visible_to("BANKA01") and quote().visible_to(None)
    assert not quote().visible_to("BANKB01")


def test_a_quote_expires_at_its_expiry_time() -> None:
    assert not quote().is_expired(NOW + timedelta(seconds=59))
    assert quote().is_expired(NOW + timedelta(minutes=1))


def test_quote_refusals_in_order() -> None:
    assert quote().refusal("BANKA01", NOW) is None
    quote().check_usable("BANKA01", NOW)
    # Another bank's used and expired quote: not owned comes first.
    stale = quote(expires=timedelta(0), used="someone")
    err = stale.refusal("BANKB01", NOW)
    assert isinstance(err, PermissionDenied) and err.reason == Reason.QUOTE_NOT_OWNED
    err = stale.refusal("BANKA01", NOW)
    assert err is not None and err.reason == Reason.QUOTE_USED
    err = quote(expires=timedelta(0)).refusal("BANKA01", NOW)
    assert err is not None
    assert (err.reason, err.message) == (
        Reason.QUOTE_EXPIRED,
        "the quote has expired; ask for a new one",
    )
    # Taken by an earlier item of the same batch.
    err = quote().refusal("BANKA01", NOW, {QID: TID})
    assert err is not None and err.reason == Reason.QUOTE_USED
    # Given by the hub as dealer before FX providers: unusable, after the rest.
    err = quote(provider=None).refusal("BANKA01", NOW)
    assert err is not None
    assert (err.reason, err.message) == (
        Reason.QUOTE_EXPIRED,
        "quoted by the hub before FX providers; ask for a new quote",
    )
    err = quote(provider=None, used="x").refusal("BANKA01", NOW)
    assert err is not None and err.reason == Reason.QUOTE_USED
    assert raised(quote(used="x").check_usable, "BANKA01", NOW).reason == Reason.QUOTE_USED


def test_a_transfer_pays_with_a_quote_for_exactly_what_it_sells() -> None:
    assert quote().mismatch("USD", 100) is None
    for currency, amount in (("USD", 101), ("EUR", 100)):
        err = quote().mismatch(currency, amount)
        assert isinstance(err, InvalidArgument)
        assert (err.reason, err.message) == (
            Reason.QUOTE_MISMATCH,
            "the quote sells 100 USD; the transfer's amount must match",
        )


# StoredTransfer --------------------------------------------------------------


def item(gross: bool = False, quote_id: str | None = None) -> Instruction:
    return Instruction(TID, "BANKA01", "BANKB01", "USD", 100, "inv 1", quote_id, gross)


def test_a_netted_transfer_is_accepted_into_its_cycle() -> None:
    t = StoredTransfer.from_instruction(item(), accepted_at=NOW, cycle_id="USD-000007")
    assert type(t) is StoredTransfer
    fields = (TID, "BANKA01", "BANKB01", "USD", 100, "inv 1", TransferStatus.ACCEPTED)
    assert t == StoredTransfer(*fields, "USD-000007", NOW)
    assert not t.gross and item().same_content(t)


def test_a_cross_currency_transfer_carries_its_quote_and_the_creditor_leg() -> None:
    t = StoredTransfer.from_instruction(
        item(quote_id=QID),
        accepted_at=NOW,
        cycle_id="USD-000007",
        quote=quote(),
        credit_cycle_id="JPY-000003",
    )
    fields = (TID, "BANKA01", "BANKB01", "USD", 100, "inv 1", TransferStatus.ACCEPTED)
    assert t == StoredTransfer(
        *fields, "USD-000007", NOW, QID, "JPY", 15_000, "JPY-000003", 0, "FXP01"
    )
    assert (t.credit_currency, t.credit_amount) == ("JPY", 15_000)
    # Through the quote's FX provider, with no fee: its spread is what it
    # keeps by delivering less.
    assert [(leg.payer, leg.payee, leg.amount, leg.fee) for leg in t.legs()] == [
        ("BANKA01", "FXP01", 100, 0),
        ("FXP01", "BANKB01", 15_000, 0),
    ]


def test_a_cross_currency_transfer_before_fx_providers_goes_through_the_hub() -> None:
    t = StoredTransfer.from_instruction(
        item(quote_id=QID),
        accepted_at=NOW,
        cycle_id="USD-000007",
        quote=quote(provider=None),
        credit_cycle_id="JPY-000003",
    )
    fields = (TID, "BANKA01", "BANKB01", "USD", 100, "inv 1", TransferStatus.ACCEPTED)
    assert t == StoredTransfer(*fields, "USD-000007", NOW, QID, "JPY", 15_000, "JPY-000003", 100)
    assert t.fx_provider is None
    assert [(leg.payer, leg.payee, leg.fee) for leg in t.legs()] == [
        ("BANKA01", HUB, 0),
        (HUB, "BANKB01", 100),
    ]


def test_a_gross_transfer_is_settled_without_a_cycle() -> None:
    t = StoredTransfer.from_instruction(item(gross=True), accepted_at=NOW)
    assert (t.status, t.cycle_id, t.gross, t.legs()) == (TransferStatus.SETTLED, "", True, ())
    assert item(gross=True).same_content(t)


def test_the_factory_refuses_inconsistent_arguments() -> None:
    with pytest.raises(ValueError):
        StoredTransfer.from_instruction(item(), accepted_at=NOW)  # netted without a cycle
    with pytest.raises(ValueError):
        StoredTransfer.from_instruction(item(gross=True), accepted_at=NOW, cycle_id="USD-000007")
    with pytest.raises(ValueError):
        StoredTransfer.from_instruction(
            item(quote_id=QID), accepted_at=NOW, cycle_id="USD-000007", quote=quote()
        )


def stored(
    status: TransferStatus = TransferStatus.ACCEPTED, cycle_id: str = "USD-000007"
) -> StoredTransfer:
    return StoredTransfer(TID, "BANKA01", "BANKB01", "USD", 100, "", status, cycle_id, NOW)


def test_a_transfer_is_seen_by_its_parties_and_the_operator() -> None:
    t = stored()
    assert t.visible_to("BANKA01") and t.visible_to("BANKB01") and t.visible_to(None)
    assert not t.visible_to("BANKC01")


def test_who_may_cancel_what() -> None:
    # Netted: the operator alone; reserved: the debtor too.
    assert stored().check_cancellable(None) is True
    assert stored(TransferStatus.RESERVED, "").check_cancellable("BANKA01") is True
    err = raised(stored().check_cancellable, "BANKA01")
    assert err.reason == Reason.TRANSFER_NOT_CANCELLABLE
    # Only the debtor, even for a transfer cancelled already or gross.
    for t in (stored(), stored(TransferStatus.CANCELLED), stored(TransferStatus.SETTLED, "")):
        err = raised(t.check_cancellable, "BANKB01")
        assert (err.reason, err.message) == (
            Reason.NOT_TRANSFER_DEBTOR,
            "only the debtor bank can cancel a transfer",
        )
    assert stored(TransferStatus.CANCELLED).check_cancellable("BANKA01") is False  # a replay
    err = raised(stored(TransferStatus.SETTLED, "").check_cancellable, "BANKA01")
    assert isinstance(err, FailedPrecondition)
    assert (err.reason, err.message) == (
        Reason.TRANSFER_NOT_CANCELLABLE,
        "a gross transfer is final once settled",
    )


def states(**nets: int) -> dict[tuple[str, str], AccountState]:
    return {
        (bank, "USD"): AccountState(account_id(bank, "USD"), bank, "USD", 0, 0, net)
        for bank, net in nets.items()
    }


def test_taking_a_transfer_back_reverses_its_leg() -> None:
    accounts = states(BANKA01=-100, BANKB01=100)
    positions, deltas = take_back(stored(), accounts)
    assert deltas == {account_id("BANKA01", "USD"): 100, account_id("BANKB01", "USD"): -100}
    assert positions[("USD-000007", "BANKA01")] == PositionDelta(-100, 0, -1, 0)
    assert positions[("USD-000007", "BANKB01")] == PositionDelta(0, -100, 0, -1)
    assert accounts[("BANKB01", "USD")].unsettled_net == 0


def test_a_creditor_that_used_the_credit_blocks_the_cancellation() -> None:
    # B received 100 and sent 1 on: without the credit it is 1 in debit,
    # with no liquidity and no cap.
    err = raised(take_back, stored(), states(BANKA01=-100, BANKB01=99))
    assert isinstance(err, FailedPrecondition)
    assert (err.reason, err.message) == (
        Reason.CANCEL_EXCEEDS_CREDITOR_HEADROOM,
        "the creditor has already used this credit; cancelling would breach its limit",
    )


@pytest.mark.parametrize("provider", ["FXP01", None])
def test_taking_a_cross_currency_transfer_back_reverses_both_legs(provider: str | None) -> None:
    t = StoredTransfer.from_instruction(
        item(quote_id=QID),
        accepted_at=NOW,
        cycle_id="USD-000007",
        quote=quote(provider=provider),
        credit_cycle_id="JPY-000003",
    )
    dealer = provider or HUB  # the hub, for a transfer from before FX providers
    nets = {("BANKA01", "USD"): -100, (dealer, "USD"): 100, (dealer, "JPY"): -15_000}
    nets[("BANKB01", "JPY")] = 15_000
    accounts = {
        (owner, ccy): AccountState(position_account_id(owner, ccy), owner, ccy, 0, 0, net)
        for (owner, ccy), net in nets.items()
    }
    positions, deltas = take_back(t, accounts)
    assert all(a.unsettled_net == 0 for a in accounts.values())
    assert positions[("JPY-000003", dealer)].fee == (0 if provider else -100)
    assert sum(deltas.values()) == 0
