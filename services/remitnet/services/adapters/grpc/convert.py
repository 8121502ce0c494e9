"""Translation between protobuf messages and domain values."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp

from remitnet.clearing.v1 import clearing_pb2
from remitnet.common.v1 import money_pb2
from remitnet.participants.v1 import participants_pb2
from remitnet.services.domain.account import Account
from remitnet.services.domain.bank import ParticipantRole
from remitnet.services.domain.errors import InvalidArgument, Reason
from remitnet.services.domain.lifecycle import Recall
from remitnet.services.domain.model import StoredTransfer, TransferStatus
from remitnet.services.service_layer.participants import BankView

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def timestamp(ts: datetime | None) -> Timestamp | None:
    if ts is None:
        return None
    out = Timestamp()
    out.FromDatetime(ts)
    return out


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def set_stamp(stamp: Timestamp, at: datetime) -> None:
    """`stamp.FromDatetime(at)` in a fifth of the time (FromDatetime is
    Python calendar arithmetic): ListBanks stamps a thousand banks a page.
    A naive `at` is UTC, as FromDatetime takes it."""
    since = (at if at.tzinfo is not None else at.replace(tzinfo=UTC)) - _EPOCH
    stamp.seconds = since.days * 86_400 + since.seconds
    stamp.nanos = since.microseconds * 1_000


def money(currency: str, minor_units: int) -> money_pb2.Money:
    return money_pb2.Money(currency=currency, minor_units=minor_units)


def require_money(message: money_pb2.Money, has: bool, field: str) -> tuple[str, int]:
    if not has:
        raise InvalidArgument(Reason.MISSING_FIELD, f"{field} is required", field=field)
    return message.currency, message.minor_units


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument(Reason.INVALID_PAGE_SIZE, "page_size must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def account(row: Account) -> participants_pb2.Account:
    return participants_pb2.Account(
        bank_code=row.owner,
        currency=row.currency,
        balance=row.balance,
        net_debit_cap=row.net_debit_cap,
        unsettled_net=row.unsettled_net,
        headroom=row.headroom,
        reserved=row.reserved,
    )


def roles(values: Iterable[int]) -> ParticipantRole:
    """CreateBankRequest.roles as the domain's flags: empty is BANK; each
    role at most once, and UNSPECIFIED or an unknown value is refused
    (INVALID_ARGUMENT, field roles). The proto's values are the flags."""
    out = ParticipantRole(0)
    for value in values:
        if value not in _ROLE_VALUES or ParticipantRole(value) in out:
            what = "is given twice" if value in _ROLE_VALUES else "is not a participant role"
            raise InvalidArgument(Reason.INVALID_ARGUMENT, f"roles: {value} {what}", field="roles")
        out |= ParticipantRole(value)
    return out or ParticipantRole.BANK


_ROLE_VALUES: Final = frozenset(int(r) for r in ParticipantRole)


def role_values(flags: ParticipantRole) -> list[participants_pb2.ParticipantRole.ValueType]:
    return [
        participants_pb2.ParticipantRole.ValueType(int(r)) for r in ParticipantRole if r in flags
    ]


def bank(view: BankView) -> participants_pb2.Bank:
    message = participants_pb2.Bank()
    fill_bank(message, view)
    return message


# The proto's values of each set of role flags: a handful of sets in all.
_ROLE_LISTS: dict[ParticipantRole, list[participants_pb2.ParticipantRole.ValueType]] = {}


def fill_bank(message: participants_pb2.Bank, view: BankView) -> None:
    """Write a bank into a message in place: ListBanks answers a thousand a
    page, and setting fields on nested messages is several times cheaper
    than building submessages and copying them in."""
    b = view.bank
    message.code = b.code
    message.name = b.name
    message.home_region = b.home_region
    message.status = int(b.status)  # type: ignore[assignment]
    for a in view.accounts:
        message.accounts.add(
            bank_code=a.owner,
            currency=a.currency,
            balance=a.balance,
            net_debit_cap=a.net_debit_cap,
            unsettled_net=a.unsettled_net,
            headroom=a.headroom,
            reserved=a.reserved,
        )
    set_stamp(message.created_at, b.created_at)
    values = _ROLE_LISTS.get(b.roles)
    if values is None:
        values = _ROLE_LISTS[b.roles] = role_values(b.roles)
    message.roles.extend(values)
    message.requires_confirmation = b.requires_confirmation
    if b.bic:
        message.bic = b.bic


def transfer(
    t: StoredTransfer, status: TransferStatus, recall: Recall | None = None
) -> clearing_pb2.Transfer:
    """A transfer as GetTransfer and ListTransfers answer it: whole, with
    its recall if it has one."""
    message = clearing_pb2.Transfer()
    stamps: dict[datetime, Timestamp] = {}
    fill_transfer(message, t, status, stamps)
    if recall is not None:
        fill_recall(message.recall, recall, stamps)
    return message


#: The longest `reason` a batch answer carries: an ISO 20022 code. An
#: operator's cancel reason (free text, like remittance_info) is left out
#: there, so that an answer's size does not depend on it.
_CODE_CHARS: Final = 4


def shared_stamp(stamps: dict[datetime, Timestamp], at: datetime) -> Timestamp:
    """`at` as a Timestamp, built once per answer (`stamps`): the items of
    one answer share a few times."""
    stamp = stamps.get(at)
    if stamp is None:
        stamp = stamps[at] = Timestamp()
        set_stamp(stamp, at)
    return stamp


def fill_recall(
    message: clearing_pb2.Recall, r: Recall, stamps: dict[datetime, Timestamp] | None = None
) -> None:
    """Write a recall into a message in place."""
    stamps = {} if stamps is None else stamps
    message.recall_id = r.recall_id
    message.transfer_id = r.transfer_id
    message.debtor_bank = r.debtor
    message.creditor_bank = r.creditor
    message.reason = r.reason
    if r.info:
        message.additional_info = r.info
    message.state = int(r.state)  # type: ignore[assignment]
    message.requested_at.CopyFrom(shared_stamp(stamps, r.requested_at))
    message.deadline.CopyFrom(shared_stamp(stamps, r.deadline))
    if r.answered_at is not None:
        message.answered_at.CopyFrom(shared_stamp(stamps, r.answered_at))
    if r.answer_reason:
        message.answer_reason = r.answer_reason
    if r.return_id:
        message.return_transfer_id = r.return_id


def recall(r: Recall) -> clearing_pb2.Recall:
    message = clearing_pb2.Recall()
    fill_recall(message, r)
    return message


def fill_transfer(
    message: clearing_pb2.Transfer,
    t: StoredTransfer,
    status: TransferStatus,
    stamps: dict[datetime, Timestamp],
    *,
    remittance_info: bool = True,
) -> None:
    """Write a transfer into a message in place. The batch path answers
    thousands of transfers per call: setting fields on the nested message is
    several times cheaper than building submessages and copying them in, and
    the transfers of one batch share their acceptance time, so its Timestamp
    (costly to convert) comes from `stamps`. A batch answer leaves
    remittance_info out (`remittance_info=False`), so that its size does
    not depend on it, and an operator's cancel reason with it."""
    message.transfer_id = t.transfer_id
    message.debtor_bank = t.debtor
    message.creditor_bank = t.creditor
    amount = message.amount
    amount.currency = t.currency
    amount.minor_units = t.amount
    credited = message.creditor_amount
    credited.currency = t.credit_currency
    credited.minor_units = t.credit_amount
    if remittance_info and t.remittance_info:
        message.remittance_info = t.remittance_info
    if t.quote_id:
        message.quote_id = t.quote_id
    message.status = int(status)  # type: ignore[assignment]
    message.cycle_id = t.cycle_id
    if t.creditor_cycle_id:
        message.creditor_cycle_id = t.creditor_cycle_id
    message.settlement_mode = (
        clearing_pb2.SETTLEMENT_MODE_GROSS if t.gross else clearing_pb2.SETTLEMENT_MODE_NETTED
    )
    message.accepted_at.CopyFrom(shared_stamp(stamps, t.accepted_at))
    # The lifecycle's fields: most transfers have none of them.
    if t.deadline is not None:
        message.confirmation_deadline.CopyFrom(shared_stamp(stamps, t.deadline))
    if t.resolved_at is not None:
        message.resolved_at.CopyFrom(shared_stamp(stamps, t.resolved_at))
    reason = t.reason
    if reason and (remittance_info or len(reason) <= _CODE_CHARS):
        message.reason = reason
    if t.return_of is not None:
        message.return_of_transfer_id = t.return_of
    if t.returned_by is not None:
        message.returned_by_transfer_id = t.returned_by
    # A code of at most 4 characters: batch answers keep it.
    if t.purpose is not None:
        message.purpose = t.purpose
