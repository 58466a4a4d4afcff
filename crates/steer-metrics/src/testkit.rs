//! Sinks for testing pipelines and your own sinks: record what arrives,
//! fail on demand, stall, or reject chosen records.
//!
//! ```
//! use std::time::Duration;
//! use steer_metrics::{AgentMetrics, MetricsCollector, SinkOptions, RetryPolicy};
//! use steer_metrics::testkit::FailingSink;
//! # #[tokio::main] async fn main() {
//! let sink = FailingSink::new(2); // fails twice, then succeeds
//! let fast = RetryPolicy::default().initial_backoff(Duration::from_millis(1));
//! let c = MetricsCollector::builder()
//!     .sink_with_options(sink.clone(), SinkOptions::default().retry(fast))
//!     .build().unwrap();
//! c.record(AgentMetrics::new("sim", "m"));
//! c.flush().await;
//! assert_eq!(sink.recording().len(), 1);
//! assert_eq!(sink.attempts(), 3);
//! # }
//! ```

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::record::AgentMetrics;
use crate::sink::{MetricsSink, SinkError};

/// Stores every delivered record and counts calls. Clones share state.
#[derive(Clone, Default)]
pub struct RecordingSink {
    name: Arc<str>,
    records: Arc<Mutex<Vec<AgentMetrics>>>,
    batches: Arc<AtomicU64>,
    flushes: Arc<AtomicU64>,
    closes: Arc<AtomicU64>,
}

impl RecordingSink {
    /// A recording sink named `recording`.
    pub fn new() -> Self {
        Self::named("recording")
    }

    /// A recording sink with this name.
    pub fn named(name: &str) -> Self {
        RecordingSink {
            name: Arc::from(name),
            ..Default::default()
        }
    }

    /// Copies of the delivered records, in delivery order.
    pub fn records(&self) -> Vec<AgentMetrics> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Number of delivered records.
    pub fn len(&self) -> usize {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing was delivered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `record_batch` calls that succeeded.
    pub fn batches(&self) -> u64 {
        self.batches.load(SeqCst)
    }

    /// `flush` calls.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(SeqCst)
    }

    /// `close` calls.
    pub fn closes(&self) -> u64 {
        self.closes.load(SeqCst)
    }

    fn push(&self, batch: &[AgentMetrics]) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(batch);
        self.batches.fetch_add(1, SeqCst);
    }
}

#[async_trait]
impl MetricsSink for RecordingSink {
    fn name(&self) -> &str {
        &self.name
    }
    async fn record(&self, m: &AgentMetrics) -> Result<(), SinkError> {
        self.push(std::slice::from_ref(m));
        Ok(())
    }
    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        self.push(batch);
        Ok(())
    }
    async fn flush(&self) -> Result<(), SinkError> {
        self.flushes.fetch_add(1, SeqCst);
        Ok(())
    }
    async fn close(&self) -> Result<(), SinkError> {
        self.closes.fetch_add(1, SeqCst);
        Ok(())
    }
}

/// Fails its first `n` batch attempts (retryable, or throttled with a hint),
/// then records like a [`RecordingSink`].
#[derive(Clone)]
pub struct FailingSink {
    inner: RecordingSink,
    remaining: Arc<AtomicU64>,
    attempts: Arc<AtomicU64>,
    throttle: Option<Duration>,
}

impl FailingSink {
    /// Fails `n` times with a retryable error, then succeeds.
    pub fn new(n: u64) -> Self {
        FailingSink {
            inner: RecordingSink::named("failing"),
            remaining: Arc::new(AtomicU64::new(n)),
            attempts: Arc::new(AtomicU64::new(0)),
            throttle: None,
        }
    }

    /// Fail with a throttle hint instead.
    #[must_use]
    pub fn throttled(mut self, retry_after: Duration) -> Self {
        self.throttle = Some(retry_after);
        self
    }

    /// Make it fail `n` more times from now (e.g. a second outage).
    pub fn fail_next(&self, n: u64) {
        self.remaining.store(n, SeqCst);
    }

    /// What was delivered.
    pub fn recording(&self) -> &RecordingSink {
        &self.inner
    }

    /// Batch attempts so far, failed ones included.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(SeqCst)
    }
}

#[async_trait]
impl MetricsSink for FailingSink {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn record(&self, m: &AgentMetrics) -> Result<(), SinkError> {
        self.record_batch(std::slice::from_ref(m)).await
    }
    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        self.attempts.fetch_add(1, SeqCst);
        let failing = self
            .remaining
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(match self.throttle {
                Some(d) => SinkError::throttled(d, "test sink throttled"),
                None => SinkError::retryable("test sink unavailable"),
            });
        }
        self.inner.record_batch(batch).await
    }
    async fn flush(&self) -> Result<(), SinkError> {
        self.inner.flush().await
    }
}

/// Refuses every batch with [`SinkError::misconfigured`] (as a backend
/// answering 401 would) until [`fix`](MisconfiguredSink::fix) is called,
/// then records like a [`RecordingSink`].
#[derive(Clone)]
pub struct MisconfiguredSink {
    inner: RecordingSink,
    fixed: Arc<std::sync::atomic::AtomicBool>,
    attempts: Arc<AtomicU64>,
}

impl MisconfiguredSink {
    /// A sink whose "credentials" are refused.
    pub fn new() -> Self {
        MisconfiguredSink {
            inner: RecordingSink::named("misconfigured"),
            fixed: Arc::default(),
            attempts: Arc::default(),
        }
    }

    /// The operator fixed the key: from now on batches are recorded.
    pub fn fix(&self) {
        self.fixed.store(true, SeqCst);
    }

    /// What was delivered.
    pub fn recording(&self) -> &RecordingSink {
        &self.inner
    }

    /// `record_batch` calls so far, refused ones included.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(SeqCst)
    }
}

impl Default for MisconfiguredSink {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl MetricsSink for MisconfiguredSink {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn record(&self, m: &AgentMetrics) -> Result<(), SinkError> {
        self.record_batch(std::slice::from_ref(m)).await
    }
    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        self.attempts.fetch_add(1, SeqCst);
        if !self.fixed.load(SeqCst) {
            return Err(SinkError::misconfigured("HTTP 401: invalid API key"));
        }
        self.inner.record_batch(batch).await
    }
}

/// Takes `delay` per batch (or forever with [`SlowSink::hanging`]), then records.
#[derive(Clone)]
pub struct SlowSink {
    inner: RecordingSink,
    delay: Option<Duration>,
}

impl SlowSink {
    /// Sleeps `delay` before each batch and each flush.
    pub fn new(delay: Duration) -> Self {
        SlowSink {
            inner: RecordingSink::named("slow"),
            delay: Some(delay),
        }
    }

    /// Never returns from `record_batch` or `flush`.
    pub fn hanging() -> Self {
        SlowSink {
            inner: RecordingSink::named("hanging"),
            delay: None,
        }
    }

    /// What was delivered.
    pub fn recording(&self) -> &RecordingSink {
        &self.inner
    }

    async fn wait(&self) {
        match self.delay {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    }
}

#[async_trait]
impl MetricsSink for SlowSink {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn record(&self, m: &AgentMetrics) -> Result<(), SinkError> {
        self.record_batch(std::slice::from_ref(m)).await
    }
    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        self.wait().await;
        self.inner.record_batch(batch).await
    }
    async fn flush(&self) -> Result<(), SinkError> {
        self.wait().await;
        self.inner.flush().await
    }
}

type Predicate = Arc<dyn Fn(&AgentMetrics) -> bool + Send + Sync>;

/// Rejects records matching a predicate with a permanent error that does
/// not say which record was bad (like a database aborting a whole
/// transaction), and records the batch only when no record matches. The
/// collector must split batches to isolate the bad records.
#[derive(Clone)]
pub struct RejectingSink {
    inner: RecordingSink,
    reject: Predicate,
    attempts: Arc<AtomicU64>,
}

impl RejectingSink {
    /// Reject records for which `reject` returns true.
    pub fn new(reject: impl Fn(&AgentMetrics) -> bool + Send + Sync + 'static) -> Self {
        RejectingSink {
            inner: RecordingSink::named("rejecting"),
            reject: Arc::new(reject),
            attempts: Arc::default(),
        }
    }

    /// What was delivered.
    pub fn recording(&self) -> &RecordingSink {
        &self.inner
    }

    /// `record_batch` calls so far.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(SeqCst)
    }
}

#[async_trait]
impl MetricsSink for RejectingSink {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn record(&self, m: &AgentMetrics) -> Result<(), SinkError> {
        self.record_batch(std::slice::from_ref(m)).await
    }
    async fn record_batch(&self, batch: &[AgentMetrics]) -> Result<(), SinkError> {
        self.attempts.fetch_add(1, SeqCst);
        if batch.iter().any(|m| (self.reject)(m)) {
            return Err(SinkError::permanent(
                "batch contains a record the backend refuses",
            ));
        }
        self.inner.record_batch(batch).await
    }
}

/// Models used by [`synthetic`]: ten models over three providers, with
/// their (input, output) USD prices per million tokens.
const SYNTHETIC_MODELS: [(&str, &str, f64, f64); 10] = [
    ("openai", "gpt-4o", 2.5, 10.0),
    ("openai", "gpt-4o-mini", 0.15, 0.6),
    ("openai", "gpt-4.1", 2.0, 8.0),
    ("openai", "o3-mini", 1.1, 4.4),
    ("anthropic", "claude-sonnet-4-5", 3.0, 15.0),
    ("anthropic", "claude-haiku-4-5", 1.0, 5.0),
    ("anthropic", "claude-opus-4-1", 15.0, 75.0),
    ("xai", "grok-4", 3.0, 15.0),
    ("xai", "grok-3-mini", 0.3, 0.5),
    ("xai", "grok-code-fast-1", 0.2, 1.5),
];

/// `n` varied, realistic records, deterministic for a `seed`: ten models
/// over three providers, about 5% errors of several classes, log-normal-ish
/// latencies, streaming calls with TTFT, cached tokens and costs. For
/// benchmarks and sink tests.
pub fn synthetic(n: usize, seed: u64) -> Vec<AgentMetrics> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let base = chrono::Utc::now() - chrono::Duration::minutes(1);
    (0..n)
        .map(|i| {
            let (provider, model, pin, pout) = SYNTHETIC_MODELS[rng.usize(..SYNTHETIC_MODELS.len())];
            let mut m = AgentMetrics::new(provider, model);
            m.timestamp = base + chrono::Duration::microseconds(i as i64 * 10);
            // exp(normal) via Box-Muller: median ~600 ms.
            let z = (-2.0 * rng.f64().max(1e-12).ln()).sqrt() * (std::f64::consts::TAU * rng.f64()).cos();
            m.latency_ms = (600.0 * (0.5 * z).exp() * 1000.0).round() / 1000.0;
            if rng.bool() {
                m.method = crate::record::Method::Stream;
                m.ttft_ms = Some((m.latency_ms * (0.1 + 0.3 * rng.f64()) * 1000.0).round() / 1000.0);
            }
            m.response_model = Some(format!("{model}-2025-01-01"));
            let roll = rng.u32(..1000);
            if roll < 50 {
                m.error_class = Some(crate::record::ErrorClass::ALL[(roll % 9) as usize]);
                m.error_message = Some("synthetic failure".into());
                m.retries = rng.u32(0..3);
            } else {
                m.input_tokens = rng.u64(10..4000);
                m.cached_tokens = if rng.u8(..4) == 0 { m.input_tokens / 2 } else { 0 };
                m.output_tokens = rng.u64(1..1500);
                m.cost_usd = Some(
                    ((m.input_tokens as f64 * pin + m.output_tokens as f64 * pout) / 1e6 * 1e9).round() / 1e9,
                );
                if rng.u8(..10) == 0 {
                    m.tools_used = vec!["search".into()];
                    m.tools_invoked = 1;
                }
            }
            m.tags.insert("env".into(), "bench".into());
            m
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_is_deterministic_and_varied() {
        let a = synthetic(2000, 7);
        let b = synthetic(2000, 7);
        let strip = |v: &[AgentMetrics]| {
            v.iter()
                .map(|m| (m.model.clone(), m.latency_ms, m.input_tokens))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&a), strip(&b));
        let errors = a.iter().filter(|m| m.is_error()).count();
        assert!((40..=170).contains(&errors), "about 5% errors, got {errors}");
        let models: std::collections::HashSet<_> = a.iter().map(|m| &m.model).collect();
        assert_eq!(models.len(), 10);
        assert!(a.iter().all(|m| m.latency_ms.is_finite() && m.latency_ms > 0.0));
    }
}
