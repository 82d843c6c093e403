#!/usr/bin/env bash
# Property-based contract tests of the HTTP API with schemathesis: starts target/debug/microdash
# (built by the test command; this script builds nothing) on SQLite in a temporary folder on a
# free loopback port, then runs `schemathesis run --checks all` against its /openapi.json twice,
# once with a tenant's token and once with the admin token. Every check must pass: the document
# has to declare every status code, content type and schema the server really answers, and the
# server has to refuse what the document forbids and accept what it allows.
# Reports (JUnit, NDJSON events, the console output) go to .cache/test-logs/schemathesis-*.
# Exits non-zero on any failure. Usage: scripts/schemathesis.sh [extra schemathesis options]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

SCHEMATHESIS_VERSION=4.32.5
# Test cases per operation and phase (fuzzing, stateful). The two runs go side by side and take
# about 2 to 3 minutes on a 2-core machine, most of it in the coverage phase, which max-examples
# does not bound.
# Settings per operation (SSE streams, the few semantic checks no schema can state) are in
# scripts/schemathesis.toml. No check is excluded.
MAX_EXAMPLES=${MICRODASH_SCHEMATHESIS_EXAMPLES:-20}
SEED=${MICRODASH_SCHEMATHESIS_SEED:-$RANDOM}
VENV="$ROOT/.cache/schemathesis-venv"
LOGS="$ROOT/.cache/test-logs"
BIN="$ROOT/target/debug/microdash"
ADMIN_TOKEN="schemathesis-admin-token-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

[[ -x "$BIN" ]] || { echo "$BIN is missing: build it first (cargo build -p microdash)" >&2; exit 1; }
mkdir -p "$LOGS"

# schemathesis in its own virtualenv, (re)installed when the pinned version is not there.
if [[ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != *" $SCHEMATHESIS_VERSION" ]]; then
  echo "==> Installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work=$(mktemp -d)
server_pids=()
cleanup() {
  for pid in "${server_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# start_server NAME: a server of its own for one run (the admin run creates and deletes tenants,
# which must not pull the tenant run's tenant away), on SQLite in $work/NAME, on a free loopback
# port (the kernel picks one, then the server binds it; the race with another process taking it
# in between is not worth more machinery: the start then fails clearly). Sets `base`.
start_server() {
  local name=$1 port dir="$work/$1" log="$LOGS/schemathesis-server-$1.log"
  mkdir -p "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  base="http://127.0.0.1:$port"
  MICRODASH_ADMIN_TOKEN="$ADMIN_TOKEN" MICRODASH_LOG=warn \
    "$BIN" serve --listen "127.0.0.1:$port" --mqtt-listen off \
    --database-url "sqlite://$dir/microdash.db" --data-dir "$dir" \
    >"$log" 2>&1 &
  local pid=$!
  server_pids+=("$pid")
  for _ in $(seq 1 100); do
    curl -fsS "$base/readyz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "microdash did not start" >&2; exit 1; }
    sleep 0.1
  done
  curl -fsS "$base/readyz" >/dev/null || { cat "$log"; echo "microdash is not ready" >&2; exit 1; }
}

# run NAME TOKEN BASE: one schemathesis run, its console output in its log, its exit code and
# summary line in $work/NAME.rc and $work/NAME.summary.
run() {
  local name=$1 token=$2 url=$3 started rc=0
  shift 3
  started=$(date +%s)
  # One worker: with two, schemathesis' threads compile schemas at the same time and Python 3.11
  # now and then fails inside (SystemError "AST constructor recursion depth mismatch"). The two
  # runs are two processes side by side instead (one per core of a 2-core machine).
  # From the run's own folder: schemathesis and Hypothesis keep their caches (.schemathesis,
  # .hypothesis) in the working directory, and a run should not replay another's.
  mkdir -p "$work/$name-cwd"
  (cd "$work/$name-cwd" && NO_COLOR=1 PYTHONPATH="$ROOT/scripts" SCHEMATHESIS_HOOKS=schemathesis_hooks "$VENV/bin/schemathesis" --config-file "$ROOT/scripts/schemathesis.toml" run "$url/openapi.json" \
    --checks all \
    --header "Authorization: Bearer $token" \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --workers 1 \
    --request-timeout 10 \
    --report junit,ndjson \
    --report-junit-path "$LOGS/schemathesis-$name.xml" \
    --report-ndjson-path "$LOGS/schemathesis-$name.ndjson" \
    "$@") >"$LOGS/schemathesis-$name.log" 2>&1 || rc=$?
  echo "$rc" >"$work/$name.rc"
  echo "$name: exit $rc, $(( $(date +%s) - started ))s, $(awk '/^Test cases:/ { getline; sub(/^ +/, ""); print; exit }' "$LOGS/schemathesis-$name.log")" >"$work/$name.summary"
}

start_server tenant
tenant_base=$base
# The tenant `default` that a fresh server creates, with its first token (all scopes).
tenant_token=$(tr -d '\n' <"$work/tenant/default-tenant.token")
[[ -n "$tenant_token" ]] || { echo "no token of tenant default in $work/tenant" >&2; exit 1; }
start_server admin
admin_base=$base

echo "==> schemathesis (tenant and admin token side by side, --checks all, seed $SEED, up to $MAX_EXAMPLES cases per operation and phase)"
run tenant "$tenant_token" "$tenant_base" "$@" &
tenant_run=$!
run admin "$ADMIN_TOKEN" "$admin_base" "$@" &
admin_run=$!
wait "$tenant_run" "$admin_run" || true

failed=0
for name in tenant admin; do
  echo "==> schemathesis ($name token)"
  # The closing block (failures, then the summary) of the console output.
  if grep -q '^=* *SUMMARY' "$LOGS/schemathesis-$name.log"; then
    sed -n '/^=* *\(FAILURES\|SUMMARY\)/,$p' "$LOGS/schemathesis-$name.log" | tail -n 60
  else
    tail -n 30 "$LOGS/schemathesis-$name.log"
  fi
  [[ "$(cat "$work/$name.rc" 2>/dev/null)" == 0 ]] || failed=1
done

echo "==> schemathesis summary (logs and reports in $LOGS/schemathesis-*)"
for name in tenant admin; do
  echo "  $(cat "$work/$name.summary" 2>/dev/null || echo "$name: no result")"
done
exit "$failed"
