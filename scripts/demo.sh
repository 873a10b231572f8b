#!/usr/bin/env bash
# The main job: build telltale, trace the demo web app, then the story:
# the app is learned, an attacker makes it run a downloaded script, a signal
# is raised, it is marked benign, and the same actions no longer signal.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
./scripts/setup.sh
cargo build --release --locked -p telltale-sidecar -p telltale-examples
echo "== telltale trace -- demo-webapp: what the app does ==" >&2
./target/release/telltale trace -- ./target/release/demo-webapp
echo "== telltale-demo: learn, attack, signal, mark benign ==" >&2
exec ./target/release/telltale-demo
