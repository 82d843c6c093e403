//! The custom resources of group `microdash.io/v1alpha1`: their specs come from the shared
//! model types (`microdash_model`), so the same YAML works with `microdash apply` and as a CRD.

// `#[kube(printcolumn(type_ = …), printcolumn(type_ = …))]` repeats keys inside distinct
// columns, which this lint mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod alert_rule;
pub mod channel;
pub mod microdash;
pub mod silence;
pub mod tenant;

pub use alert_rule::{AlertRule, AlertRuleResourceSpec, AlertRuleStatus};
pub use channel::{NotificationChannel, NotificationChannelResourceSpec, NotificationChannelStatus};
pub use microdash::{MicroDash, MicroDashSpec, MicroDashStatus};
pub use silence::{Silence, SilenceResourceSpec, SilenceStatus};
pub use tenant::{Tenant, TenantResourceSpec, TenantStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "microdash.io";

/// Every CRD of the operator, in a stable order (the order of `crds/*.yaml`).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![MicroDash::crd(), Tenant::crd(), AlertRule::crd(), NotificationChannel::crd(), Silence::crd()]
}

/// The file name of a CRD under `crds/`, e.g. `alertrules.microdash.io.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// A CRD as YAML, the way `crdgen` writes it.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    format!("---\n{}", serde_saphyr::to_string(crd).expect("a CRD serializes to YAML"))
}

/// A key of a Secret in the resource's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name, in the namespace of the resource.
    pub name: String,
    /// The key within the Secret.
    pub key: String,
}

/// Status conditions, merged by `type` under server-side apply.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    schema
}
