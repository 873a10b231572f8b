#!/usr/bin/env bash
# Certificates for deploy/etcd.yaml and the sidecars that use it: an etcd CA,
# a server and a peer certificate for the members etcd-{0,1,2} (and the
# etcd-client Service, localhost), and one client certificate for the
# sidecars. Stores them as Secrets (keys ca.crt, tls.crt, tls.key):
#   telltale-system/etcd-server-tls, telltale-system/etcd-peer-tls
#   telltale-system/telltale-etcd-client          (the original, for copying)
#   NS/telltale-etcd-client for every --client-namespace NS
# Secrets cannot be mounted across namespaces: every namespace whose pods
# get fleet profiles needs its own copy of the client Secret.
#
#   deploy/gen-etcd-certs.sh [--days N] [--out DIR] [--no-apply] [--client-namespace NS]...
#   deploy/gen-etcd-certs.sh --copy-to NS...   # copy the client Secret to more namespaces
#
# Needs openssl and kubectl. --no-apply only writes the files into DIR
# (default: a temporary directory, removed at the end unless --out is given):
# ca.crt ca.key, server.crt server.key, peer.crt peer.key, client.crt client.key.
# Run again to renew everything (then restart the members:
# kubectl -n telltale-system rollout restart statefulset/etcd).
set -euo pipefail

namespace=telltale-system
statefulset=etcd
service=etcd
client_service=etcd-client
members=3
client_secret=telltale-etcd-client
days=825
out=""
apply=1
client_namespaces=()
copy_to=()

usage() { sed -n '2,19p' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --days) days="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-apply) apply=0; shift ;;
    --client-namespace) client_namespaces+=("$2"); shift 2 ;;
    --copy-to) shift; while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do copy_to+=("$1"); shift; done ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gen-etcd-certs: unknown argument: $1" >&2; exit 2 ;;
  esac
done

# The client Secret of telltale-system, into namespace $1 (same name, same keys).
copy_client_secret() {
  kubectl -n "$namespace" get secret "$client_secret" -o jsonpath='{.data}' >/dev/null
  kubectl -n "$namespace" get secret "$client_secret" -o go-template='apiVersion: v1
kind: Secret
type: {{.type}}
metadata:
  name: {{.metadata.name}}
  labels: {app.kubernetes.io/part-of: telltale}
data:
{{range $k, $v := .data}}  {{$k}}: {{$v}}
{{end}}' | kubectl -n "$1" apply -f -
}

if [ "${#copy_to[@]}" -gt 0 ]; then
  command -v kubectl >/dev/null || { echo "gen-etcd-certs: kubectl not found" >&2; exit 1; }
  for ns in "${copy_to[@]}"; do copy_client_secret "$ns"; done
  echo "gen-etcd-certs: $client_secret copied to ${copy_to[*]}" >&2
  exit 0
fi

command -v openssl >/dev/null || { echo "gen-etcd-certs: openssl not found" >&2; exit 1; }
if [ "$apply" = 1 ]; then
  command -v kubectl >/dev/null || { echo "gen-etcd-certs: kubectl not found (or use --no-apply)" >&2; exit 1; }
fi

if [ -z "$out" ]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
else
  mkdir -p "$out"
fi
umask 077

openssl req -x509 -newkey rsa:2048 -nodes -days "$days" \
  -subj "/CN=telltale-etcd-ca" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null

# Every name a member is reached by: its own (etcd-N.etcd.telltale-system.svc),
# the client Service, and loopback (etcdctl inside the pod).
sans="DNS:localhost,IP:127.0.0.1"
for ((i = 0; i < members; i++)); do
  for suffix in "" ".${namespace}" ".${namespace}.svc" ".${namespace}.svc.cluster.local"; do
    sans="${sans},DNS:${statefulset}-${i}.${service}${suffix}"
  done
done
for suffix in "" ".${namespace}" ".${namespace}.svc" ".${namespace}.svc.cluster.local"; do
  sans="${sans},DNS:${client_service}${suffix}"
done

# issue NAME CN EXTENDED_KEY_USAGE [SANS]
issue() {
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$out/$1.key" -out "$out/$1.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$3"
    if [ -n "${4:-}" ]; then echo "subjectAltName=$4"; fi
  } >"$out/$1.cnf"
  openssl x509 -req -in "$out/$1.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -days "$days" -sha256 -extfile "$out/$1.cnf" -out "$out/$1.crt" 2>/dev/null
  openssl verify -CAfile "$out/ca.crt" "$out/$1.crt" >/dev/null
  rm -f "$out/$1.csr" "$out/$1.cnf"
}
issue server "etcd" "serverAuth,clientAuth" "$sans"
# Peers connect to each other: a peer certificate serves and is presented as a client.
issue peer "etcd-peer" "serverAuth,clientAuth" "$sans"
issue client "telltale-sidecar" "clientAuth"
rm -f "$out/ca.srl"

if [ "$apply" = 0 ]; then
  echo "gen-etcd-certs: wrote ca, server, peer and client certificates and keys to $out" >&2
  exit 0
fi

# secret NAMESPACE NAME CERT_BASENAME
secret() {
  kubectl -n "$1" create secret generic "$2" \
    --from-file=ca.crt="$out/ca.crt" --from-file=tls.crt="$out/$3.crt" --from-file=tls.key="$out/$3.key" \
    --dry-run=client -o yaml | kubectl apply -f -
}
secret "$namespace" etcd-server-tls server
secret "$namespace" etcd-peer-tls peer
secret "$namespace" "$client_secret" client
for ns in "${client_namespaces[@]}"; do secret "$ns" "$client_secret" client; done
echo "gen-etcd-certs: Secrets etcd-server-tls, etcd-peer-tls and $client_secret in $namespace${client_namespaces[*]:+, $client_secret in ${client_namespaces[*]}}" >&2
