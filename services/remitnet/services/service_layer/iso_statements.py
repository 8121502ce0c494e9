"""camt.053 statements and camt.054 notifications of a bank's account: the
ledger the statement use case reads (settlement.statement), per currency,
as ISO 20022 reports. Reads only, bounded-stale like every statement (one
snapshot, so balances and entries agree). The documents' bytes come from
the `render` the adapter passes in.

A statement covers one of: a settled cycle (its net settlement entry on the
bank's account, with the balances before and after it), a period of UTC
booking days, or, with neither, the account's whole history; long ones are
paged by entry sequence. Notifications are the entries booked after a
sequence number the bank keeps: pulled again with the one returned, they
never repeat or skip an entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from remitnet.services.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Reason,
)
from remitnet.services.domain.iso_camt import AccountReport
from remitnet.services.domain.ledger import LedgerEntry
from remitnet.services.domain.model import account_id
from remitnet.services.domain.money import check_currency
from remitnet.services.service_layer.iso20022 import new_message_id
from remitnet.services.service_layer.unit_of_work import Transactions, UnitOfWork

# Entries per camt.053 page and per camt.054 pull (each about 0.9 KB of XML:
# a full page stays far below the 4 MiB gRPC message limit).
MAX_ENTRIES: Final = 1_000

RenderReport = Callable[[AccountReport], bytes]


@dataclass(frozen=True, slots=True)
class ReportAnswer:
    document: bytes
    # Where the next page (camt.053) or pull (camt.054) starts; 0 for a
    # statement with no further page.
    next_after_sequence: int


def _day(text: str, field: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            Reason.INVALID_TIMESTAMP,
            f"{field} is not a date (YYYY-MM-DD): {text[:20]!r}",
            field=field,
        ) from None


def booking_period(from_date: str, to_date: str) -> tuple[datetime, datetime] | None:
    """[start of from_date, end of to_date) in UTC, or None for neither;
    either alone is open on its other side."""
    if not from_date and not to_date:
        return None
    start = (
        datetime.combine(_day(from_date, "from_date"), time(), UTC)
        if from_date
        else datetime(1970, 1, 1, tzinfo=UTC)
    )
    end = (
        datetime.combine(_day(to_date, "to_date") + timedelta(days=1), time(), UTC)
        if to_date
        else max(datetime.now(UTC), start)
    )
    if to_date and end <= start:
        raise InvalidArgument(
            Reason.INVALID_ARGUMENT, "to_date is before from_date", field="to_date"
        )
    return start, end


def _page_size(page_size: int) -> int:
    if page_size < 0:
        raise InvalidArgument(Reason.INVALID_PAGE_SIZE, "page_size must not be negative")
    return min(page_size or MAX_ENTRIES, MAX_ENTRIES)


def _own_bic(uow: UnitOfWork, caller: str) -> str:
    bank = uow.banks.get(caller)
    if bank is None or not bank.bic:
        raise FailedPrecondition(
            Reason.BANK_HAS_NO_BIC,
            f"bank {caller} has no BIC: onboard it with one to use ISO 20022",
            bank=caller,
        )
    return bank.bic


def _account(uow: UnitOfWork, caller: str, currency: str) -> tuple[str, int]:
    aid = account_id(caller, currency)
    account = uow.accounts.get(aid)
    if account is None:
        raise NotFound(
            Reason.ACCOUNT_NOT_FOUND, f"no {currency} account of {caller}", bank=caller[:16]
        )
    return aid, account.entry_count


def _cycle_entries(
    uow: UnitOfWork, aid: str, currency: str, cycle_id: str
) -> tuple[list[LedgerEntry], int]:
    """The bank's entry of a settled cycle (none when its net was zero or it
    had no part) and its balance before."""
    cycle = uow.cycles.get(cycle_id)
    if cycle is None or cycle.currency != currency:
        raise NotFound(Reason.CYCLE_NOT_FOUND, f"no {currency} cycle {cycle_id[:40]!r}")
    if not cycle.is_settled or cycle.settled_at is None:
        raise FailedPrecondition(
            Reason.CYCLE_NOT_CLOSED,
            f"cycle {cycle.id} is not settled yet: its statement exists once it settles",
        )
    entries = [e for e in uow.ledger.posting_entries(f"settle:{cycle.id}") if e.account_id == aid]
    if entries:
        return entries, entries[0].balance_after - entries[0].amount
    # Entries of one settlement carry its settled_at: the balance then.
    before = uow.ledger.last_seq_before(aid, cycle.settled_at + timedelta(microseconds=1))
    return [], uow.ledger.balance_after(aid, before)


def statement_camt053(
    db: Transactions,
    caller: str,
    currency: str,
    render: RenderReport,
    *,
    cycle_id: str = "",
    from_date: str = "",
    to_date: str = "",
    after_sequence: int = 0,
    page_size: int = 0,
) -> ReportAnswer:
    """The camt.053 of `caller`'s `currency` account: of a settled cycle,
    else of the booking days [from_date, to_date], else of all entries;
    a page of at most `page_size` entries after `after_sequence`."""
    check_currency(currency)
    limit = _page_size(page_size)
    if cycle_id and (from_date or to_date):
        raise InvalidArgument(
            Reason.INVALID_ARGUMENT, "give a cycle or a period, not both", field="cycle_id"
        )
    period = booking_period(from_date, to_date)
    after_sequence = max(0, after_sequence)

    def unit(uow: UnitOfWork) -> ReportAnswer:
        bic = _own_bic(uow, caller)
        aid, count = _account(uow, caller, currency)
        now = datetime.now(UTC)
        if cycle_id:
            entries, opening = _cycle_entries(uow, aid, currency, cycle_id)
            report = AccountReport(
                new_message_id(), now, new_message_id(), caller, bic, currency, aid,
                opening, entries[-1].balance_after if entries else opening, tuple(entries),
                cycle_id=cycle_id,
            )  # fmt: skip
            return ReportAnswer(render(report), 0)
        first, last = 0, count
        if period is not None:
            first = uow.ledger.last_seq_before(aid, period[0]) if from_date else 0
            last = uow.ledger.last_seq_before(aid, period[1]) if to_date else count
        start = min(max(first, after_sequence), last)
        entries = [e for e in uow.ledger.entries(aid, start, limit) if e.seq <= last]
        opening = uow.ledger.balance_after(aid, start)
        closing = entries[-1].balance_after if entries else opening
        more = bool(entries) and entries[-1].seq < last
        report = AccountReport(
            new_message_id(), now, new_message_id(), caller, bic, currency, aid,
            opening, closing, tuple(entries), period=period,
            page=1 + (start - first + limit - 1) // limit, last_page=not more,
        )  # fmt: skip
        return ReportAnswer(render(report), entries[-1].seq if more else 0)

    return db.read(unit, stale_ok=True)


def notifications_camt054(
    db: Transactions,
    caller: str,
    currency: str,
    render: RenderReport,
    *,
    after_sequence: int = 0,
    page_size: int = 0,
) -> ReportAnswer:
    """The camt.054 of the credits and debits booked on `caller`'s
    `currency` account after entry `after_sequence` (at most `page_size`);
    next_after_sequence is where the next pull starts (the given one when
    nothing new was booked)."""
    check_currency(currency)
    limit = _page_size(page_size)
    after_sequence = max(0, after_sequence)

    def unit(uow: UnitOfWork) -> ReportAnswer:
        bic = _own_bic(uow, caller)
        aid, count = _account(uow, caller, currency)
        entries = uow.ledger.entries(aid, after_sequence, limit)
        more = bool(entries) and entries[-1].seq < count
        opening = closing = 0  # a notification carries no balances
        report = AccountReport(
            new_message_id(), datetime.now(UTC), new_message_id(), caller, bic, currency, aid,
            opening, closing, tuple(entries), last_page=not more,
        )  # fmt: skip
        return ReportAnswer(render(report), entries[-1].seq if entries else after_sequence)

    return db.read(unit, stale_ok=True)
