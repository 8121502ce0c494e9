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
            name, ROOT / "services" / "adapters" / "metrics.py"
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
