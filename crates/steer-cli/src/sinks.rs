//! Turning sink specs into sinks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use steer_metrics::sinks::{JsonLinesSink, LogSink};
use steer_metrics::{async_trait, AgentMetrics, MetricsSink, SinkError};

use crate::error::CliError;
use crate::spec::SinkSpec;

/// Counts what a sink was asked to do (for `bench` and reports).
#[derive(Debug, Default)]
pub struct Traffic {
    /// `record_batch` calls (one request per batch for network sinks).
    pub requests: AtomicU64,
    /// Records handed to the sink, retries included.
    pub records: AtomicU64,
}

/// A sink named after its (redacted) spec, counting its traffic.
pub struct Tracked {
    name: String,
    inner: Box<dyn MetricsSink>,
    traffic: Arc<Traffic>,
}

impl Tracked {
    /// The traffic counters.
    pub fn traffic(&self) -> Arc<Traffic> {
        self.traffic.clone()
    }
}

#[async_trait]
impl MetricsSink for Tracked {
    fn name(&self) -> &str {
        &self.name
    }
    async fn record(&self, m: &AgentMetrics) -> Result<(), SinkError> {
        self.record_batch(std::slice::from_ref(m)).await
    }
    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        self.traffic.requests.fetch_add(1, Relaxed);
        self.traffic.records.fetch_add(batch.len() as u64, Relaxed);
        self.inner.record_batch(batch).await
    }
    async fn flush(&self) -> Result<(), SinkError> {
        self.inner.flush().await
    }
    async fn close(&self) -> Result<(), SinkError> {
        self.inner.close().await
    }
}

fn setup(spec: &SinkSpec, e: impl std::fmt::Display) -> CliError {
    CliError::SinkSetup {
        spec: spec.to_string(),
        message: e.to_string(),
    }
}

/// Build the sink a spec names. Network sinks do not connect here: a
/// backend that is down at start is retried by the collector and reported.
pub async fn build(spec: &SinkSpec) -> Result<Tracked, CliError> {
    let inner: Box<dyn MetricsSink> = match spec {
        SinkSpec::Sqlite(path) => {
            Box::new(steer_sink_sqlite::SqliteSink::open(path).map_err(|e| setup(spec, e))?)
        }
        SinkSpec::JsonLines(path) => Box::new(JsonLinesSink::new(path)),
        SinkSpec::Log => Box::new(LogSink::new()),
        #[cfg(feature = "postgres")]
        SinkSpec::Postgres(url) => Box::new(
            steer_sink_postgres::PostgresSink::builder(url)
                .build()
                .map_err(|e| setup(spec, e))?,
        ),
        #[cfg(feature = "influxdb")]
        SinkSpec::Influx(url) => {
            Box::new(steer_sink_influxdb::InfluxSink::from_url(url).map_err(|e| setup(spec, e))?)
        }
        #[cfg(feature = "datadog")]
        SinkSpec::Datadog(site) => {
            Box::new(steer_sink_datadog::DatadogSink::from_spec(site.as_deref()).map_err(|e| setup(spec, e))?)
        }
        #[cfg(feature = "otlp")]
        SinkSpec::Otlp(url) => {
            Box::new(steer_sink_otlp::OtlpSink::from_url(url).map_err(|e| setup(spec, e))?)
        }
        #[cfg(feature = "cloudwatch")]
        SinkSpec::CloudWatch(ns) => Box::new(
            steer_sink_cloudwatch::CloudWatchSink::from_namespace(ns)
                .await
                .map_err(|e| setup(spec, e))?,
        ),
        #[cfg(feature = "prometheus")]
        SinkSpec::Prometheus(addr) => {
            Box::new(steer_sink_prometheus::PrometheusSink::bind(addr).map_err(|e| setup(spec, e))?)
        }
        #[allow(unreachable_patterns)]
        other => return Err(CliError::SinkNotBuilt(other.kind())),
    };
    Ok(Tracked {
        name: spec.to_string(),
        inner,
        traffic: Arc::default(),
    })
}

/// Build every sink, refusing duplicates (the same spec twice).
pub async fn build_all(specs: &[SinkSpec]) -> Result<Vec<Tracked>, CliError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for s in specs {
        if !seen.insert(s.to_string()) {
            continue;
        }
        out.push(build(s).await?);
    }
    Ok(out)
}
