//! The microdash admin API as the operator uses it: the admin token, and for a tenant's rules,
//! channels, silences and alerts the `X-Microdash-Tenant` header.

use std::time::Duration;

use microdash_model::{
    AlertRuleSpec, NotificationChannelSpec, Scope, SilenceSpec, SilenceView, TenantLimits, TenantRetention,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{Error, Result};

pub use microdash_model::TENANT_HEADER;

/// Where the server is and the admin token. The token never appears in `Debug` output.
#[derive(Clone)]
pub struct ServerApi {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for ServerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerApi").field("base", &self.base).finish_non_exhaustive()
    }
}

/// A refusal by the server with its problem+json detail (4xx other than 404).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub detail: String,
}

/// The server's answers about rules and channels, declared once in the model.
pub use microdash_model::views::{ChannelView, RuleView};

impl ServerApi {
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> ServerApi {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .expect("an HTTP client");
        ServerApi { http, base: base.into().trim_end_matches('/').to_string(), token: token.into() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request; answers the status and the JSON body (or `null`).
    async fn call(
        &self,
        method: Method,
        path: &str,
        tenant: Option<&str>,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(tenant) = tenant {
            request = request.header(TENANT_HEADER, tenant);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let unreachable = |source| Error::Unreachable { url: self.base.clone(), source };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_server_error() || status == StatusCode::UNAUTHORIZED {
            return Err(Error::Server { status: status.as_u16(), detail: detail(&value, &text) });
        }
        Ok((status, value))
    }

    // --- tenants ---

    pub async fn tenant_exists(&self, name: &str) -> Result<bool> {
        let (status, value) = self.call(Method::GET, &format!("/api/v1/tenants/{name}"), None, None).await?;
        match status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            other => Err(unexpected(other, &value)),
        }
    }

    /// Creates the tenant; answers its first token. `Ok(None)` when it exists already.
    pub async fn create_tenant(&self, name: &str, display_name: Option<&str>) -> Result<Option<String>> {
        let body = json!({"name": name, "displayName": display_name});
        let (status, value) = self.call(Method::POST, "/api/v1/tenants", None, Some(body)).await?;
        match status {
            StatusCode::CREATED => Ok(value["token"].as_str().map(str::to_string)),
            StatusCode::CONFLICT => Ok(None),
            other => Err(unexpected(other, &value)),
        }
    }

    pub async fn create_token(&self, tenant: &str, scopes: &[Scope]) -> Result<String> {
        let body = json!({"scopes": scopes});
        let (status, value) =
            self.call(Method::POST, &format!("/api/v1/tenants/{tenant}/tokens"), None, Some(body)).await?;
        match (status, value["token"].as_str()) {
            (StatusCode::CREATED, Some(token)) => Ok(token.to_string()),
            (other, _) => Err(unexpected(other, &value)),
        }
    }

    /// The tenant `token` belongs to, asked of the server with that token itself; `None` when the
    /// server does not accept it (unknown, revoked, expired, or its tenant gone).
    pub async fn token_tenant(&self, token: &str) -> Result<Option<String>> {
        let url = format!("{}/api/v1/session", self.base);
        let unreachable = |source| Error::Unreachable { url: self.base.clone(), source };
        let response = self.http.get(&url).bearer_auth(token).send().await.map_err(unreachable)?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            StatusCode::OK => Ok(value["tenant"].as_str().map(str::to_string)),
            StatusCode::UNAUTHORIZED => Ok(None),
            other => Err(unexpected(other, &value)),
        }
    }

    /// Registers a token the operator already holds (a Tenant's Secret) again; a refusal (409:
    /// registered already, 422: too weak) leaves rotation to the caller.
    pub async fn register_token(&self, tenant: &str, token: &str, scopes: &[Scope]) -> Result<Result<(), Refusal>> {
        let body = json!({"scopes": scopes, "token": token});
        let (status, value) =
            self.call(Method::POST, &format!("/api/v1/tenants/{tenant}/tokens"), None, Some(body)).await?;
        refusal_or(status, &value, ())
    }

    pub async fn set_retention(&self, tenant: &str, retention: &TenantRetention) -> Result<Result<(), Refusal>> {
        let body = serde_json::to_value(retention).expect("retention serializes");
        let (status, value) =
            self.call(Method::PUT, &format!("/api/v1/tenants/{tenant}/retention"), None, Some(body)).await?;
        refusal_or(status, &value, ())
    }

    /// Sets the tenant's intake limits; a limit left out goes back to the server's default.
    pub async fn set_limits(&self, tenant: &str, limits: Option<&TenantLimits>) -> Result<Result<(), Refusal>> {
        let limits = limits.cloned().unwrap_or_default();
        let body = json!({"samples_per_second": limits.samples_per_second, "series": limits.series});
        let (status, value) =
            self.call(Method::PUT, &format!("/api/v1/tenants/{tenant}/limits"), None, Some(body)).await?;
        refusal_or(status, &value, ())
    }

    /// True when it existed.
    pub async fn delete_tenant(&self, name: &str) -> Result<bool> {
        let (status, value) = self.call(Method::DELETE, &format!("/api/v1/tenants/{name}"), None, None).await?;
        match status {
            StatusCode::NO_CONTENT => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            other => Err(unexpected(other, &value)),
        }
    }

    /// Metric names, rules and channels of a tenant.
    pub async fn usage(&self, tenant: &str) -> Result<(i64, i64, i64)> {
        let mut counts = [0i64; 3];
        for (i, (path, key)) in
            [("/api/v1/metrics", "metrics"), ("/api/v1/rules", "rules"), ("/api/v1/channels", "channels")]
                .iter()
                .enumerate()
        {
            let (status, value) = self.call(Method::GET, path, Some(tenant), None).await?;
            if status != StatusCode::OK {
                return Err(unexpected(status, &value));
            }
            counts[i] = value[*key].as_array().map_or(0, |a| a.len() as i64);
        }
        Ok((counts[0], counts[1], counts[2]))
    }

    // --- rules and channels ---

    /// `Ok(None)` when the rule (or its tenant) does not exist.
    pub async fn get_rule(&self, tenant: &str, name: &str) -> Result<Option<RuleView>> {
        self.get_object(tenant, &format!("/api/v1/rules/{name}")).await
    }

    /// Creates or replaces a rule; a refusal carries the server's validation message.
    pub async fn put_rule(&self, tenant: &str, name: &str, spec: &AlertRuleSpec) -> Result<Result<RuleView, Refusal>> {
        let mut spec = spec.clone();
        spec.tenant = None;
        self.put_object(tenant, &format!("/api/v1/rules/{name}"), serde_json::to_value(&spec).expect("serializes"))
            .await
    }

    pub async fn delete_rule(&self, tenant: &str, name: &str) -> Result<bool> {
        self.delete_object(tenant, &format!("/api/v1/rules/{name}")).await
    }

    /// When a series of the rule last changed state (ms), from the history.
    pub async fn last_transition(&self, tenant: &str, rule: &str) -> Result<Option<i64>> {
        let (status, value) =
            self.call(Method::GET, &format!("/api/v1/alerts/history?rule={rule}&limit=1"), Some(tenant), None).await?;
        match status {
            StatusCode::OK => Ok(value["transitions"][0]["at"].as_i64()),
            StatusCode::NOT_FOUND => Ok(None),
            other => Err(unexpected(other, &value)),
        }
    }

    pub async fn get_channel(&self, tenant: &str, name: &str) -> Result<Option<ChannelView>> {
        self.get_object(tenant, &format!("/api/v1/channels/{name}")).await
    }

    pub async fn put_channel(
        &self,
        tenant: &str,
        name: &str,
        spec: &NotificationChannelSpec,
    ) -> Result<Result<ChannelView, Refusal>> {
        let mut spec = spec.clone();
        spec.tenant = None;
        self.put_object(tenant, &format!("/api/v1/channels/{name}"), serde_json::to_value(&spec).expect("serializes"))
            .await
    }

    pub async fn delete_channel(&self, tenant: &str, name: &str) -> Result<bool> {
        self.delete_object(tenant, &format!("/api/v1/channels/{name}")).await
    }

    // --- silences, by name ---

    /// `Ok(None)` when the tenant has no silence of that name (or the tenant does not exist).
    pub async fn get_silence(&self, tenant: &str, name: &str) -> Result<Option<SilenceView>> {
        self.get_object(tenant, &format!("/api/v1/silences/by-name/{name}")).await
    }

    /// Creates the named silence or updates it in place; relative times are resolved by the
    /// server. A refusal carries the server's validation message.
    pub async fn put_silence(
        &self,
        tenant: &str,
        name: &str,
        spec: &SilenceSpec,
    ) -> Result<Result<SilenceView, Refusal>> {
        let mut spec = spec.clone();
        spec.tenant = None;
        let body = serde_json::to_value(&spec).expect("serializes");
        self.put_object(tenant, &format!("/api/v1/silences/by-name/{name}"), body).await
    }

    /// Expires the named silence now; false when there is none that has not ended.
    pub async fn expire_silence(&self, tenant: &str, name: &str) -> Result<bool> {
        self.delete_object(tenant, &format!("/api/v1/silences/by-name/{name}")).await
    }

    async fn get_object<T: DeserializeOwned>(&self, tenant: &str, path: &str) -> Result<Option<T>> {
        let (status, value) = self.call(Method::GET, path, Some(tenant), None).await?;
        match status {
            StatusCode::OK => serde_json::from_value(value)
                .map(Some)
                .map_err(|e| Error::Server { status: 200, detail: format!("unexpected answer: {e}") }),
            StatusCode::NOT_FOUND => Ok(None),
            other => Err(unexpected(other, &value)),
        }
    }

    async fn put_object<T: DeserializeOwned>(
        &self,
        tenant: &str,
        path: &str,
        body: Value,
    ) -> Result<Result<T, Refusal>> {
        let (status, value) = self.call(Method::PUT, path, Some(tenant), Some(body)).await?;
        if status.is_success() {
            return serde_json::from_value(value)
                .map(Ok)
                .map_err(|e| Error::Server { status: status.as_u16(), detail: format!("unexpected answer: {e}") });
        }
        if status.is_client_error() {
            return Ok(Err(Refusal { status: status.as_u16(), detail: detail(&value, "") }));
        }
        Err(unexpected(status, &value))
    }

    async fn delete_object(&self, tenant: &str, path: &str) -> Result<bool> {
        let (status, value) = self.call(Method::DELETE, path, Some(tenant), None).await?;
        match status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            other => Err(unexpected(other, &value)),
        }
    }
}

fn refusal_or<T>(status: StatusCode, value: &Value, ok: T) -> Result<Result<T, Refusal>> {
    if status.is_success() {
        Ok(Ok(ok))
    } else if status.is_client_error() {
        Ok(Err(Refusal { status: status.as_u16(), detail: detail(value, "") }))
    } else {
        Err(unexpected(status, value))
    }
}

fn detail(value: &Value, fallback: &str) -> String {
    match value["detail"].as_str() {
        Some(d) => d.to_string(),
        None => fallback.chars().take(300).collect(),
    }
}

fn unexpected(status: StatusCode, value: &Value) -> Error {
    Error::Server { status: status.as_u16(), detail: detail(value, "") }
}
