//! The Helm chart: `helm lint` and `helm template` pass, the rendered manifests (CRDs
//! included) and the examples are accepted by the real API server with `--dry-run=server`,
//! and the RBAC stays least-privilege.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;

fn run(command: &mut Command, stdin: Option<&str>) -> String {
    let mut child = command
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{command:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn helm_template(namespace: &str, extra: &[&str]) -> String {
    run(
        Command::new(kube_bin("helm"))
            .args(["template", "microdash"])
            .arg(chart_dir())
            .args(["--namespace", namespace, "--include-crds"])
            .args(extra),
        None,
    )
}

fn kubectl() -> Command {
    let mut command = Command::new(kube_bin("kubectl"));
    command.arg("--kubeconfig").arg(kubeconfig_path());
    command
}

#[test]
fn helm_lint_passes() {
    let out = run(Command::new(kube_bin("helm")).arg("lint").arg(chart_dir()).arg("--strict"), None);
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[tokio::test]
async fn the_rendered_chart_and_the_examples_apply_to_the_api_server() {
    let client = client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "chart").await;

    for extra in [
        &[][..],
        &["--set", "server.url=http://md-api:8080", "--set", "server.adminTokenSecret.name=md-admin-token"][..],
    ] {
        let rendered = helm_template(&ns, extra);
        for kind in [
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "Role",
            "Deployment",
            "Service",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ] {
            assert!(rendered.contains(&format!("kind: {kind}")), "{kind} not rendered");
        }
        let out = run(kubectl().args(["apply", "--dry-run=server", "-f", "-"]), Some(&rendered));
        assert!(out.contains("deployment.apps/microdash-operator created (server dry run)"), "{out}");
        assert!(
            out.contains("validatingadmissionpolicy.admissionregistration.k8s.io/microdash-tenant-namespaces"),
            "{out}"
        );
    }

    // The examples use namespace `microdash`.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt("microdash").await.unwrap().is_none() {
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": "microdash"}})).unwrap();
        namespaces.create(&PostParams::default(), &ns).await.unwrap();
    }
    let out = run(kubectl().args(["apply", "--dry-run=server", "-f"]).arg(chart_dir().join("examples")), None);
    for object in [
        "microdash.microdash.io/microdash",
        "tenant.microdash.io/team-a",
        "alertrule.microdash.io/high-cpu",
        "notificationchannel.microdash.io/ops-mail",
    ] {
        assert!(out.contains(object), "{object} not applied: {out}");
    }
}

#[test]
fn the_operator_rbac_has_no_wildcards_and_no_pod_access() {
    let rendered = helm_template("microdash", &[]);
    let rbac: String = rendered
        .split("\n---")
        .filter(|doc| doc.contains("kind: ClusterRole\n") || doc.contains("kind: Role\n"))
        // Only the rules: the comments explain what is left out.
        .flat_map(|doc| doc.lines().filter(|l| !l.trim_start().starts_with('#')).map(|l| format!("{l}\n")))
        .collect();
    assert!(!rbac.is_empty());
    assert!(!rbac.contains('*'), "wildcards in RBAC:\n{rbac}");
    for forbidden in ["pods", "exec", "escalate", "bind", "impersonate", "nodes"] {
        assert!(!rbac.contains(forbidden), "RBAC mentions {forbidden}:\n{rbac}");
    }
}
