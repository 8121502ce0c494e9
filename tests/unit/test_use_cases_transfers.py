"""cancel_transfer, get_transfer and list_transfers on the in-memory fake."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from remitnet.services.domain.errors import InvalidArgument, NotFound, Reason, RemitnetError
from remitnet.services.domain.events import EventKind
from remitnet.services.domain.model import (
    DEFAULT_PROVIDER,
    HUB,
    AccountKind,
    StoredTransfer,
    TransferStatus,
    account_id,
)
from remitnet.services.domain.netting import Accepted, PositionDelta
from remitnet.services.service_layer.clearing import (
    cancel_transfer,
    commit_batch,
    get_transfer,
    list_transfers,
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


def _submit(
    tx: FakeTransactions, debtor: str, creditor: str, amount: int, quote_id: str = ""
) -> StoredTransfer:
    item = instruction(debtor, creditor, "USD", amount, quote_id=quote_id)
    [outcome] = commit_batch(tx, [item]).result.outcomes
    assert isinstance(outcome, Accepted), outcome
    return outcome.transfer


def _unsettled(tx: FakeTransactions, owner: str, currency: str = "USD", kind: str = "") -> int:
    return tx.store.accounts[
        account_id(owner, currency, kind or AccountKind.LIQUIDITY)
    ].unsettled_net


def _refused(fn: object, *args: object) -> RemitnetError:
    with pytest.raises(RemitnetError) as err:
        fn(*args)  # type: ignore[operator]
    return err.value


# Cancel -------------------------------------------------------------------------


def test_the_operator_cancels_an_accepted_transfer_with_a_recorded_reason(
    tx: FakeTransactions,
) -> None:
    t = _submit(tx, US, EU, 300)
    view = cancel_transfer(tx, None, t.transfer_id, "duplicate sent in error")
    assert view.status is TransferStatus.CANCELLED
    assert view.transfer == t._replace(
        status=TransferStatus.CANCELLED, reason="duplicate sent in error"
    )
    record = list(tx.uow().trail.records())[-1]
    assert (record.action, record.subject) == ("CancelTransfer", t.transfer_id)
    assert tx.store.transfers[t.transfer_id].status is TransferStatus.CANCELLED
    cancelled_at = tx.store.cancelled_at[t.transfer_id]
    # Its effect on the positions and the accounts is taken back.
    assert (_unsettled(tx, US), _unsettled(tx, EU)) == (0, 0)
    positions = tx.uow().positions.of_cycle("USD-000001")
    assert positions[US] == PositionDelta() and positions[EU] == PositionDelta()
    # Both parties hear of it, at the time it was cancelled.
    for bank in (US, EU):
        last = tx.feed(bank)[-1]
        assert (last.kind, last.status, last.transfer_id) == (
            EventKind.TRANSFER,
            TransferStatus.CANCELLED,
            t.transfer_id,
        )
        assert last.at == cancelled_at
    assert tx.violations() == []


def test_cancelling_again_answers_cancelled_and_stores_nothing(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300)
    cancel_transfer(tx, None, t.transfer_id, "TECH")
    before = tx.store.dump()
    assert cancel_transfer(tx, None, t.transfer_id, "TECH").status is TransferStatus.CANCELLED
    assert cancel_transfer(tx, US, t.transfer_id).status is TransferStatus.CANCELLED
    assert tx.store.dump() == before


def test_only_the_debtor_cancels_and_only_parties_see(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300)
    before = tx.store.dump()
    # Accepted: the debtor alone can no longer take it back; nor can the
    # operator without a reason.
    err = _refused(cancel_transfer, tx, US, t.transfer_id)
    assert err.reason == Reason.TRANSFER_NOT_CANCELLABLE
    assert _refused(cancel_transfer, tx, None, t.transfer_id, " ").reason == Reason.MISSING_FIELD
    assert _refused(cancel_transfer, tx, EU, t.transfer_id).reason == Reason.NOT_TRANSFER_DEBTOR
    err = _refused(cancel_transfer, tx, AS, t.transfer_id)
    assert isinstance(err, NotFound) and err.reason == Reason.TRANSFER_NOT_FOUND
    unknown = str(uuid.uuid4())
    assert _refused(cancel_transfer, tx, US, unknown).reason == Reason.TRANSFER_NOT_FOUND
    assert _refused(cancel_transfer, tx, US, "12345").reason == Reason.INVALID_TRANSFER_ID
    assert tx.store.dump() == before


def test_a_transfer_of_a_closed_cycle_cannot_be_cancelled(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300)
    seed_close(tx, "USD")
    before = tx.store.dump()
    err = _refused(cancel_transfer, tx, None, t.transfer_id, "TECH")
    assert err.reason == Reason.CYCLE_NOT_OPEN
    assert tx.store.dump() == before


def test_a_credit_the_creditor_spent_cannot_be_taken_back(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 50_000)
    _submit(tx, EU, AS, 150_000)  # its own 100,000 and the 50,000 received
    before = tx.store.dump()
    err = _refused(cancel_transfer, tx, None, t.transfer_id, "TECH")
    assert err.reason == Reason.CANCEL_EXCEEDS_CREDITOR_HEADROOM
    assert tx.store.dump() == before
    assert tx.violations() == []


def test_a_gross_transfer_is_final(tx: FakeTransactions) -> None:
    gross = StoredTransfer(
        str(uuid.uuid4()), US, EU, "USD", 10, "", TransferStatus.SETTLED, "", datetime.now(UTC)
    )

    def add(uow: UnitOfWork) -> None:
        uow.transfers.add([gross])

    tx.write("seed_gross", add)
    before = tx.store.dump()
    for caller in (US, None):
        err = _refused(cancel_transfer, tx, caller, gross.transfer_id, "TECH")
        assert err.reason == Reason.TRANSFER_NOT_CANCELLABLE
    assert tx.store.dump() == before


def test_cancelling_a_cross_currency_transfer_takes_back_both_legs(tx: FakeTransactions) -> None:
    seed_funds(tx, DEFAULT_PROVIDER, {"EUR": 100_000})
    seed_rates(tx, {("USD", "EUR"): "0.92"})
    quote = seed_quote(tx, US, "USD", "EUR", 10_000)
    t = _submit(tx, US, EU, 10_000, quote_id=quote.quote_id)
    assert _unsettled(tx, EU, "EUR") == quote.terms.target_amount
    assert _unsettled(tx, DEFAULT_PROVIDER, "EUR") == -quote.terms.target_amount
    cancel_transfer(tx, None, t.transfer_id, "FRAD")
    # The provider's liquidity is given back with the legs.
    for owner, currency, kind in (
        (US, "USD", ""),
        (EU, "EUR", ""),
        (DEFAULT_PROVIDER, "USD", ""),
        (DEFAULT_PROVIDER, "EUR", ""),
        (HUB, "USD", AccountKind.FX),
        (HUB, "EUR", AccountKind.FX),
    ):
        assert _unsettled(tx, owner, currency, kind) == 0, (owner, currency)
    uow = tx.uow()
    for cycle in ("USD-000001", "EUR-000001"):
        assert all(p == PositionDelta() for p in uow.positions.of_cycle(cycle).values())
    assert uow.cycles.open_with_sums(["USD", "EUR"])[1]["EUR-000001"].fee == 0
    assert tx.violations() == []


def test_cancel_retried_after_an_ambiguous_commit_takes_back_once(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300)
    tx.fail_next("cancel_transfer", point="after_commit")
    assert cancel_transfer(tx, None, t.transfer_id, "TECH").status is TransferStatus.CANCELLED
    assert tx.attempts["cancel_transfer"] == 2
    assert (_unsettled(tx, US), _unsettled(tx, EU)) == (0, 0)
    assert [e.kind for e in tx.feed(US)] == [EventKind.BATCH, EventKind.TRANSFER]
    assert tx.violations() == []


# Get and list ------------------------------------------------------------------------


def test_get_shows_parties_their_transfer_with_its_cycles_status(tx: FakeTransactions) -> None:
    t = _submit(tx, US, EU, 300)
    for caller in (US, EU, None):
        view = get_transfer(tx, caller, t.transfer_id)
        assert (view.transfer, view.status) == (t, TransferStatus.ACCEPTED)
    assert _refused(get_transfer, tx, AS, t.transfer_id).reason == Reason.TRANSFER_NOT_FOUND
    cycle = seed_close(tx, "USD")
    assert get_transfer(tx, US, t.transfer_id).status is TransferStatus.CLOSED
    tx.write("settle", lambda uow: uow.cycles.mark_settled(cycle, datetime.now(UTC)))
    assert get_transfer(tx, EU, t.transfer_id).status is TransferStatus.SETTLED
    assert not any(tx.reads) and tx.commits["get_transfer"] == 0


def test_list_pages_newest_first_and_filters(tx: FakeTransactions) -> None:
    to_eu = commit_batch(tx, [instruction(US, EU, "USD", 1) for _ in range(25)])
    commit_batch(tx, [instruction(US, AS, "USD", 1) for _ in range(10)])
    eu_ids = {o.transfer.transfer_id for o in to_eu.result.outcomes if isinstance(o, Accepted)}
    seen: list[str] = []
    token = ""
    while True:
        views, token = list_transfers(
            tx,
            US,
            status=None,
            cycle_id="",
            counterparty=EU,
            page_token=token,
            page_size=10,
        )
        assert len(views) <= 10
        seen += [v.transfer.transfer_id for v in views]
        if not token:
            break
    assert len(seen) == 25 and set(seen) == eu_ids

    def listed(caller: str, **kw: object) -> list[TransferStatus]:
        args: dict[str, object] = {
            "status": None,
            "cycle_id": "",
            "counterparty": "",
            "page_token": "",
            "page_size": 100,
        }
        args.update(kw)
        views, _ = list_transfers(tx, caller, **args)  # type: ignore[arg-type]
        return [v.status for v in views]

    assert len(listed(US)) == 35 and len(listed(AS)) == 10
    assert len(listed(AS, cycle_id="USD-000001")) == 10
    assert listed(AS, cycle_id="USD-999999") == []
    seed_close(tx, "USD")
    assert listed(US, status=TransferStatus.CLOSED) == [TransferStatus.CLOSED] * 35
    assert listed(US, status=TransferStatus.ACCEPTED) == []
    with pytest.raises(InvalidArgument) as err:
        list_transfers(
            tx, US, status=None, cycle_id="", counterparty="", page_token="nope", page_size=10
        )
    assert err.value.reason == Reason.INVALID_PAGE_TOKEN
