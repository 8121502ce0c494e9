"""Tables. Portable across SQLite, PostgreSQL and CockroachDB: no sequences
or SERIAL keys (transfer ids are client UUIDs; other keys derive from data),
no LISTEN/NOTIFY, no advisory locks.

The per-bank tables (accounts, positions, transfers) carry the home region of
the bank that owns the row (for a transfer: the debtor's) in `home_region`,
written with the row and never changed. On CockroachDB every table with that
column, other than the GLOBAL reference tables, is REGIONAL BY ROW on a region
column computed from it (services/remitnet/services/adapters/db/cockroach.py), so a row is homed
in its bank's region from the moment it is inserted."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    Uuid,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TS = DateTime(timezone=True)

#: `home_region` of the hub's own rows (its accounts and positions). No bank
#: can have it (bank regions are lower-case), and CockroachDB homes these rows
#: in the database's primary region.
HUB_HOME_REGION = "HUB"


def home_region() -> Column[str]:
    """The owning bank's home region (banks.home_region), or HUB_HOME_REGION."""
    return Column("home_region", String(32), nullable=False)


banks = Table(
    "banks",
    metadata,
    Column("code", String(16), primary_key=True),
    Column("name", String(140), nullable=False),
    Column("home_region", String(32), nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("created_at", TS, nullable=False),
    # ParticipantRole flags (domain/bank.py): 1 bank, 2 FX provider, 3 both.
    Column("roles", SmallInteger, nullable=False, server_default="1"),
    # 1: its incoming transfers await its confirmation (RESERVED) before they
    # are netted; an operator setting (migration 0009).
    Column("requires_confirmation", SmallInteger, nullable=False, server_default="0"),
    # Its BICFI (ISO 9362; a primary office's in 8 characters): how ISO 20022
    # messages name it (migration 0010). NULL for a participant onboarded
    # without one; unique where set (NULLs never collide in a unique index).
    Column("bic", String(11), nullable=True),
    Index("uq_banks_bic", "bic", unique=True),
)

# Bank liquidity accounts and the hub's own accounts, one row per owner,
# currency and kind. `balance` is the ledger balance (the sum of the
# account's entries); `unsettled_net` is the net of accepted, unsettled
# transfers that the netting engine maintains per batch; `reserved` what the
# owner's transfers awaiting confirmation hold (migration 0009).
accounts = Table(
    "accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(16), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("balance", BigInteger, nullable=False),
    Column("net_debit_cap", BigInteger, nullable=False),
    Column("unsettled_net", BigInteger, nullable=False),
    Column("entry_count", BigInteger, nullable=False),
    Column("opened_at", TS, nullable=False),
    home_region(),
    Column("reserved", BigInteger, nullable=False, server_default="0"),
    Index(None, "owner", "currency"),
)

# The idempotency record of every ledger posting (deposit, withdrawal,
# settlement): its id is the client's or the cycle's, so a retried or
# ambiguous commit can never post twice.
postings = Table(
    "postings",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("kind", SmallInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("owner", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("reference", String(80), nullable=False),
    Column("posted_at", TS, nullable=False),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("kind", SmallInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("posting_id", String(80), nullable=False),
    Column("reference", String(80), nullable=False),
    Column("posted_at", TS, nullable=False),
    Index(None, "posting_id"),
)

cycles = Table(
    "cycles",
    metadata,
    Column("id", String(24), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("opened_at", TS, nullable=False),
    Column("closed_at", TS, nullable=True),
    Column("settled_at", TS, nullable=True),
    Column("transfer_count", BigInteger, nullable=False),
    Column("gross_value", BigInteger, nullable=False),
    Column("net_value", BigInteger, nullable=False),
    UniqueConstraint("currency", "seq"),
    # ListCycles pages newest first, over all currencies or one.
    Index(None, "opened_at", "id"),
    Index(None, "currency", "opened_at", "id"),
    # At most one open cycle per currency, enforced by the database.
    Index(
        "uq_cycles_open_currency",
        "currency",
        unique=True,
        postgresql_where=text("state = 1"),
        sqlite_where=text("state = 1"),
    ),
)

positions = Table(
    "positions",
    metadata,
    Column("cycle_id", String(24), primary_key=True),
    Column("bank_code", String(16), primary_key=True),
    Column("sent", BigInteger, nullable=False),
    Column("received", BigInteger, nullable=False),
    Column("sent_count", BigInteger, nullable=False),
    Column("received_count", BigInteger, nullable=False),
    Column("fee", BigInteger, nullable=False, server_default="0"),
    home_region(),
)

transfers = Table(
    "transfers",
    metadata,
    Column("id", Uuid(as_uuid=False), primary_key=True),
    Column("debtor_bank", String(16), nullable=False),
    Column("creditor_bank", String(16), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("remittance_info", String(140), nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("cycle_id", String(24), nullable=False),
    Column("accepted_at", TS, nullable=False),
    # Cross-currency transfers only (NULL otherwise): the creditor's leg.
    Column("quote_id", Uuid(as_uuid=False), nullable=True),
    Column("creditor_currency", String(3), nullable=True),
    Column("creditor_amount", BigInteger, nullable=True),
    Column("creditor_cycle_id", String(24), nullable=True),
    Column("fee", BigInteger, nullable=True),
    Column("cancelled_at", TS, nullable=True),
    # The FX provider of the two legs (migration 0008); NULL for same-currency
    # transfers and for cross-currency ones through the hub before it.
    Column("fx_provider", String(16), nullable=True),
    home_region(),  # the debtor's
    # The scheme lifecycle (migration 0009): the deadline of a transfer that
    # was reserved for the creditor's confirmation (NULL: netted at once) and
    # when it left RESERVED; the ISO 20022 code of a rejection, an expiry or
    # a return, or an operator's cancel reason; a return's original, and a
    # returned transfer's return.
    Column("deadline", TS, nullable=True),
    Column("resolved_at", TS, nullable=True),
    Column("reason", String(140), nullable=True),
    Column("return_of", Uuid(as_uuid=False), nullable=True),
    Column("returned_by", Uuid(as_uuid=False), nullable=True),
    # The ISO 20022 purpose code (ExternalPurpose1Code, migration 0011):
    # NULL when the debtor gave none.
    Column("purpose", String(4), nullable=True),
    # Every bank-callable read of transfers goes through one of these, in
    # order (migration 0006): ListTransfers per side and per pair, newest
    # first; reconciliation per cycle and per target-leg cycle.
    Index(None, "debtor_bank", "accepted_at", "id"),
    Index(None, "creditor_bank", "accepted_at", "id"),
    Index(None, "debtor_bank", "creditor_bank", "accepted_at", "id"),
    # ListTransfers of cancelled transfers (status 4, TransferStatus.CANCELLED).
    *(
        Index(
            f"ix_transfers_cancelled_{side}_accepted_at_id",
            side,
            "accepted_at",
            "id",
            postgresql_where=text("status = 4"),
            sqlite_where=text("status = 4"),
        )
        for side in ("debtor_bank", "creditor_bank")
    ),
    Index(None, "cycle_id"),
    Index(
        None,
        "creditor_cycle_id",
        postgresql_where=text("creditor_cycle_id IS NOT NULL"),
        sqlite_where=text("creditor_cycle_id IS NOT NULL"),
    ),
    # The source legs of a cycle's cross-currency transfers alone, for the
    # feed's LEGS events at close and settle (migration 0005): a cycle's
    # same-currency transfers, by far the most, are not read for them.
    Index(
        "ix_transfers_fx_cycle_id",
        "cycle_id",
        postgresql_where=text("creditor_cycle_id IS NOT NULL"),
        sqlite_where=text("creditor_cycle_id IS NOT NULL"),
    ),
    # The expirer's read (status 5, TransferStatus.RESERVED): the reservations
    # due, oldest deadline first, and nothing else.
    Index(
        "ix_transfers_reserved_deadline",
        "deadline",
        postgresql_where=text("status = 5"),
        sqlite_where=text("status = 5"),
    ),
    # A transfer is returned at most once, enforced by the database.
    Index(
        "uq_transfers_return_of",
        "return_of",
        unique=True,
        postgresql_where=text("return_of IS NOT NULL"),
        sqlite_where=text("return_of IS NOT NULL"),
    ),
    # The feed's RESOLVED events: a bank's transfers that left RESERVED in
    # one transaction (at one resolved_at), per side.
    *(
        Index(
            None,
            side,
            "resolved_at",
            postgresql_where=text("resolved_at IS NOT NULL"),
            sqlite_where=text("resolved_at IS NOT NULL"),
        )
        for side in ("debtor_bank", "creditor_bank")
    ),
)

# Recalls (camt.056), one per transfer at most (migration 0009): the
# debtor's request for a transfer back and the creditor's answer. `id` is the
# client's recall id; `state` a RecallState (domain/lifecycle.py): 1
# requested, 2 accepted (answered by the return `return_id`), 3 rejected
# (`answer_reason`), 4 expired. Homed with the debtor's rows.
recalls = Table(
    "recalls",
    metadata,
    Column("id", Uuid(as_uuid=False), primary_key=True),
    Column("transfer_id", Uuid(as_uuid=False), nullable=False),
    Column("debtor_bank", String(16), nullable=False),
    Column("creditor_bank", String(16), nullable=False),
    Column("reason", String(4), nullable=False),
    Column("info", String(105), nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("requested_at", TS, nullable=False),
    Column("deadline", TS, nullable=False),
    Column("answered_at", TS, nullable=True),
    Column("answer_reason", String(4), nullable=True),
    Column("return_id", Uuid(as_uuid=False), nullable=True),
    home_region(),  # the debtor's
    UniqueConstraint("transfer_id"),
    # The expirer's read of open recalls (state 1, RecallState.REQUESTED).
    Index(
        "ix_recalls_requested_deadline",
        "deadline",
        postgresql_where=text("state = 1"),
        sqlite_where=text("state = 1"),
    ),
    Index(None, "creditor_bank", "requested_at"),
    Index(None, "debtor_bank", "requested_at"),
)

# Mid rates per FX provider, published by the provider (or by the operator
# for it): reference data (GLOBAL on CockroachDB). Rows stored before
# migration 0008 are the default provider's (FXHUB).
fx_rates = Table(
    "fx_rates",
    metadata,
    Column("provider", String(16), primary_key=True, server_default="FXHUB"),
    Column("base", String(3), primary_key=True),
    Column("quote", String(3), primary_key=True),
    Column("mid", String(48), nullable=False),  # exact decimal text
    Column("as_of", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    # The provider's spread on the pair; NULL: the hub's FxConfig spread.
    Column("spread_bps", Integer, nullable=True),
)

fx_quotes = Table(
    "fx_quotes",
    metadata,
    Column("id", Uuid(as_uuid=False), primary_key=True),
    Column("bank_code", String(16), nullable=False),
    Column("source_currency", String(3), nullable=False),
    Column("target_currency", String(3), nullable=False),
    Column("source_amount", BigInteger, nullable=False),
    Column("target_amount", BigInteger, nullable=False),
    Column("mid_rate", String(48), nullable=False),
    Column("rate", String(48), nullable=False),
    Column("spread_bps", Integer, nullable=False),
    Column("fee", BigInteger, nullable=False),
    Column("derivation", String(120), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("used_by", Uuid(as_uuid=False), nullable=True),
    Column("used_at", TS, nullable=True),
    # The FX provider that delivers it; NULL for quotes of the hub as dealer
    # before migration 0008 (no longer usable).
    Column("provider", String(16), nullable=True),
)

# The per-bank change feed (services/remitnet/services/adapters/db/feed.py). Every state change
# a bank cares about is appended here in the transaction that makes it. A
# bank's events are numbered by `feed_heads.seq`, a counter on the bank's own
# row that each event-writing transaction reads and advances: writers of one
# bank's feed conflict on that row, so seq order is commit order and a reader
# that has seen seq N has seen everything before it. No global sequence, no
# LISTEN/NOTIFY: it works the same on CockroachDB. `last_at` keeps event times
# strictly increasing per bank, which lets one event stand for a whole batch.
feed_heads = Table(
    "feed_heads",
    metadata,
    Column("bank_code", String(16), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("last_at", TS, nullable=False),
    # From then on every change of the bank is in its feed (the audit checks).
    Column("started_at", TS, nullable=False),
    home_region(),
)

events = Table(
    "events",
    metadata,
    Column("bank_code", String(16), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("at", TS, nullable=False),
    # EventKind: a batch of accepted transfers, one transfer, or a cycle.
    Column("kind", SmallInteger, nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("transfer_id", Uuid(as_uuid=False), nullable=True),
    Column("cycle_id", String(24), nullable=True),
    # LEGS events: the other cycle of the cross-currency transfers it names.
    Column("other_cycle_id", String(24), nullable=True),
    # How many stream items the event expands to (a batch: its transfers).
    Column("item_count", Integer, nullable=False),
    home_region(),
    Index(None, "bank_code", "at"),
)

# The operator audit trail (services/remitnet/services/domain/audit_trail.py): one row per
# operator action that changed state, appended in the action's transaction,
# hash-chained. `seq` is the previous row's plus one, read in the same
# transaction (no sequence): concurrent appenders conflict on the next key and
# one retries, so the chain has no gaps and no forks. `request` is the
# canonical JSON of the action's arguments, `digest` its SHA-256; `subject`
# names what the action was about (a bank code, a cycle id) so a settled
# cycle's SettleCycle row is found by it. GLOBAL on CockroachDB, like cycles.
operator_audit_log = Table(
    "operator_audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", TS, nullable=False),
    Column("principal", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("request", String(), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index(None, "subject", "action"),
)


# The ISO 20022 messages a bank sent that the hub answered (migration 0010),
# keyed by the bank and the message's MsgId: the same MsgId again is
# answered with `answer` (the document sent back the first time) when its
# `digest` (SHA-256 of the document's bytes) is the same, and refused when
# not, so nothing is cleared twice. Natural keys only (no sequence), homed
# with the sending bank's rows.
iso_messages = Table(
    "iso_messages",
    metadata,
    Column("bank", String(16), primary_key=True),
    Column("msg_id", String(35), primary_key=True),
    # The message definition, for example "pacs.008.001.08".
    Column("kind", String(16), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("answer", LargeBinary, nullable=False),
    Column("received_at", TS, nullable=False),
    home_region(),  # the sending bank's
)
