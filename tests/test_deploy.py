"""The production path, checked offline: scripts/check_deploy.sh (kustomize,
kubernetes-validate --strict, prometheus-operator schemas, promtool, hadolint,
shellcheck) and textual checks of the rendered manifests and the Dockerfile."""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from remitnet.services.entrypoints.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("clearing", "fx", "netting", "settlement", "participants")
GRPC_SERVICE_NAMES = {
    "clearing": "remitnet.clearing.v1.ClearingService",
    "fx": "remitnet.fx.v1.FxService",
    "netting": "remitnet.netting.v1.NettingService",
    "settlement": "remitnet.settlement.v1.SettlementService",
    "participants": "remitnet.participants.v1.ParticipantsService",
}
REGIONS = ("us-east1", "europe-west1", "asia-southeast1")
HEALTH_PORT = 8081
TLS_DIR = "/etc/remitnet/tls"
# Flag -> file name in the Secret remitnet-hub-tls (scripts/gen_hub_certs.sh).
TLS_FILES = {"tls_cert": "tls.crt", "tls_key": "tls.key", "tls_client_ca": "client-ca.crt"}
WORKLOADS = ("Deployment", "StatefulSet", "Job")

Manifest = dict[str, Any]


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Manifest]]:
    """Runs scripts/check_deploy.sh once; returns its rendered manifests by name."""
    out = tmp_path_factory.mktemp("rendered")
    env = {**os.environ, "REMITNET_RENDER_DIR": str(out)}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "check_deploy.sh")],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        missing_tool = "could not install" in proc.stderr or "no working kubectl" in proc.stderr
        if missing_tool and os.environ.get("CI", "").lower() not in ("true", "1"):
            pytest.skip(f"a deployment tool is missing here:\n{proc.stderr[-2000:]}")
        pytest.fail(
            f"scripts/check_deploy.sh exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-8000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    assert "check_deploy: all checks passed" in proc.stdout
    return {
        path.stem: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for path in sorted(out.glob("*.yaml"))
        if path.stem in ("base",) or path.stem.startswith(("overlay-", "component-"))
    }


def _all(rendered: dict[str, list[Manifest]]) -> Iterator[tuple[str, Manifest]]:
    for name, docs in rendered.items():
        for doc in docs:
            yield name, doc


def _pod_spec(obj: Manifest) -> Manifest:
    spec: Manifest = obj["spec"]["template"]["spec"]
    return spec


def _containers(obj: Manifest) -> Iterator[tuple[Manifest, bool]]:
    """(container, is_init) of a workload."""
    pod = _pod_spec(obj)
    for c in pod.get("initContainers", []):
        yield c, True
    for c in pod["containers"]:
        yield c, False


def test_check_deploy_passes(rendered: dict[str, list[Manifest]]) -> None:
    assert {"base", "overlay-dev", "overlay-multi-region"} <= set(rendered)
    components = {n for n in rendered if n.startswith("component-")}
    assert components == {
        "component-network-policies",
        "component-monitoring",
        "component-grafana-dashboards",
    }


def test_every_container_runs_restricted(rendered: dict[str, list[Manifest]]) -> None:
    for where, obj in _all(rendered):
        if obj["kind"] not in WORKLOADS:
            continue
        pod = _pod_spec(obj)
        assert pod.get("automountServiceAccountToken") is False, (where, obj["metadata"])
        pod_sc = pod.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        for c, _ in _containers(obj):
            sc = c.get("securityContext", {})
            name = f"{where}: {obj['kind']}/{obj['metadata']['name']}/{c['name']}"
            assert sc.get("runAsNonRoot") is True, name
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 0)) != 0, name
            assert sc.get("readOnlyRootFilesystem") is True, name
            assert sc.get("allowPrivilegeEscalation") is False, name
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
            assert not sc.get("capabilities", {}).get("add"), name
            assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
            assert sc.get("privileged", False) is False, name


def test_every_container_has_requests_and_limits(rendered: dict[str, list[Manifest]]) -> None:
    for where, obj in _all(rendered):
        if obj["kind"] not in WORKLOADS:
            continue
        for c, _ in _containers(obj):
            res = c.get("resources", {})
            name = f"{where}: {obj['metadata']['name']}/{c['name']}"
            assert {"cpu", "memory"} <= set(res.get("requests", {})), name
            assert {"cpu", "memory"} <= set(res.get("limits", {})), name


def test_long_running_containers_have_probes(rendered: dict[str, list[Manifest]]) -> None:
    for where, obj in _all(rendered):
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c, is_init in _containers(obj):
            if is_init:
                continue
            name = f"{where}: {obj['metadata']['name']}/{c['name']}"
            assert "readinessProbe" in c and "livenessProbe" in c, name


def test_hub_deployments(rendered: dict[str, list[Manifest]]) -> None:
    for where, docs in rendered.items():
        deployments = [d for d in docs if d["kind"] == "Deployment"]
        assert deployments, where
        for dep in deployments:
            service = dep["metadata"]["labels"]["app.kubernetes.io/name"]
            assert service in SERVICES
            pod = _pod_spec(dep)
            assert pod["topologySpreadConstraints"], dep["metadata"]["name"]
            assert pod["serviceAccountName"] == f"remitnet-{service}"
            (c,) = pod["containers"]
            assert c["command"] == ["remitnet"]
            args = _serve_args(c, docs)
            assert args.only == [service]
            assert (args.host, args.port, args.metrics_port) == ("0.0.0.0", 50051, 9464)
            assert args.no_migrate is True
            assert args.db == "$(REMITNET_DB_URL)"  # from the Secret, expanded by kubelet
            env = {e["name"]: e for e in c["env"]}
            assert env["REMITNET_DB_URL"]["valueFrom"]["secretKeyRef"] == {
                "name": "remitnet-db",
                "key": "url",
            }
            # Native gRPC probes on the plaintext health port: liveness and
            # startup on the overall health, readiness on the service's name.
            assert c["livenessProbe"]["grpc"] == {"port": HEALTH_PORT}
            assert c["startupProbe"]["grpc"] == {"port": HEALTH_PORT}
            assert c["readinessProbe"]["grpc"] == {
                "port": HEALTH_PORT,
                "service": GRPC_SERVICE_NAMES[service],
            }
            assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
                "grpc": 50051,
                "metrics": 9464,
                "health": HEALTH_PORT,
            }
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert "/tmp" in mounts
            tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
            assert "emptyDir" in tmp


def _env(container: Manifest, docs: list[Manifest]) -> dict[str, str]:
    """The container's literal environment: its ConfigMaps (envFrom), then its
    `env` values. Secret and field references are left out."""
    configs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configs[source["configMapRef"]["name"]].get("data", {}))
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def _serve_args(container: Manifest, docs: list[Manifest]) -> argparse.Namespace:
    """The container's arguments through the real CLI parser, after kubelet's
    $(VAR) expansion (a Secret's value stays a reference)."""
    env = _env(container, docs)
    args = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), a) for a in container["args"]]
    assert args[0] == "serve", container["name"]
    try:
        return build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"{container['name']}: remitnet rejects its arguments {args}")


def _hub_containers(
    rendered: dict[str, list[Manifest]],
) -> Iterator[tuple[str, Manifest, Manifest, list[Manifest]]]:
    """(where, workload, container, docs) of every `remitnet serve` container."""
    for where, docs in rendered.items():
        for obj in docs:
            if obj["kind"] not in WORKLOADS:
                continue
            for c, _ in _containers(obj):
                if c.get("command") == ["remitnet"] and c.get("args", [""])[0] == "serve":
                    yield where, obj, c, docs


def test_hub_containers_would_start_with_mtls_and_a_health_port(
    rendered: dict[str, list[Manifest]],
) -> None:
    """What Hub.__init__ and kubelet need: TLS files that exist in a mounted
    read-only Secret, no --insecure, and the probes on the health port."""
    seen = 0
    for where, obj, c, docs in _hub_containers(rendered):
        seen += 1
        name = f"{where}: {obj['metadata']['name']}/{c['name']}"
        args = _serve_args(c, docs)
        assert args.insecure is False, name
        volumes = {v["name"]: v for v in _pod_spec(obj)["volumes"]}
        for flag, file_name in TLS_FILES.items():
            path = getattr(args, flag)
            assert path and posixpath.isabs(path), (name, flag)
            assert posixpath.dirname(path) == TLS_DIR and posixpath.basename(path) == file_name
            (mount,) = [m for m in c["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
            assert mount["readOnly"] is True, name
            secret = volumes[mount["name"]]["secret"]
            assert secret["secretName"] == "remitnet-hub-tls", name
            assert "items" not in secret, name  # every key, under its own name
            assert secret["defaultMode"] & 0o044 == 0o040, name  # group-readable key only
        # A plaintext health port, distinct from the mTLS port, that every
        # probe uses and the container declares as `health`.
        assert args.health_port is not None and args.health_port != args.port, name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == args.health_port, (name, probe)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["health"] == args.health_port and ports["grpc"] == args.port, name
    # 5 Deployments in base, dev and each component render, 15 in multi-region.
    assert seen == 5 * (len(rendered) - 1) + 5 * len(REGIONS)


def test_hub_services_name_grpc_and_metrics_ports(rendered: dict[str, list[Manifest]]) -> None:
    for where, obj in _all(rendered):
        if obj["kind"] != "Service":
            continue
        ports = {p["name"]: p["port"] for p in obj["spec"]["ports"]}
        if obj["metadata"]["labels"].get("app.kubernetes.io/component") == "server":
            assert ports == {"grpc": 50051, "metrics": 9464}, (where, obj["metadata"]["name"])
            # Headless: clients balance per call over the pods (round_robin).
            assert obj["spec"]["clusterIP"] == "None"
        else:
            assert ports == {"grpc": 26257, "http": 8080}, obj["metadata"]["name"]


def _selects(pdb: Manifest, workload: Manifest) -> bool:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    match: dict[str, str] = pdb["spec"]["selector"]["matchLabels"]
    assert set(pdb["spec"]["selector"]) == {"matchLabels"}
    return all(labels.get(k) == v for k, v in match.items())


def test_disruption_budgets_and_autoscaling(rendered: dict[str, list[Manifest]]) -> None:
    for where, docs in rendered.items():
        pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
        for obj in docs:
            if obj["kind"] in ("Deployment", "StatefulSet"):
                # Exactly one budget per pod (the eviction API refuses pods
                # with several), allowing one pod down at a time.
                (pdb,) = [p for p in pdbs if _selects(p, obj)]
                assert pdb["spec"] == {
                    "maxUnavailable": 1,
                    "selector": pdb["spec"]["selector"],
                }, (where, obj["metadata"]["name"])
            elif obj["kind"] == "Job":
                assert not [p for p in pdbs if _selects(p, obj)], obj["metadata"]["name"]
        hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
        assert hpas, where
        for hpa in hpas:
            assert hpa["spec"]["scaleTargetRef"]["name"].startswith("clearing")


def test_configuration_service_accounts_and_migration(rendered: dict[str, list[Manifest]]) -> None:
    for where, docs in rendered.items():
        kinds = {d["kind"] for d in docs}
        assert {"ConfigMap", "ServiceAccount", "Job", "Namespace"} <= kinds, where
        for sa in (d for d in docs if d["kind"] == "ServiceAccount"):
            assert sa["automountServiceAccountToken"] is False
        (migrate,) = [
            d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == "remitnet-db-upgrade"
        ]
        (c,) = _pod_spec(migrate)["containers"]
        assert [*c["command"], *c["args"]] == [
            "remitnet",
            "db",
            "upgrade",
            "--db",
            "$(REMITNET_DB_URL)",
        ]
        (ns,) = [d for d in docs if d["kind"] == "Namespace"]
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def _statefulsets(docs: list[Manifest]) -> list[Manifest]:
    return [d for d in docs if d["kind"] == "StatefulSet"]


def test_cockroachdb_secure_statefulset(rendered: dict[str, list[Manifest]]) -> None:
    (sts,) = _statefulsets(rendered["base"])
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "datadir"
    c = _pod_spec(sts)["containers"][0]
    assert c["args"][0] == "start"
    assert "--certs-dir=/cockroach/cockroach-certs" in c["args"]
    assert not any("insecure" in a for a in c["args"])
    secrets = {v["secret"]["secretName"] for v in _pod_spec(sts)["volumes"] if "secret" in v}
    assert secrets == {"cockroachdb-node"}
    services = {d["metadata"]["name"]: d for d in rendered["base"] if d["kind"] == "Service"}
    assert services["cockroachdb"]["spec"]["clusterIP"] == "None"
    assert "cockroachdb-public" in services
    assert any(d["metadata"]["name"] == "cockroachdb-init" for d in rendered["base"])


def test_dev_overlay_is_small_and_single_node(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["overlay-dev"]
    for dep in (d for d in docs if d["kind"] == "Deployment"):
        assert dep["spec"]["replicas"] == 1
    (sts,) = _statefulsets(docs)
    assert sts["spec"]["replicas"] == 1
    assert _pod_spec(sts)["containers"][0]["args"][0] == "start-single-node"


def test_multi_region_has_one_cockroachdb_disruption_budget(
    rendered: dict[str, list[Manifest]],
) -> None:
    """SURVIVE REGION FAILURE keeps quorum through one region down, not through
    one node down in each region: one budget over all nine nodes."""
    docs = rendered["overlay-multi-region"]
    statefulsets = _statefulsets(docs)
    assert len(statefulsets) == len(REGIONS)
    pdbs = [
        d
        for d in docs
        if d["kind"] == "PodDisruptionBudget" and any(_selects(d, s) for s in statefulsets)
    ]
    (pdb,) = pdbs
    assert pdb["spec"]["maxUnavailable"] == 1
    assert all(_selects(pdb, s) for s in statefulsets)
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    assert [w["metadata"]["name"] for w in workloads if _selects(pdb, w)] == [
        s["metadata"]["name"] for s in statefulsets
    ]


def test_multi_region_overlay(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["overlay-multi-region"]
    config = next(
        d for d in docs if d["kind"] == "ConfigMap" and "remitnet-config" in d["metadata"]["name"]
    )
    assert config["data"]["REMITNET_DB_REGIONS"] == ",".join(REGIONS)
    for region in REGIONS:
        deployments = {
            d["metadata"]["name"]
            for d in docs
            if d["kind"] == "Deployment"
            and d["metadata"]["labels"].get("topology.remitnet.io/region") == region
        }
        assert deployments == {f"{s}-{region}" for s in SERVICES}
        (sts,) = [
            d for d in _statefulsets(docs) if d["metadata"]["name"] == f"cockroachdb-{region}"
        ]
        pinned = [
            d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] in deployments
        ]
        for obj in [sts, *pinned]:
            terms = _pod_spec(obj)["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"
            ]["nodeSelectorTerms"]
            assert terms == [
                {
                    "matchExpressions": [
                        {
                            "key": "topology.kubernetes.io/region",
                            "operator": "In",
                            "values": [region],
                        }
                    ]
                }
            ]
        c = _pod_spec(sts)["containers"][0]
        assert "--locality=region=$(COCKROACH_REGION)" in c["args"]
        env = {e["name"]: e for e in c["env"]}
        assert env["COCKROACH_REGION"]["valueFrom"]["fieldRef"]["fieldPath"] == (
            "metadata.labels['topology.remitnet.io/region']"
        )
        assert (
            sts["spec"]["template"]["metadata"]["labels"]["topology.remitnet.io/region"] == region
        )
        join = env["COCKROACH_JOIN"]["value"].split(",")
        assert {h.split("-")[1] for h in join} >= {"us", "europe", "asia"}


def test_network_policies(rendered: dict[str, list[Manifest]]) -> None:
    policies = {
        d["metadata"]["name"]: d["spec"]
        for d in rendered["component-network-policies"]
        if d["kind"] == "NetworkPolicy"
    }
    deny = policies["default-deny-all"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    ports = {
        name: {
            p["port"]
            for rule in spec.get("ingress", []) + spec.get("egress", [])
            for p in rule["ports"]
        }
        for name, spec in policies.items()
        if name != "default-deny-all"
    }
    assert ports["allow-dns-egress"] == {53}
    assert ports["hub-grpc-from-banks"] == {50051}
    assert ports["hub-grpc-from-operator"] == {50051}
    # The plaintext health port is for the kubelet (from the node, not
    # subject to these policies), opened to no namespace.
    assert all(HEALTH_PORT not in found for found in ports.values())
    assert ports["hub-metrics-from-prometheus"] == {9464}
    assert ports["hub-egress-to-cockroachdb"] == {26257}
    assert ports["cockroachdb"] == {26257, 8080}


def test_monitoring_and_dashboards_components(rendered: dict[str, list[Manifest]]) -> None:
    monitoring = {d["kind"]: d for d in rendered["component-monitoring"]}
    endpoints = monitoring["ServiceMonitor"]["spec"]["endpoints"]
    assert [e["port"] for e in endpoints] == ["metrics"]
    rules = yaml.safe_load(
        (ROOT / "k8s/components/monitoring/rules/remitnet.rules.yaml").read_text()
    )
    assert monitoring["PrometheusRule"]["spec"]["groups"] == rules["groups"]
    dashboards = [
        d
        for d in rendered["component-grafana-dashboards"]
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("remitnet-dashboard-")
    ]
    assert {next(iter(d["data"])) for d in dashboards} == {
        "hub-overview.json",
        "netting-settlement.json",
        "banks.json",
    }
    for d in dashboards:
        assert d["metadata"]["labels"]["grafana_dashboard"] == "1"


def _alert_tests() -> tuple[set[str], dict[str, set[bool]]]:
    rules_dir = ROOT / "k8s/components/monitoring/rules"
    rules = yaml.safe_load((rules_dir / "remitnet.rules.yaml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((rules_dir / "remitnet.rules.test.yaml").read_text())
    seen: dict[str, set[bool]] = {}
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            seen.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    return alerts, seen


def test_every_alert_is_tested_firing_and_silent() -> None:
    alerts, seen = _alert_tests()
    assert {
        "RemitnetHighRejectionRate",
        "RemitnetSettlementLag",
        "RemitnetCycleNotClosedOnSchedule",
        "RemitnetBankHeadroomLow",
        "RemitnetSerializationRetryStorm",
        "RemitnetLatencySLOBurnFast",
        "RemitnetLatencySLOBurnSlow",
    } <= alerts
    for alert in alerts:
        assert seen.get(alert) == {True, False}, f"{alert}: needs a firing and a silent test"


def _stages(dockerfile: str) -> list[list[str]]:
    """Instructions per build stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile)
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile() -> None:
    stages = _stages((ROOT / "Dockerfile").read_text())
    assert len(stages) >= 2, "multi-stage build"
    builder, final = stages[0], stages[-1]
    assert "python:3.11-slim" in (ROOT / "Dockerfile").read_text()
    assert any(i.startswith("RUN") and "pip wheel" in i and " ." in i for i in builder)
    users = [i.split()[1] for i in final if i.upper().startswith("USER ")]
    assert users, "final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid == "10001"
    body = "\n".join(final)
    for tool in ("gcc", "build-essential", "g++", "make "):
        assert tool not in body, f"{tool} in the final stage"
    assert 'ENTRYPOINT ["remitnet"]' in final
    # The default command starts (mTLS from files at the Deployments' paths,
    # the health port the probes use) once the Secret is mounted.
    (cmd,) = [i for i in final if i.startswith("CMD ")]
    args = build_parser().parse_args(json.loads(cmd[4:]))
    assert args.command == "serve" and args.insecure is False
    for flag, file_name in TLS_FILES.items():
        assert getattr(args, flag) == f"{TLS_DIR}/{file_name}"
    assert (args.port, args.metrics_port, args.health_port) == (50051, 9464, HEALTH_PORT)
    (expose,) = [i for i in final if i.startswith("EXPOSE ")]
    assert set(expose.split()[1:]) == {"50051", "9464", str(HEALTH_PORT)}
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore and "!services/" in ignore
