//! `microdash-operator --release-finalizers`: the chart's `pre-delete` hook. Once the operator is
//! uninstalled nothing removes its finalizer `microdash.io/cleanup`, so deleting an AlertRule, a
//! NotificationChannel, a Silence or a Tenant afterwards (or the namespace holding them) would hang in
//! Terminating. Before helm deletes the operator this stops it (scales its Deployment to zero and
//! waits for its pods to go, so that no reconcile puts a finalizer back) and removes the finalizer
//! from every object it watches. Nothing is deleted, in Kubernetes or in the server; an operator
//! installed again adds its finalizers back at its first reconcile.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::controllers::FINALIZER;
use crate::resources::{AlertRule, NotificationChannel, Silence, Tenant};

/// How long the operator's pods get to end.
const STOP_TIMEOUT: Duration = Duration::from_secs(90);

/// Stops the operator's Deployment `deployment` in `namespace`, then releases the finalizers of
/// the objects in `watch_namespace` (all namespaces when `None`; Tenants only then). Answers
/// what it did, a line per step.
pub async fn release_finalizers(
    client: Client,
    namespace: &str,
    deployment: &str,
    watch_namespace: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let mut said = Vec::new();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    if deployments.get_opt(deployment).await?.is_some() {
        deployments.patch(deployment, &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 0}}))).await?;
        let started = Instant::now();
        loop {
            let status = deployments.get(deployment).await?.status.unwrap_or_default();
            let left = status.replicas.unwrap_or(0) + status.terminating_replicas.unwrap_or(0);
            if left == 0 {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < STOP_TIMEOUT,
                "deployment {namespace}/{deployment} still has {left} pod(s) after {STOP_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        said.push(format!("stopped deployment {namespace}/{deployment}"));
    } else {
        said.push(format!("deployment {namespace}/{deployment} not found; releasing anyway"));
    }
    // A second pass catches a finalizer that a reconcile still under way put back.
    for pass in 0..2 {
        if pass > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let released = release::<AlertRule>(&client, watch_namespace).await?
            + release::<NotificationChannel>(&client, watch_namespace).await?
            + release::<Silence>(&client, watch_namespace).await?
            + match watch_namespace {
                None => release_tenants(&client).await?,
                Some(_) => 0,
            };
        if pass == 0 || released > 0 {
            said.push(format!("released the finalizer {FINALIZER} of {released} object(s)"));
        }
    }
    Ok(said)
}

/// Removes [`FINALIZER`] from every object of kind `K` in `namespace` (all when `None`) that
/// has it; other finalizers stay.
async fn release<K>(client: &Client, namespace: Option<&str>) -> anyhow::Result<usize>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let list = match namespace {
        Some(namespace) => Api::<K>::namespaced(client.clone(), namespace),
        None => Api::<K>::all(client.clone()),
    };
    let mut released = 0;
    for obj in list.list(&ListParams::default()).await? {
        let api = Api::<K>::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
        released += usize::from(unset(&api, &obj).await?);
    }
    Ok(released)
}

async fn release_tenants(client: &Client) -> anyhow::Result<usize> {
    let api: Api<Tenant> = Api::all(client.clone());
    let mut released = 0;
    for tenant in api.list(&ListParams::default()).await? {
        released += usize::from(unset(&api, &tenant).await?);
    }
    Ok(released)
}

/// Removes [`FINALIZER`] from `obj`; false when it did not have it.
async fn unset<K>(api: &Api<K>, obj: &K) -> anyhow::Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    if !obj.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(false);
    }
    let kept: Vec<&String> = obj.finalizers().iter().filter(|f| *f != FINALIZER).collect();
    // Tied to the version read, so a concurrent change is not overwritten.
    let patch = json!({"metadata": {"finalizers": kept, "resourceVersion": obj.resource_version()}});
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(true)
}
