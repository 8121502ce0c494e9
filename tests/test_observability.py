"""Every metric that the alert rules and the Grafana dashboards query is one the
services export (prometheus_client's default registry after importing the
hub's metrics module), or a recording rule defined in the rules file."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "k8s/components/monitoring/rules/remitnet.rules.yaml"
DASHBOARDS = ROOT / "k8s/components/grafana-dashboards/dashboards"


def _import_metrics() -> None:
    try:
        importlib.import_module("remitnet.services.adapters.metrics")
    except ImportError:
        # TODO: drop once the remitnet package is installed in every environment.
        name = "_remitnet_metrics"
        if name in sys.modules:
            return
        spec = importlib.util.spec_from_file_location(
            name, ROOT / "services" / "remitnet" / "services" / "adapters" / "metrics.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


def exported_names() -> set[str]:
    """Series names the process exposes, whether or not a child exists yet."""
    _import_metrics()
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found = re.findall(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)\b(?!\s*\()", text)
    return {name for name in found if name.lower() not in _KEYWORDS}


def test_metric_name_parser() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (grpc_method, le) ("
        'rate(grpc_server_handling_seconds_bucket{grpc_service=~"$service", le!="1e3"}'
        "[$__rate_interval])))"
        " / on () group_left () (1.5 * max(remitnet:x:ratio > 0)) and time() - foo offset 5m"
    )
    assert metric_names(expr) == {"grpc_server_handling_seconds_bucket", "remitnet:x:ratio", "foo"}
    assert metric_names("topk(10, sum without (instance) (increase(a_total[1h]) or b))") == {
        "a_total",
        "b",
    }


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def _dashboard_queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every dashboard target and query variable."""
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        panels: list[dict[str, Any]] = list(dashboard["panels"])
        while panels:
            panel = panels.pop(0)
            panels.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", str(target["expr"])
        for var in dashboard.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                match = re.fullmatch(r"label_values\(\s*([^,]+),\s*\w+\s*\)", str(query))
                assert match, f"{path.name}: variable {var['name']}: {query}"
                yield f"{path.name}: variable {var['name']}", match.group(1)


def test_exported_names_include_the_hub_metrics() -> None:
    names = exported_names()
    assert {
        "remitnet_transfers_total",
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "remitnet_netting_batch_size_count",
        "remitnet_bank_headroom_minor",
        "remitnet_build_info",
    } <= names


def test_rules_use_exported_metrics() -> None:
    exported = exported_names()
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    assert all(":" in name for name in recorded), "recording rules are named level:metric:ops"
    for rule in _rules():
        names = metric_names(rule["expr"])
        assert names, rule
        unknown = names - exported - recorded
        assert not unknown, f"{rule.get('record') or rule.get('alert')}: {sorted(unknown)}"


def test_dashboards_use_exported_metrics() -> None:
    exported = exported_names()
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    queries = list(_dashboard_queries())
    assert len(queries) > 30
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: {expr}"
        unknown = names - exported - recorded
        assert not unknown, f"{where}: {sorted(unknown)} in {expr}"


@pytest.mark.parametrize(
    ("dashboard", "required"),
    [
        (
            "hub-overview.json",
            {
                "remitnet_transfers_total",
                "grpc_server_handling_seconds_bucket",
                "remitnet_netting_batch_size_bucket",
                "remitnet_db_transaction_retries_total",
            },
        ),
        (
            "netting-settlement.json",
            {
                "remitnet_cycles_closed_total",
                "remitnet_cycle_gross_value_minor",
                "remitnet_cycle_net_value_minor",
                "remitnet:cycle_netting_efficiency:ratio",
                "remitnet_settlement_duration_seconds_bucket",
            },
        ),
        (
            "banks.json",
            {
                "remitnet_bank_headroom_minor",
                "remitnet:bank_headroom_over_cap:ratio",
                "remitnet_corridor_transfers_total",
                "remitnet_corridor_value_minor_total",
            },
        ),
        # The scheme lifecycle (issue 14): reservations about to expire,
        # unanswered recalls; per creditor bank on the banks dashboard.
        (
            "hub-overview.json",
            {
                "remitnet_reservations_total",
                "remitnet:reservations_expired:ratio_rate5m",
                "remitnet_reservations_expiring",
                "remitnet_reservations_oldest_deadline_timestamp_seconds",
                "remitnet_returns_total",
                "remitnet_recalls_total",
                "remitnet_recalls_open",
                "remitnet_recalls_oldest_open_timestamp_seconds",
                "remitnet_lifecycle_refusals_total",
            },
        ),
        (
            "banks.json",
            {
                "remitnet_reservations_open",
                "remitnet_reservations_expiring",
                "remitnet_bank_reserved_minor",
                "remitnet_recalls_open",
                "remitnet_recalls_expiring",
            },
        ),
    ],
)
def test_dashboards_show_what_the_operator_needs(dashboard: str, required: set[str]) -> None:
    used: set[str] = set()
    for where, expr in _dashboard_queries():
        if where.startswith(dashboard):
            used |= metric_names(expr)
    assert required <= used


def test_dashboards_are_well_formed() -> None:
    uids = set()
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] not in uids
        uids.add(dashboard["uid"])
        assert dashboard["title"].startswith("remitnet / ")
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, (path.name, panel["title"])
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert len(uids) == 3


# The metrics tell the truth (issue 18, item 7) ---------------------------------


def _value(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _rejected(reason: str) -> float:
    return _value("remitnet_transfers_total", outcome="rejected", reason=reason)


async def test_known_label_sets_exist_at_zero_before_their_first_event(sqlite_url: str) -> None:
    """A labelled counter that appears at 1 has no zero before it, and
    rate()/increase() miss that first event: the label sets known in advance
    are exported from the start."""
    from tests.support import start_hub

    hub = await start_hub(sqlite_url)
    try:
        for reason in ("SAME_DEBTOR_AND_CREDITOR", "UNKNOWN_CURRENCY", "INSUFFICIENT_LIQUIDITY"):
            labels = {"outcome": "rejected", "reason": reason}
            assert REGISTRY.get_sample_value("remitnet_transfers_total", labels) is not None
        for outcome in ("accepted", "replayed"):
            labels = {"outcome": outcome, "reason": ""}
            assert REGISTRY.get_sample_value("remitnet_transfers_total", labels) is not None
        await hub.operator.create_bank("ZEROBANK01", "Zero", "us-east1", ["CHF"])
        from remitnet.services.adapters import collector

        collector.refresh(hub.db)
        for trigger in ("operator", "schedule"):
            labels = {"currency": "CHF", "trigger": trigger}
            assert REGISTRY.get_sample_value("remitnet_cycles_closed_total", labels) == 0.0
        labels = {"currency": "CHF"}
        assert REGISTRY.get_sample_value("remitnet_cycles_settled_total", labels) == 0.0
    finally:
        await hub.stop()


async def test_every_refusal_is_counted_once_with_its_reason(sqlite_url: str) -> None:
    """Refusals before the netting engine (validation, singly and inside a
    batch) and gross transfers count in remitnet_transfers_total, once."""
    from remitnet.clients.bank import instruction
    from remitnet.clients.errors import HubError
    from tests.support import start_hub

    hub = await start_hub(sqlite_url)
    try:
        await hub.onboard({"OBSUS01": "us-east1", "OBSEU01": "europe-west1"}, ["USD"])
        us = hub.bank("OBSUS01")
        same = _rejected("SAME_DEBTOR_AND_CREDITOR")
        unknown = _rejected("UNKNOWN_CURRENCY")
        liquidity = _rejected("INSUFFICIENT_LIQUIDITY")
        accepted = _value("remitnet_transfers_total", outcome="accepted", reason="")
        with pytest.raises(HubError):
            await us.submit(instruction("OBSUS01", "USD", 100))
        assert _rejected("SAME_DEBTOR_AND_CREDITOR") == same + 1
        batch = [
            instruction("OBSUS01", "USD", 100),  # to itself
            instruction("OBSEU01", "XXQ", 100),  # unknown currency
            instruction("OBSEU01", "USD", 10**12),  # decided by the engine
            instruction("OBSEU01", "USD", 100),
        ]
        response = await us.submit_batch(batch)
        assert response.accepted_count == 1
        assert _rejected("SAME_DEBTOR_AND_CREDITOR") == same + 2
        assert _rejected("UNKNOWN_CURRENCY") == unknown + 1
        assert _rejected("INSUFFICIENT_LIQUIDITY") == liquidity + 1
        assert _value("remitnet_transfers_total", outcome="accepted", reason="") == accepted + 1
        # Gross: counted like netted transfers, accepted and refused.
        await us.submit(instruction("OBSEU01", "USD", 10, gross=True))
        with pytest.raises(HubError):
            await us.submit(instruction("OBSEU01", "USD", 10**12, gross=True))
        assert _value("remitnet_transfers_total", outcome="accepted", reason="") == accepted + 2
        assert _rejected("INSUFFICIENT_LIQUIDITY") == liquidity + 2
    finally:
        await hub.stop()


async def test_bank_gauges_come_from_the_database_and_leave_the_hub_out(
    sqlite_url: str,
) -> None:
    """The netting engine does not set per-bank gauges (each replica would
    report its own last batch); the collector reads them from the database,
    and the hub's own accounts (owner HUB) are not a bank in them."""
    from remitnet.clients.bank import instruction
    from remitnet.services.adapters import collector
    from tests.support import start_hub

    hub = await start_hub(sqlite_url)
    try:
        await hub.operator.update_rates({("USD", "EUR"): "0.92"})
        await hub.onboard({"GAUS01": "us-east1", "GAEU01": "europe-west1"}, ["USD", "EUR"])
        await hub.fund_provider(["EUR"], 10**9)  # the default provider FXHUB sells the EUR
        us = hub.bank("GAUS01")
        sentinel = -123.0
        gauge = "remitnet_bank_unsettled_net_minor"
        from remitnet.services.adapters import metrics

        metrics.BANK_UNSETTLED.labels("GAUS01", "USD").set(sentinel)
        quote = await us.quote("USD", "EUR", source_amount=1_000)
        await us.submit_batch(
            [
                instruction("GAEU01", "USD", 2_500),
                instruction("GAEU01", "USD", 1_000, quote_id=quote.quote_id),
            ]
        )
        # Not from the batch ...
        assert _value(gauge, bank="GAUS01", currency="USD") == sentinel
        # ... but from the database, on the collector's interval.
        collector.refresh(hub.db)
        assert _value(gauge, bank="GAUS01", currency="USD") == -3_500
        assert _value("remitnet_bank_headroom_minor", bank="GAUS01", currency="USD") > 0
        for family in REGISTRY.collect():
            if family.name.startswith("remitnet_bank_"):
                banks = {s.labels.get("bank") for s in family.samples}
                assert "HUB" not in banks, family.name
        # A conversion's legs are its FX provider's, a participant like a
        # bank: they show in its gauges, and the hub takes no FX position.
        assert _value(gauge, bank="FXHUB", currency="USD") == 1_000
        assert _value("remitnet_hub_fx_position_minor", currency="USD") == 0
    finally:
        await hub.stop()


# The scheme lifecycle (issue 14, item 5) ----------------------------------------


def test_lifecycle_label_values_are_the_domain_code_tables() -> None:
    """metrics.py carries no imports of the hub (it loads on its own): its
    tables of the ISO 20022 codes and reasons it pre-creates are the
    domain's."""
    from remitnet.services.adapters import metrics
    from remitnet.services.domain import lifecycle
    from remitnet.services.domain.errors import Reason

    assert set(metrics.REJECT_REASONS) == set(lifecycle.REJECT_REASONS)
    assert metrics.EXPIRY_REASON == lifecycle.EXPIRY_REASON
    assert set(metrics.RETURN_REASONS) == set(lifecycle.RETURN_REASONS)
    assert lifecycle.RECALL_RETURN_REASON in metrics.RETURN_REASONS
    assert set(metrics.RECALL_REASONS) == set(lifecycle.RECALL_REASONS)
    assert set(metrics.RECALL_REJECT_REASONS) == set(lifecycle.RECALL_REJECT_REASONS)
    reasons = {v for k, v in vars(Reason).items() if k.isupper() and isinstance(v, str)}
    for operation, known in metrics.LIFECYCLE_REFUSAL_REASONS.items():
        assert set(known) <= reasons, operation
    assert set(metrics.TRANSFER_REASONS) <= reasons


def test_every_result_has_its_metrics() -> None:
    from typing import get_args

    from remitnet.services.adapters.observe import MetricsObserver
    from remitnet.services.service_layer.results import Result

    observer = MetricsObserver()  # raises on a result without a handler
    assert {"ConfirmationsAnswered", "ExpiryRan", "LifecycleRefused"} <= {
        t.__name__ for t in get_args(Result)
    }
    assert observer is not None


def _samples(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of metric family sample `name`, by its labels."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


_LIFECYCLE_COUNTERS = (
    "remitnet_reservations_total",
    "remitnet_returns_total",
    "remitnet_return_value_minor_total",
    "remitnet_recalls_total",
    "remitnet_lifecycle_refusals_total",
    "remitnet_lifecycle_replays_total",
    "remitnet_transfers_cancelled_total",
    "remitnet_transfers_total",
)


def _snapshot() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    return {name: _samples(name) for name in _LIFECYCLE_COUNTERS}


def _increases(
    before: dict[str, dict[tuple[tuple[str, str], ...], float]],
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(metric, labels) -> increase since `before`, the changed ones only."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for name, samples in _snapshot().items():
        for labels, value in samples.items():
            delta = value - before[name].get(labels, 0.0)
            if delta:
                out[name, labels] = delta
    return out


def _key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


async def test_lifecycle_label_sets_exist_at_zero(sqlite_url: str) -> None:
    from tests.support import start_hub

    hub = await start_hub(sqlite_url)
    try:
        for name, labels in [
            ("remitnet_reservations_total", {"outcome": "reserved", "reason": ""}),
            ("remitnet_reservations_total", {"outcome": "rejected", "reason": "AC04"}),
            ("remitnet_reservations_total", {"outcome": "expired", "reason": "AB05"}),
            ("remitnet_reservations_total", {"outcome": "cancelled", "reason": ""}),
            ("remitnet_returns_total", {"reason": "FOCR"}),
            ("remitnet_recalls_total", {"event": "requested", "reason": "DUPL"}),
            ("remitnet_recalls_total", {"event": "rejected", "reason": "NOAS"}),
            ("remitnet_recalls_total", {"event": "expired", "reason": ""}),
            (
                "remitnet_lifecycle_refusals_total",
                {"operation": "confirm", "reason": "TRANSFER_EXPIRED"},
            ),
            ("remitnet_lifecycle_replays_total", {"operation": "answer_recall"}),
            ("remitnet_transfers_cancelled_total", {"by": "operator", "state": "netted"}),
            (
                "remitnet_transfers_total",
                {"outcome": "rejected", "reason": "CONFIRMATION_TIMEOUT_OUT_OF_RANGE"},
            ),
        ]:
            assert REGISTRY.get_sample_value(name, labels) is not None, (name, labels)
    finally:
        await hub.stop()


async def test_a_scripted_lifecycle_session_gives_exactly_its_samples(sqlite_url: str) -> None:
    """Each reservation counts once when taken and once when it ends; each
    return, recall event, cancel, refusal (by operation and reason) and
    replay once; nothing of it as a refused transfer submission."""
    from remitnet.clients.bank import acceptance, instruction, rejection
    from remitnet.clients.errors import HubError
    from remitnet.services.service_layer.lifecycle import LifecycleConfig
    from tests.support import start_hub

    hub = await start_hub(sqlite_url, lifecycle=LifecycleConfig(expiry_interval_s=0.05))
    try:
        await hub.onboard({"LCDEB01": "us-east1", "LCCRE01": "europe-west1"}, ["USD"])
        debtor, creditor = hub.bank("LCDEB01"), hub.bank("LCCRE01")
        before = _snapshot()

        def reserved(amount: int) -> Any:
            return instruction("LCCRE01", "USD", amount, require_confirmation=True)

        accepted = (await debtor.submit(reserved(100))).transfer.transfer_id
        rejected = (await debtor.submit(reserved(200))).transfer.transfer_id
        cancelled = (await debtor.submit(reserved(300))).transfer.transfer_id
        item = instruction("LCCRE01", "USD", 400, confirmation_timeout=0.05)
        expiring = (await debtor.submit(item)).transfer.transfer_id
        await creditor.confirm(accepted)
        assert (await creditor.confirm(accepted)).replayed  # a replay
        await creditor.reject(rejected, "AC04")
        with pytest.raises(HubError, match="TRANSFER_REJECTED"):
            await creditor.confirm(rejected)
        with pytest.raises(HubError, match="NOT_TRANSFER_CREDITOR"):
            await debtor.confirm(cancelled)
        batch = await creditor.confirm_many(
            [acceptance(accepted), rejection("not-an-id", "AC01"), rejection(cancelled, "ZZ99")]
        )
        assert batch.accepted_count == 1
        await debtor.cancel(cancelled)
        await debtor.cancel(cancelled)  # cancelled before: a replay
        for _ in range(100):
            if (await debtor.get(expiring)).reason == "AB05":
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the expirer did not expire the reservation")

        # Returns and recalls of netted transfers.
        returned = (await debtor.submit(instruction("LCCRE01", "USD", 50))).transfer.transfer_id
        rid = "0190c5b2-7d4e-7a11-8a3c-000000000001"
        await creditor.return_transfer(returned, "AC04", return_id=rid)
        assert (await creditor.return_transfer(returned, "AC04", return_id=rid)).replayed
        with pytest.raises(HubError, match="ALREADY_RETURNED"):
            await creditor.return_transfer(returned, "AC04")
        refused = (await debtor.submit(instruction("LCCRE01", "USD", 60))).transfer.transfer_id
        await debtor.recall(refused, "DUPL")
        with pytest.raises(HubError, match="RECALL_EXISTS"):
            await debtor.recall(refused, "DUPL")
        await creditor.answer_recall(refused, accept=False, reason="CUST")
        assert (await creditor.answer_recall(refused, accept=False, reason="CUST")).replayed
        answered = (await debtor.submit(instruction("LCCRE01", "USD", 70))).transfer.transfer_id
        await debtor.recall(answered, "FRAD")
        await creditor.answer_recall(answered, accept=True)
        # A plain return answers the open recall too: accepted, counted once.
        plain = (await debtor.submit(instruction("LCCRE01", "USD", 90))).transfer.transfer_id
        await debtor.recall(plain, "TECH")
        await creditor.return_transfer(plain, "AC04")
        taken_back = (await debtor.submit(instruction("LCCRE01", "USD", 80))).transfer.transfer_id
        await hub.operator.cancel_transfer(taken_back, "court order")

        r, rf, rp = (
            "remitnet_reservations_total",
            "remitnet_lifecycle_refusals_total",
            "remitnet_lifecycle_replays_total",
        )
        assert _increases(before) == {
            _key(r, outcome="reserved", reason=""): 4,
            _key(r, outcome="accepted", reason=""): 1,
            _key(r, outcome="rejected", reason="AC04"): 1,
            _key(r, outcome="cancelled", reason=""): 1,
            _key(r, outcome="expired", reason="AB05"): 1,
            _key(rp, operation="confirm"): 2,
            _key(rf, operation="confirm", reason="TRANSFER_REJECTED"): 1,
            _key(rf, operation="confirm", reason="NOT_TRANSFER_CREDITOR"): 1,
            _key(rf, operation="confirm", reason="INVALID_TRANSFER_ID"): 1,
            _key(rf, operation="confirm", reason="UNKNOWN_REASON_CODE"): 1,
            _key("remitnet_transfers_cancelled_total", by="debtor", state="reserved"): 1,
            _key(rp, operation="cancel"): 1,
            _key("remitnet_returns_total", reason="AC04"): 2,
            _key("remitnet_returns_total", reason="FOCR"): 1,
            _key("remitnet_return_value_minor_total", currency="USD"): 50 + 70 + 90,
            _key(rp, operation="return"): 1,
            _key(rf, operation="return", reason="ALREADY_RETURNED"): 1,
            _key("remitnet_recalls_total", event="requested", reason="DUPL"): 1,
            _key("remitnet_recalls_total", event="requested", reason="FRAD"): 1,
            _key("remitnet_recalls_total", event="requested", reason="TECH"): 1,
            _key(rf, operation="recall", reason="RECALL_EXISTS"): 1,
            _key("remitnet_recalls_total", event="rejected", reason="CUST"): 1,
            _key(rp, operation="answer_recall"): 1,
            _key("remitnet_recalls_total", event="accepted", reason=""): 2,
            _key("remitnet_transfers_cancelled_total", by="operator", state="netted"): 1,
            # Submissions: the four reserved and the five netted, accepted.
            _key("remitnet_transfers_total", outcome="accepted", reason=""): 9,
        }
    finally:
        await hub.stop()


async def test_an_expiry_found_by_a_late_answer_counts_as_an_expiry(sqlite_url: str) -> None:
    """A confirmation, or a debtor's cancel, that comes after the deadline
    and before the expirer expires the reservation there: counted once as
    expired (AB05), the confirmation also as refused TRANSFER_EXPIRED; not
    as a cancel."""
    from remitnet.clearing.v1 import clearing_pb2 as cpb
    from remitnet.clients.bank import instruction
    from remitnet.clients.errors import HubError
    from remitnet.services.service_layer.lifecycle import LifecycleConfig
    from tests.support import start_hub

    # The expirer looks once an hour: the late calls get there first.
    hub = await start_hub(sqlite_url, lifecycle=LifecycleConfig(expiry_interval_s=3_600))
    try:
        await hub.onboard({"LXDEB01": "us-east1", "LXCRE01": "europe-west1"}, ["USD"])
        debtor, creditor = hub.bank("LXDEB01"), hub.bank("LXCRE01")
        confirmed, cancelled = [
            (
                await debtor.submit(instruction("LXCRE01", "USD", 10, confirmation_timeout=0.05))
            ).transfer.transfer_id
            for _ in range(2)
        ]
        await asyncio.sleep(0.1)
        before = _snapshot()
        with pytest.raises(HubError, match="TRANSFER_EXPIRED"):
            await creditor.confirm(confirmed)
        answer = await debtor.cancel(cancelled)
        assert (answer.status, answer.reason) == (cpb.TRANSFER_STATUS_EXPIRED, "AB05")
        assert _increases(before) == {
            _key("remitnet_reservations_total", outcome="expired", reason="AB05"): 2,
            _key(
                "remitnet_lifecycle_refusals_total", operation="confirm", reason="TRANSFER_EXPIRED"
            ): 1,
        }
    finally:
        await hub.stop()


async def test_lifecycle_gauges_come_from_the_database(db_url: str) -> None:
    """Open reservations and recalls per creditor bank, how many are near
    their deadline, what the debtor has reserved; back to 0 once answered."""
    from datetime import UTC, timedelta

    from remitnet.clients.bank import instruction
    from remitnet.services.adapters import collector
    from tests.support import start_hub

    hub = await start_hub(db_url)
    try:
        await hub.onboard({"LGDEB01": "us-east1", "LGCRE01": "europe-west1"}, ["USD"])
        debtor, creditor = hub.bank("LGDEB01"), hub.bank("LGCRE01")
        item = instruction("LGCRE01", "USD", 1_234, require_confirmation=True)
        pending = (await debtor.submit(item)).transfer
        netted = (await debtor.submit(instruction("LGCRE01", "USD", 10))).transfer
        recall = (await debtor.recall(netted.transfer_id, "TECH")).recall
        collector.refresh(hub.db)
        assert _value("remitnet_reservations_open", bank="LGCRE01") == 1
        assert _value("remitnet_reservations_open", bank="LGDEB01") == 0
        assert _value("remitnet_reservations_expiring", bank="LGCRE01", within="5s") == 0
        deadline = pending.confirmation_deadline.ToDatetime(UTC)
        assert _value("remitnet_reservations_oldest_deadline_timestamp_seconds") == pytest.approx(
            deadline.timestamp(), abs=0.001
        )
        assert _value("remitnet_bank_reserved_minor", bank="LGDEB01", currency="USD") == 1_234
        assert _value("remitnet_bank_headroom_minor", bank="LGDEB01", currency="USD") == (
            1_000_000 - 1_234 - 10
        )
        assert _value("remitnet_recalls_open", bank="LGCRE01") == 1
        assert _value("remitnet_recalls_expiring", bank="LGCRE01", within="1h") == 0
        requested = recall.requested_at.ToDatetime(UTC)
        assert _value("remitnet_recalls_oldest_open_timestamp_seconds", bank="LGCRE01") == (
            pytest.approx(requested.timestamp(), abs=0.001)
        )
        # Seen from later: the reservation within 5 s of its deadline, the
        # recall within the last hour of its window.
        banks = {"LGDEB01", "LGCRE01"}
        collector.refresh_lifecycle(hub.db, banks, deadline - timedelta(seconds=4))
        assert _value("remitnet_reservations_expiring", bank="LGCRE01", within="5s") == 1
        window_end = recall.deadline.ToDatetime(UTC)
        collector.refresh_lifecycle(hub.db, banks, window_end - timedelta(minutes=30))
        assert _value("remitnet_recalls_expiring", bank="LGCRE01", within="1h") == 1
        # Answered: every gauge back to 0.
        await creditor.confirm(pending.transfer_id)
        await creditor.answer_recall(netted.transfer_id, accept=False, reason="NOAS")
        collector.refresh(hub.db)
        assert _value("remitnet_reservations_open", bank="LGCRE01") == 0
        assert _value("remitnet_reservations_oldest_deadline_timestamp_seconds") == 0
        assert _value("remitnet_bank_reserved_minor", bank="LGDEB01", currency="USD") == 0
        assert _value("remitnet_recalls_open", bank="LGCRE01") == 0
        assert _value("remitnet_recalls_oldest_open_timestamp_seconds", bank="LGCRE01") == 0
    finally:
        await hub.stop()


async def test_a_scripted_iso20022_session_counts_as_the_lifecycle_calls(
    sqlite_url: str,
) -> None:
    """pacs.004 returns count as ReturnTransfer's, camt.056 recalls as
    RecallTransfer's and camt.029 rejections as AnswerRecall's (each
    return, recall event, refusal and replay once); a message answered from
    the log again counts nothing."""
    from remitnet.clients.iso20022 import Iso20022Client
    from tests.iso20022_lifecycle_samples import Ans, Cxl, Rtr, camt029, camt056, pacs004
    from tests.iso20022_samples import Tx, pacs008, statuses
    from tests.support import start_hub

    hub = await start_hub(sqlite_url)
    try:
        op = hub.operator
        await op.create_bank("ISODEB01", "Deb", "us-east1", ["USD"], bic="ISODUS33")
        await op.create_bank("ISOCRE01", "Cre", "us-east1", ["USD"], bic="ISOCUS33")
        await op.deposit("ISODEB01", "USD", 100_000)
        await op.deposit("ISOCRE01", "USD", 100_000)
        debtor = Iso20022Client("ISODEB01", hub.config)
        creditor = Iso20022Client("ISOCRE01", hub.config)
        txs = [Tx("ISOCUS33", amount) for amount in ("1.00", "2.00", "3.00")]
        sent = await debtor.submit_pacs008(pacs008(txs, instructing_bic="ISODUS33"))
        assert [s.status for s in statuses(sent.document)] == ["ACSP"] * 3
        one, two, three = (t.uetr for t in txs)
        before = _snapshot()

        back = pacs004([Rtr(one, "1.00"), Rtr(three, "9.00")], instructing_bic="ISOCUS33")
        await creditor.submit_pacs004(back)
        assert (await creditor.submit_pacs004(back)).replayed  # the log: nothing counted
        await debtor.submit_camt056(camt056([Cxl(two), Cxl(three, reason="FRAD")],
                                            assigner_bic="ISODUS33"))  # fmt: skip
        answers = [Ans(three, reason="LEGL"), Ans(two, status="ACCR", reason="")]
        await creditor.submit_camt029(camt029(answers, assigner_bic="ISOCUS33"))
        again = camt029([Ans(three, reason="LEGL")], msg_id="ANS-2", assigner_bic="ISOCUS33")
        await creditor.submit_camt029(again)  # rejected before: a replay
        focr = pacs004(
            [Rtr(two, "2.00", reason="FOCR")], msg_id="RTR-2", instructing_bic="ISOCUS33"
        )
        await creditor.submit_pacs004(focr)
        await debtor.close()
        await creditor.close()

        rf, rp = "remitnet_lifecycle_refusals_total", "remitnet_lifecycle_replays_total"
        assert _increases(before) == {
            _key("remitnet_returns_total", reason="AC04"): 1,
            _key("remitnet_returns_total", reason="FOCR"): 1,
            _key("remitnet_return_value_minor_total", currency="USD"): 100 + 200,
            _key(rf, operation="return", reason="INVALID_AMOUNT"): 1,
            _key("remitnet_recalls_total", event="requested", reason="DUPL"): 1,
            _key("remitnet_recalls_total", event="requested", reason="FRAD"): 1,
            _key("remitnet_recalls_total", event="rejected", reason="LEGL"): 1,
            _key(rf, operation="answer_recall", reason="INVALID_ARGUMENT"): 1,
            _key(rp, operation="answer_recall"): 1,
            _key("remitnet_recalls_total", event="accepted", reason=""): 1,
        }
    finally:
        await hub.stop()
