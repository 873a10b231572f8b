#!/usr/bin/env bash
# The main job: build telltale and trace the demo web-app workload.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
./scripts/setup.sh
cargo build --release --locked -p telltale-sidecar -p telltale-examples
echo "== telltale trace -- demo-webapp ==" >&2
exec ./target/release/telltale trace -- ./target/release/demo-webapp
