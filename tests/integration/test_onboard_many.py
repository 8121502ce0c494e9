"""OperatorClient.onboard_many: a scheme's banks onboarded and funded through
the operator's ordinary calls, a sliding window of them in flight; every
action in the audit trail, once, and the whole of it safe to repeat."""

from __future__ import annotations

import json

import grpc

from remitnet.clients.errors import HubError
from remitnet.clients.operator import (
    HUB_MAX_STREAMS,
    ONBOARD_IN_FLIGHT,
    Onboarding,
    onboarding_deposit_id,
)
from remitnet.participants.v1 import participants_pb2 as ppb
from remitnet.services.domain import audit_trail as trail
from remitnet.services.domain.audit_trail import Action
from remitnet.services.entrypoints.server import MAX_CONCURRENT_STREAMS
from tests.support import HubHandle


def _scheme(n: int) -> list[Onboarding]:
    return [
        Onboarding(
            f"OB{i:03d}",
            f"Bank {i}",
            "us-east1",
            ["EUR", "USD"] if i % 5 == 0 else ["USD"],
            deposits={"USD": 1_000 + i, **({"EUR": 7} if i % 5 == 0 else {})},
        )
        for i in range(n)
    ]


def _records(hub: HubHandle) -> list[trail.AuditRecord]:
    return hub.db.read(lambda uow: list(uow.trail.records()))


async def test_onboards_and_funds_each_bank_and_a_repeat_changes_nothing(hub: HubHandle) -> None:
    scheme = _scheme(30)
    before = len(_records(hub))
    answers = await hub.operator.onboard_many(scheme, in_flight=7)
    assert [a.code for a in answers if isinstance(a, ppb.Bank)] == [b.code for b in scheme]
    for b, answer in zip(scheme, answers, strict=True):
        assert isinstance(answer, ppb.Bank)
        # The accounts as the deposits left them, by currency.
        assert {a.currency: a.balance for a in answer.accounts} == b.deposits
        assert [a.currency for a in answer.accounts] == sorted(b.currencies)
    records = _records(hub)
    deposits = sum(len(b.deposits) for b in scheme)
    assert len(records) - before == len(scheme) + deposits
    assert trail.verify(records).ok
    # Each deposit under the id derived from its bank and currency.
    ids = {json.loads(r.request)["deposit_id"] for r in records if r.action == Action.DEPOSIT}
    assert ids >= {onboarding_deposit_id(b.code, c) for b in scheme for c in b.deposits}

    # Onboarding the same scheme again (an interrupted run repeated): the
    # banks are there as asked and each deposit is a replay of its own id.
    again = await hub.operator.onboard_many(scheme, in_flight=3)
    assert again == answers
    assert len(_records(hub)) == len(records)
    listed = {b.code: b for b in await hub.operator.list_banks()}
    for b in scheme:
        assert {a.currency: a.balance for a in listed[b.code].accounts} == b.deposits


async def test_a_refused_bank_is_answered_in_its_place_and_the_others_go_on(
    hub: HubHandle,
) -> None:
    await hub.operator.create_bank("OB001", "Another name", "us-east1", ["USD"])
    scheme = _scheme(4)
    answers = await hub.operator.onboard_many(scheme)
    refused = answers[1]
    assert isinstance(refused, HubError)
    assert refused.code == grpc.StatusCode.ALREADY_EXISTS and refused.reason == "BANK_EXISTS"
    for answer in (answers[0], *answers[2:]):
        assert isinstance(answer, ppb.Bank) and answer.accounts[0].balance > 0
    # Nothing was deposited into the bank that was refused.
    (account,) = (await hub.operator.get_bank("OB001")).accounts
    assert account.balance == 0


def test_the_window_stays_within_the_streams_a_hub_connection_takes() -> None:
    # A stream past the hub's limit is refused (REFUSED_STREAM), not queued.
    assert HUB_MAX_STREAMS == MAX_CONCURRENT_STREAMS
    assert ONBOARD_IN_FLIGHT <= HUB_MAX_STREAMS
