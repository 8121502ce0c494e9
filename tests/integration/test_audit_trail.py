"""The operator audit trail: every operator action that changes state is
appended, once, hash-chained, in its own transaction; `remitnet audit
verify` checks the chain from the database; banks hold the chain head of
each settled cycle, which detects a later rewrite from outside."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, update

from remitnet.clients.bank import instruction
from remitnet.clients.errors import HubError
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.schema import operator_audit_log as log
from remitnet.services.domain import audit_trail as trail
from remitnet.services.domain.errors import Reason
from remitnet.services.entrypoints import cli
from remitnet.services.service_layer import cycles, participants
from remitnet.services.service_layer.audit import audit
from tests.support import HubHandle

BANKS = {"BANKA01": "us-east1", "BANKB01": "asia-southeast1"}


def records(db: Database) -> list[trail.AuditRecord]:
    return db.read(lambda uow: list(uow.trail.records()))


def rows(db: Database) -> list[tuple[int, str, str, str]]:
    return [(r.seq, r.principal, r.action, r.subject) for r in records(db)]


def verify_cli(url: str, *extra: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["audit", "verify", "--db", url, *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def _execute(db: Database, statement: Any) -> None:
    with db.engine.begin() as conn:
        conn.execute(statement)


async def _settled_cycle(hub: HubHandle) -> npb.Cycle:
    """Two banks, one transfer, its USD cycle closed and settled."""
    await hub.onboard(BANKS, ["USD"], deposit=10_000)
    response = await hub.bank("BANKA01").submit(instruction("BANKB01", "USD", 125))
    assert response.transfer.transfer_id
    closed = (await hub.operator.close_cycle("USD")).closed
    await hub.operator.settle_cycle(closed.cycle_id)
    return await hub.bank("BANKB01").cycle(closed.cycle_id)


async def test_every_operator_action_is_recorded_once(hub: HubHandle) -> None:
    op = hub.operator
    await op.create_bank("BANKA01", "A Bank", "us-east1", ["USD"])
    await op.create_bank("BANKB01", "B Bank", "asia-southeast1", ["USD", "PHP"])
    await op.create_bank("BANKA01", "A Bank", "us-east1", ["USD"])  # replay
    await op.open_account("BANKA01", "PHP")
    await op.open_account("BANKA01", "PHP")  # already open
    deposit_id = str(uuid.uuid4())
    await op.deposit("BANKA01", "USD", 10_000, deposit_id)
    await op.deposit("BANKA01", "USD", 10_000, deposit_id)  # replay
    await op.deposit("BANKB01", "USD", 10_000)
    await op.withdraw("BANKA01", "USD", 1_000, str(uuid.uuid4()))
    await op.set_cap("BANKA01", "USD", 5_000)
    await op.set_cap("BANKA01", "USD", 5_000)  # the cap it has
    await op.suspend("BANKB01")
    await op.suspend("BANKB01")  # already suspended
    await op.resume("BANKB01")
    as_of = datetime.now(UTC)
    await op.update_rates({("USD", "PHP"): "56.25"}, as_of=as_of)
    await op.update_rates({("USD", "PHP"): "56.250"}, as_of=as_of)  # the rate it holds
    # Refused actions change nothing and append nothing.
    with pytest.raises(HubError) as err:
        await op.deposit("BANKZZ01", "USD", 1)
    assert err.value.reason == Reason.UNKNOWN_PARTICIPANT
    with pytest.raises(HubError) as err:
        await op.withdraw("BANKA01", "USD", 10**9)
    assert err.value.reason == Reason.INSUFFICIENT_LIQUIDITY
    # A bank's own actions are not operator actions.
    await hub.bank("BANKA01").submit(instruction("BANKB01", "USD", 300))
    open_ = (await op.list_cycles("USD", npb.CYCLE_STATE_OPEN))[0].cycle_id
    closed = (await op.close_cycle("USD", cycle_id=open_)).closed
    again = (await op.close_cycle("USD", cycle_id=open_)).closed  # a retried close
    assert again.cycle_id == closed.cycle_id
    await op.settle_cycle(closed.cycle_id)
    assert (await op.settle_cycle(closed.cycle_id)).already_settled

    assert rows(hub.db) == [
        (1, "operator", "CreateBank", "BANKA01"),
        (2, "operator", "CreateBank", "BANKB01"),
        (3, "operator", "OpenAccount", "BANKA01"),
        (4, "operator", "Deposit", "BANKA01"),
        (5, "operator", "Deposit", "BANKB01"),
        (6, "operator", "Withdraw", "BANKA01"),
        (7, "operator", "SetNetDebitCap", "BANKA01"),
        (8, "operator", "SuspendBank", "BANKB01"),
        (9, "operator", "ResumeBank", "BANKB01"),
        (10, "operator", "UpdateRates", ""),
        (11, "operator", "CloseCycle", closed.cycle_id),
        (12, "operator", "SettleCycle", closed.cycle_id),
    ]
    found = records(hub.db)
    assert json.loads(found[3].request) == {
        "bank": "BANKA01",
        "currency": "USD",
        "amount": 10_000,
        "deposit_id": deposit_id,
    }
    assert json.loads(found[1].request)["currencies"] == ["USD", "PHP"]
    assert json.loads(found[9].request)["rates"][0] == {
        "base": "USD",
        "quote": "PHP",
        "mid_rate": "56.25",
        "as_of": trail.time_text(as_of),
    }
    assert all(a.at <= b.at for a, b in itertools.pairwise(found))
    result = trail.verify(found)
    assert result.ok and result.rows == 12
    assert audit(hub.db).ok
    assert result.head == trail.ChainHead(12, found[-1].hash)


async def test_a_settled_cycle_carries_the_chain_head_for_banks(hub: HubHandle) -> None:
    await hub.onboard(BANKS, ["USD"], deposit=10_000)
    bank = hub.bank("BANKA01")
    await bank.submit(instruction("BANKB01", "USD", 125))
    cycle_id = (await hub.operator.list_cycles("USD"))[0].cycle_id
    assert not (await bank.cycle(cycle_id)).HasField("audit_chain_head")
    await hub.operator.close_cycle("USD")
    assert await bank.audit_chain_head(cycle_id) is None  # closed, not settled
    await hub.operator.settle_cycle(cycle_id)
    head = await bank.audit_chain_head(cycle_id)
    assert head is not None
    settle = records(hub.db)[-1]
    assert (settle.action, settle.subject) == ("SettleCycle", cycle_id)
    assert (head.sequence, head.hash) == (settle.seq, settle.hash)
    # The head is the settlement's: later operator actions do not move it,
    # a replayed settlement neither.
    await hub.operator.deposit("BANKA01", "USD", 5)
    await hub.operator.settle_cycle(cycle_id)
    assert await hub.bank("BANKB01").audit_chain_head(cycle_id) == head
    listed = await bank.call(bank.netting.ListCycles, npb.ListCyclesRequest(currency="USD"))
    by_id = {c.cycle_id: c for c in listed.cycles}
    assert by_id[cycle_id].audit_chain_head == head
    assert not any(c.HasField("audit_chain_head") for i, c in by_id.items() if i != cycle_id)
    with pytest.raises(HubError) as err:
        await bank.audit_chain_head("USD-999999")
    assert err.value.reason == Reason.CYCLE_NOT_FOUND


async def test_an_untouched_chain_verifies(
    hub: HubHandle, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cycle = await _settled_cycle(hub)
    head = cycle.audit_chain_head
    code, out = verify_cli(db_url, capsys=capsys)
    assert code == 0, out
    assert "verifies: OK" in out and f"{head.sequence} {head.hash}" in out
    anchor = f"{head.sequence}:{head.hash}"
    code, out = verify_cli(db_url, "--anchor", anchor, "--json", capsys=capsys)
    assert code == 0, out
    document = json.loads(out)
    assert document["verified"] is True and document["anchors_checked"] == 1
    assert document["head"] == {"sequence": head.sequence, "hash": head.hash}
    assert document["broken"] is None


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("request", '{"amount":1,"bank":"BANKA01","currency":"USD","deposit_id":"x"}'),
        ("principal", "bank:BANKB01"),
        ("action", "Withdraw"),
        ("subject", "BANKB01"),
        ("hash", "f" * 64),
    ],
)
async def test_an_edited_row_fails_verification(
    hub: HubHandle, db_url: str, capsys: pytest.CaptureFixture[str], column: str, value: str
) -> None:
    await _settled_cycle(hub)
    deposit = next(r for r in records(hub.db) if r.action == "Deposit")
    _execute(hub.db, update(log).where(log.c.seq == deposit.seq).values({column: value}))
    code, out = verify_cli(db_url, capsys=capsys)
    assert code == 1, out
    assert f"broken at seq {deposit.seq}" in out
    result = trail.verify(records(hub.db))
    assert result.broken is not None and result.broken.seq == deposit.seq
    assert result.rows == deposit.seq - 1
    # The invariant audit the test suite and chaos runs use checks it too.
    report = audit(hub.db)
    assert f"operator audit trail broken at seq {deposit.seq}" in " ".join(report.violations)


async def test_an_edited_time_fails_verification(
    hub: HubHandle, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _settled_cycle(hub)
    first = records(hub.db)[0]
    earlier = first.at.replace(microsecond=(first.at.microsecond + 1) % 1_000_000)
    _execute(hub.db, update(log).where(log.c.seq == 1).values(at=earlier))
    code, out = verify_cli(db_url, capsys=capsys)
    assert code == 1 and "broken at seq 1" in out and "was changed" in out, out


async def test_a_deleted_row_fails_verification(
    hub: HubHandle, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _settled_cycle(hub)
    before = records(hub.db)
    _execute(hub.db, delete(log).where(log.c.seq == 3))
    code, out = verify_cli(db_url, capsys=capsys)
    assert code == 1, out
    assert "broken at seq 4" in out and "seq 3 missing" in out
    # Removing the first record breaks the chain at its successor too.
    _execute(hub.db, delete(log).where(log.c.seq == 1))
    result = trail.verify(records(hub.db))
    assert result.broken is not None and result.broken.seq == 2 and result.rows == 0
    assert len(before) > 4


async def test_a_truncated_tail_fails_against_a_banks_head(
    hub: HubHandle, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cycle = await _settled_cycle(hub)
    head = cycle.audit_chain_head
    _execute(hub.db, delete(log).where(log.c.seq >= head.sequence))
    # What is left chains; only the head a bank kept shows the loss.
    assert verify_cli(db_url, capsys=capsys)[0] == 0
    code, out = verify_cli(db_url, "--anchor", f"{head.sequence}:{head.hash}", capsys=capsys)
    assert code == 1 and f"broken at seq {head.sequence}" in out and "removed" in out, out
    assert await hub.bank("BANKA01").audit_chain_head(cycle.cycle_id) is None


async def test_a_rewritten_chain_is_detected_from_outside(
    hub: HubHandle, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone with write access edits a deposit and recomputes every later
    hash: the chain verifies on its own, but not against the head a bank
    kept, and the hub now answers that bank another head for the cycle."""
    cycle = await _settled_cycle(hub)
    kept = cycle.audit_chain_head
    found = records(hub.db)
    deposit = next(r for r in found if r.action == "Deposit")
    forged: list[trail.AuditRecord] = found[: deposit.seq - 1]
    for r in found[deposit.seq - 1 :]:
        request = json.loads(r.request)
        if r.seq == deposit.seq:
            request["amount"] = 1
        record = trail.next_record(
            forged[-1] if forged else None, r.principal, r.at, trail.Action(r.action), request
        )
        forged.append(record)
        _execute(
            hub.db,
            update(log)
            .where(log.c.seq == r.seq)
            .values(request=record.request, digest=record.digest, prev_hash=record.prev_hash)
            .values(hash=record.hash, at=record.at),
        )
    assert verify_cli(db_url, capsys=capsys)[0] == 0
    code, out = verify_cli(db_url, "--anchor", f"{kept.sequence}:{kept.hash}", capsys=capsys)
    assert code == 1 and f"broken at seq {kept.sequence}" in out and "rewritten" in out, out
    now = await hub.bank("BANKA01").audit_chain_head(cycle.cycle_id)
    assert now is not None and now.sequence == kept.sequence and now.hash != kept.hash


async def test_concurrent_operator_actions_chain_without_gaps(hub: HubHandle) -> None:
    await hub.onboard(BANKS, ["USD"], deposit=0)
    await asyncio.gather(
        *(hub.operator.deposit(code, "USD", 100 + i) for i in range(12) for code in BANKS)
    )
    found = records(hub.db)
    assert [r.seq for r in found] == list(range(1, len(found) + 1))
    assert sum(r.action == "Deposit" for r in found) == 24
    assert trail.verify(found).ok


def test_direct_calls_are_recorded_as_the_hub(db_url: str) -> None:
    """The hub's own actions (scheduled closes, auto-settle, the rates file at
    start) carry the principal `hub`."""
    from remitnet.services.adapters.db import migrate

    db = Database(db_url)
    try:
        migrate.upgrade(db)
        participants.create_bank(db, "BANKA01", "A", "us-east1", ["USD"])
        cycles.close_cycle(db, "USD")
        with pytest.raises(ValueError):
            participants.deposit(db, "BANKA01", "USD", 5, "", actor="somebody")
        assert rows(db) == [
            (1, "hub", "CreateBank", "BANKA01"),
            (2, "hub", "CloseCycle", "USD-000001"),
        ]
    finally:
        db.dispose()


def test_bad_input_to_verify(
    tmp_path: Any, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for anchor in ["12", "x:" + "a" * 64, "0:" + "a" * 64, "3:abc", "3:" + "g" * 64]:
        with pytest.raises(SystemExit) as exit_:
            cli.main(["audit", "verify", "--db", postgres_url, "--anchor", anchor])
        assert exit_.value.code == 2
        assert "argument --anchor" in capsys.readouterr().err
    code, out = verify_cli(f"sqlite:///{tmp_path / 'absent.db'}", capsys=capsys)
    assert code == 2 and "invalid: no SQLite database" in out, out
    assert not (tmp_path / "absent.db").exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    code, out = verify_cli(f"sqlite:///{empty}", capsys=capsys)
    assert code == 1 and "no operator_audit_log table" in out, out
    code, out = verify_cli(
        "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2", capsys=capsys
    )
    assert code == 3 and out.startswith("unreachable:"), out
    # An empty trail verifies.
    code, out = verify_cli(postgres_url, capsys=capsys)
    assert code == 0 and "verifies: OK" in out, out
