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
# Test cases per operation and phase (fuzzing, stateful). Both runs together take about 3 to 4
# minutes on a 2-core machine, most of it in the coverage phase, which max-examples does not bound.
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
server_pid=
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A free loopback port: the kernel picks one, then the server binds it (the race with another
# process taking it in between is not worth more machinery: the start then fails clearly).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

MICRODASH_ADMIN_TOKEN="$ADMIN_TOKEN" MICRODASH_LOG=warn \
  "$BIN" serve --listen "127.0.0.1:$port" --mqtt-listen off \
  --database-url "sqlite://$work/microdash.db" --data-dir "$work" \
  >"$LOGS/schemathesis-server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$LOGS/schemathesis-server.log"; echo "microdash did not start" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null || { cat "$LOGS/schemathesis-server.log"; echo "microdash is not ready" >&2; exit 1; }

# The tenant `default` that a fresh server creates, with its first token (all scopes).
tenant_token=$(tr -d '\n' <"$work/default-tenant.token")
[[ -n "$tenant_token" ]] || { echo "no token of tenant default in $work" >&2; exit 1; }

# run NAME TOKEN: one schemathesis run; its summary lines go to the console and its log.
failed=0
summary=()
run() {
  local name=$1 token=$2 started rc=0
  shift 2
  started=$(date +%s)
  echo "==> schemathesis ($name token, --checks all, seed $SEED, up to $MAX_EXAMPLES cases per operation and phase)"
  # One worker: with two, schemathesis' threads compile schemas at the same time and Python 3.11
  # now and then fails inside (SystemError "AST constructor recursion depth mismatch").
  # From the temporary folder: schemathesis and Hypothesis keep their caches (.schemathesis,
  # .hypothesis) in the working directory, and a run should not replay the previous one's.
  (cd "$work" && NO_COLOR=1 PYTHONPATH="$ROOT/scripts" SCHEMATHESIS_HOOKS=schemathesis_hooks "$VENV/bin/schemathesis" --config-file "$ROOT/scripts/schemathesis.toml" run "$base/openapi.json" \
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
  # The closing block (failures, then the summary) of the console output.
  if grep -q '^=* *SUMMARY' "$LOGS/schemathesis-$name.log"; then
    sed -n '/^=* *\(FAILURES\|SUMMARY\)/,$p' "$LOGS/schemathesis-$name.log" | tail -n 60
  else
    tail -n 30 "$LOGS/schemathesis-$name.log"
  fi
  summary+=("$name: exit $rc, $(( $(date +%s) - started ))s, $(awk '/^Test cases:/ { getline; sub(/^ +/, ""); print; exit }' "$LOGS/schemathesis-$name.log")")
  ((rc == 0)) || failed=1
}
run tenant "$tenant_token" "$@"
run admin "$ADMIN_TOKEN" "$@"

echo "==> schemathesis summary (logs and reports in $LOGS/schemathesis-*)"
printf '  %s\n' "${summary[@]}"
exit "$failed"
