"""Payee confirmation, expiry, returns and recalls on the in-memory fake."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from remitnet.services.domain.errors import NotFound, Reason, RemitnetError
from remitnet.services.domain.events import EventKind
from remitnet.services.domain.lifecycle import (
    EXPIRY_REASON,
    Confirmation,
    RecallState,
    make_confirmation,
    make_recall,
    make_return,
)
from remitnet.services.domain.model import (
    DEFAULT_PROVIDER,
    StoredTransfer,
    TransferStatus,
    account_id,
)
from remitnet.services.domain.netting import Accepted, Outcome, Rejected
from remitnet.services.service_layer.clearing import (
    cancel_transfer,
    commit_batch,
    get_transfer,
    list_transfers,
)
from remitnet.services.service_layer.lifecycle import (
    LifecycleConfig,
    confirm_many,
    confirm_transfers,
    expire_due,
    get_recall,
    recall_transfer,
    reject_recall,
    return_transfers,
)
from remitnet.services.service_layer.unit_of_work import UnitOfWork
from tests.fakes import (
    FakeTransactions,
    instruction,
    seed_bank,
    seed_close,
    seed_funds,
    seed_quote,
    seed_rates,
)

US, EU, AS = "BANKUS01", "BANKEU01", "BANKAS01"


@pytest.fixture
def tx() -> FakeTransactions:
    tx = FakeTransactions()
    seed_bank(tx, US, ["USD", "EUR"], region="us-east1", deposit=100_000)
    seed_bank(tx, EU, ["USD", "EUR"], region="europe-west1", deposit=100_000)
    seed_bank(tx, AS, ["USD"], region="asia-southeast1", deposit=100_000)
    return tx


def _require_confirmation(tx: FakeTransactions, bank: str) -> None:
    def unit(uow: UnitOfWork) -> None:
        uow.banks.set_requires_confirmation(bank, True)

    tx.write("seed_setting", unit)


def _submit(
    tx: FakeTransactions,
    debtor: str,
    creditor: str,
    amount: int,
    *,
    quote_id: str = "",
    confirm: bool = True,
    timeout_ms: int = 0,
    currency: str = "USD",
) -> StoredTransfer:
    item = instruction(
        debtor,
        creditor,
        currency,
        amount,
        quote_id=quote_id,
        confirm=confirm,
        timeout_ms=timeout_ms,
    )
    [outcome] = commit_batch(tx, [item]).result.outcomes
    assert isinstance(outcome, Accepted), outcome
    return outcome.transfer


def _account(tx: FakeTransactions, owner: str, currency: str = "USD") -> tuple[int, int]:
    a = tx.store.accounts[account_id(owner, currency)]
    return a.unsettled_net, a.reserved


def _confirm(tx: FakeTransactions, caller: str, *answers: Confirmation) -> list[Outcome]:
    return confirm_transfers(tx, caller, answers).outcomes


def _accept(tid: str) -> Confirmation:
    return make_confirmation(tid, True, "")


def _reject(tid: str, reason: str = "AC04") -> Confirmation:
    return make_confirmation(tid, False, reason)


def _error(outcome: Outcome) -> RemitnetError:
    assert isinstance(outcome, Rejected), outcome
    return outcome.error


# Reservation ---------------------------------------------------------------


def test_a_transfer_asking_for_confirmation_is_reserved_not_netted(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300)
    assert (t.status, t.cycle_id) == (TransferStatus.RESERVED, "")
    assert t.deadline is not None and t.deadline > t.accepted_at
    assert _account(tx, US) == (0, 300)  # held, not a position
    assert _account(tx, EU) == (0, 0)  # the creditor has nothing yet
    assert tx.uow().positions.of_cycle("USD-000001") == {}
    # Both hear of it: a BATCH RESERVED event, the creditor's cue to act.
    for bank in (US, EU):
        last = tx.feed(bank)[-1]
        assert (last.kind, last.status) == (EventKind.BATCH, TransferStatus.RESERVED)
        [expanded] = tx.uow().events.load(bank, last.seq, 10)
        assert [x.transfer_id for x in expanded.transfers] == [t.transfer_id]
    assert tx.violations() == []


def test_the_creditor_setting_reserves_every_incoming_transfer(tx: FakeTransactions) -> None:
    _require_confirmation(tx, EU)
    t = _submit(tx, US, EU, 300, confirm=False)
    assert t.status is TransferStatus.RESERVED
    other = _submit(tx, EU, US, 100, confirm=False)
    assert other.status is TransferStatus.ACCEPTED  # US requires nothing


def test_reservations_count_against_headroom(tx: FakeTransactions) -> None:
    _submit(tx, US, EU, 80_000)
    item = instruction(US, AS, "USD", 30_000)
    [outcome] = commit_batch(tx, [item]).result.outcomes
    assert _error(outcome).reason == Reason.INSUFFICIENT_LIQUIDITY


def test_a_reservation_deadline_is_the_default_unless_asked_for_less(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 1)
    assert t.deadline is not None
    assert t.deadline - t.accepted_at == timedelta(milliseconds=30_000)
    short = _submit(tx, US, EU, 1, timeout_ms=1_500)
    assert short.deadline is not None
    assert short.deadline - short.accepted_at == timedelta(milliseconds=1_500)


# Accept / reject ------------------------------------------------------------


def test_accepting_nets_it_into_the_open_cycle_and_releases_exactly(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300)
    [outcome] = _confirm(tx, EU, _accept(t.transfer_id))
    assert isinstance(outcome, Accepted) and not outcome.replayed
    done = outcome.transfer
    assert (done.status, done.cycle_id) == (TransferStatus.ACCEPTED, "USD-000001")
    assert done.resolved_at is not None
    assert _account(tx, US) == (-300, 0)
    assert _account(tx, EU) == (300, 0)
    # Accepting twice is idempotent.
    before = tx.store.dump()
    [again] = _confirm(tx, EU, _accept(t.transfer_id))
    assert isinstance(again, Accepted) and again.replayed
    assert tx.store.dump() == before
    # Rejecting after accepting is refused.
    assert _error(_confirm(tx, EU, _reject(t.transfer_id))[0]).reason == (
        Reason.TRANSFER_ALREADY_ACCEPTED
    )
    for bank in (US, EU):
        last = tx.feed(bank)[-1]
        assert (last.kind, last.status) == (EventKind.RESOLVED, TransferStatus.ACCEPTED)
    assert tx.violations() == []


def test_accepted_after_its_cycle_closed_goes_into_the_next(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300)
    seed_close(tx, "USD")
    [outcome] = _confirm(tx, EU, _accept(t.transfer_id))
    assert isinstance(outcome, Accepted)
    assert outcome.transfer.cycle_id == "USD-000002"
    assert tx.violations() == []


def test_rejecting_releases_with_its_reason(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300)
    [outcome] = _confirm(tx, EU, _reject(t.transfer_id, "AC06"))
    assert isinstance(outcome, Accepted)
    assert (outcome.transfer.status, outcome.transfer.reason) == (TransferStatus.REJECTED, "AC06")
    assert _account(tx, US) == (0, 0)
    assert _error(_confirm(tx, EU, _accept(t.transfer_id))[0]).reason == Reason.TRANSFER_REJECTED
    [again] = _confirm(tx, EU, _reject(t.transfer_id, "AC06"))
    assert isinstance(again, Accepted) and again.replayed
    assert tx.violations() == []


def test_only_the_creditor_answers_and_others_learn_nothing(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300)
    netted = _submit(tx, US, EU, 5, confirm=False)
    before = tx.store.dump()
    assert _error(_confirm(tx, US, _accept(t.transfer_id))[0]).reason == (
        Reason.NOT_TRANSFER_CREDITOR
    )
    err = _error(_confirm(tx, AS, _accept(t.transfer_id))[0])
    assert isinstance(err, NotFound) and err.reason == Reason.TRANSFER_NOT_FOUND
    unknown = str(uuid.uuid4())
    assert _error(_confirm(tx, EU, _accept(unknown))[0]).reason == Reason.TRANSFER_NOT_FOUND
    assert _error(_confirm(tx, EU, _accept(netted.transfer_id))[0]).reason == (
        Reason.TRANSFER_NOT_RESERVED
    )
    assert tx.store.dump() == before


def test_unknown_reason_codes_are_refused_before_anything() -> None:
    tid = str(uuid.uuid4())
    for reason in ("", "XXXX", "ac04", "AB05"):
        with pytest.raises(RemitnetError) as err:
            make_confirmation(tid, False, reason)
        assert err.value.reason == Reason.UNKNOWN_REASON_CODE
    with pytest.raises(RemitnetError):
        make_confirmation(tid, True, "AC04")  # an acceptance has no reason


def test_a_batch_of_answers_has_a_result_per_item(tx: FakeTransactions) -> None:
    ts = [_submit(tx, US, EU, 10 + i) for i in range(4)]
    outcomes = _confirm(
        tx,
        EU,
        _accept(ts[0].transfer_id),
        _reject(ts[1].transfer_id),
        _accept(ts[2].transfer_id),
        _accept(str(uuid.uuid4())),
        _accept(ts[0].transfer_id),  # again, in the same call: a replay
    )
    assert [type(o).__name__ for o in outcomes] == [
        "Accepted",
        "Accepted",
        "Accepted",
        "Rejected",
        "Accepted",
    ]
    assert isinstance(outcomes[4], Accepted) and outcomes[4].replayed
    assert _account(tx, US) == (-22, ts[3].amount)
    assert tx.violations() == []


def test_many_creditors_calls_in_one_unit_are_the_calls_one_after_the_other() -> None:
    def run(grouped: bool) -> tuple[list[list[str]], dict[str, tuple[int, int]]]:
        tx = FakeTransactions()
        for bank in (US, EU, AS):
            seed_bank(tx, bank, ["USD"], deposit=100_000)
        to_eu = [_submit(tx, US, EU, 10 + i) for i in range(3)]
        to_as = [_submit(tx, US, AS, 20 + i) for i in range(2)]
        calls = [
            (EU, [_accept(to_eu[0].transfer_id), _reject(to_eu[1].transfer_id)]),
            # Another creditor's transfer: unknown to AS, left for EU.
            (AS, [_accept(to_as[0].transfer_id), _accept(to_eu[2].transfer_id)]),
            (EU, [_accept(to_eu[0].transfer_id), _accept(to_eu[2].transfer_id)]),
        ]
        if grouped:
            results = confirm_many(tx, calls)
        else:
            results = [confirm_transfers(tx, caller, answers) for caller, answers in calls]
        shapes = [
            [
                f"{o.transfer.status.name}{' replay' if o.replayed else ''}"
                if isinstance(o, Accepted)
                else o.error.reason
                for o in r.outcomes
            ]
            for r in results
        ]
        assert tx.violations() == []
        accounts = {k: (a.unsettled_net, a.reserved) for k, a in tx.store.accounts.items()}
        return shapes, accounts

    grouped, one_by_one = run(True), run(False)
    assert grouped[0] == [
        ["ACCEPTED", "REJECTED"],
        ["ACCEPTED", Reason.TRANSFER_NOT_FOUND],
        ["ACCEPTED replay", "ACCEPTED"],
    ]
    assert grouped == one_by_one


def test_an_answer_retried_after_an_ambiguous_commit_applies_once(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300)
    tx.fail_next("confirm_transfers", point="after_commit")
    [outcome] = _confirm(tx, EU, _accept(t.transfer_id))
    assert tx.attempts["confirm_transfers"] == 2
    assert isinstance(outcome, Accepted)
    assert _account(tx, US) == (-300, 0)
    assert tx.violations() == []


# Expiry -------------------------------------------------------------------------


def test_the_hub_expires_past_deadlines_from_the_stored_state(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300, timeout_ms=1_000)
    keep = _submit(tx, US, EU, 200)
    assert expire_due(tx).transfers == 0  # nothing due yet
    later = datetime.now(UTC) + timedelta(seconds=2)
    swept = expire_due(tx, later)
    assert (swept.transfers, swept.recalls) == (1, 0)
    expired = tx.store.transfers[t.transfer_id]
    assert (expired.status, expired.reason) == (TransferStatus.EXPIRED, EXPIRY_REASON)
    assert tx.store.transfers[keep.transfer_id].status is TransferStatus.RESERVED
    assert _account(tx, US) == (0, 200)  # exactly the expired one released
    # Expired once: a second sweep (another hub, or after a restart) finds nothing.
    assert expire_due(tx, later).transfers == 0
    assert _account(tx, US) == (0, 200)
    # Accepting an expired transfer is refused with its reason.
    late = confirm_transfers(tx, EU, [_accept(t.transfer_id)])
    assert _error(late.outcomes[0]).reason == Reason.TRANSFER_EXPIRED
    assert late.expired == 0  # the expirer ended it, not this call
    last = tx.feed(EU)[-1]
    assert (last.kind, last.status) == (EventKind.RESOLVED, TransferStatus.EXPIRED)
    assert tx.violations() == []


def test_an_answer_after_the_deadline_expires_it_instead(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300, timeout_ms=1_000)
    later = datetime.now(UTC) + timedelta(seconds=2)
    confirmed = confirm_transfers(tx, EU, [_accept(t.transfer_id)], now=later)
    [outcome] = confirmed.outcomes
    assert _error(outcome).reason == Reason.TRANSFER_EXPIRED
    assert confirmed.expired == 1  # ended here: the metrics count this expiry
    assert tx.store.transfers[t.transfer_id].status is TransferStatus.EXPIRED
    assert _account(tx, US) == (0, 0)
    assert tx.violations() == []


def test_expiry_takes_at_most_its_limit_oldest_first(tx: FakeTransactions) -> None:
    ts = [_submit(tx, US, EU, 1, timeout_ms=1_000 + i) for i in range(5)]
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert expire_due(tx, later, limit=3).transfers == 3
    states = [tx.store.transfers[t.transfer_id].status for t in ts]
    assert states == [TransferStatus.EXPIRED] * 3 + [TransferStatus.RESERVED] * 2
    assert expire_due(tx, later, limit=3).transfers == 2
    assert tx.violations() == []


# Cancel ------------------------------------------------------------------------


def test_the_debtor_cancels_a_reserved_transfer_releasing_it(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300)
    view = cancel_transfer(tx, US, t.transfer_id)
    assert view.status is TransferStatus.CANCELLED
    assert _account(tx, US) == (0, 0)
    assert _error(_confirm(tx, EU, _accept(t.transfer_id))[0]).reason == (
        Reason.TRANSFER_NOT_CANCELLABLE
    )
    assert tx.violations() == []


# Cross-currency ----------------------------------------------------------------


def _fx(tx: FakeTransactions, amount: int = 10_000) -> str:
    seed_funds(tx, DEFAULT_PROVIDER, {"EUR": 100_000})
    seed_rates(tx, {("USD", "EUR"): "0.92"})
    return seed_quote(tx, US, "USD", "EUR", amount).quote_id


def test_a_cross_currency_reservation_holds_the_providers_delivery(tx: FakeTransactions) -> None:
    quote = _fx(tx)
    t = _submit(tx, US, EU, 10_000, quote_id=quote)
    assert t.status is TransferStatus.RESERVED and t.creditor_amount is not None
    assert _account(tx, DEFAULT_PROVIDER, "EUR") == (0, t.creditor_amount)
    [outcome] = _confirm(tx, EU, _accept(t.transfer_id))
    assert isinstance(outcome, Accepted)
    assert outcome.transfer.creditor_cycle_id == "EUR-000001"
    assert _account(tx, DEFAULT_PROVIDER, "EUR") == (-t.creditor_amount, 0)
    assert _account(tx, EU, "EUR") == (t.creditor_amount, 0)
    assert tx.violations() == []


def test_a_rejected_cross_currency_reservation_releases_both(tx: FakeTransactions) -> None:
    quote = _fx(tx)
    t = _submit(tx, US, EU, 10_000, quote_id=quote)
    _confirm(tx, EU, _reject(t.transfer_id, "BE01"))
    assert _account(tx, DEFAULT_PROVIDER, "EUR") == (0, 0)
    assert _account(tx, US) == (0, 0)
    assert tx.violations() == []


# Returns -------------------------------------------------------------------------


def _return(
    tx: FakeTransactions, caller: str, original: str, reason: str = "AC04", **kw: str
) -> Outcome:
    request = make_return(kw.pop("return_id", str(uuid.uuid4())), original, reason, **kw)
    [outcome] = return_transfers(tx, caller, [request]).outcomes
    return outcome


def test_a_return_is_its_own_transfer_back_netted_at_once(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300, confirm=False)
    outcome = _return(tx, EU, t.transfer_id, "AC04")
    assert isinstance(outcome, Accepted)
    back = outcome.transfer
    assert (back.debtor, back.creditor, back.amount) == (EU, US, 300)
    assert (back.return_of, back.reason, back.status) == (
        t.transfer_id,
        "AC04",
        TransferStatus.ACCEPTED,
    )
    assert tx.store.transfers[t.transfer_id].returned_by == back.transfer_id
    assert _account(tx, US) == (0, 0) and _account(tx, EU) == (0, 0)
    view = get_transfer(tx, US, t.transfer_id)
    assert view.transfer.returned_by == back.transfer_id
    assert tx.violations() == []


def test_a_transfer_is_returned_at_most_once(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300, confirm=False)
    rid = str(uuid.uuid4())
    first = _return(tx, EU, t.transfer_id, return_id=rid)
    before = tx.store.dump()
    replay = _return(tx, EU, t.transfer_id, return_id=rid)
    assert isinstance(replay, Accepted) and replay.replayed
    assert isinstance(first, Accepted) and replay.transfer == first.transfer
    assert _error(_return(tx, EU, t.transfer_id)).reason == Reason.ALREADY_RETURNED
    # Two returns of one transfer in one call: the second is refused.
    other = _submit(tx, US, EU, 10, confirm=False)
    requests = [make_return(str(uuid.uuid4()), other.transfer_id, "AC04") for _ in range(2)]
    a, b = return_transfers(tx, EU, requests).outcomes
    assert isinstance(a, Accepted) and _error(b).reason == Reason.ALREADY_RETURNED
    assert len(tx.store.transfers) == len(before["transfers"]) + 2  # `other`, its one return
    assert tx.violations() == []


def test_returns_refused_with_a_reason_store_nothing(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300, confirm=False)
    reserved = _submit(tx, US, EU, 10)
    back = _return(tx, EU, t.transfer_id)
    assert isinstance(back, Accepted)
    before = tx.store.dump()
    assert _error(_return(tx, US, reserved.transfer_id)).reason == Reason.NOT_TRANSFER_CREDITOR
    assert _error(_return(tx, EU, reserved.transfer_id)).reason == Reason.TRANSFER_NOT_RETURNABLE
    assert _error(_return(tx, AS, t.transfer_id)).reason == Reason.TRANSFER_NOT_FOUND
    # A return cannot be returned.
    assert _error(_return(tx, US, back.transfer.transfer_id)).reason == (
        Reason.TRANSFER_NOT_RETURNABLE
    )
    with pytest.raises(RemitnetError) as err:
        make_return(str(uuid.uuid4()), t.transfer_id, "DUPL")  # a recall code, not a return's
    assert err.value.reason == Reason.UNKNOWN_REASON_CODE
    assert tx.store.dump() == before


def test_a_return_is_subject_to_the_returning_banks_headroom(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 50_000, confirm=False)
    _submit(tx, EU, AS, 150_000, confirm=False)  # EU spends its liquidity and the credit
    assert _error(_return(tx, EU, t.transfer_id)).reason == Reason.INSUFFICIENT_LIQUIDITY


def test_a_cross_currency_return_goes_back_at_a_new_quote(tx: FakeTransactions) -> None:
    quote = _fx(tx)
    t = _submit(tx, US, EU, 10_000, quote_id=quote, confirm=False)
    assert t.creditor_amount is not None
    # Without a quote: refused, naming what to quote.
    err = _error(_return(tx, EU, t.transfer_id))
    assert err.reason == Reason.RETURN_QUOTE_REQUIRED
    assert err.metadata == {"currency": "EUR", "amount": str(t.creditor_amount)}
    # A new quote of exactly what EU received, EUR -> USD, at today's rate.
    seed_funds(tx, DEFAULT_PROVIDER, {"USD": 100_000})
    seed_rates(tx, {("EUR", "USD"): "1.05"})
    back_quote = seed_quote(tx, EU, "EUR", "USD", t.creditor_amount)
    outcome = _return(tx, EU, t.transfer_id, "AC01", quote_id=back_quote.quote_id)
    assert isinstance(outcome, Accepted), outcome
    back = outcome.transfer
    assert (back.currency, back.amount) == ("EUR", t.creditor_amount)
    assert (back.creditor_currency, back.creditor_amount) == (
        "USD",
        back_quote.terms.target_amount,
    )
    assert back.fx_provider == DEFAULT_PROVIDER
    assert tx.violations() == []


# Recalls -------------------------------------------------------------------------


def _recall(
    tx: FakeTransactions, caller: str, tid: str, reason: str = "DUPL", rid: str = ""
) -> None:
    recall_transfer(tx, caller, make_recall(rid or str(uuid.uuid4()), tid, reason))


def test_a_recall_answered_by_a_return(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300, confirm=False)
    rid = str(uuid.uuid4())
    recall, replayed = recall_transfer(tx, US, make_recall(rid, t.transfer_id, "DUPL"))
    assert (recall.state, replayed) == (RecallState.REQUESTED, False)
    again, replayed = recall_transfer(tx, US, make_recall(rid, t.transfer_id, "DUPL"))
    assert replayed and again == recall
    last = tx.feed(EU)[-1]
    assert (last.kind, int(last.status)) == (EventKind.RECALL, int(RecallState.REQUESTED))
    returns = return_transfers(tx, EU, [make_return(str(uuid.uuid4()), t.transfer_id, "FOCR")])
    [outcome] = returns.outcomes
    assert isinstance(outcome, Accepted)
    answered = get_recall(tx, US, t.transfer_id)
    assert returns.recalls == [answered]  # what the metrics count as accepted
    assert (answered.state, answered.return_id) == (
        RecallState.ACCEPTED,
        outcome.transfer.transfer_id,
    )
    assert get_transfer(tx, EU, t.transfer_id).recall == answered
    assert tx.violations() == []


def test_a_recall_rejected_with_a_reason(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300, confirm=False)
    _recall(tx, US, t.transfer_id, "FRAD")
    before = tx.store.dump()
    with pytest.raises(RemitnetError) as err:
        reject_recall(tx, US, t.transfer_id, "NOAS")
    assert err.value.reason == Reason.NOT_TRANSFER_CREDITOR
    with pytest.raises(RemitnetError) as err:
        reject_recall(tx, EU, t.transfer_id, "FRAD")
    assert err.value.reason == Reason.UNKNOWN_REASON_CODE
    assert tx.store.dump() == before
    rejected = reject_recall(tx, EU, t.transfer_id, "NOAS")
    assert (rejected.state, rejected.answer_reason) == (RecallState.REJECTED, "NOAS")
    views, _ = list_transfers(
        tx,
        US,
        status=None,
        cycle_id="",
        counterparty="",
        page_token="",
        page_size=10,
        recall_state=RecallState.REJECTED,
    )
    assert [v.transfer.transfer_id for v in views] == [t.transfer_id]


def test_unanswered_recalls_expire(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300, confirm=False)
    recall_transfer(tx, US, make_recall(str(uuid.uuid4()), t.transfer_id, "TECH"), window_s=1)
    later = datetime.now(UTC) + timedelta(seconds=2)
    assert expire_due(tx, later).recalls == 1
    assert get_recall(tx, EU, t.transfer_id).state is RecallState.EXPIRED
    with pytest.raises(RemitnetError) as err:
        reject_recall(tx, EU, t.transfer_id, "NOAS")
    assert err.value.reason == Reason.RECALL_NOT_OPEN


def test_recall_refusals(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300, confirm=False)
    reserved = _submit(tx, US, EU, 10)
    before = tx.store.dump()
    for caller, tid, reason in (
        (EU, t.transfer_id, Reason.NOT_TRANSFER_DEBTOR),
        (AS, t.transfer_id, Reason.TRANSFER_NOT_FOUND),
        (US, reserved.transfer_id, Reason.TRANSFER_NOT_RETURNABLE),
    ):
        with pytest.raises(RemitnetError) as err:
            _recall(tx, caller, tid)
        assert err.value.reason == reason
    with pytest.raises(RemitnetError) as err:
        make_recall(str(uuid.uuid4()), t.transfer_id, "AC04")  # a return code
    assert err.value.reason == Reason.UNKNOWN_REASON_CODE
    assert tx.store.dump() == before
    _recall(tx, US, t.transfer_id)
    with pytest.raises(RemitnetError) as err:
        _recall(tx, US, t.transfer_id)
    assert err.value.reason == Reason.RECALL_EXISTS


def test_lifecycle_config_checks_its_bounds() -> None:
    with pytest.raises(ValueError):
        LifecycleConfig(default_timeout_ms=60_000, max_timeout_ms=30_000)
    with pytest.raises(ValueError):
        LifecycleConfig(recall_window_s=0)


def test_a_returned_transfer_and_its_return_cannot_be_cancelled(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300, confirm=False)
    back = _return(tx, EU, t.transfer_id)
    assert isinstance(back, Accepted)
    before = tx.store.dump()
    for tid in (t.transfer_id, back.transfer.transfer_id):
        with pytest.raises(RemitnetError) as err:
            cancel_transfer(tx, None, tid, "TECH")
        assert err.value.reason == Reason.TRANSFER_NOT_CANCELLABLE
    assert tx.store.dump() == before
    assert tx.violations() == []


def test_a_cross_currency_return_pays_back_in_the_originals_currency(
    tx: FakeTransactions,
) -> None:
    quote = _fx(tx)
    t = _submit(tx, US, EU, 10_000, quote_id=quote, confirm=False)
    assert t.creditor_amount is not None
    # A quote into a third currency (the right one buys USD).
    seed_bank(tx, "BANKGB01", ["GBP", "EUR"], deposit=1)
    seed_funds(tx, DEFAULT_PROVIDER, {"GBP": 100_000})
    seed_rates(tx, {("EUR", "GBP"): "0.85"})
    third = seed_quote(tx, EU, "EUR", "GBP", t.creditor_amount)
    before = tx.store.dump()
    err = _error(_return(tx, EU, t.transfer_id, quote_id=third.quote_id))
    assert err.reason == Reason.QUOTE_MISMATCH
    assert tx.store.dump() == before


def test_a_cancel_past_the_deadline_finds_it_expired(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300, timeout_ms=1)
    time.sleep(0.01)
    view = cancel_transfer(tx, US, t.transfer_id)
    assert view.status is TransferStatus.EXPIRED
    assert tx.store.transfers[t.transfer_id].reason == EXPIRY_REASON
    assert _account(tx, US) == (0, 0)
    assert tx.violations() == []
