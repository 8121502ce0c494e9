"""Value objects of clearing: banks, transfers, cycles and their states."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import TYPE_CHECKING, Final, NamedTuple

from remitnet.services.domain.errors import FailedPrecondition, InvalidArgument, Reason
from remitnet.services.domain.money import check_currency, check_positive_amount

if TYPE_CHECKING:
    from remitnet.services.domain.fx import Quote

HUB: Final = "HUB"  # the hub's own ledger owner; no bank may take this code
# The hub's former dealer role as an FX provider participant (migration
# 0008): funded by the operator like any provider, the provider of operator
# rate updates that name none.
DEFAULT_PROVIDER: Final = "FXHUB"
MAX_REMITTANCE_INFO: Final = 140  # ISO 20022 unstructured remittance information
BANK_CODE_RE: Final = re.compile(r"[A-Z0-9]{3,16}")
REGION_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
CANONICAL_UUID_RE: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
NIL_UUID: Final = "00000000-0000-0000-0000-000000000000"
# C0 and C1 control characters (Unicode category Cc). PostgreSQL text cannot
# hold NUL at all, and the others have no place in a name or in ISO 20022
# remittance information; refusing them here keeps one bank's bad field from
# reaching, and failing, a batch shared with other banks.
CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class BankStatus(IntEnum):
    ACTIVE = 1
    SUSPENDED = 2


class TransferStatus(IntEnum):
    """Values equal the proto enum's, and only ever move forward. Stored
    rows hold ACCEPTED, CANCELLED, or SETTLED (gross settlement)."""

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
    # The hub as counterparty of both legs of cross-currency transfers, before
    # FX providers (migration 0008); since then providers' liquidity accounts.
    FX = "FX"
    FX_REVENUE = "FX_REVENUE"  # the hub's spread income, realised at settlement


def account_id(owner: str, currency: str, kind: str = AccountKind.LIQUIDITY) -> str:
    return f"{owner}/{currency}/{kind}"


def position_account_id(participant: str, currency: str) -> str:
    """The account a netting participant's position settles to: a bank's or
    an FX provider's liquidity account, or the hub's FX account for the
    hub's own legs (transfers from before FX providers)."""
    return account_id(
        participant, currency, AccountKind.FX if participant == HUB else AccountKind.LIQUIDITY
    )


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


def check_text(value: str, *, field: str, limit: int, too_long: str) -> str:
    """Free text a person reads: at most `limit` characters, no controls."""
    if len(value) > limit:
        raise InvalidArgument(too_long, f"{field} is limited to {limit} characters", field=field)
    if CONTROL_RE.search(value):
        raise InvalidArgument(
            Reason.INVALID_CHARACTERS,
            f"{field} must not contain control characters",
            field=field,
        )
    return value


def canonical_transfer_id(raw: str) -> str:
    """The UETR in canonical lower-case 8-4-4-4-12 form."""
    return canonical_uuid(raw, "transfer_id")


def canonical_uuid(raw: str, field: str) -> str:
    if CANONICAL_UUID_RE.fullmatch(raw) and raw != NIL_UUID:
        # Already canonical, as ids from any UUID library are: a regex
        # match is several times cheaper than a parse and a re-format.
        return raw
    reason = Reason.INVALID_TRANSFER_ID if field == "transfer_id" else Reason.INVALID_ARGUMENT
    value = None
    if len(raw) == 36:
        try:
            value = uuid.UUID(raw)
        except ValueError:
            value = None
    if value is None:
        raise InvalidArgument(reason, f"{field} must be a UUID in 8-4-4-4-12 form", field=field)
    if value.int == 0:
        raise InvalidArgument(reason, f"{field} must not be the nil UUID", field=field)
    return str(value)


class Instruction(NamedTuple):
    """A validated credit transfer instruction; the debtor is the caller.

    Instructions and stored transfers are immutable value objects made by
    the thousand per batch: a NamedTuple is built several times faster than
    a frozen dataclass, which sets each field through object.__setattr__."""

    transfer_id: str
    debtor: str
    creditor: str
    currency: str
    amount: int
    remittance_info: str = ""
    quote_id: str | None = None
    gross: bool = False

    def same_content(self, other: StoredTransfer) -> bool:
        return (
            self.debtor == other.debtor
            and self.creditor == other.creditor
            and self.currency == other.currency
            and self.amount == other.amount
            and self.remittance_info == other.remittance_info
            and self.quote_id == other.quote_id
            and self.gross == other.gross
        )


def make_instruction(
    *,
    transfer_id: str,
    debtor: str,
    creditor: str,
    currency: str,
    amount: int,
    remittance_info: str = "",
    quote_id: str = "",
    gross: bool = False,
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
    check_text(
        remittance_info,
        field="remittance_info",
        limit=MAX_REMITTANCE_INFO,
        too_long=Reason.REMITTANCE_INFO_TOO_LONG,
    )
    quote = canonical_uuid(quote_id, "quote_id") if quote_id else None
    if gross and quote is not None:
        raise InvalidArgument(
            Reason.GROSS_NOT_CROSS_CURRENCY, "gross settlement is for same-currency transfers"
        )
    return Instruction(tid, debtor, creditor, currency, amount, remittance_info, quote, gross)


_new_tuple = tuple.__new__
# Enum members as module constants: a member looked up on its class is a
# slow attribute access in Python 3.11, and the batch path does it per item.
_ACCEPTED: Final = TransferStatus.ACCEPTED
_SETTLED: Final = TransferStatus.SETTLED


class StoredTransfer(NamedTuple):
    transfer_id: str
    debtor: str
    creditor: str
    currency: str
    amount: int
    remittance_info: str
    status: TransferStatus  # as stored: ACCEPTED, CANCELLED or SETTLED (gross)
    cycle_id: str  # "" for gross settlement
    accepted_at: datetime
    # Cross-currency transfers: the creditor's leg in its own currency.
    quote_id: str | None = None
    creditor_currency: str | None = None
    creditor_amount: int | None = None
    creditor_cycle_id: str | None = None
    fee: int = 0  # the hub's spread, in the creditor's currency (hub legs only)
    # The FX provider that delivers the creditor's leg (the quote's), or None:
    # a same-currency transfer, or a cross-currency one stored before FX
    # providers (migration 0008), whose legs go through the hub.
    fx_provider: str | None = None

    @classmethod
    def from_instruction(
        cls,
        item: Instruction,
        *,
        accepted_at: datetime,
        cycle_id: str = "",
        quote: Quote | None = None,
        credit_cycle_id: str | None = None,
    ) -> StoredTransfer:
        """The one way the hub makes a transfer from an instruction it took.

        A gross instruction (`item.gross`) is settled at once: SETTLED, no
        cycle. Any other is ACCEPTED into the open cycle `cycle_id` of its
        currency; a cross-currency one also carries its `quote` and the
        creditor's leg in `credit_cycle_id`, the open cycle of the quote's
        target currency. (Rows read back from the database are mapped
        positionally, field for field, by the adapter.)"""
        # Built as a plain tuple, the fields in order: this is the batch
        # path's one allocation per accepted transfer, and tuple.__new__ is a
        # third cheaper than the NamedTuple constructor's argument handling.
        tid, debtor, creditor, currency, amount, info, _, gross = item
        if gross:
            if cycle_id or quote is not None:
                raise ValueError("a gross transfer has no cycle and no quote")
            status = _SETTLED
        elif cycle_id:
            status = _ACCEPTED
        else:
            raise ValueError("a netted transfer is accepted into an open cycle")
        if quote is None:
            return _new_tuple(
                cls,
                (
                    tid,
                    debtor,
                    creditor,
                    currency,
                    amount,
                    info,
                    status,
                    cycle_id,
                    accepted_at,
                    None,
                    None,
                    None,
                    None,
                    0,
                    None,
                ),
            )
        if credit_cycle_id is None:
            raise ValueError("a cross-currency transfer has a leg in the creditor's cycle")
        terms = quote.terms
        return _new_tuple(
            cls,
            (
                tid,
                debtor,
                creditor,
                currency,
                amount,
                info,
                status,
                cycle_id,
                accepted_at,
                quote.quote_id,
                terms.target_currency,
                terms.target_amount,
                credit_cycle_id,
                terms.fee if quote.provider is None else 0,
                quote.provider,
            ),
        )

    @property
    def gross(self) -> bool:
        return self.cycle_id == ""

    def visible_to(self, caller: str | None) -> bool:
        """A transfer is seen by its two parties and the operator (None)."""
        return caller is None or caller in (self.debtor, self.creditor)

    def check_cancellable(self, caller: str) -> bool:
        """Whether `caller` may cancel it, in this order: only the debtor
        may (NOT_TRANSFER_DEBTOR); a cancelled transfer is cancelled already
        (False: a replay, nothing to do); a gross one is final once settled
        (TRANSFER_NOT_CANCELLABLE). True: it may be taken back if the
        cycles of its legs are still open (`Cycle.check_cancellable`) and
        its creditor's limit holds after (`netting.take_back`)."""
        if self.debtor != caller:
            raise FailedPrecondition(
                Reason.NOT_TRANSFER_DEBTOR, "only the debtor bank can cancel a transfer"
            )
        if self.status is TransferStatus.CANCELLED:
            return False
        if self.gross:
            raise FailedPrecondition(
                Reason.TRANSFER_NOT_CANCELLABLE, "a gross transfer is final once settled"
            )
        return True

    @property
    def credit_currency(self) -> str:
        return self.creditor_currency or self.currency

    @property
    def credit_amount(self) -> int:
        return self.amount if self.creditor_amount is None else self.creditor_amount

    def legs(self) -> tuple[Leg, ...]:
        """Netting legs: one for a same-currency transfer, none for gross
        settlement, two for a cross-currency one: debtor to its FX provider
        in the source currency and provider to creditor in the target
        currency, with no fee (the provider's spread is what it keeps by
        delivering less; nothing is posted for it), or, stored before FX
        providers (`fx_provider` None), through the hub with the hub's fee."""
        if self.gross:
            return ()
        if self.creditor_cycle_id is None or self.creditor_currency is None:
            return (Leg(self.cycle_id, self.currency, self.debtor, self.creditor, self.amount),)
        provider = self.fx_provider
        if provider is not None:
            return (
                Leg(self.cycle_id, self.currency, self.debtor, provider, self.amount),
                Leg(
                    self.creditor_cycle_id,
                    self.creditor_currency,
                    provider,
                    self.creditor,
                    self.credit_amount,
                ),
            )
        return (
            Leg(self.cycle_id, self.currency, self.debtor, HUB, self.amount),
            Leg(
                self.creditor_cycle_id,
                self.creditor_currency,
                HUB,
                self.creditor,
                self.credit_amount,
                self.fee,
            ),
        )


@dataclass(frozen=True, slots=True)
class Leg:
    """One payment of a transfer within one currency's cycle."""

    cycle_id: str
    currency: str
    payer: str
    payee: str
    amount: int
    fee: int = 0  # the hub's spread earned on this leg (hub-paid legs only)


def effective_status(stored: TransferStatus, *cycle_states: CycleState) -> TransferStatus:
    """A transfer's status follows its cycle(s), so that closing or settling a
    cycle of a million transfers writes one cycle row, not a million rows. A
    cross-currency transfer is as far as the later of its two legs."""
    if stored is not TransferStatus.ACCEPTED:
        return stored
    if not cycle_states:
        return stored
    cycle_state = min(cycle_states)
    if cycle_state is CycleState.SETTLED:
        return TransferStatus.SETTLED
    if cycle_state is CycleState.CLOSED:
        return TransferStatus.CLOSED
    return TransferStatus.ACCEPTED


def cycle_id_for(currency: str, seq: int) -> str:
    return f"{currency}-{seq:06d}"
