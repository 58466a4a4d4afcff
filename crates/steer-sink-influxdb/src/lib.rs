//! # steer-sink-influxdb
//!
//! An InfluxDB [`MetricsSink`] for steer: one line-protocol point per
//! [`AgentMetrics`], written with the v1 (`/write`) or v2
//! (`/api/v2/write`, also accepted by InfluxDB 3) API.
//!
//! * [`encode`]: the line-protocol encoder — exact escaping, a documented
//!   normalisation for what the protocol cannot carry, NaN/Inf skipped,
//!   integers with `i`, configurable precision, out-of-range timestamps
//!   rejected per record.
//! * [`InfluxConfig`]: where and how (v1 database / v2 org+bucket, gzip,
//!   lines and bytes per request, which attributes are tags).
//! * `client`: the HTTP request and the classification of its response:
//!   partial writes are mapped back to the bad records so the good ones are
//!   neither lost nor resent; 429/5xx are retryable (honouring
//!   `Retry-After`); a missing database is a clear permanent error.
//!
//! Nothing is buffered inside the sink: when `record_batch` returns `Ok`,
//! every point is on the server, so [`flush`](MetricsSink::flush) has nothing
//! left to do. Batching, retries and overflow are the
//! [`MetricsCollector`](steer_metrics::MetricsCollector)'s job.
//!
//! ```no_run
//! use steer_metrics::{AgentMetrics, MetricsCollector};
//! use steer_sink_influxdb::InfluxSink;
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = InfluxSink::from_url("influxdb://127.0.0.1:8086/llm")?;
//! let collector = MetricsCollector::builder().sink(sink).build()?;
//! collector.record(AgentMetrics::new("openai", "gpt-4o-mini").with_latency_ms(420.0));
//! collector.flush().await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod attribute;
mod client;
mod config;
pub mod encode;
mod escape;
pub mod spec;

use std::collections::VecDeque;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use steer_metrics::{AgentMetrics, MetricsSink, SinkError};

pub use attribute::{Attribute, Placement, Precision};
pub use config::{
    Api, ConfigError, InfluxConfig, InfluxConfigBuilder, Secret, DEFAULT_MAX_BYTES, DEFAULT_MAX_LINES,
    DEFAULT_MEASUREMENT,
};
pub use encode::{normalize_key, normalize_measurement, normalize_name, EncodeError, Encoder};

use client::{Client, WriteError};

/// Writes each [`AgentMetrics`] as one point to InfluxDB.
///
/// Build with [`InfluxSink::new`] from an [`InfluxConfig`], or from a sink
/// spec with [`InfluxSink::from_url`].
pub struct InfluxSink {
    name: String,
    encoder: Encoder,
    client: Client,
    max_lines: usize,
    max_bytes: usize,
}

impl std::fmt::Debug for InfluxSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxSink")
            .field("name", &self.name)
            .field("client", &self.client)
            .field("encoder", &self.encoder)
            .field("max_lines", &self.max_lines)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl InfluxSink {
    /// A sink for this configuration.
    pub fn new(config: InfluxConfig) -> Result<Self, ConfigError> {
        let client = Client::new(&config)?;
        let encoder = Encoder::from_config(&config);
        Ok(InfluxSink {
            name: config.name.clone(),
            encoder,
            client,
            max_lines: config.max_lines,
            max_bytes: config.max_bytes,
        })
    }

    /// A sink from a spec: `influxdb://HOST:PORT/DB` (v1) or
    /// `influxdb2://HOST:PORT?org=O&bucket=B` (v2, token from
    /// `INFLUX_TOKEN`). See [`InfluxConfig::from_url`] for every option.
    pub fn from_url(spec: &str) -> Result<Self, ConfigError> {
        Self::new(InfluxConfig::from_url(spec)?)
    }

    /// Start a configuration; see [`InfluxConfig::builder`].
    pub fn builder(url: impl Into<String>) -> InfluxConfigBuilder {
        InfluxConfig::builder(url)
    }

    /// The encoder in use.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The write URL requests go to (it never holds credentials).
    pub fn write_url(&self) -> &str {
        self.client.write_url().as_str()
    }
}

/// One encoded batch: the body of all lines, and per line its byte range
/// (newline included) and the record it came from.
struct Encoded {
    body: Bytes,
    lines: Vec<Range<usize>>,
    records: Vec<usize>,
    /// Records that could not be encoded, with why.
    rejected: Vec<(usize, EncodeError)>,
}

fn encode_batch(encoder: &Encoder, batch: &[AgentMetrics]) -> Encoded {
    let mut buf = Vec::with_capacity(batch.len() * 320);
    let mut lines = Vec::with_capacity(batch.len());
    let mut records = Vec::with_capacity(batch.len());
    let mut rejected = Vec::new();
    for (i, m) in batch.iter().enumerate() {
        let start = buf.len();
        match encoder.encode(m, &mut buf) {
            Ok(()) => {
                buf.push(b'\n');
                lines.push(start..buf.len());
                records.push(i);
            }
            Err(e) => rejected.push((i, e)),
        }
    }
    Encoded {
        body: Bytes::from(buf),
        lines,
        records,
        rejected,
    }
}

/// Split lines `0..n` into requests of at most `max_lines` lines and
/// `max_bytes` bytes (a longer single line goes alone).
fn plan_requests(lines: &[Range<usize>], max_lines: usize, max_bytes: usize) -> VecDeque<Range<usize>> {
    let mut out = VecDeque::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, l) in lines.iter().enumerate() {
        let len = l.len();
        if i > start && (i - start >= max_lines || bytes + len > max_bytes) {
            out.push_back(start..i);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    if start < lines.len() {
        out.push_back(start..lines.len());
    }
    out
}

#[async_trait]
impl MetricsSink for InfluxSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn record(&self, metrics: &AgentMetrics) -> Result<(), SinkError> {
        self.record_batch(std::slice::from_ref(metrics)).await
    }

    /// Encode the batch, send it in requests bounded by lines and bytes, and
    /// report exactly which records failed: records the server rejected
    /// (mapped from its partial-write answer, or isolated by bisecting the
    /// request when the answer names no lines) are failed for good; records
    /// of a request that failed transiently, and of every request after it,
    /// are to be retried. Everything else was written.
    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        let enc = encode_batch(&self.encoder, batch);
        let mut rejected: Vec<usize> = enc.rejected.iter().map(|(i, _)| *i).collect();
        let mut first_message: Option<String> = enc
            .rejected
            .first()
            .map(|(i, e)| format!("record {i} cannot be written: {e}"));
        let mut work = plan_requests(&enc.lines, self.max_lines, self.max_bytes);
        let mut transient: Option<(Option<std::time::Duration>, String, Vec<usize>)> = None;

        while let Some(req) = work.pop_front() {
            let lines = &enc.lines[req.clone()];
            let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
                continue;
            };
            let base = first.start;
            let body = enc.body.slice(base..last.end);
            let local: Vec<Range<usize>> = lines.iter().map(|r| r.start - base..r.end - base).collect();
            match self.client.write(body, &local).await {
                Ok(()) => {}
                Err(WriteError::Lines { bad, message }) => {
                    tracing::debug!(sink = %self.name, rejected = bad.len(), lines = lines.len(), error = %message, "InfluxDB rejected some points");
                    rejected.extend(bad.iter().map(|&l| enc.records[req.start + l]));
                    first_message.get_or_insert(message);
                }
                Err(WriteError::Unmapped { message }) => {
                    if req.len() > 1 {
                        // Which lines are bad is unknown: try each half on
                        // its own. Lines the server may already have stored
                        // are overwritten with the same values (same series
                        // and timestamp), so nothing is duplicated.
                        tracing::debug!(sink = %self.name, lines = req.len(), error = %message, "rejected write names no lines; bisecting");
                        let mid = req.start + req.len() / 2;
                        work.push_front(mid..req.end);
                        work.push_front(req.start..mid);
                    } else {
                        tracing::debug!(sink = %self.name, error = %message, "InfluxDB rejected a point");
                        rejected.push(enc.records[req.start]);
                        first_message.get_or_insert(message);
                    }
                }
                Err(WriteError::Fatal { message }) => {
                    // The sink, not the data, is wrong (credentials refused,
                    // no such database or endpoint): nothing of this request
                    // nor of any later one can be written. Fail them once,
                    // unsplit (records rejected earlier in the batch with them).
                    let mut failed: Vec<usize> = rejected;
                    failed.extend(enc.records[req.start..].iter().copied());
                    for r in work.drain(..) {
                        failed.extend(enc.records[r].iter().copied());
                    }
                    failed.sort_unstable();
                    failed.dedup();
                    return Err(SinkError::misconfigured(message).with_records(failed));
                }
                Err(WriteError::Transient { retry_after, message }) => {
                    let mut retry: Vec<usize> = enc.records[req.clone()].to_vec();
                    for r in work.drain(..) {
                        retry.extend(enc.records[r].iter().copied());
                    }
                    transient = Some((retry_after, message, retry));
                    break;
                }
            }
        }

        rejected.sort_unstable();
        rejected.dedup();
        match (rejected.is_empty(), transient) {
            (true, None) => Ok(()),
            (true, Some((after, message, retry))) => Err(transient_error(after, message).with_records(retry)),
            (false, None) => {
                let message = first_message.unwrap_or_else(|| "points rejected".to_string());
                Err(SinkError::permanent(message).with_records(rejected))
            }
            (false, Some((after, message, retry))) => {
                let rejected_msg = first_message.unwrap_or_else(|| "points rejected".to_string());
                tracing::debug!(sink = %self.name, retry = retry.len(), ?after, error = %message, "write failed transiently after some points were rejected");
                Err(SinkError::partial(
                    SinkError::permanent(rejected_msg),
                    rejected,
                    retry,
                ))
            }
        }
    }

    /// Nothing is buffered in the sink: every point acknowledged by
    /// `record_batch` is already on the server.
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

fn transient_error(after: Option<std::time::Duration>, message: String) -> SinkError {
    match after {
        Some(d) => SinkError::throttled(d, message),
        None => SinkError::retryable(message),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_bounded_by_lines_and_bytes() {
        let lines: Vec<Range<usize>> = (0..10).map(|i| i * 10..i * 10 + 10).collect();
        let plan: Vec<_> = plan_requests(&lines, 4, 1000).into_iter().collect();
        assert_eq!(plan, vec![0..4, 4..8, 8..10]);
        let plan: Vec<_> = plan_requests(&lines, 100, 25).into_iter().collect();
        assert_eq!(plan, vec![0..2, 2..4, 4..6, 6..8, 8..10]);
        // A line longer than the byte limit goes alone.
        let plan: Vec<_> = plan_requests(&lines, 100, 5).into_iter().collect();
        assert_eq!(plan.len(), 10);
        assert!(plan_requests(&[], 4, 4).is_empty());
    }
}
