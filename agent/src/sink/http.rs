//! HTTP transport: `POST /api/v1/metrics/bulk`, and what each answer means for the batch.

use std::path::Path;
use std::time::Duration;

use reqwest::{StatusCode, header};

use super::Delivery;
use crate::config::Secret;
use crate::error::{Error, Result};
use crate::sample::Batch;

use super::{CONNECT_TIMEOUT, REQUEST_TIMEOUT};
/// A `Retry-After` longer than this is treated as this: the spool keeps growing meanwhile.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// `POST {server}/api/v1/metrics/bulk` with a bearer token.
#[derive(Debug, Clone)]
pub struct HttpSink {
    client: reqwest::Client,
    pub(super) url: reqwest::Url,
    token: Secret,
}

impl HttpSink {
    /// `ca_file`: trust only these CAs for `https://` (see `--ca-file`).
    pub fn new(server: &reqwest::Url, token: Secret, ca_file: Option<&Path>) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("microdash-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // Following a redirect would turn the POST into a GET and lose the body.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca_file {
            builder = builder.tls_built_in_root_certs(false);
            for cert in super::tls::read_ca_file(path)? {
                let cert = reqwest::Certificate::from_der(&cert)
                    .map_err(|e| Error::config(format!("--ca-file {}: {e}", path.display())))?;
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self { client: builder.build()?, url: bulk_url(server), token })
    }

    pub async fn send(&self, batch: &Batch) -> Delivery {
        let response = self
            .client
            .post(self.url.clone())
            .bearer_auth(&self.token.0)
            .header(header::CONTENT_TYPE, "application/json")
            .body(batch.body.clone())
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                return Delivery::Failed { reason: error_chain(&error) };
            }
        };
        let status = response.status();
        if status.is_success() {
            // Reading the small `{"accepted":N,...}` answer lets the connection be reused.
            let _ = response.bytes().await;
            return Delivery::Delivered;
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            return Delivery::Throttled {
                reason: format!("HTTP {status}"),
                retry_after: retry_after(response.headers()),
            };
        }
        if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
            return Delivery::Failed { reason: format!("HTTP {status}") };
        }
        let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response.bytes().await.unwrap_or_default();
        let detail = match location {
            Some(location) if status.is_redirection() => {
                format!("redirected to {location}; point --server at the final URL")
            }
            _ => problem_detail(&body),
        };
        Delivery::Rejected { reason: format!("HTTP {status}: {detail}") }
    }
}

fn bulk_url(server: &reqwest::Url) -> reqwest::Url {
    let mut url = server.clone();
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}/api/v1/metrics/bulk"));
    url
}

/// `Retry-After` in seconds (the HTTP-date form is rare for APIs and falls back to backoff).
fn retry_after(headers: &header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// The `detail` (or `title`) of an `application/problem+json` body, else the start of the body.
fn problem_detail(body: &[u8]) -> String {
    if let Ok(problem) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["detail", "title"] {
            if let Some(text) = problem.get(key).and_then(|v| v.as_str()) {
                return text.to_owned();
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() { "(empty body)".to_owned() } else { text.chars().take(300).collect() }
}

/// reqwest's top-level message is often just "error sending request"; the cause says why.
pub(super) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source in their own message.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bulk_url_keeps_a_path_prefix() {
        let url = |s: &str| bulk_url(&s.parse().unwrap()).to_string();
        assert_eq!(url("http://md:8080"), "http://md:8080/api/v1/metrics/bulk");
        assert_eq!(url("https://x.example/microdash/"), "https://x.example/microdash/api/v1/metrics/bulk");
    }

    #[test]
    fn problem_details_are_read_from_the_body() {
        assert_eq!(
            problem_detail(br#"{"title":"Bad sample","detail":"sample 3: metric name"}"#),
            "sample 3: metric name"
        );
        assert_eq!(problem_detail(br#"{"title":"Unauthorized"}"#), "Unauthorized");
        assert_eq!(problem_detail(b"plain words\n"), "plain words");
        assert_eq!(problem_detail(b""), "(empty body)");
    }

    #[test]
    fn retry_after_is_seconds_and_capped() {
        let mut headers = header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(header::RETRY_AFTER, "99999".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
