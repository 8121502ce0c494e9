"""Values the database cannot hold never fail a shared batch: control
characters are refused at validation, a total past int64 is refused by the
netting decision, and what only the database can see (a cycle position past
BIGINT) is isolated by the engine down to the one item that carries it."""

from __future__ import annotations

import pytest

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.bank import instruction
from remitnet.clients.errors import HubError
from remitnet.services.domain import netting
from remitnet.services.domain.errors import Reason
from remitnet.services.domain.money import INT64_MAX
from remitnet.services.service_layer.audit import audit
from tests.support import HubHandle, counts

BANKS = {"BANKAA01": "us-east1", "BANKBB01": "europe-west1", "BANKCC01": "asia-southeast1"}
HALF = 2**62  # two of these past one position overflow BIGINT


@pytest.fixture
async def huge(hub: HubHandle) -> HubHandle:
    """Banks with no liquidity and the largest cap the API accepts."""
    await hub.onboard(BANKS, ["USD"], deposit=0, cap=INT64_MAX)
    return hub


def reasons(response: cpb.SubmitTransfersResponse) -> list[str]:
    return [r.error.reason if r.HasField("error") else "OK" for r in response.results]


@pytest.mark.parametrize("bad", ["\x00", "line\nbreak", "bell\x07", "c1\x85"])
async def test_control_characters_are_refused_per_item(huge: HubHandle, bad: str) -> None:
    aa = huge.bank("BANKAA01")
    before = counts(huge.db)
    with pytest.raises(HubError) as err:
        await aa.submit(instruction("BANKBB01", "USD", 100, remittance_info=bad))
    assert err.value.reason == Reason.INVALID_CHARACTERS
    assert counts(huge.db) == before
    batch = [
        instruction("BANKBB01", "USD", 100),
        instruction("BANKBB01", "USD", 200, remittance_info=f"inv {bad} 7"),
        instruction("BANKCC01", "USD", 300, remittance_info="ünïcödé ✓ is fine"),
    ]
    response = await aa.submit_batch(batch)
    assert reasons(response) == ["OK", Reason.INVALID_CHARACTERS, "OK"]
    stored = {t.transfer_id for t in (await aa.list()).transfers}
    assert stored == {batch[0].transfer_id, batch[2].transfer_id}
    assert audit(huge.db).ok


async def test_unsettled_position_past_int64_is_refused(huge: HubHandle) -> None:
    aa, bb = huge.bank("BANKAA01"), huge.bank("BANKBB01")
    await aa.submit(instruction("BANKCC01", "USD", HALF))
    await aa.submit(instruction("BANKCC01", "USD", HALF - 1))  # CC at INT64_MAX
    before = counts(huge.db)
    with pytest.raises(HubError) as err:
        await bb.submit(instruction("BANKCC01", "USD", 1))
    assert err.value.reason == Reason.AMOUNT_OUT_OF_RANGE
    assert counts(huge.db) == before
    assert audit(huge.db).ok


async def test_a_position_the_database_cannot_hold_is_isolated(
    pg_hub: HubHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CC receives HALF, pays it back (its unsettled position is 0 again),
    then a batch carries a second HALF to CC between two ordinary items: CC's
    cycle `received` would pass BIGINT. The netting decision refuses that
    itself now (tests/integration/test_cycle_totals.py); with its int64
    bounds lifted here, only PostgreSQL sees it, and the engine still commits
    the ordinary items and refuses only that one: the defence behind the
    guard."""
    monkeypatch.setattr(netting, "INT64_MAX", 2**70)
    monkeypatch.setattr(netting, "INT64_MIN", -(2**70))
    net = pg_hub
    await net.onboard(BANKS, ["USD"], deposit=0, cap=INT64_MAX)
    aa, bb, cc = net.bank("BANKAA01"), net.bank("BANKBB01"), net.bank("BANKCC01")
    await aa.submit(instruction("BANKCC01", "USD", HALF))
    await cc.submit(instruction("BANKAA01", "USD", HALF))
    batch = [
        instruction("BANKAA01", "USD", 100),
        instruction("BANKCC01", "USD", HALF),
        instruction("BANKAA01", "USD", 200),
    ]
    response = await bb.submit_batch(batch)
    assert reasons(response) == ["OK", Reason.UNSTORABLE_VALUE, "OK"]
    assert (response.accepted_count, response.rejected_count) == (2, 1)
    with pytest.raises(HubError) as err:
        await bb.get(batch[1].transfer_id)
    assert err.value.reason == Reason.TRANSFER_NOT_FOUND
    bank = await net.operator.get_bank("BANKBB01")
    assert bank.accounts[0].unsettled_net == -300
    report = audit(net.db)
    assert report.ok, report


async def test_control_characters_in_a_bank_name_are_refused(hub: HubHandle) -> None:
    before = counts(hub.db)
    for name in ("Bank\x00Name", "Bank\tName", "Bank\x9bName"):
        with pytest.raises(HubError) as err:
            await hub.operator.create_bank("BANKZZ01", name, "us-east1", ["USD"])
        assert err.value.reason == Reason.INVALID_CHARACTERS
    assert counts(hub.db) == before
    await hub.operator.create_bank("BANKZZ01", "Banco São Paulo — Ñ", "us-east1", ["USD"])


async def test_text_that_looks_like_copy_syntax_round_trips(huge: HubHandle) -> None:
    """The batch path writes transfers with COPY's text format: backslashes
    and what looks like its NULL marker are data, stored and read back as
    sent."""
    aa = huge.bank("BANKAA01")
    infos = ["\\N", "C:\\path\\to\\file", "tab\\tnot a tab", "ünïcödé ✓ 💸", "\\", ""]
    batch = [
        instruction("BANKBB01", "USD", 100 + n, remittance_info=i) for n, i in enumerate(infos)
    ]
    response = await aa.submit_batch(batch)
    assert response.accepted_count == len(infos)
    for sent in batch:
        stored = await aa.get(sent.transfer_id)
        assert stored.remittance_info == sent.remittance_info
    assert audit(huge.db).ok
