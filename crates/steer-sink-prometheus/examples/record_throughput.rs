//! How fast `record_batch` updates the Prometheus series, and how long a
//! scrape (OpenMetrics encoding) takes.
//!
//! `cargo run --release -p steer-sink-prometheus --example record_throughput`
use std::time::Instant;

use steer_metrics::{AgentMetrics, ErrorClass, MetricsSink};
use steer_sink_prometheus::PrometheusSink;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sink = PrometheusSink::builder().server_address("api.openai.com").build();
    let models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "grok-4"];
    let batch: Vec<AgentMetrics> = (0..1000u64)
        .map(|i| {
            let mut m = AgentMetrics::new("openai", models[(i % 4) as usize])
                .with_latency_ms(50.0 + (i % 300) as f64)
                .with_tokens(100 + i, 20 + i % 50);
            m.cost_usd = Some(0.001);
            if i % 20 == 0 {
                m = m.with_error(ErrorClass::RateLimit);
            }
            m
        })
        .collect();
    for _ in 0..20 {
        sink.record_batch(&batch).await?;
    }
    let rounds = 200;
    let t = Instant::now();
    for _ in 0..rounds {
        sink.record_batch(&batch).await?;
    }
    let el = t.elapsed();
    let n = rounds * batch.len();
    println!(
        "prometheus record_batch: {n} records in {el:?} = {:.0} ns/record, {:.2} M records/s",
        el.as_nanos() as f64 / n as f64,
        n as f64 / el.as_secs_f64() / 1e6
    );
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..100 {
        bytes = sink.encode().map_or(0, |s| s.len());
    }
    println!(
        "scrape encoding: {:?} per scrape, {bytes} bytes (8 series)",
        t.elapsed() / 100
    );
    Ok(())
}
