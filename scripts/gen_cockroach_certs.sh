#!/usr/bin/env bash
# Create the CockroachDB certificates and the Kubernetes Secrets that the
# manifests in k8s/ mount:
#
#   cockroachdb-node             ca.crt node.crt node.key            (StatefulSet)
#   cockroachdb-root             ca.crt client.root.crt/.key         (cluster-init Job)
#   cockroachdb-client-remitnet  ca.crt client.remitnet.crt/.key     (services, migration)
#   remitnet-db                  url: the hub's database URL         (services, migration)
#
# One node certificate serves every node: its names cover the public Service
# and, by wildcard, each pod behind the headless Service `cockroachdb`
# (cockroachdb-0.cockroachdb..., cockroachdb-us-east1-0.cockroachdb... in the
# multi-region overlay). The CA key never enters the cluster: keep --ca-dir
# somewhere safe; re-running the script reuses it and re-issues the rest.
#
# Needs the `cockroach` binary (same version as the image) and, without
# --dry-run, kubectl pointed at the target cluster.
#
#   scripts/gen_cockroach_certs.sh [--namespace remitnet] [--certs-dir DIR]
#                                  [--ca-dir DIR] [--dry-run]
#
# --dry-run prints the Secret manifests instead of applying them.
set -euo pipefail

namespace=remitnet
certs_dir=./.cockroach-certs
ca_dir=./.cockroach-ca
dry_run=false
domain=svc.cluster.local

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --namespace) namespace="$2"; shift 2 ;;
    --certs-dir) certs_dir="$2"; shift 2 ;;
    --ca-dir) ca_dir="$2"; shift 2 ;;
    --cluster-domain) domain="$2"; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

for tool in cockroach kubectl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool is not installed" >&2
    exit 1
  fi
done

mkdir -p "$certs_dir" "$ca_dir"
chmod 0700 "$certs_dir" "$ca_dir"

if [[ -f "$ca_dir/ca.key" && -f "$ca_dir/ca.crt" ]]; then
  echo "reusing the CA in $ca_dir"
else
  cockroach cert create-ca --certs-dir="$ca_dir" --ca-key="$ca_dir/ca.key"
fi
cp "$ca_dir/ca.crt" "$certs_dir/ca.crt"

# Node certificate: every name a client or another node may dial.
rm -f "$certs_dir/node.crt" "$certs_dir/node.key"
cockroach cert create-node \
  localhost 127.0.0.1 \
  cockroachdb-public \
  "cockroachdb-public.$namespace" \
  "cockroachdb-public.$namespace.svc" \
  "cockroachdb-public.$namespace.$domain" \
  "*.cockroachdb" \
  "*.cockroachdb.$namespace" \
  "*.cockroachdb.$namespace.svc" \
  "*.cockroachdb.$namespace.$domain" \
  --certs-dir="$certs_dir" --ca-key="$ca_dir/ca.key" --overwrite

# Client certificates: root for the init Job, remitnet for the hub.
for user in root remitnet; do
  cockroach cert create-client "$user" \
    --certs-dir="$certs_dir" --ca-key="$ca_dir/ca.key" --overwrite
done

# The hub connects as `remitnet` with its certificate (no password), checking
# the server's name against the node certificate (verify-full).
db_url="cockroachdb://remitnet@cockroachdb-public:26257/remitnet?sslmode=verify-full"
db_url+="&sslrootcert=/certs/ca.crt&sslcert=/certs/client.remitnet.crt"
db_url+="&sslkey=/certs/client.remitnet.key&application_name=remitnet"

secret() {
  # secret NAME ARGS...: render a Secret, then print or apply it.
  local name="$1"
  shift
  local manifest
  manifest="$(kubectl create secret generic "$name" --namespace "$namespace" \
    "$@" --dry-run=client --output=yaml)"
  if [[ "$dry_run" == true ]]; then
    printf -- '---\n%s\n' "$manifest"
  else
    printf '%s\n' "$manifest" | kubectl apply --filename=-
  fi
}

c="$certs_dir"
secret cockroachdb-node \
  --from-file=ca.crt="$c/ca.crt" --from-file=node.crt="$c/node.crt" --from-file=node.key="$c/node.key"
secret cockroachdb-root \
  --from-file=ca.crt="$c/ca.crt" --from-file=client.root.crt="$c/client.root.crt" \
  --from-file=client.root.key="$c/client.root.key"
secret cockroachdb-client-remitnet \
  --from-file=ca.crt="$c/ca.crt" --from-file=client.remitnet.crt="$c/client.remitnet.crt" \
  --from-file=client.remitnet.key="$c/client.remitnet.key"
secret remitnet-db --from-literal=url="$db_url"

if [[ "$dry_run" != true ]]; then
  echo "created the Secrets in namespace $namespace; the CA key stays in $ca_dir"
fi
