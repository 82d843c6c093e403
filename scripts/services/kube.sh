#!/usr/bin/env bash
# A throwaway Kubernetes control plane for the operator's tests: etcd + kube-apiserver on
# loopback, no kubelet, no controller-manager (Deployments get no Pods: tests assert the objects
# the operator writes). Binaries come from scripts/kube-tools.sh (built from Go modules, cached).
#
#   scripts/services/kube.sh start DIR   # fresh etcd data, self-signed serving certs, RBAC; waits for /readyz
#   scripts/services/kube.sh stop DIR    # SIGTERM to both, waits for the exits
#   KUBE_TOOLS_BIN=DIR scripts/services/kube.sh start …   # use binaries from DIR instead of building
#
# Prints nothing on stdout but, after start, writes DIR/kubeconfig (user `microdash-test`, in
# group system:masters, by a static token) for:  export MICRODASH_TEST_KUBECONFIG=DIR/kubeconfig
# Ports: etcd 127.0.0.1:52379 (peer 52380), kube-apiserver https://127.0.0.1:56443.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ETCD_PORT=${ETCD_PORT:-52379}
APISERVER_PORT=${APISERVER_PORT:-56443}
TOKEN=microdash-test-admin-token

running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() { # pidfile
  running "$1" || return 0
  local pid
  pid=$(cat "$1")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$1"
}

start() {
  local dir=${1:?usage: start DIR} bin
  bin=${KUBE_TOOLS_BIN:-$("$ROOT/scripts/kube-tools.sh")}
  if running "$dir/kube-apiserver.pid" && running "$dir/etcd.pid" \
      && curl -fsSk -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$APISERVER_PORT/readyz" >/dev/null 2>&1; then
    return 0
  fi
  stop "$dir"
  rm -rf "$dir"
  mkdir -p "$dir/certs"
  # The service-account token signing key pair (no controller mints tokens here, but the flags are required).
  openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
  openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
  echo "$TOKEN,microdash-test,microdash-test,system:masters" > "$dir/tokens.csv"

  "$bin/etcd" --data-dir "$dir/etcd" --name test \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "test=http://127.0.0.1:$((ETCD_PORT + 1))" \
    --unsafe-no-fsync --quota-backend-bytes=1073741824 >"$dir/etcd.log" 2>&1 &
  echo $! > "$dir/etcd.pid"
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$ETCD_PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done

  "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --endpoint-reconciler-type none \
    --cert-dir "$dir/certs" \
    --service-cluster-ip-range 10.96.0.0/24 \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key" \
    --token-auth-file "$dir/tokens.csv" \
    --authorization-mode RBAC \
    --allow-privileged=true \
    --enable-priority-and-fairness=false \
    --disable-admission-plugins ServiceAccount \
    >"$dir/kube-apiserver.log" 2>&1 &
  echo $! > "$dir/kube-apiserver.pid"
  for _ in $(seq 1 600); do
    if curl -fsSk -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$APISERVER_PORT/readyz" >/dev/null 2>&1; then
      cat > "$dir/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    insecure-skip-tls-verify: true
users:
- name: microdash-test
  user:
    token: $TOKEN
contexts:
- name: test
  context: {cluster: test, user: microdash-test, namespace: default}
current-context: test
KUBECONFIG
      return 0
    fi
    running "$dir/kube-apiserver.pid" || break
    sleep 0.2
  done
  echo "error: kube-apiserver did not become ready; see $dir/kube-apiserver.log and $dir/etcd.log" >&2
  tail -20 "$dir/kube-apiserver.log" >&2 || true
  return 1
}

stop() {
  local dir=${1:?usage: stop DIR}
  stop_pid "$dir/kube-apiserver.pid"
  stop_pid "$dir/etcd.pid"
}

case "${1:-}" in
  start) start "${2:-$ROOT/.cache/services/kube}" >&2 ;;
  stop) stop "${2:-$ROOT/.cache/services/kube}" ;;
  *) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac
