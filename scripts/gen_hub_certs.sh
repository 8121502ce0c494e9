#!/usr/bin/env bash
# Create the hub's mTLS certificates (openssl) and the Kubernetes Secret that
# every hub Deployment in k8s/ mounts at /etc/remitnet/tls:
#
#   remitnet-hub-tls   ca.crt tls.crt tls.key   (--tls-client-ca, --tls-cert, --tls-key)
#
# One CA issues the server certificate and the client certificates, and the
# hub trusts client certificates it issued. The caller's identity is the
# client certificate's common name (services/adapters/grpc/identity.py):
# `operator`, or `bank:<CODE>` for each --bank (default: the examples BANKUS01
# and BANKPH01). Client keys stay out of the hub's namespace: the script prints
# the `kubectl create secret` commands for the operator's tools and each bank
# (or the gateway acting for it) to run where they belong.
#
# The server certificate names every hub Service: clearing, fx, netting,
# settlement, participants and their -<region> copies of the multi-region
# overlay, each as <svc>, <svc>.<ns>, <svc>.<ns>.svc and <svc>.<ns>.svc.<domain>,
# plus localhost and 127.0.0.1 (kubectl port-forward) and every --san. The CA
# key never enters the cluster: keep --ca-dir somewhere safe; re-running the
# script reuses it and re-issues the rest.
#
# Needs openssl and, unless --certs-only, kubectl pointed at the target cluster.
#
#   scripts/gen_hub_certs.sh [--namespace remitnet] [--certs-dir DIR] [--ca-dir DIR]
#                            [--bank CODE]... [--region R]... [--san NAME]...
#                            [--cluster-domain D] [--days N] [--dry-run] [--certs-only]
#
# --dry-run prints the Secret manifest (alone on stdout) instead of applying
# it; --certs-only writes the files and touches no cluster.
set -euo pipefail

namespace=remitnet
certs_dir=./.hub-certs
ca_dir=./.hub-ca
dry_run=false
certs_only=false
domain=svc.cluster.local
days=365
banks=()
regions=()
sans=()
services=(clearing fx netting settlement participants)

usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --namespace) namespace="$2"; shift 2 ;;
    --certs-dir) certs_dir="$2"; shift 2 ;;
    --ca-dir) ca_dir="$2"; shift 2 ;;
    --bank) banks+=("$2"); shift 2 ;;
    --region) regions+=("$2"); shift 2 ;;
    --san) sans+=("$2"); shift 2 ;;
    --cluster-domain) domain="$2"; shift 2 ;;
    --days) days="$2"; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    --certs-only) certs_only=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ ${#banks[@]} -gt 0 ]] || banks=(BANKUS01 BANKPH01)
[[ ${#regions[@]} -gt 0 ]] || regions=(us-east1 europe-west1 asia-southeast1)

for code in "${banks[@]}"; do
  # BANK_CODE_RE of services/domain/model.py.
  if [[ ! "$code" =~ ^[A-Z0-9]{3,16}$ ]]; then
    echo "error: bank code $code is not 3 to 16 of A-Z 0-9" >&2
    exit 2
  fi
done

tools=(openssl)
[[ "$certs_only" == true ]] || tools+=(kubectl)
for tool in "${tools[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool is not installed" >&2
    exit 1
  fi
done

umask 077
mkdir -p "$certs_dir" "$ca_dir"
chmod 0700 "$certs_dir" "$ca_dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [[ -f "$ca_dir/ca.key" && -f "$ca_dir/ca.crt" ]]; then
  echo "reusing the CA in $ca_dir" >&2
else
  new_key "$ca_dir/ca.key"
  cat >"$work/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
O = remitnet
CN = remitnet hub CA
[ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
EOF
  openssl req -x509 -new -config "$work/ca.cnf" -extensions ca -key "$ca_dir/ca.key" \
    -days 3650 -sha256 -out "$ca_dir/ca.crt"
  echo "created a CA in $ca_dir" >&2
fi
cp "$ca_dir/ca.crt" "$certs_dir/ca.crt"

issue() {
  # issue NAME CN PURPOSE [SAN...]: NAME.key and NAME.crt (signed by the CA) in
  # certs_dir, for PURPOSE serverAuth or clientAuth.
  local name="$1" cn="$2" purpose="$3"
  shift 3
  {
    echo "basicConstraints = critical,CA:FALSE"
    echo "keyUsage = critical,digitalSignature"
    echo "extendedKeyUsage = $purpose"
    echo "subjectKeyIdentifier = hash"
    echo "authorityKeyIdentifier = keyid"
    if [[ $# -gt 0 ]]; then
      local IFS=,
      echo "subjectAltName = $*"
    fi
  } >"$work/$name.ext"
  new_key "$certs_dir/$name.key"
  openssl req -new -key "$certs_dir/$name.key" -subj "/O=remitnet/CN=$cn" -out "$work/$name.csr"
  openssl x509 -req -in "$work/$name.csr" -CA "$ca_dir/ca.crt" -CAkey "$ca_dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
    -extfile "$work/$name.ext" -out "$certs_dir/$name.crt" 2>/dev/null
}

# Server certificate: every name a client may dial.
names=(DNS:localhost IP:127.0.0.1)
for service in "${services[@]}"; do
  for host in "$service" "${regions[@]/#/$service-}"; do
    names+=("DNS:$host" "DNS:$host.$namespace" "DNS:$host.$namespace.svc"
      "DNS:$host.$namespace.$domain")
  done
done
for san in ${sans[@]+"${sans[@]}"}; do
  if [[ "$san" =~ ^[0-9.]+$|: ]]; then names+=("IP:$san"); else names+=("DNS:$san"); fi
done
issue tls remitnet-hub serverAuth "${names[@]}"

# Client certificates: the common name is the identity.
issue client.operator operator clientAuth
for code in "${banks[@]}"; do
  issue "client.bank-$code" "bank:$code" clientAuth
done
echo "wrote ca.crt, tls.crt/.key (server), client.operator.crt/.key and" \
  "client.bank-<CODE>.crt/.key to $certs_dir" >&2

c="$certs_dir"
client_secret_command() {
  # client_secret_command SECRET NAME: the command that stores a client
  # certificate where its user runs (placeholder namespace).
  printf '  kubectl create secret generic %s --namespace <NAMESPACE> \\\n' "$1"
  printf '    --from-file=ca.crt=%s --from-file=tls.crt=%s --from-file=tls.key=%s\n' \
    "$c/ca.crt" "$c/$2.crt" "$c/$2.key"
}

if [[ "$certs_only" != true ]]; then
  manifest="$(kubectl create secret generic remitnet-hub-tls --namespace "$namespace" \
    --from-file=ca.crt="$c/ca.crt" --from-file=tls.crt="$c/tls.crt" \
    --from-file=tls.key="$c/tls.key" --dry-run=client --output=yaml)"
  if [[ "$dry_run" == true ]]; then
    printf -- '---\n%s\n' "$manifest"
  else
    printf '%s\n' "$manifest" | kubectl apply --filename=-
    echo "created Secret remitnet-hub-tls in namespace $namespace; the CA key stays in $ca_dir"
  fi
fi

{
  echo
  echo "Client certificates, for the namespace of the operator's tools (labelled"
  echo "remitnet.io/operator=true) and for each bank or the gateway acting for it:"
  client_secret_command remitnet-client-operator client.operator
  for code in "${banks[@]}"; do
    client_secret_command "remitnet-client-bank-${code,,}" "client.bank-$code"
  done
} >&2
