"""An account of a bank (or the hub) in one currency, and the two formulas
of a bank's limit: what it can still send, and the invariant that its net
debit position stays within its liquidity plus its cap."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from remitnet.services.domain.errors import FailedPrecondition, InvalidArgument, Reason
from remitnet.services.domain.money import INT64_MAX, INT64_MIN


def headroom(balance: int, net_debit_cap: int, unsettled_net: int, reserved: int = 0) -> int:
    """What a bank can still send: prefunded liquidity plus its cap minus its
    net debit position (received credits count: that is what netting buys)
    and minus what its transfers awaiting confirmation hold (`reserved`)."""
    return balance + net_debit_cap + unsettled_net - reserved


def within_limit(balance: int, net_debit_cap: int, unsettled_net: int, reserved: int = 0) -> bool:
    """The invariant: a bank's net debit position plus its reservations
    never exceeds its prefunded liquidity plus its cap."""
    return max(0, reserved - unsettled_net) <= balance + net_debit_cap


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    owner: str
    currency: str
    kind: str
    balance: int
    net_debit_cap: int
    unsettled_net: int
    entry_count: int
    opened_at: datetime
    # Held by the owner's transfers awaiting confirmation (migration 0009).
    reserved: int = 0

    @property
    def headroom(self) -> int:
        """What the owner can still send in this currency (see `headroom`)."""
        return headroom(self.balance, self.net_debit_cap, self.unsettled_net, self.reserved)

    def withdrawable(self) -> int:
        """Liquidity that backs no net debit position nor reservation: the
        balance less the unsettled debit and the reservations, if any
        (received credits are not cash yet, and the cap is credit, not
        cash). Negative when they exceed the balance (the cap covers the
        rest)."""
        return self.balance + min(0, self.unsettled_net - self.reserved)

    def check_deposit(self, amount: int) -> None:
        """A deposit of `amount` keeps the balance within int64."""
        if self.balance + amount > INT64_MAX:
            raise InvalidArgument(Reason.AMOUNT_OUT_OF_RANGE, "balance would overflow int64")

    def check_reserve_debit(self, amount: int) -> None:
        """The hub's reserve account, which every deposit in its currency
        debits, keeps its balance within int64: past that the deposits
        outstanding in the currency would be more than the hub can record."""
        if self.balance - amount < INT64_MIN:
            raise InvalidArgument(
                Reason.AMOUNT_OUT_OF_RANGE,
                f"the hub's {self.currency} reserve would pass int64: deposits outstanding "
                f"in {self.currency} are at most {-INT64_MIN} minor units",
                field="amount",
            )

    def check_withdrawal(self, amount: int) -> None:
        """At most `withdrawable()` can be withdrawn (INSUFFICIENT_LIQUIDITY,
        with what can be, at least 0, as the headroom)."""
        withdrawable = self.withdrawable()
        if amount > withdrawable:
            most = str(max(0, withdrawable))
            raise FailedPrecondition(
                Reason.INSUFFICIENT_LIQUIDITY,
                f"at most {most} minor units can be withdrawn",
                bank=self.owner,
                currency=self.currency,
                headroom=most,
                amount=str(amount),
            )

    def check_cap(self, cap: int) -> None:
        """The owner's current net debit position stays within its balance
        plus a net debit cap of `cap` (CAP_BELOW_POSITION)."""
        if not within_limit(self.balance, cap, self.unsettled_net, self.reserved):
            raise FailedPrecondition(
                Reason.CAP_BELOW_POSITION,
                "the bank's current net debit position exceeds its liquidity plus this cap",
                bank=self.owner,
                currency=self.currency,
            )
