"""Gross settlement: a transfer settled on the ledger at once, in its own
serializable transaction moving both banks' balances. For urgent high-value
payments, and the baseline the netting engine is measured against: every
transfer touches both banks' rows, so a hot bank serialises all of them."""

from __future__ import annotations

from datetime import UTC, datetime

from remitnet.services.domain.bank import ParticipantRole
from remitnet.services.domain.decision import party_refusal, refusal
from remitnet.services.domain.events import transfer_events
from remitnet.services.domain.ledger import gross_posting
from remitnet.services.domain.model import (
    Instruction,
    StoredTransfer,
    TransferStatus,
    account_id,
)
from remitnet.services.domain.netting import Accepted, Outcome, Rejected, duplicate
from remitnet.services.service_layer.unit_of_work import Transactions, UnitOfWork


def commit_gross(db: Transactions, item: Instruction) -> Outcome:
    def unit(uow: UnitOfWork) -> Outcome:
        prior = uow.transfers.get(item.transfer_id)
        if prior is not None:
            return (
                Accepted(prior, True) if item.same_content(prior) else duplicate(prior.transfer_id)
            )
        statuses, roles, regions = uow.banks.statuses_roles_and_regions(
            [item.debtor, item.creditor]
        )
        # An FX provider only is no party to a transfer (NOT_A_BANK).
        not_banks = {code for code, r in roles.items() if not r & ParticipantRole.BANK}
        # The parties first, so that a refused party reads no account; the
        # decision below takes them again (no I/O), then accounts, headroom.
        for bank in (item.debtor, item.creditor):
            error = party_refusal(bank, statuses.get(bank), not_banks)
            if error is not None:
                return Rejected(error)
        ids = [account_id(item.debtor, item.currency), account_id(item.creditor, item.currency)]
        states = uow.accounts.states(ids)
        payer, payee = states.get(ids[0]), states.get(ids[1])
        error = refusal(
            item, statuses, payer, payee, item.currency, named_bank=True, not_banks=not_banks
        )
        if error is not None:
            return Rejected(error)
        now = uow.events.publish(transfer_events(item, TransferStatus.SETTLED), datetime.now(UTC))
        posting = gross_posting(
            item.transfer_id, item.debtor, item.creditor, item.currency, item.amount
        )
        uow.ledger.post(posting, owner=item.debtor, amount=item.amount, now=now)
        stored = StoredTransfer.from_instruction(item, accepted_at=now)
        uow.transfers.add([stored], regions)
        return Accepted(stored, False)

    return db.write("gross_transfer", unit)
