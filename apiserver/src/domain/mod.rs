//! The domain: samples, series, tenants and tokens. Pure types and rules, no I/O.

pub mod sample;
pub mod token;

pub use sample::{Labels, Limits, Sample, SampleError};
pub use token::{Principal, Token, TokenHash};

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
