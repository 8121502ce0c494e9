"""Value objects of clearing: banks, transfers, cycles and their states."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Final

from remitnet.services.domain.errors import InvalidArgument, Reason
from remitnet.services.domain.money import check_currency, check_positive_amount

HUB: Final = "HUB"  # the hub's own ledger owner; no bank may take this code
MAX_REMITTANCE_INFO: Final = 140  # ISO 20022 unstructured remittance information
BANK_CODE_RE: Final = re.compile(r"[A-Z0-9]{3,16}")
REGION_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


class BankStatus(IntEnum):
    ACTIVE = 1
    SUSPENDED = 2


class TransferStatus(IntEnum):
    """Values equal the proto enum's, and only ever move forward."""

    ACCEPTED = 1
    CLOSED = 2
    SETTLED = 3
    CANCELLED = 4


class CycleState(IntEnum):
    OPEN = 1
    CLOSED = 2
    SETTLED = 3


class AccountKind:
    LIQUIDITY = "LIQUIDITY"  # a bank's prefunded settlement account
    SETTLEMENT = "SETTLEMENT"  # the hub's counterpart of settled net positions
    RESERVE = "RESERVE"  # the hub's counterpart of deposits and withdrawals


def account_id(owner: str, currency: str, kind: str = AccountKind.LIQUIDITY) -> str:
    return f"{owner}/{currency}/{kind}"


def check_bank_code(code: str, *, field: str = "bank_code") -> str:
    if not BANK_CODE_RE.fullmatch(code) or code == HUB:
        raise InvalidArgument(
            Reason.INVALID_BANK_CODE,
            f"{field} must be 3-16 upper-case letters or digits (not {HUB}), got {code[:40]!r}",
            field=field,
        )
    return code


def check_region(region: str) -> str:
    if not REGION_RE.fullmatch(region):
        raise InvalidArgument(
            Reason.INVALID_REGION, f"home_region must look like 'us-east1', got {region[:40]!r}"
        )
    return region


def canonical_transfer_id(raw: str) -> str:
    """The UETR in canonical lower-case 8-4-4-4-12 form."""
    if len(raw) != 36:
        raise InvalidArgument(
            Reason.INVALID_TRANSFER_ID, "transfer_id must be a UUID in 8-4-4-4-12 form"
        )
    try:
        value = uuid.UUID(raw)
    except ValueError:
        raise InvalidArgument(
            Reason.INVALID_TRANSFER_ID, "transfer_id must be a UUID in 8-4-4-4-12 form"
        ) from None
    if value.int == 0:
        raise InvalidArgument(Reason.INVALID_TRANSFER_ID, "transfer_id must not be the nil UUID")
    return str(value)


@dataclass(frozen=True, slots=True)
class Instruction:
    """A validated credit transfer instruction; the debtor is the caller."""

    transfer_id: str
    debtor: str
    creditor: str
    currency: str
    amount: int
    remittance_info: str = ""

    def same_content(self, other: Instruction | StoredTransfer) -> bool:
        return (
            self.debtor == other.debtor
            and self.creditor == other.creditor
            and self.currency == other.currency
            and self.amount == other.amount
            and self.remittance_info == other.remittance_info
        )


def make_instruction(
    *,
    transfer_id: str,
    debtor: str,
    creditor: str,
    currency: str,
    amount: int,
    remittance_info: str = "",
) -> Instruction:
    """Stateless validation: everything that needs no database."""
    tid = canonical_transfer_id(transfer_id)
    if not creditor:
        raise InvalidArgument(
            Reason.MISSING_FIELD, "creditor_bank is required", field="creditor_bank"
        )
    check_bank_code(creditor, field="creditor_bank")
    if creditor == debtor:
        raise InvalidArgument(
            Reason.SAME_DEBTOR_AND_CREDITOR, "a bank cannot send a transfer to itself"
        )
    check_currency(currency)
    check_positive_amount(amount)
    if len(remittance_info) > MAX_REMITTANCE_INFO:
        raise InvalidArgument(
            Reason.REMITTANCE_INFO_TOO_LONG,
            f"remittance_info is limited to {MAX_REMITTANCE_INFO} characters",
        )
    return Instruction(tid, debtor, creditor, currency, amount, remittance_info)


@dataclass(frozen=True, slots=True)
class StoredTransfer:
    transfer_id: str
    debtor: str
    creditor: str
    currency: str
    amount: int
    remittance_info: str
    status: TransferStatus  # as stored: ACCEPTED or CANCELLED
    cycle_id: str
    accepted_at: datetime


def effective_status(stored: TransferStatus, cycle_state: CycleState) -> TransferStatus:
    """A transfer's status follows its cycle, so that closing or settling a
    cycle of a million transfers writes one cycle row, not a million rows."""
    if stored is TransferStatus.CANCELLED:
        return stored
    if cycle_state is CycleState.SETTLED:
        return TransferStatus.SETTLED
    if cycle_state is CycleState.CLOSED:
        return TransferStatus.CLOSED
    return TransferStatus.ACCEPTED


def cycle_id_for(currency: str, seq: int) -> str:
    return f"{currency}-{seq:06d}"
