"""The operator audit trail's hash chain: pure rules, no I/O.

Every operator action that changes the hub's state (onboarding, accounts,
liquidity, caps, suspend/resume, rates, closing and settling cycles) appends
one record, in the transaction of the action:

* ``seq``: 1, 2, 3, ... (the previous record's plus one, read in the same
  transaction: no sequence, no gap);
* ``principal``: who acted: ``operator``, ``bank:<CODE>``, ``fxp:<CODE>``
  (an FX provider publishing its rates) or ``hub`` (the hub process itself:
  its cycle scheduler, auto-settle, the rates file at start);
* ``at``: when, UTC, microseconds;
* ``action``: the RPC's name (:class:`Action`);
* ``request``: the canonical JSON of the action's arguments as the use case
  resolved them (:func:`canonical_json`: keys sorted, no whitespace, UTF-8,
  integers only, no floats), and ``digest`` = SHA-256 of it, hex. Canonical
  JSON rather than protobuf serialization: protobuf's deterministic mode is
  not canonical across languages or versions, and the hub's own actions (the
  scheduler's closes) have no protobuf request;
* ``prev_hash``: the previous record's ``hash`` (:data:`GENESIS` for seq 1);
* ``hash`` = SHA-256, hex, of the UTF-8 of the canonical JSON array
  ``[prev_hash, seq, principal, at, action, digest]`` (:func:`record_hash`),
  with ``at`` written ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (:func:`time_text`).

A changed field changes that record's hash; a deleted record breaks the next
record's ``prev_hash`` and the seq run; rewriting every later hash to match
changes the chain head, which banks hold for each settled cycle (GetCycle's
``audit_chain_head``): checking a head a bank kept against the chain
(:func:`verify`'s anchors) detects that rewrite, and truncating the tail.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

GENESIS = "0" * 64
HUB_PRINCIPAL = "hub"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PRINCIPAL = re.compile(r"^(operator|hub|bank:[A-Z0-9]{1,16}|fxp:[A-Z0-9]{1,16})$")


class Action(StrEnum):
    CREATE_BANK = "CreateBank"
    OPEN_ACCOUNT = "OpenAccount"
    DEPOSIT = "Deposit"
    WITHDRAW = "Withdraw"
    SET_NET_DEBIT_CAP = "SetNetDebitCap"
    SUSPEND_BANK = "SuspendBank"
    RESUME_BANK = "ResumeBank"
    UPDATE_RATES = "UpdateRates"
    CLOSE_CYCLE = "CloseCycle"
    SETTLE_CYCLE = "SettleCycle"
    CANCEL_TRANSFER = "CancelTransfer"
    SET_CONFIRMATION_REQUIRED = "SetConfirmationRequired"


#: The request key that names what an action was about (its `subject`,
#: stored beside the record so a cycle's SettleCycle record can be found).
_SUBJECT_KEY: Mapping[Action, str | None] = {
    Action.CREATE_BANK: "bank",
    Action.OPEN_ACCOUNT: "bank",
    Action.DEPOSIT: "bank",
    Action.WITHDRAW: "bank",
    Action.SET_NET_DEBIT_CAP: "bank",
    Action.SUSPEND_BANK: "bank",
    Action.RESUME_BANK: "bank",
    Action.UPDATE_RATES: None,
    Action.CLOSE_CYCLE: "cycle_id",
    Action.SETTLE_CYCLE: "cycle_id",
    Action.CANCEL_TRANSFER: "transfer_id",
    Action.SET_CONFIRMATION_REQUIRED: "bank",
}


def _check_value(value: Any, path: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_value(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: keys must be strings, not {key!r}")
            _check_value(item, f"{path}.{key}")
        return
    # Floats have no single text form; decimals and times go in as text.
    raise TypeError(f"{path}: {type(value).__name__} is not canonical JSON")


def canonical_json(request: Mapping[str, Any]) -> str:
    """Keys sorted, no whitespace, non-ASCII as is (UTF-8 when hashed),
    strings, integers, booleans, null, lists and objects only."""
    _check_value(dict(request), "request")
    return json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def time_text(at: datetime) -> str:
    """UTC, microseconds, `Z`: the form hashed. A naive time is UTC (SQLite
    hands stored times back naive)."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(
    prev_hash: str, seq: int, principal: str, at: datetime, action: str, digest: str
) -> str:
    return sha256_hex(
        json.dumps(
            [prev_hash, seq, principal, time_text(at), action, digest],
            separators=(",", ":"),
            ensure_ascii=False,
        )
    )


def subject_of(action: Action, request: Mapping[str, Any]) -> str:
    key = _SUBJECT_KEY[action]
    value = request.get(key, "") if key else ""
    return value if isinstance(value, str) else ""


def check_principal(principal: str) -> str:
    if not _PRINCIPAL.fullmatch(principal):
        raise ValueError(
            f"{principal[:40]!r} is not an audit principal (operator, hub, bank:CODE, fxp:CODE)"
        )
    return principal


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at: datetime
    principal: str
    action: str
    subject: str
    request: str  # canonical JSON
    digest: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class ChainHead:
    """A record's place in the chain: what a bank keeps for a settled cycle."""

    seq: int
    hash: str


def next_record(
    head: AuditRecord | None,
    principal: str,
    now: datetime,
    action: Action,
    request: Mapping[str, Any],
) -> AuditRecord:
    """The record that follows `head` (None: the first). Its time is never
    before the head's, so the trail reads in time order even when replicas'
    clocks differ a little."""
    check_principal(principal)
    text = canonical_json(request)
    digest = sha256_hex(text)
    seq = 1 if head is None else head.seq + 1
    prev = GENESIS if head is None else head.hash
    at = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    if head is not None:
        at = max(at, head.at.replace(tzinfo=UTC) if head.at.tzinfo is None else head.at)
    return AuditRecord(
        seq=seq,
        at=at,
        principal=principal,
        action=str(action),
        subject=subject_of(action, request),
        request=text,
        digest=digest,
        prev_hash=prev,
        hash=record_hash(prev, seq, principal, at, str(action), digest),
    )


@dataclass(frozen=True, slots=True)
class Break:
    seq: int  # the first record that does not verify (or the anchor's seq)
    reason: str


@dataclass(slots=True)
class Verification:
    rows: int = 0
    head: ChainHead | None = None
    broken: Break | None = None
    anchors_checked: int = 0

    @property
    def ok(self) -> bool:
        return self.broken is None


def _record_problem(record: AuditRecord, expected_seq: int, prev_hash: str) -> str | None:
    if record.seq != expected_seq:
        if record.seq > expected_seq:
            missing = (
                f"seq {expected_seq}"
                if record.seq == expected_seq + 1
                else f"seqs {expected_seq} to {record.seq - 1}"
            )
            return f"{missing} missing: the chain jumps from seq {expected_seq - 1} to {record.seq}"
        return f"seq {record.seq} out of order after seq {expected_seq - 1}"
    if record.prev_hash != prev_hash:
        return (
            f"prev_hash {record.prev_hash[:16]}... is not the hash of seq {record.seq - 1} "
            f"({prev_hash[:16]}...): a record before it was changed or removed"
        )
    try:
        action = Action(record.action)
    except ValueError:
        return f"unknown action {record.action[:40]!r}"
    try:
        check_principal(record.principal)
    except ValueError as exc:
        return str(exc)
    if sha256_hex(record.request) != record.digest:
        return "the request does not match its digest: the request was changed"
    try:
        request = json.loads(record.request)
    except ValueError:
        return "the request is not JSON"
    if not isinstance(request, dict) or canonical_json(request) != record.request:
        return "the request is not canonical JSON"
    if subject_of(action, request) != record.subject:
        return f"subject {record.subject[:40]!r} is not the request's"
    if not _HEX64.fullmatch(record.hash):
        return "the hash is not 64 hex digits"
    computed = record_hash(
        record.prev_hash, record.seq, record.principal, record.at, record.action, record.digest
    )
    if computed != record.hash:
        return "the record's hash does not match its fields: the record was changed"
    return None


def verify(
    records: Iterable[AuditRecord], anchors: Mapping[int, str] | None = None
) -> Verification:
    """Check the whole chain in seq order and report the first record that
    breaks it. `anchors` (seq -> hash) are chain heads kept outside the hub
    (a bank's `audit_chain_head` of a settled cycle): each must be in the
    chain with that hash, which also catches a rewrite that recomputed every
    later hash and a truncated tail."""
    wanted = dict(anchors or {})
    out = Verification()
    expected, prev = 1, GENESIS
    for record in records:
        problem = _record_problem(record, expected, prev)
        if problem is None and record.seq in wanted:
            out.anchors_checked += 1
            if wanted[record.seq] != record.hash:
                problem = (
                    f"the hash is not the anchor {wanted[record.seq][:16]}... held for seq "
                    f"{record.seq}: the chain was rewritten"
                )
        if problem is not None:
            out.broken = Break(record.seq, problem)
            return out
        out.rows += 1
        out.head = ChainHead(record.seq, record.hash)
        expected, prev = record.seq + 1, record.hash
    missing = sorted(s for s in wanted if s >= expected)
    if missing:
        out.broken = Break(
            missing[0],
            f"the chain ends at seq {expected - 1} but an anchor is held for seq {missing[0]}: "
            "records were removed from its end",
        )
    return out


def parse_anchor(text: str) -> tuple[int, str]:
    """`SEQ:HASH` (HASH: 64 lower-case hex digits), as the CLI takes it."""
    seq_text, sep, digest = text.strip().partition(":")
    if not sep or not seq_text.isdigit() or int(seq_text) < 1:
        raise ValueError(f"anchor {text[:80]!r}: expected SEQ:HASH, SEQ a positive integer")
    digest = digest.lower()
    if not _HEX64.fullmatch(digest):
        raise ValueError(f"anchor {text[:80]!r}: HASH must be 64 hex digits")
    return int(seq_text), digest
