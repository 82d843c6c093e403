//! `NotificationChannel`: the ★ channel spec, with secrets read from Kubernetes Secrets
//! (`urlSecretRef`, `hmacSecretRef`, `credentialsSecretRef`) instead of written inline.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use microdash_model::{EmailSpec, NotificationChannelSpec, SmtpSpec, SmtpTls, WebhookSpec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretKeyRef;

/// Where an alert rule's notifications go: exactly one of `webhook` and `email`.
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "microdash.io",
    version = "v1alpha1",
    kind = "NotificationChannel",
    namespaced,
    status = "NotificationChannelStatus",
    shortname = "mdchannel",
    category = "microdash",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenant"),
    printcolumn(name = "Accepted", type_ = "string", json_path = ".status.conditions[?(@.type==\"Accepted\")].status"),
    printcolumn(name = "Last delivery", type_ = "string", json_path = ".status.lastDelivery.status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.webhook) != has(self.email)").message("set exactly one of webhook and email"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationChannelResourceSpec {
    /// The tenant the channel belongs to.
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailResource>,
    /// Also notify when an alert resolves (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_resolved: Option<bool>,
    /// Notify again while an alert keeps firing, this often (default `4h`; `0s` = never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<String>,
    /// Group notifications by these alert labels (`alertname` is the rule's name; `...` = every
    /// label); omitted = one notification per alert transition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// With `groupBy`: a new group's wait for more alerts before its first notification (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<String>,
    /// With `groupBy`: the least time between two notifications of a group (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<String>,
}

#[derive(KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlSecretRef)").message("set exactly one of url and urlSecretRef"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookResource {
    /// `http://` or `https://` URL that receives a JSON POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The URL from a Secret, when it carries a credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// The HMAC-SHA256 key of `X-Microdash-Signature`, from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret_ref: Option<SecretKeyRef>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// How long one attempt may take (default `5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailResource {
    #[schemars(length(min = 1))]
    pub to: Vec<String>,
    pub from: String,
    pub smtp: SmtpResource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmtpResource {
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Default `starttls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SmtpTls>,
    /// A Secret with keys `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<CredentialsSecretRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsSecretRef {
    /// The Secret's name, in the namespace of the channel; keys `username` and `password`.
    pub name: String,
}

/// The secrets a channel refers to, read from Kubernetes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedSecrets {
    pub url: Option<String>,
    pub hmac_secret: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl NotificationChannelResourceSpec {
    /// Every Secret key the spec refers to.
    pub fn secret_refs(&self) -> Vec<SecretKeyRef> {
        let mut refs = Vec::new();
        if let Some(webhook) = &self.webhook {
            refs.extend(webhook.url_secret_ref.clone());
            refs.extend(webhook.hmac_secret_ref.clone());
        }
        if let Some(credentials) = self.email.as_ref().and_then(|e| e.smtp.credentials_secret_ref.as_ref()) {
            for key in ["username", "password"] {
                refs.push(SecretKeyRef { name: credentials.name.clone(), key: key.into() });
            }
        }
        refs
    }

    /// The model's channel spec, as the server takes it, with the secrets filled in.
    pub fn to_model(&self, secrets: &ResolvedSecrets) -> NotificationChannelSpec {
        NotificationChannelSpec {
            tenant: Some(self.tenant.clone()),
            webhook: self.webhook.as_ref().map(|w| WebhookSpec {
                url: w.url.clone().or_else(|| secrets.url.clone()).unwrap_or_default(),
                hmac_secret: secrets.hmac_secret.clone(),
                headers: w.headers.clone(),
                timeout: w.timeout.clone(),
            }),
            email: self.email.as_ref().map(|e| EmailSpec {
                to: e.to.clone(),
                from: e.from.clone(),
                smtp: SmtpSpec {
                    host: e.smtp.host.clone(),
                    port: e.smtp.port,
                    tls: e.smtp.tls,
                    username: secrets.username.clone(),
                    password: secrets.password.clone(),
                },
            }),
            send_resolved: self.send_resolved,
            repeat_interval: self.repeat_interval.clone(),
            group_by: self.group_by.clone(),
            group_wait: self.group_wait.clone(),
            group_interval: self.group_interval.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationChannelStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` (the server validated the spec) and `Synced`.
    #[serde(default)]
    #[schemars(schema_with = "super::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The channel's latest notification as the server recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<LastDelivery>,
    /// The installation synced to (its tenant's): `namespace/name` of its `MicroDash`, or the
    /// server's URL when the operator was given one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastDelivery {
    /// RFC 3339.
    pub time: String,
    /// True when the receiver accepted it.
    pub ok: bool,
    /// The server's delivery status, e.g. `delivered`, `pending`, `failed`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_from_kubernetes_fill_the_model_spec_which_then_validates() {
        let spec: NotificationChannelResourceSpec = serde_json::from_value(serde_json::json!({
            "tenant": "default",
            "email": {"to": ["ops@example.com"], "from": "md@example.com",
                      "smtp": {"host": "smtp.example.com", "credentialsSecretRef": {"name": "smtp"}}}
        }))
        .unwrap();
        let refs: Vec<String> = spec.secret_refs().iter().map(|r| format!("{}/{}", r.name, r.key)).collect();
        assert_eq!(refs, ["smtp/username", "smtp/password"]);
        let secrets = ResolvedSecrets { username: Some("u".into()), password: Some("p".into()), ..Default::default() };
        let model = spec.to_model(&secrets);
        model.validate().unwrap();
        assert_eq!(model.email.unwrap().smtp.password.as_deref(), Some("p"));

        let hook: NotificationChannelResourceSpec = serde_json::from_value(serde_json::json!({
            "tenant": "default", "webhook": {"urlSecretRef": {"name": "h", "key": "url"}}
        }))
        .unwrap();
        let secrets = ResolvedSecrets { url: Some("https://hooks.example.com/x".into()), ..Default::default() };
        assert_eq!(hook.to_model(&secrets).webhook.unwrap().url, "https://hooks.example.com/x");
        // Inline secrets are not part of the CRD.
        assert!(
            serde_json::from_value::<NotificationChannelResourceSpec>(serde_json::json!({
                "tenant": "default", "webhook": {"url": "http://x", "hmacSecret": "s"}
            }))
            .is_err()
        );
    }
}
