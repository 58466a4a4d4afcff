//! HTTP: the two endpoints, headers, and the classification of responses
//! into delivered / retryable / throttled / too large / rejected.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use steer_metrics::http::status_kind;
use steer_metrics::SinkErrorKind;
use url::Url;

use crate::config::{Compression, ConfigError, DatadogConfig};

/// Which Datadog endpoint a body goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /api/v2/series` (counts).
    Series,
    /// `POST /api/v1/distribution_points` (latency, TTFT).
    Distributions,
}

impl Endpoint {
    /// The path under the API base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Series => "api/v2/series",
            Endpoint::Distributions => "api/v1/distribution_points",
        }
    }
}

/// What came of one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// Timeout, connection error, 408 or 5xx: try again later.
    Retryable(String),
    /// 429 (or a 5xx with `Retry-After`): try again after this long.
    Throttled(Duration, String),
    /// 413: the body is too large; split it.
    TooLarge(String),
    /// 400 and other 4xx: something in the body is refused; isolate it.
    Rejected(String),
    /// 401/403: the key is wrong; nothing sent with it will pass.
    Unauthorized(String),
}

/// `Retry-After` (the shared parser, capped at
/// [`MAX_RETRY_AFTER`](steer_metrics::http::MAX_RETRY_AFTER)).
pub use steer_metrics::http::parse_retry_after;
#[cfg(test)]
use steer_metrics::http::DEFAULT_THROTTLE;

/// Classify a response status ([`status_kind`], the shared mapping; a 413
/// is [`Outcome::TooLarge`] so the body is split, a 404 means the site or
/// URL is wrong).
pub fn classify(status: StatusCode, retry_after: Option<Duration>, detail: String) -> Outcome {
    let msg = format!("HTTP {}: {}", status.as_u16(), detail);
    match status_kind(status.as_u16(), retry_after) {
        None => Outcome::Delivered,
        Some(SinkErrorKind::Throttled(d)) => Outcome::Throttled(d, msg),
        Some(SinkErrorKind::Retryable) => Outcome::Retryable(msg),
        Some(SinkErrorKind::Misconfigured) => Outcome::Unauthorized(msg),
        Some(SinkErrorKind::Permanent) if status == StatusCode::PAYLOAD_TOO_LARGE => Outcome::TooLarge(msg),
        Some(SinkErrorKind::Permanent) => Outcome::Rejected(msg),
    }
}

/// The HTTP client for one sink.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    series: Url,
    distributions: Url,
    compression: Compression,
    timeout: Duration,
}

impl Client {
    pub(crate) fn new(cfg: &DatadogConfig) -> Result<Self, ConfigError> {
        let mut headers = HeaderMap::new();
        let mut key = HeaderValue::from_str(cfg.api_key.expose()).map_err(|_| ConfigError::InvalidApiKey)?;
        key.set_sensitive(true);
        headers.insert("DD-API-KEY", key);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match cfg.compression {
            Compression::Gzip => {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            Compression::Deflate => {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("deflate"));
            }
            Compression::None => {}
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("steer-sink-datadog/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ConfigError::Http)?;
        let join = |p: &str| {
            cfg.base_url
                .join(p)
                .map_err(|_| ConfigError::UnknownSite(cfg.base_url.to_string()))
        };
        Ok(Client {
            http,
            series: join(Endpoint::Series.path())?,
            distributions: join(Endpoint::Distributions.path())?,
            compression: cfg.compression,
            timeout: cfg.timeout,
        })
    }

    pub(crate) fn compression(&self) -> Compression {
        self.compression
    }

    /// POST one (already compressed) body.
    pub(crate) async fn post(&self, endpoint: Endpoint, body: Vec<u8>) -> Outcome {
        let url = match endpoint {
            Endpoint::Series => self.series.clone(),
            Endpoint::Distributions => self.distributions.clone(),
        };
        let request = self
            .http
            .post(url)
            .timeout(steer_metrics::http::request_timeout(self.timeout))
            .body(body);
        let resp = match request.send().await {
            Ok(r) => r,
            // reqwest's message names the URL, never the headers.
            Err(e) => return Outcome::Retryable(format!("{} request failed: {e}", endpoint.path())),
        };
        let status = resp.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let detail = resp.text().await.unwrap_or_default();
        let detail = steer_metrics::redact::truncate_str(&detail, 300);
        classify(
            status,
            retry_after,
            format!("{} {}", endpoint.path(), detail.trim()),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn responses_are_classified() {
        let c = |s: u16, ra: Option<u64>| {
            classify(
                StatusCode::from_u16(s).unwrap(),
                ra.map(Duration::from_secs),
                String::new(),
            )
        };
        assert_eq!(c(202, None), Outcome::Delivered);
        assert!(matches!(c(408, None), Outcome::Retryable(_)));
        assert!(matches!(c(503, None), Outcome::Retryable(_)));
        assert!(matches!(c(503, Some(4)), Outcome::Throttled(d, _) if d == Duration::from_secs(4)));
        assert!(matches!(c(429, Some(7)), Outcome::Throttled(d, _) if d == Duration::from_secs(7)));
        assert!(matches!(c(429, None), Outcome::Throttled(d, _) if d == DEFAULT_THROTTLE));
        assert!(matches!(c(413, None), Outcome::TooLarge(_)));
        assert!(matches!(c(400, None), Outcome::Rejected(_)));
        assert!(matches!(c(403, None), Outcome::Unauthorized(_)));
    }
}
