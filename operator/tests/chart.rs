//! The Helm chart: `helm lint` and `helm template` pass, the rendered manifests (CRDs
//! included) and the examples are accepted by the real API server with `--dry-run=server`,
//! and the RBAC stays least-privilege.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use microdash_operator::resources::Tenant;
use std::time::Duration;

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
        "silence.microdash.io/db-1-disk-swap",
    ] {
        assert!(out.contains(object), "{object} not applied: {out}");
    }
}

#[test]
fn the_operator_rbac_has_no_wildcards_and_no_pod_access() {
    let rendered = helm_template("microdash", &[]);
    // Only the rules: the comments explain what is left out.
    let rules = |doc: &str| -> String {
        doc.lines().filter(|l| !l.trim_start().starts_with('#')).map(|l| format!("{l}\n")).collect()
    };
    let roles: Vec<&str> = rendered
        .split("\n---")
        .filter(|doc| doc.contains("kind: ClusterRole\n") || doc.contains("kind: Role\n"))
        .collect();
    let (agent, operator): (Vec<&str>, Vec<&str>) =
        roles.into_iter().partition(|doc| doc.contains("name: microdash-agent-pod-discovery\n"));
    let rbac: String = operator.iter().map(|doc| rules(doc)).collect();
    assert!(!rbac.is_empty());
    assert!(!rbac.contains('*'), "wildcards in RBAC:\n{rbac}");
    for forbidden in ["pods", "exec", "escalate", "impersonate", "nodes"] {
        assert!(!rbac.contains(forbidden), "RBAC mentions {forbidden}:\n{rbac}");
    }
    // `bind` once, of the agents' ClusterRole alone.
    assert_eq!(rbac.matches("\"bind\"").count(), 1, "{rbac}");
    assert!(
        rbac.contains(
            "resources: [\"clusterroles\"]\n    resourceNames: [\"microdash-agent-pod-discovery\"]\n    verbs: [\"bind\"]"
        ),
        "{rbac}"
    );
    // The agents' role: get and list of pods, nothing else.
    let [agent] = agent[..] else { panic!("one agent ClusterRole: {agent:?}") };
    let agent = rules(agent);
    let agent_rules = &agent[agent.find("rules:").unwrap()..];
    assert_eq!(
        agent_rules.trim(),
        "rules:\n  - apiGroups: [\"\"]\n    resources: [\"pods\"]\n    verbs: [\"get\", \"list\"]",
        "{agent}"
    );
    // The operator is told which role it binds.
    assert!(rendered.contains(
        "- name: MICRODASH_OPERATOR_AGENT_CLUSTER_ROLE\n              value: \"microdash-agent-pod-discovery\""
    ));
}

/// The documented RBAC table of README.md (between the `rbac-table` markers) as the resource
/// names `kubectl auth can-i --list` prints (`deployments.apps`, `alertrules.microdash.io/status`,
/// `secrets`), each with its verbs, for a namespace that is the release's, one of
/// `rbac.secretNamespaces`, or another.
fn documented_permissions(release_namespace: bool, secret_namespace: bool) -> BTreeMap<String, BTreeSet<String>> {
    let readme = std::fs::read_to_string(chart_dir().join("../../README.md")).unwrap();
    let start = readme.find("<!-- rbac-table").expect("README.md has the rbac-table markers");
    let end = readme.find("<!-- /rbac-table -->").expect("README.md closes the rbac table");
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in readme[start..end].lines().filter(|l| l.starts_with("| ") && !l.starts_with("| API group")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let [group, resources, place, verbs] = cells[..] else { panic!("a row of four cells: {row}") };
        let applies = match place {
            "cluster" => true,
            "release namespace" => release_namespace,
            "release namespace, `rbac.secretNamespaces`" => release_namespace || secret_namespace,
            other => panic!("unknown place {other:?} in {row}"),
        };
        if !applies {
            continue;
        }
        for resource in resources.split(", ") {
            // "namespaces (the Pod Security label)": the words in brackets explain.
            let resource = resource.split(" (").next().unwrap();
            let (name, sub) = resource.split_once('/').map_or((resource, None), |(n, s)| (n, Some(s)));
            let mut key = if group == "core" { name.to_string() } else { format!("{name}.{group}") };
            if let Some(sub) = sub {
                key = format!("{key}/{sub}");
            }
            want.entry(key).or_default().extend(verbs.split(' ').map(String::from));
        }
    }
    want
}

/// `kubectl auth can-i --list` as `user` in `namespace`: resource → verbs. Left out: the
/// non-resource URLs and what every authenticated user may do (the `system:basic-user` and
/// `system:discovery` ClusterRoles: self-reviews, reading cluster trust bundles).
fn effective_permissions(user: &str, namespace: &str) -> BTreeMap<String, BTreeSet<String>> {
    const EVERYONE: [&str; 4] = [
        "selfsubjectreviews.authentication.k8s.io",
        "selfsubjectaccessreviews.authorization.k8s.io",
        "selfsubjectrulesreviews.authorization.k8s.io",
        "clustertrustbundles.certificates.k8s.io",
    ];
    let out = run(kubectl().args(["auth", "can-i", "--list", "--as", user, "-n", namespace]), None);
    let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in out.lines().skip(1).filter(|l| !l.starts_with(' ')) {
        let resource = line.split_whitespace().next().unwrap();
        if EVERYONE.contains(&resource) {
            continue;
        }
        let verbs = &line[line.rfind('[').unwrap() + 1..line.rfind(']').unwrap()];
        got.entry(resource.to_string()).or_default().extend(verbs.split(' ').map(String::from));
    }
    got
}

/// Issue 19 item 4: what the chart's RBAC lets the operator do, asked of the real API server
/// (RBAC authorization on), is the table in README.md, namespace by namespace; no Secret outside
/// the release namespace and `rbac.secretNamespaces`.
#[tokio::test]
async fn the_operators_effective_permissions_are_the_documented_table() {
    let client = client().await;
    install_crds(&client).await;
    let release_ns = namespace(&client, "rbac").await;
    let team_ns = namespace(&client, "rbac-team").await;
    let other_ns = namespace(&client, "rbac-other").await;
    // The release is named after its namespace, so its cluster-wide names are this test's own.
    let rendered = run(
        Command::new(kube_bin("helm")).args(["template", &release_ns]).arg(chart_dir()).args([
            "--namespace",
            &release_ns,
            "--set",
            &format!("rbac.secretNamespaces={{{team_ns}}}"),
        ]),
        None,
    );
    // Only the identity and its RBAC: no operator runs here.
    let kinds = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];
    let rbac: Vec<&str> =
        rendered.split("\n---").filter(|doc| kinds.iter().any(|k| doc.contains(&format!("kind: {k}\n")))).collect();
    let rbac = rbac.join("\n---");
    run(kubectl().args(["apply", "-f", "-"]), Some(&rbac));
    let account = rbac
        .split("\n---")
        .find(|doc| doc.contains("kind: ServiceAccount\n"))
        .and_then(|doc| doc.lines().find_map(|l| l.strip_prefix("  name: ")))
        .expect("the chart renders a ServiceAccount");
    let user = format!("system:serviceaccount:{release_ns}:{account}");

    for (namespace, release, secrets) in [(&release_ns, true, true), (&team_ns, false, true), (&other_ns, false, false)]
    {
        let got = effective_permissions(&user, namespace);
        let want = documented_permissions(release, secrets);
        assert_eq!(got, want, "the operator's permissions in {namespace} differ from README.md's table");
    }
    assert!(!effective_permissions(&user, &other_ns).contains_key("secrets"), "Secrets outside the listed namespaces");
    let agent_role = rendered
        .lines()
        .find_map(|l| l.strip_prefix("  name: ").filter(|n| n.ends_with("-agent-pod-discovery")))
        .expect("the chart renders the agents' ClusterRole")
        .to_string();
    let listed = run(kubectl().args(["auth", "can-i", "--list", "--as", &user]), None);
    let bind = listed.lines().find(|l| l.starts_with("clusterroles.rbac.authorization.k8s.io")).unwrap();
    assert!(
        bind.contains(&format!("[{agent_role}]")) && bind.trim_end().ends_with("[bind]"),
        "bind of one role only: {bind}"
    );

    // No escalation (issue 22 item 3): as the operator, a binding of an agent ServiceAccount to
    // the agents' role is accepted; to any other role RBAC refuses it, as the operator neither
    // holds that role's rights nor may bind it: `cluster-admin`, and a copy of the agents' role
    // under another name (the same get and list of pods).
    let copy = format!("{agent_role}-copy");
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let mut role = roles.get(&agent_role).await.unwrap();
    role.metadata = ObjectMeta { name: Some(copy.clone()), ..Default::default() };
    roles.create(&PostParams::default(), &role).await.unwrap();
    let operator = client_as(&user).await;
    let bindings: Api<ClusterRoleBinding> = Api::all(operator.clone());
    let binding = |name: &str, role: &str| -> ClusterRoleBinding {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "md-agent", "namespace": &team_ns}]
        }))
        .unwrap()
    };
    let apply = PatchParams::apply("microdash-operator").force();
    let allowed = format!("microdash-agent:{team_ns}:md");
    bindings.patch(&allowed, &apply, &Patch::Apply(binding(&allowed, &agent_role))).await.unwrap();
    for other in ["cluster-admin", copy.as_str()] {
        let refused = format!("microdash-agent:{team_ns}:{other}");
        let err = bindings.patch(&refused, &apply, &Patch::Apply(binding(&refused, other))).await.unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(status) if status.code == 403 && status.message.contains("attempting to grant RBAC permissions not currently held")),
            "binding to {other}: {err}"
        );
    }
    roles.delete(&copy, &Default::default()).await.unwrap();
    // The operator may not delete a binding (nor the one it made).
    let err = bindings.delete(&allowed, &Default::default()).await.unwrap_err();
    assert!(matches!(&err, kube::Error::Api(status) if status.code == 403), "{err}");
    Api::<ClusterRoleBinding>::all(client.clone()).delete(&allowed, &Default::default()).await.unwrap();

    // The operator acting as that ServiceAccount: a Tenant whose token goes to a listed
    // namespace is Ready; one whose token would go elsewhere says what to change, and no token
    // is made for it.
    let server = Microdash::start();
    let _team = start_operator(&operator, &team_ns, fixed(&server), Duration::from_millis(500));
    let _other = start_operator(&operator, &other_ns, fixed(&server), Duration::from_millis(500));
    let tenants: Api<Tenant> = Api::all(client.clone());
    for ns in [&team_ns, &other_ns] {
        let tenant: Tenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "microdash.io/v1alpha1", "kind": "Tenant", "metadata": {"name": ns},
            "spec": {"tokenSecret": {"namespace": ns}}
        }))
        .unwrap();
        tenants.create(&PostParams::default(), &tenant).await.unwrap();
    }
    let ready = |name: String| {
        let tenants = tenants.clone();
        async move {
            let status = serde_json::to_value(tenants.get(&name).await.unwrap().status).unwrap();
            condition(&status, "Ready").ok_or(status.to_string())
        }
    };
    let (_, reason, _) = eventually(Duration::from_secs(30), "the team Tenant Ready", || async {
        ready(team_ns.clone()).await.and_then(|c| if c.0 == "True" { Ok(c) } else { Err(format!("{c:?}")) })
    })
    .await;
    assert_eq!(reason, "Ready");
    let (_, reason, message) = eventually(Duration::from_secs(30), "the other Tenant refused", || async {
        ready(other_ns.clone()).await.and_then(|c| if c.0 == "False" { Ok(c) } else { Err(format!("{c:?}")) })
    })
    .await;
    assert_eq!(reason, "SecretsForbidden");
    assert!(message.contains(&format!("add {other_ns} to the chart's rbac.secretNamespaces")), "{message}");
    let r = server.admin(reqwest::Method::GET, &format!("/api/v1/tenants/{other_ns}")).send().await.unwrap();
    assert_eq!(r.status(), 404, "a tenant whose token has nowhere to go is not made");
    for ns in [&team_ns, &other_ns] {
        tenants.delete(ns, &Default::default()).await.unwrap();
    }
    eventually(Duration::from_secs(30), "both Tenants deleted", || async {
        let team_left = tenants.get_opt(&team_ns).await.unwrap().is_some();
        let other_left = tenants.get_opt(&other_ns).await.unwrap().is_some();
        if !team_left && !other_left { Ok(()) } else { Err(format!("team {team_left}, other {other_left}")) }
    })
    .await;
    run(kubectl().args(["delete", "--ignore-not-found", "-f", "-"]), Some(&rbac));
}
