//! Pod discovery against the real kube-apiserver of the test services
//! (`MICRODASH_TEST_KUBECONFIG`): deploy/agent-daemonset.yaml's pod-discovery ClusterRole bound to a
//! service account, whose token the agent uses to list the pods of its node. Of the pods in the
//! API, only the annotated, running one on the agent's node is scraped — its "IP" is
//! 127.0.0.1, where Debian's node_exporter listens — and its samples carry `namespace`, `pod`
//! and `container`. (There is no kubelet here: the test writes the pod's status itself.)

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::NodeExporter;
use serde_json::{Value, json};

const MANIFEST: &str = include_str!("../../deploy/agent-daemonset.yaml");

struct Kube {
    api: String,
    ca_file: PathBuf,
    http: reqwest::Client,
    admin_token: String,
}

impl Kube {
    fn from_env() -> Kube {
        let path = std::env::var("MICRODASH_TEST_KUBECONFIG").expect(
            "MICRODASH_TEST_KUBECONFIG is not set: this test needs the kube-apiserver of `scripts/services.sh start`",
        );
        let config: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let api = config["clusters"][0]["cluster"]["server"].as_str().unwrap().to_owned();
        let admin_token = config["users"][0]["user"]["token"].as_str().unwrap().to_owned();
        // The serving certificate kube-apiserver made for itself, with its self-signed CA.
        let ca_file = PathBuf::from(&path).parent().unwrap().join("certs/apiserver.crt");
        let pem = std::fs::read(&ca_file).unwrap();
        let mut http = reqwest::Client::builder().tls_built_in_root_certs(false);
        for cert in reqwest::Certificate::from_pem_bundle(&pem).unwrap() {
            http = http.add_root_certificate(cert);
        }
        Kube { api, ca_file, http: http.build().unwrap(), admin_token }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>, content_type: &str) -> Value {
        let mut request =
            self.http.request(method.clone(), format!("{}{path}", self.api)).bearer_auth(&self.admin_token);
        if let Some(body) = body {
            request = request.header("content-type", content_type).body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success() || status == 409, "{method} {path}: {status} {body}");
        body
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, Some(body), "application/json").await
    }

    async fn delete(&self, path: &str) {
        let _ = self.http.delete(format!("{}{path}", self.api)).bearer_auth(&self.admin_token).send().await;
    }

    /// A pod as the scheduler and kubelet would leave it: bound to `node`, running at `ip`.
    async fn running_pod(&self, namespace: &str, name: &str, node: &str, annotations: Value, port: u16) {
        self.post(
            &format!("/api/v1/namespaces/{namespace}/pods"),
            json!({"metadata": {"name": name, "annotations": annotations},
                   "spec": {"nodeName": node, "containers": [
                       {"name": "app", "image": "example/app", "ports": [{"containerPort": 8080}]},
                       {"name": "exporter", "image": "example/exporter", "ports": [{"containerPort": port}]}]}}),
        )
        .await;
        self.send(
            reqwest::Method::PATCH,
            &format!("/api/v1/namespaces/{namespace}/pods/{name}/status"),
            Some(json!({"status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}})),
            "application/merge-patch+json",
        )
        .await;
    }
}

#[tokio::test]
async fn the_agent_scrapes_the_annotated_pods_of_its_node_with_a_least_privilege_token() {
    let kube = Kube::from_env();
    let suffix = std::process::id();
    let namespace = format!("agent-discovery-{suffix}");
    let (node, other_node) = (format!("node-a-{suffix}"), format!("node-b-{suffix}"));
    kube.post("/api/v1/namespaces", json!({"metadata": {"name": namespace}})).await;

    // The shipped ClusterRole, bound to a service account of this namespace.
    let docs: Vec<Value> = serde_saphyr::from_multiple(MANIFEST).unwrap();
    let mut role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap().clone();
    let role_name = format!("microdash-agent-pod-discovery-{suffix}");
    role["metadata"]["name"] = json!(role_name);
    kube.post("/apis/rbac.authorization.k8s.io/v1/clusterroles", role).await;
    let mut binding = docs.iter().find(|d| d["kind"] == "ClusterRoleBinding").unwrap().clone();
    binding["metadata"]["name"] = json!(role_name);
    binding["roleRef"]["name"] = json!(role_name);
    binding["subjects"][0]["namespace"] = json!(namespace);
    kube.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding).await;
    kube.post(
        &format!("/api/v1/namespaces/{namespace}/serviceaccounts"),
        json!({"metadata": {"name": "microdash-agent"}}),
    )
    .await;
    let token = kube
        .post(
            &format!("/api/v1/namespaces/{namespace}/serviceaccounts/microdash-agent/token"),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}}),
        )
        .await["status"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).unwrap();

    // Least privilege: that token lists pods and reads no secret.
    let secrets = kube
        .http
        .get(format!("{}/api/v1/namespaces/{namespace}/secrets", kube.api))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(secrets.status(), 403);

    let exporter = NodeExporter::start();
    let annotated = json!({"prometheus.io/scrape": "true", "prometheus.io/port": exporter.port.to_string()});
    kube.running_pod(&namespace, "web-0", &node, annotated.clone(), exporter.port).await;
    kube.running_pod(&namespace, "elsewhere-0", &other_node, annotated, exporter.port).await;
    kube.running_pod(&namespace, "quiet-0", &node, json!({}), exporter.port).await;

    let args = [
        "--once",
        "--host-label",
        "kube-test",
        "--kube-node",
        &node,
        "--kube-api",
        &kube.api,
        "--kube-token-file",
        token_file.to_str().unwrap(),
        "--kube-ca-file",
        kube.ca_file.to_str().unwrap(),
    ];
    // node_exporter may take a moment to listen.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let samples = loop {
        let out = Command::new(common::AGENT_BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let body: Value = serde_json::from_slice(&out.stdout).unwrap();
        let samples = body["samples"].as_array().unwrap().clone();
        let up = samples.iter().find(|s| s["metric"] == "scrape.up").map(|s| s["value"].clone());
        if up == Some(json!(1.0)) {
            break samples;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "web-0 never scraped: {up:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let scraped: Vec<&Value> = samples.iter().filter(|s| s["labels"].get("pod").is_some()).collect();
    let pods: std::collections::BTreeSet<&str> = scraped.iter().map(|s| s["labels"]["pod"].as_str().unwrap()).collect();
    assert_eq!(pods, ["web-0"].into(), "only the annotated pod of this node");
    let load = scraped.iter().find(|s| s["metric"] == "node_load1").expect("node_exporter's node_load1");
    assert_eq!(load["labels"]["namespace"], namespace.as_str());
    assert_eq!(load["labels"]["container"], "exporter", "the container that declares the port");
    assert_eq!(load["labels"]["instance"], format!("127.0.0.1:{}", exporter.port));
    assert_eq!(load["labels"]["host"], "kube-test");

    kube.delete(&format!("/api/v1/namespaces/{namespace}")).await;
    kube.delete(&format!("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{role_name}")).await;
    kube.delete(&format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/{role_name}")).await;
}
