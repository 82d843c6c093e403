#!/usr/bin/env bash
# `make cluster-down`: deletes the kind cluster of scripts/cluster/up.sh (nothing else).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLUSTER=${CLUSTER:-microdash-ci}
cache="$ROOT/.cache/cluster"
export PATH="$cache/bin:$PATH"
command -v kind >/dev/null || { echo "kind is not built (nothing to delete)" >&2; exit 0; }
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind delete cluster --name "$CLUSTER" --kubeconfig "$cache/kubeconfig" >&2
fi
rm -f "$cache/kubeconfig"
