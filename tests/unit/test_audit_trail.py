"""The audit trail's hash-chain rules, without a database."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from remitnet.services.domain import audit_trail as trail

T0 = datetime(2026, 12, 1, 21, 15, 7, 123456, tzinfo=UTC)


def chain(n: int) -> list[trail.AuditRecord]:
    out: list[trail.AuditRecord] = []
    for i in range(n):
        out.append(
            trail.next_record(
                out[-1] if out else None,
                "operator",
                T0 + timedelta(seconds=i),
                trail.Action.DEPOSIT,
                {"bank": "BANKA01", "currency": "USD", "amount": 100 + i, "deposit_id": str(i)},
            )
        )
    return out


def test_the_hash_is_sha256_of_a_json_array_of_the_fields() -> None:
    """The exact bytes, so that a bank or an auditor can recompute a hash in
    any language."""
    request = {"currency": "USD", "cycle_id": "USD-000001"}
    record = trail.next_record(None, "operator", T0, trail.Action.CLOSE_CYCLE, request)
    assert record.request == '{"currency":"USD","cycle_id":"USD-000001"}'
    digest = hashlib.sha256(record.request.encode()).hexdigest()
    assert record.digest == digest
    text = f'["{"0" * 64}",1,"operator","2026-12-01T21:15:07.123456Z","CloseCycle","{digest}"]'
    assert record.hash == hashlib.sha256(text.encode()).hexdigest()
    assert (record.seq, record.prev_hash, record.subject) == (1, trail.GENESIS, "USD-000001")


def test_canonical_json_sorts_keys_and_refuses_floats() -> None:
    assert trail.canonical_json({"b": [1, "é"], "a": None}) == '{"a":null,"b":[1,"é"]}'
    with pytest.raises(TypeError):
        trail.canonical_json({"rate": 1.5})
    with pytest.raises(TypeError):
        trail.canonical_json({"at": T0})


def test_times_are_hashed_in_utc() -> None:
    plus8 = T0.astimezone(timezone(timedelta(hours=8)))
    assert trail.time_text(plus8) == trail.time_text(T0) == "2026-12-01T21:15:07.123456Z"
    assert trail.time_text(T0.replace(tzinfo=None)) == trail.time_text(T0)


def test_a_record_is_never_earlier_than_the_one_before() -> None:
    first = trail.next_record(None, "hub", T0, trail.Action.SUSPEND_BANK, {"bank": "B1"})
    second = trail.next_record(
        first, "hub", T0 - timedelta(seconds=1), trail.Action.RESUME_BANK, {"bank": "B1"}
    )
    assert second.at == first.at and second.prev_hash == first.hash


@pytest.mark.parametrize("principal", ["", "Operator", "bank:", "bank:bad", "x" * 80, "hub\n"])
def test_unknown_principals_are_refused(principal: str) -> None:
    with pytest.raises(ValueError):
        trail.next_record(None, principal, T0, trail.Action.SUSPEND_BANK, {"bank": "B1"})


def test_verify_names_the_first_broken_record() -> None:
    records = chain(6)
    assert trail.verify(records).ok and trail.verify(records).rows == 6
    assert trail.verify([]).ok
    edited = [*records[:2], replace(records[2], principal="hub"), *records[3:]]
    assert trail.verify(edited).broken == trail.Break(
        3, "the record's hash does not match its fields: the record was changed"
    )
    assert trail.verify([*records[:3], *records[4:]]).broken.seq == 5  # type: ignore[union-attr]
    swapped = [records[0], records[2], records[1], *records[3:]]
    assert trail.verify(swapped).broken.seq == 3  # type: ignore[union-attr]
    replaced = [records[0], replace(records[1], request=records[1].request.replace("101", "9"))]
    assert "digest" in trail.verify(replaced).broken.reason  # type: ignore[union-attr]


def test_anchors_catch_rewrites_and_truncation() -> None:
    records = chain(5)
    assert trail.verify(records, {3: records[2].hash}).anchors_checked == 1
    forged = trail.verify(records, {3: "a" * 64}).broken
    assert forged is not None and forged.seq == 3 and "rewritten" in forged.reason
    cut = trail.verify(records[:2], {3: records[2].hash}).broken
    assert cut is not None and cut.seq == 3 and "removed" in cut.reason


@pytest.mark.parametrize("text", ["", "3", "a:" + "0" * 64, "0:" + "0" * 64, "3:" + "0" * 63])
def test_bad_anchors_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        trail.parse_anchor(text)


def test_an_anchor_parses() -> None:
    assert trail.parse_anchor(" 7:" + "AB" * 32) == (7, "ab" * 32)
