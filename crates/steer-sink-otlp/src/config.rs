//! Configuration: the [`OtlpSinkBuilder`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use steer_metrics::semconv::{check_tag_keys, TagKeyError};
use url::Url;

/// The default OTLP/HTTP base endpoint.
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";
/// The default OTLP/gRPC endpoint.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// The path OTLP/HTTP appends to a base endpoint for metrics.
pub const METRICS_PATH: &str = "/v1/metrics";

/// How metrics travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP/HTTP with a binary protobuf body (the default).
    #[default]
    HttpProtobuf,
    /// OTLP/gRPC (cargo feature `grpc`). Build the sink inside a Tokio
    /// runtime: the gRPC channel runs on it.
    #[cfg(feature = "grpc")]
    Grpc,
}

/// Whether sums and histograms are cumulative or per export interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Temporality {
    /// Totals since the sink started (the default). A failed export loses
    /// nothing: the next successful one carries the totals.
    #[default]
    Cumulative,
    /// Changes since the previous export. A failed export loses that
    /// interval's changes (the SDK does not retry).
    Delta,
}

/// Why a sink could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The endpoint is not an absolute `http`/`https` URL.
    #[error("invalid OTLP endpoint `{0}`: expected an http:// or https:// URL")]
    InvalidEndpoint(String),
    /// A header name or value is not valid HTTP.
    #[error("invalid header `{0}`")]
    InvalidHeader(String),
    /// The endpoint URL carries a user name or password; HTTP client logs
    /// would show them. Send credentials as a header instead.
    #[error("the OTLP endpoint must not contain credentials: pass them with OtlpSinkBuilder::header (e.g. authorization)")]
    CredentialsInUrl,
    /// The exporter could not be built.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    /// A tag key of [`OtlpSinkBuilder::tag_attributes`] (or `?tags=`)
    /// cannot be an attribute: it collides with a built-in attribute or is
    /// not a valid label name after sanitising.
    #[error("OTLP tag attributes: {0}")]
    TagKey(#[from] TagKeyError),
}

/// Builds an [`OtlpSink`](crate::OtlpSink).
#[must_use]
#[derive(Clone)]
pub struct OtlpSinkBuilder {
    pub(crate) name: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) full_endpoint: bool,
    pub(crate) protocol: Protocol,
    pub(crate) gzip: bool,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) timeout: Duration,
    pub(crate) export_interval: Duration,
    pub(crate) service_name: String,
    pub(crate) resource: BTreeMap<String, String>,
    pub(crate) server_address: Option<String>,
    pub(crate) temporality: Temporality,
    pub(crate) max_series: usize,
    pub(crate) tag_keys: Vec<String>,
}

impl Default for OtlpSinkBuilder {
    fn default() -> Self {
        OtlpSinkBuilder {
            name: "otlp".into(),
            endpoint: None,
            full_endpoint: false,
            protocol: Protocol::default(),
            gzip: true,
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            export_interval: Duration::from_secs(10),
            service_name: "steer".into(),
            resource: BTreeMap::new(),
            server_address: None,
            temporality: Temporality::default(),
            max_series: 1000,
            tag_keys: Vec::new(),
        }
    }
}

impl fmt::Debug for OtlpSinkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values (API keys) and URL credentials never appear.
        f.debug_struct("OtlpSinkBuilder")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint.as_deref().map(redact_url))
            .field("protocol", &self.protocol)
            .field("gzip", &self.gzip)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("export_interval", &self.export_interval)
            .field("service_name", &self.service_name)
            .field("server_address", &self.server_address)
            .field("temporality", &self.temporality)
            .field("max_series", &self.max_series)
            .field("tag_keys", &self.tag_keys)
            .finish_non_exhaustive()
    }
}

/// A URL with any user name and password replaced by `***`.
pub fn redact_url(s: &str) -> String {
    // A user name alone may be a token here: hide all of the userinfo, then
    // apply the one shared redaction (passwords, `api_key=`, `token=`, ...).
    let masked = match Url::parse(s) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("***");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => s.to_string(),
    };
    steer_metrics::redact::redact(&masked)
}

impl OtlpSinkBuilder {
    /// The sink's name in collector stats and reports (default `otlp`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The collector's base URL (default `http://localhost:4318` for HTTP,
    /// `http://localhost:4317` for gRPC). For HTTP, `/v1/metrics` is
    /// appended unless the URL already ends with it.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self.full_endpoint = false;
        self
    }

    /// The exact URL to POST metrics to (HTTP; nothing is appended).
    pub fn metrics_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self.full_endpoint = true;
        self
    }

    /// Transport (default [`Protocol::HttpProtobuf`]).
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Gzip request bodies (default `true`).
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    /// Add a request header (e.g. an API key); its value is never logged.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Time limit of one export request (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time between periodic exports (default 10 s). `flush()` exports
    /// at once whatever the interval.
    pub fn export_interval(mut self, interval: Duration) -> Self {
        self.export_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The resource's `service.name` (default `steer`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// Another resource attribute (e.g. `deployment.environment.name`).
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.resource.insert(key.into(), value.into());
        self
    }

    /// The `server.address` attribute put on every series (default: none).
    pub fn server_address(mut self, address: impl Into<String>) -> Self {
        self.server_address = Some(address.into());
        self
    }

    /// Cumulative (default) or delta sums and histograms.
    pub fn temporality(mut self, t: Temporality) -> Self {
        self.temporality = t;
        self
    }

    /// At most this many (provider, request model, response model, finish
    /// reason, allow-listed tag values) series (default 1000); records of
    /// further ones are folded into `other`.
    pub fn max_series(mut self, n: usize) -> Self {
        self.max_series = n;
        self
    }

    /// Export these record tags as attributes of every series (default:
    /// none), e.g. `["user", "team"]`: the attribute key is the tag key, the
    /// value the record's tag value (cut to 256 bytes); a record without
    /// the tag gets no such attribute. Each distinct combination is a
    /// series under [`max_series`](Self::max_series). The same as
    /// `?tags=user,team` in [`OtlpSink::from_url`](crate::OtlpSink::from_url).
    /// Replaces any earlier list.
    ///
    /// # Errors
    /// [`ConfigError::TagKey`] for a key that is a built-in attribute
    /// (`gen_ai.request.model`, `error.type`, ... in either naming) or not
    /// a valid Prometheus label name after sanitising (empty, a leading
    /// digit or `__`), or two keys that sanitise to the same label.
    pub fn tag_attributes<I, S>(mut self, keys: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.tag_keys = check_tag_keys(keys)?;
        Ok(self)
    }

    /// The URL the exporter is given, validated.
    pub(crate) fn resolved_endpoint(&self) -> Result<String, ConfigError> {
        let grpc = self.is_grpc();
        let raw = self.endpoint.clone().unwrap_or_else(|| {
            if grpc {
                DEFAULT_GRPC_ENDPOINT.into()
            } else {
                DEFAULT_HTTP_ENDPOINT.into()
            }
        });
        let url = Url::parse(raw.trim()).map_err(|_| ConfigError::InvalidEndpoint(redact_url(&raw)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ConfigError::InvalidEndpoint(redact_url(&raw)));
        }
        if grpc || self.full_endpoint {
            return Ok(url.to_string());
        }
        Ok(metrics_url(url))
    }

    fn is_grpc(&self) -> bool {
        #[cfg(feature = "grpc")]
        {
            self.protocol == Protocol::Grpc
        }
        #[cfg(not(feature = "grpc"))]
        {
            false
        }
    }
}

/// A base URL with `/v1/metrics` appended (unless it is there already).
fn metrics_url(mut url: Url) -> String {
    let path = url.path().trim_end_matches('/').to_string();
    if !path.ends_with(METRICS_PATH) {
        url.set_path(&format!("{path}{METRICS_PATH}"));
    }
    url.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_get_the_metrics_path_once() {
        let e = |u: &str| {
            OtlpSinkBuilder::default()
                .endpoint(u)
                .resolved_endpoint()
                .unwrap()
        };
        assert_eq!(e("http://127.0.0.1:4318"), "http://127.0.0.1:4318/v1/metrics");
        assert_eq!(e("http://127.0.0.1:4318/"), "http://127.0.0.1:4318/v1/metrics");
        assert_eq!(
            e("https://otel.example/otlp"),
            "https://otel.example/otlp/v1/metrics"
        );
        assert_eq!(e("http://h:1/v1/metrics"), "http://h:1/v1/metrics");
        let full = OtlpSinkBuilder::default()
            .metrics_endpoint("http://h:1/custom")
            .resolved_endpoint()
            .unwrap();
        assert_eq!(full, "http://h:1/custom");
        assert_eq!(
            OtlpSinkBuilder::default().resolved_endpoint().unwrap(),
            "http://localhost:4318/v1/metrics"
        );
    }

    #[test]
    fn bad_urls_are_refused_without_their_credentials() {
        for bad in ["localhost:4318", "ftp://h/x", "not a url", "http://"] {
            let e = OtlpSinkBuilder::default().endpoint(bad).resolved_endpoint();
            assert!(matches!(e, Err(ConfigError::InvalidEndpoint(_))), "{bad}");
        }
        let e = OtlpSinkBuilder::default()
            .endpoint("ftp://user:hunter2@h/")
            .resolved_endpoint()
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn debug_hides_header_values_and_passwords() {
        let b = OtlpSinkBuilder::default()
            .endpoint("https://u:s3cret@otel.example")
            .header("authorization", "Bearer sk-live-123");
        let d = format!("{b:?}");
        assert!(d.contains("authorization"));
        assert!(!d.contains("sk-live-123"));
        assert!(!d.contains("s3cret"));
    }
}
