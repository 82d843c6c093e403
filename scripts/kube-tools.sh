#!/usr/bin/env bash
# Builds the Kubernetes tools the operator tests need, from Go modules, into a cache folder:
#   kube-apiserver + kubectl (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3), helm (helm.sh/helm/v3).
# Prints the bin folder on stdout. Idempotent: a binary already built for its version is kept.
# Nothing here goes into git: the build modules and binaries live under .cache/kube-tools (ignored);
# Go's own module and build caches stay where `go env` puts them.
#
# Usage: scripts/kube-tools.sh            # build what is missing, print the bin folder
set -euo pipefail

KUBERNETES_VERSION=${KUBERNETES_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
HELM_VERSION=${HELM_VERSION:-v3.22.0}

root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/.cache/kube-tools"
bin="$cache/bin"
mkdir -p "$bin"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0

log() { echo "==> $*" >&2; }
source "$root/scripts/lib.sh"

# One build module per tool: their dependency graphs (grpc, otel) do not agree with each other.
# Usage: build_module NAME GO_MOD_BODY PACKAGE=OUTPUT...
build_module() {
  local name=$1 body=$2 pair pkgs=()
  shift 2
  for pair in "$@"; do pkgs+=("${pair%%=*}"); done
  write_go_tools_module "$cache/mod-$name" "$body" "${pkgs[@]}"
  for pair in "$@"; do
    (cd "$cache/mod-$name" && go build -trimpath -ldflags=-s -o "${pair#*=}" "${pair%%=*}")
  done
}

stamp_ok() { [[ -x "$bin/$1" && -f "$bin/$1.version" && "$(cat "$bin/$1.version")" == "$2" ]]; }

if ! stamp_ok kube-apiserver "$KUBERNETES_VERSION" || ! stamp_ok kubectl "$KUBERNETES_VERSION"; then
  log "Building kube-apiserver and kubectl $KUBERNETES_VERSION from Go modules (first time: several minutes)"
  (cd "$cache" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null)
  gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod"
  staging_version="v0.${KUBERNETES_VERSION#v1.}"
  # k8s.io/kubernetes replaces every staging module with a local path; a consumer must pin each itself.
  replaces=$(sed -n '/^replace (/,/^)/p' "$gomod" | awk -v v="$staging_version" '/=> \.\/staging/ {print "\t" $1 " => " $1 " " v}')
  body=$(printf 'module microdash.local/kube-tools\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n%s\n)\n' \
    "$KUBERNETES_VERSION" "$replaces")
  build_module kubernetes "$body" "k8s.io/kubernetes/cmd/kube-apiserver=$bin/kube-apiserver" \
    "k8s.io/kubernetes/cmd/kubectl=$bin/kubectl"
  echo "$KUBERNETES_VERSION" > "$bin/kube-apiserver.version"
  echo "$KUBERNETES_VERSION" > "$bin/kubectl.version"
fi

if ! stamp_ok etcd "$ETCD_VERSION"; then
  log "Building etcd $ETCD_VERSION from Go modules"
  build_module etcd "$(printf 'module microdash.local/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION")" \
    "go.etcd.io/etcd/server/v3=$bin/etcd"
  echo "$ETCD_VERSION" > "$bin/etcd.version"
fi

if ! stamp_ok helm "$HELM_VERSION"; then
  log "Building helm $HELM_VERSION from Go modules"
  build_module helm "$(printf 'module microdash.local/helm\n\ngo 1.26\n\nrequire helm.sh/helm/v3 %s\n' "$HELM_VERSION")" \
    "helm.sh/helm/v3/cmd/helm=$bin/helm"
  echo "$HELM_VERSION" > "$bin/helm.version"
fi

echo "$bin"
