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
# ExternalPurpose1Code: the ISO list's codes are four upper-case letters;
# the XSD allows 1-4 characters, and a bank may use a newer list than ours.
PURPOSE_RE: Final = re.compile(r"[A-Z0-9]{1,4}")
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
    rows hold RESERVED, ACCEPTED, CANCELLED, REJECTED, EXPIRED, or SETTLED
    (gross settlement); CLOSED and SETTLED of a netted transfer follow its
    cycles (`effective_status`).

    RESERVED -> ACCEPTED (the creditor accepts), REJECTED (it rejects),
    EXPIRED (its deadline passes) or CANCELLED (the debtor or the operator
    cancels it); ACCEPTED -> CANCELLED (the operator alone, in an open
    cycle). A returned transfer keeps its status: its return is a transfer
    of its own (`return_of`)."""

    ACCEPTED = 1
    CLOSED = 2
    SETTLED = 3
    CANCELLED = 4
    # Awaiting the creditor's confirmation: the debtor's headroom (and a
    # cross-currency transfer's FX provider's) is held, no position taken.
    RESERVED = 5
    REJECTED = 6  # the creditor rejected it while reserved: final
    EXPIRED = 7  # nobody answered before its deadline: final


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
    # The debtor asks for the creditor's confirmation (the creditor's own
    # setting may require it anyway), within `timeout_ms` (0: the hub's
    # default; never past its maximum, checked by `make_instruction`).
    confirm: bool = False
    timeout_ms: int = 0
    # A return (`lifecycle.return_instruction`): the transfer it returns,
    # and the ISO 20022 return reason.
    return_of: str | None = None
    reason: str = ""
    # The ISO 20022 purpose (ExternalPurpose1Code, `Purp/Cd`), or None.
    # Last, so that positional construction sites need not name it.
    purpose: str | None = None

    def same_content(self, other: StoredTransfer) -> bool:
        return (
            self.debtor == other.debtor
            and self.creditor == other.creditor
            and self.currency == other.currency
            and self.amount == other.amount
            and self.remittance_info == other.remittance_info
            and self.quote_id == other.quote_id
            and self.gross == other.gross
            and self.return_of == other.return_of
            and (self.return_of is None or self.reason == other.reason)
            and self.purpose == other.purpose
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
    confirm: bool = False,
    timeout_ms: int = 0,
    max_timeout_ms: int | None = None,
    purpose: str = "",
) -> Instruction:
    """Stateless validation: everything that needs no database.
    `max_timeout_ms` is the hub's longest reservation (None: no check)."""
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
    if purpose and not PURPOSE_RE.fullmatch(purpose):
        raise InvalidArgument(
            Reason.INVALID_CHARACTERS,
            "purpose must be 1 to 4 upper-case letters or digits (an ExternalPurpose1Code)",
            field="purpose",
        )
    quote = canonical_uuid(quote_id, "quote_id") if quote_id else None
    if gross and quote is not None:
        raise InvalidArgument(
            Reason.GROSS_NOT_CROSS_CURRENCY, "gross settlement is for same-currency transfers"
        )
    if timeout_ms:
        confirm = True  # asking for a deadline is asking for confirmation
    if timeout_ms < 0 or (max_timeout_ms is not None and timeout_ms > max_timeout_ms):
        most = "" if max_timeout_ms is None else f" and at most {max_timeout_ms} ms"
        raise InvalidArgument(
            Reason.CONFIRMATION_TIMEOUT_OUT_OF_RANGE,
            f"confirmation_timeout must be positive{most}",
            field="confirmation_timeout",
            limit=str(max_timeout_ms or 0),
        )
    if gross and confirm:
        raise InvalidArgument(
            Reason.GROSS_NOT_CONFIRMABLE,
            "a gross transfer settles at once and cannot await confirmation",
        )
    return Instruction(
        tid,
        debtor,
        creditor,
        currency,
        amount,
        remittance_info,
        quote,
        gross,
        confirm,
        timeout_ms,
        None,
        "",
        purpose or None,
    )


_new_tuple = tuple.__new__
# Enum members as module constants: a member looked up on its class is a
# slow attribute access in Python 3.11, and the batch path does it per item.
_ACCEPTED: Final = TransferStatus.ACCEPTED
_SETTLED: Final = TransferStatus.SETTLED
_RESERVED: Final = TransferStatus.RESERVED


class StoredTransfer(NamedTuple):
    transfer_id: str
    debtor: str
    creditor: str
    currency: str
    amount: int
    remittance_info: str
    status: TransferStatus  # as stored (see TransferStatus)
    cycle_id: str  # "" for gross settlement, and while reserved (no cycle yet)
    accepted_at: datetime  # when the hub took it (reserved or netted)
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
    # Payee confirmation (migration 0009): the deadline of a transfer that
    # was reserved (None: netted at once), and when it left RESERVED.
    deadline: datetime | None = None
    resolved_at: datetime | None = None
    # The ISO 20022 code of a rejection (the creditor's), an expiry (AB05)
    # or a return (the returning bank's); an operator's cancel reason.
    reason: str | None = None
    return_of: str | None = None  # a return: the transfer it returns
    returned_by: str | None = None  # a returned transfer: its return
    # The ISO 20022 purpose code (migration 0011); last, as in Instruction.
    purpose: str | None = None

    @classmethod
    def from_instruction(
        cls,
        item: Instruction,
        *,
        accepted_at: datetime,
        cycle_id: str = "",
        quote: Quote | None = None,
        credit_cycle_id: str | None = None,
        deadline: datetime | None = None,
    ) -> StoredTransfer:
        """The one way the hub makes a transfer from an instruction it took.

        A gross instruction (`item.gross`) is settled at once: SETTLED, no
        cycle. One with a `deadline` is RESERVED for the creditor's
        confirmation, in no cycle yet. Any other is ACCEPTED into the open
        cycle `cycle_id` of its currency; a cross-currency one also carries
        its `quote` and (unless reserved) the creditor's leg in
        `credit_cycle_id`, the open cycle of the quote's target currency.
        (Rows read back from the database are mapped positionally, field
        for field, by the adapter.)"""
        # Built as a plain tuple, the fields in order: this is the batch
        # path's one allocation per accepted transfer, and tuple.__new__ is a
        # third cheaper than the NamedTuple constructor's argument handling.
        tid, debtor, creditor, currency, amount, info, _, gross = item[:8]
        return_of = item.return_of
        reason = item.reason if return_of is not None else None
        if gross:
            if cycle_id or quote is not None or deadline is not None:
                raise ValueError("a gross transfer has no cycle, no quote and no deadline")
            status = _SETTLED
        elif deadline is not None:
            if cycle_id or credit_cycle_id is not None:
                raise ValueError("a reserved transfer is in no cycle")
            status = _RESERVED
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
                    deadline,
                    None,
                    reason,
                    return_of,
                    None,
                    item.purpose,
                ),
            )
        if credit_cycle_id is None and deadline is None:
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
                deadline,
                None,
                reason,
                return_of,
                None,
                item.purpose,
            ),
        )

    @property
    def gross(self) -> bool:
        return self.cycle_id == "" and self.status is _SETTLED

    @property
    def netted(self) -> bool:
        """In a cycle: accepted at once, or after the creditor's confirmation."""
        return self.cycle_id != ""

    @property
    def was_reserved(self) -> bool:
        return self.deadline is not None

    @property
    def resolution(self) -> TransferStatus | None:
        """How a reserved transfer left RESERVED, for good (its later
        operator cancel does not change it): ACCEPTED (it is in a cycle),
        or REJECTED, EXPIRED or CANCELLED. None while reserved, and for a
        transfer netted at once. The feed's RESOLVED events stand for the
        transfers of one resolution and `resolved_at`."""
        if self.deadline is None or self.resolved_at is None:
            return None
        return TransferStatus.ACCEPTED if self.cycle_id else self.status

    def visible_to(self, caller: str | None) -> bool:
        """A transfer is seen by its two parties and the operator (None)."""
        return caller is None or caller in (self.debtor, self.creditor)

    def reservations(self) -> tuple[tuple[str, str, int], ...]:
        """What a RESERVED transfer holds, as (participant, currency,
        amount): the debtor's amount in its currency and, across
        currencies, its FX provider's delivery in the target currency
        (what `Leg`s would take from their headroom once netted)."""
        held = ((self.debtor, self.currency, self.amount),)
        if self.fx_provider is not None and self.creditor_currency is not None:
            return (*held, (self.fx_provider, self.creditor_currency, self.credit_amount))
        return held

    def check_cancellable(self, caller: str | None) -> bool:
        """Whether `caller` (None: the operator) may cancel it, in this
        order: only the debtor or the operator may (NOT_TRANSFER_DEBTOR); a
        cancelled transfer is cancelled already (False: a replay, nothing to
        do); a gross one is final once settled, a rejected or expired one
        final too (TRANSFER_NOT_CANCELLABLE); the debtor may cancel only
        while the creditor has not accepted it (TRANSFER_NOT_CANCELLABLE:
        ask for a recall instead). True: a reserved transfer is released; a
        netted one (the operator's) is taken back if the cycles of its legs
        are still open (`Cycle.check_cancellable`) and its creditor's limit
        holds after (`netting.take_back`)."""
        if caller is not None and self.debtor != caller:
            raise FailedPrecondition(
                Reason.NOT_TRANSFER_DEBTOR, "only the debtor bank can cancel a transfer"
            )
        status = self.status
        if status is TransferStatus.CANCELLED:
            return False
        if self.gross:
            raise FailedPrecondition(
                Reason.TRANSFER_NOT_CANCELLABLE, "a gross transfer is final once settled"
            )
        if self.return_of is not None or self.returned_by is not None:
            # Cancelling either would undo one payment of a pair and leave the
            # other: a returned transfer's money is back already.
            raise FailedPrecondition(
                Reason.TRANSFER_NOT_CANCELLABLE,
                "a return, and a transfer that was returned, are final",
            )
        if status is TransferStatus.REJECTED or status is TransferStatus.EXPIRED:
            raise FailedPrecondition(
                Reason.TRANSFER_NOT_CANCELLABLE,
                f"the transfer is {status.name.lower()}: nothing is held any more",
            )
        if caller is not None and status is not TransferStatus.RESERVED:
            raise FailedPrecondition(
                Reason.TRANSFER_NOT_CANCELLABLE,
                "the creditor has accepted this transfer: ask it for a recall "
                "(RecallTransfer); only the operator can still cancel it",
            )
        return True

    def resolved(
        self,
        status: TransferStatus,
        now: datetime,
        reason: str | None = None,
        *,
        cycle_id: str = "",
        credit_cycle_id: str | None = None,
    ) -> StoredTransfer:
        """This transfer moved out of RESERVED (or, CANCELLED by the
        operator, out of ACCEPTED), at `now`: ACCEPTED into `cycle_id` (and
        a cross-currency one's creditor leg into `credit_cycle_id`), or
        REJECTED / EXPIRED / CANCELLED with `reason`."""
        if status is TransferStatus.ACCEPTED:
            return self._replace(
                status=status,
                cycle_id=cycle_id,
                creditor_cycle_id=credit_cycle_id,
                resolved_at=now,
            )
        return self._replace(status=status, resolved_at=now, reason=reason)

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
        if not self.cycle_id:
            return ()  # gross, or never netted (reserved, rejected, expired)
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
