"""Operator use cases (onboarding, liquidity, caps, status) on the
in-memory fake."""

from __future__ import annotations

import json
import uuid

import pytest

from remitnet.services.domain.audit_trail import Action
from remitnet.services.domain.errors import Reason, RemitnetError
from remitnet.services.domain.ledger import EntryKind
from remitnet.services.domain.model import (
    DEFAULT_PROVIDER,
    HUB,
    AccountKind,
    BankStatus,
    CycleState,
    account_id,
)
from remitnet.services.domain.money import INT64_MAX
from remitnet.services.service_layer import participants as uc
from remitnet.services.service_layer.unit_of_work import UnitOfWork
from tests.fakes import FakeTransactions

A, B = "BANKA01", "BANKB01"
USD_A = account_id(A, "USD")


@pytest.fixture
def tx() -> FakeTransactions:
    tx = FakeTransactions()
    uc.create_bank(tx, A, "Bank A", "us-east1", ["USD", "EUR"])
    return tx


def _actions(tx: FakeTransactions) -> list[str]:
    return [r.action for r in tx.uow().trail.records()]


def _refused(reason: str, fn: object, *args: object, **kwargs: object) -> None:
    with pytest.raises(RemitnetError) as err:
        fn(*args, **kwargs)  # type: ignore[operator]
    assert err.value.reason == reason


# Onboarding -----------------------------------------------------------------------


def test_creating_a_bank_opens_its_accounts_the_hubs_and_the_cycles(tx: FakeTransactions) -> None:
    view = uc.create_bank(tx, B, " Bank B ", "europe-west1", ["USD"], actor="operator")
    assert (view.bank.code, view.bank.name, view.bank.status) == (B, "Bank B", BankStatus.ACTIVE)
    assert [(a.id, a.balance, a.kind) for a in view.accounts] == [
        (account_id(B, "USD"), 0, AccountKind.LIQUIDITY)
    ]
    assert tx.store.account_regions[account_id(B, "USD")] == "europe-west1"
    hub = {a.id for a in tx.uow().accounts.of_owner(HUB)}
    assert len(hub) == 8  # four kinds in each of USD and EUR
    assert tx.store.account_regions[account_id(HUB, "USD", AccountKind.FX)] == "HUB"
    # A currency's first bank opens its cycle; the next bank joins it.
    assert {c.id: c.state for c in tx.store.cycles.values()} == {
        "USD-000001": CycleState.OPEN,
        "EUR-000001": CycleState.OPEN,
    }
    assert tx.store.feed_heads[B].seq == 0 and tx.store.feed_heads[B].region == "europe-west1"
    last = tx.uow().trail.head()
    assert last is not None and (last.action, last.principal, last.subject) == (
        str(Action.CREATE_BANK),
        "operator",
        B,
    )
    assert json.loads(last.request) == {
        "bank": B,
        "currencies": ["USD"],
        "home_region": "europe-west1",
        "name": "Bank B",
    }


def test_creating_the_same_bank_again_is_a_replay(tx: FakeTransactions) -> None:
    before = tx.store.dump()
    view = uc.create_bank(tx, A, "Bank A", "us-east1", ["EUR"])
    assert [a.currency for a in view.accounts] == ["EUR", "USD"]
    assert tx.store.dump() == before
    for name, region, currencies in [
        ("Other", "us-east1", ["USD"]),
        ("Bank A", "europe-west1", ["USD"]),
        ("Bank A", "us-east1", ["JPY"]),
    ]:
        _refused(Reason.BANK_EXISTS, uc.create_bank, tx, A, name, region, currencies)
    assert tx.store.dump() == before


def test_a_create_rerun_after_an_ambiguous_commit_creates_once() -> None:
    tx = FakeTransactions()
    tx.fail_next("create_bank", point="after_commit")
    uc.create_bank(tx, A, "Bank A", "us-east1", ["USD"])
    assert tx.attempts["create_bank"] == 2
    assert _actions(tx) == [str(Action.CREATE_BANK)]


def test_bad_onboarding_is_refused_before_the_transaction(tx: FakeTransactions) -> None:
    before = tx.store.dump()
    _refused(Reason.INVALID_BANK_CODE, uc.create_bank, tx, HUB, "Hub", "us-east1", ["USD"])
    _refused(Reason.INVALID_BANK_CODE, uc.create_bank, tx, "b1", "x", "us-east1", ["USD"])
    _refused(Reason.INVALID_NAME, uc.create_bank, tx, B, "  ", "us-east1", ["USD"])
    _refused(Reason.INVALID_REGION, uc.create_bank, tx, B, "B", "US East", ["USD"])
    _refused(Reason.UNKNOWN_CURRENCY, uc.create_bank, tx, B, "B", "us-east1", ["ZZZ"])
    _refused(Reason.INVALID_ARGUMENT, uc.create_bank, tx, B, "B", "us-east1", ["USD", "USD"])
    assert tx.store.dump() == before


def test_opening_an_account_is_idempotent(tx: FakeTransactions) -> None:
    account = uc.open_account(tx, A, "JPY")
    assert account.id == account_id(A, "JPY") and "JPY-000001" in tx.store.cycles
    before = tx.store.dump()
    assert uc.open_account(tx, A, "JPY") == account
    assert tx.store.dump() == before
    _refused(Reason.UNKNOWN_PARTICIPANT, uc.open_account, tx, B, "USD")


def test_bank_reads(tx: FakeTransactions) -> None:
    uc.create_bank(tx, B, "Bank B", "us-east1", ["USD"])
    assert uc.get_bank(tx, A).bank.code == A
    _refused(Reason.UNKNOWN_PARTICIPANT, uc.get_bank, tx, "NOBANK01")
    # Every participant, the default FX provider too, by code.
    assert [v.bank.code for v in uc.list_banks(tx, "", 10)] == [A, B, DEFAULT_PROVIDER]
    after, _ = uc.list_banks(tx, A, 10)
    assert after.bank.code == B and [a.currency for a in after.accounts] == ["USD"]


# Liquidity ------------------------------------------------------------------------------


def test_a_deposit_credits_the_bank_against_the_hubs_reserve(tx: FakeTransactions) -> None:
    deposit_id = str(uuid.uuid4())
    account = uc.deposit(tx, A, "USD", 5_000, deposit_id, actor="operator")
    assert (account.balance, account.entry_count) == (5_000, 1)
    posting = tx.store.postings[f"deposit:{deposit_id}"]
    assert (posting.kind, posting.owner, posting.amount) == (EntryKind.DEPOSIT, A, 5_000)
    entries = tx.uow().ledger.posting_entries(f"deposit:{deposit_id}")
    assert [(e.account_id, e.amount) for e in entries] == [
        (USD_A, 5_000),
        (account_id(HUB, "USD", AccountKind.RESERVE), -5_000),
    ]
    last = tx.uow().trail.head()
    assert last is not None and last.action == str(Action.DEPOSIT)
    assert json.loads(last.request) == {
        "amount": 5_000,
        "bank": A,
        "currency": "USD",
        "deposit_id": deposit_id,
    }


def test_a_deposit_is_posted_once_per_id(tx: FakeTransactions) -> None:
    deposit_id = str(uuid.uuid4())
    first = uc.deposit(tx, A, "USD", 5_000, deposit_id)
    before = tx.store.dump()
    assert uc.deposit(tx, A, "USD", 5_000, deposit_id) == first
    assert uc.deposit(tx, A, "USD", 5_000, deposit_id.upper()) == first  # the same UUID
    assert tx.store.dump() == before
    for currency, amount in (("USD", 5_001), ("EUR", 5_000)):
        _refused(
            Reason.DUPLICATE_WITH_DIFFERENT_CONTENT,
            uc.deposit,
            tx,
            A,
            currency,
            amount,
            deposit_id,
        )
    assert tx.store.dump() == before
    # Without an id, each call is a deposit of its own.
    uc.deposit(tx, A, "USD", 1, "")
    uc.deposit(tx, A, "USD", 1, "")
    assert tx.store.accounts[USD_A].balance == 5_002
    assert tx.violations() == []


def test_a_deposit_rerun_after_an_ambiguous_commit_posts_once(tx: FakeTransactions) -> None:
    tx.fail_next("deposit", point="after_commit")
    account = uc.deposit(tx, A, "USD", 700, str(uuid.uuid4()))
    assert tx.attempts["deposit"] == 2
    assert account.balance == 700 and account.entry_count == 1
    assert _actions(tx).count(str(Action.DEPOSIT)) == 1
    assert tx.violations() == []


def test_refused_deposits_store_nothing(tx: FakeTransactions) -> None:
    uc.deposit(tx, A, "USD", INT64_MAX - 10, "")
    before = tx.store.dump()
    cases: list[tuple[str, str, str, int, str]] = [
        (Reason.CURRENCY_NOT_SUPPORTED, A, "JPY", 1, ""),
        (Reason.UNKNOWN_PARTICIPANT, B, "USD", 1, ""),
        (Reason.INVALID_AMOUNT, A, "USD", 0, ""),
        (Reason.UNKNOWN_CURRENCY, A, "ZZZ", 1, ""),
        (Reason.INVALID_TRANSFER_ID, A, "USD", 1, "not-a-uuid"),
        (Reason.AMOUNT_OUT_OF_RANGE, A, "USD", 11, ""),
    ]
    for reason, bank, currency, amount, deposit_id in cases:
        _refused(reason, uc.deposit, tx, bank, currency, amount, deposit_id)
    assert tx.store.dump() == before


def test_deposits_stop_where_the_hubs_reserve_would_pass_int64(tx: FakeTransactions) -> None:
    """Every deposit debits the hub's reserve in its currency: the deposit
    that would take it past int64 is refused as out of range (nothing
    stored), also within a group of operator actions, and one that brings
    it exactly to the int64 minimum is not."""
    uc.create_bank(tx, B, "Bank B", "us-east1", ["USD"])
    reserve = account_id(HUB, "USD", AccountKind.RESERVE)
    uc.deposit(tx, A, "USD", INT64_MAX, "")
    before = tx.store.dump()
    _refused(Reason.AMOUNT_OUT_OF_RANGE, uc.deposit, tx, B, "USD", 2, "")
    assert tx.store.dump() == before
    units = [
        ("deposit", uc.deposit_unit(B, "USD", 1, "")),
        ("deposit", uc.deposit_unit(B, "USD", 1, "")),
    ]
    first, second = uc.run_together(tx, units)
    assert not isinstance(first, Exception) and first.balance == 1
    assert isinstance(second, RemitnetError) and second.reason == Reason.AMOUNT_OUT_OF_RANGE
    assert tx.uow().accounts.get(reserve).balance == -INT64_MAX - 1  # type: ignore[union-attr]
    # What a group's withdrawal gives the reserve back, its later deposits
    # may take, in the group's one transaction.
    uc.withdraw(tx, A, "USD", 5, "")
    commits = tx.commits.copy()
    again = [
        ("deposit", uc.deposit_unit(B, "USD", 3, "")),
        ("withdraw", uc.withdraw_unit(A, "USD", 4, "")),
        ("deposit", uc.deposit_unit(B, "USD", 6, "")),
    ]
    results = uc.run_together(tx, again)
    assert not any(isinstance(r, Exception) for r in results)
    assert tx.commits - commits == {"operator_actions": 1}
    assert tx.uow().accounts.get(reserve).balance == -INT64_MAX - 1  # type: ignore[union-attr]


def test_a_withdrawal_returns_liquidity_that_backs_no_debit(tx: FakeTransactions) -> None:
    uc.deposit(tx, A, "USD", 1_000, "")
    uc.set_net_debit_cap(tx, A, "USD", 5_000)

    def debit(uow: UnitOfWork) -> None:  # an unsettled net debit of 400
        uow.accounts.add_unsettled({USD_A: -400})

    tx.write("debit", debit)
    before = tx.store.dump()
    with pytest.raises(RemitnetError) as err:
        uc.withdraw(tx, A, "USD", 601, "")  # the cap is credit, not cash
    assert err.value.reason == Reason.INSUFFICIENT_LIQUIDITY
    assert (err.value.metadata["headroom"], err.value.metadata["amount"]) == ("600", "601")
    assert tx.store.dump() == before
    withdrawal_id = str(uuid.uuid4())
    account = uc.withdraw(tx, A, "USD", 600, withdrawal_id)
    assert (account.balance, account.unsettled_net, account.entry_count) == (400, -400, 2)
    posting = tx.store.postings[f"withdrawal:{withdrawal_id}"]
    assert (posting.kind, posting.amount) == (EntryKind.WITHDRAWAL, 600)
    assert tx.store.accounts[account_id(HUB, "USD", AccountKind.RESERVE)].balance == -400
    # Posted once per id, and nothing is left to withdraw.
    assert uc.withdraw(tx, A, "USD", 600, withdrawal_id) == account
    _refused(Reason.INSUFFICIENT_LIQUIDITY, uc.withdraw, tx, A, "USD", 1, "")
    assert _actions(tx).count(str(Action.WITHDRAW)) == 1


def test_received_credits_cannot_be_withdrawn(tx: FakeTransactions) -> None:
    uc.deposit(tx, A, "USD", 1_000, "")
    tx.write("credit", lambda uow: uow.accounts.add_unsettled({USD_A: 300}))
    _refused(Reason.INSUFFICIENT_LIQUIDITY, uc.withdraw, tx, A, "USD", 1_001, "")
    assert uc.withdraw(tx, A, "USD", 1_000, "").balance == 0


# Caps and status -------------------------------------------------------------------------


def test_the_cap_is_set_and_audited_once(tx: FakeTransactions) -> None:
    assert uc.set_net_debit_cap(tx, A, "USD", 500).net_debit_cap == 500
    records = len(tx.store.trail)
    assert uc.set_net_debit_cap(tx, A, "USD", 500).net_debit_cap == 500
    assert len(tx.store.trail) == records
    assert _actions(tx)[-1] == str(Action.SET_NET_DEBIT_CAP)
    _refused(Reason.INVALID_AMOUNT, uc.set_net_debit_cap, tx, A, "USD", -1)
    _refused(Reason.CURRENCY_NOT_SUPPORTED, uc.set_net_debit_cap, tx, A, "JPY", 1)


def test_a_cap_below_the_debit_position_is_refused(tx: FakeTransactions) -> None:
    uc.deposit(tx, A, "USD", 1_000, "")
    uc.set_net_debit_cap(tx, A, "USD", 500)
    tx.write("debit", lambda uow: uow.accounts.add_unsettled({USD_A: -1_200}))
    before = tx.store.dump()
    _refused(Reason.CAP_BELOW_POSITION, uc.set_net_debit_cap, tx, A, "USD", 199)
    assert tx.store.dump() == before
    assert uc.set_net_debit_cap(tx, A, "USD", 200).net_debit_cap == 200


def test_suspending_and_resuming(tx: FakeTransactions) -> None:
    assert uc.set_status(tx, A, BankStatus.SUSPENDED).bank.status is BankStatus.SUSPENDED
    assert tx.store.banks[A].status is BankStatus.SUSPENDED
    before = tx.store.dump()
    uc.set_status(tx, A, BankStatus.SUSPENDED)
    assert tx.store.dump() == before
    assert uc.set_status(tx, A, BankStatus.ACTIVE).bank.status is BankStatus.ACTIVE
    assert _actions(tx)[-2:] == [str(Action.SUSPEND_BANK), str(Action.RESUME_BANK)]
    _refused(Reason.UNKNOWN_PARTICIPANT, uc.set_status, tx, B, BankStatus.SUSPENDED)
