//! `Tenant` (cluster-scoped): a tenant in the server, its token written to a Secret.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use microdash_model::{Scope, TenantSpec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A tenant of microdash. Its name is the tenant's name.
#[derive(CustomResource, JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "microdash.io",
    version = "v1alpha1",
    kind = "Tenant",
    status = "TenantStatus",
    shortname = "mdtenant",
    category = "microdash",
    printcolumn(name = "Display name", type_ = "string", json_path = ".spec.displayName"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Token secret", type_ = "string", json_path = ".status.tokenSecretName"),
    printcolumn(name = "Namespaces", type_ = "string", json_path = ".spec.namespaces", priority = 1),
    printcolumn(name = "Installation", type_ = "string", json_path = ".status.installation", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct TenantResourceSpec {
    #[serde(flatten)]
    pub tenant: TenantSpec,
    /// Where the operator writes the tenant's token (key `token`).
    pub token_secret: TokenSecret,
    /// The namespaces whose AlertRules and NotificationChannels may use this tenant, besides
    /// `tokenSecret.namespace` (always bound: whoever reads the token there already acts as the
    /// tenant). A rule or channel of the tenant in any other namespace is refused (condition
    /// `Accepted=False`, reason `NamespaceNotBound`) and never reaches the server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 63)))]
    pub namespaces: Vec<String>,
    /// The `MicroDash` whose server holds this tenant; its AlertRules and NotificationChannels
    /// go to the same server. Omitted: the cluster's only installation (with several, the
    /// Tenant is not Ready until it names one). Ignored when the operator is given a server
    /// (`--server-url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<InstallationRef>,
}

/// A `MicroDash` installation by namespace and name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstallationRef {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenSecret {
    pub namespace: String,
    /// Default: `microdash-tenant-NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The token's scopes; default all of ingest, read, admin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<Scope>,
}

impl Tenant {
    pub fn token_secret_name(&self) -> String {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        self.spec.token_secret.name.clone().unwrap_or_else(|| format!("microdash-tenant-{name}"))
    }
    /// Whether AlertRules and NotificationChannels in `namespace` may use this tenant.
    pub fn binds(&self, namespace: &str) -> bool {
        self.spec.token_secret.namespace == namespace || self.spec.namespaces.iter().any(|n| n == namespace)
    }
    pub fn token_scopes(&self) -> Vec<Scope> {
        if self.spec.token_secret.scopes.is_empty() {
            Scope::ALL.to_vec()
        } else {
            self.spec.token_secret.scopes.clone()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the tenant exists in the server and its token Secret is written).
    #[serde(default)]
    #[schemars(schema_with = "super::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// `namespace/name` of the Secret holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_name: Option<String>,
    /// The installation synced to: `namespace/name` of its `MicroDash`, or the server's URL
    /// when the operator was given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<TenantUsage>,
    /// The last time the server refused the token in the Secret and what the operator did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_repair: Option<TokenRepair>,
}

/// What the operator did about a token the server no longer accepted (a recreated tenant, a
/// restored or lost database).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenRepair {
    /// `Reregistered`: the same token made valid again (clients keep working);
    /// `Rotated`: a new token written to the Secret (clients must read it again).
    pub action: String,
    /// Why, e.g. `the server did not accept the token`.
    pub reason: String,
    /// RFC 3339.
    pub at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantUsage {
    /// Metric names the tenant has written.
    pub metrics: i64,
    /// Alert rules and notification channels in the server.
    pub rules: i64,
    pub channels: i64,
}

impl TokenRepair {
    pub fn now(action: &str, reason: String) -> Self {
        TokenRepair { action: action.into(), reason, at: k8s_openapi::jiff::Timestamp::now().to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_tenant_reads() {
        let spec: TenantResourceSpec = serde_json::from_value(serde_json::json!({
            "displayName": "Team A", "retention": {"raw": "7d", "1m": "30d"},
            "tokenSecret": {"namespace": "microdash", "scopes": ["ingest"]}
        }))
        .unwrap();
        assert_eq!(spec.tenant.display_name.as_deref(), Some("Team A"));
        assert_eq!(spec.tenant.retention.unwrap().one_minute.as_deref(), Some("30d"));
        assert_eq!(spec.token_secret.scopes, [Scope::Ingest]);
        // Unknown fields never get here: the API server prunes what the schema lacks (and
        // `kubectl apply` refuses them with strict field validation).
    }
}
