#!/usr/bin/env bash
# `make cluster-e2e`: microdash end to end on the kind cluster of scripts/cluster/up.sh (brought
# up when missing): the three images loaded into kind, the chart installed in namespace
# `microdash` (two operator replicas), the examples applied, then every check of issue 14 item 2
# that does not need a Rust change. Every check runs; the failed ones are listed at the end and
# the exit status is 1 when there is one. The installation is left running.
# Checks of behaviour the operator does not have yet (issue 14 items 3 and 4, issue 19's
# finalizers) run too and report what they saw, but as PENDING, naming the issue: they do not
# fail the run until that work lands, and are then turned into `fail` here.
#   TAG=dev scripts/cluster/e2e.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
CLUSTER=${CLUSTER:-microdash-ci}
TAG=${TAG:-dev}
NS=microdash
BASE_IMAGE=${BASE_IMAGE:-microdash-base:bookworm}
cache="$ROOT/.cache/cluster"
export KUBECONFIG="$cache/kubeconfig"
export PATH="$cache/shim:$cache/bin:$PATH"
started=$(date +%s)
step() { echo "==> [$(( $(date +%s) - started ))s] $*"; }
failures=()
fail() { echo "FAIL: $*" >&2; failures+=("$*"); }
pendings=()
pending() { echo "PENDING ($1): $2" >&2; pendings+=("($1) $2"); }
pf_pid=
cleanup() { [[ -n $pf_pid ]] && kill "$pf_pid" 2>/dev/null || true; }
trap cleanup EXIT

source "$ROOT/scripts/lib.sh"
command -v jq >/dev/null || ensure_debs jq
# helm (and the operator tests' kubectl) come from scripts/kube-tools.sh.
PATH="$PATH:$("$ROOT/scripts/kube-tools.sh")"
"$ROOT/scripts/cluster/up.sh"

step "Images: microdash, microdash-agent, microdash-operator :$TAG (scripts/images.sh), e2e tools"
if [[ -f scripts/images.sh ]]; then TAG=$TAG bash scripts/images.sh >&2; fi
for name in microdash microdash-agent microdash-operator; do
  docker image inspect "$name:$TAG" >/dev/null 2>&1 || { echo "error: image $name:$TAG is missing (make images)" >&2; exit 1; }
done
tools_hash=$(cat kind/offline/e2e-tools.Dockerfile kind/offline/webhook-receiver.py <(docker image inspect -f '{{.Id}}' "$BASE_IMAGE") | sha256sum | cut -c1-16)
TOOLS=microdash-cluster/e2e-tools:$tools_hash
if ! docker image inspect "$TOOLS" >/dev/null 2>&1; then
  docker build -q -f kind/offline/e2e-tools.Dockerfile --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$TOOLS" kind/offline >/dev/null
fi
docker images --format '{{.Repository}}:{{.Tag}}' microdash-cluster/e2e-tools | grep -vx "$TOOLS" | xargs -r docker rmi >/dev/null 2>&1 || true
# One archive for all four, imported once per node (kind skips an image a node already has).
kind load docker-image --name "$CLUSTER" "microdash:$TAG" "microdash-agent:$TAG" "microdash-operator:$TAG" "$TOOLS" >/dev/null

step "The default StorageClass provisions a PersistentVolumeClaim (what issue 14 item 3 needs)"
kubectl create namespace microdash-cluster-pvc --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n microdash-cluster-pvc -f - >/dev/null <<PVC
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: probe}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: probe}
spec:
  restartPolicy: Never
  containers:
    - name: probe
      image: $TOOLS
      imagePullPolicy: Never
      command: [sh, -c, "echo ok > /data/probe && cat /data/probe"]
      volumeMounts: [{name: data, mountPath: /data}]
      securityContext: {runAsUser: 0}
  volumes: [{name: data, persistentVolumeClaim: {claimName: probe}}]
PVC
kubectl wait -n microdash-cluster-pvc --for=jsonpath='{.status.phase}'=Succeeded pod/probe --timeout=120s >/dev/null \
  && kubectl wait -n microdash-cluster-pvc --for=jsonpath='{.status.phase}'=Bound pvc/probe --timeout=10s >/dev/null \
  || fail "a PersistentVolumeClaim of the default StorageClass was not bound and written ($(kubectl get pvc,pod -n microdash-cluster-pvc --no-headers 2>&1 | tr '\n' ' '))"
kubectl delete namespace microdash-cluster-pvc --wait=false >/dev/null

step "helm install (namespace $NS, two operator replicas)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
helm upgrade --install microdash charts/microdash --namespace "$NS" \
  --set image.tag="$TAG" --set image.pullPolicy=Never --set replicaCount=2 --wait --timeout 180s
sed "s|image: IMAGE|image: $TOOLS|" kind/offline/e2e/webhook-receiver.yaml | kubectl apply -f -

step "Applying the examples (image tag $TAG)"
sed "s/microdash:0.1.0/microdash:$TAG/; s/imagePullPolicy: IfNotPresent/imagePullPolicy: Never/" \
  charts/microdash/examples/00-microdash.yaml | kubectl apply -f -
kubectl apply -f charts/microdash/examples/10-tenant.yaml
kubectl apply -f charts/microdash/examples/20-channels.yaml -f charts/microdash/examples/30-rules.yaml

step "Everything Ready"
kubectl wait --for=condition=Ready microdash/microdash -n "$NS" --timeout=240s || fail "MicroDash microdash not Ready"
kubectl wait --for=condition=Ready tenant/team-a --timeout=120s || fail "Tenant team-a not Ready"
kubectl wait --for=condition=Accepted --for=condition=Synced notificationchannel --all -n "$NS" --timeout=120s 2>/dev/null \
  || kubectl wait --for=condition=Accepted notificationchannel --all -n "$NS" --timeout=120s || fail "channels not Accepted"
kubectl wait --for=condition=Accepted alertrule --all -n "$NS" --timeout=120s || fail "rules not Accepted"
kubectl wait --for=condition=Synced alertrule --all -n "$NS" --timeout=120s || fail "rules not Synced"
kubectl -n "$NS" rollout status deployment/microdash-operator --timeout=120s || fail "operator rollout"
kubectl -n "$NS" rollout status deployment/webhook-receiver --timeout=120s || fail "webhook receiver rollout"
kubectl -n "$NS" rollout status daemonset/microdash-agent --timeout=180s || fail "agent DaemonSet rollout"
kubectl wait --for=condition=Ready pod --all -n "$NS" --timeout=180s || fail "not every pod in $NS is Ready"
kubectl get microdash,tenants,alertrules,notificationchannels -A
kubectl get pods -n "$NS" -o wide

nodes=$(kubectl get nodes --no-headers | wc -l)
agents=$(kubectl -n "$NS" get daemonset microdash-agent -o jsonpath='{.status.numberReady}' 2>/dev/null || echo 0)
[[ $agents == "$nodes" ]] || fail "agent DaemonSet: $agents Ready pods on $nodes nodes"
leaders=$(kubectl -n "$NS" get lease -o name 2>/dev/null | wc -l)
((leaders >= 1)) || fail "no leader Lease in $NS"

step "Port-forward to the api Service"
kubectl -n "$NS" port-forward svc/microdash-api 18080:8080 >"$cache/port-forward.log" 2>&1 &
pf_pid=$!
api=http://127.0.0.1:18080
for _ in $(seq 1 50); do curl -fsS "$api/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
token() { kubectl get secret microdash-tenant-team-a -n "$NS" -o jsonpath='{.data.token}' | base64 -d; }
TOKEN=$(token)
auth=(-H "Authorization: Bearer $TOKEN")

step "Agent node metrics through the api Service"
hosts=
for _ in $(seq 1 45); do
  hosts=$(curl -fsS "${auth[@]}" "$api/api/v1/series?metric=mem.total" 2>/dev/null | jq -r '[.series[].labels.host] | unique | join(",")' || true)
  [[ $(tr ',' '\n' <<<"$hosts" | grep -c .) -ge $nodes ]] && break
  sleep 2
done
echo "mem.total series from hosts: ${hosts:-none}"
[[ $(tr ',' '\n' <<<"$hosts" | grep -c .) -ge $nodes ]] || fail "agent metrics: hosts '$hosts', expected one per node ($nodes)"

step "A breaching sample fires e2e-breach and the receiver gets the webhook"
curl -fsS -X POST "$api/api/v1/metrics" "${auth[@]}" -d '{"metric":"e2e.value","value":42,"labels":{"host":"kind"}}' \
  || fail "ingest of the breaching sample"
state=
for _ in $(seq 1 60); do
  state=$(kubectl get alertrule e2e-breach -n "$NS" -o jsonpath='{.status.state}')
  [[ $state == FIRING ]] && break
  sleep 2
done
kubectl get alertrules -n "$NS"
[[ $state == FIRING ]] || fail "e2e-breach is '$state', not FIRING"
got=0
for _ in $(seq 1 30); do
  got=$(kubectl -n "$NS" exec deploy/webhook-receiver -- curl -fsS localhost:8080/received 2>/dev/null \
    | jq '[.[] | select(.path == "/hook") | select(.body | contains("e2e-breach"))] | length' || echo 0)
  ((got > 0)) && break
  sleep 2
done
((got > 0)) || fail "the webhook receiver got no delivery for e2e-breach"

step "Playwright BDD \"Ingest → Chart\" against the api Service (port-forward), Debian Chromium"
# The feature of the Compose step, with a tenant of its own created through the admin API
# (tests/e2e/support/stack.ts); report in .cache/test-logs/e2e-cluster.log and .xml.
admin_token=$(kubectl get secret microdash-admin-token -n "$NS" -o jsonpath='{.data.token}' | base64 -d)
mkdir -p "$ROOT/.cache/test-logs"
npm_ci_cached "$ROOT/tests/e2e"
if ! (cd tests/e2e && E2E_STACK_URL=$api E2E_STACK_ADMIN_TOKEN=$admin_token \
      E2E_STACK_REPORT="$ROOT/.cache/test-logs/e2e-cluster.xml" \
      npx bddgen -c playwright.stack.config.ts \
      && npx playwright test -c playwright.stack.config.ts --grep "Ingest → Chart") 2>&1 \
    | tee "$ROOT/.cache/test-logs/e2e-cluster.log"; then
  fail "Playwright \"Ingest → Chart\" against the api Service (report: .cache/test-logs/e2e-cluster.log)"
fi

step "kubectl delete pod of the api keeps metrics, tenant and token"
before=$(curl -fsS "${auth[@]}" "$api/api/v1/metrics" | jq -c '.metrics | sort')
kill "$pf_pid" 2>/dev/null || true; pf_pid=
kubectl -n "$NS" delete pod -l app.kubernetes.io/component=api --wait=true --timeout=60s
kubectl -n "$NS" rollout status deployment/microdash-api --timeout=120s || fail "api rollout after delete"
kubectl wait --for=condition=Ready pod -l app.kubernetes.io/component=api -n "$NS" --timeout=120s || true
kubectl -n "$NS" port-forward svc/microdash-api 18080:8080 >"$cache/port-forward.log" 2>&1 &
pf_pid=$!
for _ in $(seq 1 50); do curl -fsS "$api/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
code=$(curl -sS -o /dev/null -w '%{http_code}' "${auth[@]}" "$api/api/v1/metrics" || true)
[[ $code == 200 ]] || pending "issue 14 item 4: the operator re-registers a token the server no longer knows" \
  "after the api pod was deleted, the Tenant's token Secret gets HTTP $code (expected 200)"
after=$(curl -fsS "${auth[@]}" "$api/api/v1/metrics" 2>/dev/null | jq -c '.metrics | sort' || echo '[]')
for m in $(jq -r '.[]' <<<"$before"); do
  jq -e --arg m "$m" 'index($m) != null' <<<"$after" >/dev/null || {
    pending "issue 14 item 3: MicroDash.spec.storage on a PersistentVolumeClaim" \
      "metric $m lost when the api pod was deleted (before: $before, after: $after)"
    break
  }
done
kubectl wait --for=condition=Ready tenant/team-a --timeout=60s || fail "Tenant not Ready after the api pod was deleted"

step "helm upgrade with a changed value rolls out"
old_rs=$(kubectl -n "$NS" get deploy microdash-operator -o jsonpath='{.metadata.annotations.deployment\.kubernetes\.io/revision}')
helm upgrade microdash charts/microdash --namespace "$NS" --reuse-values --set resync=45s --wait --timeout 180s \
  || fail "helm upgrade"
kubectl -n "$NS" rollout status deployment/microdash-operator --timeout=120s || fail "operator rollout after upgrade"
new_rs=$(kubectl -n "$NS" get deploy microdash-operator -o jsonpath='{.metadata.annotations.deployment\.kubernetes\.io/revision}')
[[ $new_rs != "$old_rs" ]] || fail "helm upgrade did not roll the operator Deployment (revision $old_rs)"
resync=
for _ in $(seq 1 60); do  # until the old pods are gone
  resync=$(kubectl -n "$NS" get pods -l app.kubernetes.io/name=microdash-operator -o json \
    | jq -r '[.items[] | select(.metadata.deletionTimestamp == null) | .spec.containers[0].env[] | select(.name == "MICRODASH_OPERATOR_RESYNC") | .value] | join(" ")')
  [[ $resync == "45s 45s" ]] && break
  sleep 2
done
echo "operator pods' resync: $resync"
[[ $resync == "45s 45s" ]] || fail "operator pods after the upgrade have resync '$resync', expected 45s on both"

step "helm uninstall, then deleting the namespace, leaves nothing stuck"
kill "$pf_pid" 2>/dev/null || true; pf_pid=
helm uninstall microdash --namespace "$NS" --wait --timeout 120s || fail "helm uninstall"
if ! kubectl delete namespace "$NS" --timeout=60s; then
  pending "issue 19: finalizers that do not wait for an uninstalled operator" \
    "namespace $NS stuck in Terminating after helm uninstall"
  kubectl get namespace "$NS" -o yaml | sed -n '/^status:/,$p'
  # What is left: resources whose finalizer only the (uninstalled) operator removes. Their
  # finalizers are dropped here so that the namespace goes and the installation can be made again.
  for kind in alertrules notificationchannels microdashes; do
    for name in $(kubectl get "$kind" -n "$NS" -o name 2>/dev/null); do
      echo "still in $NS: $name (finalizers $(kubectl get "$name" -n "$NS" -o jsonpath='{.metadata.finalizers}')); dropping its finalizers" >&2
      kubectl patch "$name" -n "$NS" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null || true
    done
  done
  kubectl wait --for=delete namespace/"$NS" --timeout=120s >/dev/null || true
fi
stuck=$(kubectl get tenants -o jsonpath='{range .items[?(@.metadata.deletionTimestamp)]}{.metadata.name}{" "}{end}' 2>/dev/null || true)
[[ -z $stuck ]] || fail "Tenants stuck in deletion: $stuck"

step "Reinstalling (the installation is left running)"
if kubectl get namespace "$NS" >/dev/null 2>&1; then
  echo "namespace $NS still exists; not reinstalling" >&2
else
  kubectl create namespace "$NS" >/dev/null
  helm install microdash charts/microdash --namespace "$NS" \
    --set image.tag="$TAG" --set image.pullPolicy=Never --set replicaCount=2 --wait --timeout 180s >/dev/null
  sed "s|image: IMAGE|image: $TOOLS|" kind/offline/e2e/webhook-receiver.yaml | kubectl apply -f - >/dev/null
  sed "s/microdash:0.1.0/microdash:$TAG/; s/imagePullPolicy: IfNotPresent/imagePullPolicy: Never/" \
    charts/microdash/examples/00-microdash.yaml | kubectl apply -f - >/dev/null
  kubectl apply -f charts/microdash/examples/ >/dev/null 2>&1 || true
  sed "s/microdash:0.1.0/microdash:$TAG/; s/imagePullPolicy: IfNotPresent/imagePullPolicy: Never/" \
    charts/microdash/examples/00-microdash.yaml | kubectl apply -f - >/dev/null
  kubectl wait --for=condition=Ready microdash/microdash -n "$NS" --timeout=240s || fail "reinstall: MicroDash not Ready"
fi

step "Done in $(( $(date +%s) - started ))s"
if ((${#pendings[@]})); then
  echo "cluster e2e: ${#pendings[@]} pending (behaviour not built yet; they run and report, and fail nothing):" >&2
  printf '  - %s\n' "${pendings[@]}" >&2
fi
if ((${#failures[@]})); then
  echo "cluster e2e: ${#failures[@]} failed:" >&2
  printf '  - %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "cluster e2e: all checks passed"
