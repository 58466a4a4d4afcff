//! Errors of the client, and the classification of provider failures.

use std::fmt;
use std::time::Duration;

use steer_metrics::{AgentMetrics, ErrorClass};
use uuid::Uuid;

/// A failed call: what went wrong, and the metrics record written for it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CallFailure {
    /// The class written to the record.
    pub class: ErrorClass,
    /// The HTTP status, when the provider answered with an error status.
    pub status: Option<u16>,
    /// The provider's own error type or code (`rate_limit_exceeded`,
    /// `overloaded_error`, `insufficient_quota`, ...).
    pub provider_code: Option<String>,
    /// A short, secret-free description.
    pub message: String,
    /// The provider's last retry hint, if any.
    pub retry_after: Option<Duration>,
    /// The record handed to the collector for this call.
    pub metrics: AgentMetrics,
}

impl fmt::Display for CallFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} failed ({}",
            self.metrics.provider, self.metrics.model, self.class
        )?;
        if let Some(s) = self.status {
            write!(f, ", HTTP {s}")?;
        }
        if let Some(c) = &self.provider_code {
            write!(f, ", {c}")?;
        }
        if self.metrics.retries > 0 {
            write!(f, ", after {} retries", self.metrics.retries)?;
        }
        write!(f, "): {}", self.message)
    }
}

/// What is wrong with the client's configuration. Nothing was sent and no
/// record was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A provider's base URL (or endpoint override) is not an http(s) URL.
    #[error("base URL of `{provider}` is not an http(s) URL: {url}")]
    BadBaseUrl {
        /// The provider.
        provider: String,
        /// The URL, credentials redacted.
        url: String,
    },
    /// A provider that has no default endpoint has none configured (Azure OpenAI).
    #[error("no endpoint for `{provider}`: set {env} (e.g. https://NAME.openai.azure.com) or pass it to the client builder")]
    MissingEndpoint {
        /// The provider.
        provider: String,
        /// The environment variable that names it.
        env: &'static str,
    },
    /// AWS Bedrock has no region (the credential chain found none).
    #[error(
        "no AWS region for Bedrock: set AWS_REGION (or AWS_DEFAULT_REGION, or a region in the AWS profile)"
    )]
    MissingRegion,
    /// A custom provider was given a reserved or invalid name.
    #[error("`{0}` cannot name a custom provider (a built-in name, empty or contains '/')")]
    ReservedProviderName(String),
    /// Sinks were given to the builder together with an existing collector.
    #[error("give sinks either to the builder or to the existing collector, not both")]
    SinksAndCollector,
    /// The metrics collector could not be built.
    #[error("cannot build the metrics collector: {0}")]
    Collector(#[from] steer_metrics::BuildError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    /// A provider whose cargo feature is off in this build.
    #[error("{what} is not in this build of steer (cargo feature `{feature}`)")]
    NotBuilt {
        /// The provider.
        what: &'static str,
        /// The feature that adds it.
        feature: &'static str,
    },
    /// A stream was read past its end (no final response).
    #[error("the stream ended without a final response")]
    StreamEnded,
}

/// Everything [`SteerClient`](crate::SteerClient) can fail with.
///
/// Call failures carry the metrics record that was written for the call
/// ([`metrics`](SteerError::metrics)); [`class`](SteerError::class) is the
/// record's error class.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SteerError {
    /// The model cannot be routed to a provider. Nothing was sent and no
    /// record was written.
    #[error("unknown model `{model}`: {reason}")]
    UnknownModel {
        /// The model as given.
        model: String,
        /// Why it could not be routed, and how to fix it.
        reason: String,
    },
    /// The client could not be built, or a provider is not configured.
    #[error("invalid configuration: {0}")]
    Config(ConfigError),
    /// No API key for the provider (checked at call time; recorded as `authentication`).
    #[error("{0}")]
    MissingApiKey(Box<CallFailure>),
    /// The provider answered with an error (HTTP status or error event).
    #[error("{0}")]
    Api(Box<CallFailure>),
    /// An attempt or the whole call ran out of time.
    #[error("{0}")]
    Timeout(Box<CallFailure>),
    /// Connection refused or reset, DNS, TLS, or a body cut short.
    #[error("{0}")]
    Network(Box<CallFailure>),
    /// The provider's answer could not be understood (malformed JSON, too large).
    #[error("{0}")]
    InvalidResponse(Box<CallFailure>),
}

impl SteerError {
    /// The details of a failed call (`None` for routing/configuration errors).
    pub fn failure(&self) -> Option<&CallFailure> {
        match self {
            SteerError::MissingApiKey(f)
            | SteerError::Api(f)
            | SteerError::Timeout(f)
            | SteerError::Network(f)
            | SteerError::InvalidResponse(f) => Some(f),
            SteerError::UnknownModel { .. } | SteerError::Config(_) => None,
        }
    }

    /// The metrics record written for the call, if one was.
    pub fn metrics(&self) -> Option<&AgentMetrics> {
        self.failure().map(|f| &f.metrics)
    }

    /// The call's request id, if a call was made.
    pub fn request_id(&self) -> Option<Uuid> {
        self.metrics().map(|m| m.request_id)
    }

    /// The error class (routing and configuration errors are `invalid_request`).
    pub fn class(&self) -> ErrorClass {
        self.failure().map_or(ErrorClass::InvalidRequest, |f| f.class)
    }

    /// The HTTP status, if the provider answered with one.
    pub fn status(&self) -> Option<u16> {
        self.failure().and_then(|f| f.status)
    }

    /// Whether another call might succeed (rate limit, timeout, 5xx, network).
    pub fn is_transient(&self) -> bool {
        self.failure().is_some_and(|f| f.class.is_transient())
    }
}

/// What an attempt failure becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    MissingKey,
    Api,
    Timeout,
    Network,
    InvalidResponse,
}

/// One failed attempt, before it becomes a [`SteerError`].
#[derive(Debug, Clone)]
pub(crate) struct AttemptError {
    pub kind: FailureKind,
    pub class: ErrorClass,
    pub retryable: bool,
    pub status: Option<u16>,
    pub provider_code: Option<String>,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// What was known of the answer at the failure (e.g. a content-filtered answer).
    pub partial: Option<Box<Partial>>,
}

/// An answer that still failed (e.g. stopped by a content filter): its
/// usage, finish reason and model are measured all the same.
pub(crate) type Partial = crate::providers::Completion;

impl AttemptError {
    pub fn new(kind: FailureKind, class: ErrorClass, message: impl Into<String>) -> Self {
        AttemptError {
            kind,
            class,
            retryable: class.is_transient(),
            status: None,
            provider_code: None,
            message: message.into(),
            retry_after: None,
            partial: None,
        }
    }

    pub fn timeout(after: Duration) -> Self {
        Self::new(
            FailureKind::Timeout,
            ErrorClass::Timeout,
            format!("no answer within {} ms", after.as_millis()),
        )
    }

    pub fn network(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Network, ErrorClass::Network, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(FailureKind::InvalidResponse, ErrorClass::Unknown, message)
    }

    /// From a reqwest error (never includes the URL's query or headers).
    pub fn from_reqwest(e: &reqwest::Error, timeout: Duration) -> Self {
        if e.is_timeout() {
            return Self::timeout(timeout);
        }
        let what = if e.is_connect() {
            "connection failed"
        } else if e.is_body() || e.is_decode() {
            "response body interrupted"
        } else {
            "request failed"
        };
        // The source chain says e.g. "connection reset"; the URL is
        // stripped so nothing from it leaks.
        let mut msg = what.to_string();
        let mut src = std::error::Error::source(e);
        let mut depth = 0;
        while let Some(s) = src {
            if depth == 3 {
                break;
            }
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
            depth += 1;
        }
        Self::network(msg)
    }

    pub fn into_steer(self, metrics: AgentMetrics) -> SteerError {
        let failure = Box::new(CallFailure {
            class: self.class,
            status: self.status,
            provider_code: self.provider_code,
            message: self.message,
            retry_after: self.retry_after,
            metrics,
        });
        match self.kind {
            FailureKind::MissingKey => SteerError::MissingApiKey(failure),
            FailureKind::Api => SteerError::Api(failure),
            FailureKind::Timeout => SteerError::Timeout(failure),
            FailureKind::Network => SteerError::Network(failure),
            FailureKind::InvalidResponse => SteerError::InvalidResponse(failure),
        }
    }
}

/// Classify a provider error from its HTTP status (if any) and the
/// provider's error type / code. Returns the class and whether to retry.
pub(crate) fn classify(
    status: Option<u16>,
    error_type: Option<&str>,
    code: Option<&str>,
) -> (ErrorClass, bool) {
    // Specific provider codes first: they refine or override the status.
    for c in [code, error_type].into_iter().flatten() {
        match c {
            "insufficient_quota" | "billing_hard_limit_reached" => return (ErrorClass::RateLimit, false),
            "content_filter" | "content_policy_violation" => return (ErrorClass::ContentFilter, false),
            "model_not_found" | "not_found_error" => return (ErrorClass::NotFound, false),
            "invalid_api_key" | "authentication_error" | "API_KEY_INVALID" | "UNAUTHENTICATED" => {
                return (ErrorClass::Authentication, false)
            }
            "PERMISSION_DENIED" => return (ErrorClass::PermissionDenied, false),
            "permission_error" => return (ErrorClass::PermissionDenied, false),
            "rate_limit_exceeded" | "rate_limit_error" | "overloaded_error" => {
                return (ErrorClass::RateLimit, true)
            }
            _ => {}
        }
    }
    if let Some(s) = status {
        return match s {
            401 => (ErrorClass::Authentication, false),
            403 => (ErrorClass::PermissionDenied, false),
            404 => (ErrorClass::NotFound, false),
            408 => (ErrorClass::Timeout, true),
            429 | 529 => (ErrorClass::RateLimit, true),
            400 | 409 | 413 | 422 => (ErrorClass::InvalidRequest, false),
            500..=599 => (ErrorClass::ServerError, true),
            _ => (ErrorClass::Unknown, false),
        };
    }
    match error_type {
        Some("invalid_request_error" | "INVALID_ARGUMENT" | "FAILED_PRECONDITION") => {
            (ErrorClass::InvalidRequest, false)
        }
        Some("RESOURCE_EXHAUSTED") => (ErrorClass::RateLimit, true),
        Some("NOT_FOUND") => (ErrorClass::NotFound, false),
        Some("UNAVAILABLE" | "INTERNAL") => (ErrorClass::ServerError, true),
        Some("DEADLINE_EXCEEDED") => (ErrorClass::Timeout, true),
        Some("api_error" | "server_error") => (ErrorClass::ServerError, true),
        Some("timeout_error") => (ErrorClass::Timeout, true),
        _ => (ErrorClass::Unknown, false),
    }
}

/// Parse an error body of either provider:
/// OpenAI `{"error": {"message", "type", "code"}}`,
/// Anthropic `{"type": "error", "error": {"type", "message"}}`.
/// Returns (type, code, message).
pub(crate) fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, None, None);
    };
    let err = match v.get("error") {
        Some(e) if e.is_object() => e,
        Some(serde_json::Value::String(s)) => return (None, None, Some(s.clone())),
        _ => &v,
    };
    let s = |k: &str| err.get(k).and_then(|x| x.as_str()).map(str::to_string);
    // Google APIs: a numeric `code`, the canonical `status`
    // (`RESOURCE_EXHAUSTED`, ...) and `details[].reason` (`API_KEY_INVALID`).
    let reason = err
        .get("details")
        .and_then(|d| d.as_array())
        .and_then(|d| d.iter().find_map(|x| x.get("reason").and_then(|r| r.as_str())))
        .map(str::to_string);
    let code = match err.get("code") {
        Some(serde_json::Value::String(c)) => Some(c.clone()),
        _ => reason,
    };
    (s("type").or_else(|| s("status")), code, s("message"))
}

/// A retry delay given in an error body (Google's `RetryInfo.retryDelay`,
/// e.g. `"37s"`), for answers without a `Retry-After` header.
pub(crate) fn body_retry_delay(body: &[u8]) -> Option<Duration> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let delay = v
        .get("error")?
        .get("details")?
        .as_array()?
        .iter()
        .find_map(|d| d.get("retryDelay").and_then(|r| r.as_str()))?;
    let secs: f64 = delay.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// Replace every occurrence of `secret` in `text`, then hide whatever else
/// looks like a secret (URL passwords, `token=`/`key=`/... parameters) with
/// the shared [`steer_metrics::redact`]. Redact before truncating, never after.
pub(crate) fn redact(text: &str, secret: Option<&str>) -> String {
    let text = match secret {
        Some(k) if k.len() >= 4 && text.contains(k) => text.replace(k, "[REDACTED]"),
        _ => text.to_string(),
    };
    steer_metrics::redact::redact(&text)
}

/// Keep messages short (a provider may echo a whole prompt). Redact first.
pub(crate) fn truncate(s: String, max: usize) -> String {
    steer_metrics::redact::truncate(s, max)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn classification_by_status_and_provider_type() {
        use ErrorClass::*;
        assert_eq!(
            classify(Some(401), Some("invalid_request_error"), Some("invalid_api_key")),
            (Authentication, false)
        );
        assert_eq!(
            classify(Some(429), Some("requests"), Some("rate_limit_exceeded")),
            (RateLimit, true)
        );
        assert_eq!(
            classify(Some(429), Some("insufficient_quota"), Some("insufficient_quota")),
            (RateLimit, false)
        );
        assert_eq!(
            classify(Some(404), Some("invalid_request_error"), Some("model_not_found")),
            (NotFound, false)
        );
        assert_eq!(
            classify(Some(400), Some("invalid_request_error"), Some("content_filter")),
            (ContentFilter, false)
        );
        assert_eq!(
            classify(Some(400), Some("invalid_request_error"), None),
            (InvalidRequest, false)
        );
        assert_eq!(
            classify(Some(529), Some("overloaded_error"), None),
            (RateLimit, true)
        );
        assert_eq!(
            classify(Some(403), Some("permission_error"), None),
            (PermissionDenied, false)
        );
        assert_eq!(classify(Some(500), Some("api_error"), None), (ServerError, true));
        assert_eq!(classify(Some(503), None, None), (ServerError, true));
        assert_eq!(classify(Some(418), None, None), (Unknown, false));
        // Stream error events have no status.
        assert_eq!(classify(None, Some("overloaded_error"), None), (RateLimit, true));
        assert_eq!(classify(None, Some("api_error"), None), (ServerError, true));
        assert_eq!(
            classify(None, Some("invalid_request_error"), None),
            (InvalidRequest, false)
        );
    }

    #[test]
    fn error_bodies_of_both_providers() {
        let oa = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        assert_eq!(
            parse_error_body(oa),
            (
                Some("requests".into()),
                Some("rate_limit_exceeded".into()),
                Some("Rate limit reached".into())
            )
        );
        let an = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            parse_error_body(an),
            (Some("overloaded_error".into()), None, Some("Overloaded".into()))
        );
        assert_eq!(parse_error_body(b"<html>"), (None, None, None));
        assert_eq!(
            parse_error_body(br#"{"error":"model not found"}"#).2.as_deref(),
            Some("model not found")
        );
    }

    #[test]
    fn redaction_and_truncation() {
        assert_eq!(
            redact("bad key sk-123456", Some("sk-123456")),
            "bad key [REDACTED]"
        );
        assert_eq!(redact("x", None), "x");
        assert_eq!(truncate("ééé".to_string(), 3), "é…");
    }
}
