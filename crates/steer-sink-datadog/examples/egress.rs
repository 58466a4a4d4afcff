//! Egress benchmark: bytes sent to Datadog for 100 000 LLM calls over ten
//! models within one minute, this sink (aggregate mode) against the
//! original guide's approach (one uncompressed series per request per
//! metric, POSTed every 100 series), both posting to the same local
//! capture server that counts the bytes it receives.
//!
//! ```text
//! cargo run --release -p steer-sink-datadog --example egress [-- RECORDS]
//! ```
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use steer_metrics::testkit::synthetic;
use steer_metrics::{AgentMetrics, MetricsCollector, SinkOptions};
use steer_sink_datadog::{DatadogSink, Mode};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

#[derive(Clone, Default)]
struct Counter {
    bytes: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

impl Respond for Counter {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.bytes.fetch_add(req.body.len() as u64, Relaxed);
        self.requests.fetch_add(1, Relaxed);
        ResponseTemplate::new(202).set_body_string("{\"errors\":[]}")
    }
}

impl Counter {
    fn take(&self) -> (u64, u64) {
        (self.bytes.swap(0, Relaxed), self.requests.swap(0, Relaxed))
    }
}

/// The guide's `DatadogMetricsSink.record`: latency as a gauge, tokens and
/// retries as type 0, one series per request per metric, JSON as Python's
/// `json.dumps` writes it (", " and ": " separators), POST at 100 series.
fn guide_series(m: &AgentMetrics, out: &mut Vec<serde_json::Value>) {
    let ts = m.timestamp.timestamp();
    let mut tags = vec![format!("model:{}", m.model), format!("provider:{}", m.provider)];
    match m.error_class {
        Some(e) => {
            tags.push(format!("error:{e}"));
            tags.push("status:error".into());
        }
        None => tags.push("status:success".into()),
    }
    let mut push = |metric: &str, ty: u8, v: serde_json::Value| {
        out.push(serde_json::json!({
            "metric": metric, "type": ty,
            "points": [{"timestamp": ts, "value": v}],
            "tags": tags.clone(),
        }));
    };
    push("llm.request.latency", 3, m.latency_ms.into());
    if m.input_tokens > 0 {
        push("llm.tokens.input", 0, m.input_tokens.into());
    }
    if m.output_tokens > 0 {
        push("llm.tokens.output", 0, m.output_tokens.into());
    }
    if m.retries > 0 {
        push("llm.retries", 0, m.retries.into());
    }
}

fn python_json(v: &serde_json::Value) -> String {
    // serde_json's compact form, re-spaced like Python's default separators.
    let compact = serde_json::to_string(v).unwrap();
    let mut out = String::with_capacity(compact.len() * 11 / 10);
    let mut in_str = false;
    let mut escaped = false;
    for c in compact.chars() {
        out.push(c);
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
        } else if c == ',' || c == ':' {
            out.push(' ');
        }
    }
    out
}

async fn run_guide(url: &str, records: &[AgentMetrics]) {
    let client = reqwest::Client::new();
    let mut buffer = Vec::new();
    let send = |buffer: Vec<serde_json::Value>| {
        let body = python_json(&serde_json::json!({ "series": buffer }));
        client
            .post(format!("{url}/api/v2/series"))
            .header("DD-API-KEY", "bench")
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    for m in records {
        guide_series(m, &mut buffer);
        if buffer.len() >= 100 {
            send(std::mem::take(&mut buffer)).await.unwrap();
        }
    }
    if !buffer.is_empty() {
        send(buffer).await.unwrap();
    }
}

async fn run_sink(url: &str, records: &[AgentMetrics], batch: usize, mode: Mode) -> DatadogSink {
    let sink = DatadogSink::builder()
        .site(url)
        .api_key("bench")
        .host("bench-1")
        .service("bench")
        .mode(mode)
        .build()
        .unwrap();
    let opts = SinkOptions::default()
        .batch_size(batch)
        .queue_capacity(records.len() + 1)
        .linger(Duration::from_secs(10));
    let c = MetricsCollector::builder()
        .sink_with_options(sink.clone(), opts)
        .build()
        .unwrap();
    for m in records {
        c.record(m.clone());
    }
    let report = c.shutdown(Duration::from_secs(120)).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(c.stats().sinks[0].delivered, records.len() as u64);
    sink
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let now = chrono::Utc::now();
    let mut records = synthetic(n, 42);
    // Spread the calls over one minute (ending 5 s ago).
    for (i, m) in records.iter_mut().enumerate() {
        m.timestamp = now - chrono::Duration::seconds(65)
            + chrono::Duration::microseconds((i as i64) * 60_000_000 / n as i64);
    }
    let server = MockServer::builder().disable_request_recording().start().await;
    let counter = Counter::default();
    Mock::given(wiremock::matchers::any())
        .respond_with(counter.clone())
        .mount(&server)
        .await;
    let url = server.uri();

    println!("{n} calls, 10 models, one minute of timestamps\n");
    println!(
        "{:<52} {:>12} {:>9} {:>9}",
        "approach", "bytes sent", "requests", "time"
    );
    let t = Instant::now();
    run_guide(&url, &records).await;
    let (guide_bytes, guide_reqs) = counter.take();
    println!(
        "{:<52} {:>12} {:>9} {:>8.2}s",
        "guide: 1 series/request/metric, JSON, 100 per POST",
        guide_bytes,
        guide_reqs,
        t.elapsed().as_secs_f64()
    );

    let mut best = u64::MAX;
    for (label, batch, mode) in [
        (
            "steer-sink-datadog, collector batch 10 000",
            10_000,
            Mode::Aggregate,
        ),
        (
            "steer-sink-datadog, collector batch 500 (default)",
            500,
            Mode::Aggregate,
        ),
        ("steer-sink-datadog raw mode, batch 500", 500, Mode::Raw),
    ] {
        let t = Instant::now();
        let sink = run_sink(&url, &records, batch, mode).await;
        let (bytes, reqs) = counter.take();
        let s = sink.stats();
        println!(
            "{:<52} {:>12} {:>9} {:>8.2}s   ({:.0}x fewer bytes; {} uncompressed)",
            label,
            bytes,
            reqs,
            t.elapsed().as_secs_f64(),
            guide_bytes as f64 / bytes.max(1) as f64,
            s.bytes_uncompressed
        );
        if mode == Mode::Aggregate {
            best = best.min(bytes);
        }
    }
    println!(
        "\nratio guide / best aggregate run: {:.0}x",
        guide_bytes as f64 / best.max(1) as f64
    );
}
