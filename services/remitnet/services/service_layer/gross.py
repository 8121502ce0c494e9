"""Gross settlement: a transfer settled on the ledger at once, in its own
serializable transaction moving both banks' balances. For urgent high-value
payments, and the baseline the netting engine is measured against: every
transfer touches both banks' rows, so a hot bank serialises all of them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection

from remitnet.services.adapters.db import feed
from remitnet.services.adapters.db import repository as repo
from remitnet.services.adapters.db.database import Database
from remitnet.services.domain.errors import FailedPrecondition, NotFound, Reason
from remitnet.services.domain.ledger import gross_posting
from remitnet.services.domain.model import (
    BankStatus,
    Instruction,
    StoredTransfer,
    TransferStatus,
    account_id,
)
from remitnet.services.domain.netting import Accepted, Outcome, Rejected, duplicate, headroom


def commit_gross(db: Database, item: Instruction) -> Outcome:
    def unit(conn: Connection) -> Outcome:
        prior = repo.get_transfer(conn, item.transfer_id)
        if prior is not None:
            return (
                Accepted(prior, True) if item.same_content(prior) else duplicate(prior.transfer_id)
            )
        statuses, regions = repo.bank_statuses_and_regions(conn, [item.debtor, item.creditor])
        for bank in (item.debtor, item.creditor):
            if bank not in statuses:
                return Rejected(
                    NotFound(Reason.UNKNOWN_PARTICIPANT, f"no bank {bank} at the hub", bank=bank)
                )
            if statuses[bank] is not BankStatus.ACTIVE:
                return Rejected(
                    FailedPrecondition(
                        Reason.PARTICIPANT_SUSPENDED, f"bank {bank} is suspended", bank=bank
                    )
                )
        ids = [account_id(item.debtor, item.currency), account_id(item.creditor, item.currency)]
        states = repo.load_account_states(conn, ids)
        for aid, bank in zip(ids, (item.debtor, item.creditor), strict=True):
            if aid not in states:
                return Rejected(
                    FailedPrecondition(
                        Reason.CURRENCY_NOT_SUPPORTED,
                        f"bank {bank} holds no {item.currency} account at the hub",
                        bank=bank,
                        currency=item.currency,
                    )
                )
        debtor = states[ids[0]]
        room = headroom(debtor.balance, debtor.net_debit_cap, debtor.unsettled_net)
        if room < item.amount:
            return Rejected(
                FailedPrecondition(
                    Reason.INSUFFICIENT_LIQUIDITY,
                    f"amount {item.amount} exceeds the headroom of {item.debtor} in "
                    f"{item.currency}, {room}",
                    bank=item.debtor,
                    currency=item.currency,
                    headroom=str(room),
                    amount=str(item.amount),
                )
            )
        now = feed.publish(
            conn, feed.transfer_events(item, TransferStatus.SETTLED), datetime.now(UTC)
        )
        posting = gross_posting(
            item.transfer_id, item.debtor, item.creditor, item.currency, item.amount
        )
        repo.post(conn, posting, owner=item.debtor, amount=item.amount, now=now)
        stored = StoredTransfer(
            item.transfer_id,
            item.debtor,
            item.creditor,
            item.currency,
            item.amount,
            item.remittance_info,
            TransferStatus.SETTLED,
            "",
            now,
        )
        repo.insert_transfers(conn, [stored], regions)
        return Accepted(stored, False)

    return db.write("gross_transfer", unit)
