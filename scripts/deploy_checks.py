#!/usr/bin/env python3
"""Offline checks of rendered Kubernetes manifests and Grafana dashboards.

Called by scripts/check_deploy.sh:

  validate [--crd-validator CMD] FILE...
      Every object of every rendered FILE is validated strictly (unknown fields
      rejected) with kubernetes-validate against each Kubernetes version in
      KUBERNETES_VERSIONS. prometheus-operator custom resources (ServiceMonitor,
      PrometheusRule) are validated against their own schemas by CMD (a node
      script using @kubernetes-models/prometheus-operator), which receives a
      JSON array of objects on stdin. Any other kind fails.

  dashboard-rules OUT
      Writes every PromQL expression of the Grafana dashboards as a recording
      rule into OUT, with Grafana's variables substituted, so that `promtool
      check rules OUT` parses them.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "k8s" / "components" / "grafana-dashboards" / "dashboards"

# The oldest Kubernetes release the manifests target, and the newest schema
# kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())

CUSTOM_GROUPS = {"monitoring.coreos.com"}


def _objects(path: Path) -> Iterator[dict[str, Any]]:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            yield doc


def _name(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def validate(files: list[Path], crd_validator: str | None) -> int:
    failures = 0
    custom: list[dict[str, Any]] = []
    for path in files:
        count = 0
        for obj in _objects(path):
            count += 1
            group = str(obj.get("apiVersion", "")).split("/")[0]
            if group in CUSTOM_GROUPS:
                custom.append(obj)
                continue
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except ValidationError as exc:
                    where = ".".join(str(p) for p in exc.path)
                    print(
                        f"ERROR {path.name}: {_name(obj)} (k8s {version}): {where}: {exc.message}"
                    )
                    failures += 1
                except SchemaNotFoundError as exc:
                    print(f"ERROR {path.name}: {_name(obj)}: {exc.message}")
                    failures += 1
        versions = ", ".join(KUBERNETES_VERSIONS)
        print(f"  {path.name}: {count} objects, strict schemas of k8s {versions}")
    if custom:
        if crd_validator is None:
            print(f"ERROR {len(custom)} custom resources and no validator for them")
            return failures + 1
        proc = subprocess.run(
            shlex.split(crd_validator), input=json.dumps(custom), text=True, check=False
        )
        if proc.returncode != 0:
            failures += 1
        else:
            kinds = sorted({_name(o) for o in custom})
            print(
                f"  custom resources valid against prometheus-operator schemas: {', '.join(kinds)}"
            )
    return failures


_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def _substitute(expr: str) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in ("__rate_interval", "__interval", "__range"):
            return "5m"
        return ".*"

    return _VARIABLE.sub(repl, expr)


def dashboard_expressions() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, expression) for every panel target."""
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        panels: list[dict[str, Any]] = list(dashboard.get("panels", []))
        while panels:
            panel = panels.pop(0)
            panels.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    yield path.name, str(panel.get("title")), str(target["expr"])


def dashboard_rules(out: Path) -> int:
    rules = [
        {"record": f"dashboard:expr_{i}", "expr": _substitute(expr)}
        for i, (_, _, expr) in enumerate(dashboard_expressions())
    ]
    out.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    print(f"  {len(rules)} dashboard expressions written to {out}")
    return 0 if rules else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate")
    v.add_argument("--crd-validator")
    v.add_argument("files", nargs="+", type=Path)
    d = sub.add_parser("dashboard-rules")
    d.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "validate":
        return 1 if validate(args.files, args.crd_validator) else 0
    return dashboard_rules(args.out)


if __name__ == "__main__":
    sys.exit(main())
