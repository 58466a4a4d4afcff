//! Records per second through a spool-backed no-op sink, end to end
//! (record -> memory queue -> spool append + sync -> peek -> sink -> ack),
//! under each sync policy, against the same pipeline without a spool.
//!
//! `cargo run --release -p steer-spool --example throughput [records]`
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use steer_metrics::testkit::synthetic;
use steer_metrics::{
    async_trait, AgentMetrics, MetricsCollector, MetricsSink, OverflowPolicy, SinkError, SinkOptions,
};
use steer_spool::{SpoolConfig, SqliteSpool, SyncPolicy};

struct Noop;

#[async_trait]
impl MetricsSink for Noop {
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

async fn run(label: &str, records: &[AgentMetrics], spool: Option<SyncPolicy>, batch: usize) {
    let dir = tempfile::tempdir().unwrap();
    // Block: the producer waits for room instead of dropping, so this
    // measures what the pipeline sustains.
    let options = SinkOptions::default()
        .batch_size(batch)
        .overflow(OverflowPolicy::Block);
    let builder = MetricsCollector::builder();
    let builder = match spool {
        Some(sync) => {
            let spool =
                SqliteSpool::open(dir.path().join("spool.db"), SpoolConfig::default().sync(sync)).unwrap();
            builder.sink_with_spool(Noop, Some(options), Arc::new(spool))
        }
        None => builder.sink_with_options(Noop, options),
    };
    let collector = builder.build().unwrap();
    let t = Instant::now();
    for m in records {
        collector.record_async(m.clone()).await;
    }
    let report = collector.flush().await;
    let secs = t.elapsed().as_secs_f64();
    let s = &report.sinks[0].stats;
    assert_eq!(s.delivered, records.len() as u64, "{s}");
    println!(
        "{label:<28} batch {batch:>4}: {:>9.0} records/s ({} records in {secs:.2} s, lost {})",
        records.len() as f64 / secs,
        records.len(),
        s.lost()
    );
    collector.shutdown(std::time::Duration::from_secs(10)).await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let records = synthetic(n, 7);
    for batch in [100, 500] {
        run("no spool", &records, None, batch).await;
        run(
            "spool, sync EveryBatch",
            &records,
            Some(SyncPolicy::EveryBatch),
            batch,
        )
        .await;
        run("spool, sync Normal", &records, Some(SyncPolicy::Normal), batch).await;
    }
}
