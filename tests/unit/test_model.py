from __future__ import annotations

from datetime import UTC, datetime

import pytest

from remitnet.services.domain.errors import InvalidArgument, Reason
from remitnet.services.domain.model import (
    CycleState,
    StoredTransfer,
    TransferStatus,
    canonical_transfer_id,
    check_bank_code,
    effective_status,
    make_instruction,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TID = "5b0a1c1e-3f0a-4c1b-9a39-2f3c4d5e6f70"


def _make(**kw: object) -> None:
    args: dict[str, object] = dict(
        transfer_id=TID, debtor="BANKA", creditor="BANKB", currency="USD", amount=100
    )
    args.update(kw)
    make_instruction(**args)  # type: ignore[arg-type]


def test_transfer_id_is_canonicalised_to_lower_case() -> None:
    assert canonical_transfer_id(TID.upper()) == TID


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not-a-uuid",
        "{" + TID + "}",
        TID.replace("-", ""),
        "00000000-0000-0000-0000-000000000000",
    ],
)
def test_malformed_transfer_ids_are_refused(raw: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        canonical_transfer_id(raw)
    assert err.value.reason == Reason.INVALID_TRANSFER_ID


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"creditor": "BANKA"}, Reason.SAME_DEBTOR_AND_CREDITOR),
        ({"creditor": ""}, Reason.MISSING_FIELD),
        ({"creditor": "bad code"}, Reason.INVALID_BANK_CODE),
        ({"currency": "ABC"}, Reason.UNKNOWN_CURRENCY),
        ({"amount": 0}, Reason.INVALID_AMOUNT),
        ({"amount": -5}, Reason.INVALID_AMOUNT),
        ({"amount": 2**63}, Reason.AMOUNT_OUT_OF_RANGE),
        ({"remittance_info": "x" * 141}, Reason.REMITTANCE_INFO_TOO_LONG),
        ({"purpose": "sala"}, Reason.INVALID_CHARACTERS),
        ({"purpose": "SALAR"}, Reason.INVALID_CHARACTERS),
        ({"purpose": "SA A"}, Reason.INVALID_CHARACTERS),
        ({"purpose": "SAL\n"}, Reason.INVALID_CHARACTERS),
        ({"purpose": "ÄBC"}, Reason.INVALID_CHARACTERS),
    ],
)
def test_stateless_validation(kw: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        _make(**kw)
    assert err.value.reason == reason


def test_purpose_is_kept_and_part_of_the_content() -> None:
    args: dict[str, object] = dict(
        transfer_id=TID, debtor="BANKA", creditor="BANKB", currency="USD", amount=100
    )
    plain = make_instruction(**args)  # type: ignore[arg-type]
    sala = make_instruction(**args, purpose="SALA")  # type: ignore[arg-type]
    assert (plain.purpose, sala.purpose) == (None, "SALA")
    assert make_instruction(**args, purpose="A1").purpose == "A1"  # type: ignore[arg-type]
    stored = StoredTransfer.from_instruction(sala, accepted_at=NOW, cycle_id="USD-000001")
    assert stored.purpose == "SALA"
    assert sala.same_content(stored)
    assert not plain.same_content(stored)
    assert not sala._replace(purpose="SUPP").same_content(stored)


def test_hub_code_is_reserved() -> None:
    with pytest.raises(InvalidArgument):
        check_bank_code("HUB")


@pytest.mark.parametrize(
    ("stored", "cycle", "status"),
    [
        (TransferStatus.ACCEPTED, CycleState.OPEN, TransferStatus.ACCEPTED),
        (TransferStatus.ACCEPTED, CycleState.CLOSED, TransferStatus.CLOSED),
        (TransferStatus.ACCEPTED, CycleState.SETTLED, TransferStatus.SETTLED),
        (TransferStatus.CANCELLED, CycleState.SETTLED, TransferStatus.CANCELLED),
    ],
)
def test_status_follows_the_cycle(
    stored: TransferStatus, cycle: CycleState, status: TransferStatus
) -> None:
    assert effective_status(stored, cycle) is status
