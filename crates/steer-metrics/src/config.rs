//! Collector and per-sink configuration.

use std::time::Duration;

/// What a sink's queue does when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per batch including the first (default 8).
    pub max_attempts: u32,
    /// First backoff (default 100 ms).
    pub initial_backoff: Duration,
    /// Largest backoff (default 10 s).
    pub max_backoff: Duration,
    /// Time budget per attempt; an attempt that takes longer is a
    /// retryable timeout (default 10 s).
    pub attempt_timeout: Duration,
    /// Total time budget per batch from its first attempt (default 60 s).
    pub batch_deadline: Duration,
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
    /// The wait before attempt `attempt` (1-based count of failures so far).
    pub fn backoff(&self, failures: u32, hint: Option<Duration>) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(
                1u32.checked_shl(failures.saturating_sub(1).min(20))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_backoff);
        let jittered = exp.mul_f64(fastrand::f64());
        match hint {
            Some(h) => h.max(jittered),
            None => jittered,
        }
    }
}

/// Per-sink delivery options. Defaults suit a network backend.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkOptions {
    /// Records the sink's queue holds (default 10 000). Memory is bounded by this.
    pub queue_capacity: usize,
    /// Largest batch handed to `record_batch` (default 500).
    pub batch_size: usize,
    /// How long a partial batch waits for more records (default 200 ms).
    pub linger: Duration,
    /// What to do when the queue is full (default [`OverflowPolicy::DropNewest`]).
    pub overflow: OverflowPolicy,
    /// Retry policy.
    pub retry: RetryPolicy,
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
    /// Set the queue capacity (at least 1).
    #[must_use]
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }
    /// Set the batch size (at least 1).
    #[must_use]
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
    /// Set the linger time.
    #[must_use]
    pub fn linger(mut self, d: Duration) -> Self {
        self.linger = d;
        self
    }
    /// Set the overflow policy.
    #[must_use]
    pub fn overflow(mut self, p: OverflowPolicy) -> Self {
        self.overflow = p;
        self
    }
    /// Set the retry policy.
    #[must_use]
    pub fn retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }
}

/// Collector-wide configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// When false, `record()` is a no-op (default true).
    pub enabled: bool,
    /// Fraction of successful calls kept, in `[0, 1]` (default 1.0).
    pub success_sample_rate: f64,
    /// Fraction of failed calls kept, in `[0, 1]` (default 1.0).
    pub error_sample_rate: f64,
    /// Options for sinks added without their own.
    pub default_sink_options: SinkOptions,
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
    /// Turn recording on or off.
    #[must_use]
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }
    /// Keep this fraction of successful calls (clamped to `[0, 1]`; NaN = 0).
    #[must_use]
    pub fn success_sample_rate(mut self, rate: f64) -> Self {
        self.success_sample_rate = clamp_rate(rate);
        self
    }
    /// Keep this fraction of failed calls (clamped to `[0, 1]`; NaN = 0).
    #[must_use]
    pub fn error_sample_rate(mut self, rate: f64) -> Self {
        self.error_sample_rate = clamp_rate(rate);
        self
    }
    /// Options for sinks added without their own.
    #[must_use]
    pub fn default_sink_options(mut self, o: SinkOptions) -> Self {
        self.default_sink_options = o;
        self
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
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
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
    }
}
