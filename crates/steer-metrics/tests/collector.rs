//! The collector's guarantees, checked the way a user would.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use steer_metrics::testkit::{synthetic, FailingSink, RecordingSink, RejectingSink, SlowSink};
use steer_metrics::{
    AgentMetrics, ErrorClass, MetricsCollector, MetricsConfig, MetricsSink, OverflowPolicy, RetryPolicy,
    SinkOptions,
};

fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(20))
}

fn opts() -> SinkOptions {
    SinkOptions::default()
        .linger(Duration::from_millis(5))
        .retry(fast_retry())
}

fn ids(records: &[AgentMetrics]) -> Vec<uuid::Uuid> {
    records.iter().map(|m| m.request_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_sink_delays_neither_record_nor_other_sinks() {
    let hanging = SlowSink::hanging();
    let good = RecordingSink::named("good");
    let c = MetricsCollector::builder()
        .sink_with_options(
            hanging.clone(),
            opts()
                .queue_capacity(100)
                .retry(fast_retry().attempt_timeout(Duration::from_secs(3600))),
        )
        .sink_with_options(good.clone(), opts())
        .build()
        .unwrap();

    let started = Instant::now();
    for m in synthetic(1000, 1) {
        c.record(m);
    }
    let record_time = started.elapsed();
    assert!(
        record_time < Duration::from_millis(500),
        "1000 record() calls took {record_time:?}"
    );

    // The good sink gets everything while the other hangs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while good.len() < 1000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(good.len(), 1000);

    // flush with a deadline returns and reports the hanging sink.
    let t = Instant::now();
    let report = c.flush_timeout(Duration::from_millis(300)).await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "flush_timeout took {:?}",
        t.elapsed()
    );
    let hang = report.sinks.iter().find(|s| s.stats.name == "hanging").unwrap();
    let ok = report.sinks.iter().find(|s| s.stats.name == "good").unwrap();
    assert!(!hang.completed);
    assert!(ok.completed);
    assert_eq!(ok.stats.delivered, 1000);
    // The hanging sink's queue held 100 + at most one batch in hand; the rest were dropped and counted.
    assert_eq!(hang.stats.delivered, 0);
    assert_eq!(
        hang.stats.received,
        hang.stats.dropped.queue_full + hang.stats.in_flight,
        "every record is accounted for: {}",
        hang.stats
    );
    assert!(hang.stats.dropped.queue_full >= 1000 - 100 - 500);

    // shutdown with a deadline reports what was lost.
    let report = c.shutdown(Duration::from_millis(200)).await;
    let hang = report.sinks.iter().find(|s| s.stats.name == "hanging").unwrap();
    assert!(!hang.completed);
    assert_eq!(hang.stats.in_flight, 0);
    assert_eq!(hang.stats.lost(), 1000);
    assert_eq!(
        hang.stats.dropped.closed,
        hang.stats.received - hang.stats.dropped.queue_full
    );
}

#[tokio::test]
async fn transient_failures_deliver_every_record_exactly_once_after_throttle_hint() {
    let sink = FailingSink::new(3).throttled(Duration::from_millis(150));
    let c = MetricsCollector::builder()
        .sink_with_options(sink.clone(), opts().batch_size(50))
        .build()
        .unwrap();
    let records = synthetic(500, 2);
    let started = Instant::now();
    for m in records.clone() {
        c.record(m);
    }
    let report = c.flush().await;
    assert!(report.is_complete());
    // Three throttled attempts, each honouring the 150 ms hint.
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "hint not honoured: {:?}",
        started.elapsed()
    );
    let got = sink.recording().records();
    assert_eq!(ids(&got), ids(&records), "all records, in order, exactly once");
    let s = c.stats().sinks[0].clone();
    assert_eq!(s.delivered, 500);
    assert_eq!(s.lost(), 0);
    assert!(s.retried > 0);
    assert_eq!(sink.recording().flushes(), 1);
}

#[tokio::test]
async fn outage_then_recovery_delivers_everything_within_capacity() {
    let sink = FailingSink::new(0);
    let c = MetricsCollector::builder()
        .sink_with_options(
            sink.clone(),
            opts().queue_capacity(5000).retry(
                fast_retry()
                    .max_attempts(1000)
                    .batch_deadline(Duration::from_secs(60)),
            ),
        )
        .build()
        .unwrap();
    sink.fail_next(40); // an outage spanning many attempts
    let records = synthetic(3000, 3);
    for m in records.clone() {
        c.record(m);
    }
    c.flush().await;
    let got: HashSet<_> = ids(&sink.recording().records()).into_iter().collect();
    assert_eq!(got.len(), 3000);
    assert_eq!(sink.recording().len(), 3000, "no duplicates");
    assert_eq!(c.stats().sinks[0].delivered, 3000);
}

#[tokio::test]
async fn queue_overflow_counts_exactly_what_was_dropped() {
    let slow = SlowSink::hanging();
    let c = MetricsCollector::builder()
        .sink_with_options(
            slow.clone(),
            opts()
                .queue_capacity(64)
                .batch_size(16)
                .retry(fast_retry().attempt_timeout(Duration::from_secs(3600))),
        )
        .build()
        .unwrap();
    for m in synthetic(10_000, 4) {
        c.record(m);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let s = c.stats().sinks[0].clone();
    assert_eq!(s.received, 10_000);
    // Single-threaded runtime: the worker cannot run during the loop, so the
    // queue fills to capacity and everything else is dropped, exactly. Then
    // the worker takes one batch (16) and hangs on it.
    assert_eq!(s.dropped.queue_full, 10_000 - 64);
    assert_eq!(s.in_flight, 64);
    assert_eq!(s.queue_depth, 64 - 16);
}

#[tokio::test]
async fn drop_oldest_keeps_the_newest_records() {
    // A sink that blocks until released: the queue fills while it is held.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    struct Gated(Arc<tokio::sync::Semaphore>, RecordingSink);
    #[steer_metrics::async_trait]
    impl steer_metrics::MetricsSink for Gated {
        fn name(&self) -> &str {
            "gated"
        }
        async fn record(&self, m: &AgentMetrics) -> Result<(), steer_metrics::SinkError> {
            self.record_batch(std::slice::from_ref(m)).await
        }
        async fn record_batch(&self, b: &[AgentMetrics]) -> Result<(), steer_metrics::SinkError> {
            let _p = self.0.acquire().await.unwrap();
            self.1.record_batch(b).await
        }
    }
    let rec = RecordingSink::new();
    let c = MetricsCollector::builder()
        .sink_with_options(
            Gated(gate.clone(), rec.clone()),
            opts()
                .queue_capacity(10)
                .batch_size(1)
                .linger(Duration::ZERO)
                .overflow(OverflowPolicy::DropOldest),
        )
        .build()
        .unwrap();
    let records = synthetic(100, 5);
    c.record(records[0].clone());
    // Let the worker take record 0 and block on the gate.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for m in records[1..].iter().cloned() {
        c.record(m);
    }
    gate.add_permits(1000);
    c.flush().await;
    let got = ids(&rec.records());
    let mut want = vec![records[0].request_id];
    want.extend(ids(&records[90..]));
    assert_eq!(got, want);
    let s = c.stats().sinks[0].clone();
    assert_eq!(s.dropped.evicted_oldest, 89);
    assert_eq!(s.delivered, 11);
    assert_eq!(s.received, s.delivered + s.dropped.total());
}

#[tokio::test]
async fn block_policy_record_async_waits_and_loses_nothing() {
    let slow = SlowSink::new(Duration::from_millis(2));
    let c = MetricsCollector::builder()
        .sink_with_options(
            slow.clone(),
            opts()
                .queue_capacity(8)
                .batch_size(4)
                .overflow(OverflowPolicy::Block),
        )
        .build()
        .unwrap();
    let records = synthetic(300, 6);
    for m in records.clone() {
        c.record_async(m).await;
    }
    c.flush().await;
    assert_eq!(ids(&slow.recording().records()), ids(&records));
    assert_eq!(c.stats().sinks[0].dropped.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_records_from_many_tasks_none_lost_none_duplicated() {
    let sinks: Vec<RecordingSink> = (0..3).map(|i| RecordingSink::named(&format!("s{i}"))).collect();
    let mut b = MetricsCollector::builder();
    for s in &sinks {
        b = b.sink_with_options(s.clone(), opts().queue_capacity(20_000).batch_size(100));
    }
    let c = b.build().unwrap();
    let mut tasks = Vec::new();
    for t in 0..50u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for m in synthetic(200, 100 + t) {
                mine.push(m.request_id);
                c.record(m);
                if mine.len() % 17 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            mine
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 10_000);
    let report = c.flush().await;
    assert!(report.is_complete());
    for s in &sinks {
        let got = ids(&s.records());
        assert_eq!(got.len(), 10_000, "sink {} got {}", s.name(), got.len());
        let set: HashSet<_> = got.into_iter().collect();
        assert_eq!(set, all);
    }
}

#[tokio::test]
async fn full_batches_do_not_deadlock() {
    // The original collector deadlocked when a batch reached batch_size.
    let sink = RecordingSink::new();
    let c = MetricsCollector::builder()
        .sink_with_options(sink.clone(), opts().batch_size(10).queue_capacity(10))
        .build()
        .unwrap();
    let run = async {
        for m in synthetic(1000, 7) {
            c.record_async(m).await;
        }
        c.flush().await
    };
    let report = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("no deadlock");
    assert!(report.is_complete());
    assert_eq!(sink.len() as u64 + c.stats().sinks[0].dropped.total(), 1000);
    assert!(sink.batches() >= 1);
}

#[tokio::test]
async fn permanent_errors_are_isolated_by_splitting() {
    let sink = RejectingSink::new(|m| m.model == "poison");
    let c = MetricsCollector::builder()
        .sink_with_options(sink.clone(), opts().batch_size(64))
        .build()
        .unwrap();
    let mut records = synthetic(64, 8);
    records[5].model = "poison".into();
    records[40].model = "poison".into();
    for m in records.clone() {
        c.record(m);
    }
    c.flush().await;
    let got: HashSet<_> = ids(&sink.recording().records()).into_iter().collect();
    assert_eq!(got.len(), 62);
    assert!(!got.contains(&records[5].request_id) && !got.contains(&records[40].request_id));
    let s = c.stats().sinks[0].clone();
    assert_eq!((s.delivered, s.failed.rejected, s.retried), (62, 2, 0));
    // Binary splitting: far fewer attempts than one per record.
    assert!(sink.attempts() < 30, "attempts {}", sink.attempts());
}

#[tokio::test]
async fn retries_give_up_at_the_deadline_and_count_the_loss() {
    let sink = FailingSink::new(u64::MAX);
    let c = MetricsCollector::builder()
        .sink_with_options(sink.clone(), opts().retry(fast_retry().max_attempts(4)))
        .build()
        .unwrap();
    for m in synthetic(10, 9) {
        c.record(m);
    }
    let report = c.flush().await;
    assert!(report.is_complete(), "failed for good counts as settled");
    let s = &report.sinks[0].stats;
    assert_eq!(s.failed.retries_exhausted, 10);
    assert_eq!(s.delivered, 0);
    assert_eq!(sink.attempts(), 4);
}

#[tokio::test]
async fn sampling_keeps_errors_and_weights_successes() {
    let sink = RecordingSink::new();
    let c = MetricsCollector::builder()
        .config(MetricsConfig::default().success_sample_rate(0.25))
        .sink_with_options(sink.clone(), opts())
        .build()
        .unwrap();
    for i in 0..4000 {
        let m = AgentMetrics::new("sim", "m");
        c.record(if i % 10 == 0 {
            m.with_error(ErrorClass::ServerError)
        } else {
            m
        });
    }
    c.flush().await;
    let got = sink.records();
    let errors = got.iter().filter(|m| m.is_error()).count();
    let ok: Vec<_> = got.iter().filter(|m| !m.is_error()).collect();
    assert_eq!(errors, 400, "errors kept at rate 1.0");
    assert!(ok.iter().all(|m| m.sample_weight == 4.0));
    assert!(
        (700..1100).contains(&ok.len()),
        "about 900 of 3600 kept, got {}",
        ok.len()
    );
    let st = c.stats();
    assert_eq!(st.recorded, 4000);
    assert_eq!(st.sampled_out as usize + got.len(), 4000);
}

#[tokio::test]
async fn disabled_collector_is_a_no_op() {
    let sink = RecordingSink::new();
    let c = MetricsCollector::builder()
        .config(MetricsConfig::default().enabled(false))
        .sink(sink.clone())
        .build()
        .unwrap();
    c.record(AgentMetrics::new("sim", "m"));
    c.flush().await;
    assert!(sink.is_empty());
    assert_eq!(c.stats().recorded, 0);
    assert_eq!(c.stats().sinks[0].received, 0);
}

#[tokio::test]
async fn shutdown_delivers_closes_and_refuses_later_records() {
    let sink = RecordingSink::new();
    let c = MetricsCollector::builder()
        .sink_with_options(sink.clone(), opts())
        .build()
        .unwrap();
    for m in synthetic(100, 10) {
        c.record(m);
    }
    let report = c.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_complete());
    assert_eq!(sink.len(), 100);
    assert_eq!(sink.closes(), 1);
    c.record(AgentMetrics::new("sim", "late"));
    let s = c.stats().sinks[0].clone();
    assert_eq!(s.dropped.closed, 1);
    assert_eq!(s.received, 101);
}

#[tokio::test]
async fn flush_waits_for_linger_batches() {
    let sink = RecordingSink::new();
    let c = MetricsCollector::builder()
        .sink_with_options(
            sink.clone(),
            SinkOptions::default().linger(Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    c.record(AgentMetrics::new("sim", "m"));
    let report = tokio::time::timeout(Duration::from_secs(5), c.flush())
        .await
        .unwrap();
    assert!(report.is_complete());
    assert_eq!(sink.len(), 1);
}

#[tokio::test]
async fn duplicate_sink_names_are_refused() {
    let r = MetricsCollector::builder()
        .sink(RecordingSink::new())
        .sink(RecordingSink::new())
        .build();
    assert!(matches!(r, Err(steer_metrics::BuildError::DuplicateSinkName(_))));
}

#[test]
fn build_outside_a_runtime_is_a_typed_error() {
    let r = MetricsCollector::builder().sink(RecordingSink::new()).build();
    assert!(matches!(r, Err(steer_metrics::BuildError::NoRuntime)));
}

#[tokio::test]
async fn jsonl_sink_appends_and_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.jsonl");
    let c = MetricsCollector::builder()
        .sink_with_options(steer_metrics::sinks::JsonLinesSink::new(&path), opts())
        .build()
        .unwrap();
    let records = synthetic(250, 11);
    for m in records.clone() {
        c.record(m);
    }
    assert!(c.flush().await.is_complete());
    let text = std::fs::read_to_string(&path).unwrap();
    let back: Vec<AgentMetrics> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(back, records);
}

#[tokio::test]
async fn a_panicking_sink_is_isolated_and_every_record_accounted_for() {
    struct Panicky(RecordingSink);
    #[steer_metrics::async_trait]
    impl MetricsSink for Panicky {
        fn name(&self) -> &str {
            "panicky"
        }
        async fn record(&self, m: &AgentMetrics) -> Result<(), steer_metrics::SinkError> {
            self.record_batch(std::slice::from_ref(m)).await
        }
        async fn record_batch(&self, b: &[AgentMetrics]) -> Result<(), steer_metrics::SinkError> {
            if b.iter().any(|m| m.input_tokens == u64::MAX) {
                panic!("attempt to add with overflow");
            }
            self.0.record_batch(b).await
        }
    }
    let rec = RecordingSink::new();
    let c = MetricsCollector::builder()
        .sink_with_options(Panicky(rec.clone()), opts().batch_size(50))
        .build()
        .unwrap();
    let mut records = synthetic(200, 12);
    records[17].input_tokens = u64::MAX;
    for m in records {
        c.record(m);
    }
    let report = c.flush().await;
    assert!(report.is_complete(), "the worker survived the panic");
    let s = &report.sinks[0].stats;
    assert_eq!((s.delivered, s.failed.rejected, s.in_flight), (199, 1, 0));
    assert_eq!(rec.len(), 199);
}

#[tokio::test]
async fn jsonl_rejects_non_finite_numbers_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.jsonl");
    let c = MetricsCollector::builder()
        .sink_with_options(steer_metrics::sinks::JsonLinesSink::new(&path), opts())
        .build()
        .unwrap();
    let mut records = synthetic(10, 13);
    records[2].latency_ms = f64::NAN;
    records[5].cost_usd = Some(f64::NEG_INFINITY);
    for m in records.clone() {
        c.record(m);
    }
    let report = c.flush().await;
    assert_eq!(report.sinks[0].stats.failed.rejected, 2);
    assert_eq!(report.sinks[0].stats.delivered, 8);
    let text = std::fs::read_to_string(&path).unwrap();
    let back: Vec<AgentMetrics> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let want: Vec<AgentMetrics> = records
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != 2 && *i != 5)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(back, want);
}
