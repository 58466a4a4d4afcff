//! Cost benchmark: PutMetricData calls for 100 000 LLM calls over 10 models
//! within one minute, this sink (aggregate mode, through the collector)
//! against the guide's approach (2 datums per call: latency and total
//! tokens, 20 datums per PutMetricData) in the same harness and against the
//! same endpoint. Reads back SampleCount / Sum / Minimum / Maximum of both
//! and fails unless they agree.
//!
//! ```text
//! # with the emulator of scripts/services/cloudwatch.sh running:
//! STEER_TEST_CLOUDWATCH_ENDPOINT=http://127.0.0.1:PORT \
//!   cargo run --release -p steer-sink-cloudwatch --example cost -- [records] [batch_size]
//! ```
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use steer_metrics::testkit::synthetic;
use steer_metrics::{AgentMetrics, MetricsCollector, SinkOptions};
use steer_sink_cloudwatch::aws_sdk_cloudwatch as cw;
use steer_sink_cloudwatch::CloudWatchSink;

const GUIDE_BATCH: usize = 20;

fn client(endpoint: &str) -> cw::Client {
    let conf = cw::Config::builder()
        .behavior_version_latest()
        .region(cw::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(cw::config::Credentials::new(
            "testing", "testing", None, None, "bench",
        ))
        .build();
    cw::Client::from_conf(conf)
}

fn dims(m: &AgentMetrics) -> Vec<cw::types::Dimension> {
    vec![
        cw::types::Dimension::builder()
            .name("Model")
            .value(&m.model)
            .build(),
        cw::types::Dimension::builder()
            .name("Provider")
            .value(&m.provider)
            .build(),
    ]
}

/// The guide's CloudWatchMetricsSink, minus its blocking call: per request
/// a latency datum and (when there are tokens) a token datum, flushed 20
/// datums per PutMetricData. Same metric names and dimensions as the sink
/// so the two namespaces can be compared query for query.
async fn guide(c: &cw::Client, ns: &str, records: &[AgentMetrics]) -> (u64, u64) {
    let mut datums = Vec::with_capacity(records.len() * 2);
    for m in records {
        let ts = cw::primitives::DateTime::from_millis(m.timestamp.timestamp_millis());
        datums.push(
            cw::types::MetricDatum::builder()
                .metric_name("Latency")
                .value(m.latency_ms)
                .unit(cw::types::StandardUnit::Milliseconds)
                .timestamp(ts)
                .set_dimensions(Some(dims(m)))
                .build(),
        );
        if m.total_tokens() > 0 {
            datums.push(
                cw::types::MetricDatum::builder()
                    .metric_name("TotalTokens")
                    .value(m.total_tokens() as f64)
                    .unit(cw::types::StandardUnit::Count)
                    .timestamp(ts)
                    .set_dimensions(Some(dims(m)))
                    .build(),
            );
        }
    }
    let chunks: Arc<Vec<Vec<cw::types::MetricDatum>>> =
        Arc::new(datums.chunks(GUIDE_BATCH).map(<[_]>::to_vec).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    // Eight in flight so the harness finishes; the call count is what matters.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (c, ns, chunks, next, calls) = (
            c.clone(),
            ns.to_string(),
            chunks.clone(),
            next.clone(),
            calls.clone(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Relaxed);
                let Some(chunk) = chunks.get(i) else { break };
                c.put_metric_data()
                    .namespace(&ns)
                    .set_metric_data(Some(chunk.clone()))
                    .send()
                    .await
                    .unwrap();
                calls.fetch_add(1, Relaxed);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    (calls.load(Relaxed), datums.len() as u64)
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Four {
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
}

async fn read(c: &cw::Client, ns: &str, metric: &str, model: &str) -> Four {
    use cw::types::Statistic;
    let now = chrono::Utc::now().timestamp();
    let out = c
        .get_metric_statistics()
        .namespace(ns)
        .metric_name(metric)
        .dimensions(cw::types::Dimension::builder().name("Model").value(model).build())
        .start_time(cw::primitives::DateTime::from_secs(now - 3 * 3600))
        .end_time(cw::primitives::DateTime::from_secs(now + 3600))
        .period(60)
        .statistics(Statistic::SampleCount)
        .statistics(Statistic::Sum)
        .statistics(Statistic::Minimum)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .unwrap();
    let mut f = Four {
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        ..Four::default()
    };
    for d in out.datapoints() {
        f.count += d.sample_count().unwrap_or(0.0);
        f.sum += d.sum().unwrap_or(0.0);
        f.min = f.min.min(d.minimum().unwrap_or(f64::INFINITY));
        f.max = f.max.max(d.maximum().unwrap_or(f64::NEG_INFINITY));
    }
    f
}

#[tokio::main]
async fn main() {
    let endpoint = std::env::var("STEER_TEST_CLOUDWATCH_ENDPOINT")
        .expect("set STEER_TEST_CLOUDWATCH_ENDPOINT to the CloudWatch endpoint (emulator)");
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(100_000, |a| a.parse().unwrap());
    let batch: usize = args.next().map_or(10_000, |a| a.parse().unwrap());
    let records = synthetic(n, 2025);
    let models: std::collections::BTreeSet<String> = records.iter().map(|m| m.model.clone()).collect();
    let span = records.last().unwrap().timestamp - records[0].timestamp;
    println!(
        "{n} records, {} models, spanning {} ms",
        models.len(),
        span.num_milliseconds()
    );
    let stamp = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let sink_ns = format!("steer-bench/sink-{stamp}");
    let guide_ns = format!("steer-bench/guide-{stamp}");
    let c = client(&endpoint);

    // (a) the sink, through the collector: batch_size records per batch.
    let sink = CloudWatchSink::builder()
        .namespace(&sink_ns)
        .client(c.clone())
        .batch_budget(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let opts = SinkOptions::default()
        .queue_capacity(n.max(1))
        .batch_size(batch)
        .linger(Duration::from_secs(60));
    let collector = MetricsCollector::builder()
        .sink_with_options(sink.clone(), opts)
        .build()
        .unwrap();
    let t = Instant::now();
    for r in &records {
        collector.record(r.clone());
    }
    collector.flush().await;
    let sink_time = t.elapsed();
    let st = collector.stats();
    assert_eq!(st.sinks[0].delivered, n as u64, "{}", st.sinks[0]);
    let s = sink.stats();

    // (b) the guide's approach.
    let t = Instant::now();
    let (guide_calls, guide_datums) = guide(&c, &guide_ns, &records).await;
    let guide_time = t.elapsed();

    // Same statistics?
    let mut checked = 0;
    for model in &models {
        for metric in ["Latency", "TotalTokens"] {
            let a = read(&c, &sink_ns, metric, model).await;
            let b = read(&c, &guide_ns, metric, model).await;
            let tol = 1e-9 * a.sum.abs().max(b.sum.abs());
            assert!(
                a.count == b.count && a.min == b.min && a.max == b.max && (a.sum - b.sum).abs() <= tol,
                "{model} {metric}: sink {a:?} vs guide {b:?}"
            );
            assert!(a.count > 0.0);
            checked += 1;
        }
    }
    let ratio = s.calls as f64 / guide_calls as f64;
    println!("statistics agree (SampleCount, Sum, Minimum, Maximum) for {checked} model x metric series");
    println!("| approach | PutMetricData calls | datums | wall time |");
    println!("|---|---:|---:|---:|");
    println!(
        "| steer-sink-cloudwatch (aggregate, batch_size {batch}) | {} | {} | {:.2} s |",
        s.calls,
        s.datums,
        sink_time.as_secs_f64()
    );
    println!(
        "| guide (2 datums/request, 20/call) | {guide_calls} | {guide_datums} | {:.2} s |",
        guide_time.as_secs_f64()
    );
    println!("ratio: {:.4}% of the guide's calls", ratio * 100.0);
    assert!(ratio <= 0.01, "more than 1% of the guide's calls");
}
