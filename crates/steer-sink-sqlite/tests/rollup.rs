//! The hourly rollup gives the numbers a scan of the rows gives: counts and
//! sums exactly, percentiles, min and max bit for bit (float sums, the cost
//! and the means, within rounding of the summation order), for summaries
//! and time series over windows with partial hours at the edges, with
//! groups and filters, errors, missing values and unknown costs; after a
//! migration from a v2 file, after concurrent writers, and after rows were
//! deleted outside the sink. And both are a direct SQL computation.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use steer_metrics::query::SummaryStore;
use steer_metrics::query::{GroupKey, QueryLimits, StatsQuery, SummaryReport, Timeseries};
use steer_metrics::testkit::synthetic;
use steer_metrics::{AgentMetrics, MetricsSink, Summary};
use steer_sink_sqlite::{SqliteSink, SqliteStore, SqliteSummaryStore};

const HOUR: i64 = 3_600_000_000;

/// A fixed hour boundary: windows below are absolute.
fn t0() -> i64 {
    1_790_000_000_000_000 / HOUR * HOUR
}

fn at(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap()
}

/// `n` varied records spread over `hours` hours from `t0()`, deterministic
/// for `seed`: errors, NaN latencies, missing TTFTs, unknown costs (also on
/// successes: unpriced), finish reasons present or not, tags.
fn records(n: usize, hours: i64, seed: u64) -> Vec<AgentMetrics> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = move || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 11
    };
    let mut out = synthetic(n, seed);
    for m in &mut out {
        m.timestamp = at(t0() + (next() % (hours * HOUR) as u64) as i64);
        m.finish_reason = match next() % 4 {
            0 => None,
            1 => Some("length".into()),
            _ => Some("stop".into()),
        };
        match next() % 20 {
            0 => m.latency_ms = f64::NAN,
            1 => m.cost_usd = None, // unpriced when a success
            2 => m.cost_usd = Some(f64::INFINITY),
            3 => m.reasoning_tokens = Some(next() % 500),
            4 => m.cache_write_tokens = Some(next() % 900),
            5 => m.ttft_ms = Some(f64::NAN),
            _ => {}
        }
        // Most calls have a team, some none (the `(none)` group), a few
        // the value "(none)" itself (grouped with them, as SQL does).
        match next() % 10 {
            0 => {}
            1 if next() % 4 == 0 => {
                m.tags.insert("team".into(), "(none)".into());
            }
            _ => {
                m.tags
                    .insert("team".into(), ["a", "b", "c"][(next() % 3) as usize].into());
            }
        }
        if next() % 3 == 0 {
            m.tags
                .insert("app".into(), ["x", "y"][(next() % 2) as usize].into());
        }
    }
    out
}

async fn write(path: &Path, recs: &[AgentMetrics], batch: usize) {
    let sink = SqliteSink::open(path).unwrap();
    for chunk in recs.chunks(batch) {
        sink.record_batch(chunk).await.unwrap();
    }
    sink.close().await.unwrap();
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn assert_same(what: &str, a: &Summary, b: &Summary) {
    let ints = |s: &Summary| {
        [
            s.count,
            s.errors,
            s.input_tokens,
            s.output_tokens,
            s.cached_tokens,
            s.reasoning_tokens,
            s.cache_write_tokens,
            s.cost_unknown,
            s.unpriced,
            s.retries,
        ]
    };
    assert_eq!(ints(a), ints(b), "{what}");
    assert_eq!(a.error_rate, b.error_rate, "{what}");
    assert!(
        close(a.cost_usd, b.cost_usd),
        "{what}: cost {} vs {}",
        a.cost_usd,
        b.cost_usd
    );
    for (name, x, y) in [
        ("latency", &a.latency_ms, &b.latency_ms),
        ("ttft", &a.ttft_ms, &b.ttft_ms),
    ] {
        match (x, y) {
            (Some(x), Some(y)) => {
                // Exact: the same values, selected the same way.
                assert_eq!(
                    (x.count, x.min, x.max, x.p50, x.p95, x.p99),
                    (y.count, y.min, y.max, y.p50, y.p95, y.p99),
                    "{what} {name}"
                );
                assert!(
                    close(x.mean, y.mean),
                    "{what} {name} mean {} vs {}",
                    x.mean,
                    y.mean
                );
            }
            (None, None) => {}
            _ => panic!("{what} {name}: {x:?} vs {y:?}"),
        }
    }
}

fn assert_reports(what: &str, a: &SummaryReport, b: &SummaryReport) {
    assert_same(&format!("{what} total"), &a.total, &b.total);
    assert_eq!(a.folded_groups, b.folded_groups, "{what}");
    assert_eq!(
        a.groups.keys().collect::<Vec<_>>(),
        b.groups.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (k, s) in &a.groups {
        assert_same(&format!("{what} {k}"), s, &b.groups[k]);
    }
}

fn assert_series(what: &str, a: &Timeseries, b: &Timeseries) {
    assert_eq!(a.buckets, b.buckets, "{what}");
    assert_eq!(a.step_seconds, b.step_seconds, "{what}");
    assert_eq!(a.folded_groups, b.folded_groups, "{what}");
    for (i, (x, y)) in a.total.iter().zip(&b.total).enumerate() {
        assert_same(&format!("{what} step {i}"), x, y);
    }
    assert_eq!(
        a.groups.keys().collect::<Vec<_>>(),
        b.groups.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (k, v) in &a.groups {
        for (i, (x, y)) in v.iter().zip(&b.groups[k]).enumerate() {
            assert_same(&format!("{what} {k} step {i}"), x, y);
        }
    }
}

/// Windows: unbounded, whole hours, partial hours at one or both edges,
/// less than an hour, open at either end.
fn windows() -> Vec<(String, StatsQuery)> {
    let t = t0();
    let q = StatsQuery::new;
    vec![
        ("all".into(), q()),
        (
            "whole hours".into(),
            q().since(at(t + 2 * HOUR)).until(at(t + 30 * HOUR)),
        ),
        (
            "both edges".into(),
            q().since(at(t + HOUR + 1_234_567)).until(at(t + 40 * HOUR + 999)),
        ),
        ("start edge".into(), q().since(at(t + 17 * 60_000_000))),
        ("end edge".into(), q().until(at(t + 50 * HOUR + 5 * 60_000_000))),
        (
            "one boundary".into(),
            q().since(at(t + 3 * HOUR - 7)).until(at(t + 3 * HOUR + 7)),
        ),
        (
            "inside an hour".into(),
            q().since(at(t + 5 * HOUR + 10))
                .until(at(t + 5 * HOUR + 3_000_000_000)),
        ),
        (
            "two hours, edges".into(),
            q().since(at(t + 5 * HOUR + 10)).until(at(t + 7 * HOUR + 10)),
        ),
    ]
}

fn keys() -> Vec<Option<GroupKey>> {
    vec![
        None,
        Some(GroupKey::Model),
        Some(GroupKey::Provider),
        Some(GroupKey::Error),
        Some(GroupKey::FinishReason),
        Some(GroupKey::Tag("team".into())),
        Some(GroupKey::Tag("app".into())),
    ]
}

fn filters() -> Vec<Vec<&'static str>> {
    vec![
        vec![],
        vec!["provider=anthropic"],
        vec!["error=none", "finish_reason=(none)"],
        vec!["model=gpt-4o-mini"],
        vec!["error=timeout"],
        vec!["model=no-such-model"],
        vec!["tag:team=b"],
        vec!["tag:team=(none)"],
        vec!["tag:team=b", "tag:team=c"],
        vec!["tag:app=x"],
        vec!["tag:team=b", "provider=anthropic"],
        vec!["tag:team=(none)", "error=none"],
    ]
}

/// Every window × key × filter, summary and time series (steps of 1 h, 3 h,
/// 1 d from the rollup; 30 min from the rows), rollup against scan.
fn rollup_equals_scan(path: &Path) {
    let fast = SqliteStore::open_read_only(path).unwrap();
    assert!(fast.has_rollup());
    let scan = SqliteStore::open_read_only(path).unwrap().rollup(false);
    assert!(!scan.has_rollup());
    let mut checked = 0;
    for (name, w) in windows() {
        for by in keys() {
            for fs in filters() {
                let mut q = w.clone();
                q.by = by.clone();
                for f in &fs {
                    q = q.filter(f.parse().unwrap());
                }
                let what = format!("{name} by {by:?} {fs:?}");
                let a = fast.query_summary(&q).unwrap();
                let b = scan.query_summary(&q).unwrap();
                assert_reports(&what, &a, &b);
                checked += a.total.count;
            }
            let mut q = w.clone();
            q.by = by.clone();
            for step in [3600, 3 * 3600, 86_400, 1800] {
                let q = q.clone().step(Duration::from_secs(step));
                let (a, b) = (fast.query_timeseries(&q), scan.query_timeseries(&q));
                match (a, b) {
                    (Ok(a), Ok(b)) => assert_series(&format!("{name} by {by:?} step {step}"), &a, &b),
                    (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                    (a, b) => panic!("{name} {step}: {a:?} vs {b:?}"),
                }
            }
        }
    }
    assert!(checked > 0);
    // Folding beyond max_groups is the same too.
    let q = StatsQuery::new()
        .by(GroupKey::Model)
        .limits(QueryLimits::default().max_groups(3));
    assert_reports(
        "folded",
        &fast.query_summary(&q).unwrap(),
        &scan.query_summary(&q).unwrap(),
    );
    let q = q.step(Duration::from_secs(6 * 3600));
    assert_series(
        "folded series",
        &fast.query_timeseries(&q).unwrap(),
        &scan.query_timeseries(&q).unwrap(),
    );
}

fn rollup_rows(path: &Path) -> (i64, i64) {
    Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT count(*), COALESCE(sum(calls), 0) FROM llm_metrics_hourly",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

fn db(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

#[tokio::test]
async fn rollup_answers_equal_scan_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "m.db");
    let recs = records(6000, 60, 1);
    // Small batches: hours are built up over many transactions.
    write(&path, &recs, 250).await;
    // A record written again is not counted twice.
    write(&path, &recs[..500], 100).await;
    assert_eq!(rollup_rows(&path).1, 6000);
    rollup_equals_scan(&path);
    // The answers did come from the rollup: tampering with it shows (a sum;
    // a changed call count would no longer match the rows and be scanned).
    Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE llm_metrics_hourly SET input_tokens = input_tokens + 1 WHERE hour = ?1",
            [t0() / HOUR + 4],
        )
        .unwrap();
    let tampered = |q: StatsQuery| {
        let fast = SqliteStore::open_read_only(&path)
            .unwrap()
            .query_summary(&q)
            .unwrap();
        let scan = SqliteStore::open_read_only(&path)
            .unwrap()
            .rollup(false)
            .query_summary(&q)
            .unwrap();
        i128::from(fast.total.input_tokens) - i128::from(scan.total.input_tokens)
    };
    assert!(tampered(StatsQuery::new()) > 0);
    assert!(
        tampered(
            StatsQuery::new()
                .since(at(t0() + 4 * HOUR))
                .until(at(t0() + 6 * HOUR))
        ) > 0
    );
    // A window with the hour only partly inside reads its rows instead.
    assert_eq!(tampered(StatsQuery::new().since(at(t0() + 4 * HOUR + 1))), 0);
    // By tag, from the tag rollup: its rows for the key, and the hour's
    // calls without it as the difference from the hourly rollup.
    Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE llm_metrics_hourly_tags SET input_tokens = input_tokens + 1 \
             WHERE hour = ?1 AND tag_key = 'team' AND tag_value = 'b'",
            [t0() / HOUR + 4],
        )
        .unwrap();
    let count = |sql: &str| -> i128 {
        let n: i64 = Connection::open(&path)
            .unwrap()
            .query_row(sql, [t0() / HOUR + 4], |r| r.get(0))
            .unwrap();
        i128::from(n)
    };
    assert!(tampered(StatsQuery::new().by(GroupKey::Tag("team".into()))) > 0);
    assert!(tampered(StatsQuery::new().filter("tag:team=b".parse().unwrap())) > 0);
    // With another key too (a team's calls by model, a provider's by team).
    assert!(
        tampered(
            StatsQuery::new()
                .by(GroupKey::Model)
                .filter("tag:team=b".parse().unwrap())
        ) > 0
    );
    let anthropic_b = count(
        "SELECT count(*) FROM llm_metrics_hourly_tags WHERE hour = ?1 AND tag_key = 'team' \
         AND tag_value = 'b' AND provider = 'anthropic'",
    );
    assert!(anthropic_b > 0);
    let untagged_anthropic = count(&format!(
        "SELECT count(*) FROM llm_metrics WHERE ts >= ?1 * {HOUR} AND ts < (?1 + 1) * {HOUR} \
         AND provider = 'anthropic' AND json_extract(tags, '$.team') IS NULL"
    ));
    assert_eq!(
        tampered(
            StatsQuery::new()
                .by(GroupKey::Tag("team".into()))
                .filter("provider=anthropic".parse().unwrap())
        ),
        // The tagged rows, and when some anthropic calls of the hour have no
        // team, the (none) group: the hourly rollup's anthropic rows of the
        // hour (tampered) minus the tagged ones (the `b` ones tampered).
        if untagged_anthropic > 0 {
            count("SELECT count(*) FROM llm_metrics_hourly WHERE hour = ?1 AND provider = 'anthropic'")
        } else {
            anthropic_b
        }
    );
    // The `(none)` group is the hour (tampered above, once per rollup row
    // of the hour) minus its tagged calls (tampered once per part of `b`).
    let main_rows = count("SELECT count(*) FROM llm_metrics_hourly WHERE hour = ?1");
    let b_rows = count(
        "SELECT count(*) FROM llm_metrics_hourly_tags WHERE hour = ?1 AND tag_key = 'team' AND tag_value = 'b'",
    );
    assert_eq!(
        tampered(StatsQuery::new().filter("tag:team=(none)".parse().unwrap())),
        main_rows - b_rows
    );
    assert_eq!(
        tampered(StatsQuery::new().filter("tag:app=x".parse().unwrap())),
        0
    );
}

#[tokio::test]
async fn a_busy_hour_is_split_into_parts_with_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "busy.db");
    let mut recs = records(12_000, 2, 2);
    for m in &mut recs {
        m.model = "gpt-4o".into();
        m.provider = "openai".into();
        m.error_class = None;
        m.finish_reason = Some("stop".into());
    }
    write(&path, &recs, 700).await;
    let (parts, calls) = rollup_rows(&path);
    assert_eq!(calls, 12_000);
    assert!(parts >= 3, "{parts} parts");
    rollup_equals_scan(&path);
}

/// Strip the rollup from a store to get the file an older steer wrote.
fn downgrade_to_v2(path: &Path) {
    Connection::open(path)
        .unwrap()
        .execute_batch(
            "DROP TRIGGER llm_metrics_hourly_on_delete; DROP TRIGGER llm_metrics_hourly_on_update; \
             DROP TABLE llm_metrics_hourly; DROP TABLE llm_metrics_hourly_stale; \
             DROP TABLE llm_metrics_hourly_tags; PRAGMA user_version = 2;",
        )
        .unwrap();
}

/// Strip the tag rollup from a store: the file steer wrote at schema v3.
fn downgrade_to_v3(path: &Path) {
    Connection::open(path)
        .unwrap()
        .execute_batch("DROP TABLE llm_metrics_hourly_tags; PRAGMA user_version = 3;")
        .unwrap();
}

fn tag_rollup_calls(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT COALESCE(sum(calls), 0) FROM llm_metrics_hourly_tags WHERE tag_key = 'team'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test]
async fn a_v3_store_is_scanned_by_tag_read_only_and_filled_on_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "v3.db");
    let recs = records(5000, 50, 7);
    write(&path, &recs[..4000], 1000).await;
    let by_team = StatsQuery::new().by(GroupKey::Tag("team".into()));
    let before = SqliteStore::open_read_only(&path)
        .unwrap()
        .query_summary(&by_team)
        .unwrap();
    let with_team = i64::try_from(
        recs[..4000]
            .iter()
            .filter(|m| m.tags.contains_key("team"))
            .count(),
    )
    .unwrap();
    assert_eq!(tag_rollup_calls(&path), with_team);
    downgrade_to_v3(&path);

    // Read-only: still v3; by tag the rows are scanned, with the same answer.
    let v3 = SqliteStore::open_read_only(&path).unwrap();
    assert!(v3.has_rollup());
    assert_reports("v3 read-only", &v3.query_summary(&by_team).unwrap(), &before);
    drop(v3);

    // Opening for writing adds the tag rollup, filled from the rows.
    write(&path, &recs[4000..], 300).await;
    let with_team = i64::try_from(recs.iter().filter(|m| m.tags.contains_key("team")).count()).unwrap();
    assert_eq!(tag_rollup_calls(&path), with_team);
    assert_eq!(rollup_rows(&path).1, 5000);
    rollup_equals_scan(&path);
}

#[tokio::test]
async fn a_v2_store_is_scanned_read_only_and_filled_on_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "v2.db");
    let recs = records(5000, 50, 3);
    write(&path, &recs[..4000], 1000).await;
    let before = SqliteStore::open_read_only(&path)
        .unwrap()
        .query_summary(&StatsQuery::new().by(GroupKey::Model))
        .unwrap();
    downgrade_to_v2(&path);

    // Read-only: still v2, no rollup, the same answer by scanning.
    let v2 = SqliteStore::open_read_only(&path).unwrap();
    assert!(!v2.has_rollup());
    let q = StatsQuery::new().by(GroupKey::Model);
    assert_reports("v2 read-only", &v2.query_summary(&q).unwrap(), &before);
    let q = StatsQuery::new()
        .since(at(t0() + HOUR / 2))
        .until(at(t0() + 20 * HOUR))
        .step(Duration::from_secs(3600));
    assert_eq!(v2.query_timeseries(&q).unwrap().buckets.len(), 20);
    drop(v2);
    // A long-lived reader of a v2 file keeps an in-memory copy instead.
    let cached = SqliteSummaryStore::open(&path).unwrap().cached(true);
    let q = StatsQuery::new().by(GroupKey::Model);
    for _ in 0..2 {
        assert_reports("v2 copy", &cached.summary(&q).await.unwrap(), &before);
    }
    drop(cached);

    // Opening for writing migrates and fills the rollup from the rows;
    // new rows are added to it.
    write(&path, &recs[4000..], 300).await;
    let version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, steer_sink_sqlite::SCHEMA_VERSION);
    assert_eq!(rollup_rows(&path).1, 5000);
    rollup_equals_scan(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_keep_the_rollup_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "concurrent.db");
    let recs = records(8000, 24, 4);
    // Create the file once, then four writers on their own connections
    // write interleaved slices (the same hours), some records twice.
    SqliteSink::open(&path).unwrap().close().await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let mine: Vec<AgentMetrics> = recs
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 4 == w || i % 50 == 0)
            .map(|(_, m)| m.clone())
            .collect();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let sink = SqliteSink::open(&path).unwrap();
            for chunk in mine.chunks(97) {
                sink.record_batch(chunk).await.unwrap();
            }
            sink.close().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(SqliteStore::open_read_only(&path).unwrap().count().unwrap(), 8000);
    assert_eq!(rollup_rows(&path).1, 8000);
    rollup_equals_scan(&path);
}

#[tokio::test]
async fn rows_deleted_outside_the_sink_are_scanned_then_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "deleted.db");
    let recs = records(4000, 40, 5);
    write(&path, &recs, 1000).await;
    // A retention job and a correction, in SQL.
    let conn = Connection::open(&path).unwrap();
    let deleted = conn
        .execute("DELETE FROM llm_metrics WHERE ts < ?1", [t0() + 10 * HOUR + 1234])
        .unwrap();
    assert!(deleted > 500);
    conn.execute(
        "UPDATE llm_metrics SET model = 'renamed', ts = ts + ?1 WHERE id % 17 = 0",
        [2 * HOUR],
    )
    .unwrap();
    drop(conn);
    // Stale hours: the affected windows are scanned, with the right numbers.
    let fast = SqliteStore::open_read_only(&path).unwrap();
    let scan = SqliteStore::open_read_only(&path).unwrap().rollup(false);
    let q = StatsQuery::new().by(GroupKey::Model);
    let a = fast.query_summary(&q).unwrap();
    assert_eq!(a.total.count, 4000 - deleted as u64);
    assert!(a.groups.contains_key("renamed"));
    assert_reports("stale", &a, &scan.query_summary(&q).unwrap());
    drop((fast, scan));
    // The next batches rebuild the stale hours (24 per batch).
    let more = records(100, 40, 6);
    write(&path, &more, 10).await;
    let stale: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM llm_metrics_hourly_stale", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stale, 0);
    assert_eq!(rollup_rows(&path).1, 4100 - deleted as i64);
    rollup_equals_scan(&path);
}

#[tokio::test]
async fn rows_inserted_outside_the_sink_are_counted_then_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "import.db");
    let recs = records(3000, 30, 8);
    write(&path, &recs, 500).await;
    // A bulk import in SQL: copies of a third of the rows, new request ids,
    // other numbers. No trigger sees an INSERT, so the rollup misses them.
    let conn = Connection::open(&path).unwrap();
    let cols: Vec<String> = {
        let mut st = conn
            .prepare(
                "SELECT name FROM pragma_table_info('llm_metrics') WHERE name NOT IN ('id', 'request_id')",
            )
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let list = cols.join(", ");
    let copied = conn
        .execute(
            &format!(
                "INSERT INTO llm_metrics (request_id, {list}) SELECT 'import-' || id, {} FROM llm_metrics WHERE id % 3 = 0",
                cols.iter()
                    .map(|c| if c == "latency_ms" { "latency_ms * 7".to_string() } else { c.clone() })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            [],
        )
        .unwrap();
    assert!(copied > 500);
    drop(conn);
    // Readers see every row (the rollup disagrees with the rows: scanned).
    let fast = SqliteStore::open_read_only(&path).unwrap();
    let scan = SqliteStore::open_read_only(&path).unwrap().rollup(false);
    let q = StatsQuery::new().by(GroupKey::Model);
    let a = fast.query_summary(&q).unwrap();
    assert_eq!(a.total.count, 3000 + copied as u64);
    assert_reports("imported", &a, &scan.query_summary(&q).unwrap());
    drop((fast, scan));
    // The sink opening the store marks those hours; its writes rebuild them.
    for _ in 0..3 {
        write(&path, &records(10, 30, 9), 10).await;
    }
    let stale: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM llm_metrics_hourly_stale", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stale, 0);
    assert_eq!(rollup_rows(&path).1, 3030 + copied as i64);
    rollup_equals_scan(&path);
}

/// The rollup's answer over a window with partial edge hours against SQL
/// computed straight from the rows.
#[tokio::test]
async fn rollup_answers_equal_direct_sql() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir, "sql.db");
    write(&path, &records(5000, 48, 7), 400).await;
    let (lo, hi) = (t0() + 3 * HOUR + 777, t0() + 45 * HOUR + 1_000_001);
    let store = SqliteStore::open_read_only(&path).unwrap();
    let r = store
        .query_summary(&StatsQuery::new().since(at(lo)).until(at(hi)).by(GroupKey::Model))
        .unwrap();
    let conn = Connection::open(&path).unwrap();
    let cond = format!("ts >= {lo} AND ts < {hi}");
    let mut stmt = conn
        .prepare(&format!(
            "SELECT model, count(*), count(error_class), sum(input_tokens), sum(output_tokens), sum(cached_tokens), \
             sum(retries), COALESCE(sum(cost_usd), 0), count(*) - count(cost_usd), \
             sum(error_class IS NULL AND cost_usd IS NULL), count(latency_ms), min(latency_ms), max(latency_ms) \
             FROM llm_metrics WHERE {cond} GROUP BY model"
        ))
        .unwrap();
    let rows: Vec<(String, [i64; 9], f64, f64, f64)> = stmt
        .query_map([], |r| {
            let mut ints = [0i64; 9];
            for (v, col) in ints.iter_mut().zip([1, 2, 3, 4, 5, 6, 8, 9, 10]) {
                *v = r.get(col)?;
            }
            Ok((r.get(0)?, ints, r.get(7)?, r.get(11)?, r.get(12)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), r.groups.len());
    for (model, want, cost, min, max) in rows {
        let s = &r.groups[&model];
        let l = s.latency_ms.unwrap();
        let got = [
            s.count,
            s.errors,
            s.input_tokens,
            s.output_tokens,
            s.cached_tokens,
            s.retries,
            s.cost_unknown,
            s.unpriced,
            l.count,
        ]
        .map(|v| v as i64);
        assert_eq!(got, want, "{model}");
        assert!(close(s.cost_usd, cost), "{model}: {} vs {cost}", s.cost_usd);
        assert_eq!((l.min, l.max), (min, max), "{model}");
        // percentile_cont(0.95) from the sorted column.
        let n = l.count as i64;
        let pos = 0.95 * (n - 1) as f64;
        let nth = |k: i64| -> f64 {
            conn.query_row(
                &format!(
                    "SELECT latency_ms FROM llm_metrics WHERE {cond} AND model = ?1 AND latency_ms IS NOT NULL \
                     ORDER BY latency_ms LIMIT 1 OFFSET {k}"
                ),
                [&model],
                |r| r.get(0),
            )
            .unwrap()
        };
        let (a, b) = (nth(pos.floor() as i64), nth(pos.ceil() as i64));
        assert_eq!(l.p95, a + (b - a) * (pos - pos.floor()), "{model}");
    }
}
