//! One reconciler per resource, each a thin `reconcile` wrapped in the finalizer helper with
//! the work in `apply` and `cleanup`.

pub mod alert_rule;
pub mod binding;
pub mod channel;
pub mod microdash;
pub mod silence;
pub mod tenant;
#[cfg(test)]
pub(crate) mod verifier;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use crate::context::Context;
use crate::error::Error;

/// The finalizer that keeps a resource until the server has forgotten it.
pub const FINALIZER: &str = "microdash.io/cleanup";

/// Shared `error_policy`: log, count, and retry with a backoff per object.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    controller: &'static str,
    obj: &K,
    error: &Error,
    ctx: &Context,
) -> Action {
    let key = format!("{controller}/{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    let wait = ctx.failed(&key);
    ctx.metrics.failed(controller, error.metric_label());
    tracing::warn!(controller, object = %key, error = %error, retry_in = ?wait, "Reconcile failed.");
    Action::requeue(wait)
}

/// Runs one reconcile, records its duration, and forgets past failures when it worked.
pub async fn measured<K, F>(controller: &'static str, obj: &K, ctx: &Arc<Context>, work: F) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: Future<Output = Result<Action, Error>>,
{
    let started = Instant::now();
    let result = work.await;
    ctx.metrics.reconciled(controller, started.elapsed());
    if result.is_ok() {
        ctx.succeeded(&format!("{controller}/{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()));
    }
    result
}

/// The condition message when the operator may not read or write Secrets in `namespace`.
pub fn secrets_forbidden(namespace: &str, what: &str) -> String {
    format!(
        "the operator may not read or write Secrets in namespace {namespace} ({what}): add {namespace} to the \
         chart's rbac.secretNamespaces (helm upgrade --reuse-values --set 'rbac.secretNamespaces={{...}}')"
    )
}

/// Whether a deleted object stops waiting for the server after `error`: at once when its
/// installation is gone or being deleted (nothing will ever answer), and once `timeout` has
/// passed since the deletion began when the server does not answer or refuses.
pub fn cleanup_gives_up(error: &Error, deleting_since: Option<&Time>, timeout: Duration) -> bool {
    match error {
        Error::Installation(_) | Error::NoServer(_) => true,
        Error::Unreachable { .. } | Error::Server { .. } | Error::Secret(_) => deleting_since.is_some_and(|since| {
            let waited = k8s_openapi::jiff::Timestamp::now().duration_since(since.0);
            waited.as_millis() >= timeout.as_millis() as i128
        }),
        _ => false,
    }
}

/// Ends a cleanup: done when the server forgot the object; when the server is gone (see
/// [`cleanup_gives_up`]) lets the object go all the same, with a Warning Event `CleanupAbandoned`
/// that says what may be left on the server; otherwise the error, to be retried.
pub async fn finish_cleanup<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    outcome: Result<(), Error>,
    left: impl FnOnce() -> String,
) -> Result<Action, Error> {
    match outcome {
        Ok(()) => Ok(Action::await_change()),
        Err(error) if cleanup_gives_up(&error, obj.meta().deletion_timestamp.as_ref(), ctx.cleanup_timeout) => {
            let left = left();
            tracing::warn!(object = %obj.name_any(), %error, %left, "Gave up cleaning up on the server.");
            let note = format!("gave up cleaning up on the server ({error}); {left} may be left there");
            ctx.event(obj, true, "CleanupAbandoned", note).await;
            Ok(Action::await_change())
        }
        Err(error) => Err(error),
    }
}

/// `finalizer` errors back to the crate's error, keeping the inner reconcile error as it was.
pub fn from_finalizer(error: kube::runtime::finalizer::Error<Error>) -> Error {
    use kube::runtime::finalizer::Error as F;
    match error {
        F::ApplyFailed(e) | F::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    }
}

/// Now, as an RFC 3339 string.
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// Unix milliseconds as RFC 3339.
pub fn ms_rfc3339(ms: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default()
}
