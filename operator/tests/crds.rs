//! The committed `crds/*.yaml` are what `crdgen` writes now, and the CRDs say what the
//! design promises: names, short names, printer columns, status subresources, CEL rules.
//! (That the API server accepts them is in `kube_api.rs`.)

use std::path::PathBuf;

use microdash_operator::resources::{all_crds, crd_file_name, crd_yaml};

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

#[test]
fn committed_crd_yaml_matches_crdgen() {
    let mut stale = Vec::new();
    for crd in all_crds() {
        let path = crds_dir().join(crd_file_name(&crd));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != crd_yaml(&crd) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "these CRD files drifted from the Rust types: {stale:?}\n\
         regenerate them with `cargo run -p microdash-operator --bin crdgen -- --write crds` and commit"
    );
    // And the chart ships the same files.
    for crd in all_crds() {
        let chart =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/microdash/crds").join(crd_file_name(&crd));
        assert_eq!(
            std::fs::read_to_string(&chart).unwrap_or_default(),
            crd_yaml(&crd),
            "{} differs from crds/: copy crds/*.yaml into charts/microdash/crds/",
            chart.display()
        );
    }
}

fn crd_json(kind: &str) -> serde_json::Value {
    let crd = all_crds().into_iter().find(|c| c.spec.names.kind == kind).unwrap();
    serde_json::to_value(crd).unwrap()
}

#[test]
fn every_crd_is_in_group_microdash_io_v1alpha1_with_a_status_subresource() {
    for kind in ["MicroDash", "Tenant", "AlertRule", "NotificationChannel", "Silence"] {
        let crd = crd_json(kind);
        assert_eq!(crd["spec"]["group"], "microdash.io", "{kind}");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert!(version["subresources"]["status"].is_object(), "{kind} lacks the status subresource");
        assert!(!crd["spec"]["names"]["shortNames"].as_array().unwrap().is_empty(), "{kind} lacks short names");
        // Conditions merge by type under server-side apply.
        let conditions = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{kind}");
    }
    assert_eq!(crd_json("Tenant")["spec"]["scope"], "Cluster");
    assert_eq!(crd_json("AlertRule")["spec"]["scope"], "Namespaced");
    assert_eq!(crd_json("Silence")["spec"]["scope"], "Namespaced");
}

#[test]
fn kubectl_get_alertrules_shows_tenant_metric_state_age() {
    let crd = crd_json("AlertRule");
    let columns: Vec<(String, u64)> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["priority"].as_u64().unwrap_or(0)))
        .filter(|(_, priority)| *priority == 0)
        .collect();
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Tenant", "Metric", "State", "Age"]);
}

#[test]
fn the_rule_schema_carries_the_model_fields_and_cel_rules() {
    let crd = crd_json("AlertRule");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    for field in ["tenant", "metric", "match", "condition", "for", "keepFiringFor", "noData", "channels", "annotations"]
    {
        assert!(spec["properties"].get(field).is_some(), "AlertRule spec lacks {field}");
    }
    assert_eq!(
        spec["properties"]["condition"]["properties"]["op"]["enum"],
        serde_json::json!([">", ">=", "<", "<=", "==", "!="])
    );
    let rules = spec["x-kubernetes-validations"].to_string();
    assert!(rules.contains("has(self.tenant)"), "{rules}");
    assert!(rules.contains("has(self.condition.window)"), "{rules}");
    let channel = crd_json("NotificationChannel");
    let spec = &channel["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert!(spec["x-kubernetes-validations"].to_string().contains("has(self.webhook) != has(self.email)"));
    let webhook = &spec["properties"]["webhook"];
    assert!(webhook["properties"].get("urlSecretRef").is_some());
    assert!(webhook["properties"].get("hmacSecretRef").is_some());
    assert!(webhook["properties"].get("hmacSecret").is_none(), "secrets are never inline in a CRD");
}

#[test]
fn the_silence_schema_carries_the_model_fields_times_as_int_or_string_and_cel_rules() {
    let crd = crd_json("Silence");
    let version = &crd["spec"]["versions"][0];
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    for field in ["tenant", "matchers", "startsAt", "endsAt", "comment", "createdBy"] {
        assert!(spec["properties"].get(field).is_some(), "Silence spec lacks {field}");
    }
    for time in ["startsAt", "endsAt"] {
        assert_eq!(spec["properties"][time]["x-kubernetes-int-or-string"], true, "{time}: {spec}");
    }
    let rules = spec["x-kubernetes-validations"].to_string();
    assert!(rules.contains("has(self.tenant)") && rules.contains("size(self.matchers) > 0"), "{rules}");
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["priority"].as_u64().unwrap_or(0) == 0)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Tenant", "State", "Ends", "Age"]);
    let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    for field in ["state", "startsAt", "endsAt", "id", "installation"] {
        assert!(status.get(field).is_some(), "Silence status lacks {field}");
    }
}
