#!/usr/bin/env bash
# Makes sure a Docker engine answers on this machine, for `make images`, the Compose stack test
# and the cluster: installs Debian's docker.io when dockerd is missing and starts dockerd when
# `docker info` fails (these machines run no systemd; the log goes to .cache/docker/dockerd.log).
#
#   scripts/docker-engine.sh start    # idempotent; waits until the engine answers
#   scripts/docker-engine.sh status   # exit 0 when the engine answers
#
# An engine that already runs (a developer's Docker Desktop, a systemd-managed dockerd) is used
# as it is. As root on a machine whose / is a private mount, makes it shared (see below).
# Prints nothing on stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/scripts/lib.sh"
LOG_DIR="$ROOT/.cache/docker"

answers() { docker info >/dev/null 2>&1; }
# A busy engine can miss one `docker info`: ask a few times before concluding none runs
# (starting a second dockerd next to a live one only fails on its pid file).
answers_soon() {
  for _ in 1 2 3 4 5; do
    answers && return 0
    [[ -S /var/run/docker.sock ]] || return 1
    sleep 1
  done
  return 1
}

# Containers that see the host (the agent's `/:/host/root:ro,rslave`, kind's nodes) need the
# root mount to propagate, as it does on every systemd host; a bare machine's may be private.
share_root_mount() {
  [[ $(id -u) == 0 ]] || return 0
  if [[ $(findmnt -no PROPAGATION / 2>/dev/null) == private ]]; then
    echo "==> Making / a shared mount (as systemd does), for containers that mount host paths with rslave" >&2
    mount --make-rshared /
  fi
}

start() {
  share_root_mount
  answers_soon && return 0
  # The client alone is not enough: the engine (dockerd), containerd and runc come with docker.io.
  { command -v dockerd && command -v docker; } >/dev/null || ensure_debs docker.io
  answers && return 0
  mkdir -p "$LOG_DIR"
  echo "==> Starting the Docker engine (dockerd; log in $LOG_DIR/dockerd.log)" >&2
  # setsid: the engine outlives this script and the test run's process group.
  setsid dockerd >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 150); do
    answers && return 0
    sleep 0.2
  done
  tail -20 "$LOG_DIR/dockerd.log" >&2
  echo "error: the Docker engine did not answer within 30 s (log above: $LOG_DIR/dockerd.log)" >&2
  return 1
}

case "${1:-}" in
  start) start ;;
  status) answers ;;
  *) echo "usage: $0 start|status" >&2; exit 2 ;;
esac
