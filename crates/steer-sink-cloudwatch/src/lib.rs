//! # steer-sink-cloudwatch
//!
//! A [`MetricsSink`] that publishes steer's LLM call metrics to Amazon
//! CloudWatch with the async AWS SDK (standard credential chain, region,
//! profile and endpoint override from `aws-config`), the way the Python
//! guide's `CloudWatchMetricsSink` should have: without blocking the event
//! loop, under today's limits (1000 datums and 1 MB per PutMetricData, 150
//! distinct values per datum, 30 dimensions), with bounded memory and
//! without silent loss.
//!
//! In the default [`Mode::Aggregate`], each `record_batch` call groups its
//! records per series (Model, Provider, configured dimensions) and
//! interval (default 60 s) and publishes:
//!
//! | metric | unit | as |
//! |---|---|---|
//! | `Requests`, `Errors`, `Retries` | Count | StatisticValues over calls |
//! | `InputTokens`, `OutputTokens`, `CachedTokens`, `TotalTokens` | Count | StatisticValues over calls that reported usage |
//! | `CostUSD` | None | StatisticValues over calls with a known cost |
//! | `Latency`, `TimeToFirstToken` | Milliseconds | Values/Counts distributions (percentiles work) |
//!
//! So CloudWatch's SampleCount, Sum, Minimum and Maximum of each series
//! equal those of the individual calls: exactly for counts and tokens, and
//! for latency/TTFT Minimum and Maximum are exact and Sum equal up to
//! floating-point rounding, while each published latency value is within
//! the configured relative error (default 1%) of the call it stands for.
//! [`Mode::Raw`] publishes one datum per metric per call instead (the
//! guide's shape, for parity).
//!
//! ## Delivery
//!
//! Nothing is carried over between calls: every `record_batch` sends what
//! it was given before returning. All datums a record feeds are in one
//! PutMetricData call, so a failed call fails exactly its records:
//!
//! * throttling, 5xx and timeouts are retried by the SDK (standard mode,
//!   backoff), then handed to the collector as retryable/throttled, for
//!   exactly the records of the calls that did not go through;
//! * InvalidParameterValue / InvalidParameterCombination /
//!   MissingRequiredParameter isolate the offending datum (named by the
//!   message's `MetricData.member.N`, else by bisecting the call) and its
//!   records are reported as rejected; the rest is resent;
//! * values CloudWatch would refuse (NaN, ±Inf, negative, out of range)
//!   and timestamps outside its window are rejected before sending.
//!
//! With the collector's `batch_size` large (e.g. 10 000) and `linger` equal
//! to the interval, one batch per interval reaches CloudWatch as a few
//! calls.
//!
//! ```no_run
//! use std::time::Duration;
//! use steer_metrics::{MetricsCollector, SinkOptions};
//! use steer_sink_cloudwatch::CloudWatchSink;
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = CloudWatchSink::from_namespace("LLM/Metrics").await?;
//! let opts = SinkOptions::default().batch_size(10_000).linger(Duration::from_secs(60));
//! let collector = MetricsCollector::builder().sink_with_options(sink, opts).build()?;
//! # let _ = collector; Ok(()) }
//! ```
#![warn(missing_docs)]

mod aggregate;
pub mod client;
mod config;
pub mod encode;
pub mod spec;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use steer_metrics::{AgentMetrics, MetricsSink, SinkError};

use aggregate::{Aggregator, Group};
use client::{Client, Failure};
pub use config::{CloudWatchConfig, CloudWatchSinkBuilder, ConfigError, Mode, Resolution, DEFAULT_NAMESPACE};

/// Re-exported so users can build a client without naming the SDK crate.
pub use aws_sdk_cloudwatch;

/// Oldest timestamp CloudWatch accepts (two weeks).
const MAX_AGE: chrono::Duration = chrono::Duration::days(14);
/// Furthest future timestamp CloudWatch accepts (two hours).
const MAX_AHEAD: chrono::Duration = chrono::Duration::hours(2);

/// Errors building a sink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No region: set `AWS_REGION`, a profile's region, or `.region(...)`.
    #[error("no AWS region configured: set AWS_REGION (or a profile region) or call .region(...)")]
    MissingRegion,
}

/// What the sink has sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloudWatchStats {
    /// PutMetricData calls that succeeded.
    pub calls: u64,
    /// PutMetricData calls that failed (after the SDK's own retries).
    pub failed_calls: u64,
    /// Datums in successful calls.
    pub datums: u64,
    /// Records delivered.
    pub records: u64,
    /// Records rejected (invalid locally or refused by CloudWatch).
    pub rejected: u64,
    /// Records handed back to the collector for a retry.
    pub retried: u64,
    /// Records folded into `Model=other` by the series cap.
    pub folded: u64,
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    failed_calls: AtomicU64,
    datums: AtomicU64,
    records: AtomicU64,
    rejected: AtomicU64,
    retried: AtomicU64,
    folded: AtomicU64,
}

/// The CloudWatch sink. Cheap to clone (clones share the client and stats).
#[derive(Clone)]
pub struct CloudWatchSink {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: CloudWatchConfig,
    client: Client,
    counters: Counters,
}

impl std::fmt::Debug for CloudWatchSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudWatchSink")
            .field("name", &self.inner.cfg.name)
            .field("namespace", &self.inner.cfg.namespace)
            .field("mode", &self.inner.cfg.mode)
            .finish_non_exhaustive()
    }
}

impl CloudWatchSinkBuilder {
    /// Build the sink. Without [`client`](Self::client), loads the AWS
    /// configuration the standard way (environment, shared config and
    /// credentials files, profile, SSO, container and instance roles) with
    /// the region, profile and endpoint given here taking precedence.
    pub async fn build(self) -> Result<CloudWatchSink, Error> {
        self.validate()?;
        let sdk = match self.client {
            Some(c) => c,
            None => {
                let cfg = &self.cfg;
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .retry_config(
                        aws_config::retry::RetryConfig::standard().with_max_attempts(cfg.sdk_max_attempts),
                    )
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .connect_timeout(Duration::from_secs(3))
                            .operation_attempt_timeout(Duration::from_secs(5))
                            .operation_timeout(cfg.batch_budget)
                            .build(),
                    );
                if let Some(r) = &cfg.region {
                    loader = loader.region(aws_config::Region::new(r.clone()));
                }
                if let Some(p) = &cfg.profile {
                    loader = loader.profile_name(p);
                }
                if let Some(e) = &cfg.endpoint_url {
                    loader = loader.endpoint_url(e);
                }
                let sdk = loader.load().await;
                if sdk.region().is_none() {
                    return Err(Error::MissingRegion);
                }
                aws_sdk_cloudwatch::Client::new(&sdk)
            }
        };
        if sdk.config().region().is_none() {
            return Err(Error::MissingRegion);
        }
        let client = Client::new(sdk, self.cfg.namespace.clone());
        Ok(CloudWatchSink {
            inner: Arc::new(Inner {
                cfg: self.cfg,
                client,
                counters: Counters::default(),
            }),
        })
    }
}

/// Where the records of a batch stand.
#[derive(Default)]
struct Settled {
    rejected: Vec<usize>,
    reject_msg: Option<String>,
    /// CloudWatch refused the sink itself (access denied, bad credentials):
    /// the rejected records failed because of the sink, not their data.
    misconfigured: bool,
    retry: Vec<usize>,
    stop: Option<Failure>,
}

impl CloudWatchSink {
    /// A builder with the defaults (namespace `LLM/Metrics`, aggregate mode, 60 s).
    pub fn builder() -> CloudWatchSinkBuilder {
        CloudWatchSinkBuilder::default()
    }

    /// A sink publishing to `namespace` with everything else from the
    /// standard AWS environment (credentials, `AWS_REGION`, `AWS_PROFILE`,
    /// `AWS_ENDPOINT_URL`, ...). For the CLI spec `cloudwatch:NAMESPACE`.
    pub async fn from_namespace(namespace: &str) -> Result<Self, Error> {
        Self::builder().namespace(namespace).build().await
    }

    /// The configuration in use.
    pub fn config(&self) -> &CloudWatchConfig {
        &self.inner.cfg
    }

    /// What was sent so far.
    pub fn stats(&self) -> CloudWatchStats {
        let c = &self.inner.counters;
        CloudWatchStats {
            calls: c.calls.load(Relaxed),
            failed_calls: c.failed_calls.load(Relaxed),
            datums: c.datums.load(Relaxed),
            records: c.records.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            retried: c.retried.load(Relaxed),
            folded: c.folded.load(Relaxed),
        }
    }

    fn pack(&self, groups: Vec<Group>) -> VecDeque<Vec<Group>> {
        let cfg = &self.inner.cfg;
        let max_bytes = cfg.max_request_bytes - encode::envelope_size(&cfg.namespace);
        let items: Vec<(usize, usize)> = groups.iter().map(|g| (g.datums.len(), g.size)).collect();
        let plan = client::pack(&items, cfg.max_datums_per_call, max_bytes);
        let mut slots: Vec<Option<Group>> = groups.into_iter().map(Some).collect();
        plan.into_iter()
            .map(|call| call.into_iter().filter_map(|i| slots[i].take()).collect())
            .collect()
    }

    /// Send a batch's records; returns where each undelivered record stands.
    async fn send(&self, batch: &[AgentMetrics], valid: &[usize], settled: &mut Settled) {
        let cfg = &self.inner.cfg;
        let c = &self.inner.counters;
        let started = Instant::now();
        let agg = Aggregator::new(cfg);
        let grouped = agg.group(batch, valid);
        c.folded.fetch_add(grouped.folded, Relaxed);
        let mut queue = self.pack(grouped.groups);
        while let Some(call) = queue.pop_front() {
            let records = || call.iter().flat_map(|g| g.records.iter().copied());
            let elapsed = started.elapsed();
            if settled.stop.is_some() || elapsed >= cfg.batch_budget {
                if settled.stop.is_none() {
                    settled.stop = Some(Failure::Retryable("batch time budget spent".into()));
                }
                settled.retry.extend(records());
                continue;
            }
            let datums: Vec<_> = call
                .iter()
                .flat_map(|g| g.datums.iter().map(client::to_sdk))
                .collect();
            let n = datums.len() as u64;
            let outcome =
                tokio::time::timeout(cfg.batch_budget - elapsed, self.inner.client.put(datums)).await;
            let failure = match outcome {
                Ok(Ok(())) => {
                    c.calls.fetch_add(1, Relaxed);
                    c.datums.fetch_add(n, Relaxed);
                    c.records.fetch_add(records().count() as u64, Relaxed);
                    continue;
                }
                Ok(Err(f)) => f,
                Err(_) => {
                    // The call may or may not have been stored; retrying
                    // risks a double count, dropping risks a loss. Prefer
                    // at-least-once and say so.
                    tracing::warn!(
                        "cloudwatch: PutMetricData outlived the batch budget; its records will be retried"
                    );
                    Failure::Retryable("PutMetricData outlived the batch time budget".into())
                }
            };
            c.failed_calls.fetch_add(1, Relaxed);
            match failure {
                Failure::Throttled(..) | Failure::Retryable(_) => {
                    tracing::debug!(error = ?failure, "cloudwatch: transient failure");
                    settled.retry.extend(records());
                    settled.stop = Some(failure);
                }
                Failure::Permanent(m) => {
                    tracing::error!(error = %m, "cloudwatch refused PutMetricData");
                    settled.misconfigured = true;
                    settled.rejected.extend(records());
                    for rest in queue.drain(..) {
                        settled
                            .rejected
                            .extend(rest.iter().flat_map(|g| g.records.iter().copied()));
                    }
                    settled.reject_msg = Some(m);
                }
                Failure::Invalid { message, member } => {
                    tracing::warn!(error = %message, "cloudwatch refused a datum");
                    let culprit = member.and_then(|k| {
                        call.iter()
                            .flat_map(|g| g.datum_records.iter())
                            .nth(k.checked_sub(1)?)
                            .cloned()
                    });
                    let mut retry_calls: Vec<Vec<Group>> = Vec::new();
                    if let Some(bad) = culprit {
                        // Reject the offending datum's records; resend the rest.
                        settled.rejected.extend(bad.iter().copied());
                        let rest: Vec<usize> = records().filter(|i| !bad.contains(i)).collect();
                        retry_calls.extend(self.pack(agg.group(batch, &rest).groups));
                    } else if call.len() > 1 {
                        let mut left = call;
                        let right = left.split_off(left.len() / 2);
                        retry_calls.push(left);
                        retry_calls.push(right);
                    } else {
                        // One series refused as a whole: its records share
                        // everything CloudWatch checks besides the values,
                        // which were checked before sending.
                        settled.rejected.extend(records());
                    }
                    for rc in retry_calls.into_iter().rev() {
                        queue.push_front(rc);
                    }
                    settled.reject_msg = Some(message);
                }
            }
        }
    }
}

#[async_trait]
impl MetricsSink for CloudWatchSink {
    fn name(&self) -> &str {
        &self.inner.cfg.name
    }

    async fn record(&self, metrics: &AgentMetrics) -> Result<(), SinkError> {
        self.record_batch(std::slice::from_ref(metrics)).await
    }

    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut settled = Settled::default();
        let now = chrono::Utc::now();
        let mut valid = Vec::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            let reason = encode::invalid_reason(m).or_else(|| {
                (m.timestamp < now - MAX_AGE || m.timestamp > now + MAX_AHEAD).then(|| {
                    format!(
                        "timestamp {} outside CloudWatch's window (2 weeks back, 2 hours ahead)",
                        m.timestamp
                    )
                })
            });
            match reason {
                Some(r) => {
                    settled.rejected.push(i);
                    settled.reject_msg.get_or_insert(r);
                }
                None => valid.push(i),
            }
        }
        if !settled.rejected.is_empty() {
            tracing::warn!(
                records = settled.rejected.len(),
                reason = settled.reject_msg.as_deref().unwrap_or_default(),
                "cloudwatch: records CloudWatch would refuse are rejected"
            );
        }
        self.send(batch, &valid, &mut settled).await;
        let c = &self.inner.counters;
        let Settled {
            mut rejected,
            reject_msg,
            misconfigured,
            mut retry,
            stop,
        } = settled;
        rejected.sort_unstable();
        rejected.dedup();
        retry.sort_unstable();
        retry.dedup();
        c.rejected.fetch_add(rejected.len() as u64, Relaxed);
        c.retried.fetch_add(retry.len() as u64, Relaxed);
        let transient = || match &stop {
            Some(Failure::Throttled(d, m)) => SinkError::throttled(*d, format!("CloudWatch throttled: {m}")),
            Some(Failure::Retryable(m)) => SinkError::retryable(format!("CloudWatch unavailable: {m}")),
            _ => SinkError::retryable("CloudWatch unavailable"),
        };
        let permanent = || {
            SinkError::permanent(format!(
                "CloudWatch refused {} records: {}",
                rejected.len(),
                reject_msg.clone().unwrap_or_default()
            ))
        };
        if misconfigured && !rejected.is_empty() {
            // The sink is wrong: everything not delivered fails at once, unsplit.
            let mut failed = rejected;
            failed.extend(retry);
            failed.sort_unstable();
            failed.dedup();
            return Err(SinkError::misconfigured(format!(
                "CloudWatch refused the request (credentials, permission or endpoint): {}",
                reject_msg.unwrap_or_default()
            ))
            .with_records(failed));
        }
        match (rejected.is_empty(), retry.is_empty()) {
            (true, true) => Ok(()),
            (false, true) => Err(permanent().with_records(rejected)),
            (true, false) => Err(transient().with_records(retry)),
            (false, false) => {
                let e = permanent();
                Err(SinkError::partial(e, rejected, retry))
            }
        }
    }

    /// Nothing is buffered between calls: every `record_batch` has sent
    /// (or reported) all its records before it returned.
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn offline_client() -> aws_sdk_cloudwatch::Client {
        let conf = aws_sdk_cloudwatch::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_cloudwatch::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new(
                "AKIDEXAMPLE",
                "secret-RECOGNISABLE-42",
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_cloudwatch::Client::from_conf(conf)
    }

    #[tokio::test]
    async fn invalid_records_are_rejected_before_sending() {
        let sink = CloudWatchSink::builder()
            .client(offline_client())
            .build()
            .await
            .unwrap();
        let mut bad = AgentMetrics::new("p", "m").with_latency_ms(f64::NAN);
        bad.timestamp = chrono::Utc::now();
        let mut old = AgentMetrics::new("p", "m").with_latency_ms(1.0);
        old.timestamp = chrono::Utc::now() - chrono::Duration::days(20);
        let err = sink.record_batch(&[bad, old]).await.unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.records(), Some(&[0, 1][..]));
        assert_eq!(
            sink.stats().calls + sink.stats().failed_calls,
            0,
            "nothing was sent"
        );
    }

    #[tokio::test]
    async fn connection_failure_is_retryable_for_exactly_the_valid_records() {
        let sink = CloudWatchSink::builder()
            .client(offline_client())
            .batch_budget(Duration::from_secs(5))
            .build()
            .await
            .unwrap();
        let good = AgentMetrics::new("p", "m").with_latency_ms(1.0);
        let bad = AgentMetrics::new("p", "m").with_latency_ms(-1.0);
        let err = sink.record_batch(&[good.clone(), bad, good]).await.unwrap_err();
        assert!(err.is_permanent(), "partial: one rejected, two to retry");
        assert_eq!(err.records(), Some(&[1][..]));
        assert_eq!(err.retry_records(), &[0, 2]);
        assert!(!format!("{err:?} {sink:?}").contains("RECOGNISABLE"));
    }

    #[tokio::test]
    async fn builder_validates() {
        let r = CloudWatchSink::builder()
            .namespace("AWS/Lambda")
            .client(offline_client())
            .build()
            .await;
        assert!(matches!(r, Err(Error::Config(ConfigError::InvalidNamespace(_)))));
    }
}
