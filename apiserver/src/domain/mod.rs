//! The domain: samples, series, tenants, tokens and the alert state machine. Pure types and
//! rules, no I/O: storage and the alert engine both build on it.

pub mod alerting;
pub mod exporter;
pub mod promql;
pub mod promql_eval;
pub mod sample;
pub mod token;

pub use sample::{Labels, Limits, Sample, SampleError};
pub use token::{Principal, Token, TokenHash};

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
