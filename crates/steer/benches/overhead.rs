//! What the metrics layer costs a call: `generate()` against a local HTTP
//! server that answers at once, with a disabled collector and with a
//! collector feeding a no-op sink, in the same run. The simulated provider
//! (no network, zero latency) shows the same difference against a much
//! smaller baseline.
//!
//! ```text
//! cargo bench -p steer --bench overhead
//! ```
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use steer::{
    async_trait, AgentMetrics, MetricsCollector, MetricsSink, RetryConfig, SimConfig, SinkError, SteerClient,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct NoopSink;

#[async_trait]
impl MetricsSink for NoopSink {
    fn name(&self) -> &str {
        "noop"
    }
    async fn record(&self, _: &AgentMetrics) -> Result<(), SinkError> {
        Ok(())
    }
    async fn record_batch(&self, _: &[AgentMetrics]) -> Result<(), SinkError> {
        Ok(())
    }
}

const BODY: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#;

/// A keep-alive HTTP/1.1 server answering every request at once.
async fn server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(8192);
                let mut chunk = [0u8; 8192];
                loop {
                    // One request: headers, then content-length bytes.
                    let (end, len) = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                break (end, len);
                            }
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    buf.drain(..end + 4 + len);
                    if sock.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}/v1")
}

fn client(base: &str, measured: bool) -> SteerClient {
    let b = SteerClient::builder()
        .ignore_env()
        .openai_api_key("sk-bench")
        .openai_base_url(base)
        .sim(SimConfig::instant().seed(1))
        .retry(RetryConfig::none());
    let b = if measured {
        b.sink(NoopSink)
    } else {
        b.collector(MetricsCollector::disabled())
    };
    b.build().unwrap()
}

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = rt.block_on(server());
    let (plain, measured) = rt.block_on(async { (client(&base, false), client(&base, true)) });

    let mut g = c.benchmark_group("generate_local_http");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(60);
    for (name, client) in [("no_collector", &plain), ("collector_noop_sink", &measured)] {
        g.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { client.generate("Hello", "gpt-4o-mini").await.unwrap() })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("generate_sim_instant");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(60);
    for (name, client) in [("no_collector", &plain), ("collector_noop_sink", &measured)] {
        g.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { client.generate("Hello", "sim/gpt-4o-mini").await.unwrap() })
        });
    }
    g.finish();
    let stats = measured.metrics().stats();
    assert!(stats.recorded > 0, "the measured client recorded");

    // Paired rounds: the machine's load drifts (other builds, 2 cores), so
    // alternate blocks of calls of both clients and take the median of the
    // per-round ratios. This is the figure quoted in BENCHMARKS.md.
    // A collector with no sink isolates record() itself from the sink
    // worker's wake-ups.
    let no_sink = rt.block_on(async {
        SteerClient::builder()
            .ignore_env()
            .openai_api_key("sk-bench")
            .openai_base_url(&base)
            .sim(SimConfig::instant().seed(1))
            .retry(RetryConfig::none())
            .collector(MetricsCollector::builder().build().unwrap())
            .build()
            .unwrap()
    });
    for (label, model, calls) in [
        ("local HTTP", "gpt-4o-mini", 200),
        ("sim instant", "sim/gpt-4o-mini", 500),
    ] {
        for (variant, client) in [
            ("collector + no-op sink", &measured),
            ("collector, no sink", &no_sink),
        ] {
            let rounds = rt.block_on(paired(&plain, client, model, calls, 41));
            let per_call_us = |s: f64| s / calls as f64 * 1e6;
            let mut ratios: Vec<f64> = rounds.iter().map(|(p, m)| m / p).collect();
            let mut deltas: Vec<f64> = rounds.iter().map(|(p, m)| per_call_us(m - p)).collect();
            let mut base: Vec<f64> = rounds.iter().map(|(p, _)| per_call_us(*p)).collect();
            for v in [&mut ratios, &mut deltas, &mut base] {
                v.sort_by(f64::total_cmp);
            }
            let (q1, mid, q3) = (rounds.len() / 4, rounds.len() / 2, rounds.len() * 3 / 4);
            eprintln!(
                "paired {label}, {variant}: overhead median {:+.2}% ({:+.2} us/call on a {:.1} us call; \
                 quartiles {:+.2}%..{:+.2}%; {} rounds of {calls} calls)",
                (ratios[mid] - 1.0) * 100.0,
                deltas[mid],
                base[mid],
                (ratios[q1] - 1.0) * 100.0,
                (ratios[q3] - 1.0) * 100.0,
                rounds.len()
            );
        }
    }
}

/// Per round, time `calls` calls with each client (alternating which goes
/// first); returns (plain, measured) seconds per round.
async fn paired(
    plain: &SteerClient,
    measured: &SteerClient,
    model: &str,
    calls: usize,
    rounds: usize,
) -> Vec<(f64, f64)> {
    async fn block(c: &SteerClient, model: &str, calls: usize) -> f64 {
        let t = std::time::Instant::now();
        for _ in 0..calls {
            c.generate("Hello", model).await.unwrap();
        }
        t.elapsed().as_secs_f64()
    }
    let mut out = Vec::with_capacity(rounds);
    for round in 0..rounds {
        if round % 2 == 0 {
            let p = block(plain, model, calls).await;
            out.push((p, block(measured, model, calls).await));
        } else {
            let m = block(measured, model, calls).await;
            out.push((block(plain, model, calls).await, m));
        }
    }
    out
}

criterion_group!(benches, overhead);
criterion_main!(benches);
