#!/usr/bin/env bash
# `make bench`: builds release binaries and runs the benchmark harness, which writes
# docs/benchmarks.md. Not part of the tests: it takes minutes and wants an idle machine.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source scripts/lib.sh
ensure_debs prometheus prometheus-alertmanager prometheus-node-exporter mosquitto mosquitto-clients victoria-metrics chromium
build_dashboard "$ROOT"
# The live section drives Debian's Chromium with Playwright from the e2e tests' node_modules.
npm_ci_cached "$ROOT/tests/e2e"
cargo build --release --quiet -p microdash -p microdash-bench
# The agent as it ships: its own profile (Cargo.toml), which the agent section measures.
cargo build --profile agent --quiet -p microdash-agent
# PostgreSQL, MariaDB, Redis and Mosquitto on loopback, as for the tests (the storage section
# creates a fresh database per setup on them).
echo "==> Starting PostgreSQL, MariaDB, Redis on loopback (data in .cache/services)"
services_env=$(scripts/services.sh start)
eval "$services_env"
trap 'scripts/services.sh stop' EXIT
TARGET=${CARGO_TARGET_DIR:-target}
"$TARGET/release/microdash-bench" --server "$TARGET/release/microdash" --agent "$TARGET/agent/microdash-agent" "$@"
