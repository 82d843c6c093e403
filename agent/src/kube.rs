//! Pod discovery on Kubernetes (`--kube-node`): the DaemonSet agent lists the pods of its own
//! node through the API server (`fieldSelector=spec.nodeName=<node>`, so the API server does
//! the filtering and the agent's memory does not grow with the cluster) and scrapes those
//! annotated the usual way:
//!
//! - `prometheus.io/scrape: "true"` — required;
//! - `prometheus.io/port` — the port (else the pod's first declared container port);
//! - `prometheus.io/path` — default `/metrics`;
//! - `prometheus.io/scheme` — `http` (default) or `https`.
//!
//! Only running pods with an IP are scraped. Their samples get `namespace`, `pod` and
//! `container` (the container that declares the port, when one does). The service account
//! needs `get`/`list` on `pods` and nothing else (the ClusterRole of the Helm chart and of
//! deploy/agent-daemonset.yaml). Plain HTTPS requests and a few serde structs instead of a
//! Kubernetes client: the agent's memory budget is 8 MiB.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::scrape::Target;

/// The in-cluster service account's token and CA, mounted by the kubelet.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// How often the pod list is fetched again.
pub const REFRESH: Duration = Duration::from_secs(30);

/// Where the API server is and how to authenticate to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeConfig {
    /// The node whose pods are scraped (`spec.nodeName`, from the downward API).
    pub node: String,
    pub api: reqwest::Url,
    /// Read again at every refresh: projected service account tokens rotate.
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
}

impl KubeConfig {
    /// `api`: `--kube-api`, else `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`.
    pub fn resolve(
        node: String,
        api: Option<String>,
        token_file: Option<PathBuf>,
        ca_file: Option<PathBuf>,
    ) -> Result<Self> {
        let api = match api {
            Some(api) => api,
            None => match (std::env::var("KUBERNETES_SERVICE_HOST"), std::env::var("KUBERNETES_SERVICE_PORT")) {
                (Ok(host), Ok(port)) if host.contains(':') => format!("https://[{host}]:{port}"),
                (Ok(host), Ok(port)) => format!("https://{host}:{port}"),
                _ => {
                    return Err(Error::config(
                        "--kube-node needs --kube-api (or KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, set in a pod)",
                    ));
                }
            },
        };
        let api = reqwest::Url::parse(&api)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| Error::config(format!("--kube-api `{api}`: expected https://host:port")))?;
        Ok(Self {
            node,
            api,
            token_file: token_file.unwrap_or_else(|| Path::new(SERVICE_ACCOUNT_DIR).join("token")),
            ca_file: ca_file.unwrap_or_else(|| Path::new(SERVICE_ACCOUNT_DIR).join("ca.crt")),
        })
    }
}

/// Lists the node's pods every [`REFRESH`] and turns the annotated ones into targets.
pub struct Discovery {
    config: KubeConfig,
    http: reqwest::Client,
    targets: Vec<Target>,
    fetched_at: Option<Instant>,
    /// The last error logged, so a lasting one is logged once.
    last_error: Option<String>,
}

impl Discovery {
    pub fn new(config: KubeConfig) -> Result<Self> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if config.api.scheme() == "https" {
            builder = builder.tls_built_in_root_certs(false);
            for cert in crate::sink::tls::read_ca_file(&config.ca_file)
                .map_err(|e| Error::config(format!("--kube-ca-file: {e}")))?
            {
                let cert = reqwest::Certificate::from_der(&cert)
                    .map_err(|e| Error::config(format!("--kube-ca-file {}: {e}", config.ca_file.display())))?;
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self { config, http: builder.build()?, targets: Vec::new(), fetched_at: None, last_error: None })
    }

    /// The current targets, listing the pods again when the list is older than [`REFRESH`].
    /// When the API server cannot be reached, the last list stays in use.
    pub async fn targets(&mut self) -> &[Target] {
        if self.fetched_at.is_none_or(|at| at.elapsed() >= REFRESH) {
            self.fetched_at = Some(Instant::now());
            match self.list().await {
                Ok(targets) => {
                    if targets != self.targets || self.last_error.is_some() {
                        let urls: Vec<&str> = targets.iter().map(|t| t.url.as_str()).collect();
                        info!(node = %self.config.node, targets = ?urls, "Pods to scrape.");
                    }
                    self.targets = targets;
                    self.last_error = None;
                }
                Err(error) => {
                    if self.last_error.as_ref() != Some(&error) {
                        warn!(%error, node = %self.config.node, "Cannot list the node's pods; keeping the last list.");
                    }
                    self.last_error = Some(error);
                }
            }
        }
        &self.targets
    }

    async fn list(&self) -> Result<Vec<Target>, String> {
        let token = std::fs::read_to_string(&self.config.token_file)
            .map_err(|e| format!("{}: {e}", self.config.token_file.display()))?;
        let mut url = self.config.api.join("api/v1/pods").map_err(|e| e.to_string())?;
        url.query_pairs_mut().append_pair("fieldSelector", &format!("spec.nodeName={}", self.config.node));
        let response = self.http.get(url).bearer_auth(token.trim()).send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("listing pods: {status}: {}", body.chars().take(300).collect::<String>()));
        }
        let pods: PodList = response.json().await.map_err(|e| format!("listing pods: {e}"))?;
        Ok(targets_of(&pods))
    }
}

#[derive(Debug, Deserialize)]
pub struct PodList {
    #[serde(default)]
    pub items: Vec<Pod>,
}

#[derive(Debug, Deserialize)]
pub struct Pod {
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: Spec,
    #[serde(default)]
    pub status: Status,
}

#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Spec {
    #[serde(default)]
    pub containers: Vec<Container>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Container {
    pub name: String,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub container_port: u16,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default)]
    pub phase: String,
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
}

/// The scrape targets among `pods`, sorted by URL.
pub fn targets_of(pods: &PodList) -> Vec<Target> {
    let mut targets: Vec<Target> = pods.items.iter().filter_map(target_of).collect();
    targets.sort_by(|a, b| a.url.as_str().cmp(b.url.as_str()));
    targets
}

fn target_of(pod: &Pod) -> Option<Target> {
    let annotation = |key: &str| pod.metadata.annotations.get(&format!("prometheus.io/{key}")).map(String::as_str);
    if annotation("scrape") != Some("true") || pod.status.phase != "Running" {
        return None;
    }
    let ip = pod.status.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
    let declared = pod.spec.containers.iter().flat_map(|c| c.ports.iter().map(move |p| (c, p.container_port)));
    let port = match annotation("port") {
        Some(port) => port.parse::<u16>().ok()?,
        None => declared.clone().next()?.1,
    };
    let container = declared.clone().find(|(_, p)| *p == port).map(|(c, _)| c.name.clone());
    let scheme = match annotation("scheme") {
        Some("https") => "https",
        _ => "http",
    };
    let path = annotation("path").unwrap_or("/metrics");
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_owned() };
    let url = reqwest::Url::parse(&format!("{scheme}://{host}:{port}{path}")).ok()?;
    let mut labels = BTreeMap::from([
        ("namespace".to_owned(), pod.metadata.namespace.clone()),
        ("pod".to_owned(), pod.metadata.name.clone()),
    ]);
    if let Some(container) = container {
        labels.insert("container".to_owned(), container);
    }
    Some(Target { url, labels })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(json: serde_json::Value) -> PodList {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn annotated_running_pods_become_targets_with_their_labels() {
        let list = pods(serde_json::json!({"items": [
            {"metadata": {"name": "web-0", "namespace": "shop",
                          "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9102",
                                          "prometheus.io/path": "stats"}},
             "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 8080}]},
                                     {"name": "exporter", "ports": [{"containerPort": 9102}]}]},
             "status": {"phase": "Running", "podIP": "10.1.0.7"}},
            {"metadata": {"name": "db-0", "namespace": "shop", "annotations": {"prometheus.io/scrape": "true"}},
             "spec": {"containers": [{"name": "db", "ports": [{"containerPort": 9187}]}]},
             "status": {"phase": "Running", "podIP": "fd00::5"}},
            {"metadata": {"name": "not-annotated", "namespace": "shop"},
             "spec": {"containers": [{"name": "x", "ports": [{"containerPort": 80}]}]},
             "status": {"phase": "Running", "podIP": "10.1.0.8"}},
            {"metadata": {"name": "pending", "namespace": "shop", "annotations": {"prometheus.io/scrape": "true"}},
             "spec": {"containers": [{"name": "x", "ports": [{"containerPort": 80}]}]},
             "status": {"phase": "Pending"}},
            {"metadata": {"name": "opted-out", "namespace": "shop", "annotations": {"prometheus.io/scrape": "false"}},
             "status": {"phase": "Running", "podIP": "10.1.0.9"}}
        ]}));
        let targets = targets_of(&list);
        let urls: Vec<&str> = targets.iter().map(|t| t.url.as_str()).collect();
        assert_eq!(urls, ["http://10.1.0.7:9102/stats", "http://[fd00::5]:9187/metrics"]);
        assert_eq!(
            targets[0].labels,
            BTreeMap::from([
                ("namespace".into(), "shop".into()),
                ("pod".into(), "web-0".into()),
                ("container".into(), "exporter".into())
            ])
        );
        assert_eq!(targets[1].labels["container"], "db");
        assert_eq!(targets[1].instance(), "[fd00::5]:9187");
    }

    #[test]
    fn the_api_server_url_is_checked() {
        let err = KubeConfig::resolve("n".into(), Some("localhost:6443".into()), None, None).unwrap_err().to_string();
        assert!(err.contains("--kube-api"), "{err}");
        let ok = KubeConfig::resolve("n".into(), Some("https://127.0.0.1:6443".into()), None, None).unwrap();
        assert_eq!(ok.token_file, Path::new(SERVICE_ACCOUNT_DIR).join("token"));
    }
}
