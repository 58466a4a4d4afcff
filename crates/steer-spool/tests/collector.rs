//! A spool behind a sink, through the collector: outages, caps, restarts.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use steer_metrics::testkit::{FailingSink, RecordingSink};
use steer_metrics::{AgentMetrics, MetricsCollector, RetryPolicy, SinkOptions, SinkStats};
use steer_spool::{OnFull, SpoolConfig, SqliteSpool, SyncPolicy};
use uuid::Uuid;

fn rec(i: u64) -> AgentMetrics {
    let mut m = AgentMetrics::new("openai", "gpt-4o-mini").with_latency_ms(i as f64);
    m.request_id = Uuid::from_u128(u128::from(i) + 1);
    m
}

fn id(m: &AgentMetrics) -> u64 {
    m.request_id.as_u128() as u64 - 1
}

/// Tiny memory queue, fast retries that would give up after 2 attempts
/// without a spool.
fn options() -> SinkOptions {
    SinkOptions::default().queue_capacity(16).batch_size(8).retry(
        RetryPolicy::default()
            .max_attempts(2)
            .initial_backoff(Duration::from_millis(1))
            .max_backoff(Duration::from_millis(5))
            .attempt_timeout(Duration::from_secs(5))
            .batch_deadline(Duration::from_millis(50)),
    )
}

fn assert_invariant(s: &SinkStats) {
    assert_eq!(
        s.received,
        s.delivered + s.dropped.total() + s.failed.total() + s.in_flight + s.spooled,
        "accounting invariant broken: {s}"
    );
}

/// Record `ids` in order, syncing to the spool every 8 records so the tiny
/// memory queue never overflows (that is what the spool is for).
async fn record_synced(c: &MetricsCollector, ids: std::ops::Range<u64>) {
    for i in ids {
        c.record(rec(i));
        if i % 8 == 7 {
            c.sync_spools().await;
        }
    }
    c.sync_spools().await;
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(20), "condition not met in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_fills_the_spool_not_the_queue_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = SqliteSpool::open(
        dir.path().join("s.db"),
        SpoolConfig::default().sync(SyncPolicy::Normal),
    )
    .unwrap();
    let sink = FailingSink::new(u64::MAX);
    let c = MetricsCollector::builder()
        .sink_with_spool(sink.clone(), Some(options()), Arc::new(spool))
        .build()
        .unwrap();
    record_synced(&c, 0..2000).await;
    // Many failed attempts (far beyond max_attempts), nothing given up.
    wait_for(|| sink.attempts() > 20).await;
    let s = c.stats().sinks[0].clone();
    assert_eq!(s.received, 2000);
    assert_eq!(s.delivered, 0);
    assert_eq!(s.dropped.total(), 0, "{s}");
    assert_eq!(s.failed.total(), 0, "{s}");
    assert_eq!(s.spool_depth, 2000);
    assert!(s.queue_depth <= 16);
    assert_invariant(&s);

    // The backend comes back.
    sink.fail_next(0);
    let report = c.flush_timeout(Duration::from_secs(30)).await;
    assert!(report.is_complete(), "{report}");
    let got: Vec<u64> = sink.recording().records().iter().map(id).collect();
    assert_eq!(
        got,
        (0..2000).collect::<Vec<_>>(),
        "all delivered, once, in order"
    );
    let s = c.stats().sinks[0].clone();
    assert_eq!(s.delivered, 2000);
    assert_eq!(s.spool_depth, 0);
    assert_eq!(s.lost(), 0);
    assert_invariant(&s);
    let report = c.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_complete(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_cap_drops_and_counts_under_both_policies() {
    for policy in [OnFull::DropNewest, OnFull::DropOldest] {
        let dir = tempfile::tempdir().unwrap();
        let spool = SqliteSpool::open(
            dir.path().join("s.db"),
            SpoolConfig::default()
                .max_records(100)
                .on_full(policy)
                .sync(SyncPolicy::Normal),
        )
        .unwrap();
        let sink = FailingSink::new(u64::MAX);
        let c = MetricsCollector::builder()
            .sink_with_spool(sink.clone(), Some(options()), Arc::new(spool))
            .build()
            .unwrap();
        record_synced(&c, 0..300).await;
        let s = c.stats().sinks[0].clone();
        assert_eq!(s.dropped.spool_full, 200, "{policy:?}: {s}");
        assert_eq!(s.dropped.total(), 200);
        assert_invariant(&s);

        sink.fail_next(0);
        let report = c.flush_timeout(Duration::from_secs(30)).await;
        assert!(report.is_complete(), "{report}");
        let got: Vec<u64> = sink.recording().records().iter().map(id).collect();
        assert_eq!(got.len(), 100);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
        match policy {
            OnFull::DropNewest => assert_eq!(got, (0..100).collect::<Vec<_>>()),
            // The head being delivered is kept; the rest are the newest.
            _ => assert!(got.ends_with(&(250..300).collect::<Vec<_>>()), "{got:?}"),
        }
        let s = c.stats().sinks[0].clone();
        assert_eq!(s.delivered, 100);
        assert_invariant(&s);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_left_at_a_shutdown_deadline_are_delivered_at_the_next_start_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    const N: u64 = 300;
    {
        let spool = SqliteSpool::open(&path, SpoolConfig::default()).unwrap();
        let c = MetricsCollector::builder()
            .sink_with_spool(FailingSink::new(u64::MAX), Some(options()), Arc::new(spool))
            .build()
            .unwrap();
        record_synced(&c, 0..N).await;
        let report = c.shutdown(Duration::from_millis(200)).await;
        let s = &report.sinks[0].stats;
        assert!(!report.is_complete());
        assert_eq!(s.spooled, N, "kept for the next start, not dropped: {s}");
        assert_eq!(s.lost(), 0, "{s}");
        assert_invariant(s);
    }

    let spool = SqliteSpool::open(&path, SpoolConfig::default()).unwrap();
    // The same sink after a restart (a spool belongs to one sink, by name).
    let sink = RecordingSink::named("failing");
    let c = MetricsCollector::builder()
        .sink_with_spool(sink.clone(), Some(options()), Arc::new(spool))
        .build()
        .unwrap();
    // New records arrive at once; the old ones still go first.
    record_synced(&c, N..N + 50).await;
    let report = c.flush_timeout(Duration::from_secs(30)).await;
    assert!(report.is_complete(), "{report}");
    let got: Vec<u64> = sink.records().iter().map(id).collect();
    assert_eq!(got, (0..N + 50).collect::<Vec<_>>());
    let s = c.stats().sinks[0].clone();
    assert_eq!(s.replayed, N);
    assert_eq!(s.received, N + 50);
    assert_eq!(s.delivered, N + 50);
    assert_invariant(&s);
    let report = c.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.sinks[0].stats.spooled, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_collector_without_shutdown_keeps_what_was_synced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    {
        let rt_sink = FailingSink::new(u64::MAX);
        let spool = SqliteSpool::open(&path, SpoolConfig::default()).unwrap();
        let c = MetricsCollector::builder()
            .sink_with_spool(rt_sink, Some(options()), Arc::new(spool))
            .build()
            .unwrap();
        record_synced(&c, 0..100).await;
        drop(c);
    }
    let spool = SqliteSpool::open(&path, SpoolConfig::default()).unwrap();
    // The same sink after a restart (a spool belongs to one sink, by name).
    let sink = RecordingSink::named("failing");
    let c = MetricsCollector::builder()
        .sink_with_spool(sink.clone(), Some(options()), Arc::new(spool))
        .build()
        .unwrap();
    let report = c.flush_timeout(Duration::from_secs(30)).await;
    assert!(report.is_complete(), "{report}");
    let got: Vec<u64> = sink.records().iter().map(id).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_completes_while_records_keep_arriving() {
    let dir = tempfile::tempdir().unwrap();
    let spool = SqliteSpool::open(
        dir.path().join("s.db"),
        SpoolConfig::default().sync(SyncPolicy::Normal),
    )
    .unwrap();
    let sink = RecordingSink::new();
    let c = MetricsCollector::builder()
        .sink_with_spool(sink.clone(), Some(options()), Arc::new(spool))
        .build()
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let (c, stop) = (c.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                record_synced(&c, i..i + 8).await;
                i += 8;
            }
            i
        })
    };
    wait_for(|| sink.len() > 200).await;
    let before = c.stats().sinks[0].received;
    let report = c.flush_timeout(Duration::from_secs(10)).await;
    assert!(
        report.is_complete(),
        "flush must not wait for an empty spool: {report}"
    );
    assert!(sink.len() as u64 >= before);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let n = producer.await.unwrap();
    let report = c.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_complete(), "{report}");
    let got: Vec<u64> = sink.records().iter().map(id).collect();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
}
