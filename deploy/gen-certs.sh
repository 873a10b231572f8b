#!/usr/bin/env bash
# Creates a self-signed CA and a serving certificate for the injector's
# Service, stores them as the Secret telltale-system/telltale-injector-tls and
# writes the CA into the MutatingWebhookConfiguration's caBundle.
# Needs openssl and kubectl (with rights on that namespace and on
# mutatingwebhookconfigurations). Run after `kubectl apply -k deploy/base` (or an overlay);
# run again to rotate: the running webhook loads the new files within a
# minute, and the caBundle trusts the previous CA too meanwhile.
#
#   deploy/gen-certs.sh [--days N] [--out DIR] [--no-apply]
#
# --no-apply only writes ca.crt, tls.crt and tls.key into DIR (default: a
# temporary directory, removed at the end unless --out is given).
# cert-manager instead: see deploy/README.md.
set -euo pipefail

namespace=telltale-system
service=telltale-injector
secret=telltale-injector-tls
webhook=telltale-injector
days=825
out=""
apply=1

while [ $# -gt 0 ]; do
  case "$1" in
    --days) days="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-apply) apply=0; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "gen-certs: unknown argument: $1" >&2; exit 2 ;;
  esac
done

command -v openssl >/dev/null || { echo "gen-certs: openssl not found" >&2; exit 1; }
if [ "$apply" = 1 ]; then
  command -v kubectl >/dev/null || { echo "gen-certs: kubectl not found (or use --no-apply)" >&2; exit 1; }
fi

if [ -z "$out" ]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
else
  mkdir -p "$out"
fi
umask 077

dns="${service}.${namespace}.svc"
openssl req -x509 -newkey rsa:2048 -nodes -days "$days" \
  -subj "/CN=telltale-injector-ca" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null

openssl req -newkey rsa:2048 -nodes -subj "/CN=${dns}" \
  -keyout "$out/tls.key" -out "$out/tls.csr" 2>/dev/null
cat >"$out/ext.cnf" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:${service},DNS:${service}.${namespace},DNS:${dns},DNS:${dns}.cluster.local
EXT
openssl x509 -req -in "$out/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
  -days "$days" -sha256 -extfile "$out/ext.cnf" -out "$out/tls.crt" 2>/dev/null
openssl verify -CAfile "$out/ca.crt" "$out/tls.crt" >/dev/null
rm -f "$out/tls.csr" "$out/ext.cnf" "$out/ca.srl"

if [ "$apply" = 0 ]; then
  echo "gen-certs: wrote $out/ca.crt, $out/tls.crt, $out/tls.key (for ${dns})" >&2
  exit 0
fi

kubectl -n "$namespace" create secret tls "$secret" --cert="$out/tls.crt" --key="$out/tls.key" \
  --dry-run=client -o yaml | kubectl apply -f -

# Trust the new CA and, during the switch, the one in use now (the first
# certificate of the current bundle): the webhook picks up the new serving
# certificate within a minute, without a restart, and no review fails
# meanwhile.
previous="$(kubectl get mutatingwebhookconfiguration "$webhook" \
  -o jsonpath='{.webhooks[0].clientConfig.caBundle}' 2>/dev/null | base64 -d 2>/dev/null \
  | awk '/-----BEGIN CERTIFICATE-----/{n++} n==1' || true)"
ca_bundle="$( {
  cat "$out/ca.crt"
  if [ -n "$previous" ]; then printf '%s\n' "$previous"; fi
} | base64 | tr -d '\n')"
kubectl patch mutatingwebhookconfiguration "$webhook" --type=json -p "[
  {\"op\": \"add\", \"path\": \"/webhooks/0/clientConfig/caBundle\", \"value\": \"${ca_bundle}\"},
  {\"op\": \"add\", \"path\": \"/webhooks/1/clientConfig/caBundle\", \"value\": \"${ca_bundle}\"}
]"

kubectl -n "$namespace" rollout status deployment/"$service" --timeout=120s
echo "gen-certs: serving certificate for ${dns} installed; caBundle patched (the webhook loads it within a minute)" >&2
