"""Every metric that the alert rules and the Grafana dashboards query is one the
services export (prometheus_client's default registry after importing the
hub's metrics module), or a recording rule defined in the rules file."""

from __future__ import annotations

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
