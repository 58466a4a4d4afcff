//! Configuration: a builder with documented defaults, validated once.

use std::time::Duration;

use crate::encode::{self, MAX_DATUMS_PER_CALL, MAX_REQUEST_BYTES, MAX_VALUES_PER_DATUM};

/// The guide's (and this sink's) default namespace.
pub const DEFAULT_NAMESPACE: &str = "LLM/Metrics";

/// How records become datums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Per series and flush interval: sums as StatisticValues, latency and
    /// TTFT as Values/Counts distributions (default).
    #[default]
    Aggregate,
    /// One datum per metric per call, at the call's own timestamp (the
    /// guide's shape; many more datums, same statistics).
    Raw,
}

/// CloudWatch storage resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resolution {
    /// 60 s (standard; default).
    #[default]
    Standard,
    /// 1 s (high resolution; billed as such).
    High,
}

impl Resolution {
    /// The `StorageResolution` value (60 or 1).
    pub fn seconds(self) -> i32 {
        match self {
            Resolution::Standard => 60,
            Resolution::High => 1,
        }
    }
}

/// A configuration error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The namespace is not one CloudWatch accepts.
    #[error("invalid CloudWatch namespace `{0}`: 1..255 ASCII letters, digits or . - _ / # : and spaces, not starting with `AWS/`")]
    InvalidNamespace(String),
    /// The flush interval is zero, not whole seconds, or does not divide 60 s evenly (or is not a multiple of 60 s).
    #[error("invalid flush interval {0:?}: whole seconds, a divisor of 60 s or a multiple of 60 s")]
    InvalidInterval(Duration),
    /// The relative error is outside 0.0001..=0.1.
    #[error("relative error {0} outside 0.0001..=0.1")]
    InvalidRelativeError(f64),
    /// A limit is zero or above CloudWatch's.
    #[error("{0}")]
    InvalidLimit(String),
    /// A configured dimension would exceed 30 dimensions per datum.
    #[error("too many dimensions: {0} configured; a datum has at most 30, Model, Provider and FinishReason (unless turned off) among them")]
    TooManyDimensions(usize),
}

/// Validated settings of a [`CloudWatchSink`](crate::CloudWatchSink).
#[derive(Debug, Clone)]
pub struct CloudWatchConfig {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) mode: Mode,
    pub(crate) interval: Duration,
    pub(crate) resolution: Resolution,
    pub(crate) static_dimensions: Vec<encode::Dimension>,
    pub(crate) tag_dimensions: Vec<String>,
    pub(crate) finish_reason_dimension: bool,
    pub(crate) relative_error: f64,
    pub(crate) max_datums_per_call: usize,
    pub(crate) max_request_bytes: usize,
    pub(crate) max_values_per_datum: usize,
    pub(crate) max_series: usize,
    pub(crate) batch_budget: Duration,
    pub(crate) sdk_max_attempts: u32,
    pub(crate) region: Option<String>,
    pub(crate) profile: Option<String>,
    pub(crate) endpoint_url: Option<String>,
}

impl CloudWatchConfig {
    /// The sink name used in collector stats.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The namespace metrics are published under.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    /// Aggregate or raw.
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// The aggregation interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }
    /// Storage resolution.
    pub fn resolution(&self) -> Resolution {
        self.resolution
    }
    /// Relative error bound of published latency/TTFT values.
    pub fn relative_error(&self) -> f64 {
        self.relative_error
    }
    /// Datums per PutMetricData call at most.
    pub fn max_datums_per_call(&self) -> usize {
        self.max_datums_per_call
    }
    /// Request body bytes at most (before compression).
    pub fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }
}

/// Builds a [`CloudWatchSink`](crate::CloudWatchSink).
///
/// ```no_run
/// # async fn f() -> Result<(), steer_sink_cloudwatch::Error> {
/// use std::time::Duration;
/// use steer_sink_cloudwatch::CloudWatchSink;
/// let sink = CloudWatchSink::builder()
///     .namespace("LLM/Metrics")
///     .dimension("Service", "chat")
///     .tag_dimension("team")
///     .interval(Duration::from_secs(60))
///     .build()
///     .await?;
/// # let _ = sink; Ok(()) }
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct CloudWatchSinkBuilder {
    pub(crate) cfg: CloudWatchConfig,
    pub(crate) client: Option<aws_sdk_cloudwatch::Client>,
}

impl Default for CloudWatchSinkBuilder {
    fn default() -> Self {
        CloudWatchSinkBuilder {
            cfg: CloudWatchConfig {
                name: "cloudwatch".into(),
                namespace: DEFAULT_NAMESPACE.into(),
                mode: Mode::Aggregate,
                interval: Duration::from_secs(60),
                resolution: Resolution::Standard,
                static_dimensions: Vec::new(),
                tag_dimensions: Vec::new(),
                finish_reason_dimension: true,
                relative_error: 0.01,
                max_datums_per_call: MAX_DATUMS_PER_CALL,
                max_request_bytes: MAX_REQUEST_BYTES,
                max_values_per_datum: MAX_VALUES_PER_DATUM,
                max_series: 5_000,
                batch_budget: Duration::from_secs(8),
                sdk_max_attempts: 3,
                region: None,
                profile: None,
                endpoint_url: None,
            },
            client: None,
        }
    }
}

impl CloudWatchSinkBuilder {
    /// Sink name in collector stats (default `cloudwatch`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.cfg.name = name.into();
        self
    }

    /// Namespace (default `LLM/Metrics`, the guide's).
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.cfg.namespace = ns.into();
        self
    }

    /// Aggregate (default) or raw per-call datums.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.cfg.mode = mode;
        self
    }

    /// Aggregation interval (default 60 s). Whole seconds dividing 60 s, or
    /// a multiple of 60 s. Below 60 s, use [`Resolution::High`] to keep the
    /// intervals apart in CloudWatch.
    pub fn interval(mut self, d: Duration) -> Self {
        self.cfg.interval = d;
        self
    }

    /// Storage resolution (default [`Resolution::Standard`], 60 s).
    pub fn resolution(mut self, r: Resolution) -> Self {
        self.cfg.resolution = r;
        self
    }

    /// Add a fixed dimension to every datum (e.g. `Service=chat`). Model,
    /// Provider and FinishReason (unless turned off) are always present; at
    /// most 27 others (28 without FinishReason).
    pub fn dimension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let n = encode::normalize(&name.into(), "dimension", true);
        let v = encode::normalize(&value.into(), "none", false);
        self.cfg.static_dimensions.push((n, v));
        self
    }

    /// The `FinishReason` dimension on every datum (default `true`): the
    /// record's finish reason (the provider's own value: `stop`, `length`,
    /// `end_turn`, `max_tokens`, ...), `none` when it has none. Each
    /// finish reason is its own series (CloudWatch custom metric); turn it
    /// off to keep one series per (Model, Provider, ...) as before.
    pub fn finish_reason_dimension(mut self, on: bool) -> Self {
        self.cfg.finish_reason_dimension = on;
        self
    }

    /// Promote a record tag to a dimension (value `none` when a record lacks it).
    pub fn tag_dimension(mut self, tag: impl Into<String>) -> Self {
        self.cfg.tag_dimensions.push(tag.into());
        self
    }

    /// Relative error bound of published latency/TTFT values (default
    /// 0.01 = 1%; 0.0001..=0.1). Smaller means more distinct values.
    pub fn relative_error(mut self, e: f64) -> Self {
        self.cfg.relative_error = e;
        self
    }

    /// Datums per PutMetricData call at most (default and maximum 1000).
    pub fn max_datums_per_call(mut self, n: usize) -> Self {
        self.cfg.max_datums_per_call = n;
        self
    }

    /// Request body size at most, before compression (default and maximum 1 000 000 bytes).
    pub fn max_request_bytes(mut self, n: usize) -> Self {
        self.cfg.max_request_bytes = n;
        self
    }

    /// Distinct values per distribution datum at most (default and maximum 150).
    pub fn max_values_per_datum(mut self, n: usize) -> Self {
        self.cfg.max_values_per_datum = n;
        self
    }

    /// Distinct dimension sets per batch at most (default 5000); records
    /// beyond fold into `Model=other, Provider=other`.
    pub fn max_series(mut self, n: usize) -> Self {
        self.cfg.max_series = n;
        self
    }

    /// Time budget of one `record_batch` (default 8 s, below the
    /// collector's default 10 s attempt timeout). Calls not started within
    /// it are handed back to the collector as retryable.
    pub fn batch_budget(mut self, d: Duration) -> Self {
        self.cfg.batch_budget = d;
        self
    }

    /// Attempts per PutMetricData call inside the SDK (default 3, standard
    /// retry mode with backoff for throttling, 5xx and timeouts) when the
    /// sink builds the client.
    pub fn sdk_max_attempts(mut self, n: u32) -> Self {
        self.cfg.sdk_max_attempts = n.max(1);
        self
    }

    /// AWS region (default: the standard chain, e.g. `AWS_REGION`).
    pub fn region(mut self, r: impl Into<String>) -> Self {
        self.cfg.region = Some(r.into());
        self
    }

    /// Shared-config profile (default: `AWS_PROFILE` or `default`).
    pub fn profile(mut self, p: impl Into<String>) -> Self {
        self.cfg.profile = Some(p.into());
        self
    }

    /// Endpoint override (default: the standard chain, e.g. `AWS_ENDPOINT_URL`).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.cfg.endpoint_url = Some(url.into());
        self
    }

    /// Use this SDK client as is (credentials, region, endpoint, retry and
    /// timeouts from its config) instead of building one.
    pub fn client(mut self, client: aws_sdk_cloudwatch::Client) -> Self {
        self.client = Some(client);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.cfg;
        let ns = &c.namespace;
        let ok_ns = !ns.is_empty()
            && ns.len() <= 255
            && !ns.starts_with("AWS/")
            && ns.trim() == ns
            && ns
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ".-_/#: ".contains(ch));
        if !ok_ns {
            return Err(ConfigError::InvalidNamespace(ns.clone()));
        }
        let secs = c.interval.as_secs();
        let whole = c.interval.subsec_nanos() == 0 && secs > 0;
        if !whole || !(60u64.is_multiple_of(secs) || secs.is_multiple_of(60)) {
            return Err(ConfigError::InvalidInterval(c.interval));
        }
        if !(0.0001..=0.1).contains(&c.relative_error) {
            return Err(ConfigError::InvalidRelativeError(c.relative_error));
        }
        if c.max_datums_per_call == 0 || c.max_datums_per_call > MAX_DATUMS_PER_CALL {
            return Err(ConfigError::InvalidLimit(format!(
                "max_datums_per_call must be 1..={MAX_DATUMS_PER_CALL}"
            )));
        }
        if c.max_request_bytes < 16_384 || c.max_request_bytes > MAX_REQUEST_BYTES {
            return Err(ConfigError::InvalidLimit(format!(
                "max_request_bytes must be 16384..={MAX_REQUEST_BYTES}"
            )));
        }
        if c.max_values_per_datum == 0 || c.max_values_per_datum > MAX_VALUES_PER_DATUM {
            return Err(ConfigError::InvalidLimit(format!(
                "max_values_per_datum must be 1..={MAX_VALUES_PER_DATUM}"
            )));
        }
        if c.max_series == 0 {
            return Err(ConfigError::InvalidLimit("max_series must be at least 1".into()));
        }
        let extra = c.static_dimensions.len() + c.tag_dimensions.len();
        let built_in = 2 + usize::from(c.finish_reason_dimension);
        if extra > encode::MAX_DIMENSIONS - built_in {
            return Err(ConfigError::TooManyDimensions(extra));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let b = CloudWatchSinkBuilder::default();
        b.validate().unwrap();
        assert_eq!(b.cfg.namespace, "LLM/Metrics");
        assert_eq!(b.cfg.interval, Duration::from_secs(60));
        assert_eq!(b.cfg.max_datums_per_call, 1000);
        assert_eq!(b.cfg.max_request_bytes, 1_000_000);
        assert_eq!(b.cfg.resolution.seconds(), 60);
    }

    #[test]
    fn rejects_bad_settings() {
        let b = || CloudWatchSinkBuilder::default();
        for ns in ["", "AWS/EC2", "ns\u{e9}", " lead", &"n".repeat(256)] {
            assert!(
                matches!(
                    b().namespace(ns).validate(),
                    Err(ConfigError::InvalidNamespace(_))
                ),
                "{ns}"
            );
        }
        assert!(b().namespace("LLM/Metrics-test_1:a#b").validate().is_ok());
        for d in [0, 7, 90] {
            assert!(b().interval(Duration::from_secs(d)).validate().is_err(), "{d}");
        }
        for d in [1, 10, 30, 60, 300] {
            assert!(b().interval(Duration::from_secs(d)).validate().is_ok(), "{d}");
        }
        assert!(b().interval(Duration::from_millis(1500)).validate().is_err());
        assert!(b().relative_error(0.5).validate().is_err());
        assert!(b().max_datums_per_call(1001).validate().is_err());
        assert!(b().max_request_bytes(2_000_000).validate().is_err());
        assert!(b().max_values_per_datum(151).validate().is_err());
        let mut many = b();
        for i in 0..29 {
            many = many.dimension(format!("d{i}"), "v");
        }
        assert!(matches!(many.validate(), Err(ConfigError::TooManyDimensions(29))));
        // With FinishReason, 27 others fit; 28 only without it.
        let mut full = b();
        for i in 0..27 {
            full = full.dimension(format!("d{i}"), "v");
        }
        assert!(full.clone().validate().is_ok());
        let full = full.dimension("d27", "v");
        assert!(matches!(
            full.clone().validate(),
            Err(ConfigError::TooManyDimensions(28))
        ));
        assert!(full.finish_reason_dimension(false).validate().is_ok());
    }
}
