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
cargo test --workspace --locked
