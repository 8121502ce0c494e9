"""The metrics adapter: turns what happened (service_layer/results.py) into
the hub's Prometheus metrics (adapters/metrics.py). The one place outside
the transport (interceptor, admission), the database runner and the gauges
collector that touches a metric.

Every result is counted once, by the observer the server wires into the
netting engine, the servicers and its background loops.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, get_args

from remitnet.services.adapters import metrics
from remitnet.services.domain.errors import Reason
from remitnet.services.domain.lifecycle import Recall, RecallState
from remitnet.services.domain.model import StoredTransfer, TransferStatus
from remitnet.services.domain.netting import Accepted, Rejected
from remitnet.services.service_layer.results import (
    BankRefused,
    BatchCommitted,
    BatchLimits,
    ConfirmationsAnswered,
    CycleClosed,
    CycleSettled,
    ExpiryRan,
    GrossSettled,
    LifecycleRefused,
    QueueDepth,
    QuotesAnswered,
    RecallChanged,
    RequestsDropped,
    Result,
    ReturnsCleared,
    TransferCancelled,
    TransfersRefused,
    WatchRefused,
    WatchSent,
    WatchStream,
)


class MetricsObserver:
    """An `Observer` that records every result in the default registry.

    Dispatch is one dict lookup by the result's type (a `match` over class
    patterns costs several times more): the engine reports the queue depth
    on every request."""

    def __init__(self) -> None:
        self._handlers: dict[type, Callable[[Any], None]] = {
            QueueDepth: _queue_depth,
            BatchCommitted: _batch,
            BatchLimits: _batch_limits,
            TransfersRefused: _refused,
            GrossSettled: _gross,
            QuotesAnswered: _quotes,
            WatchStream: _watch_stream,
            WatchSent: _watch_sent,
            WatchRefused: _watch_refused,
            RequestsDropped: _dropped,
            BankRefused: _bank_refused,
            CycleClosed: _cycle_closed,
            CycleSettled: _cycle_settled,
            ConfirmationsAnswered: _confirmations,
            ReturnsCleared: _returns,
            RecallChanged: _recall_changed,
            TransferCancelled: _cancelled,
            ExpiryRan: _expiry,
            LifecycleRefused: _lifecycle_refused,
        }
        missing = set(get_args(Result)) - self._handlers.keys()
        if missing:  # a result added to the union but not here
            raise TypeError(f"results without metrics: {sorted(t.__name__ for t in missing)}")

    def observe(self, result: Result) -> None:
        self._handlers[type(result)](result)


def _queue_depth(result: QueueDepth) -> None:
    metrics.QUEUE_ITEMS.set(result.items)


def _batch_limits(result: BatchLimits) -> None:
    metrics.BATCH_LIMIT.set(result.limit)
    metrics.BATCH_LINGER.set(result.linger_s)


def _refused(result: TransfersRefused) -> None:
    for reason, n in result.by_reason.items():
        if n:
            metrics.TRANSFERS.labels("rejected", reason).inc(n)


def _gross(result: GrossSettled) -> None:
    """Gross transfers count in remitnet_transfers_total like netted ones
    (and in remitnet_gross_transfers_total besides)."""
    outcome = result.outcome
    if isinstance(outcome, Accepted):
        label = "replayed" if outcome.replayed else "accepted"
        metrics.GROSS_TRANSFERS.labels(label).inc()
        metrics.TRANSFERS.labels(label, "").inc()
        if not outcome.replayed:
            t = outcome.transfer
            metrics.TRANSFER_VALUE.labels(t.currency).inc(t.amount)
    else:
        metrics.GROSS_TRANSFERS.labels("rejected").inc()
        metrics.TRANSFERS.labels("rejected", outcome.error.reason).inc()


def _quotes(result: QuotesAnswered) -> None:
    if result.issued:
        metrics.FX_QUOTES.labels("issued", "").inc(result.issued)
    for reason, n in result.refused.items():
        metrics.FX_QUOTES.labels("refused", reason).inc(n)


def _watch_stream(result: WatchStream) -> None:
    if result.opened:
        metrics.WATCH_STREAMS.inc()
    else:
        metrics.WATCH_STREAMS.dec()


def _watch_sent(result: WatchSent) -> None:
    metrics.WATCH_EVENTS.inc(result.events)


def _watch_refused(result: WatchRefused) -> None:
    metrics.WATCH_REFUSED.labels(result.reason).inc()


def _dropped(result: RequestsDropped) -> None:
    metrics.NETTING_DROPPED.inc(result.items)


def _bank_refused(result: BankRefused) -> None:
    metrics.BANK_REFUSALS.labels(result.bank, result.reason).inc()


def _cycle_closed(result: CycleClosed) -> None:
    currency = result.currency
    metrics.CYCLES_CLOSED.labels(currency, result.trigger).inc()
    metrics.CYCLE_TRANSFERS.labels(currency).set(result.transfer_count)
    metrics.CYCLE_GROSS.labels(currency).set(result.gross_value)
    metrics.CYCLE_NET.labels(currency).set(result.net_value)
    metrics.CYCLE_OPEN_SINCE.labels(currency).set(result.next_opened_at.timestamp())


def _cycle_settled(result: CycleSettled) -> None:
    if result.already_settled:  # a replay settled nothing
        return
    metrics.CYCLES_SETTLED.labels(result.currency).inc()
    metrics.SETTLEMENT_SECONDS.observe(result.seconds)
    if result.lag_s is not None:
        metrics.SETTLEMENT_LAG_SECONDS.observe(result.lag_s)


def _batch(result: BatchCommitted) -> None:
    """A committed netting transaction. Aggregated per label set first: a
    batch holds thousands of transfers between a few dozen pairs, and a
    labelled metric update costs far more than a dict update."""
    metrics.BATCHES.inc()
    metrics.BATCH_SIZE.observe(len(result.outcomes))
    metrics.BATCH_SECONDS.observe(result.seconds)
    new = result.new_transfers
    outcomes: Counter[tuple[str, str]] = Counter()
    if len(result.outcomes) != len(new):  # some were rejected or replayed
        for o in result.outcomes:
            if isinstance(o, Rejected):
                outcomes["rejected", o.error.reason] += 1
                if o.error.reason.startswith("QUOTE_"):
                    expired = o.error.reason == Reason.QUOTE_EXPIRED
                    metrics.FX_QUOTES.labels(
                        "expired" if expired else "refused", o.error.reason
                    ).inc()
            elif o.replayed:
                outcomes["replayed", ""] += 1
    outcomes["accepted", ""] = len(new)
    for (outcome, reason), n in outcomes.items():
        if n:
            metrics.TRANSFERS.labels(outcome, reason).inc(n)
    # Per (debtor, creditor, currency, credited currency) first;
    # creditor_currency is set exactly on cross-currency transfers.
    count: Counter[tuple[str, str, str, str | None]] = Counter()
    value: Counter[tuple[str, str, str, str | None]] = Counter()
    reserved = 0  # awaiting the creditor's confirmation (a deadline)
    for t in new:
        key = (t.debtor, t.creditor, t.currency, t.creditor_currency)
        count[key] += 1
        value[key] += t.amount
        if t.deadline is not None:
            reserved += 1
    if reserved:
        metrics.RESERVATIONS.labels("reserved", "").inc(reserved)
    regions = result.regions
    by_currency: Counter[str] = Counter()
    corridors: Counter[tuple[str, str, str]] = Counter()
    corridor_value: Counter[tuple[str, str, str]] = Counter()
    fx_volume: Counter[tuple[str, str]] = Counter()
    fx_used = 0
    for key, n in count.items():
        debtor, creditor, currency, credited = key
        amount = value[key]
        by_currency[currency] += amount
        corridor = (regions.get(debtor, ""), regions.get(creditor, ""), currency)
        corridors[corridor] += n
        corridor_value[corridor] += amount
        if credited is not None:
            fx_used += n
            fx_volume[currency, credited] += amount
    for currency, amount in by_currency.items():
        metrics.TRANSFER_VALUE.labels(currency).inc(amount)
    for corridor, n in corridors.items():
        metrics.CORRIDOR_TRANSFERS.labels(*corridor).inc(n)
        metrics.CORRIDOR_VALUE.labels(*corridor).inc(corridor_value[corridor])
    if fx_used:
        metrics.FX_QUOTES.labels("used", "").inc(fx_used)
    for (source, target), amount in fx_volume.items():
        metrics.FX_VOLUME.labels(source, target).inc(amount)
    # Per-bank gauges are not set here: this process sees only its own
    # batches. The server's collector reads them from the database.


# Scheme lifecycle -----------------------------------------------------------


def _count_refusals(operation: str, by_reason: Counter[str]) -> None:
    for reason, n in by_reason.items():
        metrics.LIFECYCLE_REFUSALS.labels(operation, reason).inc(n)


def _confirmations(result: ConfirmationsAnswered) -> None:
    """Per answer: the reservation's end (accepted, or rejected with the
    creditor's code), a replay, or a refusal with the hub's reason."""
    ends: Counter[tuple[str, str]] = Counter()
    refused: Counter[str] = Counter()
    replays = 0
    for o in result.outcomes:
        if isinstance(o, Rejected):
            refused[o.error.reason] += 1
        elif o.replayed:
            replays += 1
        elif o.transfer.status is TransferStatus.REJECTED:
            ends["rejected", o.transfer.reason or ""] += 1
        else:
            ends["accepted", ""] += 1
    if result.expired:
        # Refused TRANSFER_EXPIRED too; this is the reservation's end.
        ends["expired", metrics.EXPIRY_REASON] += result.expired
    for (outcome, reason), n in ends.items():
        metrics.RESERVATIONS.labels(outcome, reason).inc(n)
    if replays:
        metrics.LIFECYCLE_REPLAYS.labels("confirm").inc(replays)
    _count_refusals("confirm", refused)


def _returned(t: StoredTransfer) -> None:
    metrics.RETURNS.labels(t.reason or "").inc()
    metrics.RETURN_VALUE.labels(t.currency).inc(t.amount)


def _returns(result: ReturnsCleared) -> None:
    refused: Counter[str] = Counter()
    for o in result.outcomes:
        if isinstance(o, Rejected):
            refused[o.error.reason] += 1
        elif o.replayed:
            metrics.LIFECYCLE_REPLAYS.labels("return").inc()
        else:
            _returned(o.transfer)
    _count_refusals("return", refused)
    for recall in result.recalls:  # answered by a plain ReturnTransfer
        _recall_ended(recall)


def _recall_changed(result: RecallChanged) -> None:
    recall = result.recall
    state = recall.state
    if result.replayed:
        operation = "recall" if state is RecallState.REQUESTED else "answer_recall"
        metrics.LIFECYCLE_REPLAYS.labels(operation).inc()
    elif state is RecallState.REQUESTED:
        metrics.RECALLS.labels("requested", recall.reason).inc()
    else:
        _recall_ended(recall)
        if result.returned is not None:
            _returned(result.returned)


def _recall_ended(recall: Recall) -> None:
    """An answered recall, by its end (ACCEPTED, REJECTED with the
    creditor's code, or EXPIRED)."""
    state = recall.state
    if state is RecallState.ACCEPTED:
        metrics.RECALLS.labels("accepted", "").inc()
    elif state is RecallState.REJECTED:
        metrics.RECALLS.labels("rejected", recall.answer_reason or "").inc()
    else:
        metrics.RECALLS.labels("expired", "").inc()


def _cancelled(result: TransferCancelled) -> None:
    if result.replayed:
        metrics.LIFECYCLE_REPLAYS.labels("operator_cancel" if result.operator else "cancel").inc()
        return
    if result.expired:  # too late to cancel: the call expired it
        metrics.RESERVATIONS.labels("expired", metrics.EXPIRY_REASON).inc()
        return
    by = "operator" if result.operator else "debtor"
    metrics.TRANSFERS_CANCELLED.labels(by, "reserved" if result.reserved else "netted").inc()
    if result.reserved:
        metrics.RESERVATIONS.labels("cancelled", "").inc()


def _expiry(result: ExpiryRan) -> None:
    """An expiry transaction: what it expired. Runs that found nothing due
    (most of them: the expirer looks several times a second) observe no
    duration."""
    if result.transfers:
        metrics.RESERVATIONS.labels("expired", metrics.EXPIRY_REASON).inc(result.transfers)
    if result.recalls:
        metrics.RECALLS.labels("expired", "").inc(result.recalls)
    if result.transfers or result.recalls:
        metrics.EXPIRY_SECONDS.observe(result.seconds)


def _lifecycle_refused(result: LifecycleRefused) -> None:
    for reason, n in result.by_reason.items():
        if n:
            metrics.LIFECYCLE_REFUSALS.labels(result.operation, reason).inc(n)
