#!/usr/bin/env bash
# The hub's mTLS certificates (openssl) and the Kubernetes Secret that every
# hub Deployment in k8s/ mounts at /etc/remitnet/tls:
#
#   remitnet-hub-tls   client-ca.crt tls.crt tls.key   (--tls-client-ca, --tls-cert, --tls-key)
#
# Two CAs, each issuing one kind of certificate only:
#   - the server CA issues the hub's server certificate; clients verify the
#     hub with server-ca.crt;
#   - the client CA issues client certificates, and only the hub trusts it
#     (--tls-client-ca): a server certificate, or anything else the server CA
#     signed, is not a client identity.
# The caller's identity is the client certificate's SPIFFE URI SAN, not its
# common name (services/remitnet/services/adapters/grpc/identity.py):
# spiffe://remitnet/operator, or spiffe://remitnet/bank/<CODE>.
#
# Three commands:
#
#   scripts/gen_hub_certs.sh [hub] [--namespace remitnet] [--certs-dir DIR] [--ca-dir DIR]
#                            [--region R]... [--san NAME]... [--cluster-domain D]
#                            [--days N] [--dry-run] [--certs-only]
#       (the operator) both CAs (kept and reused in --ca-dir), the server
#       certificate, the operator's client certificate, and the Secret.
#   scripts/gen_hub_certs.sh bank-csr --bank CODE [--out DIR]
#       (a bank, on its own machine) its private key and a certificate
#       signing request; only the .csr goes to the operator, the key never
#       leaves DIR.
#   scripts/gen_hub_certs.sh sign-csr --bank CODE --csr FILE [--ca-dir DIR]
#                            [--certs-dir DIR] [--days N]
#       (the operator) checks the request's signature and issues the bank's
#       certificate with the client CA, for the code the operator names (the
#       request's own subject and extensions are ignored).
#
# The server certificate names every hub Service: clearing, fx, netting,
# settlement, participants and their -<region> copies of the multi-region
# overlay, each as <svc>, <svc>.<ns>, <svc>.<ns>.svc and <svc>.<ns>.svc.<domain>,
# plus localhost and 127.0.0.1 (kubectl port-forward) and every --san. The CA
# keys never enter the cluster: --ca-dir defaults to ~/.remitnet/hub-ca,
# outside any repository; --certs-dir to ./.hub-certs and --out to
# ./.bank-certs, both git-ignored. Re-running reuses the CAs and re-issues
# the rest.
#
# Needs openssl and, for `hub` unless --certs-only, kubectl pointed at the
# target cluster. --dry-run prints the Secret manifest (alone on stdout)
# instead of applying it; --certs-only writes the files and touches no cluster.
set -euo pipefail

usage() { sed -n '2,46p' "$0" | sed 's/^# \{0,1\}//'; }

command=hub
case "${1:-}" in
  hub|bank-csr|sign-csr) command="$1"; shift ;;
esac

namespace=remitnet
certs_dir=./.hub-certs
ca_dir="${HOME:-.}/.remitnet/hub-ca"
out_dir=./.bank-certs
csr=""
bank=""
dry_run=false
certs_only=false
domain=svc.cluster.local
days=365
regions=()
sans=()
services=(clearing fx netting settlement participants)
spiffe=spiffe://remitnet

while [[ $# -gt 0 ]]; do
  case "$1" in
    --namespace) namespace="$2"; shift 2 ;;
    --certs-dir) certs_dir="$2"; shift 2 ;;
    --ca-dir) ca_dir="$2"; shift 2 ;;
    --out) out_dir="$2"; shift 2 ;;
    --csr) csr="$2"; shift 2 ;;
    --bank)
      if [[ "$command" == hub ]]; then
        echo "error: the hub command issues no bank certificates: a bank makes its own key" \
          "and request (bank-csr) and the operator signs it (sign-csr)" >&2
        exit 2
      fi
      bank="$2"; shift 2 ;;
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
[[ ${#regions[@]} -gt 0 ]] || regions=(us-east1 europe-west1 asia-southeast1)

check_bank() {
  # BANK_CODE_RE of services/remitnet/services/domain/model.py, and not a reserved code.
  if [[ -z "$bank" ]]; then
    echo "error: $command needs --bank CODE" >&2
    exit 2
  fi
  if [[ ! "$bank" =~ ^[A-Z0-9]{3,16}$ ]]; then
    echo "error: bank code $bank is not 3 to 16 of A-Z 0-9" >&2
    exit 2
  fi
  if [[ "$bank" == HUB ]]; then
    echo "error: $bank is reserved for the hub and is not a bank" >&2
    exit 2
  fi
}

tools=(openssl)
[[ "$command" != hub || "$certs_only" == true ]] || tools+=(kubectl)
for tool in "${tools[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool is not installed" >&2
    exit 1
  fi
done

umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# --- bank-csr: runs at the bank; needs nothing of the hub's. ---------------
if [[ "$command" == bank-csr ]]; then
  check_bank
  mkdir -p "$out_dir"
  chmod 0700 "$out_dir"
  key="$out_dir/client.bank-$bank.key"
  if [[ -f "$key" ]]; then
    echo "reusing the key $key" >&2
  else
    new_key "$key"
  fi
  openssl req -new -key "$key" -subj "/O=remitnet/CN=bank $bank" \
    -addext "subjectAltName = URI:$spiffe/bank/$bank" -out "$out_dir/client.bank-$bank.csr"
  echo "wrote $key (keep it: it never leaves this machine) and" \
    "$out_dir/client.bank-$bank.csr: send the .csr to the hub operator, who runs" \
    "scripts/gen_hub_certs.sh sign-csr --bank $bank --csr client.bank-$bank.csr" >&2
  exit 0
fi

mkdir -p "$certs_dir" "$ca_dir"
chmod 0700 "$certs_dir" "$ca_dir"

make_ca() {
  # make_ca NAME CN: NAME.key and NAME.crt in ca_dir, unless they exist.
  local name="$1" cn="$2"
  if [[ -f "$ca_dir/$name.key" && -f "$ca_dir/$name.crt" ]]; then
    echo "reusing the $cn in $ca_dir" >&2
    return
  fi
  new_key "$ca_dir/$name.key"
  cat >"$work/$name.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
O = remitnet
CN = $cn
[ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
EOF
  openssl req -x509 -new -config "$work/$name.cnf" -extensions ca -key "$ca_dir/$name.key" \
    -days 3650 -sha256 -out "$ca_dir/$name.crt"
  echo "created the $cn in $ca_dir" >&2
}

sign() {
  # sign CA CSR OUT SUBJECT PURPOSE SAN...: OUT signed by CA (server-ca or
  # client-ca) from CSR, with our subject and extensions only.
  local ca="$1" request="$2" out="$3" subject="$4" purpose="$5" alt
  shift 5
  alt="$(IFS=,; printf '%s' "$*")"
  cat >"$work/ext" <<EOF
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = $purpose
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $alt
EOF
  openssl x509 -req -in "$request" -CA "$ca_dir/$ca.crt" -CAkey "$ca_dir/$ca.key" \
    -subj "$subject" -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
    -extfile "$work/ext" -out "$out" 2>/dev/null
}

# --- sign-csr: the operator signs a bank's request with the client CA. -----
if [[ "$command" == sign-csr ]]; then
  check_bank
  if [[ -z "$csr" || ! -f "$csr" ]]; then
    echo "error: sign-csr needs --csr FILE (the bank's request)" >&2
    exit 2
  fi
  if [[ ! -f "$ca_dir/client-ca.key" ]]; then
    echo "error: no client CA in $ca_dir: run scripts/gen_hub_certs.sh hub first" >&2
    exit 1
  fi
  if ! openssl req -in "$csr" -noout -verify >/dev/null 2>&1; then
    echo "error: $csr is not a certificate request signed by its own key" >&2
    exit 1
  fi
  # A request that asks for another identity is refused rather than quietly
  # re-labelled: the bank and the operator disagree about who it is.
  asked="$(openssl req -in "$csr" -noout -text | grep -o 'URI:spiffe://[^, ]*' || true)"
  if [[ -n "$asked" && "$asked" != "URI:$spiffe/bank/$bank" ]]; then
    echo "error: $csr asks for ${asked#URI:}, not $spiffe/bank/$bank" >&2
    exit 1
  fi
  out="$certs_dir/client.bank-$bank.crt"
  sign client-ca "$csr" "$out" "/O=remitnet/CN=bank $bank" clientAuth "URI:$spiffe/bank/$bank"
  cp "$ca_dir/server-ca.crt" "$certs_dir/server-ca.crt"
  echo "wrote $out ($spiffe/bank/$bank): send it and $certs_dir/server-ca.crt (to verify" \
    "the hub) back to the bank" >&2
  exit 0
fi

# --- hub: the CAs, the server certificate, the operator's certificate. ------
if [[ -f "$ca_dir/ca.key" && ! -f "$ca_dir/client-ca.key" ]]; then
  echo "note: $ca_dir/ca.key (one CA for server and clients, as before) is not reused:" \
    "clients now come from a client CA of their own; re-issue every client certificate" >&2
fi
make_ca server-ca "remitnet hub server CA"
make_ca client-ca "remitnet hub client CA"
cp "$ca_dir/server-ca.crt" "$certs_dir/server-ca.crt"
cp "$ca_dir/client-ca.crt" "$certs_dir/client-ca.crt"

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
new_key "$certs_dir/tls.key"
openssl req -new -key "$certs_dir/tls.key" -subj "/O=remitnet/CN=remitnet-hub" -out "$work/tls.csr"
sign server-ca "$work/tls.csr" "$certs_dir/tls.crt" "/O=remitnet/CN=remitnet-hub" serverAuth \
  "${names[@]}"

# The operator's client certificate (the operator holds the client CA, so it
# makes its own key here, through the same request as a bank's).
new_key "$certs_dir/client.operator.key"
openssl req -new -key "$certs_dir/client.operator.key" -subj "/O=remitnet/CN=operator" \
  -out "$work/operator.csr"
sign client-ca "$work/operator.csr" "$certs_dir/client.operator.crt" \
  "/O=remitnet/CN=remitnet operator" clientAuth "URI:$spiffe/operator"
echo "wrote server-ca.crt, client-ca.crt, tls.crt/.key (server) and" \
  "client.operator.crt/.key ($spiffe/operator) to $certs_dir" >&2

c="$certs_dir"
if [[ "$certs_only" != true ]]; then
  manifest="$(kubectl create secret generic remitnet-hub-tls --namespace "$namespace" \
    --from-file=client-ca.crt="$c/client-ca.crt" --from-file=tls.crt="$c/tls.crt" \
    --from-file=tls.key="$c/tls.key" --dry-run=client --output=yaml)"
  if [[ "$dry_run" == true ]]; then
    printf -- '---\n%s\n' "$manifest"
  else
    printf '%s\n' "$manifest" | kubectl apply --filename=-
    echo "created Secret remitnet-hub-tls in namespace $namespace; the CA keys stay in $ca_dir"
  fi
fi

{
  echo
  echo "The operator's client certificate, for the namespace of the operator's tools"
  echo "(labelled remitnet.io/operator=true):"
  printf '  kubectl create secret generic remitnet-client-operator --namespace <NAMESPACE> \\\n'
  printf '    --from-file=ca.crt=%s --from-file=tls.crt=%s --from-file=tls.key=%s\n' \
    "$c/server-ca.crt" "$c/client.operator.crt" "$c/client.operator.key"
  echo "Each bank: scripts/gen_hub_certs.sh bank-csr --bank CODE (at the bank), then"
  echo "scripts/gen_hub_certs.sh sign-csr --bank CODE --csr FILE (here)."
} >&2
