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
use crate::server::ServerApi;

/// The field manager of everything the operator writes with server-side apply.
pub const MANAGER: &str = "microdash-operator";

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
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        server: ServerSource,
        metrics: Arc<Metrics>,
        resync: Duration,
        watch_namespace: Option<String>,
    ) -> Arc<Context> {
        let reporter = Reporter { controller: MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
        let recorder = Recorder::new(client.clone(), reporter);
        Arc::new(Context { client, server, recorder, metrics, resync, watch_namespace, failures: Mutex::default() })
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

    /// The server to talk to, found anew each time in discovery mode (the Secret may rotate).
    pub async fn server(&self) -> Result<ServerApi> {
        match &self.server {
            ServerSource::Fixed(api) => Ok(api.clone()),
            ServerSource::Discover => {
                let installs: Api<MicroDash> = Api::all(self.client.clone());
                let list = installs.list(&Default::default()).await?;
                let install = list
                    .items
                    .iter()
                    .find(|m| m.status.as_ref().is_some_and(|s| s.url.is_some()))
                    .ok_or_else(|| Error::NoServer("no MicroDash resource has an API yet".into()))?;
                let status = install.status.as_ref().expect("checked above");
                let namespace = install.namespace().unwrap_or_default();
                let secret_name = status.admin_token_secret.clone().unwrap_or_default();
                let token = read_secret_key(&self.client, &namespace, &secret_name, "token").await?;
                Ok(ServerApi::new(status.url.clone().expect("checked above"), token))
            }
        }
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
