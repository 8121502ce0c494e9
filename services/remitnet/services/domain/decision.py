"""The one decision on a payment's parties, accounts and headroom. Pure.

Three paths take it: each item of a netted batch (`netting.clear_batch`), a
gross transfer (`service_layer.gross`), and a quote (`service_layer.fx`, for
the caller alone: the creditor and the amount are not known yet, so it
takes steps 1 and 3 for the caller and the source currency). The steps, in
this order, the first refusal being the answer:

1. the parties: the debtor, then the creditor, known at the hub
   (UNKNOWN_PARTICIPANT), banks (NOT_A_BANK: an FX provider only cannot
   send or receive transfers) and active (PARTICIPANT_SUSPENDED);
2. a cross-currency transfer's quote (`Quote.refusal`, `Quote.mismatch`),
   checked by the batch and handed in as `quote_refusal`;
3. the accounts: the debtor's in its currency, the creditor's in the
   currency it is credited in (CURRENCY_NOT_SUPPORTED, naming the first
   missing); on the netted path an account whose currency has no open cycle
   counts as missing;
4. the headroom: the amount is within the debtor's headroom
   (INSUFFICIENT_LIQUIDITY, with the headroom and the amount);
5. (the netted path, a cross-currency transfer: `provider_refusal`) the
   quote's FX provider is active (FX_PROVIDER_SUSPENDED), holds liquidity
   accounts in both currencies (FX_PROVIDER_NO_ACCOUNT) and its headroom in
   the target currency, as used by the earlier items of the batch, covers
   the amount it delivers (FX_PROVIDER_INSUFFICIENT_LIQUIDITY).

The netted path then also refuses a transfer that would take a position or
a cycle total past int64 (`netting`, AMOUNT_OUT_OF_RANGE); the gross path
has no cycle totals and does not.

The texts are those the paths have always sent. One difference is kept:
the netted path names the missing account's owner bare ("HUB holds no ..."
can be the answer there), the gross and quote paths say "bank X holds no
..." (`named_bank`).
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Final

from remitnet.services.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Reason,
    RemitnetError,
)
from remitnet.services.domain.model import HUB, BankStatus, Instruction

if TYPE_CHECKING:
    from remitnet.services.domain.fx import Quote
    from remitnet.services.domain.netting import AccountState

# An enum member looked up on its class is a slow attribute access in
# Python 3.11, and step 1 runs twice per item of a batch.
_ACTIVE: Final = BankStatus.ACTIVE


def party_refusal(
    bank: str, status: BankStatus | None, not_banks: Container[str] = ()
) -> RemitnetError | None:
    """Step 1 for one bank: `status` None means the hub knows no such bank;
    `not_banks` holds the codes of participants without the BANK role."""
    if status is None:
        return NotFound(Reason.UNKNOWN_PARTICIPANT, f"no bank {bank} at the hub", bank=bank)
    if bank in not_banks:
        return InvalidArgument(
            Reason.NOT_A_BANK,
            f"{bank} is an FX provider, not a bank: it cannot send or receive transfers",
            bank=bank,
        )
    if status is not _ACTIVE:
        return FailedPrecondition(
            Reason.PARTICIPANT_SUSPENDED, f"bank {bank} is suspended", bank=bank
        )
    return None


def no_account(owner: str, currency: str, *, named_bank: bool = False) -> FailedPrecondition:
    """Step 3's refusal: `owner` holds no account in `currency`."""
    who = f"bank {owner}" if named_bank else owner
    return FailedPrecondition(
        Reason.CURRENCY_NOT_SUPPORTED,
        f"{who} holds no {currency} account at the hub",
        bank=owner,
        currency=currency,
    )


def headroom_refusal(item: Instruction, payer: AccountState) -> FailedPrecondition | None:
    """Step 4: the amount within the debtor's headroom in its currency."""
    room = payer.headroom
    if room >= item.amount:
        return None
    return FailedPrecondition(
        Reason.INSUFFICIENT_LIQUIDITY,
        f"amount {item.amount} exceeds the headroom of {item.debtor} in {item.currency}, {room}",
        bank=item.debtor,
        currency=item.currency,
        headroom=str(room),
        amount=str(item.amount),
    )


def quote_refusal(
    quote: Quote | None, item: Instruction, now: datetime, used_here: Container[str]
) -> RemitnetError | None:
    """Step 2: the quote `item` pays with (None: no such quote,
    QUOTE_NOT_FOUND) is usable by its debtor at `now` and not taken by an
    earlier item of the batch (`used_here`, by quote id), and it sells
    exactly the item's currency and amount."""
    if quote is None:
        return NotFound(Reason.QUOTE_NOT_FOUND, f"no quote {item.quote_id}")
    error = quote.refusal(item.debtor, now, used_here)
    if error is not None:
        return error
    return quote.mismatch(item.currency, item.amount)


def refusal(
    item: Instruction,
    banks: Mapping[str, BankStatus],
    payer: AccountState | None,
    payee: AccountState | None,
    credit_currency: str,
    quote_refusal: RemitnetError | None = None,
    hub_missing: str | None = None,
    named_bank: bool = False,
    not_banks: Container[str] = (),
) -> RemitnetError | None:
    """Why `item` is refused, or None (steps 1 to 4 of the module).

    `banks` holds the status of each bank the hub knows (at least the
    item's two parties when they exist). `payer` is the debtor's account in
    `item.currency` and `payee` the creditor's in `credit_currency` (the
    quote's target currency, else `item.currency`), None where missing.
    `quote_refusal` is a cross-currency item's quote refusal
    (`quote_refusal`); `hub_missing` the currency of a missing FX account of
    the hub's that the item needs (the credit currency's when both are; no
    path since FX providers needs one). `not_banks` holds the participants
    without the BANK role (step 1). Positional, as the batch path calls it
    once per item."""
    debtor, creditor = item.debtor, item.creditor
    status = banks.get(debtor)
    if status is not _ACTIVE or debtor in not_banks:
        return party_refusal(debtor, status, not_banks)
    status = banks.get(creditor)
    if status is not _ACTIVE or creditor in not_banks:
        return party_refusal(creditor, status, not_banks)
    if quote_refusal is not None:
        return quote_refusal
    if payer is None:
        return no_account(debtor, item.currency, named_bank=named_bank)
    if payee is None:
        return no_account(creditor, credit_currency, named_bank=named_bank)
    if hub_missing is not None:
        return no_account(HUB, hub_missing, named_bank=named_bank)
    if payer.headroom < item.amount:
        return headroom_refusal(item, payer)
    return None


def provider_refusal(
    provider: str,
    status: BankStatus | None,
    source: AccountState | None,
    target: AccountState | None,
    source_currency: str,
    target_currency: str,
    amount: int,
) -> RemitnetError | None:
    """Step 5: the FX provider of a quote can deliver it now. `status` is
    the provider's (None: no such participant, FX_PROVIDER_UNKNOWN); it must
    be active (FX_PROVIDER_SUSPENDED), hold its liquidity accounts `source`
    and `target` in the two currencies (None where missing, or where the
    currency has no open cycle: FX_PROVIDER_NO_ACCOUNT, the source
    currency's first), and `target`'s headroom, in the working state of the
    batch, must cover `amount`, the target amount it delivers
    (FX_PROVIDER_INSUFFICIENT_LIQUIDITY)."""
    if status is not _ACTIVE:
        if status is None:
            return NotFound(
                Reason.FX_PROVIDER_UNKNOWN, f"no FX provider {provider}", provider=provider
            )
        return FailedPrecondition(
            Reason.FX_PROVIDER_SUSPENDED,
            f"FX provider {provider} is suspended; ask for a new quote",
            provider=provider,
        )
    if source is None or target is None:
        currency = source_currency if source is None else target_currency
        return FailedPrecondition(
            Reason.FX_PROVIDER_NO_ACCOUNT,
            f"FX provider {provider} holds no {currency} account at the hub",
            provider=provider,
            currency=currency,
        )
    room = target.headroom
    if room < amount:
        return FailedPrecondition(
            Reason.FX_PROVIDER_INSUFFICIENT_LIQUIDITY,
            f"FX provider {provider} cannot deliver {amount} {target_currency}: its headroom "
            f"is {room}; ask for a new quote",
            provider=provider,
            currency=target_currency,
            headroom=str(room),
            amount=str(amount),
        )
    return None
