#!/usr/bin/env bash
# Registers the runtime `microdash-cluster-runc` (scripts/cluster/runc-wrapper: runc without
# CAP_SYS_RESOURCE) with the running Docker engine, for the kind node containers only.
# Idempotent: installs the wrapper at a fixed path, adds the runtime to /etc/docker/daemon.json
# (other settings kept) and sends dockerd SIGHUP, which reloads runtimes without a restart.
# The default runtime and every other container are left as they are. Does nothing where
# `docker run --privileged IMAGE` works (IMAGE: the first argument, default microdash-base:bookworm).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/scripts/lib.sh"
RUNTIME=microdash-cluster-runc
WRAPPER=/usr/local/lib/microdash-cluster/runc
CONFIG=${DOCKER_DAEMON_CONFIG:-/etc/docker/daemon.json}

command -v jq >/dev/null || ensure_debs jq
# A busy engine sometimes fails one `docker info`: ask a few times before starting one.
answers=0
for _ in 1 2 3 4 5; do docker info >/dev/null 2>&1 && { answers=1; break; }; sleep 1; done
((answers)) || "$ROOT/scripts/docker-engine.sh" start

# Only where it is needed: an engine that runs a privileged container as it is stays untouched.
probe_image=${1:-microdash-base:bookworm}
if docker run --rm --privileged --entrypoint true "$probe_image" >/dev/null 2>&1; then
  exit 0
fi

if ! cmp -s "$ROOT/scripts/cluster/runc-wrapper" "$WRAPPER" 2>/dev/null; then
  mkdir -p "$(dirname "$WRAPPER")"
  install -m 0755 "$ROOT/scripts/cluster/runc-wrapper" "$WRAPPER.new"
  mv -f "$WRAPPER.new" "$WRAPPER"
fi

if docker info --format '{{json .Runtimes}}' | jq -e --arg r "$RUNTIME" 'has($r)' >/dev/null; then
  exit 0
fi
mkdir -p "$(dirname "$CONFIG")"
[[ -s $CONFIG ]] || echo '{}' >"$CONFIG"
jq --arg r "$RUNTIME" --arg p "$WRAPPER" '.runtimes[$r] = {path: $p}' "$CONFIG" >"$CONFIG.new"
mv -f "$CONFIG.new" "$CONFIG"
pid=$(pgrep -x dockerd | head -1 || true)
[[ -n $pid ]] || { echo "error: no dockerd process to reload (add runtime $RUNTIME to its configuration by hand)" >&2; exit 1; }
echo "==> Registering runtime $RUNTIME with dockerd (pid $pid, SIGHUP: reload, no restart)" >&2
kill -HUP "$pid"
for _ in $(seq 1 50); do
  docker info --format '{{json .Runtimes}}' | jq -e --arg r "$RUNTIME" 'has($r)' >/dev/null && exit 0
  sleep 0.2
done
echo "error: dockerd did not pick up runtime $RUNTIME from $CONFIG after SIGHUP" >&2
exit 1
