//! What the operator's integration tests share: a client of the real kube-apiserver started
//! by the test command (`MICRODASH_TEST_KUBECONFIG`), the CRDs installed, a real `microdash
//! serve` on 127.0.0.1:0, and the operator's controllers running in the test's runtime.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Config};
use microdash_operator::context::{Context, ServerSource};
use microdash_operator::metrics::Metrics;
use microdash_operator::server::ServerApi;

pub const ADMIN_TOKEN: &str = "operator-test-admin-token-0123456789";

/// The Helm chart's folder.
pub fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/microdash")
}

/// The kubeconfig of the test control plane; a missing one fails the test and names the fix.
pub fn kubeconfig_path() -> PathBuf {
    match std::env::var("MICRODASH_TEST_KUBECONFIG") {
        Ok(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "MICRODASH_TEST_KUBECONFIG is not set: these tests need a real kube-apiserver. Run them through \
             `scripts/test.sh`, or `eval \"$(scripts/services.sh start)\"` first (it builds etcd, kube-apiserver \
             and kubectl from Go modules with scripts/kube-tools.sh and starts them on loopback)."
        ),
    }
}

/// Folder of kubectl and helm (`MICRODASH_TEST_KUBE_BIN`, printed by scripts/services.sh start).
pub fn kube_bin(tool: &str) -> PathBuf {
    let dir = std::env::var("MICRODASH_TEST_KUBE_BIN").unwrap_or_else(|_| {
        panic!("MICRODASH_TEST_KUBE_BIN is not set: run `eval \"$(scripts/services.sh start)\"` (or scripts/test.sh)")
    });
    let path = PathBuf::from(dir).join(tool);
    assert!(path.exists(), "{} is missing: run scripts/kube-tools.sh", path.display());
    path
}

pub async fn client() -> Client {
    Client::try_from(config().await).unwrap()
}

/// A client that acts as `user` (impersonation), e.g. the chart's ServiceAccount, so that what
/// the API server allows is that user's RBAC.
pub async fn client_as(user: &str) -> Client {
    let mut config = config().await;
    config.auth_info.impersonate = Some(user.to_string());
    Client::try_from(config).unwrap()
}

async fn config() -> Config {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap()
}

/// Applies the generated CRDs (server-side apply, as `kubectl apply --server-side` would) and
/// waits until the API server serves them.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in microdash_operator::resources::all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(&name, &PatchParams::apply("microdash-operator-tests").force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("the API server refused CRD {name}: {e}"));
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} was not established within 30s"))
        .unwrap();
    }
}

/// A fresh namespace named after the test.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", std::process::id() % 100_000 + rand_suffix());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
    name
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() % 100_000
}

/// The `microdash` binary beside the test executable (built by `cargo test --workspace`),
/// checked to be newer than the server's sources.
pub fn microdash_bin() -> PathBuf {
    microdash_testkit::microdash_beside_tests()
}

/// A real `microdash serve` (the workspace's test kit) on 127.0.0.1:0 with SQLite in a
/// temporary folder and the admin token of these tests.
pub struct Microdash {
    server: microdash_testkit::Server,
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl Microdash {
    pub fn start() -> Microdash {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, "127.0.0.1:0")
    }

    fn start_in(dir: tempfile::TempDir, listen: &str) -> Microdash {
        let server = microdash_testkit::Serve::new(microdash_bin(), dir.path())
            .on(listen, None)
            .env("MICRODASH_ADMIN_TOKEN", ADMIN_TOKEN)
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        Microdash { base: server.base.clone(), server, dir }
    }

    pub fn api(&self) -> ServerApi {
        ServerApi::new(self.base.clone(), ADMIN_TOKEN)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the process (the data folder stays) and answers it, to start again later.
    pub fn stop(mut self) -> (tempfile::TempDir, String) {
        self.server.kill9();
        let listen = self.base.trim_start_matches("http://").to_string();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (dir, listen)
    }

    pub fn start_again(dir: tempfile::TempDir, listen: &str) -> Microdash {
        Self::start_in(dir, listen)
    }

    /// A request with the admin token acting on `tenant`.
    pub fn as_tenant(&self, method: reqwest::Method, path: &str, tenant: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .header(microdash_model::TENANT_HEADER, tenant)
    }

    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new().request(method, self.url(path)).bearer_auth(ADMIN_TOKEN)
    }
}

/// Starts every controller of the operator against `server`, in this test's runtime, watching
/// `namespace` only (objects that earlier tests left behind stay out of this test).
pub fn start_operator(client: &Client, namespace: &str, server: ServerSource, resync: Duration) -> Arc<Context> {
    let ctx = context(client, namespace, server, resync);
    tokio::spawn(microdash_operator::run::controllers(ctx.clone()));
    ctx
}

/// How long a deleted object of the tests' operators waits for a server that does not answer.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(3);

fn context(client: &Client, namespace: &str, server: ServerSource, resync: Duration) -> Arc<Context> {
    let metrics = Arc::new(Metrics::default());
    Context::new(
        client.clone(),
        server,
        metrics,
        resync,
        Some(namespace.to_string()),
        CLEANUP_TIMEOUT,
        microdash_operator::context::DEFAULT_AGENT_CLUSTER_ROLE.into(),
    )
}

/// Like [`start_operator`] without the MicroDash controller: the Tenant, AlertRule,
/// NotificationChannel and Silence controllers, for tests whose `MicroDash` statuses are written
/// by hand (no pods run beside this API server) to point at real servers.
pub fn start_sync_controllers(client: &Client, namespace: &str, resync: Duration) -> Arc<Context> {
    use microdash_operator::controllers;
    let ctx = context(client, namespace, ServerSource::Discover, resync);
    tokio::spawn(controllers::tenant::run(ctx.clone()));
    tokio::spawn(controllers::alert_rule::run(ctx.clone()));
    tokio::spawn(controllers::channel::run(ctx.clone()));
    tokio::spawn(controllers::silence::run(ctx.clone()));
    ctx
}

pub fn fixed(server: &Microdash) -> ServerSource {
    ServerSource::Fixed(server.api())
}

/// Polls `check` until it answers `Some`, or fails after `timeout` with `what` and the last value.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match check().await {
            Ok(value) => return value,
            Err(why) => last = why,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: not within {timeout:?}; last: {last}")
}

/// The condition of `type_` in a status value: (status, reason, message).
pub fn condition(status: &serde_json::Value, type_: &str) -> Option<(String, String, String)> {
    status["conditions"].as_array()?.iter().find(|c| c["type"] == type_).map(|c| {
        (
            c["status"].as_str().unwrap_or_default().to_string(),
            c["reason"].as_str().unwrap_or_default().to_string(),
            c["message"].as_str().unwrap_or_default().to_string(),
        )
    })
}
