#!/usr/bin/env bash
# `make cluster-up`: a two-node kind cluster (`microdash-ci`) from the node image built offline
# (scripts/cluster/node-image.sh); kubeconfig in .cache/cluster/kubeconfig. Idempotent: a cluster
# that already answers is kept. Details and deviations from stock kind: docs/kubernetes-ci.md.
#   scripts/cluster/up.sh      # create (or keep) and wait until every node and kube-system pod is Ready
#   scripts/cluster/down.sh    # delete
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLUSTER=${CLUSTER:-microdash-ci}
cache="$ROOT/.cache/cluster"
export KUBECONFIG="$cache/kubeconfig"
log() { echo "==> $*" >&2; }
started=$(date +%s)

bin=$("$ROOT/scripts/cluster/tools.sh")
node_image=$("$ROOT/scripts/cluster/node-image.sh")
log "Node image $node_image ready ($(( $(date +%s) - started ))s)"

# kind runs its nodes with `docker run --privileged`. Where that fails (a capability bounding set
# without CAP_SYS_RESOURCE), kind gets a `docker` that adds the runtime microdash-cluster-runc.
shim="$cache/shim"
mkdir -p "$shim"
if docker run --rm --privileged --entrypoint true "$node_image" >/dev/null 2>&1; then
  rm -f "$shim/docker"
else
  ln -sf "$ROOT/scripts/cluster/docker-shim" "$shim/docker"
fi
export PATH="$shim:$bin:$PATH"

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG" >/dev/null 2>&1 || true
  if kubectl get --raw /readyz >/dev/null 2>&1; then
    log "Cluster $CLUSTER already up"
  else
    log "Cluster $CLUSTER exists but does not answer: recreating"
    kind delete cluster --name "$CLUSTER" >&2
  fi
fi
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "Creating kind cluster $CLUSTER ($node_image)"
  kind create cluster --name "$CLUSTER" --image "$node_image" --config "$ROOT/kind/offline/cluster.yaml" \
    --kubeconfig "$KUBECONFIG" --retain >&2 || {
      for n in $(kind get nodes --name "$CLUSTER" 2>/dev/null); do
        echo "--- $n: journalctl (kubelet, containerd), last lines" >&2
        docker exec "$n" journalctl --no-pager -n 40 -u kubelet -u containerd >&2 || true
      done
      exit 1
    }
fi

# The CNI configuration kindnetd would write (ptp + host-local + portmap, the node's podCIDR),
# and on every node a route to each other node's pod range through that node.
log "Pod network: ptp CNI config and routes on every node"
for _ in $(seq 1 60); do
  missing=$(kubectl get nodes -o jsonpath='{range .items[?(@.spec.podCIDR=="")]}{.metadata.name}{"\n"}{end}' 2>/dev/null || echo x)
  [[ -z $missing ]] && break
  sleep 1
done
mapfile -t nodes < <(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}')
for line in "${nodes[@]}"; do
  read -r name cidr ip <<<"$line"
  [[ -n $cidr ]] || { echo "error: node $name has no podCIDR" >&2; exit 1; }
  docker exec -i "$name" sh -c 'mkdir -p /etc/cni/net.d && cat > /etc/cni/net.d/10-microdash-ptp.conflist.tmp && mv /etc/cni/net.d/10-microdash-ptp.conflist.tmp /etc/cni/net.d/10-microdash-ptp.conflist' <<CONF
{
  "cniVersion": "0.3.1",
  "name": "microdash-ptp",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": false,
      "mtu": 1500,
      "ipam": {"type": "host-local", "dataDir": "/run/cni-ipam-state", "routes": [{"dst": "0.0.0.0/0"}], "ranges": [[{"subnet": "$cidr"}]]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CONF
  for other in "${nodes[@]}"; do
    read -r oname ocidr oip <<<"$other"
    [[ $oname == "$name" ]] && continue
    docker exec "$name" ip route replace "$ocidr" via "$oip"
  done
done

log "Waiting for the nodes and kube-system pods to be Ready"
kubectl wait --for=condition=Ready nodes --all --timeout=180s >&2
kubectl -n kube-system rollout status deployment/coredns --timeout=180s >&2
kubectl -n kube-system rollout status daemonset/kube-proxy --timeout=180s >&2
kubectl get nodes -o wide >&2
log "Cluster $CLUSTER up in $(( $(date +%s) - started ))s; KUBECONFIG=$KUBECONFIG"
