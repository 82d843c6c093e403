#!/usr/bin/env bash
# Builds what a kind node image and `kind` need, from Go modules, into .cache/cluster/bin (ignored):
#   kind (sigs.k8s.io/kind), the Kubernetes binaries of one release (kubeadm, kubelet, kubectl,
#   kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy: k8s.io/kubernetes, with
#   the version stamped in as a release build would), etcd (go.etcd.io/etcd/server/v3),
#   CoreDNS (github.com/coredns/coredns), crictl (sigs.k8s.io/cri-tools), local-path-provisioner
#   (github.com/rancher/local-path-provisioner: kind's default StorageClass) and pause (C source shipped in the k8s.io/kubernetes module).
# Idempotent: a binary already built for its version is kept. Prints the bin folder on stdout.
#   scripts/cluster/tools.sh            # everything
#   scripts/cluster/tools.sh kind pause # only those groups
set -euo pipefail

KUBERNETES_VERSION=${KUBERNETES_VERSION:-v1.37.2}
KIND_VERSION=${KIND_VERSION:-v0.33.0}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.6}
CRICTL_VERSION=${CRICTL_VERSION:-v1.37.0}
LOCAL_PATH_VERSION=${LOCAL_PATH_VERSION:-v0.0.30}

root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/scripts/lib.sh"
cache="$root/.cache/cluster"
bin="$cache/bin"
mkdir -p "$bin"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0

log() { echo "==> $*" >&2; }
# `tools.sh kind crictl` builds only those (groups: kubernetes kind etcd coredns crictl local-path pause).
only=" $* "
want() { [[ $only == "  " || $only == *" $1 "* ]]; }
stamp_ok() { [[ -x "$bin/$1" && -f "$bin/$1.version" && "$(cat "$bin/$1.version")" == "$2" ]]; }

# Usage: prepare_module NAME GO_MOD_BODY PACKAGE... (a module that imports the packages, tidied)
prepare_module() {
  local name=$1
  shift
  write_go_tools_module "$cache/mod-$name" "$@"
}

kube_bins=(kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)
need=0
for b in "${kube_bins[@]}"; do stamp_ok "$b" "$KUBERNETES_VERSION" || need=1; done
if ((need)) && want kubernetes; then
  log "Building Kubernetes $KUBERNETES_VERSION (${kube_bins[*]}) from Go modules (first time: tens of minutes)"
  (cd "$cache" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null)
  gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod"
  staging_version="v0.${KUBERNETES_VERSION#v1.}"
  # k8s.io/kubernetes replaces every staging module with a local path; a consumer must pin each itself.
  replaces=$(sed -n '/^replace (/,/^)/p' "$gomod" | awk -v v="$staging_version" '/=> \.\/staging/ {print "\t" $1 " => " $1 " " v}')
  body=$(printf 'module microdash.local/cluster-kubernetes\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n%s\n)\n' \
    "$KUBERNETES_VERSION" "$replaces")
  pkgs=()
  for b in "${kube_bins[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  prepare_module kubernetes "$body" "${pkgs[@]}"
  minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  v=k8s.io/component-base/version
  # What hack/lib/version.sh stamps into a release build (kubeadm reads gitVersion).
  ldflags="-s -w -X $v.gitVersion=$KUBERNETES_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor \
    -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z -X $v.gitCommit=0000000000000000000000000000000000000000 \
    -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 \
    -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  (cd "$cache/mod-kubernetes" && go build -trimpath -ldflags="$ldflags" -o "$bin/" "${pkgs[@]}")
  for b in "${kube_bins[@]}"; do echo "$KUBERNETES_VERSION" > "$bin/$b.version"; done
fi

if want kind && ! stamp_ok kind "$KIND_VERSION"; then
  log "Building kind $KIND_VERSION"
  prepare_module kind "$(printf 'module microdash.local/kind\n\ngo 1.26\n\nrequire sigs.k8s.io/kind %s\n' "$KIND_VERSION")" sigs.k8s.io/kind
  (cd "$cache/mod-kind" && go build -trimpath -ldflags=-s -o "$bin/kind" sigs.k8s.io/kind)
  echo "$KIND_VERSION" > "$bin/kind.version"
fi

if want etcd && ! stamp_ok etcd "$ETCD_VERSION"; then
  log "Building etcd $ETCD_VERSION"
  prepare_module etcd "$(printf 'module microdash.local/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION")" go.etcd.io/etcd/server/v3
  (cd "$cache/mod-etcd" && go build -trimpath -ldflags=-s -o "$bin/etcd" go.etcd.io/etcd/server/v3)
  echo "$ETCD_VERSION" > "$bin/etcd.version"
fi

if want coredns && ! stamp_ok coredns "$COREDNS_VERSION"; then
  log "Building CoreDNS $COREDNS_VERSION"
  prepare_module coredns "$(printf 'module microdash.local/coredns\n\ngo 1.26\n\nrequire github.com/coredns/coredns %s\n' "$COREDNS_VERSION")" github.com/coredns/coredns
  (cd "$cache/mod-coredns" && go build -trimpath -ldflags=-s -o "$bin/coredns" github.com/coredns/coredns)
  echo "$COREDNS_VERSION" > "$bin/coredns.version"
fi

if want crictl && ! stamp_ok crictl "$CRICTL_VERSION"; then
  log "Building crictl $CRICTL_VERSION"
  prepare_module crictl "$(printf 'module microdash.local/crictl\n\ngo 1.26\n\nrequire sigs.k8s.io/cri-tools %s\n' "$CRICTL_VERSION")" sigs.k8s.io/cri-tools/cmd/crictl
  (cd "$cache/mod-crictl" && go build -trimpath -ldflags=-s -o "$bin/crictl" sigs.k8s.io/cri-tools/cmd/crictl)
  echo "$CRICTL_VERSION" > "$bin/crictl.version"
fi

if want local-path && ! stamp_ok local-path-provisioner "$LOCAL_PATH_VERSION"; then
  log "Building local-path-provisioner $LOCAL_PATH_VERSION"
  prepare_module local-path "$(printf 'module microdash.local/local-path\n\ngo 1.26\n\nrequire github.com/rancher/local-path-provisioner %s\n' "$LOCAL_PATH_VERSION")" github.com/rancher/local-path-provisioner
  (cd "$cache/mod-local-path" && go build -trimpath -ldflags=-s -o "$bin/local-path-provisioner" github.com/rancher/local-path-provisioner)
  echo "$LOCAL_PATH_VERSION" > "$bin/local-path-provisioner.version"
fi

if want pause && ! stamp_ok pause "$KUBERNETES_VERSION"; then
  log "Building pause (k8s.io/kubernetes $KUBERNETES_VERSION build/pause/linux/pause.c)"
  command -v gcc >/dev/null && [[ -f /usr/lib/x86_64-linux-gnu/libc.a || -f /usr/lib/libc.a ]] || ensure_debs gcc libc6-dev
  src="$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBERNETES_VERSION/build/pause/linux/pause.c"
  [[ -f $src ]] || (cd "$cache" && go mod download "k8s.io/kubernetes@$KUBERNETES_VERSION")
  gcc -Os -Wall -Werror -static -DVERSION=v3.10-microdash -o "$bin/pause" "$src"
  echo "$KUBERNETES_VERSION" > "$bin/pause.version"
fi

echo "$bin"
