//! The collector under misbehaving sinks (issue 18): a sink that is
//! misconfigured, that panics in any method, whose flush fails; and the
//! report says which sink and why, redacted.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use steer_metrics::testkit::{synthetic, MisconfiguredSink, RecordingSink};
use steer_metrics::{
    async_trait, AgentMetrics, MetricsCollector, MetricsSink, RetryPolicy, SinkError, SinkOptions,
};

fn opts() -> SinkOptions {
    SinkOptions::default()
        .linger(Duration::from_millis(5))
        .batch_size(500)
        .retry(
            RetryPolicy::default()
                .initial_backoff(Duration::from_millis(1))
                .max_backoff(Duration::from_millis(20)),
        )
}

fn invariant(s: &steer_metrics::SinkStats) {
    assert_eq!(
        s.received,
        s.delivered + s.dropped.total() + s.failed.total() + s.in_flight + s.spooled,
        "{s}"
    );
}

#[tokio::test]
async fn a_misconfigured_sink_fails_each_batch_once_unsplit() {
    let sink = MisconfiguredSink::new();
    let c = MetricsCollector::builder()
        .sink_with_options(sink.clone(), opts())
        .build()
        .unwrap();
    for m in synthetic(1010, 1) {
        c.record(m);
    }
    let report = c.shutdown(Duration::from_secs(10)).await;
    let s = &report.sinks[0].stats;
    assert_eq!(s.failed.misconfigured, 1010, "{s}");
    assert_eq!(s.failed.rejected, 0, "{s}");
    assert_eq!(s.retried, 0, "{s}");
    assert_eq!(s.delivered, 0);
    // 1010 records in batches of at most 500: three calls, never a split.
    assert!(sink.attempts() <= 3, "{} record_batch calls", sink.attempts());
    assert!(s.last_error.as_deref().unwrap().contains("401"), "{s}");
    invariant(s);
}

#[tokio::test]
async fn a_default_record_batch_keeps_a_misconfigured_error_for_the_whole_batch() {
    struct PerRecord(AtomicU64);
    #[async_trait]
    impl MetricsSink for PerRecord {
        fn name(&self) -> &str {
            "per-record"
        }
        async fn record(&self, _m: &AgentMetrics) -> Result<(), SinkError> {
            self.0.fetch_add(1, SeqCst);
            Err(SinkError::misconfigured("403 forbidden"))
        }
    }
    let sink = Arc::new(PerRecord(AtomicU64::new(0)));
    let c = MetricsCollector::builder()
        .sink_with_options(sink.clone(), opts())
        .build()
        .unwrap();
    for m in synthetic(1010, 2) {
        c.record(m);
    }
    let report = c.shutdown(Duration::from_secs(10)).await;
    let s = &report.sinks[0].stats;
    assert_eq!(s.failed.misconfigured, 1010, "{s}");
    assert!(sink.0.load(SeqCst) <= 3, "{} record calls", sink.0.load(SeqCst));
    invariant(s);
}

/// Panics in the chosen method the first time it is called.
struct Panicky {
    inner: RecordingSink,
    in_flush: AtomicBool,
    in_close: AtomicBool,
}

#[async_trait]
impl MetricsSink for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    async fn record(&self, m: &AgentMetrics) -> Result<(), SinkError> {
        self.inner.record(m).await
    }
    async fn record_batch(&self, b: &[AgentMetrics]) -> Result<(), SinkError> {
        self.inner.record_batch(b).await
    }
    async fn flush(&self) -> Result<(), SinkError> {
        if self.in_flush.swap(false, SeqCst) {
            panic!("flush exploded");
        }
        Ok(())
    }
    async fn close(&self) -> Result<(), SinkError> {
        if self.in_close.swap(false, SeqCst) {
            panic!("close exploded");
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_panic_in_flush_is_reported_and_the_worker_lives_on() {
    let sink = Arc::new(Panicky {
        inner: RecordingSink::new(),
        in_flush: AtomicBool::new(true),
        in_close: AtomicBool::new(false),
    });
    let c = MetricsCollector::builder()
        .sink_with_options(sink.clone(), opts())
        .build()
        .unwrap();
    for m in synthetic(10, 3) {
        c.record(m);
    }
    let first = c.flush_timeout(Duration::from_secs(10)).await;
    assert!(first.sinks[0].completed);
    assert!(first.sinks[0]
        .error
        .as_deref()
        .unwrap()
        .contains("flush exploded"));
    // What the sink took before its flush blew up is not claimed delivered.
    assert_eq!(first.sinks[0].stats.failed.flush, 10);

    // The worker is alive: later records are delivered, nothing stays in flight.
    for m in synthetic(20, 4) {
        c.record(m);
    }
    let report = c.shutdown(Duration::from_secs(10)).await;
    let s = &report.sinks[0].stats;
    assert!(report.is_complete(), "{report}");
    assert_eq!(s.delivered, 20, "{s}");
    assert_eq!(s.in_flight, 0, "{s}");
    assert_eq!(sink.inner.len(), 30);
    invariant(s);
}

#[tokio::test]
async fn a_panic_in_close_is_reported() {
    let sink = Panicky {
        inner: RecordingSink::new(),
        in_flush: AtomicBool::new(false),
        in_close: AtomicBool::new(true),
    };
    let c = MetricsCollector::builder()
        .sink_with_options(sink, opts())
        .build()
        .unwrap();
    for m in synthetic(5, 5) {
        c.record(m);
    }
    let report = c.shutdown(Duration::from_secs(10)).await;
    let r = &report.sinks[0];
    assert!(r.error.as_deref().unwrap().contains("close exploded"), "{report}");
    assert_eq!(r.stats.failed.flush, 5, "{report}");
    assert_eq!(report.problems().count(), 1);
    invariant(&r.stats);
}

/// A sink that buffers (like an aggregating exporter) and whose backend is
/// down at flush time.
struct DeadAtFlush;

#[async_trait]
impl MetricsSink for DeadAtFlush {
    fn name(&self) -> &str {
        "dead-at-flush"
    }
    async fn record(&self, _m: &AgentMetrics) -> Result<(), SinkError> {
        Ok(())
    }
    async fn flush(&self) -> Result<(), SinkError> {
        Err(SinkError::retryable(
            "cannot export to http://collector:4318/v1/metrics?api_key=SECRET-KEY-123: connection refused",
        ))
    }
}

#[tokio::test]
async fn an_error_at_flush_or_close_is_counted_and_reported_redacted() {
    let c = MetricsCollector::builder()
        .sink_with_options(
            DeadAtFlush,
            opts().retry(
                RetryPolicy::default()
                    .max_attempts(3)
                    .initial_backoff(Duration::from_millis(1))
                    .max_backoff(Duration::from_millis(5)),
            ),
        )
        .build()
        .unwrap();
    for m in synthetic(50, 6) {
        c.record(m);
    }
    let report = c.shutdown(Duration::from_secs(10)).await;
    let r = &report.sinks[0];
    assert_eq!(r.stats.delivered, 0, "{report}");
    assert_eq!(r.stats.failed.flush, 50, "{report}");
    let shown = format!("{report} {:?}", r.stats.last_error);
    assert!(!shown.contains("SECRET-KEY-123"), "{shown}");
    assert!(shown.contains("connection refused"), "{shown}");
    invariant(&r.stats);
}

#[tokio::test]
async fn the_last_error_is_redacted_in_stats_and_reports() {
    struct Leaky;
    #[async_trait]
    impl MetricsSink for Leaky {
        fn name(&self) -> &str {
            "leaky"
        }
        async fn record(&self, _m: &AgentMetrics) -> Result<(), SinkError> {
            Err(SinkError::permanent(
                "bad row for postgres://steer:hunter2@db/m?password=hunter2&sslmode=require",
            ))
        }
    }
    let c = MetricsCollector::builder()
        .sink_with_options(Leaky, opts())
        .build()
        .unwrap();
    c.record(AgentMetrics::new("sim", "m"));
    let report = c.shutdown(Duration::from_secs(10)).await;
    let shown = format!("{report} {:?}", c.stats());
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("sslmode=require"), "{shown}");
}
