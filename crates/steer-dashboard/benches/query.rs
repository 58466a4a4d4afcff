//! Summary and time series over 1,000,000 stored calls (the issue-16
//! target: each ≤ 300 ms on SQLite).
//!
//! ```text
//! cargo bench -p steer-dashboard --bench query
//! STEER_BENCH_ROWS=200000 cargo bench -p steer-dashboard --bench query   # smaller store
//! ```
//! The store (30 days of synthetic history, `steer_dashboard::sample`) is
//! written once to `$TMPDIR/steer-bench-query-<rows>.db` and reused (a file
//! from before the hourly rollup is migrated once, and the time printed).
//! * `baseline/sql_aggregate`: one SQLite statement summing the same
//!   columns over every row (no percentiles, no groups, nothing leaves
//!   SQLite): the floor a scan costs on this machine, measured in the same
//!   run, so the ratio cancels machine noise.
//! * `oneshot/*`: what `steer stats` does: open the store read-only and
//!   answer one query (from the hourly rollup, edge hours from the rows).
//! * `rollup/*`: the same on an open store; `scan/*`: the same with the
//!   rollup turned off (every row read).
//! * `dashboard/*`: `SqliteSummaryStore::cached(true)` (what `steer
//!   dashboard` uses): the rollup, and for a sub-hour step (which the
//!   rollup cannot answer) an indexed range scan of the rows.
//! * `oneshot/*_by_tag`, `tag/*`: by or filtered to a tag (the tag
//!   rollup); `scan/summary_30d_by_tag`: the same with every row read.
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use steer_metrics::query::{GroupKey, StatsQuery, SummaryReport, SummaryStore, Timeseries};
use steer_metrics::MetricsSink;
use steer_sink_sqlite::{SqliteSink, SqliteStore, SqliteSummaryStore};

fn store(rows: usize) -> PathBuf {
    let path = std::env::temp_dir().join(format!("steer-bench-query-{rows}.db"));
    if let Ok(s) = SqliteStore::open_read_only(&path) {
        if s.count().unwrap_or(0) == rows as u64 {
            if s.schema_version() < steer_sink_sqlite::SCHEMA_VERSION {
                drop(s);
                let t = std::time::Instant::now();
                let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                rt.block_on(SqliteSink::open(&path).unwrap().close()).unwrap();
                eprintln!("migrated {rows} rows to the hourly rollups in {:?}", t.elapsed());
            }
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

/// What `steer stats` does for a summary: open the store read-only, query.
fn oneshot_summary(path: &Path, q: &StatsQuery) -> SummaryReport {
    SqliteStore::open_read_only(path)
        .unwrap()
        .query_summary(q)
        .unwrap()
}

/// The same for a time series.
fn oneshot_timeseries(path: &Path, q: &StatsQuery) -> Timeseries {
    SqliteStore::open_read_only(path)
        .unwrap()
        .query_timeseries(q)
        .unwrap()
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
    let ts_6h = by_model.clone().step(Duration::from_secs(6 * 3600));
    g.bench_function("oneshot/summary_30d_by_model", |b| {
        b.iter(|| oneshot_summary(&path, &by_model))
    });
    g.bench_function("oneshot/timeseries_30d_by_model_6h", |b| {
        b.iter(|| oneshot_timeseries(&path, &ts_6h))
    });
    g.bench_function("rollup/summary_30d_by_model", |b| {
        b.iter(|| store.query_summary(&by_model).unwrap())
    });
    g.bench_function("rollup/timeseries_30d_by_model_6h", |b| {
        b.iter(|| store.query_timeseries(&ts_6h).unwrap())
    });
    let scan = SqliteStore::open_read_only(&path).unwrap().rollup(false);
    assert!(store.has_rollup());
    assert_eq!(
        store.query_summary(&by_model).unwrap().groups.len(),
        scan.query_summary(&by_model).unwrap().groups.len()
    );
    g.bench_function("scan/summary_30d_by_model", |b| {
        b.iter(|| scan.query_summary(&by_model).unwrap())
    });
    g.bench_function("scan/timeseries_30d_by_model_6h", |b| {
        b.iter(|| scan.query_timeseries(&ts_6h).unwrap())
    });
    let day = StatsQuery::new()
        .since(now - chrono::Duration::hours(24))
        .until(now)
        .by(GroupKey::Model);
    g.bench_function("rollup/summary_24h_by_model", |b| {
        b.iter(|| store.query_summary(&day).unwrap())
    });
    // `steer dashboard`: `SqliteSummaryStore::cached(true)` (the rollup,
    // and a range scan for sub-hour steps).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let dashboard = SqliteSummaryStore::open(&path).unwrap().cached(true);
    g.bench_function("dashboard/summary_30d_by_model", |b| {
        b.iter(|| rt.block_on(dashboard.summary(&by_model)).unwrap())
    });
    g.bench_function("dashboard/timeseries_30d_by_model_6h", |b| {
        b.iter(|| rt.block_on(dashboard.timeseries(&ts_6h)).unwrap())
    });
    let day_15m = day.clone().step(Duration::from_secs(900));
    g.bench_function("dashboard/timeseries_24h_by_model_15m", |b| {
        b.iter(|| rt.block_on(dashboard.timeseries(&day_15m)).unwrap())
    });
    let by_feature = month.clone().by(GroupKey::Tag("feature".into()));
    g.bench_function("oneshot/summary_30d_by_tag", |b| {
        b.iter(|| oneshot_summary(&path, &by_feature))
    });
    let by_feature_6h = by_feature.clone().step(Duration::from_secs(6 * 3600));
    g.bench_function("oneshot/timeseries_30d_by_tag_6h", |b| {
        b.iter(|| oneshot_timeseries(&path, &by_feature_6h))
    });
    // "What did the support-bot feature cost per day this week."
    let week_feature = StatsQuery::new()
        .since(now - chrono::Duration::days(7))
        .until(now)
        .filter("tag:feature=support-bot".parse().unwrap())
        .step(Duration::from_secs(86_400));
    g.bench_function("tag/timeseries_7d_one_feature_1d", |b| {
        b.iter(|| store.query_timeseries(&week_feature).unwrap())
    });
    // A tag with another key: one team's calls by model.
    let team_by_model = by_model.clone().filter("tag:team=core".parse().unwrap());
    g.bench_function("oneshot/summary_30d_by_model_one_team", |b| {
        b.iter(|| oneshot_summary(&path, &team_by_model))
    });
    g.bench_function("scan/summary_30d_by_tag", |b| {
        b.iter(|| scan.query_summary(&by_feature).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
