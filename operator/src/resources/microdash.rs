//! `MicroDash`: one installation of microdash in a namespace (api and worker Deployments,
//! Services, ConfigMap, admin-token Secret, agent DaemonSet).

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretKeyRef;

/// One microdash installation.
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "microdash.io",
    version = "v1alpha1",
    kind = "MicroDash",
    plural = "microdashes",
    namespaced,
    status = "MicroDashStatus",
    shortname = "md",
    category = "microdash",
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image"),
    printcolumn(name = "API ready", type_ = "integer", json_path = ".status.apiReadyReplicas"),
    printcolumn(name = "Workers ready", type_ = "integer", json_path = ".status.workerReadyReplicas"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.worker.replicas == 0 || ((has(self.redisUrl) || has(self.redisUrlSecretRef)) && has(self.databaseUrlSecretRef))")
    .message("worker replicas need redisUrl (or redisUrlSecretRef) and databaseUrlSecretRef (distributed mode: Redis Streams and PostgreSQL or MariaDB)"))]
#[x_kube(validation = Rule::new("!has(self.agent) || !self.agent.enabled || has(self.agent.tokenSecretRef)")
    .message("agent.enabled needs agent.tokenSecretRef: the Secret (key `token`) of a token with the ingest scope, e.g. a Tenant's token Secret"))]
#[x_kube(validation = Rule::new("!has(self.outboundAllow) || self.outboundAllow.all(r, isCIDR(r) || isIP(r))")
    .message("outboundAllow takes CIDRs like 10.96.0.0/12 or single addresses"))]
#[x_kube(validation = Rule::new("has(self.databaseUrlSecretRef) || self.api.replicas <= 1")
    .message("the embedded SQLite database is one process's file: more than one api replica needs databaseUrlSecretRef (PostgreSQL or MariaDB) and redisUrl or redisUrlSecretRef"))]
#[x_kube(validation = Rule::new("!(has(self.redisUrl) && has(self.redisUrlSecretRef))")
    .message("set redisUrl or redisUrlSecretRef, not both"))]
#[x_kube(validation = Rule::new("!has(self.redisUrl) || !self.redisUrl.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@]*:[^/@]*@')")
    .message("redisUrl carries a password, which would land in a ConfigMap: put the URL in a Secret and name it in redisUrlSecretRef"))]
#[x_kube(validation = Rule::new("!(has(self.mqtt.url) && has(self.mqtt.urlSecretRef))")
    .message("set mqtt.url or mqtt.urlSecretRef, not both"))]
#[x_kube(validation = Rule::new("!has(self.mqtt.url) || !self.mqtt.url.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@]*:[^/@]*@')")
    .message("mqtt.url carries a password, which would land in a ConfigMap: put the URL in a Secret and name it in mqtt.urlSecretRef"))]
#[x_kube(validation = Rule::new("has(self.redisUrl) || has(self.redisUrlSecretRef) || self.api.replicas <= 1")
    .message("more than one api replica needs redisUrl or redisUrlSecretRef (without Redis one process holds the queue and the live hub)"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MicroDashSpec {
    /// The image of the `microdash` server, e.g. `microdash:0.1.0`.
    pub image: String,
    /// The image of `microdash-agent`; default: `image` with `-agent` added to the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// The HTTP API and ingest (role `api`, or `all` without Redis).
    #[serde(default)]
    pub api: ComponentSpec,
    /// Queue consumers and alert evaluation (role `worker`); needs Redis and an SQL server.
    #[serde(default = "ComponentSpec::none")]
    pub worker: ComponentSpec,
    /// `MICRODASH_DATABASE_URL` from a Secret (PostgreSQL or MariaDB); omitted = the embedded
    /// SQLite database in the api Pod's `/data`, on the PersistentVolumeClaim of `storage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url_secret_ref: Option<SecretKeyRef>,
    /// The api Pod's `/data` (the embedded SQLite database) on a PersistentVolumeClaim, so
    /// restarts, rollouts and node drains keep every metric, tenant and token.
    #[serde(default)]
    pub storage: StorageSpec,
    /// `MICRODASH_REDIS_URL` without credentials (it goes into a ConfigMap; a URL with a
    /// password is refused); omitted = in-process queue and live hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// `MICRODASH_REDIS_URL` from a Secret: the way for a URL with credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url_secret_ref: Option<SecretKeyRef>,
    #[serde(default)]
    pub mqtt: MqttSpec,
    /// Non-public ranges webhooks may reach (`MICRODASH_OUTBOUND_ALLOW`), e.g. the cluster's
    /// Service network for an in-cluster receiver; loopback, private, link-local (metadata)
    /// and other local addresses are refused otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 43)))]
    pub outbound_allow: Vec<String>,
    #[serde(default)]
    pub agent: AgentSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComponentSpec {
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn one() -> i32 {
    1
}

impl Default for ComponentSpec {
    fn default() -> Self {
        ComponentSpec { replicas: 1, resources: None }
    }
}

impl ComponentSpec {
    fn none() -> Self {
        ComponentSpec { replicas: 0, resources: None }
    }
}

/// A PersistentVolumeClaim `<name>-data` (ReadWriteOnce) for the api Pod's `/data`. With it the
/// api Deployment uses the `Recreate` strategy: the old Pod lets go of the SQLite file (and the
/// volume) before the new one opens it. Deleting the `MicroDash` deletes the claim (and, with
/// the usual `Delete` reclaim policy, the data).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageSpec {
    /// Default: on without `databaseUrlSecretRef` (the embedded SQLite database), off with an
    /// external database (nothing in `/data` needs to outlive the Pod then). Off keeps `/data`
    /// on an emptyDir: every restart starts empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The claim's requested size, e.g. `10Gi`; default `1Gi`. It can grow later where the
    /// StorageClass allows volume expansion, never shrink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,
    /// Omitted = the cluster's default StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl StorageSpec {
    pub const DEFAULT_SIZE: &'static str = "1Gi";
}

/// MQTT: the embedded broker (default) or an external one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MqttSpec {
    /// `mqtt://` or `mqtts://` URL of an external broker, without credentials (it goes into a
    /// ConfigMap; a URL with a password is refused); omitted = the embedded broker on :1883.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The external broker's URL from a Secret: the way for a URL with credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
}

impl MqttSpec {
    /// True when an external broker is used (the embedded one is off).
    pub fn external(&self) -> bool {
        self.url.is_some() || self.url_secret_ref.is_some()
    }
}

/// The agent DaemonSet: one `microdash-agent` per node, reading the host's `/proc` and `/`: the
/// hardened pod of `deploy/agent-daemonset.yaml` (hostPID and hostNetwork, so the namespace
/// must allow the Pod Security level `privileged`; the `AgentReady` condition says when it does
/// not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSpec {
    #[serde(default)]
    pub enabled: bool,
    /// Collection interval, e.g. `10s`.
    #[serde(default = "ten_seconds")]
    pub interval: String,
    /// The Secret (and key, usually `token`) of the token the agents write with: a token with the
    /// `ingest` scope, e.g. the Secret a `Tenant` writes. Required when `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
    /// Default: tolerate every taint, so every node reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Scrape the pods of each agent's node annotated `prometheus.io/scrape: "true"`
    /// (`prometheus.io/port`, `prometheus.io/path`), found through the Kubernetes API with a
    /// `spec.nodeName` field selector; their samples carry `namespace`, `pod` and `container`.
    /// On: the agent pods run as the ServiceAccount `<name>-agent` with its token mounted, and
    /// the operator binds that account (ClusterRoleBinding `microdash-agent:<namespace>:<name>`)
    /// to the chart's ClusterRole that only allows `get` and `list` on pods. Off: no token is
    /// mounted and the ServiceAccount is deleted.
    #[serde(default = "yes")]
    pub pod_discovery: bool,
}

fn yes() -> bool {
    true
}

fn ten_seconds() -> String {
    "10s".into()
}

impl Default for AgentSpec {
    fn default() -> Self {
        AgentSpec {
            enabled: false,
            interval: ten_seconds(),
            token_secret_ref: None,
            tolerations: None,
            resources: None,
            pod_discovery: true,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MicroDashStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (every Deployment has its replicas ready) and `Reconciled`.
    #[serde(default)]
    #[schemars(schema_with = "super::conditions_schema")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub api_ready_replicas: i32,
    #[serde(default)]
    pub worker_ready_replicas: i32,
    #[serde(default)]
    pub agent_ready_nodes: i32,
    /// The in-cluster URL of the HTTP API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The Secret holding the admin token (key `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_secret: Option<String>,
}
