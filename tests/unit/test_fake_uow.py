"""The in-memory unit of work of tests/fakes.py: its runner (commit only on
return, retries, read-only reads) and the semantics its repositories share
with the SQL adapters."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from remitnet.services.domain import audit_trail
from remitnet.services.domain.audit_trail import Action
from remitnet.services.domain.bank import ParticipantRole
from remitnet.services.domain.errors import Aborted, Reason, UnstorableValue
from remitnet.services.domain.events import TICK, EventKind, NewEvent
from remitnet.services.domain.ledger import EntryKind, Leg, Posting
from remitnet.services.domain.model import (
    DEFAULT_PROVIDER,
    HUB,
    BankStatus,
    CycleState,
    StoredTransfer,
    TransferStatus,
    account_id,
)
from remitnet.services.domain.money import INT64_MIN
from remitnet.services.domain.netting import CycleSums, PositionDelta
from remitnet.services.service_layer.unit_of_work import TransferIdTaken, UnitOfWork
from tests.fakes import (
    DuplicateKey,
    FakeStore,
    FakeTransactions,
    FakeUnitOfWork,
    MissingRow,
    ReadOnlyWrite,
    seed_bank,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TID = ["00000000-0000-4000-8000-00000000000" + str(i) for i in range(10)]


@pytest.fixture
def tx() -> FakeTransactions:
    tx = FakeTransactions()
    seed_bank(tx, "BANKA01", ["USD", "EUR"], deposit=1_000)
    seed_bank(tx, "BANKB01", ["USD"], region="europe-west1", deposit=500)
    return tx


def _transfer(
    tid: str, debtor: str, creditor: str, amount: int, at: datetime, cycle: str = "USD-000001"
) -> StoredTransfer:
    return StoredTransfer(
        tid, debtor, creditor, "USD", amount, "", TransferStatus.ACCEPTED, cycle, at
    )


# The runner -------------------------------------------------------------------


def test_a_write_commits_when_its_function_returns(tx: FakeTransactions) -> None:
    before = tx.store.fork()

    def unit(uow: UnitOfWork) -> str:
        uow.accounts.set_cap(account_id("BANKA01", "USD"), 77)
        # The unit sees its own write...
        acc = uow.accounts.get(account_id("BANKA01", "USD"))
        assert acc is not None and acc.net_debit_cap == 77
        # ...which is not committed while it runs.
        committed = tx.uow().accounts.get(account_id("BANKA01", "USD"))
        assert committed is not None and committed.net_debit_cap == 0
        return "done"

    assert tx.write("set_cap", unit) == "done"
    acc = tx.store.accounts[account_id("BANKA01", "USD")]
    assert acc.net_debit_cap == 77
    # A snapshot taken before is unaffected (copy on write).
    assert before.accounts[account_id("BANKA01", "USD")].net_debit_cap == 0
    assert (tx.attempts["set_cap"], tx.commits["set_cap"]) == (1, 1)


def test_an_exception_discards_every_write(tx: FakeTransactions) -> None:
    before = tx.store.dump()

    def unit(uow: UnitOfWork) -> None:
        uow.accounts.set_cap(account_id("BANKA01", "USD"), 77)
        uow.banks.set_status("BANKB01", BankStatus.SUSPENDED)
        uow.trail.append("operator", Action.SUSPEND_BANK, {"bank": "BANKB01"}, T0)
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        tx.write("refusal", unit)
    assert tx.store.dump() == before
    assert tx.commits["refusal"] == 0 and tx.attempts["refusal"] == 1


def test_a_conflict_before_commit_reruns_on_a_fresh_snapshot(tx: FakeTransactions) -> None:
    tx.fail_next("bump", times=2)
    seen: list[int] = []

    def unit(uow: UnitOfWork) -> int:
        acc = uow.accounts.get(account_id("BANKA01", "USD"))
        assert acc is not None
        seen.append(acc.net_debit_cap)
        uow.accounts.set_cap(acc.id, acc.net_debit_cap + 1)
        return acc.net_debit_cap + 1

    assert tx.write("bump", unit) == 1
    assert seen == [0, 0, 0]  # each attempt started from the committed state
    assert (tx.attempts["bump"], tx.commits["bump"]) == (3, 1)
    assert tx.store.accounts[account_id("BANKA01", "USD")].net_debit_cap == 1


def test_an_ambiguous_commit_reruns_on_the_committed_state(tx: FakeTransactions) -> None:
    tx.fail_next("bump", point="after_commit")
    seen: list[int] = []

    def unit(uow: UnitOfWork) -> int:
        acc = uow.accounts.get(account_id("BANKA01", "USD"))
        assert acc is not None
        seen.append(acc.net_debit_cap)
        uow.accounts.set_cap(acc.id, acc.net_debit_cap + 1)
        return acc.net_debit_cap + 1

    # A unit that is not idempotent shows it: it ran twice on the state.
    assert tx.write("bump", unit) == 2
    assert seen == [0, 1]
    assert (tx.attempts["bump"], tx.commits["bump"]) == (2, 2)


def test_retries_are_bounded() -> None:
    tx = FakeTransactions(max_attempts=3)
    tx.fail_next("never", times=5)
    with pytest.raises(Aborted) as err:
        tx.write("never", lambda uow: None)
    assert err.value.reason == Reason.RETRIES_EXHAUSTED
    assert (tx.attempts["never"], tx.commits["never"]) == (3, 0)


def test_faults_apply_to_their_unit_only(tx: FakeTransactions) -> None:
    tx.fail_next("other")
    tx.write("mine", lambda uow: None)
    assert tx.attempts["mine"] == 1
    tx.write("other", lambda uow: None)
    assert tx.attempts["other"] == 2


def test_a_read_cannot_write(tx: FakeTransactions) -> None:
    with pytest.raises(ReadOnlyWrite):
        tx.read(lambda uow: uow.accounts.set_cap(account_id("BANKA01", "USD"), 1))
    assert tx.read(lambda uow: uow.banks.get("BANKA01")) is not None
    assert tx.read(lambda uow: None, stale_ok=True) is None
    assert tx.reads == [False, False, True]


def test_inserting_a_key_twice_is_a_bug(tx: FakeTransactions) -> None:
    bank = tx.store.banks["BANKA01"]
    with pytest.raises(DuplicateKey):
        tx.write("again", lambda uow: uow.banks.add(bank))
    with pytest.raises(DuplicateKey):
        tx.write("cycle", lambda uow: uow.cycles.add("USD-000002", "USD", 2, T0))


# Banks and accounts -------------------------------------------------------------


def test_banks_page_and_regions(tx: FakeTransactions) -> None:
    uow = tx.uow()
    # The default provider is there from the start, as migration 0008 makes it.
    assert [b.code for b in uow.banks.page("", 10)] == ["BANKA01", "BANKB01", DEFAULT_PROVIDER]
    assert [b.code for b in uow.banks.page("BANKA01", 10)] == ["BANKB01", DEFAULT_PROVIDER]
    assert uow.banks.regions() == {
        "BANKA01": "us-east1",
        "BANKB01": "europe-west1",
        DEFAULT_PROVIDER: "HUB",
    }
    statuses, regions = uow.banks.statuses_and_regions(["BANKB01", "NOPE01"])
    assert statuses == {"BANKB01": BankStatus.ACTIVE} and regions == {"BANKB01": "europe-west1"}
    statuses, roles, regions = uow.banks.statuses_roles_and_regions(
        ["BANKB01", DEFAULT_PROVIDER, "NOPE01"]
    )
    assert statuses == {"BANKB01": BankStatus.ACTIVE, DEFAULT_PROVIDER: BankStatus.ACTIVE}
    assert roles == {"BANKB01": ParticipantRole.BANK, DEFAULT_PROVIDER: ParticipantRole.FX_PROVIDER}
    assert regions == {"BANKB01": "europe-west1", DEFAULT_PROVIDER: "HUB"}
    assert [b.code for b in uow.banks.providers()] == [DEFAULT_PROVIDER]
    assert uow.banks.home_regions(["BANKA01", HUB], {"X": "y"}) == {
        HUB: "HUB",
        "X": "y",
        "BANKA01": "us-east1",
    }
    with pytest.raises(AssertionError):
        uow.banks.home_regions(["NOPE01"])


def test_account_states_are_working_copies_of_liquidity_and_fx_accounts(
    tx: FakeTransactions,
) -> None:
    uow = tx.uow()
    ids = [
        account_id("BANKA01", "USD"),
        account_id(HUB, "USD", "FX"),
        account_id(HUB, "USD", "RESERVE"),
    ]
    states = uow.accounts.states(ids)
    assert sorted(states) == sorted(ids[:2])
    states[ids[0]].unsettled_net = -999
    assert uow.accounts.states(ids)[ids[0]].unsettled_net == 0
    assert [a.currency for a in uow.accounts.of_owner("BANKA01")] == ["EUR", "USD"]
    assert {o: len(a) for o, a in uow.accounts.of_owners(["BANKA01", "NONE"]).items()} == {
        "BANKA01": 2,
        "NONE": 0,
    }


def test_unsettled_nets_add_and_refuse_a_missing_account(tx: FakeTransactions) -> None:
    aid = account_id("BANKA01", "USD")

    def unit(uow: UnitOfWork) -> None:
        uow.accounts.add_unsettled({aid: -30, account_id("BANKB01", "USD"): 0})
        uow.accounts.add_unsettled({aid: 10})

    tx.write("unsettled", unit)
    assert tx.store.accounts[aid].unsettled_net == -20
    with pytest.raises(MissingRow):
        tx.write("x", lambda uow: uow.accounts.add_unsettled({"NOPE/USD/LIQUIDITY": 1}))
    with pytest.raises(UnstorableValue):
        tx.write("x", lambda uow: uow.accounts.add_unsettled({aid: INT64_MIN}))


# Positions and cycles -------------------------------------------------------------


def test_adding_positions_creates_rows_then_accumulates(tx: FakeTransactions) -> None:
    def unit(uow: UnitOfWork) -> None:
        uow.positions.add({("USD-000001", "BANKA01"): PositionDelta(sent=5, sent_count=1)})
        uow.positions.add(
            {
                ("USD-000001", "BANKA01"): PositionDelta(sent=7, sent_count=1),
                ("USD-000001", "BANKB01"): PositionDelta(received=12, received_count=2),
                ("USD-000001", HUB): PositionDelta(fee=3),
            }
        )

    tx.write("positions", unit)
    uow = tx.uow()
    held = uow.positions.of_cycle("USD-000001")
    assert list(held) == ["BANKA01", "BANKB01", HUB]  # by bank code
    assert held["BANKA01"] == PositionDelta(12, 0, 2, 0, 0)
    assert held["BANKB01"].net == 12
    assert tx.store.positions[("USD-000001", "BANKB01")].home_region == "europe-west1"
    assert tx.store.positions[("USD-000001", HUB)].home_region == "HUB"
    assert uow.positions.of_bank("BANKA01", ["USD-000001", "EUR-000001"]) == {
        "USD-000001": PositionDelta(12, 0, 2, 0, 0)
    }
    assert uow.positions.of_cycles(["USD-000001", "EUR-000001"])["EUR-000001"] == {}
    open_ids, sums = uow.cycles.open_with_sums(["USD", "EUR"])
    assert open_ids == {"USD": "USD-000001", "EUR": "EUR-000001"}
    assert (sums["USD-000001"].gross, sums["USD-000001"].fee) == (12, 3)
    assert sums["EUR-000001"] == CycleSums()  # open, no position rows yet
    # A returned delta is a copy.
    held["BANKA01"].sent = 0
    assert uow.positions.of_cycle("USD-000001")["BANKA01"].sent == 12


def test_cycles_seal_settle_and_page_newest_first(tx: FakeTransactions) -> None:
    later = datetime.now(UTC) + timedelta(seconds=1)

    def unit(uow: UnitOfWork) -> None:
        uow.cycles.seal("USD-000001", later, 3, 30, 10)
        uow.cycles.add("USD-000002", "USD", 2, later)

    tx.write("close", unit)
    uow = tx.uow()
    assert uow.cycles.max_seq("USD") == 2
    assert uow.cycles.open_ids(["USD", "EUR", "JPY"]) == {
        "USD": "USD-000002",
        "EUR": "EUR-000001",
    }
    assert [c.id for c in uow.cycles.unsettled()] == ["USD-000001"]
    assert [c.id for c in uow.cycles.page("", None, None, 10)] == [
        "USD-000002",
        "USD-000001",
        "EUR-000001",
    ]
    assert [c.id for c in uow.cycles.page("USD", None, "USD-000002", 10)] == ["USD-000001"]
    assert [c.id for c in uow.cycles.page("", CycleState.OPEN, None, 1)] == ["USD-000002"]
    tx.write("settle", lambda uow: uow.cycles.mark_settled("USD-000001", later))
    settled = tx.store.cycles["USD-000001"]
    assert (settled.state, settled.settled_at, settled.transfer_count) == (
        CycleState.SETTLED,
        later,
        3,
    )
    assert tx.uow().cycles.states(["USD-000001", "X"]) == {"USD-000001": CycleState.SETTLED}


# Transfers and the read models ---------------------------------------------------------


def test_transfers_store_list_and_sum_their_legs(tx: FakeTransactions) -> None:
    t1 = _transfer(TID[1], "BANKA01", "BANKB01", 10, T0)
    t2 = _transfer(TID[2], "BANKB01", "BANKA01", 4, T0 + TICK)
    t3 = _transfer(TID[3], "BANKA01", "BANKB01", 6, T0 + 2 * TICK)
    tx.write("add", lambda uow: uow.transfers.add([t1, t2, t3._replace(fee=9)]))
    assert tx.store.transfers[TID[3]].fee == 0  # no quote: the fee column is NULL
    assert tx.store.transfer_regions[TID[2]] == "europe-west1"
    with pytest.raises(TransferIdTaken):  # as the primary key refuses it
        tx.write("again", lambda uow: uow.transfers.add([t1]))
    tx.write("cancel", lambda uow: uow.transfers.cancel(TID[3], T0))
    uow = tx.uow()
    assert uow.transfers.get(TID[3]) == t3._replace(status=TransferStatus.CANCELLED)
    assert set(uow.transfers.existing([TID[1], TID[9]])) == {TID[1]}
    assert uow.transfers.leg_sums("USD-000001") == {
        "BANKA01": [1, 1, 10, 4],
        "BANKB01": [1, 1, 4, 10],
    }

    def listed(**kw: object) -> list[str]:
        args: dict[str, object] = {
            "bank": "BANKA01",
            "counterparty": "",
            "cycle_id": "",
            "status": None,
            "before": None,
            "limit": 10,
        }
        args.update(kw)
        return [t.transfer_id for t, _ in uow.views.list_transfers(**args)]  # type: ignore[arg-type]

    assert listed() == [TID[3], TID[2], TID[1]]
    assert listed(limit=2) == [TID[3], TID[2]]
    assert listed(before=(t3.accepted_at, t3.transfer_id)) == [TID[2], TID[1]]
    assert listed(status=TransferStatus.CANCELLED) == [TID[3]]
    assert listed(status=TransferStatus.ACCEPTED) == [TID[2], TID[1]]
    assert listed(status=TransferStatus.CLOSED) == []
    assert listed(cycle_id="USD-000001") == [TID[3], TID[2], TID[1]]
    assert listed(cycle_id="USD-999999") == []
    assert listed(bank="BANKB01", counterparty="BANKA01") == [TID[3], TID[2], TID[1]]
    assert listed(bank="BANKC01") == []
    _, states = uow.views.list_transfers(
        bank="BANKA01", counterparty="", cycle_id="", status=None, before=None, limit=1
    )[0]
    assert states == (CycleState.OPEN,)


# Ledger ---------------------------------------------------------------------------------


def test_postings_chain_each_accounts_balances(tx: FakeTransactions) -> None:
    a, b = account_id("BANKA01", "USD"), account_id("BANKB01", "USD")
    posting = Posting("p:1", EntryKind.GROSS, "USD", "ref", (Leg(a, -300), Leg(b, 300)))
    tx.write("post", lambda uow: uow.ledger.post(posting, owner="BANKA01", amount=300, now=T0))
    uow = tx.uow()
    record = uow.ledger.get_posting("p:1")
    assert record is not None and (record.owner, record.amount) == ("BANKA01", 300)
    acc = uow.accounts.get(a)
    assert acc is not None and (acc.balance, acc.entry_count) == (700, 2)
    entries = uow.ledger.entries(a, 0, 10)
    assert [(e.seq, e.amount, e.balance_after) for e in entries] == [
        (1, 1_000, 1_000),
        (2, -300, 700),
    ]
    assert uow.ledger.entries(a, 1, 10) == entries[1:]
    assert uow.ledger.entries(a, 0, 1) == entries[:1]
    assert uow.ledger.entries(a, -5, 10) == entries
    assert uow.ledger.entries(a, 2, 10) == [] and uow.ledger.entries("NOPE", 0, 10) == []
    assert (uow.ledger.balance_after(a, 0), uow.ledger.balance_after(a, 1)) == (0, 1_000)
    assert uow.ledger.balance_after(a, 9) == 0
    assert [e.account_id for e in uow.ledger.posting_entries("p:1")] == [a, b]
    # Deposits debit the hub's reserve: every currency's ledger sums to zero.
    assert uow.views.ledger_totals() == {"EUR": (0, 0, 2), "USD": (0, 0, 6)}
    with pytest.raises(DuplicateKey):
        tx.write("post", lambda uow: uow.ledger.post(posting, owner="X", amount=1, now=T0))
    missing = Posting("p:2", EntryKind.GROSS, "USD", "r", (Leg(a, -1), Leg("NOPE/USD/X", 1)))
    with pytest.raises(AssertionError):
        tx.write("post", lambda uow: uow.ledger.post(missing, owner="X", amount=1, now=T0))


# The feed and the trail -----------------------------------------------------------------


def test_feed_numbers_events_per_bank_at_strictly_later_times(tx: FakeTransactions) -> None:
    clock = datetime.now(UTC) - timedelta(days=1)  # behind the heads' last_at
    new = [
        NewEvent("BANKA01", EventKind.BATCH, TransferStatus.ACCEPTED, item_count=2),
        NewEvent("BANKB01", EventKind.BATCH, TransferStatus.ACCEPTED, item_count=2),
        NewEvent("BANKA01", EventKind.TRANSFER, TransferStatus.CANCELLED, transfer_id=TID[1]),
    ]
    first = tx.write("publish", lambda uow: uow.events.publish(new, clock))
    heads = tx.store.feed_heads
    assert first > clock and first > max(heads["BANKA01"].started_at, heads["BANKB01"].started_at)
    second = tx.write("publish", lambda uow: uow.events.publish(new[:1], clock))
    assert second == first + TICK
    assert [(e.seq, e.kind) for e in tx.feed("BANKA01")] == [
        (1, EventKind.BATCH),
        (2, EventKind.TRANSFER),
        (3, EventKind.BATCH),
    ]
    uow = tx.uow()
    assert uow.events.current_heads(["BANKA01", "BANKB01", "NOPE01"]) == {
        "BANKA01": 3,
        "BANKB01": 1,
    }
    assert uow.events.seq_before("BANKA01", second) == 2
    assert uow.events.seq_before("BANKA01", first) == 0
    with pytest.raises(AssertionError):
        tx.write(
            "publish",
            lambda uow: uow.events.publish(
                [NewEvent("NOPE01", EventKind.CYCLE, TransferStatus.CLOSED, cycle_id="X")], clock
            ),
        )


def test_feed_loads_whole_events_expanded(tx: FakeTransactions) -> None:
    at = tx.write(
        "publish",
        lambda uow: uow.events.publish(
            [NewEvent("BANKA01", EventKind.BATCH, TransferStatus.ACCEPTED, item_count=2)],
            datetime.now(UTC),
        ),
    )
    batch = [
        _transfer(TID[2], "BANKA01", "BANKB01", 5, at),
        _transfer(TID[1], "BANKB01", "BANKA01", 3, at),
    ]
    tx.write("add", lambda uow: uow.transfers.add(batch))

    def more(uow: UnitOfWork) -> None:
        now = datetime.now(UTC)
        uow.events.publish(
            uow.events.cycle_events("USD-000001", CycleState.CLOSED, ["BANKA01", HUB]), now
        )

    tx.write("more", more)
    uow = tx.uow()
    events = uow.events.load("BANKA01", 1, 100)
    assert [e.seq for e in events] == [1, 2]
    assert [t.transfer_id for t in events[0].transfers] == [TID[1], TID[2]]  # by id
    assert events[0].size == 2
    assert events[1].cycle is not None and events[1].cycle.id == "USD-000001"
    # Whole events only, and at least one.
    assert [e.seq for e in uow.events.load("BANKA01", 1, 1)] == [1]
    assert [e.seq for e in uow.events.load("BANKA01", 2, 1)] == [2]
    assert uow.events.load("BANKA01", 3, 10) == []


def test_cycle_events_tell_cross_currency_parties_when_both_legs_arrive(
    tx: FakeTransactions,
) -> None:
    fx = StoredTransfer(
        TID[5], "BANKA01", "BANKB01", "EUR", 100, "", TransferStatus.ACCEPTED, "EUR-000001",
        T0, TID[6], "USD", 110, "USD-000001", 1,
    )  # fmt: skip
    tx.write("add", lambda uow: uow.transfers.add([fx]))
    uow = tx.uow()
    # The other leg's cycle is still open: CYCLE events only.
    assert [e.kind for e in uow.events.cycle_events("USD-000001", CycleState.CLOSED, [])] == []
    tx.write("seal", lambda uow: uow.cycles.seal("EUR-000001", T0, 1, 100, 100))
    news = tx.uow().events.cycle_events("USD-000001", CycleState.CLOSED, ["BANKB01", HUB])
    assert news == [
        NewEvent("BANKB01", EventKind.CYCLE, TransferStatus.CLOSED, cycle_id="USD-000001"),
        NewEvent(
            "BANKA01", EventKind.LEGS, TransferStatus.CLOSED, cycle_id="USD-000001",
            other_cycle_id="EUR-000001", item_count=1,
        ),
        NewEvent(
            "BANKB01", EventKind.LEGS, TransferStatus.CLOSED, cycle_id="USD-000001",
            other_cycle_id="EUR-000001", item_count=1,
        ),
    ]  # fmt: skip
    tx.write("publish", lambda uow: uow.events.publish(news, T0))
    [legs] = [e for e in tx.uow().events.load("BANKA01", 1, 10) if e.kind is EventKind.LEGS]
    assert [t.transfer_id for t in legs.transfers] == [TID[5]]


def test_the_trail_is_a_verifiable_hash_chain(tx: FakeTransactions) -> None:
    def unit(uow: UnitOfWork) -> None:
        uow.trail.append("operator", Action.CLOSE_CYCLE, {"cycle_id": "USD-000001"}, T0)
        uow.trail.append("hub", Action.SETTLE_CYCLE, {"cycle_id": "USD-000001"}, T0)

    tx.write("trail", unit)
    uow = tx.uow()
    records = list(uow.trail.records())
    assert [r.seq for r in records] == [1, 2]
    assert records[1].prev_hash == records[0].hash
    assert audit_trail.verify(records).ok
    head = uow.trail.head()
    assert head is not None and head.seq == 2
    heads = uow.trail.settlement_heads(["USD-000001", "EUR-000001"])
    assert heads == {"USD-000001": audit_trail.ChainHead(2, records[1].hash)}


def test_a_fresh_store_holds_only_the_default_provider() -> None:
    store = FakeStore()
    counts = store.counts()
    assert counts.pop("banks") == 1 and counts.pop("feed_heads") == 1
    assert set(counts.values()) == {0}
    assert store.banks[DEFAULT_PROVIDER].roles is ParticipantRole.FX_PROVIDER
    uow = FakeUnitOfWork(store)
    assert uow.trail.head() is None and uow.views.ledger_totals() == {}


def test_the_audit_snapshot_holds_every_row_and_the_checks_see_breaks(
    tx: FakeTransactions,
) -> None:
    snapshot = tx.uow().views.audit_snapshot()
    assert [a.id for a in snapshot.accounts] == sorted(tx.store.accounts)
    assert len(snapshot.entries) == 6 and {e.currency for e in snapshot.entries} == {"USD", "EUR"}
    assert set(snapshot.feed_heads) == {"BANKA01", "BANKB01", DEFAULT_PROVIDER}
    assert tx.violations() == []
    aid = account_id("BANKA01", "USD")
    broken = tx.store.accounts[aid]
    tx.store.accounts[aid] = replace(broken, balance=broken.balance + 1)
    assert tx.violations() == [
        f"account {aid} balance 1001 != sum of its entries 1000",
        "USD account balances sum to 1, not zero",
    ]


def test_the_legs_of_cross_currency_transfers_are_summed_on_their_dealer(
    tx: FakeTransactions,
) -> None:
    """Through an FX provider, or through the hub for a transfer from before
    FX providers: each leg's dealer side is summed as adapters/db does."""
    base = _transfer(TID[4], "BANKA01", "BANKB01", 100, T0)._replace(
        quote_id=TID[9], creditor_currency="EUR", creditor_amount=90, creditor_cycle_id="EUR-000001"
    )
    funded = base._replace(fx_provider=DEFAULT_PROVIDER)
    dealt = base._replace(transfer_id=TID[5], fee=2)
    tx.write("add", lambda uow: uow.transfers.add([funded, dealt]))
    uow = tx.uow()
    assert uow.transfers.leg_sums("USD-000001") == {
        "BANKA01": [2, 0, 200, 0],
        DEFAULT_PROVIDER: [0, 1, 0, 100],
        HUB: [0, 1, 0, 100],
    }
    assert uow.transfers.leg_sums("EUR-000001") == {
        DEFAULT_PROVIDER: [1, 0, 90, 0],
        HUB: [1, 0, 90, 0],
        "BANKB01": [0, 2, 0, 180],
    }
