"""Prometheus metrics of the hub, in one place so names stay consistent.

Naming follows Prometheus conventions: base units (seconds), `_total` for
counters, and money as `_minor` (integer minor units of the labelled
currency). Label values are bounded: bank codes, currencies, regions,
method names and reason codes; never transfer ids.

Definitions only. What the engine, the servicers and the server's loops
report happened (service_layer/results.py) becomes these metrics in one
adapter, adapters/observe.py; the gRPC interceptor and admission (transport),
the database runner and the gauges collector set theirs directly.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 4000, 8000, 16000)

BUILD_INFO = Info("remitnet_build", "Version of the running hub.")

# gRPC RED metrics, with the label names of go-grpc-prometheus so that
# stock dashboards and recording rules apply.
GRPC_STARTED = Counter(
    "grpc_server_started_total",
    "RPCs started on the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from RPC start to completion on the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)

# Clearing.
TRANSFERS = Counter(
    "remitnet_transfers_total",
    "Transfers submitted, by outcome (accepted, replayed, rejected) and reason code: each "
    "once, netted or gross, refused in validation (singly or in a batch) or by the engine.",
    ["outcome", "reason"],
)
TRANSFER_VALUE = Counter(
    "remitnet_transfer_value_minor_total",
    "Value of accepted transfers in minor units of the currency.",
    ["currency"],
)
CORRIDOR_TRANSFERS = Counter(
    "remitnet_corridor_transfers_total",
    "Accepted transfers by debtor region, creditor region and currency.",
    ["debtor_region", "creditor_region", "currency"],
)
CORRIDOR_VALUE = Counter(
    "remitnet_corridor_value_minor_total",
    "Accepted value by debtor region, creditor region and currency, in minor units.",
    ["debtor_region", "creditor_region", "currency"],
)
#: Reasons for which a transfer can be refused, before the netting engine
#: (validation, singly or inside a batch), in it, or in gross settlement: the
#: label sets of remitnet_transfers_total that exist at zero from the start.
TRANSFER_REASONS = (
    "INVALID_TRANSFER_ID",
    "INVALID_AMOUNT",
    "AMOUNT_OUT_OF_RANGE",
    "UNKNOWN_CURRENCY",
    "CURRENCY_NOT_SUPPORTED",
    "UNKNOWN_PARTICIPANT",
    "PARTICIPANT_SUSPENDED",
    "SAME_DEBTOR_AND_CREDITOR",
    "REMITTANCE_INFO_TOO_LONG",
    "INVALID_CHARACTERS",
    "INVALID_ARGUMENT",
    "MISSING_FIELD",
    "BATCH_TOO_LARGE",
    "UNSTORABLE_VALUE",
    "INSUFFICIENT_LIQUIDITY",
    "DUPLICATE_WITH_DIFFERENT_CONTENT",
    "GROSS_NOT_CROSS_CURRENCY",
    "GROSS_NOT_IN_BATCH",
    "QUOTE_NOT_FOUND",
    "QUOTE_EXPIRED",
    "QUOTE_USED",
    "QUOTE_NOT_OWNED",
    "QUOTE_MISMATCH",
    "CONFIRMATION_TIMEOUT_OUT_OF_RANGE",
    "GROSS_NOT_CONFIRMABLE",
)


TRANSFERS_CANCELLED = Counter(
    "remitnet_transfers_cancelled_total",
    "Transfers cancelled, by whom (debtor, operator) and what they were (reserved: awaiting "
    "confirmation, its reservation released; netted: taken out of its open cycle).",
    ["by", "state"],
)

# Scheme lifecycle: payee confirmation, expiry, returns, recalls.
RESERVATIONS = Counter(
    "remitnet_reservations_total",
    "Transfers awaiting the creditor's confirmation, by outcome: reserved (taken), then "
    "once each accepted, rejected (reason: the creditor's ExternalStatusReason1Code), "
    "expired (reason AB05: unanswered by its deadline) or cancelled.",
    ["outcome", "reason"],
)
RETURNS = Counter(
    "remitnet_returns_total",
    "Returns netted (pacs.004), by ExternalReturnReason1Code (FOCR: answering a recall).",
    ["reason"],
)
RETURN_VALUE = Counter(
    "remitnet_return_value_minor_total",
    "Value of the returns netted, in minor units of the currency returned.",
    ["currency"],
)
RECALLS = Counter(
    "remitnet_recalls_total",
    "Recalls (camt.056) by event: requested (reason: ExternalCancellationReason1Code), "
    "accepted (answered by a return), rejected (reason: the creditor's camt.029 code), "
    "expired (unanswered within the window).",
    ["event", "reason"],
)
LIFECYCLE_REFUSALS = Counter(
    "remitnet_lifecycle_refusals_total",
    "Lifecycle requests refused, by operation (confirm, return, recall, answer_recall, "
    "cancel, operator_cancel) and reason code: each item once.",
    ["operation", "reason"],
)
LIFECYCLE_REPLAYS = Counter(
    "remitnet_lifecycle_replays_total",
    "Lifecycle requests that repeated an earlier one and changed nothing, by operation.",
    ["operation"],
)
EXPIRY_SECONDS = Histogram(
    "remitnet_expiry_duration_seconds",
    "Duration of one expiry transaction that expired something, retries included.",
    buckets=LATENCY_BUCKETS,
)
# From the database (the collector), per creditor bank: the bank that has to answer.
RESERVATIONS_OPEN = Gauge(
    "remitnet_reservations_open",
    "Transfers awaiting the confirmation of the creditor bank.",
    ["bank"],
)
RESERVATIONS_EXPIRING = Gauge(
    "remitnet_reservations_expiring",
    "Transfers awaiting the confirmation of the creditor bank whose deadline is within "
    "`within` (or past).",
    ["bank", "within"],
)
RESERVATIONS_OLDEST_DEADLINE = Gauge(
    "remitnet_reservations_oldest_deadline_timestamp_seconds",
    "Unix time of the earliest deadline of a transfer still awaiting confirmation (0: none). "
    "The expirer keeps it in the future; one in the past is a reservation not expired.",
)
RECALLS_OPEN = Gauge(
    "remitnet_recalls_open",
    "Recalls awaiting the answer of the creditor bank.",
    ["bank"],
)
RECALLS_EXPIRING = Gauge(
    "remitnet_recalls_expiring",
    "Recalls awaiting the answer of the creditor bank whose window ends within `within`.",
    ["bank", "within"],
)
RECALLS_OLDEST_OPEN = Gauge(
    "remitnet_recalls_oldest_open_timestamp_seconds",
    "Unix time at which the oldest recall awaiting the creditor bank's answer was requested "
    "(0: none).",
    ["bank"],
)
#: The gauges' `within` labels, and the horizons they count.
RESERVATIONS_EXPIRING_WITHIN = ("5s", 5.0)
RECALLS_EXPIRING_WITHIN = ("1h", 3600.0)

#: The label values of the lifecycle counters known in advance (the ISO
#: 20022 code tables of domain/lifecycle.py, which a test keeps equal).
REJECT_REASONS = (
    "AC01", "AC04", "AC06", "AC07", "AG01", "AG03", "AM05", "BE01", "BE05",
    "CNOR", "FF01", "MS02", "MS03", "RC01", "RR01", "RR02", "RR03", "RR04",
)  # fmt: skip
EXPIRY_REASON = "AB05"
RETURN_REASONS = (
    "AC01", "AC03", "AC04", "AC06", "AG01", "AM05", "BE04", "CUST",
    "FOCR", "FR01", "MD07", "MS02", "MS03", "RC01", "RR04",
)  # fmt: skip
RECALL_REASONS = (
    "AC03", "AGNT", "AM09", "CURR", "CUST", "CUTA", "DUPL", "FRAD", "TECH", "UPAY",
)  # fmt: skip
RECALL_REJECT_REASONS = ("AC04", "AGNT", "AM04", "ARDT", "CUST", "LEGL", "NOAS", "NOOR")
#: Per lifecycle operation, the reasons its requests are refused for.
LIFECYCLE_REFUSAL_REASONS: dict[str, tuple[str, ...]] = {
    "confirm": (
        "INVALID_TRANSFER_ID",
        "INVALID_ARGUMENT",
        "UNKNOWN_REASON_CODE",
        "TRANSFER_NOT_FOUND",
        "NOT_TRANSFER_CREDITOR",
        "TRANSFER_NOT_RESERVED",
        "TRANSFER_EXPIRED",
        "TRANSFER_REJECTED",
        "TRANSFER_ALREADY_ACCEPTED",
        "TRANSFER_NOT_CANCELLABLE",
        "CYCLE_NOT_OPEN",
        "AMOUNT_OUT_OF_RANGE",
    ),
    "return": (
        "MISSING_FIELD",
        "INVALID_TRANSFER_ID",
        "INVALID_ARGUMENT",
        "UNKNOWN_REASON_CODE",
        "TRANSFER_NOT_FOUND",
        "NOT_TRANSFER_CREDITOR",
        "TRANSFER_NOT_RETURNABLE",
        "ALREADY_RETURNED",
        "RETURN_QUOTE_REQUIRED",
        "INSUFFICIENT_LIQUIDITY",
        "DUPLICATE_WITH_DIFFERENT_CONTENT",
        "QUOTE_NOT_FOUND",
        "QUOTE_EXPIRED",
        "QUOTE_USED",
        "QUOTE_MISMATCH",
    ),
    "recall": (
        "MISSING_FIELD",
        "INVALID_TRANSFER_ID",
        "INVALID_ARGUMENT",
        "UNKNOWN_REASON_CODE",
        "TRANSFER_NOT_FOUND",
        "NOT_TRANSFER_DEBTOR",
        "TRANSFER_NOT_RETURNABLE",
        "ALREADY_RETURNED",
        "RECALL_EXISTS",
        "DUPLICATE_WITH_DIFFERENT_CONTENT",
    ),
    "answer_recall": (
        "INVALID_ARGUMENT",
        "UNKNOWN_REASON_CODE",
        "RECALL_NOT_FOUND",
        "NOT_TRANSFER_CREDITOR",
        "RECALL_NOT_OPEN",
        "RETURN_QUOTE_REQUIRED",
        "INSUFFICIENT_LIQUIDITY",
    ),
    "cancel": (
        "INVALID_TRANSFER_ID",
        "TRANSFER_NOT_FOUND",
        "NOT_TRANSFER_DEBTOR",
        "TRANSFER_NOT_CANCELLABLE",
    ),
    "operator_cancel": (
        "MISSING_FIELD",
        "INVALID_TRANSFER_ID",
        "TRANSFER_NOT_FOUND",
        "TRANSFER_NOT_CANCELLABLE",
        "CYCLE_NOT_OPEN",
        "CANCEL_EXCEEDS_CREDITOR_HEADROOM",
    ),
}

# Netting engine (group commit) and its controller.
BATCHES = Counter("remitnet_netting_batches_total", "Batches committed by the netting engine.")
BATCH_SIZE = Histogram(
    "remitnet_netting_batch_size",
    "Transfers per committed netting batch.",
    buckets=BATCH_BUCKETS,
)
BATCH_SECONDS = Histogram(
    "remitnet_netting_batch_duration_seconds",
    "Duration of one netting batch transaction, retries included.",
    buckets=LATENCY_BUCKETS,
)
QUEUE_ITEMS = Gauge("remitnet_netting_queue_items", "Transfers waiting for the next batch.")
NETTING_DROPPED = Counter(
    "remitnet_netting_dropped_total",
    "Transfers dropped from the netting queue: their caller went away before they were taken.",
)

# Per-bank bounds (fair share).
BANK_REFUSALS = Counter(
    "remitnet_bank_refusals_total",
    "Calls refused because the calling bank reached one of its bounds, by bank and reason "
    "(BANK_QUEUE_FULL, TOO_MANY_CONCURRENT_CALLS, TOO_MANY_STREAMS).",
    ["bank", "reason"],
)
BATCH_LIMIT = Gauge(
    "remitnet_netting_batch_limit", "Current maximum batch size chosen by the controller."
)
BATCH_LINGER = Gauge(
    "remitnet_netting_batch_linger_seconds",
    "Current time the engine waits to fill a batch, chosen by the controller.",
)

# Database units of work.
DB_TRANSACTIONS = Counter(
    "remitnet_db_transactions_total",
    "Serializable units of work, by unit and outcome (committed, failed).",
    ["unit", "outcome"],
)
DB_RETRIES = Counter(
    "remitnet_db_transaction_retries_total",
    "Units of work retried whole, by unit and reason (write_conflict: another "
    "transaction wrote the same row; serialization: a read/write cycle; deadlock, "
    "restart, locked, unique, ambiguous, disconnect, connect).",
    ["unit", "reason"],
)

# Cycles and settlement.
CYCLES_CLOSED = Counter(
    "remitnet_cycles_closed_total",
    "Settlement cycles closed, by currency and trigger (operator, schedule).",
    ["currency", "trigger"],
)
CYCLES_SETTLED = Counter(
    "remitnet_cycles_settled_total", "Settlement cycles settled, by currency.", ["currency"]
)
CYCLE_TRANSFERS = Gauge(
    "remitnet_cycle_transfers", "Transfers in the last closed cycle.", ["currency"]
)
CYCLE_GROSS = Gauge(
    "remitnet_cycle_gross_value_minor",
    "Gross value of the last closed cycle, minor units.",
    ["currency"],
)
CYCLE_NET = Gauge(
    "remitnet_cycle_net_value_minor",
    "Net value (sum of positive net positions) of the last closed cycle, minor units.",
    ["currency"],
)
CYCLE_OPEN_SINCE = Gauge(
    "remitnet_cycle_open_since_timestamp_seconds",
    "Unix time at which the currently open cycle of the currency was opened.",
    ["currency"],
)
CYCLE_SCHEDULE = Gauge(
    "remitnet_cycle_close_interval_seconds",
    "Configured interval between scheduled cycle closes (0: closed on demand only).",
)
CYCLES_UNSETTLED = Gauge(
    "remitnet_cycles_unsettled",
    "Closed cycles not yet settled, by currency.",
    ["currency"],
)
OLDEST_UNSETTLED = Gauge(
    "remitnet_cycle_oldest_unsettled_closed_timestamp_seconds",
    "Unix time at which the oldest closed, unsettled cycle was closed (0: none).",
    ["currency"],
)
SETTLEMENT_SECONDS = Histogram(
    "remitnet_settlement_duration_seconds",
    "Duration of the SettleCycle unit of work.",
    buckets=LATENCY_BUCKETS,
)
SETTLEMENT_LAG_SECONDS = Histogram(
    "remitnet_settlement_lag_seconds",
    "Time from a cycle's close to its settlement.",
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400),
)

# Per bank and currency (bounded by the number of participants).
BANK_BALANCE = Gauge(
    "remitnet_bank_balance_minor",
    "Ledger balance of a bank's settlement account, minor units.",
    ["bank", "currency"],
)
BANK_CAP = Gauge(
    "remitnet_bank_net_debit_cap_minor",
    "Net debit cap of a bank, minor units.",
    ["bank", "currency"],
)
BANK_UNSETTLED = Gauge(
    "remitnet_bank_unsettled_net_minor",
    "Net of a bank's accepted, unsettled transfers (negative: net debtor), minor units.",
    ["bank", "currency"],
)
BANK_HEADROOM = Gauge(
    "remitnet_bank_headroom_minor",
    "What a bank can still send: balance + cap + unsettled net - reserved, minor units.",
    ["bank", "currency"],
)
BANK_RESERVED = Gauge(
    "remitnet_bank_reserved_minor",
    "Held by a bank's (or FX provider's) transfers awaiting the creditor's confirmation, "
    "minor units.",
    ["bank", "currency"],
)

# FX.
FX_QUOTES = Counter(
    "remitnet_fx_quotes_total",
    "FX quotes by outcome (issued, used, expired, refused) and reason code.",
    ["outcome", "reason"],
)
FX_VOLUME = Counter(
    "remitnet_fx_volume_minor_total",
    "Source amount of accepted cross-currency transfers, minor units of the source currency.",
    ["source_currency", "target_currency"],
)
HUB_FX_POSITION = Gauge(
    "remitnet_hub_fx_position_minor",
    "The hub's open FX position per currency (settled plus unsettled), minor units.",
    ["currency"],
)
FX_REVENUE = Gauge(
    "remitnet_hub_fx_revenue_minor",
    "The hub's realised FX spread revenue per currency, minor units.",
    ["currency"],
)

# Gross settlement.
GROSS_TRANSFERS = Counter(
    "remitnet_gross_transfers_total",
    "Transfers settled gross, at once, by outcome (accepted, replayed, rejected).",
    ["outcome"],
)

WATCH_STREAMS = Gauge("remitnet_watch_streams", "WatchTransfers streams open on this replica.")
WATCH_EVENTS = Counter(
    "remitnet_watch_events_total", "Status events sent on WatchTransfers streams."
)
WATCH_REFUSED = Counter(
    "remitnet_watch_refused_total",
    "WatchTransfers streams refused before the first event, by reason.",
    ["reason"],
)
WATCH_REFUSAL_REASONS = (
    "TOO_MANY_STREAMS",
    "INVALID_RESUME_TOKEN",
    "INVALID_TIMESTAMP",
    "SHUTTING_DOWN",
    # The database away for longer than the stream's first read retries.
    "DATABASE_UNAVAILABLE",
    "RETRIES_EXHAUSTED",
)


def precreate(currencies: Iterable[str] = ()) -> None:
    """Create the label sets known in advance at zero, so that the first
    event of each is an increase that rate() and increase() see. With
    `currencies`, the per-currency cycle counters too."""
    TRANSFERS.labels("accepted", "")
    TRANSFERS.labels("replayed", "")
    for reason in TRANSFER_REASONS:
        TRANSFERS.labels("rejected", reason)
    for outcome in ("accepted", "replayed", "rejected"):
        GROSS_TRANSFERS.labels(outcome)
    for reason in WATCH_REFUSAL_REASONS:
        WATCH_REFUSED.labels(reason)
    FX_QUOTES.labels("issued", "")
    FX_QUOTES.labels("used", "")
    FX_QUOTES.labels("expired", "QUOTE_EXPIRED")
    for reason in ("QUOTE_NOT_FOUND", "QUOTE_USED", "QUOTE_NOT_OWNED", "QUOTE_MISMATCH"):
        FX_QUOTES.labels("refused", reason)
    for by, state in (("debtor", "reserved"), ("operator", "reserved"), ("operator", "netted")):
        TRANSFERS_CANCELLED.labels(by, state)
    for outcome in ("reserved", "accepted", "cancelled"):
        RESERVATIONS.labels(outcome, "")
    RESERVATIONS.labels("expired", EXPIRY_REASON)
    for reason in REJECT_REASONS:
        RESERVATIONS.labels("rejected", reason)
    for reason in RETURN_REASONS:
        RETURNS.labels(reason)
    for reason in RECALL_REASONS:
        RECALLS.labels("requested", reason)
    for reason in RECALL_REJECT_REASONS:
        RECALLS.labels("rejected", reason)
    RECALLS.labels("accepted", "")
    RECALLS.labels("expired", "")
    for operation, reasons in LIFECYCLE_REFUSAL_REASONS.items():
        LIFECYCLE_REPLAYS.labels(operation)
        for reason in reasons:
            LIFECYCLE_REFUSALS.labels(operation, reason)
    for currency in currencies:
        for trigger in ("operator", "schedule"):
            CYCLES_CLOSED.labels(currency, trigger)
        CYCLES_SETTLED.labels(currency)
        TRANSFER_VALUE.labels(currency)
        RETURN_VALUE.labels(currency)
