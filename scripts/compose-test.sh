#!/usr/bin/env bash
# The container step of the test command: the Compose stack for real.
#   1. a Docker engine (scripts/docker-engine.sh) and the images (`make images`);
#   2. docker-compose.yml's distributed stack up with `docker compose up -d --wait`, under the
#      project name microdash-test, secrets generated for this run, fresh volumes;
#   3. the Playwright BDD features of tests/e2e/playwright.stack.config.ts against the api
#      replicas' published ports: "Ingest → Chart", then the stack's own scenarios (agent
#      metrics, MQTT through Mosquitto, the second replica's live stream, worker kill -9 and
#      MariaDB restart under acknowledged ingest, down/up, the embedded profile);
#   4. everything torn down (containers, network, volumes), also when a step fails.
# Report: the list output in .cache/test-logs/e2e-stack.log, JUnit XML in
# .cache/test-logs/e2e-stack.xml; compose's own output in .cache/compose-test/.
#
#   scripts/compose-test.sh          # all of it
#   KEEP=1 scripts/compose-test.sh   # leave the stack up afterwards (docker compose -p microdash-test …)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
source scripts/lib.sh
LOGS="$ROOT/.cache/test-logs"
DIR="$ROOT/.cache/compose-test"
PROJECT=microdash-test
# Published on the host below Linux's ephemeral range (32768-60999): a port in it may be held by
# any client or test server at that moment (a cold run once failed with "bind: address already
# in use" on 58080, taken by a test server's random port).
HTTP_PORTS=28080-28081 EMBEDDED_PORT=28090 MQTT_PORT=28883
mkdir -p "$LOGS" "$DIR"

step() { echo "==> $*"; }
started=$(date +%s)

scripts/docker-engine.sh start
step "Images (make images)"
images_started=$(date +%s)
TAG=dev scripts/images.sh
images_s=$(( $(date +%s) - images_started ))

# The compose plugin (built from Go modules where the machine has none).
if ! docker compose version >/dev/null 2>&1; then
  DOCKER_CONFIG=$(scripts/compose-tool.sh)
  export DOCKER_CONFIG
fi

# Secrets for this run only (the file stays in the ignored .cache folder, mode 0600).
secret() { openssl rand -hex 32; }
umask 077
{
  echo "COMPOSE_PROFILES=distributed"
  echo "MARIADB_ROOT_PASSWORD=$(secret)"
  echo "MARIADB_PASSWORD=$(secret)"
  echo "MQTT_BRIDGE_PASSWORD=$(secret)"
  echo "MQTT_DEFAULT_TENANT_PASSWORD=$(secret)"
  echo "MICRODASH_ADMIN_TOKEN=$(secret)"
  echo "MICRODASH_DEFAULT_TENANT_TOKEN=$(secret)"
  echo "MICRODASH_HTTP_PORTS=$HTTP_PORTS"
  echo "MICRODASH_HTTP_PORT=$EMBEDDED_PORT"
  echo "MQTT_PORT=$MQTT_PORT"
  # Images: the Compose file's defaults (microdash:dev, microdash-agent:dev; the official service
  # images, or where none can be pulled the stand-ins that `make images` tagged with their names).
} >"$DIR/env"
umask 022
env_value() { sed -n "s/^$1=//p" "$DIR/env"; }

compose=(docker compose --project-directory "$ROOT" -f "$ROOT/docker-compose.yml" --env-file "$DIR/env" -p "$PROJECT")
teardown() {
  local rc=$?
  if [[ ${KEEP:-0} == 1 ]]; then
    echo "KEEP=1: the stack stays up (${compose[*]} ps)"
    return $rc
  fi
  if (( rc != 0 )); then
    "${compose[@]}" --profile '*' ps -a >"$DIR/ps-at-failure.txt" 2>&1 || true
    "${compose[@]}" --profile '*' logs --no-color --timestamps >"$DIR/logs-at-failure.txt" 2>&1 || true
    echo "The stack's state and logs at the failure: $DIR/ps-at-failure.txt, $DIR/logs-at-failure.txt" >&2
  fi
  step "Tearing the stack down (containers, network, volumes)"
  "${compose[@]}" --profile '*' down --volumes --remove-orphans --timeout 10 >"$DIR/down.log" 2>&1 || cat "$DIR/down.log" >&2
  local left
  left=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")
  if [[ -n $left ]]; then
    echo "error: containers of $PROJECT are still there after down: $left" >&2
    rc=1
  fi
  return $rc
}
# What an earlier, interrupted run left (fresh volumes for every run).
"${compose[@]}" --profile '*' down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true
trap teardown EXIT

step "docker compose up -d --wait (distributed: MariaDB, Redis, Mosquitto, api ×2, worker, agent)"
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
up_started=$(now_ms)
if ! "${compose[@]}" up -d --wait --wait-timeout 300 >"$DIR/up.log" 2>&1; then
  cat "$DIR/up.log" >&2
  echo "error: the stack did not become healthy" >&2
  exit 1
fi
up_ms=$(( $(now_ms) - up_started ))
up_s="$(( up_ms / 1000 )).$(( up_ms % 1000 / 100 ))"
step "Stack healthy ${up_s} s after docker compose up"
"${compose[@]}" ps --format 'table {{.Service}}\t{{.Status}}\t{{.Ports}}'

# The two api replicas: one published port each.
replica_url() {
  local port
  port=$("${compose[@]}" port --index "$1" api 8080 | awk -F: '{print $NF}')
  [[ -n $port ]] || { echo "error: api replica $1 publishes no port" >&2; return 1; }
  echo "http://127.0.0.1:$port"
}
E2E_STACK_URL=$(replica_url 1)
E2E_STACK_URL_2=$(replica_url 2)
[[ $E2E_STACK_URL != "$E2E_STACK_URL_2" ]] || { echo "error: both replicas on $E2E_STACK_URL" >&2; exit 1; }

step "Browser and container scenarios against the stack (Playwright BDD, Debian Chromium; $E2E_STACK_URL and $E2E_STACK_URL_2)"
npm_ci_cached "$ROOT/tests/e2e"
compose_json=$(printf '%s\n' "${compose[@]}" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().splitlines()))')
set +e
(
  cd tests/e2e
  E2E_STACK_URL=$E2E_STACK_URL E2E_STACK_URL_2=$E2E_STACK_URL_2 \
  E2E_STACK_EMBEDDED_URL="http://127.0.0.1:$EMBEDDED_PORT" \
  E2E_STACK_ADMIN_TOKEN=$(env_value MICRODASH_ADMIN_TOKEN) \
  E2E_STACK_DEFAULT_TOKEN=$(env_value MICRODASH_DEFAULT_TENANT_TOKEN) \
  E2E_STACK_MQTT_PASSWORD=$(env_value MQTT_DEFAULT_TENANT_PASSWORD) \
  E2E_COMPOSE=$compose_json E2E_STACK_REPORT="$LOGS/e2e-stack.xml" \
  npm run --silent test:stack
) 2>&1 | tee "$LOGS/e2e-stack.log"
rc=${PIPESTATUS[0]}
set -e
(( rc == 0 )) || { echo "error: the stack scenarios failed (report above; $LOGS/e2e-stack.log)" >&2; exit "$rc"; }
step "Container step done in $(( $(date +%s) - started )) s (images ${images_s} s, compose up ${up_s} s)"
