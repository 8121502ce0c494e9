"""Operator use cases: onboarding participants (banks and FX providers),
accounts, liquidity, caps, status. A provider's accounts are liquidity
accounts like a bank's: every use case here works for both, keyed by code."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Final, Generic, TypeVar

from remitnet.services.domain.account import Account
from remitnet.services.domain.audit_trail import HUB_PRINCIPAL, Action
from remitnet.services.domain.bank import Bank, ParticipantRole
from remitnet.services.domain.bic import check_bic, primary
from remitnet.services.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Reason,
)
from remitnet.services.domain.ledger import (
    EntryKind,
    Posting,
    PostingAt,
    deposit_posting,
    withdrawal_posting,
)
from remitnet.services.domain.model import (
    DEFAULT_PROVIDER,
    HUB,
    AccountKind,
    BankStatus,
    account_id,
    canonical_transfer_id,
    check_bank_code,
    check_region,
    check_text,
    cycle_id_for,
)
from remitnet.services.domain.money import INT64_MAX, check_currency, check_positive_amount
from remitnet.services.service_layer.unit_of_work import Transactions, UnitOfWork

T = TypeVar("T")
# One operator action: a unit of work built (and its request checked) by one
# of the *_unit functions below, run by db.write alone or by run_together.
OperatorUnit = Callable[[UnitOfWork], T]


@dataclass(frozen=True, slots=True)
class _Creating(Generic[T]):
    """An operator unit that creates bank `code`: run_together asks once,
    for all the banks a group creates, which exist already."""

    code: str
    run: OperatorUnit[T]

    def __call__(self, uow: UnitOfWork) -> T:
        return self.run(uow)


@dataclass(frozen=True, slots=True)
class _Moving(Generic[T]):
    """A deposit or a withdrawal: in a group, its posting waits for the
    group's others (_Group.flush)."""

    run: OperatorUnit[T]

    def __call__(self, uow: UnitOfWork) -> T:
        return self.run(uow)


@dataclass(frozen=True, slots=True)
class BankView:
    bank: Bank
    accounts: list[Account]


def _now() -> datetime:
    return datetime.now(UTC)


def _view(uow: UnitOfWork, code: str) -> BankView:
    bank = uow.banks.get(code)
    if bank is None:
        raise NotFound(Reason.UNKNOWN_PARTICIPANT, f"no bank {code} at the hub", bank=code)
    return BankView(bank, uow.accounts.of_owner(code))


@dataclass(slots=True)
class _Group:
    """What the transaction of a group of operator actions (run_together)
    knows without reading it again, with that transaction's unit of work:
    onboarding many banks in one transaction checks the hub's accounts and
    the open cycle of a currency once, asks once which of the banks being
    created exist already, and funds a bank it just created without reading
    its account back. No operator action of a group closes a cycle or
    removes an account or a bank, and only its own actions write in its
    transaction, so what is known stays so until the transaction ends."""

    uow: UnitOfWork
    # Currencies ensure_currency has ensured.
    ensured: set[str] = field(default_factory=set)
    # Codes of banks the group creates that did not exist when it started
    # (read ahead in one query) and none of its actions has created yet.
    absent: set[str] = field(default_factory=set)
    # Accounts as this transaction's actions left them (opened or moved
    # by one of them): what reading them back would answer.
    accounts: dict[str, Account] = field(default_factory=dict)
    # Deposits and withdrawals made, not posted yet, by posting id, in
    # order (`flush` posts them in one go: every deposit debits the hub's
    # reserve, whose row would otherwise move once per deposit). A repeat
    # within the group finds its posting here.
    pending: dict[str, PostingAt] = field(default_factory=dict)

    def flush(self) -> None:
        """Post what is pending: before an action that may read balances
        from the database, and at the group's end."""
        if self.pending:
            self.uow.ledger.post_many(list(self.pending.values()))
            self.pending.clear()

    def reads_balances(self, unit: object) -> bool:
        """Whether `unit` may read an account's balance from the database
        rather than from `accounts`: all but a deposit or withdrawal and the
        creation of a bank that does not exist yet."""
        if isinstance(unit, _Moving):
            return False
        return not (isinstance(unit, _Creating) and unit.code in self.absent)


_GROUP: ContextVar[_Group | None] = ContextVar("remitnet_operator_group", default=None)


def _group(uow: UnitOfWork) -> _Group | None:
    """The group whose transaction `uow` is, if any."""
    group = _GROUP.get()
    return group if group is not None and group.uow is uow else None


def ensure_currency(uow: UnitOfWork, currency: str, now: datetime) -> None:
    """The hub's own accounts, the default FX provider's liquidity account
    (unfunded: the operator funds FXHUB before it can sell the currency) and
    an open cycle exist for every currency a participant holds an account
    in."""
    group = _group(uow)
    if group is not None and currency in group.ensured:
        return
    # Every onboarding runs this: the hub's and FXHUB's accounts are read in
    # one query, not one per account.
    owned = uow.accounts.of_owners([HUB, DEFAULT_PROVIDER])
    held = {a.id for accounts in owned.values() for a in accounts}
    if group is not None:
        # The group's deposits check the hub's reserve: read here already.
        # One the group has moved is kept as moved (its postings may wait).
        reserve = account_id(HUB, currency, AccountKind.RESERVE)
        for a in owned.get(HUB, []):
            if a.id == reserve:
                group.accounts.setdefault(reserve, a)
    hub_region = uow.banks.home_regions([HUB])[HUB]  # the hub's own region: no read
    for kind in (
        AccountKind.SETTLEMENT,
        AccountKind.RESERVE,
        AccountKind.FX,
        AccountKind.FX_REVENUE,
    ):
        aid = account_id(HUB, currency, kind)
        if aid not in held:
            uow.accounts.add(aid, HUB, currency, kind, now, home_region=hub_region)
    default = account_id(DEFAULT_PROVIDER, currency)
    if default not in held:
        fxhub = uow.banks.get(DEFAULT_PROVIDER)  # created by migration 0008
        if fxhub is not None:
            uow.accounts.add(
                default,
                DEFAULT_PROVIDER,
                currency,
                AccountKind.LIQUIDITY,
                now,
                home_region=fxhub.home_region,
            )
    if uow.cycles.open_for(currency) is None:
        seq = uow.cycles.max_seq(currency) + 1
        uow.cycles.add(cycle_id_for(currency, seq), currency, seq, now)
    if group is not None:
        group.ensured.add(currency)


def _open_account(
    uow: UnitOfWork, bank: Bank, currency: str, now: datetime, *, new: bool = False
) -> None:
    """`new`: the bank was created in this unit, so it holds no account yet
    (no read)."""
    aid = account_id(bank.code, currency)
    if new or uow.accounts.get(aid) is None:
        uow.accounts.add(
            aid, bank.code, currency, AccountKind.LIQUIDITY, now, home_region=bank.home_region
        )
    ensure_currency(uow, currency, now)


def _check_currencies(currencies: list[str]) -> list[str]:
    for c in currencies:
        check_currency(c)
    if len(set(currencies)) != len(currencies):
        raise InvalidArgument(Reason.INVALID_ARGUMENT, "currencies must not repeat")
    return currencies


ALL_ROLES: Final = ParticipantRole.BANK | ParticipantRole.FX_PROVIDER


def check_roles(roles: ParticipantRole | int) -> ParticipantRole:
    """A participant's roles: BANK, FX_PROVIDER or both (INVALID_ARGUMENT
    otherwise, field roles)."""
    if isinstance(roles, bool) or not isinstance(roles, int) or not 0 < roles <= ALL_ROLES:
        raise InvalidArgument(
            Reason.INVALID_ARGUMENT,
            f"roles must be BANK, FX_PROVIDER or both, got {roles!r}",
            field="roles",
        )
    return ParticipantRole(roles)


def role_names(roles: ParticipantRole) -> list[str]:
    """["BANK"], ["FX_PROVIDER"] or ["BANK", "FX_PROVIDER"]."""
    return [r.name for r in ParticipantRole if r in roles and r.name is not None]


def create_bank(
    db: Transactions,
    code: str,
    name: str,
    home_region: str,
    currencies: list[str],
    *,
    roles: ParticipantRole = ParticipantRole.BANK,
    requires_confirmation: bool = False,
    bic: str | None = None,
    actor: str = HUB_PRINCIPAL,
) -> BankView:
    """create_bank_unit, run alone."""
    unit = create_bank_unit(
        code,
        name,
        home_region,
        currencies,
        roles=roles,
        requires_confirmation=requires_confirmation,
        bic=bic,
        actor=actor,
    )
    return db.write("create_bank", unit)


def create_bank_unit(
    code: str,
    name: str,
    home_region: str,
    currencies: list[str],
    *,
    roles: ParticipantRole = ParticipantRole.BANK,
    requires_confirmation: bool = False,
    bic: str | None = None,
    actor: str = HUB_PRINCIPAL,
) -> OperatorUnit[BankView]:
    """Onboard a participant with `roles` (a bank, an FX provider, or both)
    and its liquidity accounts in `currencies`; `requires_confirmation`:
    transfers to it await its confirmation from the start. The same request
    again is a no-op; another name, region, roles or confirmation setting
    for a code taken, BANK_EXISTS. `bic`: its BICFI (ISO 9362), stored in
    its 8-character form for a primary office ("XXX" branch), another
    participant's: BIC_EXISTS."""
    check_bank_code(code, field="code")
    bic = primary(check_bic(bic, field="bic")) if bic else None
    roles = check_roles(roles)
    name = check_text(name.strip(), field="name", limit=140, too_long=Reason.INVALID_NAME)
    if not name:
        raise InvalidArgument(Reason.INVALID_NAME, "name must have 1 to 140 characters")
    check_region(home_region)
    _check_currencies(currencies)

    def unit(uow: UnitOfWork) -> BankView:
        now = _now()
        group = _group(uow)
        if group is not None and code in group.absent:
            group.absent.discard(code)  # created below: a repeat reads it
            existing = None
        else:
            existing = uow.banks.get(code)
        if existing is not None:
            # Creating the same bank again is a no-op, so a retried call
            # (or one whose commit was ambiguous) is safe.
            held = {a.currency for a in uow.accounts.of_owner(code)}
            if (
                existing.name,
                existing.home_region,
                existing.roles,
                existing.requires_confirmation,
                existing.bic,
            ) != (name, home_region, roles, requires_confirmation, bic) or not set(
                currencies
            ) <= held:
                raise AlreadyExists(Reason.BANK_EXISTS, f"bank {code} exists", bank=code)
            return _view(uow, code)
        holder = uow.banks.codes_by_bic([bic]).get(bic) if bic else None
        if holder is not None:
            raise AlreadyExists(
                Reason.BIC_EXISTS, f"BIC {bic} is {holder}'s", bic=str(bic), bank=holder
            )
        bank = Bank(
            code, name, home_region, BankStatus.ACTIVE, now, roles, requires_confirmation, bic
        )
        uow.banks.add(bank)
        uow.events.create_head(code, home_region, now)
        for currency in currencies:
            _open_account(uow, bank, currency, now, new=True)
        # What it just wrote, as of_owner would read it back (by currency):
        # a new bank's accounts are empty, so no read is needed.
        opened = [
            Account(account_id(code, c), code, c, AccountKind.LIQUIDITY, 0, 0, 0, 0, now)
            for c in sorted(currencies)
        ]
        request = {"bank": code, "name": name, "home_region": home_region}
        if roles != ParticipantRole.BANK:
            # A bank's record reads as before roles existed.
            request["roles"] = "|".join(role_names(roles))
        record: dict[str, object] = {**request, "currencies": currencies}
        if requires_confirmation:
            # Likewise a bank that does not require confirmation.
            record["requires_confirmation"] = True
        if bic:
            record["bic"] = bic
        uow.trail.append(actor, Action.CREATE_BANK, record, now)
        if group is not None:
            group.accounts.update((a.id, a) for a in opened)
        return BankView(bank, opened)

    return _Creating(code, unit)


def open_account(
    db: Transactions, code: str, currency: str, *, actor: str = HUB_PRINCIPAL
) -> Account:
    return db.write("open_account", open_account_unit(code, currency, actor=actor))


def open_account_unit(
    code: str, currency: str, *, actor: str = HUB_PRINCIPAL
) -> OperatorUnit[Account]:
    check_currency(currency)

    def unit(uow: UnitOfWork) -> Account:
        bank, now = _view(uow, code).bank, _now()
        if uow.accounts.get(account_id(code, currency)) is None:
            # An account already open is a replay: nothing changes, nothing
            # is appended to the audit trail.
            _open_account(uow, bank, currency, now)
            request = {"bank": code, "currency": currency}
            uow.trail.append(actor, Action.OPEN_ACCOUNT, request, now)
        row = uow.accounts.get(account_id(code, currency))
        assert row is not None
        return row

    return unit


def _require_account(uow: UnitOfWork, code: str, currency: str) -> Account:
    row = uow.accounts.get(account_id(code, currency))
    if row is None:
        # The account's id names its owner, so one found means the bank
        # exists: only a missing one needs the bank read (which refusal).
        _view(uow, code)
        raise FailedPrecondition(
            Reason.CURRENCY_NOT_SUPPORTED,
            f"bank {code} holds no {currency} account",
            bank=code,
            currency=currency,
        )
    return row


def _posting_key(prefix: str, raw_id: str) -> str:
    return f"{prefix}:{canonical_transfer_id(raw_id) if raw_id else uuid.uuid4()}"


def deposit(
    db: Transactions,
    code: str,
    currency: str,
    amount: int,
    deposit_id: str,
    *,
    actor: str = HUB_PRINCIPAL,
) -> Account:
    """Prefund liquidity: credit the bank, debit the hub's reserve."""
    return db.write("deposit", deposit_unit(code, currency, amount, deposit_id, actor=actor))


def deposit_unit(
    code: str, currency: str, amount: int, deposit_id: str, *, actor: str = HUB_PRINCIPAL
) -> OperatorUnit[Account]:
    check_currency(currency)
    check_positive_amount(amount)
    key = _posting_key("deposit", deposit_id)
    return _Moving(_move_liquidity(key, code, currency, amount, EntryKind.DEPOSIT, actor))


def withdraw(
    db: Transactions,
    code: str,
    currency: str,
    amount: int,
    withdrawal_id: str,
    *,
    actor: str = HUB_PRINCIPAL,
) -> Account:
    """Return liquidity that backs no net debit position; the cap is credit,
    not cash, so it cannot be withdrawn."""
    unit = withdraw_unit(code, currency, amount, withdrawal_id, actor=actor)
    return db.write("withdraw", unit)


def withdraw_unit(
    code: str, currency: str, amount: int, withdrawal_id: str, *, actor: str = HUB_PRINCIPAL
) -> OperatorUnit[Account]:
    check_currency(currency)
    check_positive_amount(amount)
    key = _posting_key("withdrawal", withdrawal_id)
    return _Moving(_move_liquidity(key, code, currency, amount, EntryKind.WITHDRAWAL, actor))


def _move_liquidity(
    key: str,
    code: str,
    currency: str,
    amount: int,
    kind: EntryKind,
    actor: str,
) -> OperatorUnit[Account]:
    def unit(uow: UnitOfWork) -> Account:
        group = _group(uow)
        known = group.accounts.get(account_id(code, currency)) if group is not None else None
        waiting = group.pending.get(key) if group is not None else None
        if waiting is not None:
            p = waiting.posting
            prior: tuple[EntryKind, str, str, int] | None = (
                p.kind, waiting.owner, p.currency, waiting.amount,
            )  # fmt: skip
        else:
            record = uow.ledger.get_posting(key)
            prior = (record.kind, record.owner, record.currency, record.amount) if record else None
        if prior is not None:
            if prior != (kind, code, currency, amount):
                raise AlreadyExists(
                    Reason.DUPLICATE_WITH_DIFFERENT_CONTENT,
                    f"{key} was posted with different content",
                )
            return known or _require_account(uow, code, currency)
        account = known or _require_account(uow, code, currency)
        now = _now()
        # The hub's reserve, which the posting moves too: in a group, kept
        # as its postings leave it (they are not written yet).
        reserve_id = account_id(HUB, currency, AccountKind.RESERVE)
        reserve = group.accounts.get(reserve_id) if group is not None else None
        if reserve is None and (group is not None or kind is EntryKind.DEPOSIT):
            reserve = uow.accounts.get(reserve_id)
            # Opened with the currency's first account (ensure_currency).
            assert reserve is not None, f"no {reserve_id}"
        if kind is EntryKind.DEPOSIT:
            assert reserve is not None
            account.check_deposit(amount)
            reserve.check_reserve_debit(amount)
            posting = deposit_posting(key, code, currency, amount, key.split(":", 1)[1])
        else:
            account.check_withdrawal(amount)
            posting = withdrawal_posting(key, code, currency, amount, key.split(":", 1)[1])
        if group is not None:
            group.pending[key] = PostingAt(posting, code, amount, now)
        else:
            uow.ledger.post(posting, owner=code, amount=amount, now=now)
        # A replay (the same id again) returned above: one record per posting.
        action, id_key = (
            (Action.DEPOSIT, "deposit_id")
            if kind is EntryKind.DEPOSIT
            else (Action.WITHDRAW, "withdrawal_id")
        )
        request = {"bank": code, "currency": currency, "amount": amount}
        uow.trail.append(actor, action, {**request, id_key: key.split(":", 1)[1]}, now)
        # The accounts as the posting left them (each leg adds its amount to
        # the balance and one entry), without reading them back.
        moved = _moved(account, posting)
        if group is not None:
            assert reserve is not None
            group.accounts[moved.id] = moved
            group.accounts[reserve_id] = _moved(reserve, posting)
        return moved

    return unit


def _moved(account: Account, posting: Posting) -> Account:
    """`account` as `posting` leaves it."""
    legs = [leg.amount for leg in posting.legs if leg.account_id == account.id]
    return replace(
        account, balance=account.balance + sum(legs), entry_count=account.entry_count + len(legs)
    )


def run_together(
    db: Transactions, units: Sequence[tuple[str, OperatorUnit[T]]]
) -> list[T | Exception]:
    """Operator actions (unit name, unit) that arrived together, in one
    transaction, in order; each one's answer or the error it raised. Every
    operator action appends to the audit trail's one chain (and every
    deposit posts against the hub's reserve account), so concurrent ones
    conflict and re-run each other: together they commit once instead. Each
    unit sees the effects of those before it, as if they had run one after
    another. If any of them fails, each runs again alone, so one refusal
    undoes no other's change."""

    def group(uow: UnitOfWork) -> list[T]:
        # Each attempt of the transaction starts knowing nothing.
        known = _Group(uow)
        creating = [u.code for _, u in units if isinstance(u, _Creating)]
        if creating:
            # One query for the group's banks, not one per bank created.
            known.absent = set(creating) - uow.banks.regions(creating).keys()
        token = _GROUP.set(known)
        try:
            out = []
            for _, u in units:
                if known.reads_balances(u):
                    known.flush()
                out.append(u(uow))
            known.flush()
            return out
        finally:
            _GROUP.reset(token)

    if len(units) > 1:
        try:
            return list(db.write("operator_actions", group))
        except Exception:
            pass  # run alone below, each says whether it fails, and why
    out: list[T | Exception] = []
    for name, unit in units:
        try:
            out.append(db.write(name, unit))
        except Exception as exc:  # the caller's to raise
            out.append(exc)
    return out


def set_net_debit_cap(
    db: Transactions, code: str, currency: str, cap: int, *, actor: str = HUB_PRINCIPAL
) -> Account:
    check_currency(currency)
    if not 0 <= cap <= INT64_MAX:
        raise InvalidArgument(Reason.INVALID_AMOUNT, "cap must be between 0 and int64 max")

    def unit(uow: UnitOfWork) -> Account:
        account = _require_account(uow, code, currency)
        account.check_cap(cap)
        if account.net_debit_cap != cap:
            # Setting the cap it has changes nothing and appends nothing.
            uow.accounts.set_cap(account.id, cap)
            request = {"bank": code, "currency": currency, "cap": cap}
            uow.trail.append(actor, Action.SET_NET_DEBIT_CAP, request, _now())
        row = uow.accounts.get(account.id)
        assert row is not None
        return row

    return db.write("set_net_debit_cap", unit)


def set_status(
    db: Transactions, code: str, status: BankStatus, *, actor: str = HUB_PRINCIPAL
) -> BankView:
    def unit(uow: UnitOfWork) -> BankView:
        if _view(uow, code).bank.status != status:
            # Suspending a suspended bank (resuming an active one) changes
            # nothing and appends nothing.
            uow.banks.set_status(code, status)
            action = Action.SUSPEND_BANK if status is BankStatus.SUSPENDED else Action.RESUME_BANK
            uow.trail.append(actor, action, {"bank": code}, _now())
        return _view(uow, code)

    return db.write("set_bank_status", unit)


def set_requires_confirmation(
    db: Transactions, code: str, required: bool, *, actor: str = HUB_PRINCIPAL
) -> BankView:
    """Whether transfers to the bank `code` await its confirmation from now
    on (those reserved already stay so). Setting what it has changes
    nothing and appends nothing; a change is an operator action in the
    trail."""
    check_bank_code(code, field="code")

    def unit(uow: UnitOfWork) -> BankView:
        if _view(uow, code).bank.requires_confirmation != required:
            uow.banks.set_requires_confirmation(code, required)
            request = {"bank": code, "required": required}
            uow.trail.append(actor, Action.SET_CONFIRMATION_REQUIRED, request, _now())
        return _view(uow, code)

    return db.write("set_requires_confirmation", unit)


def get_bank(db: Transactions, code: str) -> BankView:
    return db.read(lambda uow: _view(uow, code))


def list_banks(db: Transactions, after: str, limit: int) -> list[BankView]:
    def unit(uow: UnitOfWork) -> list[BankView]:
        # Two statements a page: the banks, then all their accounts.
        found = uow.banks.page(after, limit)
        held = uow.accounts.of_owners([b.code for b in found])
        return [BankView(b, held[b.code]) for b in found]

    return db.read(unit)
