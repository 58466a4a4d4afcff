//! Hot-path and throughput benchmarks for the collector.
//!
//! cargo bench -p steer-metrics --bench collector
//!
//! * `record/collector_4_sinks` vs `record/mpsc_try_send_x4`: the cost of
//!   `record()` with four sinks attached against four bare
//!   `tokio::sync::mpsc` `try_send` calls of the same `Arc`'d payload, both
//!   with consumers draining on the runtime.
//! * `throughput/noop_sink`: records per second through the whole pipeline
//!   (record -> queue -> worker -> batch -> sink) to a sink that does nothing.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use steer_metrics::{async_trait, AgentMetrics, MetricsCollector, MetricsSink, SinkError, SinkOptions};

struct Noop(&'static str);

#[async_trait]
impl MetricsSink for Noop {
    fn name(&self) -> &str {
        self.0
    }
    async fn record(&self, _m: &AgentMetrics) -> Result<(), SinkError> {
        Ok(())
    }
    async fn record_batch(&self, _b: &[AgentMetrics]) -> Result<(), SinkError> {
        Ok(())
    }
}

fn template() -> AgentMetrics {
    steer_metrics::testkit::synthetic(1, 1).remove(0)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn record_path(c: &mut Criterion) {
    let rt = runtime();
    let m = template();
    let mut g = c.benchmark_group("record");
    g.measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));

    // Baseline: four bounded tokio mpsc channels drained by tasks.
    let senders: Vec<tokio::sync::mpsc::Sender<Arc<AgentMetrics>>> = (0..4)
        .map(|_| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Arc<AgentMetrics>>(10_000);
            rt.spawn(async move { while rx.recv().await.is_some() {} });
            tx
        })
        .collect();
    g.bench_function("mpsc_try_send_x4", |b| {
        b.iter_batched(
            || m.clone(),
            |m| {
                let m = Arc::new(m);
                for tx in &senders {
                    let _ = tx.try_send(m.clone());
                }
            },
            BatchSize::SmallInput,
        )
    });

    let collector = rt.block_on(async {
        let mut b = MetricsCollector::builder();
        for name in ["a", "b", "c", "d"] {
            b = b.sink_with_options(
                Noop(name),
                SinkOptions::default().queue_capacity(10_000).batch_size(500),
            );
        }
        b.build().unwrap()
    });
    g.bench_function("collector_4_sinks", |b| {
        b.iter_batched(|| m.clone(), |m| collector.record(m), BatchSize::SmallInput)
    });
    g.finish();
    let st = collector.stats();
    eprintln!(
        "collector after bench: delivered {} dropped {} (per sink a)",
        st.sinks[0].delivered, st.sinks[0].dropped.queue_full
    );
}

fn throughput(c: &mut Criterion) {
    let rt = runtime();
    let m = template();
    const N: u64 = 200_000;
    let mut g = c.benchmark_group("throughput");
    g.throughput(Throughput::Elements(N))
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    g.bench_function("noop_sink", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += rt.block_on(async {
                    let collector = MetricsCollector::builder()
                        .sink_with_options(
                            Noop("noop"),
                            SinkOptions::default().queue_capacity(N as usize).batch_size(1000),
                        )
                        .build()
                        .unwrap();
                    // Records are built before the clock starts: this measures the pipeline.
                    let records: Vec<AgentMetrics> = (0..N).map(|_| m.clone()).collect();
                    let start = Instant::now();
                    for r in records {
                        collector.record(r);
                    }
                    let report = collector.flush().await;
                    let elapsed = start.elapsed();
                    assert_eq!(report.sinks[0].stats.delivered, N);
                    elapsed
                });
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, record_path, throughput);
criterion_main!(benches);
