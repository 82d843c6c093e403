//! What every reconciler shares: the Kubernetes client, the way to the microdash server,
//! the event recorder, metrics, and per-object failure counts for backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::error::{Error, Result, backoff};
use crate::metrics::Metrics;
use crate::resources::MicroDash;
use crate::resources::tenant::InstallationRef;
use crate::server::ServerApi;

/// The field manager of everything the operator writes with server-side apply.
pub const MANAGER: &str = "microdash-operator";

/// The agents' pod-discovery ClusterRole of deploy/agent-daemonset.yaml (and of the chart
/// installed as release `microdash`).
pub const DEFAULT_AGENT_CLUSTER_ROLE: &str = "microdash-agent-pod-discovery";

/// How the operator finds the microdash server.
#[derive(Clone, Debug)]
pub enum ServerSource {
    /// A URL and admin token given by flags or environment.
    Fixed(ServerApi),
    /// The installation made by a `MicroDash` resource: its api Service and admin-token Secret.
    Discover,
}

pub struct Context {
    pub client: Client,
    pub server: ServerSource,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// How often synced objects are read again from the server (state, drift).
    pub resync: Duration,
    /// Watch namespaced resources in this namespace only; `None` = every namespace.
    pub watch_namespace: Option<String>,
    /// How long a deleted object waits for an unreachable server before it lets go (and says
    /// in an Event what may be left on the server).
    pub cleanup_timeout: Duration,
    /// The ClusterRole the agents of `MicroDash` installations are bound to for pod discovery
    /// (get and list on pods; the chart ships it, the operator may only `bind` that one).
    pub agent_cluster_role: String,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        server: ServerSource,
        metrics: Arc<Metrics>,
        resync: Duration,
        watch_namespace: Option<String>,
        cleanup_timeout: Duration,
        agent_cluster_role: String,
    ) -> Arc<Context> {
        let reporter = Reporter { controller: MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
        let recorder = Recorder::new(client.clone(), reporter);
        Arc::new(Context {
            client,
            server,
            recorder,
            metrics,
            resync,
            watch_namespace,
            cleanup_timeout,
            agent_cluster_role,
            failures: Mutex::default(),
        })
    }

    /// The API of a namespaced kind, limited to the watched namespace when there is one.
    pub fn watched<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match &self.watch_namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        }
    }

    /// The server of the installation `wanted` (a Tenant's `spec.installation`; `None` = the
    /// only one), found anew each time in discovery mode (the Secret may rotate), and how
    /// statuses name it. An operator given a server always answers that one.
    pub async fn server_for(&self, wanted: Option<&InstallationRef>) -> Result<Target> {
        let installs: Api<MicroDash> = match &self.server {
            ServerSource::Fixed(api) => return Ok(Target { api: api.clone(), installation: api.base().to_string() }),
            ServerSource::Discover => Api::all(self.client.clone()),
        };
        let list = installs.list(&Default::default()).await?;
        let id = |m: &MicroDash| format!("{}/{}", m.namespace().unwrap_or_default(), m.name_any());
        let install = match wanted {
            Some(r) => {
                let wanted_id = format!("{}/{}", r.namespace, r.name);
                list.items.iter().find(|m| id(m) == wanted_id).ok_or_else(|| {
                    Error::Installation(format!("the installation (MicroDash) {wanted_id} does not exist"))
                })?
            }
            None => {
                let serving: Vec<&MicroDash> =
                    list.items.iter().filter(|m| m.status.as_ref().is_some_and(|s| s.url.is_some())).collect();
                match serving.as_slice() {
                    [] => return Err(Error::NoServer("no MicroDash resource has an API yet".into())),
                    [one] => *one,
                    several => {
                        let names: Vec<String> = several.iter().map(|m| id(m)).collect();
                        return Err(Error::Installation(format!(
                            "{} installations ({}): name one in the Tenant's spec.installation",
                            names.len(),
                            names.join(", ")
                        )));
                    }
                }
            }
        };
        if install.metadata.deletion_timestamp.is_some() {
            return Err(Error::Installation(format!("the installation (MicroDash) {} is being deleted", id(install))));
        }
        let status = install.status.as_ref();
        let url = status
            .and_then(|s| s.url.clone())
            .ok_or_else(|| Error::NoServer(format!("MicroDash {} has no API yet", id(install))))?;
        let secret_name = status.and_then(|s| s.admin_token_secret.clone()).unwrap_or_default();
        let token =
            read_secret_key(&self.client, &install.namespace().unwrap_or_default(), &secret_name, "token").await?;
        Ok(Target { api: ServerApi::new(url, token), installation: id(install) })
    }

    /// The server of the installation a status names (`namespace/name`; `None` = the only one):
    /// where an object was synced, to take it away from there.
    pub async fn server_at(&self, installation: Option<&str>) -> Result<Target> {
        let wanted = installation
            .filter(|i| !i.contains("://"))
            .and_then(|i| i.split_once('/'))
            .map(|(namespace, name)| InstallationRef { namespace: namespace.into(), name: name.into() });
        self.server_for(wanted.as_ref()).await
    }

    /// Counts a failure of `key` and answers how long to wait before the next try.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("not poisoned");
        let count = failures.entry(key.to_string()).or_insert(0);
        let wait = backoff(*count);
        *count = count.saturating_add(1);
        wait
    }

    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("not poisoned").remove(key);
    }

    /// Publishes a Kubernetes Event about `obj`; a failure to publish is logged, not fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, warning: bool, reason: &str, note: String) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "Could not publish an Event.");
        }
    }
}

/// A server to talk to, and how statuses name its installation.
#[derive(Clone, Debug)]
pub struct Target {
    pub api: ServerApi,
    /// `namespace/name` of the `MicroDash`, or the server's URL when the operator was given one.
    pub installation: String,
}

/// One key of a Secret, as text.
pub async fn read_secret_key(client: &Client, namespace: &str, name: &str, key: &str) -> Result<String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get_opt(name).await?.ok_or_else(|| Error::Secret(format!("{namespace}/{name} not found")))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(key)).map(|s| s.clone().into_bytes()))
        .ok_or_else(|| Error::Secret(format!("{namespace}/{name} has no key {key:?}")))?;
    String::from_utf8(bytes)
        .map(|s| s.trim_end_matches('\n').to_string())
        .map_err(|_| Error::Secret(format!("{namespace}/{name} key {key:?} is not UTF-8 text")))
}

/// Writes the status only when it differs from what the object has: every status write is a
/// watch event that triggers another reconcile, so an unchanged status must not be written.
pub async fn update_status<K, S>(api: &Api<K>, name: &str, previous: Option<&S>, status: &S) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: PartialEq + serde::Serialize,
{
    if previous == Some(status) {
        return Ok(());
    }
    patch_status(api, name, json!(status)).await
}

/// A server-side apply patch of the status subresource.
pub async fn patch_status<K>(api: &Api<K>, name: &str, status: serde_json::Value) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(name, &kube::api::PatchParams::apply(MANAGER).force(), &kube::api::Patch::Apply(&patch)).await?;
    Ok(())
}
