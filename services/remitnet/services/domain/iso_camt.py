"""What a camt.053 statement and a camt.054 notification report, as plain
values: a bank's ledger entries in one currency with the balances around
them. The XML is the adapter's (adapters/iso20022/camt053.py, camt054.py).
Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from remitnet.services.domain.ledger import EntryKind, LedgerEntry
from remitnet.services.domain.money import exponent

CAMT_053: Final = "camt.053.001.08"
CAMT_054: Final = "camt.054.001.08"

# BkTxCd/Prtry/Issr of every entry: the hub's own codes, one per ledger
# entry kind (ISO's Domn/Fmly/SubFmly codes name bank products; a clearing
# house's net settlement has no exact one, so the codes say what it is).
CODE_ISSUER: Final = "REMITNET"
ENTRY_CODES: Final = {
    EntryKind.DEPOSIT: "DEPOSIT",
    EntryKind.WITHDRAWAL: "WITHDRAWAL",
    EntryKind.SETTLEMENT: "NET_SETTLEMENT",
    EntryKind.FX_REVENUE: "FX_REVENUE",
    EntryKind.GROSS: "GROSS_TRANSFER",
}


@dataclass(frozen=True, slots=True)
class AccountReport:
    """The entries of one account between two balances.

    `opening` is the balance before the first entry, `closing` after the
    last one (equal when there is none). `period` is the booking period
    asked for, if one was. `last_page` is False when more entries follow
    (`entries[-1].seq` is where the next page starts)."""

    msg_id: str
    created_at: datetime
    report_id: str
    bank: str
    bic: str
    currency: str
    account_id: str
    opening: int
    closing: int
    entries: tuple[LedgerEntry, ...]
    period: tuple[datetime, datetime] | None = None
    cycle_id: str = ""
    page: int = 1
    last_page: bool = True

    @property
    def credits(self) -> tuple[int, int]:
        """(count, sum) of the entries that credit the account."""
        amounts = [e.amount for e in self.entries if e.amount > 0]
        return len(amounts), sum(amounts)

    @property
    def debits(self) -> tuple[int, int]:
        """(count, sum, as a positive amount) of the debits."""
        amounts = [-e.amount for e in self.entries if e.amount < 0]
        return len(amounts), sum(amounts)


def decimal_amount(currency: str, minor_units: int) -> str:
    """|minor_units| in major units with the currency's decimals, as ISO
    amounts are written (no sign: CdtDbtInd carries it), e.g. 1234 USD ->
    12.34, 500 JPY -> 500."""
    exp = exponent(currency)
    value = Decimal(abs(minor_units)).scaleb(-exp)
    return f"{value:.{exp}f}"


def direction(amount: int) -> str:
    """CdtDbtInd: a zero balance is a credit one, as is usual."""
    return "DBIT" if amount < 0 else "CRDT"
