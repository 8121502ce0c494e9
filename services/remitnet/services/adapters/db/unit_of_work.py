"""The SQL unit of work: the repositories of service_layer/unit_of_work.py
over the one Connection of a transaction attempt.

Database.write and Database.read build one per attempt and hand it to the
use case; a re-run gets a fresh one on the new attempt's connection. The
repositories hold nothing but the connection and the Dialect, so building
them costs a few attribute stores, not a query.
"""

from __future__ import annotations

from sqlalchemy import Connection

from remitnet.services.adapters.db.accounts import SqlAccounts
from remitnet.services.adapters.db.audit_log import SqlOperatorTrail
from remitnet.services.adapters.db.banks import SqlBanks
from remitnet.services.adapters.db.cycles import SqlCycles
from remitnet.services.adapters.db.dialect import Dialect
from remitnet.services.adapters.db.feed import SqlEventFeed
from remitnet.services.adapters.db.iso_messages import SqlMessageLog
from remitnet.services.adapters.db.ledger import SqlLedger
from remitnet.services.adapters.db.positions import SqlPositions
from remitnet.services.adapters.db.quotes import QuoteTermsCache, SqlQuotes
from remitnet.services.adapters.db.read_models import SqlReadModels
from remitnet.services.adapters.db.recalls import SqlRecalls
from remitnet.services.adapters.db.transfers import SqlTransfers
from remitnet.services.service_layer.unit_of_work import (
    AccountRepository,
    BankRepository,
    CycleRepository,
    EventFeed,
    LedgerRepository,
    MessageLog,
    OperatorTrail,
    PositionRepository,
    QuoteRepository,
    ReadModels,
    RecallRepository,
    TransferRepository,
    UnitOfWork,
)


class SqlUnitOfWork:
    """UnitOfWork over `conn`. `conn` stays reachable for adapter-level
    code (tools, tests, the audit's snapshot loader) that reads tables no
    repository serves; use cases see only the repositories."""

    __slots__ = (
        "accounts",
        "banks",
        "conn",
        "cycles",
        "dialect",
        "events",
        "ledger",
        "messages",
        "positions",
        "quotes",
        "recalls",
        "trail",
        "transfers",
        "views",
    )

    banks: BankRepository
    accounts: AccountRepository
    positions: PositionRepository
    cycles: CycleRepository
    transfers: TransferRepository
    recalls: RecallRepository
    ledger: LedgerRepository
    quotes: QuoteRepository
    events: EventFeed
    trail: OperatorTrail
    views: ReadModels
    messages: MessageLog

    def __init__(
        self, conn: Connection, dialect: Dialect, quotes_seen: QuoteTermsCache | None = None
    ) -> None:
        self.conn = conn
        self.dialect = dialect
        banks = SqlBanks(conn, dialect)
        transfers = SqlTransfers(conn, dialect, banks)
        self.banks = banks
        self.accounts = SqlAccounts(conn, dialect)
        self.positions = SqlPositions(conn, dialect, banks)
        self.cycles = SqlCycles(conn)
        self.transfers = transfers
        recalls = SqlRecalls(conn, dialect)
        self.recalls = recalls
        self.ledger = SqlLedger(conn, dialect)
        self.quotes = SqlQuotes(conn, dialect, quotes_seen)
        self.events = SqlEventFeed(conn, dialect, transfers, recalls)
        self.trail = SqlOperatorTrail(conn)
        self.views = SqlReadModels(conn)
        self.messages = SqlMessageLog(conn)


def _conforms(conn: Connection, dialect: Dialect) -> None:
    """mypy --strict checks the SQL repositories against the ports here."""
    _uow: UnitOfWork = SqlUnitOfWork(conn, dialect)
    banks = SqlBanks(conn, dialect)
    _banks: BankRepository = banks
    _accounts: AccountRepository = SqlAccounts(conn, dialect)
    _positions: PositionRepository = SqlPositions(conn, dialect, banks)
    _cycles: CycleRepository = SqlCycles(conn)
    transfers = SqlTransfers(conn, dialect, banks)
    _transfers: TransferRepository = transfers
    recalls = SqlRecalls(conn, dialect)
    _recalls: RecallRepository = recalls
    _ledger: LedgerRepository = SqlLedger(conn, dialect)
    _quotes: QuoteRepository = SqlQuotes(conn, dialect)
    _feed: EventFeed = SqlEventFeed(conn, dialect, transfers, recalls)
    _trail: OperatorTrail = SqlOperatorTrail(conn)
    _views: ReadModels = SqlReadModels(conn)
    _messages: MessageLog = SqlMessageLog(conn)
