//! The operator's one error type.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("microdash server unreachable at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("microdash server answered {status}: {detail}")]
    Server { status: u16, detail: String },
    #[error("no microdash server to talk to: {0}")]
    NoServer(String),
    /// The installation a Tenant names is missing or being deleted, or several could be meant.
    #[error("{0}")]
    Installation(String),
    #[error("Secret {0}")]
    Secret(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The Kubernetes API refused the operator (HTTP 403): its RBAC does not allow the call.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(status)) if status.code == 403)
    }

    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Unreachable { .. } => "unreachable",
            Error::Server { .. } => "server",
            Error::NoServer(_) => "no_server",
            Error::Installation(_) => "installation",
            Error::Secret(_) => "secret",
            Error::Invalid(_) => "invalid",
        }
    }
}

/// Exponential backoff for failed reconciles: 1s, 2s, 4s … capped at 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.min(9);
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(8), Duration::from_secs(256));
        assert_eq!(backoff(9), Duration::from_secs(300));
        assert_eq!(backoff(40), Duration::from_secs(300));
    }
}
