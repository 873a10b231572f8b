#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, formatting, lints, build,
# unit tests and the end-to-end kernel tests (which need root and BTF and
# fail, never skip, when those are missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
./scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
# telltale-core is the pure domain: no async runtime, database, RPC or eBPF
# crate may enter its dependency tree (normal and build dependencies).
forbidden=$(cargo tree -p telltale-core --locked -e normal,build --prefix none --format '{p}' \
  | awk '{print $1}' | grep -xE 'tokio|rusqlite|libsqlite3-sys|tonic|prost|aya|aya-obj|hyper|reqwest|etcd-client' | sort -u || true)
if [ -n "$forbidden" ]; then
  echo "telltale-core must stay pure, but its dependency tree has: $forbidden" >&2
  exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
