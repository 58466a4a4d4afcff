//! Turning sink specs into sinks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use steer_metrics::{async_trait, AgentMetrics, MetricsSink, SinkError};

use crate::error::CliError;
use steer::spec::SinkSpec;
use steer::SinkBuildError;

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

/// Build the sink a spec names, wrapped to carry the spec as its name.
pub async fn build(spec: &SinkSpec) -> Result<Tracked, CliError> {
    let inner = spec.build().await.map_err(|e| match e {
        SinkBuildError::NotBuilt(kind) => CliError::SinkNotBuilt(kind),
        SinkBuildError::Setup { spec, message } => CliError::SinkSetup { spec, message },
        other => CliError::SinkSetup {
            spec: spec.to_string(),
            message: other.to_string(),
        },
    })?;
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
