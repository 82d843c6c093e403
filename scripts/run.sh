#!/usr/bin/env bash
# Runs microdash on embedded defaults (SQLite under ./data, in-process queue) with the
# dashboard, plus a local agent that ships this machine's metrics so the charts move.
# Ctrl-C stops both.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source scripts/lib.sh

build_dashboard "$ROOT"
echo "==> Building microdash and microdash-agent (release)"
cargo build --release --quiet -p microdash -p microdash-agent

# The binaries are where cargo put them (CARGO_TARGET_DIR, as scripts/bench.sh reads it).
TARGET=${CARGO_TARGET_DIR:-target}
LISTEN=${MICRODASH_LISTEN:-0.0.0.0:8080}
PORT=${LISTEN##*:}
"$TARGET/release/microdash" serve --listen "$LISTEN" &
SERVER=$!
trap 'kill $SERVER ${AGENT:-} 2>/dev/null; wait 2>/dev/null' EXIT INT TERM

for _ in $(seq 1 100); do
  [[ -s data/default-tenant.token ]] && curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
"$TARGET/release/microdash-agent" --server "http://127.0.0.1:$PORT" --token "$(cat data/default-tenant.token)" \
  --interval "${MICRODASH_AGENT_INTERVAL:-2s}" --spool-dir data/agent-spool &
AGENT=$!
echo
echo "microdash is running: open http://localhost:$PORT/ and log in with the token in data/default-tenant.token"
echo "  $(cat data/default-tenant.token)"
echo "Ctrl-C stops the server and the agent."
wait $SERVER
