#!/usr/bin/env bash
# End-to-end on a kind cluster: build the three images, load them into kind, install the chart,
# apply the examples, ingest one breaching sample and wait until the rule's status says FIRING.
#
# NEEDS a machine with a Docker engine, `kind`, `kubectl` and `helm` on PATH that can pull the
# official kind node image and images. The project's development machines and CI cannot pull:
# there `make cluster-up` + `make cluster-e2e` run microdash on a kind cluster whose node image is
# built locally (scripts/cluster/, docs/kubernetes-ci.md).
#
#   kind/e2e.sh            # create the cluster (if missing), run, leave it up for a look
#   KEEP=0 kind/e2e.sh     # delete the cluster at the end
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLUSTER=microdash
TAG=${TAG:-dev}
NS=microdash
cd "$ROOT"

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not on PATH (this script needs Docker and kind)" >&2; exit 2; }
done
docker info >/dev/null 2>&1 || { echo "error: no Docker engine answers (docker info failed)" >&2; exit 2; }

step() { echo "==> $*"; }

if ! kind get clusters | grep -qx "$CLUSTER"; then
  step "Creating kind cluster $CLUSTER"
  kind create cluster --config kind/kind-config.yaml --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

step "Building images (tag $TAG)"
# The repository's Dockerfile: one target per image (the same images Compose uses).
for name in microdash microdash-agent microdash-operator; do
  DOCKER_BUILDKIT=1 docker build --target "$name" -t "$name:$TAG" .
  kind load docker-image --name "$CLUSTER" "$name:$TAG"
done

step "Installing the chart"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
helm upgrade --install microdash charts/microdash --namespace "$NS" \
  --set image.tag="$TAG" --set image.pullPolicy=Never --wait --timeout 180s

step "Applying the examples (image tag $TAG)"
sed "s/microdash:0.1.0/microdash:$TAG/; s/imagePullPolicy: IfNotPresent/imagePullPolicy: Never/" \
  charts/microdash/examples/00-microdash.yaml | kubectl apply -f -
kubectl apply -f charts/microdash/examples/10-tenant.yaml
kubectl wait --for=condition=Ready microdash/microdash -n "$NS" --timeout=180s
kubectl wait --for=condition=Ready tenant/team-a --timeout=120s
kubectl apply -f charts/microdash/examples/20-channels.yaml -f charts/microdash/examples/30-rules.yaml
kubectl wait --for=condition=Accepted alertrule/e2e-breach -n "$NS" --timeout=120s

step "Ingesting a breaching sample"
TOKEN=$(kubectl get secret microdash-tenant-team-a -n "$NS" -o jsonpath='{.data.token}' | base64 -d)
kubectl run e2e-ingest -n "$NS" --rm -i --restart=Never --image=curlimages/curl:8.11.1 -- \
  curl -fsS -X POST "http://microdash-api.$NS.svc:8080/api/v1/metrics" \
  -H "Authorization: Bearer $TOKEN" -d '{"metric":"e2e.value","value":42,"labels":{"host":"kind"}}'

step "Waiting for the rule to fire"
for _ in $(seq 1 60); do
  state=$(kubectl get alertrule e2e-breach -n "$NS" -o jsonpath='{.status.state}')
  [[ $state == FIRING ]] && break
  sleep 2
done
kubectl get alertrules -n "$NS"
[[ $state == FIRING ]] || { echo "error: e2e-breach is $state, not FIRING" >&2; exit 1; }
step "OK: the alert fired"

if [[ ${KEEP:-1} == 0 ]]; then kind delete cluster --name "$CLUSTER"; fi
