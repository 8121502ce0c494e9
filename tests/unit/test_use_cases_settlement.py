"""settle_cycle, statements, reconciliation and ledger totals on the
in-memory fake."""

from __future__ import annotations

import json

import pytest

from remitnet.services.domain.audit_trail import Action, ChainHead
from remitnet.services.domain.errors import NotFound, Reason, RemitnetError
from remitnet.services.domain.events import EventKind
from remitnet.services.domain.ledger import EntryKind
from remitnet.services.domain.model import (
    DEFAULT_PROVIDER,
    HUB,
    AccountKind,
    CycleState,
    TransferStatus,
    account_id,
)
from remitnet.services.domain.netting import Accepted
from remitnet.services.service_layer.clearing import cancel_transfer, commit_batch
from remitnet.services.service_layer.settlement import (
    ledger_totals,
    reconciliation,
    settle_cycle,
    statement,
)
from tests.fakes import (
    FakeTransactions,
    instruction,
    seed_bank,
    seed_close,
    seed_funds,
    seed_hub_transfer,
    seed_quote,
    seed_rates,
)

BANKS = ["BANKA01", "BANKB01", "BANKC01", "BANKD01"]
DEPOSIT = 1_000_000


@pytest.fixture
def tx() -> FakeTransactions:
    tx = FakeTransactions()
    for code in BANKS:
        seed_bank(tx, code, ["USD"], deposit=DEPOSIT, cap=50_000)
    return tx


def _traffic(tx: FakeTransactions, n: int = 20) -> None:
    for i, code in enumerate(BANKS):
        creditor, other = BANKS[(i + 1) % 4], BANKS[(i + 2) % 4]
        items = [instruction(code, creditor, "USD", 100 + i * 7 + k % 13) for k in range(n)]
        items += [instruction(code, other, "USD", 50 + k % 5) for k in range(n // 2)]
        outcomes = commit_batch(tx, items).result.outcomes
        assert all(isinstance(o, Accepted) for o in outcomes)


def _nets(tx: FakeTransactions, cycle_id: str) -> dict[str, int]:
    return {b: p.net for b, p in tx.uow().positions.of_cycle(cycle_id).items()}


def test_settling_posts_each_net_position_once(tx: FakeTransactions) -> None:
    _traffic(tx)
    cycle_id = seed_close(tx, "USD")
    nets = _nets(tx, cycle_id)
    assert sum(nets.values()) == 0 and any(nets.values())
    settled = settle_cycle(tx, cycle_id, actor="operator")
    assert not settled.already_settled
    assert settled.postings == {b: n for b, n in nets.items() if n}
    assert settled.cycle.state is CycleState.SETTLED
    assert settled.cycle == tx.store.cycles[cycle_id]
    # The posting: a pair of legs per participant against the hub, summing to 0.
    entries = tx.uow().ledger.posting_entries(f"settle:{cycle_id}")
    assert sum(e.amount for e in entries) == 0
    assert all(e.kind is EntryKind.SETTLEMENT for e in entries)
    record = tx.store.postings[f"settle:{cycle_id}"]
    assert (record.owner, record.amount) == (HUB, tx.store.cycles[cycle_id].net_value)
    for code in BANKS:
        acc = tx.store.accounts[account_id(code, "USD")]
        # What was unsettled is on the balance now; the headroom is unchanged.
        assert (acc.balance, acc.unsettled_net) == (DEPOSIT + nets[code], 0)
    hub = tx.store.accounts[account_id(HUB, "USD", AccountKind.SETTLEMENT)]
    assert hub.balance == -sum(nets.values()) == 0
    assert ledger_totals(tx) == {"USD": (0, 0, 4 * 2 + 2 * len(settled.postings))}
    # One audit record, whose place in the chain the settlement reports.
    last = tx.uow().trail.head()
    assert last is not None and last.action == str(Action.SETTLE_CYCLE)
    assert json.loads(last.request) == {"cycle_id": cycle_id}
    assert last.principal == "operator"
    assert settled.audit_head == ChainHead(last.seq, last.hash)
    # Every bank with a position hears its cycle settled.
    for code in BANKS:
        event = tx.feed(code)[-1]
        assert (event.kind, event.status, event.cycle_id) == (
            EventKind.CYCLE,
            TransferStatus.SETTLED,
            cycle_id,
        )
        assert event.at == settled.cycle.settled_at
    assert tx.violations() == []


def test_settling_again_is_a_replay_that_posts_nothing(tx: FakeTransactions) -> None:
    _traffic(tx, 10)
    cycle_id = seed_close(tx, "USD")
    first = settle_cycle(tx, cycle_id)
    before = tx.store.dump()
    again = settle_cycle(tx, cycle_id)
    assert again.already_settled
    assert again.postings == first.postings and again.audit_head == first.audit_head
    assert again.cycle == first.cycle
    assert tx.store.dump() == before


def test_a_settlement_rerun_after_an_ambiguous_commit_posts_once(tx: FakeTransactions) -> None:
    _traffic(tx, 10)
    cycle_id = seed_close(tx, "USD")
    nets = _nets(tx, cycle_id)
    tx.fail_next("settle_cycle", point="after_commit")
    settled = settle_cycle(tx, cycle_id)
    assert settled.already_settled and tx.attempts["settle_cycle"] == 2
    assert settled.postings == {b: n for b, n in nets.items() if n}
    for code in BANKS:
        acc = tx.store.accounts[account_id(code, "USD")]
        assert (acc.balance, acc.unsettled_net) == (DEPOSIT + nets[code], 0)
    assert len(tx.store.trail) == 1
    assert tx.violations() == []


def test_a_retried_settlement_posts_once(tx: FakeTransactions) -> None:
    _traffic(tx, 10)
    cycle_id = seed_close(tx, "USD")
    tx.fail_next("settle_cycle", times=3)
    assert not settle_cycle(tx, cycle_id).already_settled
    assert tx.attempts["settle_cycle"] == 4
    assert len(tx.store.trail) == 1
    assert ledger_totals(tx)["USD"][:2] == (0, 0)


def test_open_and_unknown_cycles_are_refused_and_store_nothing(tx: FakeTransactions) -> None:
    _traffic(tx, 4)
    before = tx.store.dump()
    with pytest.raises(RemitnetError) as err:
        settle_cycle(tx, "USD-000001")
    assert err.value.reason == Reason.CYCLE_NOT_CLOSED
    with pytest.raises(NotFound) as missing:
        settle_cycle(tx, "USD-999999")
    assert missing.value.reason == Reason.CYCLE_NOT_FOUND
    assert tx.store.dump() == before


def test_settling_cross_currency_legs_moves_the_providers_liquidity() -> None:
    """The bank pays the source amount to the FX provider, the provider
    pays the target amount to the creditor: both settle on the provider's
    liquidity accounts. Its spread is what it keeps; the hub books nothing."""
    tx = FakeTransactions()
    seed_rates(tx, {("USD", "EUR"): "0.92"})
    seed_bank(tx, "USBANK01", ["USD"], deposit=DEPOSIT)
    seed_bank(tx, "EUBANK01", ["EUR"])
    seed_funds(tx, DEFAULT_PROVIDER, {"EUR": DEPOSIT})
    quote = seed_quote(tx, "USBANK01", "USD", "EUR", 100_000)
    item = instruction("USBANK01", "EUBANK01", "USD", 100_000, quote_id=quote.quote_id)
    [outcome] = commit_batch(tx, [item]).result.outcomes
    assert isinstance(outcome, Accepted)
    for currency in ("USD", "EUR"):
        settle_cycle(tx, seed_close(tx, currency))
    target = quote.terms.target_amount
    balances = {a.id: a.balance for a in tx.uow().accounts.all()}
    assert balances[account_id("EUBANK01", "EUR")] == target
    assert balances[account_id("USBANK01", "USD")] == DEPOSIT - 100_000
    assert balances[account_id(DEFAULT_PROVIDER, "EUR")] == DEPOSIT - target
    assert balances[account_id(DEFAULT_PROVIDER, "USD")] == 100_000
    for currency in ("USD", "EUR"):
        for kind in (AccountKind.FX, AccountKind.FX_REVENUE):
            assert balances[account_id(HUB, currency, kind)] == 0
    assert not [p for p in tx.store.postings if p.startswith("fxrevenue:")]
    assert all(s == 0 and b == 0 for b, s, _ in ledger_totals(tx).values())
    assert tx.violations() == []


def test_settling_legs_through_the_hub_from_before_fx_providers_books_the_spread() -> None:
    """A transfer the hub cleared as dealer before FX providers settles as
    it did: its FX book carried at mid, its spread revenue."""
    tx = FakeTransactions()
    seed_rates(tx, {("USD", "EUR"): "0.92"})
    seed_bank(tx, "USBANK01", ["USD"], deposit=DEPOSIT)
    seed_bank(tx, "EUBANK01", ["EUR"])
    quote = seed_quote(tx, "USBANK01", "USD", "EUR", 100_000, provider=None)
    item = instruction("USBANK01", "EUBANK01", "USD", 100_000, quote_id=quote.quote_id)
    seed_hub_transfer(tx, item, quote)
    for currency in ("USD", "EUR"):
        settle_cycle(tx, seed_close(tx, currency))
    target, fee = quote.terms.target_amount, quote.terms.fee
    balances = {a.id: a.balance for a in tx.uow().accounts.all()}
    assert balances[account_id("EUBANK01", "EUR")] == target
    assert balances[account_id("USBANK01", "USD")] == DEPOSIT - 100_000
    # The hub's FX book is carried at mid, its spread is revenue.
    assert balances[account_id(HUB, "EUR", AccountKind.FX_REVENUE)] == fee
    assert balances[account_id(HUB, "EUR", AccountKind.FX)] == -(target + fee)
    assert balances[account_id(HUB, "USD", AccountKind.FX)] == 100_000
    assert tx.store.postings["fxrevenue:EUR-000001"].amount == fee
    assert all(s == 0 and b == 0 for b, s, _ in ledger_totals(tx).values())
    revenue = statement(tx, HUB, "EUR", 0, 100)
    assert revenue.closing_balance == fee
    assert [e.kind for e in revenue.entries] == [EntryKind.FX_REVENUE]
    assert tx.violations() == []


def test_a_statement_chains_balances_and_pages(tx: FakeTransactions) -> None:
    for _ in range(3):
        _traffic(tx, 4)
        settle_cycle(tx, seed_close(tx, "USD"))
    st = statement(tx, "BANKA01", "USD", 0, 100)
    assert [e.seq for e in st.entries] == list(range(1, len(st.entries) + 1))
    assert st.entries[0].kind is EntryKind.DEPOSIT and st.opening_balance == 0
    running = st.opening_balance
    for e in st.entries:
        running += e.amount
        assert e.balance_after == running
    assert running == st.closing_balance and st.next_after_seq == 0
    assert st.closing_balance == tx.store.accounts[account_id("BANKA01", "USD")].balance
    page = statement(tx, "BANKA01", "USD", 0, 2)
    assert [e.seq for e in page.entries] == [1, 2] and page.next_after_seq == 2
    tail = statement(tx, "BANKA01", "USD", 2, 100)
    assert tail.opening_balance == st.entries[1].balance_after
    assert tail.entries == st.entries[2:] and tail.closing_balance == st.closing_balance
    beyond = statement(tx, "BANKA01", "USD", 99, 10)
    assert (beyond.entries, beyond.opening_balance, beyond.closing_balance) == (
        [],
        st.closing_balance,
        st.closing_balance,
    )
    with pytest.raises(NotFound) as err:
        statement(tx, "BANKA01", "EUR", 0, 10)
    assert err.value.reason == Reason.ACCOUNT_NOT_FOUND
    with pytest.raises(RemitnetError) as bad:
        statement(tx, "BANKA01", "ZZZ", 0, 10)
    assert bad.value.reason == Reason.UNKNOWN_CURRENCY
    assert tx.commits["statement"] == 0  # a read
    assert tx.violations() == []


def test_reconciliation_agrees_three_ways(tx: FakeTransactions) -> None:
    _traffic(tx, 8)
    [outcome] = commit_batch(tx, [instruction("BANKA01", "BANKC01", "USD", 999)]).result.outcomes
    assert isinstance(outcome, Accepted)
    cancel_transfer(tx, None, outcome.transfer.transfer_id, "TECH")
    cycle_id = seed_close(tx, "USD")
    before = reconciliation(tx, cycle_id)
    assert before.all_matched and not before.settled
    assert sum(r.sent_count for r in before.rows) == 4 * 12  # the cancelled one is not counted
    settle_cycle(tx, cycle_id)
    after = reconciliation(tx, cycle_id)
    assert after.settled and after.all_matched
    positions = tx.uow().positions.of_cycle(cycle_id)
    for row in after.rows:
        p = positions[row.bank]
        assert row.computed_net == row.position_net == row.posted == p.net
        assert (row.sent, row.received) == (p.sent, p.received)
    assert tx.violations() == []
    with pytest.raises(NotFound):
        reconciliation(tx, "USD-999999")
