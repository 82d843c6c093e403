//! The operator against a real kube-apiserver + etcd (started by the test command) and a real
//! `microdash serve`: CRDs accepted, rules synced with their live state, invalid specs reported,
//! deletion, drift, tenants and their tokens, channels with secrets, and a MicroDash installation.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use microdash_operator::resources::{AlertRule, MicroDash, NotificationChannel, Silence, Tenant};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

async fn setup(prefix: &str) -> (Client, String, Microdash) {
    let client = client().await;
    install_crds(&client).await;
    let ns = namespace(&client, prefix).await;
    (client, ns, Microdash::start())
}

fn rule(name: &str, tenant: &str, threshold: f64) -> AlertRule {
    serde_json::from_value(json!({
        "apiVersion": "microdash.io/v1alpha1", "kind": "AlertRule",
        "metadata": {"name": name},
        "spec": {"tenant": tenant, "metric": "cpu.usage", "match": {"host": "web-1"},
                 "condition": {"aggregation": "last", "op": ">", "threshold": threshold},
                 "for": "0s", "severity": "critical", "labels": {"team": "a"}}
    }))
    .unwrap()
}

fn silence(name: &str, tenant: &str, ends_at: Value) -> Silence {
    serde_json::from_value(json!({
        "apiVersion": "microdash.io/v1alpha1", "kind": "Silence",
        "metadata": {"name": name},
        "spec": {"tenant": tenant, "matchers": {"alertname": format!("{name}-rule"), "host": "web-1"},
                 "endsAt": ends_at, "comment": "replacing a disk", "createdBy": "ops@example.com"}
    }))
    .unwrap()
}

async fn status_of<K>(api: &Api<K>, name: &str) -> Value
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    serde_json::to_value(api.get(name).await.unwrap()).unwrap()["status"].clone()
}

/// Waits for a status condition; answers the whole status.
async fn until_condition<K>(api: &Api<K>, name: &str, type_: &str, want: &str) -> Value
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    eventually(WAIT, &format!("{name}: condition {type_}={want}"), || async {
        let status = status_of(api, name).await;
        match condition(&status, type_) {
            Some((s, _, _)) if s == want => Ok(status),
            _ => Err(status.to_string()),
        }
    })
    .await
}

/// Waits until the condition has this reason (a transient one may come first).
async fn until_reason<K>(api: &Api<K>, name: &str, type_: &str, want: &str) -> Value
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    eventually(WAIT, &format!("{name}: condition {type_} reason {want}"), || async {
        let status = status_of(api, name).await;
        match condition(&status, type_) {
            Some((_, reason, _)) if reason == want => Ok(status),
            _ => Err(status.to_string()),
        }
    })
    .await
}

async fn post_sample(server: &Microdash, tenant: &str, value: f64) {
    let r = server
        .as_tenant(Method::POST, "/api/v1/metrics", tenant)
        .body(json!({"metric": "cpu.usage", "value": value, "labels": {"host": "web-1"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
}

/// Waits for an Event with `reason` about the object `name` in `ns`; answers its type and note.
async fn until_event(client: &Client, ns: &str, name: &str, reason: &str) -> (String, String) {
    use k8s_openapi::api::events::v1::Event;
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    eventually(WAIT, &format!("Event {reason} about {name}"), || async {
        let list = events.list(&Default::default()).await.map_err(|e| e.to_string())?;
        let seen: Vec<String> = list
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| e.reason.clone().unwrap_or_default())
            .collect();
        list.items
            .iter()
            .find(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                    && e.reason.as_deref() == Some(reason)
            })
            .map(|e| (e.type_.clone().unwrap_or_default(), e.note.clone().unwrap_or_default()))
            .ok_or_else(|| format!("events about {name}: {seen:?}"))
    })
    .await
}

/// A Tenant named like the namespace and bound to it (its token Secret is there) and to `also`,
/// made in the server by the operator; answers its name.
async fn bound_tenant(client: &Client, ns: &str, also: &[&str]) -> String {
    let tenants: Api<Tenant> = Api::all(client.clone());
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "microdash.io/v1alpha1", "kind": "Tenant", "metadata": {"name": ns},
        "spec": {"tokenSecret": {"namespace": ns}, "namespaces": also}
    }))
    .unwrap();
    tenants.create(&PostParams::default(), &tenant).await.unwrap();
    ns.to_string()
}

/// The rule `ns`/`name` as the server has it (named `NAMESPACE.NAME` there).
async fn server_rule(server: &Microdash, tenant: &str, ns: &str, name: &str) -> (u16, Value) {
    let r = server.as_tenant(Method::GET, &format!("/api/v1/rules/{ns}.{name}"), tenant).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_generated_crds_are_accepted_and_served_by_the_api_server() {
    let client = client().await;
    install_crds(&client).await;
    // Served: a typed list works for each kind, and a rule without a tenant is refused by the CEL rule.
    let ns = namespace(&client, "crds").await;
    Api::<MicroDash>::namespaced(client.clone(), &ns).list(&Default::default()).await.unwrap();
    Api::<Tenant>::all(client.clone()).list(&Default::default()).await.unwrap();
    Api::<NotificationChannel>::namespaced(client.clone(), &ns).list(&Default::default()).await.unwrap();
    let rules: Api<AlertRule> = Api::namespaced(client.clone(), &ns);
    let mut no_tenant = rule("no-tenant", "default", 1.0);
    no_tenant.spec.rule.tenant = None;
    let err = rules.create(&PostParams::default(), &no_tenant).await.unwrap_err().to_string();
    assert!(err.contains("spec.tenant is required"), "{err}");
    let mut no_window = rule("no-window", "default", 1.0);
    no_window.spec.rule.condition.aggregation = microdash_model::Aggregation::Avg;
    let err = rules.create(&PostParams::default(), &no_window).await.unwrap_err().to_string();
    assert!(err.contains("condition.window is required"), "{err}");
    let channels: Api<NotificationChannel> = Api::namespaced(client.clone(), &ns);
    let both: NotificationChannel = serde_json::from_value(json!({
        "apiVersion": "microdash.io/v1alpha1", "kind": "NotificationChannel", "metadata": {"name": "both"},
        "spec": {"tenant": "default", "webhook": {"url": "http://x"},
                 "email": {"to": ["a@b"], "from": "c@d", "smtp": {"host": "h"}}}
    }))
    .unwrap();
    let err = channels.create(&PostParams::default(), &both).await.unwrap_err().to_string();
    assert!(err.contains("exactly one of webhook and email"), "{err}");
    // A silence needs its tenant and a matcher; its times are an integer or a string.
    let silences: Api<Silence> = Api::namespaced(client.clone(), &ns);
    let mut no_tenant = silence("no-tenant", "default", json!("now+1h"));
    no_tenant.spec.silence.tenant = None;
    let err = silences.create(&PostParams::default(), &no_tenant).await.unwrap_err().to_string();
    assert!(err.contains("spec.tenant is required"), "{err}");
    let mut everything = silence("everything", "default", json!(1_900_000_000_000i64));
    everything.spec.silence.matchers.clear();
    let err = silences.create(&PostParams::default(), &everything).await.unwrap_err().to_string();
    assert!(err.contains("at least one matcher"), "{err}");
    let in_ms = silence("in-ms", "default", json!(1_900_000_000_000i64));
    silences.create(&PostParams { dry_run: true, ..Default::default() }, &in_ms).await.unwrap();
}

#[tokio::test]
async fn an_alert_rule_syncs_is_accepted_then_fires_and_deleting_removes_it() {
    let (client, ns, server) = setup("rule").await;
    let _ctx = start_operator(&client, &ns, fixed(&server), Duration::from_millis(500));
    let tenant = bound_tenant(&client, &ns, &[]).await;
    let rules: Api<AlertRule> = Api::namespaced(client.clone(), &ns);
    rules.create(&PostParams::default(), &rule("high-cpu", &tenant, 90.0)).await.unwrap();

    let status = until_condition(&rules, "high-cpu", "Accepted", "True").await;
    assert_eq!(status["state"], "OK", "{status}");
    assert_eq!(status["observedGeneration"], 1);
    let (code, in_server) = server_rule(&server, &tenant, &ns, "high-cpu").await;
    assert_eq!(code, 200);
    assert_eq!(in_server["condition"]["threshold"], 90.0);
    assert_eq!(in_server["labels"]["team"], "a");

    post_sample(&server, &tenant, 97.0).await;
    let status = eventually(WAIT, "state FIRING", || async {
        let s = status_of(&rules, "high-cpu").await;
        if s["state"] == "FIRING" { Ok(s) } else { Err(s.to_string()) }
    })
    .await;
    assert_eq!(status["matchedSeries"], 1);
    assert_eq!(status["firingSeries"], 1);
    assert!(status["lastEvaluation"].is_string(), "{status}");
    // `kubectl describe` shows it: a Warning Event on the rule.
    let (kind, note) = until_event(&client, &ns, "high-cpu", "Firing").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains(&format!("1 of 1 series firing in tenant {tenant}")), "{note}");

    // An edit rolls out: the server gets the new threshold.
    rules
        .patch("high-cpu", &PatchParams::default(), &Patch::Merge(json!({"spec": {"condition": {"threshold": 99.0}}})))
        .await
        .unwrap();
    eventually(WAIT, "new threshold in the server", || async {
        let (_, r) = server_rule(&server, &tenant, &ns, "high-cpu").await;
        if r["condition"]["threshold"] == 99.0 { Ok(()) } else { Err(r.to_string()) }
    })
    .await;

    rules.delete("high-cpu", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "rule gone from Kubernetes and the server", || async {
        let (code, _) = server_rule(&server, &tenant, &ns, "high-cpu").await;
        let gone = rules.get_opt("high-cpu").await.unwrap().is_none();
        if code == 404 && gone { Ok(()) } else { Err(format!("server {code}, kubernetes gone: {gone}")) }
    })
    .await;
}

#[tokio::test]
async fn an_invalid_rule_reports_the_servers_reason_and_never_breaks_the_others() {
    let (client, ns, server) = setup("invalid").await;
    let _ctx = start_operator(&client, &ns, fixed(&server), Duration::from_millis(500));
    let tenant = bound_tenant(&client, &ns, &[]).await;
    let rules: Api<AlertRule> = Api::namespaced(client.clone(), &ns);
    // Passes the CRD schema (a string) but not the server: not a duration.
    let mut bad = rule("bad-for", &tenant, 1.0);
    bad.spec.rule.for_duration = Some("5 minutes".into());
    rules.create(&PostParams::default(), &bad).await.unwrap();
    rules.create(&PostParams::default(), &rule("good", &tenant, 1.0)).await.unwrap();
    // And one for a tenant that has no Tenant resource (`default` exists in the server).
    rules.create(&PostParams::default(), &rule("orphan", "default", 1.0)).await.unwrap();

    // Until the Tenant controller has made the tenant on the server the rules say TenantNotReady;
    // then the server's own reason.
    let status = until_reason(&rules, "bad-for", "Accepted", "Invalid").await;
    let (_, reason, message) = condition(&status, "Accepted").unwrap();
    assert_eq!(reason, "Invalid");
    assert!(message.contains("for") && message.contains("5 minutes"), "{message}");
    let status = until_condition(&rules, "orphan", "Accepted", "False").await;
    let (_, reason, message) = condition(&status, "Accepted").unwrap();
    assert_eq!(reason, "TenantNotFound");
    assert!(message.contains("there is no Tenant default"), "{message}");
    assert_eq!(server_rule(&server, "default", &ns, "orphan").await.0, 404, "nothing reached the server");
    until_condition(&rules, "good", "Accepted", "True").await;
    assert_eq!(server_rule(&server, &tenant, &ns, "bad-for").await.0, 404);
    assert_eq!(server_rule(&server, &tenant, &ns, "good").await.0, 200);

    // Fixing the spec makes it accepted.
    rules.patch("bad-for", &PatchParams::default(), &Patch::Merge(json!({"spec": {"for": "5m"}}))).await.unwrap();
    until_condition(&rules, "bad-for", "Accepted", "True").await;
    assert_eq!(server_rule(&server, &tenant, &ns, "bad-for").await.1["for"], "5m");
}

#[tokio::test]
async fn a_rule_changed_in_the_server_by_hand_is_restored() {
    let (client, ns, server) = setup("drift").await;
    let _ctx = start_operator(&client, &ns, fixed(&server), Duration::from_millis(500));
    let tenant = bound_tenant(&client, &ns, &[]).await;
    let rules: Api<AlertRule> = Api::namespaced(client.clone(), &ns);
    rules.create(&PostParams::default(), &rule("steady", &tenant, 50.0)).await.unwrap();
    until_condition(&rules, "steady", "Synced", "True").await;

    let by_hand = json!({"metric": "cpu.usage", "condition": {"aggregation": "last", "op": "<", "threshold": 1}});
    let r = server
        .as_tenant(Method::PUT, &format!("/api/v1/rules/{ns}.steady"), &tenant)
        .body(by_hand.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(WAIT, "the operator restores the rule", || async {
        let (_, r) = server_rule(&server, &tenant, &ns, "steady").await;
        if r["condition"]["threshold"] == 50.0 && r["condition"]["op"] == ">" { Ok(()) } else { Err(r.to_string()) }
    })
    .await;
    // Deleted by hand: created again.
    let r = server.as_tenant(Method::DELETE, &format!("/api/v1/rules/{ns}.steady"), &tenant).send().await.unwrap();
    assert_eq!(r.status(), 204);
    eventually(WAIT, "the operator creates the rule again", || async {
        let (code, _) = server_rule(&server, &tenant, &ns, "steady").await;
        if code == 200 { Ok(()) } else { Err(code.to_string()) }
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_server_is_retried_and_reported_until_it_is_back() {
    let (client, ns, server) = setup("unreachable").await;
    let (dir, listen) = server.stop();
    let api = microdash_operator::server::ServerApi::new(format!("http://{listen}"), ADMIN_TOKEN);
    let _ctx =
        start_operator(&client, &ns, microdash_operator::context::ServerSource::Fixed(api), Duration::from_millis(500));
    // Its tenant is made in the server once the server is back.
    let tenant = bound_tenant(&client, &ns, &[]).await;
    let rules: Api<AlertRule> = Api::namespaced(client.clone(), &ns);
    rules.create(&PostParams::default(), &rule("patient", &tenant, 5.0)).await.unwrap();
    let status = until_condition(&rules, "patient", "Synced", "False").await;
    assert_eq!(condition(&status, "Synced").unwrap().1, "ServerUnreachable");

    let server = Microdash::start_again(dir, &listen);
    until_condition(&rules, "patient", "Accepted", "True").await;
    assert_eq!(server_rule(&server, &tenant, &ns, "patient").await.0, 200);
}

#[tokio::test]
async fn a_tenant_gets_its_token_secret_and_exists_in_the_server_until_deleted() {
    let (client, ns, server) = setup("tenant").await;
    let _ctx = start_operator(&client, &ns, fixed(&server), Duration::from_millis(500));
    let tenants: Api<Tenant> = Api::all(client.clone());
    let name = format!("team-{}", &ns[ns.len() - 5..]);
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "microdash.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {"displayName": "Team", "retention": {"raw": "3d"}, "limits": {"samplesPerSecond": 500, "series": 40},
                 "tokenSecret": {"namespace": ns}}
    }))
    .unwrap();
    tenants.create(&PostParams::default(), &tenant).await.unwrap();
    let status = until_condition(&tenants, &name, "Ready", "True").await;
    let secret_name = format!("microdash-tenant-{name}");
    assert_eq!(status["tokenSecretName"], format!("{ns}/{secret_name}"));
    assert_eq!(status["usage"]["metrics"], 0);

    // The token in the Secret works for the tenant: it ingests and reads.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = secrets.get(&secret_name).await.unwrap();
    let token = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();
    assert_eq!(secret.metadata.owner_references.unwrap()[0].kind, "Tenant");
    let http = reqwest::Client::new();
    let r = http
        .post(server.url("/api/v1/metrics"))
        .bearer_auth(&token)
        .body(r#"{"metric":"m","value":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = server.admin(Method::GET, &format!("/api/v1/tenants/{name}")).send().await.unwrap();
    let record: Value = r.json().await.unwrap();
    assert_eq!(record["display_name"], "Team");
    assert_eq!(record["retention"]["raw_ms"], 3 * 86_400_000);
    // spec.limits reaches the server, which enforces it.
    assert_eq!(record["limits"], json!({"samples_per_second": 500, "series": 40}));
    eventually(WAIT, "usage counts the metric", || async {
        let s = status_of(&tenants, &name).await;
        if s["usage"]["metrics"] == 1 { Ok(()) } else { Err(s.to_string()) }
    })
    .await;

    // A lost Secret is written again with a fresh, working token.
    secrets.delete(&secret_name, &DeleteParams::default()).await.unwrap();
    let token2 = eventually(WAIT, "the Secret is written again", || async {
        match secrets.get_opt(&secret_name).await.unwrap() {
            Some(s) => Ok(String::from_utf8(s.data.unwrap()["token"].0.clone()).unwrap()),
            None => Err("no secret".into()),
        }
    })
    .await;
    assert_ne!(token2, token);
    let r = http.get(server.url("/api/v1/metrics")).bearer_auth(&token2).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The server loses the tenant (a restored database, a tenant deleted by hand): the operator
    // creates it again and registers the Secret's token again, so its holders keep working.
    let r = server.admin(Method::DELETE, &format!("/api/v1/tenants/{name}")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    eventually(WAIT, "the Secret's token works again", || async {
        let r = http.get(server.url("/api/v1/metrics")).bearer_auth(&token2).send().await.unwrap();
        if r.status() == 200 { Ok(()) } else { Err(r.status().to_string()) }
    })
    .await;
    // The token works once the server has it; the status is written later in the same pass.
    eventually(WAIT, "status says Reregistered", || async {
        let s = status_of(&tenants, &name).await;
        if s["tokenRepair"]["action"] == "Reregistered" { Ok(()) } else { Err(s.to_string()) }
    })
    .await;
    let held = String::from_utf8(secrets.get(&secret_name).await.unwrap().data.unwrap()["token"].0.clone()).unwrap();
    assert_eq!(held, token2, "registered again, not rotated");

    // A token the server will not take back (too weak to be one of its own) is rotated: a new
    // token in the Secret, and the status says so.
    let weak = json!({"data": {"token": "bm90LWEtdG9rZW4="}}); // base64 of "not-a-token"
    secrets.patch(&secret_name, &PatchParams::default(), &Patch::Merge(&weak)).await.unwrap();
    let token3 = eventually(WAIT, "the Secret's token rotated", || async {
        let s = secrets.get(&secret_name).await.unwrap();
        let t = String::from_utf8(s.data.unwrap()["token"].0.clone()).unwrap();
        if t != "not-a-token" && t != token2 { Ok(t) } else { Err(format!("still {t:?}")) }
    })
    .await;
    let r = http.get(server.url("/api/v1/metrics")).bearer_auth(&token3).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let status = eventually(WAIT, "status says Rotated", || async {
        let s = status_of(&tenants, &name).await;
        if s["tokenRepair"]["action"] == "Rotated" { Ok(s) } else { Err(s.to_string()) }
    })
    .await;
    assert!(status["tokenRepair"]["reason"].as_str().unwrap().contains("refused"), "{status}");
    let token2 = token3;

    tenants.delete(&name, &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "tenant gone from the server", || async {
        let r = server.admin(Method::GET, &format!("/api/v1/tenants/{name}")).send().await.unwrap();
        if r.status() == 404 { Ok(()) } else { Err(r.status().to_string()) }
    })
    .await;
    let r = http.get(server.url("/api/v1/metrics")).bearer_auth(&token2).send().await.unwrap();
    assert_eq!(r.status(), 401, "the token died with the tenant");
}

/// Issue 19, items 1 and 2: a tenant is used only from the namespaces its Tenant binds, and
/// same-named rules of two namespaces are two rules on the server.
#[tokio::test]
async fn a_tenant_is_used_only_from_the_namespaces_it_binds() {
    let (client, a, server) = setup("bind-a").await;
    let b = namespace(&client, "bind-b").await;
    let c = namespace(&client, "bind-c").await;
    // One operator per namespace, as one cluster-wide operator would act in each.
    let _ctxs: Vec<_> =
        [&a, &b, &c].iter().map(|ns| start_operator(&client, ns, fixed(&server), Duration::from_millis(500))).collect();
    let tenant = bound_tenant(&client, &a, &[&b, &c]).await;

    // The same rule name in three bound namespaces: three rules on the server. A rule's
    // channels are named in its own namespace.
    let channel: NotificationChannel = serde_json::from_value(json!({
        "apiVersion": "microdash.io/v1alpha1", "kind": "NotificationChannel", "metadata": {"name": "pager"},
        "spec": {"tenant": tenant, "webhook": {"url": "https://hooks.example/pager"}}
    }))
    .unwrap();
    let b_channels: Api<NotificationChannel> = Api::namespaced(client.clone(), &b);
    b_channels.create(&PostParams::default(), &channel).await.unwrap();
    until_condition(&b_channels, "pager", "Synced", "True").await;
    for (ns, threshold) in [(&a, 90.0), (&b, 80.0), (&c, 70.0)] {
        let mut r = rule("high-cpu", &tenant, threshold);
        if ns == &b {
            r.spec.rule.channels = vec!["pager".into()];
        }
        Api::<AlertRule>::namespaced(client.clone(), ns).create(&PostParams::default(), &r).await.unwrap();
    }
    for (ns, threshold) in [(&a, 90.0), (&b, 80.0), (&c, 70.0)] {
        let rules: Api<AlertRule> = Api::namespaced(client.clone(), ns);
        let status = until_condition(&rules, "high-cpu", "Synced", "True").await;
        let (_, _, message) = condition(&status, "Synced").unwrap();
        assert!(message.contains(&format!("rule {ns}.high-cpu of tenant {tenant}")), "{message}");
        let (code, view) = server_rule(&server, &tenant, ns, "high-cpu").await;
        assert_eq!((code, view["condition"]["threshold"].as_f64()), (200, Some(threshold)), "{ns}: {view}");
    }
    assert_eq!(server_rule(&server, &tenant, &b, "high-cpu").await.1["channels"], json!([format!("{b}.pager")]));

    // The Tenant stops binding c: c's rule leaves the server and says why; a and b keep theirs.
    let tenants: Api<Tenant> = Api::all(client.clone());
    tenants.patch(&tenant, &PatchParams::default(), &Patch::Merge(json!({"spec": {"namespaces": [b]}}))).await.unwrap();
    let c_rules: Api<AlertRule> = Api::namespaced(client.clone(), &c);
    let status = until_condition(&c_rules, "high-cpu", "Accepted", "False").await;
    let (_, reason, message) = condition(&status, "Accepted").unwrap();
    assert_eq!(reason, "NamespaceNotBound");
    assert!(message.contains(&format!("add {c} to its spec.namespaces")), "{message}");
    assert_eq!(condition(&status, "Synced").unwrap().0, "False");
    assert!(status.get("state").is_none(), "no server state for an unbound rule: {status}");
    let (kind, _) = until_event(&client, &c, "high-cpu", "NamespaceNotBound").await;
    assert_eq!(kind, "Warning");
    eventually(WAIT, "c's rule gone from the server", || async {
        let (code, _) = server_rule(&server, &tenant, &c, "high-cpu").await;
        if code == 404 { Ok(()) } else { Err(code.to_string()) }
    })
    .await;
    assert_eq!(server_rule(&server, &tenant, &a, "high-cpu").await.0, 200);
    assert_eq!(server_rule(&server, &tenant, &b, "high-cpu").await.0, 200);

    // The chart's admission policy refuses a new rule in c before it is stored (the policy
    // takes a moment to become active after it is created).
    let policy = chart_dir().join("templates/tenant-binding-policy.yaml");
    let out = std::process::Command::new(kube_bin("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args(["apply", "-f"])
        .arg(&policy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let refusal = eventually(WAIT, "the admission policy refuses a rule in an unbound namespace", || async {
        match c_rules.create(&PostParams::default(), &rule("late", &tenant, 1.0)).await {
            Err(e) if e.to_string().contains("does not bind") => Ok(e.to_string()),
            Err(e) => Err(e.to_string()),
            Ok(_) => {
                // Not active yet: take it away again and retry.
                let _ = c_rules.delete("late", &DeleteParams::default()).await;
                Err("created".into())
            }
        }
    })
    .await;
    assert!(refusal.contains(&format!("Tenant {tenant} does not bind namespace {c}")), "{refusal}");
    // A bound namespace passes it, and an unbound rule's deletion finishes.
    Api::<AlertRule>::namespaced(client.clone(), &b)
        .create(&PostParams::default(), &rule("low-cpu", &tenant, 1.0))
        .await
        .unwrap();
    c_rules.delete("high-cpu", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "the unbound rule is deleted", || async {
        if c_rules.get_opt("high-cpu").await.unwrap().is_none() { Ok(()) } else { Err("still there".into()) }
    })
    .await;
    assert_eq!(server_rule(&server, &tenant, &a, "high-cpu").await.0, 200, "another namespace's rule is untouched");
}

/// An installation as the MicroDash controller leaves it, written by hand: no pods run beside
/// this API server, so its status points at a real `microdash serve` started by the test.
async fn installation(client: &Client, ns: &str, name: &str, server: &Microdash) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-admin")}, "stringData": {"token": ADMIN_TOKEN}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let installs: Api<MicroDash> = Api::namespaced(client.clone(), ns);
    let install: MicroDash = serde_json::from_value(json!({
        "apiVersion": "microdash.io/v1alpha1", "kind": "MicroDash", "metadata": {"name": name},
        "spec": {"image": "microdash:0.1.0"}
    }))
    .unwrap();
    installs.create(&PostParams::default(), &install).await.unwrap();
    let status = json!({"status": {"url": server.base, "adminTokenSecret": format!("{name}-admin")}});
    installs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

/// Issue 19, items 3 and 6: two installations in one cluster each get only their tenants'
/// rules, statuses say where; deleting the installation first, or losing its server, does not
/// leave rules or tenants in Terminating.
#[tokio::test]
async fn two_installations_each_get_their_own_tenants_and_deletion_never_hangs() {
    let client = client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "installs").await;
    let (one, two) = (Microdash::start(), Microdash::start());
    installation(&client, &ns, "one", &one).await;
    installation(&client, &ns, "two", &two).await;
    let _ctx = start_sync_controllers(&client, &ns, Duration::from_millis(500));
    let tenants: Api<Tenant> = Api::all(client.clone());
    let rules: Api<AlertRule> = Api::namespaced(client.clone(), &ns);
    for (suffix, install) in [("1", Some("one")), ("2", Some("two")), ("3", None)] {
        let tenant: Tenant = serde_json::from_value(json!({
            "apiVersion": "microdash.io/v1alpha1", "kind": "Tenant", "metadata": {"name": format!("{ns}-{suffix}")},
            "spec": {"tokenSecret": {"namespace": ns},
                     "installation": install.map(|name| json!({"namespace": ns, "name": name}))}
        }))
        .unwrap();
        tenants.create(&PostParams::default(), &tenant).await.unwrap();
        if install.is_some() {
            let name = format!("r{suffix}");
            rules.create(&PostParams::default(), &rule(&name, &format!("{ns}-{suffix}"), 1.0)).await.unwrap();
        }
    }
    let (t1, t2, t3) = (format!("{ns}-1"), format!("{ns}-2"), format!("{ns}-3"));

    // Each tenant, and its rule, on its own installation's server only.
    for (tenant, rule_name, here, there, install) in [(&t1, "r1", &one, &two, "one"), (&t2, "r2", &two, &one, "two")] {
        let status = until_condition(&tenants, tenant, "Ready", "True").await;
        assert_eq!(status["installation"], format!("{ns}/{install}"), "{status}");
        let status = until_condition(&rules, rule_name, "Synced", "True").await;
        assert_eq!(status["installation"], format!("{ns}/{install}"), "{status}");
        assert_eq!(server_rule(here, tenant, &ns, rule_name).await.0, 200);
        let r = there.admin(Method::GET, &format!("/api/v1/tenants/{tenant}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{tenant} reached the other installation");
    }
    // With several installations, a Tenant that names none is not guessed.
    let status = until_condition(&tenants, &t3, "Ready", "False").await;
    let (_, reason, message) = condition(&status, "Ready").unwrap();
    assert_eq!(reason, "NoInstallation");
    assert!(message.contains("name one in the Tenant's spec.installation"), "{message}");

    // The MicroDash deleted first: its rule and its Tenant let go at once, and say what may be
    // left on that server.
    Api::<MicroDash>::namespaced(client.clone(), &ns).delete("two", &DeleteParams::default()).await.unwrap();
    rules.delete("r2", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "r2 deleted", || async {
        if rules.get_opt("r2").await.unwrap().is_none() { Ok(()) } else { Err("still there".into()) }
    })
    .await;
    let (kind, note) = until_event(&client, &ns, "r2", "CleanupAbandoned").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains(&format!("rule {ns}.r2 of tenant {t2} may be left there")), "{note}");
    assert!(note.contains("does not exist"), "{note}");
    tenants.delete(&t2, &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "its Tenant deleted", || async {
        if tenants.get_opt(&t2).await.unwrap().is_none() { Ok(()) } else { Err("still there".into()) }
    })
    .await;

    // A server that stops answering: the rule waits the cleanup timeout, then lets go.
    let (_dir, _listen) = one.stop();
    rules.delete("r1", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(CLEANUP_TIMEOUT / 3).await;
    assert!(rules.get_opt("r1").await.unwrap().is_some(), "gave up before the cleanup timeout");
    eventually(WAIT, "r1 deleted after the cleanup timeout", || async {
        if rules.get_opt("r1").await.unwrap().is_none() { Ok(()) } else { Err("still there".into()) }
    })
    .await;
    let (_, note) = until_event(&client, &ns, "r1", "CleanupAbandoned").await;
    assert!(note.contains("unreachable"), "{note}");
    for tenant in [&t1, &t3] {
        tenants.delete(tenant, &DeleteParams::default()).await.unwrap();
    }
    eventually(WAIT, "the other Tenants deleted", || async {
        let left = tenants.list(&Default::default()).await.unwrap();
        let left: Vec<_> = left.items.iter().map(|t| t.name_any()).filter(|n| n == &t1 || n == &t3).collect();
        if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) }
    })
    .await;
}

#[tokio::test]
async fn a_channel_takes_its_secrets_from_kubernetes_and_reports_a_missing_one() {
    let (client, ns, server) = setup("channel").await;
    let _ctx = start_operator(&client, &ns, fixed(&server), Duration::from_millis(500));
    let tenant = bound_tenant(&client, &ns, &[]).await;
    let channels: Api<NotificationChannel> = Api::namespaced(client.clone(), &ns);
    let channel: NotificationChannel = serde_json::from_value(json!({
        "apiVersion": "microdash.io/v1alpha1", "kind": "NotificationChannel", "metadata": {"name": "ops-webhook"},
        "spec": {"tenant": tenant,
                 "webhook": {"urlSecretRef": {"name": "hook", "key": "url"}, "hmacSecretRef": {"name": "hook", "key": "hmac"}},
                 "repeatInterval": "1h"}
    }))
    .unwrap();
    channels.create(&PostParams::default(), &channel).await.unwrap();
    let status = until_condition(&channels, "ops-webhook", "Accepted", "False").await;
    let (_, reason, message) = condition(&status, "Accepted").unwrap();
    assert_eq!(reason, "SecretNotFound");
    assert!(message.contains("hook"), "{message}");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "hook"},
        "stringData": {"url": "http://127.0.0.1:9/hook", "hmac": "s3cret"}
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    until_condition(&channels, "ops-webhook", "Accepted", "True").await;
    let r = server.as_tenant(Method::GET, &format!("/api/v1/channels/{ns}.ops-webhook"), &tenant).send().await.unwrap();
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["webhook"]["url"], "http://127.0.0.1:9/hook");
    assert_eq!(view["webhook"]["hmacSecret"], "<set>", "the secret reached the server");
    assert_eq!(view["repeatInterval"], "1h");

    // A test send fails (nothing listens on port 9): the status shows the last delivery.
    let r = server
        .as_tenant(Method::POST, &format!("/api/v1/channels/{ns}.ops-webhook/test"), &tenant)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["ok"], false);
    let status = eventually(WAIT, "last delivery in status", || async {
        let s = status_of(&channels, "ops-webhook").await;
        if s["lastDelivery"].is_object() { Ok(s) } else { Err(s.to_string()) }
    })
    .await;
    assert_eq!(status["lastDelivery"]["ok"], false, "{status}");
    let (kind, note) = until_event(&client, &ns, "ops-webhook", "DeliveryFailed").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains(&format!("tenant {tenant}")), "{note}");

    channels.delete("ops-webhook", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "channel gone from the server", || async {
        let r =
            server.as_tenant(Method::GET, &format!("/api/v1/channels/{ns}.ops-webhook"), &tenant).send().await.unwrap();
        if r.status() == 404 { Ok(()) } else { Err(r.status().to_string()) }
    })
    .await;
}

#[tokio::test]
async fn a_microdash_creates_its_objects_rolls_out_changes_and_owns_them() {
    let client = client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "install").await;
    // No server here: the MicroDash controller only writes Kubernetes objects.
    let _ctx =
        start_operator(&client, &ns, microdash_operator::context::ServerSource::Discover, Duration::from_secs(5));
    let installs: Api<MicroDash> = Api::namespaced(client.clone(), &ns);
    let install: MicroDash = serde_json::from_value(json!({
        "apiVersion": "microdash.io/v1alpha1", "kind": "MicroDash", "metadata": {"name": "md"},
        "spec": {"image": "microdash:0.1.0", "api": {"replicas": 1},
                 "outboundAllow": ["10.96.0.0/12", "192.168.7.1"],
                 "agent": {"enabled": true, "interval": "15s", "tokenSecretRef": {"name": "agent", "key": "token"}}}
    }))
    .unwrap();
    installs.create(&PostParams::default(), &install).await.unwrap();
    let status = until_condition(&installs, "md", "Reconciled", "True").await;
    assert_eq!(status["url"], format!("http://md-api.{ns}.svc:8080"));
    assert_eq!(status["adminTokenSecret"], "md-admin-token");
    // No controller-manager runs: no Pods, so not Ready.
    assert_eq!(condition(&status, "Ready").unwrap().0, "False");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let api = deployments.get("md-api").await.unwrap();
    let owner = &api.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("MicroDash", "md", Some(true)));
    let pod = api.spec.template.spec.as_ref().unwrap();
    let env = pod.containers[0].env.as_ref().unwrap();
    assert!(env.iter().any(|e| e.name == "MICRODASH_ROLE" && e.value.as_deref() == Some("all")));
    assert!(deployments.get_opt("md-worker").await.unwrap().is_none(), "no workers without Redis");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let token = secrets.get("md-admin-token").await.unwrap().data.unwrap()["token"].0.clone();
    assert!(token.len() >= 32);
    Api::<Service>::namespaced(client.clone(), &ns).get("md-api").await.unwrap();
    let config = Api::<ConfigMap>::namespaced(client.clone(), &ns).get("md-config").await.unwrap();
    let data = config.data.unwrap();
    assert_eq!(data["MICRODASH_DATABASE_URL"], "sqlite:///data/microdash.db");
    assert_eq!(data["MICRODASH_OUTBOUND_ALLOW"], "10.96.0.0/12,192.168.7.1");

    let agent = Api::<DaemonSet>::namespaced(client.clone(), &ns).get("md-agent").await.unwrap();
    let agent_pod = agent.spec.template.spec.unwrap();
    let mounts = agent_pod.containers[0].volume_mounts.clone().unwrap();
    for path in ["/host/proc", "/host/root"] {
        let mount = mounts.iter().find(|m| m.mount_path == path).unwrap();
        assert_eq!(mount.read_only, Some(true), "{path} is read-only");
    }
    assert_eq!(agent_pod.containers[0].image.as_deref(), Some("microdash-agent:0.1.0"));
    assert_eq!(agent_pod.tolerations.unwrap()[0].operator.as_deref(), Some("Exists"));

    // Pod discovery, on by default (issue 22 item 3): the agents run as their own ServiceAccount
    // with its token, know their node, and that account is bound to the agents' ClusterRole of
    // deploy/agent-daemonset.yaml, which lets it get and list pods and do nothing else.
    assert_eq!(agent_pod.service_account_name.as_deref(), Some("md-agent"));
    assert_eq!(agent_pod.automount_service_account_token, Some(true));
    let env = agent_pod.containers[0].env.clone().unwrap();
    let node = env.iter().find(|e| e.name == "MICRODASH_AGENT_KUBE_NODE").expect("the node from the downward API");
    assert_eq!(node.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path, "spec.nodeName");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let account = accounts.get("md-agent").await.unwrap();
    assert_eq!(account.metadata.owner_references.unwrap()[0].name, "md");
    let binding_name = format!("microdash-agent:{ns}:md");
    let binding = Api::<ClusterRoleBinding>::all(client.clone()).get(&binding_name).await.unwrap();
    assert_eq!(binding.role_ref.name, microdash_operator::context::DEFAULT_AGENT_CLUSTER_ROLE);
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!((subject.name.as_str(), subject.namespace.as_deref()), ("md-agent", Some(ns.as_str())));
    let manifest: Vec<Value> = serde_saphyr::from_multiple(include_str!("../../deploy/agent-daemonset.yaml")).unwrap();
    let role = manifest.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    Api::<ClusterRole>::all(client.clone())
        .patch(
            microdash_operator::context::DEFAULT_AGENT_CLUSTER_ROLE,
            &PatchParams::apply("kube-api-test").force(),
            &Patch::Apply(role),
        )
        .await
        .unwrap();
    let agent_user = format!("system:serviceaccount:{ns}:md-agent");
    for (verb, resource, allowed) in [
        ("list", "pods", true),
        ("get", "pods", true),
        ("watch", "pods", false),
        ("delete", "pods", false),
        ("list", "secrets", false),
        ("get", "nodes", false),
    ] {
        // The RBAC authorizer answers from its informers' caches: the role patched just above
        // (and the binding the operator made) reach them a moment after the writes, longer on
        // a busy machine. So each answer is awaited; a wrong grant stays wrong and still fails.
        let what = format!("{agent_user} {verb} {resource} (all namespaces) allowed={allowed}");
        eventually(WAIT, &what, || async {
            let review: SubjectAccessReview = serde_json::from_value(json!({
                "spec": {"user": &agent_user, "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}")],
                         "resourceAttributes": {"verb": verb, "resource": resource}}
            }))
            .unwrap();
            let answer =
                Api::<SubjectAccessReview>::all(client.clone()).create(&PostParams::default(), &review).await.unwrap();
            let got = answer.status.unwrap().allowed;
            if got == allowed { Ok(()) } else { Err(format!("allowed={got}")) }
        })
        .await;
    }

    // podDiscovery: false takes the token away and deletes the ServiceAccount.
    installs
        .patch("md", &PatchParams::default(), &Patch::Merge(json!({"spec": {"agent": {"podDiscovery": false}}})))
        .await
        .unwrap();
    eventually(WAIT, "the agent without token and node", || async {
        let pod = Api::<DaemonSet>::namespaced(client.clone(), &ns)
            .get("md-agent")
            .await
            .unwrap()
            .spec
            .template
            .spec
            .unwrap();
        let env = pod.containers[0].env.clone().unwrap_or_default();
        let account = accounts.get_opt("md-agent").await.unwrap();
        match (pod.automount_service_account_token, pod.service_account_name.as_deref(), account) {
            (Some(false), Some("default"), None) if env.iter().all(|e| e.name != "MICRODASH_AGENT_KUBE_NODE") => Ok(()),
            (token, name, account) => {
                Err(format!("token {token:?}, account {name:?}, ServiceAccount {}", account.is_some()))
            }
        }
    })
    .await;
    Api::<ClusterRoleBinding>::all(client.clone()).delete(&binding_name, &DeleteParams::default()).await.unwrap();

    // Changes roll out: distributed mode adds workers and switches the api role; the token stays.
    let db_secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "db"}, "stringData": {"url": "postgres://x"}})).unwrap();
    secrets.create(&PostParams::default(), &db_secret).await.unwrap();
    installs
        .patch(
            "md",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"image": "microdash:0.2.0", "redisUrl": "redis://redis:6379",
                "databaseUrlSecretRef": {"name": "db", "key": "url"}, "worker": {"replicas": 2}, "agent": {"enabled": false}}})),
        )
        .await
        .unwrap();
    eventually(WAIT, "workers and the new image", || async {
        let worker = deployments.get_opt("md-worker").await.unwrap();
        let api = deployments.get("md-api").await.unwrap();
        let image = api.spec.template.spec.unwrap().containers[0].image.clone().unwrap_or_default();
        match worker {
            Some(w) if w.spec.replicas == Some(2) && image == "microdash:0.2.0" => Ok(()),
            _ => Err(format!("api image {image}")),
        }
    })
    .await;
    eventually(WAIT, "agent DaemonSet removed", || async {
        match Api::<DaemonSet>::namespaced(client.clone(), &ns).get_opt("md-agent").await.unwrap() {
            None => Ok(()),
            Some(_) => Err("still there".into()),
        }
    })
    .await;
    assert_eq!(secrets.get("md-admin-token").await.unwrap().data.unwrap()["token"].0, token, "the admin token is kept");

    // A spec that the CEL rules refuse: workers without Redis.
    let err = installs
        .patch("md", &PatchParams::default(), &Patch::Merge(json!({"spec": {"redisUrl": null}})))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("worker replicas need redisUrl"), "{err}");
    // And a range that is not one.
    let err = installs
        .patch("md", &PatchParams::default(), &Patch::Merge(json!({"spec": {"outboundAllow": ["10.0.0.0/33"]}})))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("outboundAllow takes CIDRs"), "{err}");
    // Credentials never go inline, where they would land in a ConfigMap (issue 19, item 5).
    for (spec, says) in [
        (json!({"redisUrl": "redis://:hunter2@redis:6379"}), "redisUrl carries a password"),
        (json!({"redisUrl": "rediss://user:pw@redis:6380/0"}), "redisUrl carries a password"),
        (json!({"mqtt": {"url": "mqtts://dev:secret@broker:8883"}}), "mqtt.url carries a password"),
        (
            json!({"redisUrl": null, "redisUrlSecretRef": {"name": "r", "key": "url"}, "mqtt": {"url": "mqtt://b:1883",
            "urlSecretRef": {"name": "b", "key": "url"}}}),
            "set mqtt.url or mqtt.urlSecretRef, not both",
        ),
    ] {
        let err = installs
            .patch("md", &PatchParams::default(), &Patch::Merge(json!({"spec": spec})))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{spec}: {err}");
    }
    // The same URLs from Secrets are accepted.
    installs
        .patch(
            "md",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"redisUrl": null, "redisUrlSecretRef": {"name": "redis", "key": "url"},
                "mqtt": {"urlSecretRef": {"name": "broker", "key": "url"}}}})),
        )
        .await
        .unwrap();
}

/// The chart's pre-delete hook (`--release-finalizers`): the operator's Deployment scaled to zero,
/// then the operator's finalizer removed from every rule and channel of the namespace (others
/// kept), so that deleting them after the operator is gone does not hang. No operator runs here:
/// the finalizers are put on by hand, as a stopped operator leaves them.
#[tokio::test]
async fn releasing_finalizers_before_uninstall_lets_deletion_finish() {
    let client = client().await;
    install_crds(&client).await;
    let ns = namespace(&client, "release").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let operator: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "op"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "op"}},
                 "template": {"metadata": {"labels": {"app": "op"}},
                              "spec": {"containers": [{"name": "op", "image": "microdash-operator:dev"}]}}}
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &operator).await.unwrap();
    let rules: Api<AlertRule> = Api::namespaced(client.clone(), &ns);
    let mut held = rule("held", "team", 1.0);
    held.metadata.finalizers = Some(vec!["microdash.io/cleanup".into(), "example.com/other".into()]);
    rules.create(&PostParams::default(), &held).await.unwrap();
    let mut plain = rule("plain", "team", 1.0);
    plain.metadata.finalizers = Some(vec!["microdash.io/cleanup".into()]);
    rules.create(&PostParams::default(), &plain).await.unwrap();

    let said = microdash_operator::uninstall::release_finalizers(client.clone(), &ns, "op", Some(&ns)).await.unwrap();
    assert!(said.iter().any(|l| l == &format!("stopped deployment {ns}/op")), "{said:?}");
    assert!(said.iter().any(|l| l.contains("of 2 object(s)")), "{said:?}");
    assert_eq!(deployments.get("op").await.unwrap().spec.replicas, Some(0));
    assert_eq!(rules.get("held").await.unwrap().metadata.finalizers, Some(vec!["example.com/other".to_string()]));
    rules.delete("plain", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "the released rule is gone", || async {
        match rules.get_opt("plain").await.unwrap() {
            None => Ok(()),
            Some(r) => Err(format!("still there: {:?}", r.metadata.finalizers)),
        }
    })
    .await;
    // A second run finds nothing left to release, and no Deployment is no error.
    let said = microdash_operator::uninstall::release_finalizers(client.clone(), &ns, "gone", Some(&ns)).await.unwrap();
    assert!(
        said.iter().any(|l| l.contains("not found")) && said.iter().any(|l| l.contains("of 0 object(s)")),
        "{said:?}"
    );
}

/// The silence `ns`/`name` as the server has it (named `NAMESPACE.NAME` there).
async fn server_silence(server: &Microdash, tenant: &str, ns: &str, name: &str) -> (u16, Value) {
    let path = format!("/api/v1/silences/by-name/{ns}.{name}");
    let r = server.as_tenant(Method::GET, &path, tenant).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn ms(rfc3339: &Value) -> i64 {
    rfc3339.as_str().unwrap().parse::<k8s_openapi::jiff::Timestamp>().unwrap().as_millisecond()
}

/// Issue 23: a `Silence` becomes a named silence in its tenant that holds back the alerts it
/// matches; its relative end is resolved once per generation (resyncs do not move it), an
/// expiry by hand is undone, an edit updates the same silence, and deleting the resource
/// expires it.
#[tokio::test]
async fn a_silence_syncs_mutes_its_alerts_keeps_its_end_and_deleting_expires_it() {
    let (client, ns, server) = setup("silence").await;
    let ctx = start_operator(&client, &ns, fixed(&server), Duration::from_millis(500));
    let tenant = bound_tenant(&client, &ns, &[]).await;
    let silences: Api<Silence> = Api::namespaced(client.clone(), &ns);
    silences.create(&PostParams::default(), &silence("disk-swap", &tenant, json!("now+2h"))).await.unwrap();

    let status = until_condition(&silences, "disk-swap", "Synced", "True").await;
    assert_eq!((status["state"].as_str(), status["observedGeneration"].as_i64()), (Some("active"), Some(1)));
    let ends = ms(&status["endsAt"]);
    let ahead = ends - ms(&status["startsAt"]);
    assert!((2 * 3600 * 1000 - 5000..=2 * 3600 * 1000).contains(&ahead), "now+2h: {status}");
    let (code, on_server) = server_silence(&server, &tenant, &ns, "disk-swap").await;
    assert_eq!(code, 200, "{on_server}");
    assert_eq!((on_server["endsAt"].as_i64(), on_server["id"].as_str()), (Some(ends), status["id"].as_str()));
    assert_eq!(on_server["matchers"]["host"], "web-1");
    assert_eq!(on_server["createdBy"], "ops@example.com");
    let id = on_server["id"].as_str().unwrap().to_string();
    let (kind, _) = until_event(&client, &ns, "disk-swap", "Synced").await;
    assert_eq!(kind, "Normal");

    // It holds back the alert it matches: the alert list names it.
    let rule = json!({"name": "disk-swap-rule", "metric": "cpu.usage", "for": "0s",
                      "condition": {"aggregation": "last", "op": ">", "threshold": 90}});
    let r = server.as_tenant(Method::POST, "/api/v1/rules", &tenant).body(rule.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    post_sample(&server, &tenant, 97.0).await;
    eventually(WAIT, "the firing alert is silenced by the Silence", || async {
        let alerts: Value =
            server.as_tenant(Method::GET, "/api/v1/alerts", &tenant).send().await.unwrap().json().await.unwrap();
        let silenced = alerts["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["state"] == "FIRING" && a["silencedBy"] == json!([id.as_str()])));
        if silenced { Ok(()) } else { Err(alerts.to_string()) }
    })
    .await;

    // Resyncs (every 500 ms here) keep the end the first sync resolved.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ms(&status_of(&silences, "disk-swap").await["endsAt"]), ends);
    assert_eq!(server_silence(&server, &tenant, &ns, "disk-swap").await.1["endsAt"], ends);

    // So does a reconcile of a cached object that predates the status the first sync wrote (a
    // rerun queued by a Tenant's change can start before the watch brings that status back).
    let mut stale = silences.get("disk-swap").await.unwrap();
    stale.status = None;
    microdash_operator::controllers::silence::reconcile(std::sync::Arc::new(stale), ctx.clone()).await.unwrap();
    assert_eq!(
        server_silence(&server, &tenant, &ns, "disk-swap").await.1["endsAt"],
        ends,
        "a stale object moved the end"
    );

    // Expired by hand on the server: restored, the same silence.
    let path = format!("/api/v1/silences/by-name/{ns}.disk-swap");
    let r = server.as_tenant(Method::DELETE, &path, &tenant).send().await.unwrap();
    assert_eq!(r.status(), 204);
    eventually(WAIT, "the operator restores the silence", || async {
        let (_, s) = server_silence(&server, &tenant, &ns, "disk-swap").await;
        if s["endsAt"] == ends && s["status"] == "active" { Ok(()) } else { Err(s.to_string()) }
    })
    .await;
    until_event(&client, &ns, "disk-swap", "DriftCorrected").await;

    // An edit (a new generation) resolves its times again and updates the same silence.
    silences
        .patch("disk-swap", &PatchParams::default(), &Patch::Merge(json!({"spec": {"endsAt": "now+3h"}})))
        .await
        .unwrap();
    let status = eventually(WAIT, "the edit is synced", || async {
        let s = status_of(&silences, "disk-swap").await;
        let synced = condition(&s, "Synced").is_some_and(|c| c.0 == "True");
        if s["observedGeneration"] == 2 && synced { Ok(s) } else { Err(s.to_string()) }
    })
    .await;
    let longer = ms(&status["endsAt"]);
    assert!(longer >= ends + 3600 * 1000 - 5000, "now+3h: {status}");
    let (_, on_server) = server_silence(&server, &tenant, &ns, "disk-swap").await;
    assert_eq!((on_server["id"].as_str(), on_server["endsAt"].as_i64()), (Some(id.as_str()), Some(longer)));
    let listed: Value =
        server.as_tenant(Method::GET, "/api/v1/silences", &tenant).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["silences"].as_array().unwrap().len(), 1, "{listed}");

    // Deleting the resource expires the silence (it stays listed, ended).
    silences.delete("disk-swap", &DeleteParams::default()).await.unwrap();
    eventually(WAIT, "the Silence is gone and its silence expired", || async {
        let gone = silences.get_opt("disk-swap").await.unwrap().is_none();
        let (_, s) = server_silence(&server, &tenant, &ns, "disk-swap").await;
        if gone && s["status"] == "expired" { Ok(()) } else { Err(format!("gone {gone}, {s}")) }
    })
    .await;
    let alerts: Value =
        server.as_tenant(Method::GET, "/api/v1/alerts", &tenant).send().await.unwrap().json().await.unwrap();
    assert!(alerts["alerts"].as_array().unwrap().iter().all(|a| a.get("silencedBy").is_none()), "{alerts}");
}

/// A Silence whose end is in the past is refused by the server with the field named, and
/// never touches other silences.
#[tokio::test]
async fn a_silence_the_server_refuses_says_why() {
    let (client, ns, server) = setup("silence-bad").await;
    let _ctx = start_operator(&client, &ns, fixed(&server), Duration::from_millis(500));
    let tenant = bound_tenant(&client, &ns, &[]).await;
    let silences: Api<Silence> = Api::namespaced(client.clone(), &ns);
    silences.create(&PostParams::default(), &silence("past", &tenant, json!("2020-01-01T00:00:00Z"))).await.unwrap();
    silences.create(&PostParams::default(), &silence("fine", &tenant, json!("now+1h"))).await.unwrap();
    let status = until_reason(&silences, "past", "Accepted", "Invalid").await;
    let (_, _, message) = condition(&status, "Accepted").unwrap();
    assert!(message.contains("endsAt"), "{message}");
    assert!(status.get("endsAt").is_none(), "nothing resolved for a refused generation: {status}");
    until_condition(&silences, "fine", "Accepted", "True").await;
    assert_eq!(server_silence(&server, &tenant, &ns, "past").await.0, 404);
    assert_eq!(server_silence(&server, &tenant, &ns, "fine").await.0, 200);
}
