#!/usr/bin/env bash
# Builds the kind node image `microdash-cluster-node:<kubernetes version>` offline (no registry):
#   1. microdash-cluster-node-base:<hash>  kind's base image (kind/offline/node-base.Dockerfile)
#      on microdash-base:bookworm, with Debian's containerd, runc and CNI plugins;
#   2. microdash-cluster/<component>:<tag> the images kubeadm runs (kube-apiserver,
#      kube-controller-manager, kube-scheduler, kube-proxy, etcd, coredns, pause), each the
#      Go-built binary on the same base (kind/offline/component.Dockerfile);
#   3. the node image: the base plus kubeadm/kubelet/kubectl, /kind/version, and the images of 2
#      imported into the node's containerd under the names kubeadm asks for (registry.k8s.io/…),
#      committed as kind's own `kind build node-image` does (which cannot run offline: it pulls).
# Idempotent and cached: an image whose inputs did not change is kept (label microdash.cluster.inputs).
# Prints the node image name on stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/scripts/lib.sh"
KUBERNETES_VERSION=${KUBERNETES_VERSION:-v1.37.2}
KIND_VERSION=${KIND_VERSION:-v0.33.0}
BASE_IMAGE=${BASE_IMAGE:-microdash-base:bookworm}
NODE_IMAGE=microdash-cluster-node:$KUBERNETES_VERSION
cache="$ROOT/.cache/cluster"
log() { echo "==> $*" >&2; }

bin=$("$ROOT/scripts/cluster/tools.sh")
answers=0  # a busy engine sometimes fails one `docker info`: ask a few times before starting one
for _ in 1 2 3 4 5; do docker info >/dev/null 2>&1 && { answers=1; break; }; sleep 1; done
((answers)) || "$ROOT/scripts/docker-engine.sh" start

# The shared Debian base (scripts/images.sh makes the same one): made here when missing.
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "Making $BASE_IMAGE with debootstrap (about 2 minutes)"
  command -v debootstrap >/dev/null || ensure_debs debootstrap
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [[ -n $mirror ]] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
  rm -rf "$cache/rootfs-bookworm"
  debootstrap --variant=minbase bookworm "$cache/rootfs-bookworm" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  tar -C "$cache/rootfs-bookworm" -c . | docker import - "$BASE_IMAGE" >/dev/null
  rm -rf "$cache/rootfs-bookworm"
fi
base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")
"$ROOT/scripts/cluster/engine.sh" "$BASE_IMAGE"

# Older builds of this script's own images (same repository, other tag) are removed.
prune_others() { # REPOSITORY KEEP_TAG
  docker images --format '{{.Repository}}:{{.Tag}}' "$1" | grep -vx "$1:$2" | xargs -r docker rmi >/dev/null 2>&1 || true
}
image_inputs() { docker image inspect -f '{{index .Config.Labels "microdash.cluster.inputs"}}' "$1" 2>/dev/null || true; }

# Build context: kind's base files of this kind version, the Go-built tools, kind/offline.
(cd "$cache" && go mod download "sigs.k8s.io/kind@$KIND_VERSION")
kind_src="$(go env GOMODCACHE)/sigs.k8s.io/kind@$KIND_VERSION"
ctx="$cache/context"
rm -rf "$ctx"
mkdir -p "$ctx/bin"
cp -r "$kind_src/images/base/files" "$ctx/files"
chmod -R u+w "$ctx/files"
cp -r "$ROOT/kind/offline" "$ctx/offline"
cp "$bin/crictl" "$ctx/bin/"

# 1. the node base
hash=$( (echo "$base_id $KIND_VERSION"; cat "$ROOT/kind/offline/node-base.Dockerfile"; cd "$ctx" && find files bin -type f | sort | xargs sha256sum) | sha256sum | cut -c1-16)
NODE_BASE=microdash-cluster-node-base:$hash
if ! docker image inspect "$NODE_BASE" >/dev/null 2>&1; then
  log "Building $NODE_BASE (kind $KIND_VERSION base on $BASE_IMAGE, Debian containerd/runc/CNI)"
  docker build -q -f "$ctx/offline/node-base.Dockerfile" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --label "microdash.cluster.inputs=$hash" -t "$NODE_BASE" "$ctx" >/dev/null
fi
prune_others microdash-cluster-node-base "$hash"

# 2. the component images (docker tag -> the name kubeadm/containerd look for)
declare -A target=(
  [kube-apiserver]="registry.k8s.io/kube-apiserver:$KUBERNETES_VERSION"
  [kube-controller-manager]="registry.k8s.io/kube-controller-manager:$KUBERNETES_VERSION"
  [kube-scheduler]="registry.k8s.io/kube-scheduler:$KUBERNETES_VERSION"
  [kube-proxy]="registry.k8s.io/kube-proxy:$KUBERNETES_VERSION"
)
build_component() { # NAME BINARIES PACKAGES [ENTRYPOINT_JSON]
  local name=$1 bins=$2 packages=$3 entrypoint=${4:-} dir="$cache/component-$1" h b
  rm -rf "$dir"; mkdir -p "$dir/bin"
  for b in $bins; do cp "$bin/${b%%=*}" "$dir/bin/${b#*=}"; done
  if [[ $name == kube-proxy ]]; then cp "$ROOT/kind/offline/kube-proxy-iptables-mode" "$dir/bin/kube-proxy"; fi
  if [[ $name == pause ]]; then
    cp "$ROOT/kind/offline/pause.Dockerfile" "$dir/Dockerfile"
  else
    cp "$ROOT/kind/offline/component.Dockerfile" "$dir/Dockerfile"
    [[ -z $entrypoint ]] || echo "ENTRYPOINT $entrypoint" >>"$dir/Dockerfile"
  fi
  h=$( (echo "$base_id $packages"; cd "$dir" && find . -type f | sort | xargs sha256sum) | sha256sum | cut -c1-16)
  if [[ $(image_inputs "microdash-cluster/$name:$h") != "$h" ]]; then
    log "Building image microdash-cluster/$name:$h"
    docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "PACKAGES=$packages" \
      --label "microdash.cluster.inputs=$h" -t "microdash-cluster/$name:$h" "$dir" >/dev/null
  fi
  prune_others "microdash-cluster/$name" "$h"
  echo "microdash-cluster/$name:$h"
}

# What kubeadm of this version runs (names and tags), from kubeadm itself.
mapfile -t required < <("$bin/kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION" 2>/dev/null)
for image in "${required[@]}"; do
  case $image in
    */etcd:*) target[etcd]=$image ;;
    */coredns:*) target[coredns]=$image ;;
    */pause:*) target[pause]=$image ;;
  esac
done
# containerd's sandbox image (kind's config.toml) is the pause image pods actually use.
sandbox=$(sed -n 's/^ *sandbox_image = "\(.*\)"/\1/p' "$ctx/files/etc/containerd/config.toml")

# kind's default StorageClass (local-path-provisioner), as its node-image build installs it: the
# manifest is kind's own (pkg/build/nodeimage/const_storage.go), the provisioner image is the
# Go-built binary, the helper image (mkdir/rm in a pod) is the Debian base.
storage_go="$kind_src/pkg/build/nodeimage/const_storage.go"
target[local-path-provisioner]=$(sed -n 's/^const storageProvisionerImage = "\(.*\)"/\1/p' "$storage_go")
target[local-path-helper]=$(sed -n 's/^const storageHelperImage = "\(.*\)"/\1/p' "$storage_go")
sed -n '/^const defaultStorageManifest = `/,/^`$/p' "$storage_go" | sed '1d;$d' \
  | sed "s|\` + storageProvisionerImage + \`|${target[local-path-provisioner]}|; s|\` + storageHelperImage + \`|${target[local-path-helper]}|" \
  >"$cache/default-storage.yaml"
grep -q 'kind: StorageClass' "$cache/default-storage.yaml" || { echo "error: no storage manifest in $storage_go" >&2; exit 1; }

declare -A built
built[kube-apiserver]=$(build_component kube-apiserver "kube-apiserver" "")
built[kube-controller-manager]=$(build_component kube-controller-manager "kube-controller-manager" "")
built[kube-scheduler]=$(build_component kube-scheduler "kube-scheduler" "")
built[kube-proxy]=$(build_component kube-proxy "kube-proxy=kube-proxy.bin" "iptables nftables conntrack ipset kmod")
built[etcd]=$(build_component etcd "etcd" "")
built[coredns]=$(build_component coredns "coredns" "" '["/usr/local/bin/coredns"]')
built[pause]=$(build_component pause "pause" "")
built[local-path-provisioner]=$(build_component local-path-provisioner "local-path-provisioner" "")
built[local-path-helper]=$BASE_IMAGE

# 3. the node image
inputs=$( (echo "$NODE_BASE $KUBERNETES_VERSION $sandbox"; for k in "${!built[@]}"; do echo "$k ${built[$k]} ${target[$k]}"; done | sort
  sha256sum "$bin/kubeadm" "$bin/kubelet" "$bin/kubectl" "$cache/default-storage.yaml"; echo "$base_id") | sha256sum | cut -c1-16)
if [[ $(image_inputs "$NODE_IMAGE") == "$inputs" ]]; then
  echo "$NODE_IMAGE"
  exit 0
fi
log "Building $NODE_IMAGE (node base + kubeadm/kubelet/kubectl + ${#built[@]} images in containerd)"
builder=microdash-cluster-nodebuild
docker rm -f "$builder" >/dev/null 2>&1 || true
docker run -d --name "$builder" --entrypoint sleep "$NODE_BASE" infinity >/dev/null
trap 'docker rm -f "$builder" >/dev/null 2>&1 || true' EXIT
for b in kubeadm kubelet kubectl; do docker cp "$bin/$b" "$builder:/usr/bin/$b"; done
docker exec "$builder" sh -c "echo $KUBERNETES_VERSION > /kind/version"
docker exec "$builder" mkdir -p /kind/manifests
docker cp "$cache/default-storage.yaml" "$builder:/kind/manifests/default-storage.yaml"
docker exec "$builder" sh -c 'nohup containerd >/tmp/containerd.log 2>&1 &
  for i in $(seq 1 50); do [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1 && exit 0; sleep 0.2; done
  cat /tmp/containerd.log; exit 1'
containerd_name() { # the name `ctr images import` gives a `docker save`d NAME:TAG
  case $1 in */*) echo "docker.io/$1" ;; *) echo "docker.io/library/$1" ;; esac
}
for k in "${!built[@]}"; do
  docker save "${built[$k]}" | docker exec -i "$builder" ctr --namespace=k8s.io images import \
    --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - >/dev/null
  names=("${target[$k]}")
  [[ $k == pause && $sandbox != "${target[$k]}" ]] && names+=("$sandbox")
  for n in "${names[@]}"; do
    docker exec "$builder" ctr --namespace=k8s.io images tag --force "$(containerd_name "${built[$k]}")" "$n" >/dev/null
  done
  docker exec "$builder" ctr --namespace=k8s.io images rm "$(containerd_name "${built[$k]}")" >/dev/null
done
docker exec "$builder" ctr --namespace=k8s.io images list -q >&2
docker exec "$builder" sh -c 'pkill containerd; for i in $(seq 1 50); do pgrep containerd >/dev/null || exit 0; sleep 0.2; done'
docker commit \
  --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
  --change 'CMD []' \
  --change "LABEL microdash.cluster.inputs=$inputs" \
  "$builder" "$NODE_IMAGE" >/dev/null
echo "$NODE_IMAGE"
