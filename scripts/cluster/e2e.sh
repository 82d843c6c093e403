#!/usr/bin/env bash
# `make cluster-e2e`: microdash end to end on the kind cluster of scripts/cluster/up.sh (brought
# up when missing): the three images loaded into kind, the chart installed in namespace
# `microdash` (two operator replicas), the examples applied, then every check of issue 14 item 2
# and items 3-5 (storage on a claim, tokens registered again, the hardened agent and its Pod
# Security level). Every check runs; the failed ones are listed at the end and the exit status
# is 1 when there is one. The installation is left running.
#   TAG=dev scripts/cluster/e2e.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
CLUSTER=${CLUSTER:-microdash-ci}
TAG=${TAG:-dev}
NS=microdash
# The local port of the api Service's port-forward (another microdash on this machine may hold 18080).
API_PORT=${API_PORT:-18080}
BASE_IMAGE=${BASE_IMAGE:-microdash-base:bookworm}
cache="$ROOT/.cache/cluster"
export KUBECONFIG="$cache/kubeconfig"
export PATH="$cache/shim:$cache/bin:$PATH"
started=$(date +%s)
step() { echo "==> [$(( $(date +%s) - started ))s] $*"; }
failures=()
fail() { echo "FAIL: $*" >&2; failures+=("$*"); }
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
# The cluster sees the images under a tag of their content: on a kept cluster a rebuilt :dev would
# otherwise leave the running pods on the old binaries (same tag, pullPolicy Never, nothing to
# roll), while a new tag rolls the operator, the api and the agent.
BUILD=$TAG
TAG=e2e-$(docker image inspect -f '{{.Id}}' "microdash:$BUILD" "microdash-agent:$BUILD" "microdash-operator:$BUILD" | sha256sum | cut -c1-12)
for name in microdash microdash-agent microdash-operator; do
  docker tag "$name:$BUILD" "$name:$TAG"
  docker images --format '{{.Repository}}:{{.Tag}}' "$name" | grep ":e2e-" | grep -vx "$name:$TAG" | xargs -r docker rmi >/dev/null 2>&1 || true
done
echo "images tagged :$TAG for the cluster"
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
# The agent's pods (hostPID, hostNetwork, hostPath) need the Pod Security level `privileged`.
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=privileged --overwrite >/dev/null
# helm installs crds/ once and never upgrades them: on a kept cluster, bring them up to date as a
# user upgrading the chart would (README, Kubernetes).
kubectl apply --server-side --force-conflicts -f charts/microdash/crds/ >/dev/null
helm upgrade --install microdash charts/microdash --namespace "$NS" \
  --set image.tag="$TAG" --set image.pullPolicy=Never --set replicaCount=2 --wait --timeout 180s
sed "s|image: IMAGE|image: $TOOLS|" kind/offline/e2e/webhook-receiver.yaml | kubectl apply -f -

step "Applying the examples (image tag $TAG)"
sed "s/microdash:0.1.0/microdash:$TAG/; s/imagePullPolicy: IfNotPresent/imagePullPolicy: Never/" \
  charts/microdash/examples/00-microdash.yaml | kubectl apply -f -
kubectl apply -f charts/microdash/examples/10-tenant.yaml
kubectl apply -f charts/microdash/examples/20-channels.yaml -f charts/microdash/examples/30-rules.yaml
kubectl apply -f charts/microdash/examples/40-silences.yaml

step "Everything Ready"
kubectl wait --for=condition=Ready microdash/microdash -n "$NS" --timeout=240s || fail "MicroDash microdash not Ready"
kubectl wait --for=condition=Ready tenant/team-a --timeout=120s || fail "Tenant team-a not Ready"
kubectl wait --for=condition=Accepted --for=condition=Synced notificationchannel --all -n "$NS" --timeout=120s 2>/dev/null \
  || kubectl wait --for=condition=Accepted notificationchannel --all -n "$NS" --timeout=120s || fail "channels not Accepted"
kubectl wait --for=condition=Accepted alertrule --all -n "$NS" --timeout=120s || fail "rules not Accepted"
kubectl wait --for=condition=Synced alertrule --all -n "$NS" --timeout=120s || fail "rules not Synced"
kubectl wait --for=condition=Synced silence --all -n "$NS" --timeout=120s || fail "silences not Synced"
kubectl -n "$NS" rollout status deployment/microdash-operator --timeout=120s || fail "operator rollout"
kubectl -n "$NS" rollout status deployment/webhook-receiver --timeout=120s || fail "webhook receiver rollout"
kubectl -n "$NS" rollout status daemonset/microdash-agent --timeout=180s || fail "agent DaemonSet rollout"
kubectl wait --for=condition=Ready pod --all -n "$NS" --timeout=180s || fail "not every pod in $NS is Ready"
kubectl get microdash,tenants,alertrules,notificationchannels,silences -A
kubectl get pods -n "$NS" -o wide

step "The agent DaemonSet is the hardened pod of deploy/agent-daemonset.yaml; its API checks"
kubectl -n "$NS" get daemonset microdash-agent -o json | jq -e '.spec.template.spec as $p | $p.containers[0] as $c
  | $p.hostPID == true and $p.hostNetwork == true
  and $p.serviceAccountName == "microdash-agent" and $p.automountServiceAccountToken == true
  and ([$c.env[] | select(.name == "MICRODASH_AGENT_KUBE_NODE") | .valueFrom.fieldRef.fieldPath] == ["spec.nodeName"])
  and $p.securityContext.runAsUser == 65534 and $p.securityContext.runAsNonRoot == true
  and $p.securityContext.seccompProfile.type == "RuntimeDefault"
  and $c.securityContext.capabilities.drop == ["ALL"] and $c.securityContext.readOnlyRootFilesystem == true
  and $c.securityContext.allowPrivilegeEscalation == false and ($c.resources.limits.memory | length > 0)' >/dev/null \
  || fail "the agent DaemonSet is not the hardened manifest: $(kubectl -n "$NS" get daemonset microdash-agent -o jsonpath='{.spec.template.spec}')"
# Pod discovery (issue 22 item 3): the agents' ServiceAccount may get and list pods, and nothing
# more; the operator's binding names the chart's role.
agent_sa=system:serviceaccount:$NS:microdash-agent
role=$(kubectl get clusterrolebinding "microdash-agent:$NS:microdash" -o jsonpath='{.roleRef.name}' 2>/dev/null || true)
[[ $role == microdash-agent-pod-discovery ]] || fail "ClusterRoleBinding microdash-agent:$NS:microdash binds role '$role', expected microdash-agent-pod-discovery"
for can in "list pods -A" "get pods -n kube-system"; do
  [[ $(kubectl auth can-i $can --as "$agent_sa" 2>/dev/null) == yes ]] || fail "the agents' ServiceAccount cannot $can"
done
for cannot in "watch pods -A" "list secrets -A" "delete pods -n $NS" "get nodes"; do
  [[ $(kubectl auth can-i $cannot --as "$agent_sa" 2>/dev/null) == no ]] || fail "the agents' ServiceAccount can $cannot"
done
refusal=$(kubectl apply --dry-run=server -f - 2>&1 <<MD || true
apiVersion: microdash.io/v1alpha1
kind: MicroDash
metadata: {name: no-token, namespace: $NS}
spec: {image: "microdash:$TAG", agent: {enabled: true}}
MD
)
grep -q "agent.enabled needs agent.tokenSecretRef" <<<"$refusal" \
  || fail "a MicroDash with agent.enabled and no tokenSecretRef was not refused by the CEL rule: $refusal"
# A namespace that enforces `restricted`: the API server refuses the agent's pods, and the
# MicroDash's AgentReady condition says why and what to do.
kubectl create namespace microdash-restricted --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace microdash-restricted pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
kubectl apply -f - >/dev/null <<MD
apiVersion: microdash.io/v1alpha1
kind: MicroDash
metadata: {name: restricted, namespace: microdash-restricted}
spec:
  image: "microdash:$TAG"
  imagePullPolicy: Never
  api: {replicas: 0}
  agent: {enabled: true, tokenSecretRef: {name: absent, key: token}}
MD
kubectl wait -n microdash-restricted microdash/restricted --timeout=90s \
  --for=jsonpath='{.status.conditions[?(@.type=="AgentReady")].reason}'=PodSecurityLevel >/dev/null \
  || fail "AgentReady of a MicroDash in a restricted namespace: $(kubectl get microdashes restricted -n microdash-restricted -o jsonpath='{.status.conditions}')"
sleep 3
refused=$(kubectl get events -n microdash-restricted --field-selector reason=FailedCreate -o jsonpath='{.items[*].message}' 2>/dev/null || true)
grep -q 'violates PodSecurity "restricted' <<<"$refused" \
  || fail "Pod Security admission did not refuse the agent's pods in a restricted namespace (events: ${refused:-none})"
# The namespace is not among the chart's rbac.secretNamespaces: the operator may not write the
# admin-token Secret there, applies the rest, and its Reconciled condition says what to change.
reconciled=$(kubectl get microdashes restricted -n microdash-restricted -o jsonpath='{.status.conditions[?(@.type=="Reconciled")].reason}' || true)
[[ $reconciled == SecretsForbidden ]] \
  || fail "Reconciled of a MicroDash outside rbac.secretNamespaces is '$reconciled', expected SecretsForbidden"
kubectl delete namespace microdash-restricted --wait=false >/dev/null

nodes=$(kubectl get nodes --no-headers | wc -l)
agents=$(kubectl -n "$NS" get daemonset microdash-agent -o jsonpath='{.status.numberReady}' 2>/dev/null || echo 0)
[[ $agents == "$nodes" ]] || fail "agent DaemonSet: $agents Ready pods on $nodes nodes"
leaders=$(kubectl -n "$NS" get lease -o name 2>/dev/null | wc -l)
((leaders >= 1)) || fail "no leader Lease in $NS"

step "Port-forward to the api Service"
kubectl -n "$NS" port-forward svc/microdash-api "$API_PORT":8080 >"$cache/port-forward.log" 2>&1 &
pf_pid=$!
api=http://127.0.0.1:$API_PORT
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

step "Pod discovery: an annotated pod's metric arrives with its namespace, pod and container"
# A pod annotated prometheus.io/scrape|port|path, in a namespace of its own, serving a text
# exposition with a metric no one else has; the agent of its node finds it through the API
# (list every 30 s) and ships its samples through the spool. Fails when discovery breaks.
scrape_ns=microdash-e2e-scrape
kubectl create namespace "$scrape_ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n "$scrape_ns" -f - >/dev/null <<POD
apiVersion: v1
kind: Pod
metadata:
  name: exporter
  annotations:
    prometheus.io/scrape: "true"
    prometheus.io/port: "9464"
    prometheus.io/path: /probe-metrics
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: probe
      image: $TOOLS
      imagePullPolicy: Never
      ports: [{containerPort: 9464}]
      command:
        - python3
        - -c
        - |
          import http.server
          class Exposition(http.server.BaseHTTPRequestHandler):
              def do_GET(self):
                  if self.path != "/probe-metrics":
                      self.send_response(404); self.end_headers(); return
                  body = b"# TYPE e2e_pod_discovery_probe gauge\\ne2e_pod_discovery_probe{kind=\\"annotated\\"} 42\\n"
                  self.send_response(200)
                  self.send_header("Content-Type", "text/plain; version=0.0.4")
                  self.end_headers()
                  self.wfile.write(body)
          http.server.HTTPServer(("", 9464), Exposition).serve_forever()
POD
kubectl wait -n "$scrape_ns" --for=condition=Ready pod/exporter --timeout=120s >/dev/null \
  || fail "the annotated exporter pod is not Ready: $(kubectl get pod exporter -n "$scrape_ns" -o wide --no-headers 2>&1)"
discovered=
for _ in $(seq 1 60); do
  discovered=$(curl -fsS "${auth[@]}" "$api/api/v1/series?metric=e2e_pod_discovery_probe" 2>/dev/null \
    | jq -c --arg ns "$scrape_ns" '[.series[].labels | select(.namespace == $ns and .pod == "exporter" and .container == "probe" and .kind == "annotated")]' || true)
  [[ -n $discovered && $discovered != "[]" ]] && break
  sleep 2
done
echo "e2e_pod_discovery_probe series: ${discovered:-none}"
if [[ -z $discovered || $discovered == "[]" ]]; then
  fail "the annotated pod's metric e2e_pod_discovery_probe did not arrive with namespace=$scrape_ns, pod=exporter, container=probe (series: $(curl -fsS "${auth[@]}" "$api/api/v1/series?metric=e2e_pod_discovery_probe" 2>&1 | head -c 600); agent logs: $(kubectl -n "$NS" logs daemonset/microdash-agent --tail=20 2>&1 | grep -iE 'pod|kube' | tail -5))"
fi
kubectl delete namespace "$scrape_ns" --wait=false >/dev/null

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

step "kubectl delete pod of the api keeps metrics, tenant and token (storage on a PersistentVolumeClaim)"
[[ $(kubectl -n "$NS" get pvc microdash-data -o jsonpath='{.status.phase}') == Bound ]] \
  || fail "the api's claim microdash-data is not Bound: $(kubectl -n "$NS" get pvc 2>&1 | tr '\n' ' ')"
[[ $(kubectl -n "$NS" get deploy microdash-api -o jsonpath='{.spec.strategy.type}') == Recreate ]] \
  || fail "the api Deployment on a claim does not use the Recreate strategy"
before=$(curl -fsS "${auth[@]}" "$api/api/v1/metrics" | jq -c '.metrics | sort')
tenants_before=$(curl -fsS -H "Authorization: Bearer $admin_token" "$api/api/v1/tenants" | jq -c '[.tenants[].name] | sort')
kill "$pf_pid" 2>/dev/null || true; pf_pid=
forward_api() {
  kubectl -n "$NS" rollout status deployment/microdash-api --timeout=120s || fail "api rollout"
  kubectl wait --for=condition=Ready pod -l app.kubernetes.io/component=api -n "$NS" --timeout=120s || true
  kubectl -n "$NS" port-forward svc/microdash-api "$API_PORT":8080 >"$cache/port-forward.log" 2>&1 &
  pf_pid=$!
  for _ in $(seq 1 50); do curl -fsS "$api/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
}
kubectl -n "$NS" delete pod -l app.kubernetes.io/component=api --wait=true --timeout=60s
forward_api
code=$(curl -sS -o /dev/null -w '%{http_code}' "${auth[@]}" "$api/api/v1/metrics" || true)
[[ $code == 200 ]] || fail "after the api pod was deleted, the Tenant's token Secret gets HTTP $code (expected 200)"
after=$(curl -fsS "${auth[@]}" "$api/api/v1/metrics" 2>/dev/null | jq -c '.metrics | sort' || echo '[]')
for m in $(jq -r '.[]' <<<"$before"); do
  jq -e --arg m "$m" 'index($m) != null' <<<"$after" >/dev/null \
    || { fail "metric $m lost when the api pod was deleted (before: $before, after: $after)"; break; }
done
tenants_after=$(curl -fsS -H "Authorization: Bearer $admin_token" "$api/api/v1/tenants" | jq -c '[.tenants[].name] | sort')
[[ $tenants_after == "$tenants_before" ]] || fail "tenants before the api pod was deleted: $tenants_before, after: $tenants_after"
kubectl wait --for=condition=Ready tenant/team-a --timeout=60s || fail "Tenant not Ready after the api pod was deleted"

step "A token the server no longer knows (the tenant recreated, as after a restore) is registered again"
curl -fsS -X DELETE -H "Authorization: Bearer $admin_token" "$api/api/v1/tenants/team-a" >/dev/null \
  || fail "deleting tenant team-a through the admin API"
code=
for _ in $(seq 1 20); do
  code=$(curl -sS -o /dev/null -w '%{http_code}' "${auth[@]}" "$api/api/v1/metrics" || true)
  [[ $code == 401 ]] && break; sleep 0.25
done
[[ $code == 401 ]] || fail "the deleted tenant's token still gets HTTP $code"
# A change to the Tenant wakes its controller now rather than at the next resync.
kubectl annotate tenant team-a microdash.io/e2e-poke="$(date +%s)" --overwrite >/dev/null
for _ in $(seq 1 60); do
  code=$(curl -sS -o /dev/null -w '%{http_code}' "${auth[@]}" "$api/api/v1/metrics" || true)
  [[ $code == 200 ]] && break; sleep 1
done
[[ $code == 200 ]] || fail "the Tenant's token Secret gets HTTP $code after the tenant was recreated (expected 200)"
[[ $(token) == "$TOKEN" ]] || fail "the Secret's token changed; it should have been registered again"
repair=$(kubectl get tenant team-a -o jsonpath='{.status.tokenRepair.action}')
[[ $repair == Reregistered ]] || fail "Tenant team-a status.tokenRepair.action is '$repair', expected Reregistered"
kubectl get events -A --field-selector reason=TokenReregistered --no-headers 2>/dev/null | grep -q team-a \
  || fail "no TokenReregistered Event for Tenant team-a"

step "Tenancy: a namespace the Tenant does not bind is refused at admission; a bound one syncs as NAMESPACE.NAME, and deleting it leaves nothing stuck"
extra=team-a-extra
kubectl create namespace "$extra" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
extra_rule() {
  kubectl apply -f - 2>&1 <<RULE
apiVersion: microdash.io/v1alpha1
kind: AlertRule
metadata: {name: extra, namespace: $extra}
spec: {tenant: team-a, metric: e2e.extra, condition: {aggregation: last, op: ">", threshold: 1}}
RULE
}
refusal=$(extra_rule || true)
grep -q "does not bind namespace $extra" <<<"$refusal" \
  || fail "a rule of team-a in unbound namespace $extra was not refused by the admission policy: $refusal"
kubectl patch tenant team-a --type=merge -p "{\"spec\":{\"namespaces\":[\"$extra\"]}}" >/dev/null
extra_rule >/dev/null || fail "a rule of team-a in bound namespace $extra was refused: $(extra_rule)"
kubectl wait --for=condition=Synced alertrule/extra -n "$extra" --timeout=90s >/dev/null \
  || fail "rule $extra/extra not Synced: $(kubectl get alertrule extra -n "$extra" -o jsonpath='{.status.conditions}')"
code=$(curl -sS -o /dev/null -w '%{http_code}' "${auth[@]}" "$api/api/v1/rules/$extra.extra" || true)
[[ $code == 200 ]] || fail "rule $extra.extra on the server: HTTP $code (expected 200)"
kubectl delete namespace "$extra" --timeout=120s >/dev/null || fail "namespace $extra stuck in Terminating with the operator running"
code=$(curl -sS -o /dev/null -w '%{http_code}' "${auth[@]}" "$api/api/v1/rules/$extra.extra" || true)
[[ $code == 404 ]] || fail "rule $extra.extra still on the server after its namespace was deleted: HTTP $code"
kubectl patch tenant team-a --type=json -p '[{"op":"remove","path":"/spec/namespaces"}]' >/dev/null

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
# The chart's pre-delete hook stopped the operator and released its finalizers.
left=$(kubectl get alertrules,notificationchannels,silences -n "$NS" -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.finalizers}{" "}{end}' 2>/dev/null || true)
grep -q 'microdash.io/cleanup' <<<"$left" && fail "finalizers left after helm uninstall: $left"
if ! kubectl delete namespace "$NS" --timeout=60s; then
  fail "namespace $NS stuck in Terminating after helm uninstall"
  kubectl get namespace "$NS" -o yaml | sed -n '/^status:/,$p'
  # What is left: resources whose finalizer only the (uninstalled) operator removes. Their
  # finalizers are dropped here so that the namespace goes and the installation can be made again.
  for kind in alertrules notificationchannels silences microdashes; do
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
  kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=privileged --overwrite >/dev/null
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
if ((${#failures[@]})); then
  echo "cluster e2e: ${#failures[@]} failed:" >&2
  printf '  - %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "cluster e2e: all checks passed"
