//! Rule and channel management, shared by the HTTP API and `microdash apply`: one parser,
//! one validation, one way to store, so both paths accept and refuse the same specs.

use microdash_model::{
    AlertRuleSpec, FieldError, NotificationChannelSpec, SECRET_PLACEHOLDER, ValidationErrors,
    alerting::validate_object_name,
};
use serde::de::DeserializeOwned;

use crate::domain::now_ms;
use crate::storage::alerts::SpecKind;
use crate::storage::{DynStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The document does not parse as the spec (wrong type, unknown field…).
    #[error("{}: {}", .0.field, .0.message)]
    Malformed(FieldError),
    #[error("{0}")]
    Invalid(ValidationErrors),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SpecError {
    pub fn errors(&self) -> Vec<FieldError> {
        match self {
            SpecError::Malformed(e) => vec![e.clone()],
            SpecError::Invalid(errors) => errors.0.clone(),
            SpecError::Store(_) => Vec::new(),
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> SpecError {
    SpecError::Invalid(ValidationErrors(vec![FieldError { field: field.into(), message: message.into() }]))
}

/// Reads a spec from JSON, naming the field of the first mistake (`condition.op`, `forr`).
pub fn parse_spec<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, SpecError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        // The path ends at the offending field, unknown ones included; "." is the whole body.
        let field = if path == "." { "body".to_string() } else { path };
        SpecError::Malformed(FieldError { field, message })
    })
}

fn check_name(name: &str) -> Result<(), SpecError> {
    validate_object_name(name).map_err(|e| invalid("name", format!("{name:?}: a name {e}")))
}

/// Validates and stores a rule; returns true when it was created.
pub async fn put_rule(
    store: &DynStore,
    tenant_id: i64,
    name: &str,
    mut spec: AlertRuleSpec,
    create_only: bool,
) -> Result<bool, SpecError> {
    check_name(name)?;
    spec.validate().map_err(SpecError::Invalid)?;
    spec.tenant = None;
    let json = serde_json::to_string(&spec).expect("specs serialize");
    Ok(store.put_spec(SpecKind::Rule, tenant_id, name, &json, now_ms(), create_only).await?)
}

/// Validates and stores a channel; a secret sent back as `<set>` keeps the stored one.
pub async fn put_channel(
    store: &DynStore,
    tenant_id: i64,
    name: &str,
    mut spec: NotificationChannelSpec,
    create_only: bool,
) -> Result<bool, SpecError> {
    check_name(name)?;
    if let Some(previous) = store.get_spec(SpecKind::Channel, tenant_id, name).await? {
        let previous: NotificationChannelSpec = serde_json::from_str(&previous.spec).map_err(StoreError::corrupt)?;
        spec.keep_secrets_from(&previous);
    }
    if spec.webhook.as_ref().and_then(|w| w.hmac_secret.as_deref()) == Some(SECRET_PLACEHOLDER) {
        return Err(invalid(
            "webhook.hmacSecret",
            "`<set>` stands for a stored secret, and there is none: send the secret",
        ));
    }
    if spec.email.as_ref().and_then(|e| e.smtp.password.as_deref()) == Some(SECRET_PLACEHOLDER) {
        return Err(invalid(
            "email.smtp.password",
            "`<set>` stands for a stored password, and there is none: send the password",
        ));
    }
    spec.validate().map_err(SpecError::Invalid)?;
    spec.tenant = None;
    let json = serde_json::to_string(&spec).expect("specs serialize");
    Ok(store.put_spec(SpecKind::Channel, tenant_id, name, &json, now_ms(), create_only).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(result: Result<AlertRuleSpec, SpecError>) -> String {
        match result {
            Err(SpecError::Malformed(e)) => e.field,
            other => panic!("expected a malformed spec, got {other:?}"),
        }
    }

    #[test]
    fn parse_errors_name_the_field() {
        let base =
            json!({"metric": "m", "condition": {"aggregation": "avg", "window": "1m", "op": ">", "threshold": 1}});
        let mut v = base.clone();
        v["condition"]["op"] = json!("=>");
        assert_eq!(field_of(parse_spec(v)), "condition.op");
        let mut v = base.clone();
        v["forr"] = json!("1m");
        assert_eq!(field_of(parse_spec(v)), "forr");
        let mut v = base.clone();
        v["condition"]["treshold"] = json!(1);
        assert_eq!(field_of(parse_spec(v)), "condition.treshold");
        let mut v = base.clone();
        v.as_object_mut().unwrap().remove("metric");
        assert_eq!(field_of(parse_spec(v)), "body");
        let mut v = base;
        v["condition"]["threshold"] = json!("high");
        assert_eq!(field_of(parse_spec(v)), "condition.threshold");
    }
}
