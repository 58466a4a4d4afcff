//! End-to-end ingest throughput: synthetic records through a
//! `MetricsCollector` with one `PostgresSink`, timed from the first
//! `record()` to the end of `flush()`.
//!
//! ```text
//! cargo run --release -p steer-sink-postgres --example throughput -- \
//!     postgres://postgres@127.0.0.1:5432/bench 200000 [schema] [batch_size] [write_concurrency]
//! ```
//! (the URL may also come from `STEER_BENCH_POSTGRES_URL`). Prints
//! `records_per_sec=<n>` on the last line; exits non-zero unless every
//! record arrived exactly once.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use steer_metrics::testkit::synthetic;
use steer_metrics::{MetricsCollector, SinkOptions};
use steer_sink_postgres::PostgresSink;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = match args.next() {
        Some(u) => u,
        None => std::env::var("STEER_BENCH_POSTGRES_URL").map_err(|_| {
            "usage: throughput URL [N] [SCHEMA] [BATCH_SIZE] [WRITE_CONCURRENCY] (or set STEER_BENCH_POSTGRES_URL)"
        })?,
    };
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(200_000);
    let schema = args.next().unwrap_or_else(|| "steer_bench".into());
    let batch_size: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5000);
    let concurrency: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2);

    let sink = PostgresSink::builder(&url)
        .schema(&schema)
        .pool_size(concurrency.max(1))
        .write_concurrency(concurrency)
        .build()?;
    sink.migrate().await?;
    let store = sink.store();
    let before = store.count(None).await?;

    let records = synthetic(n, 42);
    let collector = MetricsCollector::builder()
        .sink_with_options(
            sink,
            SinkOptions::default()
                .batch_size(batch_size)
                .queue_capacity(n.max(1))
                .linger(Duration::from_millis(5)),
        )
        .build()?;

    let started = Instant::now();
    for r in records {
        collector.record(r);
    }
    let report = collector.flush().await;
    let elapsed = started.elapsed();

    let stats = &report.sinks[0].stats;
    let after = store.count(None).await?;
    let rate = n as f64 / elapsed.as_secs_f64();
    println!("{stats}");
    println!(
        "records={n} batch_size={batch_size} write_concurrency={concurrency} seconds={:.3} rows_added={}",
        elapsed.as_secs_f64(),
        after - before
    );
    if stats.delivered != n as u64 || after - before != n as u64 {
        return Err(format!(
            "expected {n} new rows, delivered {} / stored {}",
            stats.delivered,
            after - before
        )
        .into());
    }
    println!("records_per_sec={rate:.0}");
    Ok(())
}
