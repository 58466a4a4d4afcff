//! Summary and time series over 1,000,000 stored calls (the issue-16
//! target: each ≤ 300 ms on SQLite).
//!
//! ```text
//! cargo bench -p steer-dashboard --bench query
//! STEER_BENCH_ROWS=200000 cargo bench -p steer-dashboard --bench query   # smaller store
//! ```
//! The store (30 days of synthetic history, `steer_dashboard::sample`) is
//! written once to `$TMPDIR/steer-bench-query-<rows>.db` and reused.
//! * `baseline/sql_aggregate`: one SQLite statement summing the same
//!   columns over every row (no percentiles, no groups, nothing leaves
//!   SQLite): the floor a scan costs on this machine, measured in the same
//!   run, so the ratio cancels machine noise.
//! * `cached_warm/*`: the same through `SqliteSummaryStore::cached(true)`
//!   (what `steer dashboard` uses) once its copy is up to date;
//!   `cached_cold/*`: its first query, which reads every row into the copy.
//! * `summary/30d_by_model`, `timeseries/30d_by_model` (6 h step),
//!   `summary/24h_by_model`, `summary/30d_by_tag` (a JSON tag, so the
//!   table is read too).
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use steer_metrics::query::{GroupKey, StatsQuery, SummaryStore};
use steer_metrics::MetricsSink;
use steer_sink_sqlite::{SqliteSink, SqliteStore, SqliteSummaryStore};

fn store(rows: usize) -> PathBuf {
    let path = std::env::temp_dir().join(format!("steer-bench-query-{rows}.db"));
    if let Ok(s) = SqliteStore::open_read_only(&path) {
        if s.count().unwrap_or(0) == rows as u64 {
            return path;
        }
    }
    let _ = std::fs::remove_file(&path);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let sink = SqliteSink::open(&path).unwrap();
    let end = chrono::Utc::now();
    let all = steer_dashboard::sample::history(rows, Duration::from_secs(30 * 86_400), end, 42);
    for chunk in all.chunks(20_000) {
        rt.block_on(sink.record_batch(chunk)).unwrap();
    }
    rt.block_on(sink.close()).unwrap();
    path
}

fn bench(c: &mut Criterion) {
    let rows: usize = std::env::var("STEER_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let path = store(rows);
    let store = SqliteStore::open_read_only(&path).unwrap();
    let now = chrono::Utc::now();
    let month = StatsQuery::new()
        .since(now - chrono::Duration::days(31))
        .until(now);
    let by_model = month.clone().by(GroupKey::Model);

    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut g = c.benchmark_group(format!("query_{rows}"));
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("baseline/sql_aggregate", |b| {
        b.iter(|| {
            conn.query_row(
                "SELECT count(*), sum(latency_ms), sum(ttft_ms), sum(input_tokens), sum(output_tokens), \
                 sum(cached_tokens), sum(cost_usd), sum(retries), count(error_class) FROM llm_metrics",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
        })
    });
    g.bench_function("summary/30d_by_model", |b| {
        b.iter(|| store.query_summary(&by_model).unwrap())
    });
    g.bench_function("timeseries/30d_by_model_6h", |b| {
        let q = by_model.clone().step(Duration::from_secs(6 * 3600));
        b.iter(|| store.query_timeseries(&q).unwrap())
    });
    g.bench_function("summary/24h_by_model", |b| {
        let q = StatsQuery::new()
            .since(now - chrono::Duration::hours(24))
            .by(GroupKey::Model);
        b.iter(|| store.query_summary(&q).unwrap())
    });
    // `steer dashboard`: the in-memory copy, warm (refreshed: no new rows),
    // and its first query (reading every row into the copy).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let cached = SqliteSummaryStore::open(&path).unwrap().cached(true);
    rt.block_on(cached.summary(&by_model)).unwrap();
    g.bench_function("cached_warm/summary_30d_by_model", |b| {
        b.iter(|| rt.block_on(cached.summary(&by_model)).unwrap())
    });
    g.bench_function("cached_warm/timeseries_30d_by_model_6h", |b| {
        let q = by_model.clone().step(Duration::from_secs(6 * 3600));
        b.iter(|| rt.block_on(cached.timeseries(&q)).unwrap())
    });
    g.bench_function("cached_cold/first_summary_30d_by_model", |b| {
        b.iter_batched(
            || SqliteSummaryStore::open(&path).unwrap().cached(true),
            |s| rt.block_on(s.summary(&by_model)).unwrap(),
            criterion::BatchSize::PerIteration,
        )
    });
    g.bench_function("summary/30d_by_tag", |b| {
        let q = month.clone().by(GroupKey::Tag("feature".into()));
        b.iter(|| store.query_summary(&q).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
