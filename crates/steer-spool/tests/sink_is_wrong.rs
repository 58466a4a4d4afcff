//! Issue 18: a spool keeps the records of a misconfigured sink (retried
//! with capped backoff until the operator fixes it), and a spool belongs to
//! one sink.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use steer_metrics::testkit::{synthetic, MisconfiguredSink, RecordingSink};
use steer_metrics::{BuildError, MetricsCollector, RetryPolicy, SinkOptions, Spool};
use steer_spool::{SpoolConfig, SqliteSpool};

fn options() -> SinkOptions {
    SinkOptions::default().batch_size(50).retry(
        RetryPolicy::default()
            .max_attempts(2)
            .initial_backoff(Duration::from_millis(5))
            .max_backoff(Duration::from_millis(50))
            .attempt_timeout(Duration::from_secs(5))
            .batch_deadline(Duration::from_millis(100)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misconfigured_sink_keeps_its_records_spooled_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(SqliteSpool::open(dir.path().join("s.db"), SpoolConfig::default()).unwrap());
    let sink = MisconfiguredSink::new();
    let c = MetricsCollector::builder()
        .sink_with_spool(sink.clone(), Some(options()), spool.clone())
        .build()
        .unwrap();
    let records = synthetic(200, 1);
    for m in records.clone() {
        c.record(m);
    }
    c.sync_spools().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let s = c.stats().sinks[0].clone();
    assert_eq!(s.failed.total(), 0, "nothing fails for good while spooled: {s}");
    assert_eq!(s.delivered, 0);
    assert_eq!(spool.len().unwrap(), 200);
    // Retried slowly: backoff capped at max_backoff, not a tight loop.
    let attempts = sink.attempts();
    assert!((2..40).contains(&attempts), "{attempts} attempts in 400 ms");

    // The operator fixes the key: everything gets through, in order.
    sink.fix();
    let started = Instant::now();
    let report = c.flush_timeout(Duration::from_secs(10)).await;
    assert!(report.is_complete(), "{report}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let got: Vec<_> = sink.recording().records().iter().map(|m| m.request_id).collect();
    let want: Vec<_> = records.iter().map(|m| m.request_id).collect();
    assert_eq!(got, want);
    assert_eq!(spool.len().unwrap(), 0);
    let _ = c.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_holding_another_sinks_records_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let spool = Arc::new(SqliteSpool::open(&path, SpoolConfig::default()).unwrap());
        let down = MisconfiguredSink::new();
        let c = MetricsCollector::builder()
            .sink_with_spool(down, Some(options()), spool.clone())
            .build()
            .unwrap();
        for m in synthetic(20, 2) {
            c.record(m);
        }
        c.sync_spools().await;
        let report = c.shutdown(Duration::from_millis(200)).await;
        assert_eq!(report.sinks[0].stats.spooled, 20, "{report}");
    }
    // Another sink on the same spool: refused, nothing delivered to it.
    let other = RecordingSink::named("postgres://elsewhere/db");
    let spool = Arc::new(SqliteSpool::open(&path, SpoolConfig::default()).unwrap());
    let err = MetricsCollector::builder()
        .sink_with_spool(other.clone(), Some(options()), spool.clone())
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::Spool { .. }), "{err}");
    assert!(
        err.to_string().contains("misconfigured"),
        "names the owner: {err}"
    );
    assert!(other.is_empty());
    assert_eq!(spool.len().unwrap(), 20);

    // The sink it belongs to may use it again.
    let same = RecordingSink::named("misconfigured");
    let c = MetricsCollector::builder()
        .sink_with_spool(same.clone(), Some(options()), spool)
        .build()
        .unwrap();
    let report = c.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_complete(), "{report}");
    assert_eq!(same.len(), 20);
}
