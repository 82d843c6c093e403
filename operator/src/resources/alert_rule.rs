//! `AlertRule`: the ★ rule spec of docs/DESIGN.md (the model's `AlertRuleSpec`), synced to the server.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use microdash_model::AlertRuleSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An alert rule of one tenant. The fields are those of `microdash apply` and the HTTP API.
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "microdash.io",
    version = "v1alpha1",
    kind = "AlertRule",
    namespaced,
    status = "AlertRuleStatus",
    shortname = "mdrule",
    shortname = "mdrules",
    category = "microdash",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenant"),
    printcolumn(name = "Metric", type_ = "string", json_path = ".spec.metric"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.tenant)").message("spec.tenant is required: the tenant the rule belongs to"))]
#[x_kube(validation = Rule::new("self.condition.aggregation == 'last' || has(self.condition.window)")
    .message("condition.window is required unless condition.aggregation is `last`"))]
pub struct AlertRuleResourceSpec {
    #[serde(flatten)]
    pub rule: AlertRuleSpec,
}

/// What the server thinks of the rule, mirrored by the operator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertRuleStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` (the server validated the spec; the message names what is wrong) and `Synced`
    /// (the server holds exactly this spec).
    #[serde(default)]
    #[schemars(schema_with = "super::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The worst state among the rule's series: OK, PENDING, FIRING or NODATA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Series of the metric that the rule matched so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_series: Option<i64>,
    /// Of those, how many are firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing_series: Option<i64>,
    /// When a series of the rule last changed state (the server evaluates on every sample and
    /// records changes, not each evaluation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluation: Option<String>,
    /// The installation synced to (its tenant's): `namespace/name` of its `MicroDash`, or the
    /// server's URL when the operator was given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<String>,
    /// When the operator last read the rule's state from the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<String>,
}
