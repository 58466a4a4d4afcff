//! How fast `record_batch` turns records into OTLP instrument updates (the
//! export runs on the SDK's own thread and is not timed here).
//!
//! `cargo run --release -p steer-sink-otlp --example record_throughput`
use std::time::{Duration, Instant};

use steer_metrics::{AgentMetrics, ErrorClass, MetricsSink};
use steer_sink_otlp::OtlpSink;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Nothing listens on port 9: exports would fail, but none is due.
    let sink = OtlpSink::builder()
        .endpoint("http://127.0.0.1:9")
        .export_interval(Duration::from_secs(3600))
        .server_address("api.openai.com")
        .build()?;
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
        sink.record_batch(&batch).await?; // warm up: series created
    }
    let rounds = 200;
    let t = Instant::now();
    for _ in 0..rounds {
        sink.record_batch(&batch).await?;
    }
    let el = t.elapsed();
    let n = rounds * batch.len();
    println!(
        "otlp record_batch: {n} records in {el:?} = {:.0} ns/record, {:.2} M records/s",
        el.as_nanos() as f64 / n as f64,
        n as f64 / el.as_secs_f64() / 1e6
    );
    Ok(())
}
