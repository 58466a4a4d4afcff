//! Line-protocol encoder throughput (points per second, one core).
//!
//! cargo bench -p steer-sink-influxdb --bench encode
//!
//! * `encode/synthetic`: realistic records from the test kit (tags, ~5%
//!   errors with messages, streaming TTFT, costs), default placement.
//! * `encode/escaped`: records whose model, provider and user tags all need
//!   escaping or normalisation.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use steer_metrics::AgentMetrics;
use steer_sink_influxdb::{Encoder, Precision};

const N: usize = 1_000;

fn encode_all(e: &Encoder, records: &[AgentMetrics], buf: &mut Vec<u8>) {
    buf.clear();
    for m in records {
        e.encode(m, buf).unwrap();
        buf.push(b'\n');
    }
}

fn encode(c: &mut Criterion) {
    let e = Encoder::new("llm_request", Precision::Nanoseconds);
    let synthetic = steer_metrics::testkit::synthetic(N, 42);
    let escaped: Vec<AgentMetrics> = synthetic
        .iter()
        .cloned()
        .map(|mut m| {
            m.model = format!("my model, v={}", m.model);
            m.provider = "prov ider".into();
            m.tags.insert("team name".into(), "search, ranking=on".into());
            m.tags.insert("path".into(), "C:\\tmp\\".into());
            m
        })
        .collect();
    let mut buf = Vec::with_capacity(N * 400);

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(N as u64))
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("synthetic", |b| b.iter(|| encode_all(&e, &synthetic, &mut buf)));
    g.bench_function("escaped", |b| b.iter(|| encode_all(&e, &escaped, &mut buf)));
    g.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
