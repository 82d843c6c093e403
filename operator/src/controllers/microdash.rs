//! `MicroDash` → the objects of one installation, all owned by it (deleting the `MicroDash`
//! deletes them through Kubernetes' garbage collection): api and worker Deployments, the api
//! Service, a ConfigMap with the non-secret settings, the admin-token Secret, the
//! PersistentVolumeClaim of the embedded database, the agent DaemonSet and, with pod discovery,
//! the agents' ServiceAccount. Status: ready replicas and conditions.
//!
//! One object is not owned: the ClusterRoleBinding `microdash-agent:<namespace>:<name>` of
//! pod discovery (a cluster-scoped object cannot have a namespaced owner). It binds the agents'
//! ServiceAccount to the chart's read-only pods ClusterRole ([`Context::agent_cluster_role`]),
//! which is the only role the operator may `bind`; the operator may create and patch such
//! bindings but not delete any, so turning discovery off or deleting the installation deletes
//! the ServiceAccount and leaves a binding whose subject no longer exists.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar, EnvVarSource,
    HTTPGetAction, Namespace, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, Secret, SecretKeySelector,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use rand::RngCore;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{error_policy, measured};
use crate::conditions::{Wanted, merge};
use crate::context::{Context, MANAGER, update_status};
use crate::error::Result;
use crate::resources::microdash::StorageSpec;
use crate::resources::{MicroDash, MicroDashStatus};

const CONTROLLER: &str = "microdash";
const HTTP_PORT: i32 = 8080;
const MQTT_PORT: i32 = 1883;
/// The `nonroot` user the server image runs as.
const SERVER_UID: i64 = 65532;

pub async fn run(ctx: Arc<Context>) {
    let installs: Api<MicroDash> = ctx.watched();
    let config = watcher::Config::default().labels("app.kubernetes.io/managed-by=microdash-operator");
    Controller::new(installs, watcher::Config::default())
        .owns(ctx.watched::<Deployment>(), config.clone())
        .owns(ctx.watched::<DaemonSet>(), config.clone())
        .owns(ctx.watched::<Service>(), config.clone())
        // Not Secrets: the operator may not list or watch them (RBAC, README); a deleted
        // admin-token Secret is written again at the next resync.
        .owns(ctx.watched::<ConfigMap>(), config)
        .shutdown_on_signal()
        .run(reconcile, |obj, err, ctx| error_policy(CONTROLLER, obj.as_ref(), err, &ctx), ctx)
        .for_each(|_| async {})
        .await;
}

/// No finalizer: everything the installation made is owned by it and garbage-collected.
pub async fn reconcile(install: Arc<MicroDash>, ctx: Arc<Context>) -> Result<Action> {
    if install.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    measured(CONTROLLER, install.as_ref(), &ctx, install.apply(&ctx)).await
}

/// The names of an installation's objects.
pub struct Names {
    pub api: String,
    pub worker: String,
    pub agent: String,
    pub config: String,
    pub admin_secret: String,
    /// The PersistentVolumeClaim of the api Pod's `/data`.
    pub data: String,
}

impl MicroDash {
    pub fn names(&self) -> Names {
        let base = self.name_any();
        Names {
            api: format!("{base}-api"),
            worker: format!("{base}-worker"),
            agent: format!("{base}-agent"),
            config: format!("{base}-config"),
            admin_secret: format!("{base}-admin-token"),
            data: format!("{base}-data"),
        }
    }

    fn labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "microdash".into()),
            ("app.kubernetes.io/instance".into(), self.name_any()),
            ("app.kubernetes.io/component".into(), component.into()),
            ("app.kubernetes.io/managed-by".into(), MANAGER.into()),
        ])
    }

    fn selector(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/instance".into(), self.name_any()),
            ("app.kubernetes.io/component".into(), component.into()),
        ])
    }

    fn meta(&self, name: &str, component: &str) -> ObjectMeta {
        let owner: OwnerReference = self.controller_owner_ref(&()).expect("a stored MicroDash has a uid");
        ObjectMeta {
            name: Some(name.into()),
            namespace: self.namespace(),
            labels: Some(self.labels(component)),
            owner_references: Some(vec![owner]),
            ..Default::default()
        }
    }

    /// The role of the api process: `all` without Redis (one process does everything).
    fn api_role(&self) -> &'static str {
        let redis = self.spec.redis_url.is_some() || self.spec.redis_url_secret_ref.is_some();
        if redis && self.spec.worker.replicas > 0 { "api" } else { "all" }
    }

    pub fn config_map(&self) -> ConfigMap {
        let mut data = BTreeMap::from([
            ("MICRODASH_LISTEN".to_string(), format!("0.0.0.0:{HTTP_PORT}")),
            ("MICRODASH_LOG_FORMAT".to_string(), "json".to_string()),
            ("MICRODASH_DATA_DIR".to_string(), "/data".to_string()),
        ]);
        if self.spec.database_url_secret_ref.is_none() {
            data.insert("MICRODASH_DATABASE_URL".into(), "sqlite:///data/microdash.db".into());
        }
        if !self.spec.outbound_allow.is_empty() {
            data.insert("MICRODASH_OUTBOUND_ALLOW".into(), self.spec.outbound_allow.join(","));
        }
        if let Some(redis) = &self.spec.redis_url {
            data.insert("MICRODASH_REDIS_URL".into(), redis.clone());
        }
        if let Some(url) = &self.spec.mqtt.url {
            data.insert("MICRODASH_MQTT_URL".into(), url.clone());
        }
        let listen = if self.spec.mqtt.external() { "off".into() } else { format!("0.0.0.0:{MQTT_PORT}") };
        data.insert("MICRODASH_MQTT_LISTEN".into(), listen);
        ConfigMap { metadata: self.meta(&self.names().config, "config"), data: Some(data), ..Default::default() }
    }

    /// The admin token Secret; `token` is only set when the Secret is new (an existing token is kept).
    pub fn admin_secret(&self, token: Option<String>) -> Secret {
        Secret {
            metadata: self.meta(&self.names().admin_secret, "admin-token"),
            string_data: token.map(|t| BTreeMap::from([("token".to_string(), t)])),
            type_: Some("Opaque".into()),
            ..Default::default()
        }
    }

    fn server_container(
        &self,
        role: &str,
        resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    ) -> Container {
        let names = self.names();
        let mut env = vec![
            EnvVar { name: "MICRODASH_ROLE".into(), value: Some(role.into()), ..Default::default() },
            EnvVar {
                name: "MICRODASH_ADMIN_TOKEN".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: names.admin_secret.clone(),
                        key: "token".into(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ];
        // URLs that may carry credentials come from Secrets, never from the ConfigMap.
        let from_secrets = [
            ("MICRODASH_DATABASE_URL", &self.spec.database_url_secret_ref),
            ("MICRODASH_REDIS_URL", &self.spec.redis_url_secret_ref),
            ("MICRODASH_MQTT_URL", &self.spec.mqtt.url_secret_ref),
        ];
        for (name, secret) in from_secrets {
            let Some(secret) = secret else { continue };
            env.push(EnvVar {
                name: name.into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.name.clone(),
                        key: secret.key.clone(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        let probe = |path: &str| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.into()),
                port: IntOrString::Int(HTTP_PORT),
                ..Default::default()
            }),
            period_seconds: Some(10),
            ..Default::default()
        };
        let mut ports =
            vec![ContainerPort { name: Some("http".into()), container_port: HTTP_PORT, ..Default::default() }];
        if role != "worker" && !self.spec.mqtt.external() {
            ports.push(ContainerPort { name: Some("mqtt".into()), container_port: MQTT_PORT, ..Default::default() });
        }
        Container {
            name: "microdash".into(),
            image: Some(self.spec.image.clone()),
            image_pull_policy: self.spec.image_pull_policy.clone(),
            args: Some(vec!["serve".into()]),
            env: Some(env),
            env_from: Some(vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource { name: names.config.clone(), optional: Some(false) }),
                ..Default::default()
            }]),
            ports: Some(ports),
            readiness_probe: Some(probe("/readyz")),
            liveness_probe: Some(probe("/healthz")),
            resources,
            volume_mounts: Some(vec![VolumeMount {
                name: "data".into(),
                mount_path: "/data".into(),
                ..Default::default()
            }]),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                run_as_user: Some(SERVER_UID),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn deployment(
        &self,
        name: &str,
        component: &str,
        role: &str,
        spec: &crate::resources::microdash::ComponentSpec,
    ) -> Deployment {
        let selector = self.selector(component);
        // Only the api Pod holds the claim; a worker always has an external database.
        let claim = (component == "api" && self.stores_on_claim()).then(|| self.names().data);
        let data = match &claim {
            Some(claim_name) => Volume {
                name: "data".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name.clone(),
                    read_only: Some(false),
                }),
                ..Default::default()
            },
            None => {
                Volume { name: "data".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() }
            }
        };
        Deployment {
            metadata: self.meta(name, component),
            spec: DeploymentSpec {
                replicas: Some(spec.replicas),
                selector: LabelSelector { match_labels: Some(selector), ..Default::default() },
                // One writer of the SQLite file: the old Pod ends (and lets go of a ReadWriteOnce
                // volume, which may be attached to one node only) before the new one starts.
                strategy: claim
                    .is_some()
                    .then(|| DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels: Some(self.labels(component)), ..Default::default() }),
                    spec: Some(PodSpec {
                        containers: vec![self.server_container(role, spec.resources.clone())],
                        volumes: Some(vec![data]),
                        // The server's user owns what it writes to the volume.
                        security_context: Some(PodSecurityContext {
                            fs_group: Some(SERVER_UID),
                            fs_group_change_policy: Some("OnRootMismatch".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Whether `/data` of the api Pod is on the PersistentVolumeClaim `names().data`.
    pub fn stores_on_claim(&self) -> bool {
        self.spec.storage.enabled.unwrap_or(self.spec.database_url_secret_ref.is_none())
    }

    /// The claim of the api Pod's `/data`; `None` when `stores_on_claim` is off.
    pub fn data_claim(&self) -> Option<PersistentVolumeClaim> {
        if !self.stores_on_claim() {
            return None;
        }
        let storage = &self.spec.storage;
        let size = storage.size.clone().unwrap_or_else(|| Quantity(StorageSpec::DEFAULT_SIZE.into()));
        Some(PersistentVolumeClaim {
            metadata: self.meta(&self.names().data, "data"),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".to_string(), size)])),
                    limits: None,
                }),
                storage_class_name: storage.storage_class_name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    pub fn api_deployment(&self) -> Deployment {
        self.deployment(&self.names().api, "api", self.api_role(), &self.spec.api)
    }

    /// `None` when the installation runs without workers.
    pub fn worker_deployment(&self) -> Option<Deployment> {
        (self.api_role() == "api").then(|| self.deployment(&self.names().worker, "worker", "worker", &self.spec.worker))
    }

    pub fn api_service(&self) -> Service {
        let mut ports = vec![ServicePort {
            name: Some("http".into()),
            port: HTTP_PORT,
            target_port: Some(IntOrString::String("http".into())),
            ..Default::default()
        }];
        if !self.spec.mqtt.external() {
            ports.push(ServicePort {
                name: Some("mqtt".into()),
                port: MQTT_PORT,
                target_port: Some(IntOrString::String("mqtt".into())),
                ..Default::default()
            });
        }
        Service {
            metadata: self.meta(&self.names().api, "api"),
            spec: Some(ServiceSpec { selector: Some(self.selector("api")), ports: Some(ports), ..Default::default() }),
            ..Default::default()
        }
    }

    /// The in-cluster URL of the HTTP API.
    pub fn url(&self) -> String {
        format!("http://{}.{}.svc:{HTTP_PORT}", self.names().api, self.namespace().unwrap_or_default())
    }

    /// The Pod Security level the namespace enforces when it is one that refuses the agent's
    /// pods (`baseline` or `restricted`); `None` for `privileged` or no label.
    async fn pod_security_refusing_agent(&self, client: &Client, namespace: &str) -> Result<Option<String>> {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let level = namespaces
            .get_opt(namespace)
            .await?
            .and_then(|n| n.metadata.labels?.remove("pod-security.kubernetes.io/enforce"));
        Ok(level.filter(|l| l == "baseline" || l == "restricted"))
    }

    /// The agent is enabled with pod discovery (`spec.agent.podDiscovery`, on by default).
    pub fn agent_discovers_pods(&self) -> bool {
        self.spec.agent.enabled && self.spec.agent.pod_discovery
    }

    /// The agents' ServiceAccount `<name>-agent`, with pod discovery only. Its token is mounted
    /// by the agent's pod template alone (`automountServiceAccountToken` is off on the account).
    pub fn agent_service_account(&self) -> Option<ServiceAccount> {
        self.agent_discovers_pods().then(|| ServiceAccount {
            metadata: self.meta(&self.names().agent, "agent"),
            automount_service_account_token: Some(false),
            ..Default::default()
        })
    }

    /// `microdash-agent:<namespace>:<name>`: unique per installation (neither name may hold a
    /// colon).
    pub fn agent_binding_name(&self) -> String {
        format!("microdash-agent:{}:{}", self.namespace().unwrap_or_default(), self.name_any())
    }

    /// The agents' ServiceAccount bound to `role` (the pods get/list ClusterRole), with pod
    /// discovery only. Labelled, not owned (see the module's documentation).
    pub fn agent_cluster_role_binding(&self, role: &str) -> Option<ClusterRoleBinding> {
        let mut labels = self.labels("agent");
        labels.insert("microdash.io/namespace".into(), self.namespace().unwrap_or_default());
        self.agent_discovers_pods().then(|| ClusterRoleBinding {
            metadata: ObjectMeta { name: Some(self.agent_binding_name()), labels: Some(labels), ..Default::default() },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: role.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: self.names().agent,
                namespace: self.namespace(),
                api_group: None,
            }]),
        })
    }

    /// `None` when the agent is disabled. The DaemonSet of `deploy/agent-daemonset.yaml` (one
    /// source for `kubectl apply` users and the operator: hostPID and hostNetwork, user nobody,
    /// seccomp RuntimeDefault, every capability dropped, read-only root, resources), with this
    /// installation's names, labels, image, server, token, interval, tolerations and resources.
    /// Pod discovery on (the default): the ServiceAccount `<name>-agent` with its token mounted
    /// and `MICRODASH_AGENT_KUBE_NODE` from `spec.nodeName`; off: the namespace's default
    /// ServiceAccount, no token mounted, no discovery.
    pub fn agent_daemon_set(&self) -> Option<DaemonSet> {
        let agent = &self.spec.agent;
        if !agent.enabled {
            return None;
        }
        let mut daemon_set = hardened_agent_daemon_set();
        daemon_set.metadata = self.meta(&self.names().agent, "agent");
        let spec = &mut daemon_set.spec;
        spec.selector = LabelSelector { match_labels: Some(self.selector("agent")), ..Default::default() };
        spec.template.metadata = Some(ObjectMeta { labels: Some(self.labels("agent")), ..Default::default() });
        let pod = spec.template.spec.as_mut().expect("the manifest has a pod spec");
        let discovery = self.agent_discovers_pods();
        if discovery {
            pod.service_account_name = Some(self.names().agent);
            pod.automount_service_account_token = Some(true);
        } else {
            // The namespace's default ServiceAccount, its token not mounted. Named rather than
            // left out: the API server fills the deprecated `serviceAccount` from the name, and
            // copies it back into a name that an apply leaves out.
            pod.service_account_name = Some("default".into());
            pod.automount_service_account_token = Some(false);
        }
        if let Some(tolerations) = &agent.tolerations {
            pod.tolerations = Some(tolerations.clone());
        }
        let container = &mut pod.containers[0];
        container.image = Some(self.spec.agent_image.clone().unwrap_or_else(|| agent_image_of(&self.spec.image)));
        container.image_pull_policy = self.spec.image_pull_policy.clone();
        if let Some(resources) = &agent.resources {
            container.resources = Some(resources.clone());
        }
        let env = container.env.get_or_insert_with(Vec::new);
        let mut set = |name: &str, value: Option<String>, value_from: Option<EnvVarSource>| {
            env.retain(|e| e.name != name);
            if value.is_some() || value_from.is_some() {
                env.push(EnvVar { name: name.into(), value, value_from });
            }
        };
        set("MICRODASH_AGENT_SERVER", Some(self.url()), None);
        set("MICRODASH_AGENT_INTERVAL", Some(agent.interval.clone()), None);
        // The CRD's CEL rule makes `tokenSecretRef` present whenever the agent is enabled.
        let token = agent.token_secret_ref.as_ref().map(|token| EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: token.name.clone(),
                key: token.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        });
        set("MICRODASH_AGENT_TOKEN", None, token);
        let node = discovery.then(|| EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: "spec.nodeName".into(), api_version: None }),
            ..Default::default()
        });
        set("MICRODASH_AGENT_KUBE_NODE", None, node);
        Some(daemon_set)
    }

    async fn apply(&self, ctx: &Context) -> Result<Action> {
        let namespace = self.namespace().unwrap_or_default();
        let names = self.names();
        let client = &ctx.client;

        // The admin token: generated once, then kept (the server reads it at start). Without
        // the right to Secrets here the rest is still applied and the status says what to do.
        let admin_secret = async {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
            let has_token = secrets
                .get_opt(&names.admin_secret)
                .await?
                .is_some_and(|s| s.data.as_ref().is_some_and(|d| d.contains_key("token")));
            let token = (!has_token).then(new_admin_token);
            apply(client, &namespace, &self.admin_secret(token)).await.map(|_| ())
        };
        let secrets_forbidden = match admin_secret.await {
            Ok(()) => None,
            Err(e) if e.is_forbidden() => Some(super::secrets_forbidden(&namespace, "the admin token")),
            Err(e) => return Err(e),
        };
        apply(client, &namespace, &self.config_map()).await?;
        // Turning storage off later leaves the claim (and its data) in place: delete it by hand.
        if let Some(claim) = self.data_claim() {
            apply(client, &namespace, &claim).await?;
        }
        let api = apply(client, &namespace, &self.api_deployment()).await?;
        apply(client, &namespace, &self.api_service()).await?;
        let worker = match self.worker_deployment() {
            Some(d) => Some(apply(client, &namespace, &d).await?),
            None => remove::<Deployment>(client, &namespace, &names.worker).await.map(|_| None)?,
        };
        // Pod discovery: the ServiceAccount and its binding before the pods that use them.
        let discovery_forbidden =
            match (self.agent_service_account(), self.agent_cluster_role_binding(&ctx.agent_cluster_role)) {
                (Some(account), Some(binding)) => {
                    apply(client, &namespace, &account).await?;
                    match apply_binding(client, &binding).await {
                        Ok(()) => None,
                        Err(e) if e.is_forbidden() => Some(format!(
                            "the operator may not bind ClusterRole {role} (pod discovery of the agents): install the \
                         chart's RBAC, whose ClusterRole {role} allows get and list on pods and which the operator \
                         may bind (MICRODASH_OPERATOR_AGENT_CLUSTER_ROLE), or set spec.agent.podDiscovery: false",
                            role = ctx.agent_cluster_role
                        )),
                        Err(e) => return Err(e),
                    }
                }
                _ => {
                    remove::<ServiceAccount>(client, &namespace, &names.agent).await?;
                    None
                }
            };
        let agent = match self.agent_daemon_set() {
            Some(d) => Some(apply(client, &namespace, &d).await?),
            None => remove::<DaemonSet>(client, &namespace, &names.agent).await.map(|_| None)?,
        };

        let ready = |d: &Deployment| d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        let api_ready = ready(&api);
        let worker_ready = worker.as_ref().map(ready).unwrap_or(0);
        let agent_ready = agent.as_ref().and_then(|d| d.status.as_ref()).map_or(0, |s| s.number_ready);
        let worker_wanted = if worker.is_some() { self.spec.worker.replicas } else { 0 };
        let all_ready = api_ready >= self.spec.api.replicas && worker_ready >= worker_wanted;
        let previous = self.status.clone().unwrap_or_default();
        let generation = self.metadata.generation;
        let refusing_level = match &agent {
            Some(_) => self.pod_security_refusing_agent(client, &namespace).await?,
            None => None,
        };
        let agent_condition = match (&agent, refusing_level) {
            (None, _) => Wanted::yes("AgentReady", "Disabled", "the agent is not enabled"),
            (Some(_), None) if discovery_forbidden.is_some() => {
                Wanted::no("AgentReady", "PodDiscoveryForbidden", discovery_forbidden.clone().unwrap_or_default())
            }
            (Some(_), Some(level)) => Wanted::no(
                "AgentReady",
                "PodSecurityLevel",
                format!(
                    "namespace {namespace} enforces the Pod Security level {level:?}; the agent's pods (hostPID, \
                     hostNetwork, hostPath) need \"privileged\": kubectl label namespace {namespace} \
                     pod-security.kubernetes.io/enforce=privileged --overwrite, or put the MicroDash in such a namespace"
                ),
            ),
            (Some(d), None) => {
                let status = d.status.clone().unwrap_or_default();
                let message = format!("{}/{} nodes", status.number_ready, status.desired_number_scheduled);
                if status.number_ready >= status.desired_number_scheduled && status.desired_number_scheduled > 0 {
                    Wanted::yes("AgentReady", "NodesReady", message)
                } else {
                    Wanted::no("AgentReady", "NodesNotReady", message)
                }
            }
        };
        let ready_condition = if all_ready {
            Wanted::yes(
                "Ready",
                "ReplicasReady",
                format!("api {api_ready}/{}, workers {worker_ready}/{worker_wanted}", self.spec.api.replicas),
            )
        } else {
            Wanted::no(
                "Ready",
                "ReplicasNotReady",
                format!("api {api_ready}/{}, workers {worker_ready}/{worker_wanted}", self.spec.api.replicas),
            )
        };
        let conditions = merge(
            &previous.conditions,
            &[
                ready_condition,
                agent_condition,
                match &secrets_forbidden {
                    None => Wanted::yes("Reconciled", "Applied", "every object of the installation is applied"),
                    Some(message) => Wanted::no("Reconciled", "SecretsForbidden", message.clone()),
                },
            ],
            generation,
            k8s_openapi::jiff::Timestamp::now(),
        );
        if let Some(message) = &secrets_forbidden
            && !crate::conditions::is_false_with(&previous.conditions, "Reconciled", message)
        {
            ctx.event(self, true, "SecretsForbidden", message.clone()).await;
        }
        if previous.observed_generation != generation {
            ctx.event(self, false, "Applied", format!("installation applied (generation {})", generation.unwrap_or(0)))
                .await;
        }
        let status = MicroDashStatus {
            observed_generation: generation,
            conditions,
            api_ready_replicas: api_ready,
            worker_ready_replicas: worker_ready,
            agent_ready_nodes: agent_ready,
            url: Some(self.url()),
            admin_token_secret: Some(names.admin_secret),
        };
        let installs: Api<MicroDash> = Api::namespaced(client.clone(), &namespace);
        update_status(&installs, &self.name_any(), self.status.as_ref(), &status).await?;
        // Owned objects trigger a reconcile when they change; the resync is a safety net.
        Ok(Action::requeue(std::time::Duration::from_secs(300)))
    }
}

/// The manifest users apply by hand, compiled in: the operator renders the same hardened pod.
const AGENT_MANIFEST: &str = include_str!("../../../deploy/agent-daemonset.yaml");

/// The DaemonSet document of [`AGENT_MANIFEST`].
fn hardened_agent_daemon_set() -> DaemonSet {
    serde_saphyr::from_multiple::<serde_json::Value>(AGENT_MANIFEST)
        .expect("deploy/agent-daemonset.yaml is YAML")
        .into_iter()
        .find(|doc| doc["kind"] == "DaemonSet")
        .map(|doc| serde_json::from_value(doc).expect("deploy/agent-daemonset.yaml has a valid DaemonSet"))
        .expect("deploy/agent-daemonset.yaml has a DaemonSet")
}

/// `repo/microdash:tag` → `repo/microdash-agent:tag`.
pub fn agent_image_of(image: &str) -> String {
    let (name, tag) = match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (image, None),
    };
    match tag {
        Some(tag) => format!("{name}-agent:{tag}"),
        None => format!("{name}-agent"),
    }
}

fn new_admin_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Server-side apply of one owned object; answers the object as stored.
async fn apply<K>(client: &Client, namespace: &str, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = obj.meta().name.clone().expect("owned objects are named");
    let mut value = serde_json::to_value(obj).expect("serializes");
    value["apiVersion"] = json!(K::api_version(&()));
    value["kind"] = json!(K::kind(&()));
    Ok(api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&value)).await?)
}

/// Server-side apply of the pod-discovery ClusterRoleBinding. The API server lets the operator
/// write it because the operator may `bind` its ClusterRole (RBAC's escalation check), not
/// because the operator holds its rights.
async fn apply_binding(client: &Client, binding: &ClusterRoleBinding) -> Result<()> {
    let api: Api<ClusterRoleBinding> = Api::all(client.clone());
    let name = binding.metadata.name.clone().expect("named");
    let mut value = serde_json::to_value(binding).expect("serializes");
    value["apiVersion"] = json!("rbac.authorization.k8s.io/v1");
    value["kind"] = json!("ClusterRoleBinding");
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&value)).await?;
    Ok(())
}

async fn remove<K>(client: &Client, namespace: &str, name: &str) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::verifier;

    /// A MicroDash as the API server would hand it over (uid and generation set).
    fn install(spec: serde_json::Value) -> MicroDash {
        serde_json::from_value(json!({
            "apiVersion": "microdash.io/v1alpha1", "kind": "MicroDash",
            "metadata": {"name": "md", "namespace": "ns", "uid": "uid-1", "generation": 3},
            "spec": spec,
        }))
        .unwrap()
    }

    /// Mocked API server: the reconcile of a single-process installation without agent makes
    /// exactly these calls, in this order, and every apply is a forced server-side apply by
    /// `microdash-operator` carrying the owner reference.
    #[tokio::test]
    async fn a_single_process_installation_makes_exactly_these_calls() {
        let (ctx, verifier) = verifier::mocked(crate::context::ServerSource::Discover);
        let md = install(json!({"image": "microdash:1", "agent": {"enabled": false}}));
        let stored = md.clone();
        let calls = verifier.serve(move |call| match (call.method.as_str(), call.path.as_str()) {
            ("GET", "/api/v1/namespaces/ns/secrets/md-admin-token") => verifier::not_found(),
            ("DELETE", _) => verifier::not_found(),
            (_, p) if p.ends_with("/status") => verifier::ok(&stored),
            _ => verifier::echo(call),
        });
        let action = md.apply(&ctx).await.unwrap();
        assert_eq!(action, Action::requeue(std::time::Duration::from_secs(300)));
        drop(ctx);
        let calls = calls.await.unwrap();
        for call in calls.iter().filter(|c| c.method == "PATCH") {
            assert!(
                call.query.contains("fieldManager=microdash-operator") && call.query.contains("force=true"),
                "{}",
                call.query
            );
            if !call.path.ends_with("/status") {
                assert_eq!(call.body["metadata"]["ownerReferences"][0]["uid"], "uid-1", "{}", call.path);
                assert_eq!(call.body["metadata"]["ownerReferences"][0]["controller"], true);
            }
        }
        assert_eq!(
            calls.iter().map(verifier::Call::line).collect::<Vec<_>>(),
            [
                "GET /api/v1/namespaces/ns/secrets/md-admin-token",
                "PATCH /api/v1/namespaces/ns/secrets/md-admin-token",
                "PATCH /api/v1/namespaces/ns/configmaps/md-config",
                "PATCH /api/v1/namespaces/ns/persistentvolumeclaims/md-data",
                "PATCH /apis/apps/v1/namespaces/ns/deployments/md-api",
                "PATCH /api/v1/namespaces/ns/services/md-api",
                "DELETE /apis/apps/v1/namespaces/ns/deployments/md-worker",
                "DELETE /api/v1/namespaces/ns/serviceaccounts/md-agent",
                "DELETE /apis/apps/v1/namespaces/ns/daemonsets/md-agent",
                "POST /apis/events.k8s.io/v1/namespaces/ns/events",
                "PATCH /apis/microdash.io/v1alpha1/namespaces/ns/microdashes/md/status",
            ]
        );
    }

    /// The embedded SQLite installation keeps `/data` on a claim by default and replaces its
    /// one Pod with `Recreate`; an external database needs neither unless asked for.
    #[test]
    fn embedded_sqlite_lives_on_a_claim_and_is_recreated() {
        let md = install(json!({"image": "microdash:1", "storage": {"size": "5Gi", "storageClassName": "fast"}}));
        let claim = md.data_claim().expect("on by default without an external database");
        let spec = claim.spec.unwrap();
        assert_eq!(spec.access_modes.unwrap(), ["ReadWriteOnce"]);
        assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"], Quantity("5Gi".into()));
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        let api = md.api_deployment().spec;
        assert_eq!(api.strategy.unwrap().type_.as_deref(), Some("Recreate"));
        let pod = api.template.spec.unwrap();
        let volume = &pod.volumes.unwrap()[0];
        assert_eq!(volume.persistent_volume_claim.as_ref().unwrap().claim_name, "md-data");
        assert_eq!(pod.security_context.unwrap().fs_group, Some(65532));

        let external = install(json!({"image": "microdash:1", "databaseUrlSecretRef": {"name": "db", "key": "url"}}));
        assert!(external.data_claim().is_none());
        let api = external.api_deployment().spec;
        assert!(api.strategy.is_none(), "rolling updates with an external database");
        assert!(api.template.spec.unwrap().volumes.unwrap()[0].empty_dir.is_some());
        let off = install(json!({"image": "microdash:1", "storage": {"enabled": false}}));
        assert!(off.data_claim().is_none());
        assert_eq!(
            install(json!({"image": "microdash:1"}))
                .data_claim()
                .unwrap()
                .spec
                .unwrap()
                .resources
                .unwrap()
                .requests
                .unwrap()["storage"],
            Quantity("1Gi".into())
        );
    }

    /// URLs with credentials (database, Redis, external MQTT broker) reach the Pods from their
    /// Secrets; the ConfigMap holds none of them (issue 19, item 5).
    #[test]
    fn urls_from_secrets_never_land_in_the_config_map() {
        let md = install(json!({
            "image": "microdash:1", "worker": {"replicas": 1},
            "databaseUrlSecretRef": {"name": "db", "key": "url"},
            "redisUrlSecretRef": {"name": "redis", "key": "url"},
            "mqtt": {"urlSecretRef": {"name": "broker", "key": "url"}}
        }));
        let data = md.config_map().data.unwrap();
        for key in ["MICRODASH_DATABASE_URL", "MICRODASH_REDIS_URL", "MICRODASH_MQTT_URL"] {
            assert!(!data.contains_key(key), "{key} is not in the ConfigMap: {data:?}");
        }
        assert_eq!(data["MICRODASH_MQTT_LISTEN"], "off", "an external broker turns the embedded one off");
        let pod = md.api_deployment().spec.template.spec.unwrap();
        let env = pod.containers[0].env.clone().unwrap();
        for (key, secret) in
            [("MICRODASH_DATABASE_URL", "db"), ("MICRODASH_REDIS_URL", "redis"), ("MICRODASH_MQTT_URL", "broker")]
        {
            let var = env.iter().find(|e| e.name == key).unwrap_or_else(|| panic!("{key} in the env"));
            let from = var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
            assert_eq!((from.name.as_str(), from.key.as_str(), var.value.as_deref()), (secret, "url", None));
        }
        assert!(pod.containers[0].ports.as_ref().unwrap().iter().all(|p| p.name.as_deref() != Some("mqtt")));
        assert_eq!(md.api_role(), "api", "Redis from a Secret is distributed mode too");
    }

    fn env_of(daemon_set: &DaemonSet) -> Vec<EnvVar> {
        daemon_set.spec.template.spec.as_ref().unwrap().containers[0].env.clone().unwrap()
    }

    /// The hardening of deploy/agent-daemonset.yaml, whatever pod discovery says.
    fn assert_hardened(daemon_set: &DaemonSet) {
        let pod = daemon_set.spec.template.spec.as_ref().unwrap();
        let security = pod.security_context.as_ref().unwrap();
        assert_eq!((security.run_as_non_root, security.run_as_user), (Some(true), Some(65534)));
        assert_eq!(security.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let container = pod.containers[0].security_context.as_ref().unwrap();
        assert_eq!(container.read_only_root_filesystem, Some(true));
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(container.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!((pod.host_pid, pod.host_network), (Some(true), Some(true)));
    }

    /// Issue 22 item 3: pod discovery is on by default. The agents run as `<name>-agent` with
    /// its token mounted (the account itself does not mount it for other pods), learn their node
    /// from the downward API, and the account is bound to the configured ClusterRole.
    #[test]
    fn pod_discovery_is_on_by_default_with_its_own_account_token_and_node() {
        let md = install(
            json!({"image": "microdash:1", "agent": {"enabled": true, "tokenSecretRef": {"name": "t", "key": "token"}}}),
        );
        assert!(md.spec.agent.pod_discovery);
        let daemon_set = md.agent_daemon_set().unwrap();
        assert_hardened(&daemon_set);
        let pod = daemon_set.spec.template.spec.clone().unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("md-agent"));
        assert_eq!(pod.automount_service_account_token, Some(true));
        let env = env_of(&daemon_set);
        let node = env.iter().find(|e| e.name == "MICRODASH_AGENT_KUBE_NODE").expect("the node's name");
        assert_eq!(node.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path, "spec.nodeName");

        let account = md.agent_service_account().unwrap();
        assert_eq!(account.metadata.name.as_deref(), Some("md-agent"));
        assert_eq!(account.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(account.metadata.owner_references.unwrap()[0].uid, "uid-1", "deleted with the MicroDash");
        assert_eq!(account.automount_service_account_token, Some(false));

        let binding = md.agent_cluster_role_binding("role-x").unwrap();
        assert_eq!(binding.metadata.name.as_deref(), Some("microdash-agent:ns:md"));
        assert!(binding.metadata.owner_references.is_none(), "cluster-scoped: no namespaced owner");
        assert_eq!(binding.metadata.labels.unwrap()["microdash.io/namespace"], "ns");
        assert_eq!(
            (binding.role_ref.api_group.as_deref(), binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()),
            (Some("rbac.authorization.k8s.io"), "ClusterRole", "role-x")
        );
        let subjects = binding.subjects.unwrap();
        assert_eq!(subjects.len(), 1);
        assert_eq!(
            (subjects[0].kind.as_str(), subjects[0].name.as_str(), subjects[0].namespace.as_deref()),
            ("ServiceAccount", "md-agent", Some("ns"))
        );
    }

    /// `podDiscovery: false`: the default ServiceAccount, no token, no node, no account and no
    /// binding; and nothing of it without the agent.
    #[test]
    fn pod_discovery_off_mounts_no_token() {
        let md = install(json!({"image": "microdash:1", "agent": {"enabled": true, "podDiscovery": false,
            "tokenSecretRef": {"name": "t", "key": "token"}}}));
        let daemon_set = md.agent_daemon_set().unwrap();
        assert_hardened(&daemon_set);
        let pod = daemon_set.spec.template.spec.clone().unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("default"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert!(env_of(&daemon_set).iter().all(|e| e.name != "MICRODASH_AGENT_KUBE_NODE"));
        assert!(md.agent_service_account().is_none());
        assert!(md.agent_cluster_role_binding("role-x").is_none());

        let disabled = install(json!({"image": "microdash:1"}));
        assert!(disabled.spec.agent.pod_discovery, "the default stays on for when the agent is enabled");
        assert!(disabled.agent_daemon_set().is_none());
        assert!(disabled.agent_service_account().is_none());
        assert!(disabled.agent_cluster_role_binding("role-x").is_none());
    }

    /// Mocked API server: with the agent, the ServiceAccount and its ClusterRoleBinding are
    /// applied before the DaemonSet; an API server that refuses the binding (the operator may
    /// not bind the role) leaves the rest applied and says so in `AgentReady`.
    #[tokio::test]
    async fn the_account_and_binding_come_before_the_daemon_set_and_a_refused_binding_is_reported() {
        for refuse in [false, true] {
            let (ctx, verifier) = verifier::mocked(crate::context::ServerSource::Discover);
            let md = install(json!({"image": "microdash:1",
                "agent": {"enabled": true, "tokenSecretRef": {"name": "t", "key": "token"}}}));
            let stored = md.clone();
            let calls = verifier.serve(move |call| match (call.method.as_str(), call.path.as_str()) {
                ("GET", "/api/v1/namespaces/ns/secrets/md-admin-token") => verifier::not_found(),
                ("GET", "/api/v1/namespaces/ns") => verifier::ok(&json!({"metadata": {"name": "ns"}})),
                ("DELETE", _) => verifier::not_found(),
                ("PATCH", p) if refuse && p.contains("clusterrolebindings") => {
                    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                        "code": 403, "message": "forbidden: user may not bind"});
                    http::Response::builder()
                        .status(403)
                        .body(kube::client::Body::from(serde_json::to_vec(&status).unwrap()))
                        .unwrap()
                }
                (_, p) if p.ends_with("/status") => verifier::ok(&stored),
                _ => verifier::echo(call),
            });
            md.apply(&ctx).await.unwrap();
            drop(ctx);
            let calls = calls.await.unwrap();
            let lines: Vec<String> = calls.iter().map(verifier::Call::line).collect();
            let at =
                |line: &str| lines.iter().position(|l| l == line).unwrap_or_else(|| panic!("{line} in {lines:#?}"));
            let account = at("PATCH /api/v1/namespaces/ns/serviceaccounts/md-agent");
            let binding = at("PATCH /apis/rbac.authorization.k8s.io/v1/clusterrolebindings/microdash-agent:ns:md");
            let daemon_set = at("PATCH /apis/apps/v1/namespaces/ns/daemonsets/md-agent");
            assert!(account < binding && binding < daemon_set, "{lines:#?}");
            let body = &calls[binding].body;
            assert_eq!(body["roleRef"]["name"], crate::context::DEFAULT_AGENT_CLUSTER_ROLE);
            assert!(calls[binding].query.contains("fieldManager=microdash-operator"));
            let status = calls.iter().rev().find(|c| c.path.ends_with("/status")).unwrap();
            let agent_ready = status.body["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "AgentReady")
                .unwrap()
                .clone();
            if refuse {
                assert_eq!(agent_ready["reason"], "PodDiscoveryForbidden", "{agent_ready}");
                assert!(agent_ready["message"].as_str().unwrap().contains("podDiscovery: false"), "{agent_ready}");
            } else {
                assert_eq!(agent_ready["reason"], "NodesNotReady", "{agent_ready}");
            }
        }
    }

    #[test]
    fn the_agent_image_sits_beside_the_server_image() {
        assert_eq!(agent_image_of("microdash:0.1.0"), "microdash-agent:0.1.0");
        assert_eq!(agent_image_of("registry:5000/x/microdash:v1"), "registry:5000/x/microdash-agent:v1");
        assert_eq!(agent_image_of("registry:5000/microdash"), "registry:5000/microdash-agent");
    }
}
