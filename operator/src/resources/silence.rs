//! `Silence`: a maintenance window of one tenant (the model's `SilenceSpec`), written to the
//! server by name; deleting the resource expires it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use microdash_model::SilenceSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A silence of one tenant: while it is active, notifications of the alerts whose labels equal
/// all of its matchers (`alertname` is the rule's name) are not sent. The fields are those of
/// `microdash apply` and the HTTP API. Relative times (`now+2h`) are resolved when the operator
/// first syncs a generation of the resource and kept in `status` until the spec changes.
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "microdash.io",
    version = "v1alpha1",
    kind = "Silence",
    namespaced,
    status = "SilenceStatus",
    shortname = "mdsilence",
    shortname = "mdsilences",
    category = "microdash",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenant"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Ends", type_ = "date", json_path = ".status.endsAt"),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status",
        priority = 1
    ),
    printcolumn(name = "Comment", type_ = "string", json_path = ".spec.comment", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.tenant)").message("spec.tenant is required: the tenant the silence belongs to"))]
#[x_kube(validation = Rule::new("size(self.matchers) > 0")
    .message("spec.matchers needs at least one matcher (a silence of everything is not one)"))]
pub struct SilenceResourceSpec {
    #[serde(flatten)]
    pub silence: SilenceSpec,
}

/// The silence on the server, mirrored by the operator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SilenceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` (the server validated the silence; the message names what is wrong) and
    /// `Synced` (the server holds exactly this silence).
    #[serde(default)]
    #[schemars(schema_with = "super::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// `pending` (starts later), `active` or `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The start and end on the server (RFC 3339): the spec's times, relative ones resolved when
    /// this generation was first synced. Set only while they describe `observedGeneration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// See `startsAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// The silence's id on the server (what the alert list's `silencedBy` names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The installation synced to (its tenant's): `namespace/name` of its `MicroDash`, or the
    /// server's URL when the operator was given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<String>,
    /// When the operator last wrote a change of this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<String>,
}
