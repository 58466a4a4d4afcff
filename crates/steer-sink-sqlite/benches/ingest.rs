//! Criterion benchmarks of the SQLite store.
//!
//! ```text
//! cargo bench -p steer-sink-sqlite --bench ingest
//! ```
//! * `ingest/record_batch`: one `record_batch` of 1 000 records (one
//!   transaction), fresh request ids each time.
//! * `ingest/collector`: 20 000 records through a `MetricsCollector`
//!   (batches of 2 000) until `flush()` returns.
//! * `query/summary`: the summary of a 100 000-row table.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use steer_metrics::testkit::synthetic;
use steer_metrics::StatsQuery;
use steer_metrics::{AgentMetrics, MetricsCollector, MetricsSink, SinkOptions};
use steer_sink_sqlite::SqliteSink;

/// The template with new ids and current timestamps, like a live stream
/// (re-inserting the same timestamps would pile up equal index keys, which no
/// real workload does).
fn fresh(mut records: Vec<AgentMetrics>) -> Vec<AgentMetrics> {
    let now = chrono::Utc::now();
    for (i, m) in records.iter_mut().enumerate() {
        m.request_id = uuid::Uuid::now_v7();
        m.timestamp = now + chrono::Duration::microseconds(i as i64);
    }
    records
}

fn ingest(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let template = synthetic(1000, 1);

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(1000));
    let sink = SqliteSink::open(dir.path().join("batch.db")).unwrap();
    group.bench_function("record_batch/1000", |b| {
        b.iter_batched(
            || fresh(template.clone()),
            |batch| rt.block_on(sink.record_batch(&batch)).unwrap(),
            BatchSize::LargeInput,
        )
    });

    group.throughput(Throughput::Elements(20_000));
    let sink = SqliteSink::open(dir.path().join("collector.db")).unwrap();
    group.bench_function("collector/20000", |b| {
        b.iter_batched(
            || {
                let collector = rt.block_on(async {
                    MetricsCollector::builder()
                        .sink_with_options(
                            sink.clone(),
                            SinkOptions::default()
                                .batch_size(2000)
                                .queue_capacity(20_000)
                                .linger(Duration::from_millis(20)),
                        )
                        .build()
                        .unwrap()
                });
                (collector, synthetic(20_000, 2))
            },
            |(collector, records)| {
                rt.block_on(async {
                    for m in records {
                        collector.record(m);
                    }
                    let report = collector.flush().await;
                    assert_eq!(report.sinks[0].stats.delivered, 20_000);
                    collector
                })
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("query");
    let sink = SqliteSink::open(dir.path().join("query.db")).unwrap();
    for chunk in synthetic(100_000, 3).chunks(5000) {
        rt.block_on(sink.record_batch(chunk)).unwrap();
    }
    let store = sink.store().unwrap();
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("summary/100000", |b| {
        b.iter(|| store.query_summary(&StatsQuery::new()).unwrap().total)
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = ingest
}
criterion_main!(benches);
