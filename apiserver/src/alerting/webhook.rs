//! Webhook delivery: one JSON POST per attempt, signed with HMAC-SHA256 when a secret is set,
//! with the notification's `Idempotency-Key` so receivers can drop repeats.

use std::time::Duration;

use hmac::{Hmac, Mac};
use microdash_model::WebhookSpec;
use sha2::Sha256;

use super::send_error::SendError;

/// `sha256=` and the hex HMAC-SHA256 of the body: GitHub's convention, which most receivers
/// already know how to check.
pub const SIGNATURE_HEADER: &str = "X-Microdash-Signature";

pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends one attempt; returns the HTTP status on a 2xx.
pub async fn send(
    client: &reqwest::Client,
    spec: &WebhookSpec,
    timeout: Duration,
    idempotency_key: &str,
    body: &[u8],
) -> Result<u16, SendError> {
    let mut request = client
        .post(spec.url.trim())
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", idempotency_key)
        .header(reqwest::header::USER_AGENT, concat!("microdash/", env!("CARGO_PKG_VERSION")));
    for (name, value) in &spec.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    if let Some(secret) = &spec.hmac_secret {
        request = request.header(SIGNATURE_HEADER, signature(secret, body));
    }
    let response = request.body(body.to_vec()).send().await.map_err(|e| {
        let what = if e.is_timeout() {
            format!("timed out after {}", microdash_model::format_duration(timeout))
        } else if e.is_connect() {
            "could not connect".to_string()
        } else {
            "request failed".to_string()
        };
        // The URL may hold a token: name the failure, not the URL.
        SendError::temporary(None, format!("{what}: {}", error_chain(&e)))
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(status.as_u16());
    }
    // The status and its reason phrase only: the receiver's body is not shown back to the
    // tenant (a channel aimed at an internal service would otherwise read it out).
    let message =
        format!("HTTP {} {}", status.as_u16(), status.canonical_reason().unwrap_or("")).trim_end().to_string();
    // A 4xx other than timeout / rate limit will not get better by retrying the same request.
    let permanent = status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429;
    Err(SendError { status_code: Some(status.as_u16()), message, permanent })
}

/// The innermost cause of a reqwest error, without the URL reqwest puts in its message.
fn error_chain(err: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(err);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    last.unwrap_or_else(|| err.without_url_string())
}

trait WithoutUrl {
    fn without_url_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_string(&self) -> String {
        let mut copy = String::new();
        use std::fmt::Write;
        let _ = write!(copy, "{}", self);
        match self.url() {
            Some(url) => copy.replace(url.as_str(), "<url>"),
            None => copy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_a_known_vector() {
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
