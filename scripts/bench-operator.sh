#!/usr/bin/env bash
# The operator benchmark: starts etcd + kube-apiserver (scripts/services/kube.sh), then runs the
# real `microdash-operator` and `microdash serve` (release builds) and prints the rows of the
# "Operator" table of docs/benchmarks.md: idle RSS and the time for 100 AlertRules to reach
# Accepted + Synced. Not part of the tests.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
"$ROOT/scripts/services/kube.sh" start "$ROOT/.cache/services/kube"
export MICRODASH_TEST_KUBECONFIG="$ROOT/.cache/services/kube/kubeconfig"
cargo build --release --quiet -p microdash
cargo test --release -p microdash-operator --test bench -- --ignored --nocapture 2>&1 | grep -E '^\||^metric:'
