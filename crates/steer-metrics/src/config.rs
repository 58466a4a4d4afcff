//! Collector and per-sink configuration.

use std::time::Duration;

/// What a sink's queue does when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Drop the record being recorded (counted as `queue_full`). The default.
    #[default]
    DropNewest,
    /// Evict the oldest queued record to make room (counted as `evicted_oldest`).
    DropOldest,
    /// [`MetricsCollector::record_async`](crate::MetricsCollector::record_async)
    /// waits for room; the synchronous `record` still never blocks and
    /// drops the newest record when full.
    Block,
}

/// Retry policy for deliveries that fail transiently.
///
/// Backoff is exponential with full jitter: attempt *n* waits a random time
/// in `[0, min(max_backoff, initial_backoff * 2^n)]`, or at least the
/// backend's throttle hint. A batch stops being retried when
/// `max_attempts` is reached or `batch_deadline` has passed since its first
/// attempt; its records then count as failed (`retries_exhausted`).
///
/// ```
/// use std::time::Duration;
/// use steer_metrics::RetryPolicy;
/// let fast = RetryPolicy::default()
///     .max_attempts(3)
///     .initial_backoff(Duration::from_millis(10));
/// assert_eq!(fast.get_max_attempts(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) attempt_timeout: Duration,
    pub(crate) batch_deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(10),
            batch_deadline: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Attempts per batch including the first (at least 1; default 8).
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
    /// First backoff (default 100 ms).
    #[must_use]
    pub fn initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }
    /// Largest backoff (default 10 s).
    #[must_use]
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }
    /// Time budget per attempt; an attempt that takes longer is a
    /// retryable timeout (default 10 s).
    #[must_use]
    pub fn attempt_timeout(mut self, d: Duration) -> Self {
        self.attempt_timeout = d;
        self
    }
    /// Total time budget per batch from its first attempt (default 60 s).
    #[must_use]
    pub fn batch_deadline(mut self, d: Duration) -> Self {
        self.batch_deadline = d;
        self
    }

    /// Attempts per batch including the first.
    pub fn get_max_attempts(&self) -> u32 {
        self.max_attempts
    }
    /// First backoff.
    pub fn get_initial_backoff(&self) -> Duration {
        self.initial_backoff
    }
    /// Largest backoff.
    pub fn get_max_backoff(&self) -> Duration {
        self.max_backoff
    }
    /// Time budget per attempt.
    pub fn get_attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }
    /// Total time budget per batch from its first attempt.
    pub fn get_batch_deadline(&self) -> Duration {
        self.batch_deadline
    }

    /// The wait before attempt `attempt` (1-based count of failures so far).
    pub fn backoff(&self, failures: u32, hint: Option<Duration>) -> Duration {
        crate::http::backoff(self.initial_backoff, self.max_backoff, failures, hint)
    }
}

/// Per-sink delivery options. Defaults suit a network backend.
///
/// Set with the builder methods (each documents its default); read with
/// the `get_*` methods.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SinkOptions {
    pub(crate) queue_capacity: usize,
    pub(crate) batch_size: usize,
    pub(crate) linger: Duration,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) retry: RetryPolicy,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            queue_capacity: 10_000,
            batch_size: 500,
            linger: Duration::from_millis(200),
            overflow: OverflowPolicy::DropNewest,
            retry: RetryPolicy::default(),
        }
    }
}

impl SinkOptions {
    /// Records the sink's queue holds (at least 1; default 10 000). Memory
    /// is bounded by this.
    #[must_use]
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }
    /// Largest batch handed to `record_batch` (at least 1; default 500).
    #[must_use]
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
    /// How long a partial batch waits for more records (default 200 ms).
    #[must_use]
    pub fn linger(mut self, d: Duration) -> Self {
        self.linger = d;
        self
    }
    /// What to do when the queue is full (default
    /// [`OverflowPolicy::DropNewest`]).
    #[must_use]
    pub fn overflow(mut self, p: OverflowPolicy) -> Self {
        self.overflow = p;
        self
    }
    /// The retry policy (default [`RetryPolicy::default`]).
    #[must_use]
    pub fn retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }

    /// Records the sink's queue holds.
    pub fn get_queue_capacity(&self) -> usize {
        self.queue_capacity
    }
    /// Largest batch handed to `record_batch`.
    pub fn get_batch_size(&self) -> usize {
        self.batch_size
    }
    /// How long a partial batch waits for more records.
    pub fn get_linger(&self) -> Duration {
        self.linger
    }
    /// What to do when the queue is full.
    pub fn get_overflow(&self) -> OverflowPolicy {
        self.overflow
    }
    /// The retry policy.
    pub fn get_retry(&self) -> RetryPolicy {
        self.retry
    }
}

/// Collector-wide configuration.
///
/// Set with the builder methods (each documents its default); read with
/// the getters.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MetricsConfig {
    pub(crate) enabled: bool,
    pub(crate) success_sample_rate: f64,
    pub(crate) error_sample_rate: f64,
    pub(crate) default_sink_options: SinkOptions,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            success_sample_rate: 1.0,
            error_sample_rate: 1.0,
            default_sink_options: SinkOptions::default(),
        }
    }
}

impl MetricsConfig {
    /// Turn recording on or off; when off, `record()` is a no-op (default on).
    #[must_use]
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }
    /// Keep this fraction of successful calls (clamped to `[0, 1]`; NaN = 0;
    /// default 1.0).
    #[must_use]
    pub fn success_sample_rate(mut self, rate: f64) -> Self {
        self.success_sample_rate = clamp_rate(rate);
        self
    }
    /// Keep this fraction of failed calls (clamped to `[0, 1]`; NaN = 0;
    /// default 1.0).
    #[must_use]
    pub fn error_sample_rate(mut self, rate: f64) -> Self {
        self.error_sample_rate = clamp_rate(rate);
        self
    }
    /// Options for sinks added without their own (default
    /// [`SinkOptions::default`]).
    #[must_use]
    pub fn default_sink_options(mut self, o: SinkOptions) -> Self {
        self.default_sink_options = o;
        self
    }

    /// Whether recording is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }
    /// Fraction of successful calls kept, in `[0, 1]`.
    pub fn get_success_sample_rate(&self) -> f64 {
        self.success_sample_rate
    }
    /// Fraction of failed calls kept, in `[0, 1]`.
    pub fn get_error_sample_rate(&self) -> f64 {
        self.error_sample_rate
    }
    /// Options for sinks added without their own.
    pub fn get_default_sink_options(&self) -> &SinkOptions {
        &self.default_sink_options
    }
}

fn clamp_rate(r: f64) -> f64 {
    if r.is_nan() {
        0.0
    } else {
        r.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_honours_hints() {
        let p = RetryPolicy::default()
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(1));
        for _ in 0..200 {
            assert!(p.backoff(1, None) <= Duration::from_millis(100));
            assert!(p.backoff(3, None) <= Duration::from_millis(400));
            assert!(p.backoff(30, None) <= Duration::from_secs(1));
            assert!(p.backoff(2, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        }
    }

    #[test]
    fn rates_are_clamped() {
        let c = MetricsConfig::default()
            .success_sample_rate(2.0)
            .error_sample_rate(f64::NAN);
        assert_eq!(c.success_sample_rate, 1.0);
        assert_eq!(c.error_sample_rate, 0.0);
        let o = SinkOptions::default().queue_capacity(0).batch_size(0);
        assert_eq!((o.get_queue_capacity(), o.get_batch_size()), (1, 1));
        assert_eq!(RetryPolicy::default().max_attempts(0).get_max_attempts(), 1);
    }
}
