//! `microdash apply -f FILE.yaml`: the same multi-document YAML as the CRDs (`kind:
//! AlertRule | NotificationChannel | Silence`, `metadata.name`, `spec.tenant`), upserted straight
//! into the database with the validation of the HTTP API. Every document is checked before the
//! first is written, so a mistake in the last one leaves the database as it was.
//!
//! A `Silence`'s `metadata.name` is its stable name in the tenant: applying the document again
//! updates that silence in place, or leaves it unchanged (see `alerting::silences`); relative
//! times (`now+2h`) are resolved when the file is applied.

use microdash_model::{AlertRuleSpec, NotificationChannelSpec, SilenceSpec};
use serde_json::Value;

use super::service::{self, SpecError, parse_spec};
use super::silences;
use crate::domain::now_ms;
use crate::storage::DynStore;

/// The `apiVersion` documents carry; others are refused so a typo is not silently ignored.
pub const API_VERSION: &str = "microdash.io/v1alpha1";

enum Doc {
    Rule(AlertRuleSpec),
    Channel(NotificationChannelSpec),
    Silence(SilenceSpec),
}

struct Parsed {
    kind: &'static str,
    name: String,
    tenant: String,
    doc: Doc,
}

/// Reads, checks and upserts every document; returns one line per document applied.
pub async fn apply(store: &DynStore, text: &str) -> anyhow::Result<Vec<String>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, yaml_options())
        .map_err(|e| anyhow::anyhow!("the file is not valid YAML: {e}"))?;
    let mut parsed = Vec::new();
    let mut problems = Vec::new();
    for (index, doc) in docs.into_iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        match parse_doc(doc) {
            Ok(p) => parsed.push(p),
            Err(e) => problems.push(format!("document {}: {e}", index + 1)),
        }
    }
    // Tenants must exist: apply does not create them (that hands out tokens).
    let mut tenant_ids = Vec::with_capacity(parsed.len());
    let mut known: std::collections::HashMap<&str, Option<i64>> = std::collections::HashMap::new();
    for p in &parsed {
        let id = match known.get(p.tenant.as_str()) {
            Some(id) => *id,
            None => {
                let id = store.get_tenant(&p.tenant).await?.map(|t| t.id);
                known.insert(&p.tenant, id);
                id
            }
        };
        match id {
            Some(id) => tenant_ids.push(id),
            None => {
                problems.push(format!(
                    "{} {}: spec.tenant: tenant {:?} does not exist (create it with `microdash tenant create {}`)",
                    p.kind, p.name, p.tenant, p.tenant
                ));
                tenant_ids.push(0);
            }
        }
    }
    // Validate everything before writing anything. A silence's times are resolved here, once
    // for the whole file, and compared with the silence of its name.
    let now = now_ms();
    let mut plans = Vec::with_capacity(parsed.len());
    for (p, tenant_id) in parsed.iter().zip(&tenant_ids) {
        let result = match &p.doc {
            Doc::Rule(spec) => spec.validate().map_err(SpecError::Invalid),
            Doc::Channel(spec) => spec.validate().map_err(SpecError::Invalid),
            Doc::Silence(spec) if *tenant_id != 0 => {
                silences::plan(store, *tenant_id, Some(&p.name), spec, now).await.map(|plan| plans.push(plan))
            }
            Doc::Silence(spec) => spec.validate().map_err(SpecError::Invalid),
        };
        match result {
            Ok(()) => {}
            Err(SpecError::Store(e)) => return Err(e.into()),
            Err(e) => {
                for e in e.errors() {
                    let field = if e.field == "name" { "metadata.name".into() } else { format!("spec.{}", e.field) };
                    problems.push(format!("{} {}: {field}: {}", p.kind, p.name, e.message));
                }
            }
        }
    }
    if !problems.is_empty() {
        anyhow::bail!("nothing was applied:\n  {}", problems.join("\n  "));
    }
    let mut plans = plans.into_iter();
    let mut applied = Vec::new();
    for (p, tenant_id) in parsed.into_iter().zip(tenant_ids) {
        let verb = match p.doc {
            Doc::Rule(spec) => service::put_rule(store, tenant_id, &p.name, spec, false).await.map(configured),
            Doc::Channel(spec) => service::put_channel(store, tenant_id, &p.name, spec, false).await.map(configured),
            Doc::Silence(_) => {
                let plan = plans.next().expect("a plan per silence");
                silences::write(store, &plan, now).await.map(silences::Outcome::as_str)
            }
        }
        .map_err(|e| anyhow::anyhow!("{} {}: {e}", p.kind, p.name))?;
        applied.push(format!("{}/{} (tenant {}) {verb}", p.kind.to_lowercase(), p.name, p.tenant));
    }
    Ok(applied)
}

/// How a rule or channel write is reported: the store tells a new one from a replaced one only.
fn configured(created: bool) -> &'static str {
    if created { "created" } else { "configured" }
}

/// Documents `apply` takes from one file: a fleet's rules (500 hosts × 20 rules is 10 000
/// documents) and more. YAML's own safety limits (aliases, nesting, anchors) stay as the parser
/// sets them; only the counts that grow with the number of documents are raised with it.
pub const MAX_DOCUMENTS: usize = 1_000_000;

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: MAX_DOCUMENTS,
            max_nodes: MAX_DOCUMENTS * 64,
            max_events: MAX_DOCUMENTS * 128,
            max_total_scalar_bytes: 1 << 30,
        },
    }
}

fn parse_doc(doc: Value) -> Result<Parsed, String> {
    let Value::Object(mut map) = doc else { return Err("a document is a mapping with kind, metadata and spec".into()) };
    match map.remove("apiVersion") {
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(other) => return Err(format!("apiVersion: {other} is not {API_VERSION}")),
        None => return Err(format!("apiVersion: missing; use {API_VERSION}")),
    }
    let kind = match map.remove("kind") {
        Some(Value::String(k)) if k == "AlertRule" => "AlertRule",
        Some(Value::String(k)) if k == "NotificationChannel" => "NotificationChannel",
        Some(Value::String(k)) if k == "Silence" => "Silence",
        other => {
            return Err(format!(
                "kind: {} is not AlertRule, NotificationChannel or Silence",
                other.map(|v| v.to_string()).unwrap_or_else(|| "missing".into())
            ));
        }
    };
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{kind}: metadata.name: missing"))?
        .to_string();
    let spec = map.remove("spec").ok_or_else(|| format!("{kind} {name}: spec: missing"))?;
    let tenant = spec
        .get("tenant")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{kind} {name}: spec.tenant: missing; name the tenant the {kind} belongs to"))?
        .to_string();
    let named = |e: SpecError| match e {
        SpecError::Malformed(f) => format!("{kind} {name}: spec.{}: {}", f.field, f.message),
        other => format!("{kind} {name}: {other}"),
    };
    let doc = match kind {
        "AlertRule" => Doc::Rule(parse_spec(spec).map_err(named)?),
        "Silence" => Doc::Silence(parse_spec(spec).map_err(named)?),
        _ => Doc::Channel(parse_spec(spec).map_err(named)?),
    };
    Ok(Parsed { kind, name, tenant, doc })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::alerts::SpecKind;

    const DESIGN_EXAMPLE: &str = r#"
apiVersion: microdash.io/v1alpha1
kind: AlertRule
metadata: {name: high-cpu, namespace: team-a}
spec:
  tenant: default
  metric: cpu.usage
  match: {host: web-1}
  condition: {aggregation: avg, window: 1m, op: ">", threshold: 90}
  for: 2m
  keepFiringFor: 0s
  severity: critical
  noData: {state: NODATA, after: 5m}
  channels: [ops-webhook, ops-mail]
  labels: {team: a}
  annotations: {summary: "CPU {{ $value }}% on {{ $labels.host }}"}
---
apiVersion: microdash.io/v1alpha1
kind: NotificationChannel
metadata: {name: ops-webhook, namespace: team-a}
spec:
  tenant: default
  webhook: {url: "https://hooks.example.com/x", hmacSecret: "s3cret"}
  sendResolved: true
  repeatInterval: 4h
---
apiVersion: microdash.io/v1alpha1
kind: NotificationChannel
metadata: {name: ops-mail, namespace: team-a}
spec:
  tenant: default
  email: {to: [ops@example.com], from: microdash@example.com,
          smtp: {host: smtp.example.com, port: 587, tls: starttls, username: u, password: p}}
"#;

    async fn store() -> (tempfile::TempDir, DynStore) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::storage::open(&format!("sqlite://{}", dir.path().join("a.db").display()), false).await.unwrap();
        store.migrate().await.unwrap();
        store.create_tenant("default", None).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_file_of_more_documents_than_the_yaml_parsers_default_budget_applies() {
        let (_dir, store) = store().await;
        let mut yaml = String::new();
        for i in 0..3000 {
            yaml.push_str(&format!(
                "---\napiVersion: microdash.io/v1alpha1\nkind: AlertRule\nmetadata: {{name: r{i}}}\n\
                 spec: {{tenant: default, metric: m, match: {{host: h{i}}}, condition: {{aggregation: last, op: '>', threshold: 1}}}}\n"
            ));
        }
        assert_eq!(apply(&store, &yaml).await.unwrap().len(), 3000);
        assert_eq!(store.list_specs(SpecKind::Rule, None).await.unwrap().len(), 3000);
    }

    #[tokio::test]
    async fn the_design_example_applies_and_reapplies() {
        let (_dir, store) = store().await;
        let lines = apply(&store, DESIGN_EXAMPLE).await.unwrap();
        assert_eq!(
            lines,
            [
                "alertrule/high-cpu (tenant default) created",
                "notificationchannel/ops-webhook (tenant default) created",
                "notificationchannel/ops-mail (tenant default) created",
            ]
        );
        let tenant = store.get_tenant("default").await.unwrap().unwrap();
        let rule = store.get_spec(SpecKind::Rule, tenant.id, "high-cpu").await.unwrap().unwrap();
        let spec: AlertRuleSpec = serde_json::from_str(&rule.spec).unwrap();
        assert_eq!(spec.tenant, None, "the tenant is the row's, not the document's");
        assert_eq!(spec.for_duration.as_deref(), Some("2m"));
        let hook = store.get_spec(SpecKind::Channel, tenant.id, "ops-webhook").await.unwrap().unwrap();
        assert!(hook.spec.contains("s3cret"), "the secret is stored (and only redacted in answers)");
        let again = apply(&store, DESIGN_EXAMPLE).await.unwrap();
        assert!(again.iter().all(|l| l.ends_with("configured")), "{again:?}");
    }

    fn silence(ends_at: &str) -> String {
        format!(
            "apiVersion: microdash.io/v1alpha1\nkind: Silence\nmetadata: {{name: maint, namespace: team-a}}\nspec:\n  \
             tenant: default\n  matchers: {{alertname: high-cpu, host: web-1}}\n  endsAt: {ends_at}\n  \
             comment: replacing a disk\n  createdBy: ops\n"
        )
    }

    #[tokio::test]
    async fn a_silence_applied_again_is_the_same_silence() {
        let (_dir, store) = store().await;
        let tenant = store.get_tenant("default").await.unwrap().unwrap().id;
        let ends = now_ms() + 3_600_000;
        let applied = |yaml: String| {
            let store = store.clone();
            async move { apply(&store, &yaml).await.unwrap() }
        };
        assert_eq!(applied(silence(&ends.to_string())).await, ["silence/maint (tenant default) created"]);
        assert_eq!(applied(silence(&ends.to_string())).await, ["silence/maint (tenant default) unchanged"]);
        let first = store.get_silence_by_name(tenant, "maint").await.unwrap().unwrap();
        assert_eq!(applied(silence(&(ends + 1000).to_string())).await, ["silence/maint (tenant default) updated"]);
        // Relative times are resolved at each apply: the end moves, the silence stays the same.
        assert_eq!(applied(silence("now+2h")).await, ["silence/maint (tenant default) updated"]);
        let all = store.list_silences(Some(tenant), 0).await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((&all[0].id, all[0].starts_at), (&first.id, first.starts_at));
        assert!(all[0].ends_at >= ends + 3_600_000 - 60_000, "now+2h");

        // Every mistake is named, and nothing is written.
        let bad = silence("yesterday").replace("host: web-1", "host: ''") + "---\n" + &silence("now-1h");
        let err = apply(&store, &bad).await.unwrap_err().to_string();
        assert!(err.contains("nothing was applied"), "{err}");
        assert!(err.contains("Silence maint: spec.matchers"), "{err}");
        assert!(err.contains("Silence maint: spec.endsAt: must be Unix milliseconds"), "{err}");
        assert!(err.contains("Silence maint: spec.endsAt: must be after startsAt and in the future"), "{err}");
        let err = apply(&store, &silence("now+1h").replace("name: maint", "name: Maint")).await.unwrap_err();
        assert!(err.to_string().contains("Silence Maint: metadata.name"), "{err}");
        let err = apply(&store, &silence("now+1h").replace("createdBy: ops", "createdBy: ops\n  author: x")).await;
        assert!(err.unwrap_err().to_string().contains("Silence maint: spec.author"));
        assert_eq!(store.list_silences(Some(tenant), 0).await.unwrap(), all);

        // An unquoted RFC 3339 time is read as one (YAML 1.2 has no timestamp type).
        let rfc = silence("2099-01-01T00:00:00Z").replace("name: maint", "name: later");
        assert_eq!(applied(rfc).await, ["silence/later (tenant default) created"]);
        let later = store.get_silence_by_name(tenant, "later").await.unwrap().unwrap();
        assert_eq!(later.ends_at, 4_070_908_800_000);
    }

    #[tokio::test]
    async fn one_bad_document_applies_nothing_and_names_every_mistake() {
        let (_dir, store) = store().await;
        let bad = DESIGN_EXAMPLE.replace("window: 1m", "window: 1 minute").replace("https://hooks", "ftp://hooks");
        let err = apply(&store, &bad).await.unwrap_err().to_string();
        assert!(err.contains("nothing was applied"), "{err}");
        assert!(err.contains("AlertRule high-cpu: spec.condition.window"), "{err}");
        assert!(err.contains("NotificationChannel ops-webhook: spec.webhook.url"), "{err}");
        let tenant = store.get_tenant("default").await.unwrap().unwrap();
        assert!(store.list_specs(SpecKind::Channel, Some(tenant.id)).await.unwrap().is_empty());

        let unknown_field = DESIGN_EXAMPLE.replace("keepFiringFor: 0s", "keepFiring: 0s");
        let err = apply(&store, &unknown_field).await.unwrap_err().to_string();
        assert!(err.contains("document 1: AlertRule high-cpu: spec.keepFiring"), "{err}");

        let other_tenant = DESIGN_EXAMPLE.replacen("tenant: default", "tenant: team-b", 1);
        let err = apply(&store, &other_tenant).await.unwrap_err().to_string();
        assert!(err.contains("tenant \"team-b\" does not exist"), "{err}");

        let wrong_kind = DESIGN_EXAMPLE.replacen("kind: AlertRule", "kind: AlertRules", 1);
        let err = apply(&store, &wrong_kind).await.unwrap_err().to_string();
        assert!(err.contains("kind: \"AlertRules\" is not AlertRule, NotificationChannel or Silence"), "{err}");
    }
}
