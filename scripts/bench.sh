#!/usr/bin/env bash
# `make bench`: builds release binaries and runs the benchmark harness, which writes
# docs/benchmarks.md. Not part of the tests: it takes minutes and wants an idle machine.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source scripts/lib.sh
ensure_debs prometheus prometheus-alertmanager mosquitto mosquitto-clients victoria-metrics
build_dashboard "$ROOT"
cargo build --release --quiet -p microdash -p microdash-bench
./target/release/microdash-bench "$@"
