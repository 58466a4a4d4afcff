//! The sink against moto's CloudWatch (through the rpcv2Cbor shim): what is
//! published reads back with GetMetricStatistics exactly as the records say.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use steer_metrics::testkit::synthetic;
use steer_metrics::{AgentMetrics, MetricsCollector, MetricsSink, RetryPolicy, SinkOptions};
use steer_sink_cloudwatch::encode::Metric;
use steer_sink_cloudwatch::{CloudWatchSink, Mode};

async fn sink(ep: &str, ns: &str, sdk_attempts: u32) -> CloudWatchSink {
    CloudWatchSink::builder()
        .namespace(ns)
        .client(client(ep, sdk_attempts))
        .build()
        .await
        .unwrap()
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .initial_backoff(Duration::from_millis(10))
        .max_backoff(Duration::from_millis(200))
}

/// The known workload through the collector: one batch, a few calls, and
/// every statistic of every model agrees with the records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_workload_reads_back_exactly() {
    let Some(ep) = endpoint() else { return };
    let ns = namespace("workload");
    let records = synthetic(20_000, 42);
    let sink = sink(&ep, &ns, 3).await;
    let opts = SinkOptions::default()
        .queue_capacity(50_000)
        .batch_size(20_000)
        .linger(Duration::from_millis(200))
        .retry(fast_retry());
    let collector = MetricsCollector::builder()
        .sink_with_options(sink.clone(), opts)
        .build()
        .unwrap();
    for r in &records {
        collector.record(r.clone());
    }
    collector.flush().await;
    let s = collector.stats();
    let cw = &s.sinks[0];
    assert_eq!(cw.delivered, records.len() as u64, "{s:?}");
    assert_eq!(cw.failed.total(), 0, "{s:?}");

    let c = client(&ep, 3);
    assert_published(&c, &ns, &records).await;
    // Cross-check one model with boto3 against moto directly (not through the shim).
    let want = expected(&records);
    for metric in [Metric::Latency, Metric::TotalTokens, Metric::CostUsd] {
        if let Some(got) = stats_boto3(&ns, metric.name(), "gpt-4o") {
            want[&("gpt-4o".to_string(), metric)].assert_matches(&got, 1e-9, metric.name());
        }
    }

    let shim = shim_stats(&ep, &ns).await;
    // 10 models x 10 metrics, latency/TTFT split into <= 150 values per
    // datum, at most two intervals: a few hundred datums, one or two calls.
    assert_eq!(shim.accepted, sink.stats().calls);
    assert!(shim.accepted <= 4, "{shim:?}");
    assert!(shim.max_datums <= 1000, "{shim:?}");
    assert!(shim.max_body_bytes <= 1_000_000, "{shim:?}");
    assert_eq!(
        shim.gzip_calls, shim.attempts,
        "large bodies are gzipped: {shim:?}"
    );
    assert_eq!(shim.datums, sink.stats().datums);
}

/// A batch that needs many calls: no call over 1000 datums or over the
/// byte limit (200 kB here, to keep the emulator's load small; the encoded
/// size estimate is the same for 1 MB), and nothing lost across the calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_and_nothing_is_lost_across_calls() {
    let Some(ep) = endpoint() else { return };
    let ns = namespace("limits");
    let now = chrono::Utc::now() - chrono::Duration::seconds(30);
    // 300 models (more than 1000 datums) ...
    let mut records: Vec<AgentMetrics> = (0..3000)
        .map(|i| {
            let mut m = AgentMetrics::new("sim", format!("m-{}", i % 300))
                .with_latency_ms(10.0 + f64::from(i))
                .with_tokens(u64::from(i as u32), 7);
            m.timestamp = now;
            m
        })
        .collect();
    // ... and one model with 15 000 distinct latencies (more than 200 kB of Values).
    for i in 0..15_000 {
        let mut m = AgentMetrics::new("sim", "wide").with_latency_ms((f64::from(i) * 8e-4).exp());
        m.timestamp = now;
        records.push(m);
    }
    let sink = CloudWatchSink::builder()
        .namespace(&ns)
        .relative_error(0.0001)
        .max_request_bytes(200_000)
        .client(client(&ep, 3))
        .batch_budget(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    sink.record_batch(&records).await.unwrap();
    let shim = shim_stats(&ep, &ns).await;
    assert!(shim.accepted >= 3, "needs several calls: {shim:?}");
    assert!(shim.max_datums <= 1000, "{shim:?}");
    assert!(shim.max_body_bytes <= 200_000, "{shim:?}");
    assert!(shim.max_body_bytes > 100_000, "calls are filled: {shim:?}");
    assert_eq!(shim.accepted, shim.attempts);
    let c = client(&ep, 3);
    for model in ["m-0", "m-299", "wide"] {
        let subset: Vec<_> = records.iter().filter(|r| r.model == model).cloned().collect();
        let want = expected(&subset);
        for metric in [Metric::Requests, Metric::Latency, Metric::TotalTokens] {
            if let Some(w) = want.get(&(model.to_string(), metric)) {
                let got = stats(&c, &ns, metric.name(), model).await;
                w.assert_matches(&got, 1e-9, &format!("{model} {}", metric.name()));
            }
        }
    }
    let total = stats(&c, &ns, "Requests", "wide").await;
    assert_eq!(total.count, 15_000.0);
}

/// A datum CloudWatch refuses is isolated: its records are reported
/// rejected, every other record lands. Values CloudWatch would refuse are
/// caught before sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_datum_is_isolated_and_the_rest_lands() {
    let Some(ep) = endpoint() else { return };
    let ns = namespace("isolate");
    shim_faults(&ep, json!({"namespace": ns, "reject_dimension_value": "poison"})).await;
    let mut records = synthetic(3000, 7);
    let mut poison = Vec::new();
    for (i, r) in records.iter_mut().enumerate() {
        if i % 97 == 0 {
            r.model = "poison".into();
            poison.push(i);
        }
    }
    let nan = records.len();
    let mut bad = AgentMetrics::new("openai", "gpt-4o").with_latency_ms(f64::NAN);
    bad.timestamp = records[0].timestamp;
    records.push(bad);

    let sink = sink(&ep, &ns, 3).await;
    let err = sink.record_batch(&records).await.unwrap_err();
    assert!(err.is_permanent());
    assert!(err.retry_records().is_empty());
    let mut want: Vec<usize> = poison.clone();
    want.push(nan);
    assert_eq!(err.records().unwrap(), &want[..]);

    let c = client(&ep, 3);
    let good: Vec<_> = records
        .iter()
        .enumerate()
        .filter(|(i, _)| !want.contains(i))
        .map(|(_, r)| r.clone())
        .collect();
    assert_published(&c, &ns, &good).await;
    assert_eq!(stats(&c, &ns, "Requests", "poison").await.count, 0.0);
    let shim = shim_stats(&ep, &ns).await;
    assert!(shim.attempts - shim.accepted >= 1, "{shim:?}");
}

/// When CloudWatch's message does not name the datum, the sink bisects the
/// call by series: only the refused series' records are rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_series_is_found_by_bisection() {
    let Some(ep) = endpoint() else { return };
    let ns = namespace("bisect");
    shim_faults(
        &ep,
        json!({"namespace": ns, "reject_dimension_value": "poison", "name_member": false}),
    )
    .await;
    let mut records = synthetic(2000, 12);
    let mut poison = Vec::new();
    for (i, r) in records.iter_mut().enumerate() {
        if r.model == "grok-4" {
            r.model = "poison".into();
            poison.push(i);
        }
    }
    assert!(!poison.is_empty());
    // Small calls so the batch needs several, and bisection has work to do.
    let sink = CloudWatchSink::builder()
        .namespace(&ns)
        .max_datums_per_call(40)
        .client(client(&ep, 3))
        .build()
        .await
        .unwrap();
    let err = sink.record_batch(&records).await.unwrap_err();
    assert!(err.is_permanent());
    assert!(err.retry_records().is_empty());
    assert_eq!(err.records().unwrap(), &poison[..]);
    let good: Vec<_> = records.iter().filter(|r| r.model != "poison").cloned().collect();
    assert_published(&client(&ep, 3), &ns, &good).await;
    let shim = shim_stats(&ep, &ns).await;
    assert!(shim.max_datums <= 40, "{shim:?}");
}

/// The same through the collector: the refused records count as failed,
/// the others as delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_counts_refused_records_as_failed() {
    let Some(ep) = endpoint() else { return };
    let ns = namespace("isolate-collector");
    shim_faults(&ep, json!({"namespace": ns, "reject_dimension_value": "poison"})).await;
    let mut records = synthetic(500, 8);
    for r in records.iter_mut().take(50) {
        r.model = "poison".into();
    }
    let sink = sink(&ep, &ns, 3).await;
    let collector = MetricsCollector::builder()
        .sink_with_options(
            sink,
            SinkOptions::default()
                .batch_size(1000)
                .linger(Duration::from_millis(100))
                .retry(fast_retry()),
        )
        .build()
        .unwrap();
    for r in &records {
        collector.record(r.clone());
    }
    collector.flush().await;
    let s = &collector.stats().sinks[0];
    assert_eq!(s.delivered, 450, "{s:?}");
    assert_eq!(s.failed.total(), 50, "{s:?}");
    assert_published(&client(&ep, 3), &ns, &records[50..]).await;
}

/// Throttling and 5xx are retried (by the SDK, then by the collector) and
/// the data lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_delivered_once() {
    let Some(ep) = endpoint() else { return };
    let records = synthetic(1000, 9);
    let c = client(&ep, 3);

    // Two throttles: the SDK's own retries absorb them.
    let ns = namespace("throttle-sdk");
    shim_faults(&ep, json!({"namespace": ns, "throttle": 2})).await;
    let s = sink(&ep, &ns, 3).await;
    s.record_batch(&records).await.unwrap();
    let shim = shim_stats(&ep, &ns).await;
    assert_eq!((shim.attempts, shim.accepted), (3, 1), "{shim:?}");
    assert_published(&c, &ns, &records).await;

    // More than the SDK tries: the sink says "throttled" for exactly the
    // batch's records ...
    let ns = namespace("throttle-collector");
    shim_faults(&ep, json!({"namespace": ns, "throttle": 3, "server_error": 2})).await;
    let s = sink(&ep, &ns, 2).await;
    let err = s.record_batch(&records).await.unwrap_err();
    assert!(err.retry_after().is_some(), "{err}");
    assert_eq!(err.records().unwrap().len(), records.len());
    // ... and the collector's retries deliver them once.
    let collector = MetricsCollector::builder()
        .sink_with_options(
            s.clone(),
            SinkOptions::default()
                .batch_size(5000)
                .linger(Duration::from_millis(100))
                .retry(fast_retry()),
        )
        .build()
        .unwrap();
    for r in &records {
        collector.record(r.clone());
    }
    collector.flush().await;
    let st = &collector.stats().sinks[0];
    assert_eq!(st.delivered, 1000, "{st:?}");
    assert!(st.retried >= 1, "{st:?}");
    let shim = shim_stats(&ep, &ns).await;
    assert_eq!(
        shim.attempts,
        2 + 3 + 1,
        "direct call: 2 throttled; collector: throttled + 5xx, 5xx + success: {shim:?}"
    );
    assert_published(&c, &ns, &records).await;
}

/// A failure after some calls of a batch went through hands back exactly
/// the records of the calls that did not: resending them loses nothing and
/// counts nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_mid_batch_retries_only_the_undelivered_records() {
    let Some(ep) = endpoint() else { return };
    let ns = namespace("mid-batch");
    shim_faults(&ep, json!({"namespace": ns, "after": 2, "server_error": 1})).await;
    let records = synthetic(2000, 13);
    let sink = CloudWatchSink::builder()
        .namespace(&ns)
        .max_datums_per_call(40)
        .client(client(&ep, 1))
        .build()
        .await
        .unwrap();
    let err = sink.record_batch(&records).await.unwrap_err();
    assert!(!err.is_permanent(), "{err}");
    let retry = err.records().unwrap().to_vec();
    let delivered = sink.stats().records;
    assert!(delivered > 0 && !retry.is_empty(), "{err} {:?}", sink.stats());
    assert_eq!(delivered + retry.len() as u64, records.len() as u64);
    let again: Vec<_> = retry.iter().map(|&i| records[i].clone()).collect();
    sink.record_batch(&again).await.unwrap();
    assert_published(&client(&ep, 3), &ns, &records).await;
    let shim = shim_stats(&ep, &ns).await;
    assert_eq!(shim.attempts, shim.accepted + 1, "{shim:?}");
    assert!(shim.max_datums <= 40);
}

/// Raw mode (one datum per metric per call, the guide's shape) and
/// aggregate mode publish the same statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_mode_parity() {
    let Some(ep) = endpoint() else { return };
    let records = synthetic(1500, 11);
    let raw_ns = namespace("raw");
    let agg_ns = namespace("agg");
    let raw = CloudWatchSink::builder()
        .namespace(&raw_ns)
        .mode(Mode::Raw)
        .client(client(&ep, 3))
        .build()
        .await
        .unwrap();
    let agg = sink(&ep, &agg_ns, 3).await;
    raw.record_batch(&records).await.unwrap();
    agg.record_batch(&records).await.unwrap();
    let c = client(&ep, 3);
    assert_published(&c, &raw_ns, &records).await;
    assert_published(&c, &agg_ns, &records).await;
    let (r, a) = (raw.stats(), agg.stats());
    assert!(r.datums > 10 * a.datums, "raw {r:?} vs aggregate {a:?}");
    assert!(r.calls > a.calls);
    assert!(shim_stats(&ep, &raw_ns).await.max_datums <= 1000);
}

/// Latency values published in aggregate mode stay within 1% of the calls'
/// (percentiles read from them are as good), while Minimum and Maximum are
/// exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distribution_values_are_within_one_percent() {
    let Some(ep) = endpoint() else { return };
    let ns = namespace("dist");
    let now = chrono::Utc::now();
    let lat: Vec<f64> = (0..2000).map(|i| 50.0 + f64::from(i) * 1.37).collect();
    let records: Vec<_> = lat
        .iter()
        .map(|v| {
            let mut m = AgentMetrics::new("sim", "d").with_latency_ms(*v);
            m.timestamp = now;
            m
        })
        .collect();
    let s = sink(&ep, &ns, 3).await;
    s.record_batch(&records).await.unwrap();
    let shim = shim_stats(&ep, &ns).await;
    // 2000 distinct latencies became a few hundred values.
    assert!(shim.values < 400, "{shim:?}");
    let got = stats(&client(&ep, 3), &ns, "Latency", "d").await;
    assert_eq!(got.count, 2000.0);
    assert_eq!(got.min, 50.0);
    assert_eq!(got.max, lat[1999]);
    let want: f64 = lat.iter().sum();
    assert!((got.sum - want).abs() <= 1e-9 * want);
}
