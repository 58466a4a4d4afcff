//! # steer-sink-otlp
//!
//! A [`MetricsSink`] that turns steer's LLM call records into
//! OpenTelemetry metrics following the GenAI semantic conventions, and
//! exports them over OTLP (HTTP/protobuf by default, gRPC with the `grpc`
//! feature, gzip-compressed by default) through the OpenTelemetry SDK, or
//! records them into a `MeterProvider` you already have.
//!
//! | instrument | kind | unit |
//! |---|---|---|
//! | `gen_ai.client.operation.duration` | histogram | `s` |
//! | `gen_ai.client.token.usage` | histogram, `gen_ai.token.type` = `input` \| `output` | `{token}` |
//! | `gen_ai.client.operation.time_to_first_chunk` | histogram (streamed calls) | `s` |
//! | `steer.llm.requests` | counter | `{request}` |
//! | `steer.llm.errors` | counter | `{error}` |
//! | `steer.llm.cost` | counter | `USD` |
//!
//! Every instrument carries `gen_ai.response.finish_reasons` (the record's
//! finish reason, when it has one) and the record tags you allow-list with
//! [`tag_attributes`](OtlpSinkBuilder::tag_attributes) (or `?tags=` in
//! [`OtlpSink::from_url`]). Attributes, the series cap, bucket boundaries
//! and the handling of sample weights are in [`instruments`].
//!
//! ## How it fits the collector
//!
//! [`record_batch`](MetricsSink::record_batch) only records observations
//! into in-memory instruments and returns; the SDK's periodic reader
//! exports every `export_interval` on its own thread.
//! [`flush`](MetricsSink::flush) exports at once (the provider's
//! `force_flush`) and returns a retryable [`SinkError`] when that export
//! failed (a permanent one for a 4xx other than 408/429), so
//! `MetricsCollector::flush` reports it. [`close`](MetricsSink::close)
//! shuts the provider down (a final export). With the default cumulative
//! temporality a failed export loses nothing: the next one carries the
//! totals.
//!
//! ```no_run
//! use steer_metrics::MetricsCollector;
//! use steer_sink_otlp::OtlpSink;
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = OtlpSink::builder()
//!     .endpoint("http://127.0.0.1:4318")
//!     .service_name("chat-api")
//!     .server_address("api.openai.com")
//!     .build()?;
//! let collector = MetricsCollector::builder().sink(sink).build()?;
//! // ... calls ...
//! collector.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod config;
pub mod instruments;
pub mod spec;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::Resource;
use steer_metrics::{AgentMetrics, MetricsSink, SinkError, SinkErrorKind};

pub use config::{
    redact_url, ConfigError, OtlpSinkBuilder, Protocol, Temporality, DEFAULT_GRPC_ENDPOINT,
    DEFAULT_HTTP_ENDPOINT, METRICS_PATH,
};
use instruments::{Instruments, Recorder};
pub use steer_metrics::semconv::TagKeyError;

/// Re-exported so users can attach the sink to their own provider.
pub use opentelemetry_sdk::metrics::SdkMeterProvider as MeterProvider;

/// What the sink has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtlpStats {
    /// Records recorded into the instruments.
    pub records: u64,
    /// Records whose model was folded into `other` by the series cap.
    pub folded_records: u64,
    /// Values skipped because they were negative, not finite or
    /// implausible (latency/TTFT above [`instruments::MAX_DURATION_MS`],
    /// cost above [`instruments::MAX_COST_USD`], tokens above
    /// [`instruments::MAX_TOKENS`] or past [`instruments::TOKEN_SUM_LIMIT`]).
    pub invalid_values: u64,
    /// Exports that succeeded (only for a sink that built its exporter).
    pub exports_succeeded: u64,
    /// Exports that failed.
    pub exports_failed: u64,
    /// The last export failure, if any.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct ExportCounters {
    ok: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    secrets: Vec<String>,
}

impl ExportCounters {
    fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Remove every secret (header values, URL password) from a message, then
/// apply the one shared redaction (URL passwords, `api_key=`, `token=` ...).
fn scrub(message: &str, secrets: &[String]) -> String {
    let mut m = message.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        m = m.replace(s.as_str(), "***");
    }
    steer_metrics::redact::redact(&m)
}

/// Counts exports and remembers the last error (the SDK's `force_flush`
/// only says "Failed to flush").
#[derive(Debug)]
struct TrackedExporter<E> {
    inner: E,
    counters: Arc<ExportCounters>,
}

impl<E: PushMetricExporter> PushMetricExporter for TrackedExporter<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let r = self.inner.export(metrics).await;
        match &r {
            Ok(()) => {
                self.counters.ok.fetch_add(1, Relaxed);
            }
            Err(e) => {
                self.counters.failed.fetch_add(1, Relaxed);
                let mut msg = scrub(&e.to_string(), &self.counters.secrets);
                if msg.len() > 512 {
                    let mut end = 512;
                    while !msg.is_char_boundary(end) {
                        end -= 1;
                    }
                    msg.truncate(end);
                }
                tracing::warn!(error = %msg, "OTLP metrics export failed");
                *self.counters.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
            }
        }
        r
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        self.inner.temporality()
    }
}

/// The OTLP sink. Cheap to clone (clones share state).
#[derive(Clone)]
pub struct OtlpSink {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    recorder: Recorder,
    provider: Option<SdkMeterProvider>,
    owns_provider: bool,
    exports: Option<Arc<ExportCounters>>,
    closed: AtomicBool,
    records: AtomicU64,
    invalid: AtomicU64,
}

impl fmt::Debug for OtlpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpSink")
            .field("name", &self.inner.name)
            .field("owns_provider", &self.inner.owns_provider)
            .finish_non_exhaustive()
    }
}

fn valid_header(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && value.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

impl OtlpSinkBuilder {
    /// Build the exporter, a periodic reader and a meter provider owned by
    /// the sink. For [`Protocol::HttpProtobuf`] no connection is made here.
    pub fn build(self) -> Result<OtlpSink, ConfigError> {
        let endpoint = self.resolved_endpoint()?;
        for (k, v) in &self.headers {
            if !valid_header(k, v) {
                return Err(ConfigError::InvalidHeader(k.clone()));
            }
        }
        let mut secrets: Vec<String> = self.headers.values().cloned().collect();
        if let Ok(u) = url::Url::parse(&endpoint) {
            if !u.username().is_empty() || u.password().is_some() {
                return Err(ConfigError::CredentialsInUrl);
            }
            secrets.extend(u.password().map(str::to_string));
        }
        let counters = Arc::new(ExportCounters {
            secrets,
            ..ExportCounters::default()
        });
        let exporter = TrackedExporter {
            inner: build_exporter(&self, endpoint)?,
            counters: counters.clone(),
        };
        let reader = PeriodicReader::builder(exporter)
            .with_interval(self.export_interval)
            .build();
        let resource = Resource::builder()
            .with_attributes(
                self.resource
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .with_service_name(self.service_name.clone())
            .build();
        let provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(reader)
            .build();
        let meter = scoped_meter(&provider);
        Ok(self.finish(meter, Some(provider), true, Some(counters)))
    }

    /// Record into a meter provider you already have (its readers and
    /// exporters decide where the metrics go). `flush()` calls its
    /// `force_flush`; `close()` flushes but does not shut it down (it is
    /// yours). Endpoint, protocol, headers, interval and resource settings
    /// do not apply.
    pub fn attach(self, provider: SdkMeterProvider) -> OtlpSink {
        let meter = scoped_meter(&provider);
        self.finish(meter, Some(provider), false, None)
    }

    /// Record through any [`Meter`] (e.g. `opentelemetry::global::meter`).
    /// `flush()` and `close()` do nothing: flush its provider yourself.
    pub fn attach_meter(self, meter: Meter) -> OtlpSink {
        self.finish(meter, None, false, None)
    }

    fn finish(
        self,
        meter: Meter,
        provider: Option<SdkMeterProvider>,
        owns_provider: bool,
        exports: Option<Arc<ExportCounters>>,
    ) -> OtlpSink {
        OtlpSink {
            inner: Arc::new(Inner {
                name: self.name,
                recorder: Recorder::new(
                    Instruments::new(&meter),
                    self.max_series,
                    self.server_address,
                    self.tag_keys,
                ),
                provider,
                owns_provider,
                exports,
                closed: AtomicBool::new(false),
                records: AtomicU64::new(0),
                invalid: AtomicU64::new(0),
            }),
        }
    }
}

fn scoped_meter(provider: &SdkMeterProvider) -> Meter {
    provider.meter_with_scope(
        InstrumentationScope::builder("steer")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    )
}

fn sdk_temporality(t: Temporality) -> opentelemetry_sdk::metrics::Temporality {
    match t {
        Temporality::Cumulative => opentelemetry_sdk::metrics::Temporality::Cumulative,
        Temporality::Delta => opentelemetry_sdk::metrics::Temporality::Delta,
    }
}

fn build_exporter(
    b: &OtlpSinkBuilder,
    endpoint: String,
) -> Result<opentelemetry_otlp::MetricExporter, ConfigError> {
    use opentelemetry_otlp::{Compression, MetricExporter, WithExportConfig};
    let headers: HashMap<String, String> = b.headers.clone().into_iter().collect();
    let temporality = sdk_temporality(b.temporality);
    match b.protocol {
        Protocol::HttpProtobuf => {
            use opentelemetry_otlp::WithHttpConfig;
            let mut e = MetricExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(endpoint)
                .with_timeout(b.timeout)
                .with_temporality(temporality)
                .with_headers(headers);
            if b.gzip {
                e = e.with_compression(Compression::Gzip);
            }
            e.build().map_err(|err| ConfigError::Exporter(err.to_string()))
        }
        #[cfg(feature = "grpc")]
        Protocol::Grpc => {
            use opentelemetry_otlp::WithTonicConfig;
            let mut hm = http::HeaderMap::new();
            for (k, v) in &headers {
                let name = http::header::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| ConfigError::InvalidHeader(k.clone()))?;
                let value = http::header::HeaderValue::from_str(v)
                    .map_err(|_| ConfigError::InvalidHeader(k.clone()))?;
                hm.insert(name, value);
            }
            let md = opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(hm);
            let mut e = MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(b.timeout)
                .with_temporality(temporality)
                .with_metadata(md);
            if b.gzip {
                e = e.with_compression(Compression::Gzip);
            }
            e.build().map_err(|err| ConfigError::Exporter(err.to_string()))
        }
    }
}

/// A failed export as a [`SinkError`]: misconfigured for 401, 403 and 404
/// (the credentials or the endpoint are wrong, whatever the data),
/// permanent for another 4xx other than 408 and 429 (the collector refuses
/// the data), retryable otherwise.
pub fn classify_export_error(message: &str) -> SinkError {
    // The HTTP exporter says `Status Code: 400`, its blocking client `Status(400, ...)`.
    let status = ["Status Code: ", "Status("].iter().find_map(|marker| {
        message
            .split(marker)
            .nth(1)
            .and_then(|rest| rest.get(..3))
            .and_then(|s| s.parse::<u16>().ok())
    });
    let text = format!("OTLP export failed: {message}");
    // The status maps as for every HTTP sink (steer_metrics::http::status_kind);
    // the exporter reports no `Retry-After`, so a 429 is retried with the
    // collector's backoff.
    match status.and_then(|s| steer_metrics::http::status_kind(s, None)) {
        Some(SinkErrorKind::Misconfigured) => SinkError::misconfigured(text),
        Some(SinkErrorKind::Permanent) => SinkError::permanent(text),
        _ => SinkError::retryable(text),
    }
}

impl OtlpSink {
    /// A builder with the defaults (HTTP/protobuf to
    /// `http://localhost:4318`, gzip, 10 s interval, `service.name` =
    /// `steer`).
    pub fn builder() -> OtlpSinkBuilder {
        OtlpSinkBuilder::default()
    }

    /// A sink exporting OTLP/HTTP to this collector base URL (the CLI spec
    /// `otlp:URL`), e.g. `http://127.0.0.1:4318`. A `tags` query parameter
    /// (`http://127.0.0.1:4318?tags=user,team`) is the allow-list of
    /// [`tag_attributes`](OtlpSinkBuilder::tag_attributes); it is removed
    /// from the URL before use (other query parameters stay).
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let (url, tags) = steer_metrics::semconv::take_tags_param(url.trim());
        let mut b = Self::builder().endpoint(url);
        if let Some(keys) = tags {
            b = b.tag_attributes(keys)?;
        }
        b.build()
    }

    /// The meter provider the sink records into, if it has one.
    pub fn meter_provider(&self) -> Option<&SdkMeterProvider> {
        self.inner.provider.as_ref()
    }

    /// What the sink has done so far.
    pub fn stats(&self) -> OtlpStats {
        let (ok, failed, last) = match &self.inner.exports {
            Some(c) => (c.ok.load(Relaxed), c.failed.load(Relaxed), c.last_error()),
            None => (0, 0, None),
        };
        OtlpStats {
            records: self.inner.records.load(Relaxed),
            folded_records: self.inner.recorder.folded(),
            invalid_values: self.inner.invalid.load(Relaxed),
            exports_succeeded: ok,
            exports_failed: failed,
            last_error: last,
        }
    }

    fn record_all(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        if self.inner.closed.load(Relaxed) {
            return Err(SinkError::permanent("OTLP sink is closed"));
        }
        let i = &self.inner;
        for m in batch {
            let invalid = i.recorder.record(m);
            if invalid > 0 {
                i.invalid.fetch_add(invalid, Relaxed);
            }
        }
        i.records.fetch_add(batch.len() as u64, Relaxed);
        Ok(())
    }

    /// Run a blocking provider call off the async threads and map its error.
    async fn provider_call(&self, shutdown: bool) -> Result<(), SinkError> {
        let Some(provider) = self.inner.provider.clone() else {
            return Ok(());
        };
        let failed_before = self.inner.exports.as_ref().map(|c| c.failed.load(Relaxed));
        let result = tokio::task::spawn_blocking(move || {
            if shutdown {
                provider.shutdown()
            } else {
                provider.force_flush()
            }
        })
        .await
        .map_err(|e| SinkError::retryable(format!("OTLP flush task failed: {e}")))?;
        // Prefer the exporter's own message when this call's export failed.
        let export_failed = match (&self.inner.exports, failed_before) {
            (Some(c), Some(before)) if c.failed.load(Relaxed) > before => {
                Some(c.last_error().unwrap_or_else(|| "OTLP export failed".into()))
            }
            _ => None,
        };
        match (result, export_failed) {
            (Ok(()), None) => Ok(()),
            // The provider may report success for a shutdown whose last
            // export failed: the data did not arrive, say so.
            (_, Some(detail)) => Err(classify_export_error(&detail)),
            (Err(e), None) => Err(classify_export_error(&e.to_string())),
        }
    }
}

#[async_trait]
impl MetricsSink for OtlpSink {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn record(&self, metrics: &AgentMetrics) -> Result<(), SinkError> {
        self.record_all(std::slice::from_ref(metrics))
    }

    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        self.record_all(batch)
    }

    async fn flush(&self) -> Result<(), SinkError> {
        if self.inner.closed.load(Relaxed) {
            return Ok(());
        }
        self.provider_call(false).await
    }

    async fn close(&self) -> Result<(), SinkError> {
        if self.inner.closed.swap(true, Relaxed) {
            return Ok(());
        }
        self.provider_call(self.inner.owns_provider).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn export_errors_are_classified_by_status() {
        let e = classify_export_error("OpenTelemetry metrics export failed. Status Code: 400, Response: x");
        assert!(e.is_permanent());
        let e = classify_export_error("reqwest::Error { kind: Status(404, None), url: \"x\" }");
        assert!(e.is_misconfigured());
        let e = classify_export_error("OpenTelemetry metrics export failed. Status Code: 401, Response: x");
        assert!(e.is_misconfigured());
        for s in [
            "Status Code: 503, Response",
            "Status Code: 429, Response",
            "Status Code: 408, R",
        ] {
            assert_eq!(classify_export_error(s).kind(), SinkErrorKind::Retryable, "{s}");
        }
        assert_eq!(
            classify_export_error("reqwest::Error { kind: Request, source: ConnectError }").kind(),
            SinkErrorKind::Retryable
        );
    }

    #[test]
    fn scrub_removes_secrets() {
        let s = scrub(
            "url http://u:pw@h and Bearer k1",
            &["pw".into(), "k1".into(), String::new()],
        );
        assert_eq!(s, "url http://u:***@h and Bearer ***");
    }

    #[test]
    fn header_validation() {
        assert!(valid_header("authorization", "Bearer x"));
        assert!(!valid_header("bad name", "x"));
        assert!(!valid_header("x", "a\nb"));
        assert!(!valid_header("", "x"));
    }
}
