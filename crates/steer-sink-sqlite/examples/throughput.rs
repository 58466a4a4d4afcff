//! End-to-end ingest throughput: synthetic records through a
//! `MetricsCollector` into an SQLite file, timed from the first `record()`
//! until `flush()` returns (every row committed).
//!
//! ```text
//! cargo run --release -p steer-sink-sqlite --example throughput -- [RECORDS] [BATCH_SIZE] [normal|full]
//! ```
//! Defaults: 200 000 records, batches of 2 000, `synchronous = NORMAL`, a
//! fresh file in a temporary directory.

use std::time::{Duration, Instant};

use steer_metrics::testkit::synthetic;
use steer_metrics::StatsQuery;
use steer_metrics::{MetricsCollector, OverflowPolicy, SinkOptions};
use steer_sink_sqlite::{SqliteSink, Synchronous};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200_000);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let sync = match args.next().as_deref() {
        None | Some("normal") => Synchronous::Normal,
        Some("full") => Synchronous::Full,
        Some(other) => return Err(format!("unknown synchronous mode `{other}` (normal|full)").into()),
    };

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("throughput.db");
    let sink = SqliteSink::builder(&path).synchronous(sync).build()?;
    let records = synthetic(n, 42);

    let collector = MetricsCollector::builder()
        .sink_with_options(
            sink.clone(),
            SinkOptions::default()
                .batch_size(batch)
                .queue_capacity(50_000)
                .overflow(OverflowPolicy::Block)
                .linger(Duration::from_millis(50)),
        )
        .build()?;

    let started = Instant::now();
    for m in records {
        // Waits for queue room instead of dropping: measures what the sink
        // sustains, not how much a full queue drops.
        collector.record_async(m).await;
    }
    let report = collector.flush().await;
    let elapsed = started.elapsed();

    let stats = &report.sinks[0].stats;
    let rows = sink.store()?.count()?;
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "{n} records, batch {batch}, synchronous {sync:?}: {:.3} s, {:.0} records/s",
        elapsed.as_secs_f64(),
        rate
    );
    println!("delivered {} lost {} rows {rows}", stats.delivered, stats.lost());

    let t = Instant::now();
    let summary = sink.store()?.query_summary(&StatsQuery::new())?.total;
    println!(
        "summary over {} rows: {:.3} s (p95 latency {:.1} ms)",
        summary.count,
        t.elapsed().as_secs_f64(),
        summary.latency_ms.map_or(f64::NAN, |d| d.p95)
    );
    collector.shutdown(Duration::from_secs(10)).await;
    if rows != n as u64 || stats.lost() != 0 {
        return Err(format!("expected {n} rows, found {rows} (lost {})", stats.lost()).into());
    }
    Ok(())
}
