#!/usr/bin/env bash
# The whole microdash test suite: formatting, lints, Rust unit and black-box tests, dashboard
# type checks and unit tests, and the Playwright BDD browser tests against a real server.
# Installs what it needs (Debian packages, npm packages) and is quick when they are there.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source scripts/lib.sh
LOGS="$ROOT/.cache/test-logs"
mkdir -p "$LOGS"
started=$(date +%s)

# Disk: a cold run fills about DISK_NEED_GB (target/debug and target/release, the Go build cache,
# the images in the engine's store, the cluster's node image); CI once ran out of space in the
# release build. Incremental compilation is off: on a fresh clone it only adds gigabytes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
DISK_NEED_GB=24
disk_free_gb=$(df -Pk "$ROOT" | awk 'NR == 2 { print int($4 / 1048576) }')
echo "==> Disk: ${disk_free_gb} GB free where the project is (a cold run needs about ${DISK_NEED_GB} GB)"
if (( disk_free_gb < DISK_NEED_GB )); then
  echo "warning: less than ${DISK_NEED_GB} GB free; a cold run may stop with 'No space left on device'." >&2
  echo "         Free space first (an old clone's target/, 'docker system prune', ~/.cache/go-build)." >&2
fi

ensure_debs chromium ca-certificates python3-aiosmtpd openssl curl mosquitto mosquitto-clients debootstrap victoria-metrics \
  prometheus prometheus-node-exporter python3-venv nginx-light haproxy
# Client libraries of the protocol tests (PyPI), in a virtualenv under .cache: the InfluxDB
# client writes line protocol, the OpenTelemetry SDK exports OTLP/HTTP (apiserver/tests/protocols.rs);
# the MCP SDK is the client of the MCP server's tests (apiserver/tests/mcp.rs).
CLIENTS_VENV="$ROOT/.cache/clients-venv"
CLIENTS=(influxdb-client==1.50.0 opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-http==1.45.2 mcp==2.3.0)
if [[ "$(cat "$CLIENTS_VENV/.installed" 2>/dev/null)" != "${CLIENTS[*]}" ]]; then
  echo "==> Installing the protocol tests' client libraries into $CLIENTS_VENV"
  rm -rf "$CLIENTS_VENV"
  python3 -m venv "$CLIENTS_VENV"
  "$CLIENTS_VENV/bin/pip" install --quiet --disable-pip-version-check "${CLIENTS[@]}"
  echo "${CLIENTS[*]}" > "$CLIENTS_VENV/.installed"
fi
export MICRODASH_TEST_PYTHON="$CLIENTS_VENV/bin/python"
# The MCP conformance suite (npm), run against /mcp by apiserver/tests/mcp.rs.
npm_ci_cached "$ROOT/tests/mcp-conformance"
export MICRODASH_TEST_MCP_CONFORMANCE="$ROOT/tests/mcp-conformance/node_modules/@modelcontextprotocol/conformance/dist/index.js"
# A Docker engine (Debian's docker.io, started when none answers): the container step at the end
# runs the Compose stack for real, and the compose tests render docker-compose.yml with its client.
scripts/docker-engine.sh start
# The Go-built tools (kube-apiserver, kubectl, etcd, helm; the compose plugin) and the Debian
# base image of `make images` (debootstrap) are made in the background while cargo works: on a
# cold machine each takes minutes, and side by side they finish sooner. Cached in
# .cache/kube-tools, .cache/docker and .cache/images (plus the engine's store) afterwards.
echo "==> Go tools (kube-apiserver, etcd, helm, docker compose) and the base image, in the background (logs in $LOGS/)"
(scripts/kube-tools.sh && scripts/compose-tool.sh) >"$LOGS/go-tools.log" 2>&1 &
go_tools=$!
scripts/images.sh --base-only >"$LOGS/base-image.log" 2>&1 &
base_image=$!
# --- cluster (issue 14): kind and the Kubernetes node binaries, built after the Go tools above
# (they share Go's build cache, so most of kube-apiserver's packages are compiled once) ---
(while kill -0 "$go_tools" 2>/dev/null; do sleep 5; done; scripts/cluster/tools.sh) >"$LOGS/cluster-tools.log" 2>&1 &
cluster_tools=$!
# --- end cluster ---

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
build_dashboard "$ROOT"
echo "==> cargo build (tests)"
cargo test --workspace --no-run --quiet 2>"$LOGS/cargo-build.log" || { cat "$LOGS/cargo-build.log"; exit 1; }
# The release binaries of the container step, built from here on at the lowest CPU priority:
# the tests below wait on servers and leave a core idle much of the time, and on a cold machine
# this build was most of the 777 s the images took in the container step's 985 s (a cold run of
# 2026-12-06, 3498 s in all). Warm, it finds everything built at once.
echo "==> Release binaries for the images, in the background at nice 19 (log in $LOGS/release-build.log)"
nice -n 19 scripts/images.sh --binaries-only >"$LOGS/release-build.log" 2>&1 &
release_build=$!

if ! wait "$go_tools"; then
  cat "$LOGS/go-tools.log"
  echo "Building the Go tools failed (see above)." >&2
  exit 1
fi
if ! wait "$base_image"; then
  cat "$LOGS/base-image.log"
  echo "Making the base image failed (see above)." >&2
  exit 1
fi
MICRODASH_TEST_DOCKER_CONFIG=$(scripts/compose-tool.sh)
export MICRODASH_TEST_DOCKER_CONFIG

echo "==> Starting test services (PostgreSQL, MariaDB, Redis, Mosquitto, etcd + kube-apiserver on loopback; data in .cache/services)"
# Captured first: `eval "$(…)"` alone would hide a failed start.
services_env=$(scripts/services.sh start)
eval "$services_env"
trap 'scripts/services.sh stop' EXIT

echo "==> cargo test"
# Tests of one binary run side by side (cargo's default threads): each owns its databases,
# ports, namespaces and Tenants, so a test that fails only beside others points at shared state
# or a race in the product (the operators of concurrent tests once reconciled each other's
# Tenants; `--test-threads=1` had hidden it).
cargo test --workspace --no-fail-fast 2>&1 | tee "$LOGS/cargo.log"

echo "==> schemathesis"
# The OpenAPI contract, property-based, with every check, for a tenant's token and the admin
# token (target/debug/microdash, built by the step above; reports in $LOGS/schemathesis-*).
schemathesis_started=$(date +%s)
scripts/schemathesis.sh 2>&1 | tee "$LOGS/schemathesis.log"
schemathesis_s=$(( $(date +%s) - schemathesis_started ))

echo "==> dashboard: typecheck and unit tests"
(cd dashboard && npm run --silent typecheck && npx vitest run --reporter=dot) 2>&1 | tee "$LOGS/vitest.log"

echo "==> browser tests (Playwright BDD, Debian Chromium)"
npm_ci_cached "$ROOT/tests/e2e"
(cd tests/e2e && npm test) 2>&1 | tee "$LOGS/e2e.log"

if ! wait "$release_build"; then
  cat "$LOGS/release-build.log"
  echo "Building the release binaries failed (see above)." >&2
  exit 1
fi
echo "==> containers: images, the Compose stack, Ingest → Chart and the stack scenarios against it"
# Its own step and report (.cache/test-logs/e2e-stack.log and e2e-stack.xml); tears the stack down.
container_started=$(date +%s)
scripts/compose-test.sh
container_s=$(( $(date +%s) - container_started ))
# --- cluster (issue 14): a kind cluster whose pods run, microdash installed by its chart, the
# end-to-end checks, then the cluster deleted (also when a step fails) ---
echo "==> Kubernetes cluster (kind microdash-ci): up, end to end, down (log in $LOGS/cluster.log)"
if ! wait "$cluster_tools"; then
  cat "$LOGS/cluster-tools.log"
  echo "Building kind and the Kubernetes node binaries failed (see above)." >&2
  exit 1
fi
trap 'scripts/cluster/down.sh; scripts/services.sh stop' EXIT
cluster_started=$(date +%s)
scripts/cluster/up.sh 2>&1 | tee "$LOGS/cluster.log"
scripts/cluster/e2e.sh 2>&1 | tee -a "$LOGS/cluster.log"
scripts/cluster/down.sh 2>&1 | tee -a "$LOGS/cluster.log"
echo "==> cluster step: $(( $(date +%s) - cluster_started ))s"
# --- end cluster ---

# One closing line for the whole run (every step above already stopped the run on a failure).
count() { sed 's/\x1b\[[0-9;]*m//g' "$1" | { grep -Eo "$2" || true; } | grep -Eo '[0-9]+' | awk '{s+=$1} END {print s+0}'; }
cargo_passed=$(count "$LOGS/cargo.log" 'test result: ok\. [0-9]+ passed')
cargo_failed=$(count "$LOGS/cargo.log" '[0-9]+ failed')
vitest_passed=$(count "$LOGS/vitest.log" 'Tests +[0-9]+ passed')
e2e_passed=$(count "$LOGS/e2e.log" '^ *[0-9]+ passed')
stack_passed=$(count "$LOGS/e2e-stack.log" '^ *[0-9]+ passed')
cluster_passed=$(count "$LOGS/e2e-cluster.log" '^ *[0-9]+ passed')
# Each schemathesis run (tenant, admin) that passed counts as one test; its cases are shown.
schemathesis_passed=$(grep -Ec '^  (tenant|admin): exit 0,' "$LOGS/schemathesis.log" || true)
schemathesis_cases=$(sed -n 's/^  \(tenant\|admin\): exit 0, [0-9]*s, \([0-9]*\) generated.*/\2/p' "$LOGS/schemathesis.log" | awk '{s+=$1} END {print s+0}')
total=$((cargo_passed + schemathesis_passed + ${vitest_passed:-0} + ${e2e_passed:-0} + ${stack_passed:-0} + ${cluster_passed:-0}))
echo "cargo: ${cargo_passed} passed; schemathesis: ${schemathesis_passed} runs passed (${schemathesis_cases} cases, ${schemathesis_s} s); vitest: ${vitest_passed:-0} passed; browser: ${e2e_passed:-0} passed; containers: ${stack_passed:-0} passed (${container_s} s); cluster browser: ${cluster_passed:-0} passed; $(( $(date +%s) - started ))s"
echo "disk: $(df -Pk "$ROOT" | awk 'NR == 2 { print int($4 / 1048576) }') GB free at the end (${disk_free_gb} GB at the start)"
echo "${total} passed, ${cargo_failed} failed"
