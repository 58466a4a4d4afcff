//! Through the collector: exact counts, and summaries that agree with the
//! in-memory definition and with SQL.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use rusqlite::Connection;
use steer_metrics::query::{summarize, GroupKey};
use steer_metrics::summary::Summary;
use steer_metrics::testkit::synthetic;
use steer_metrics::{MetricsCollector, SinkOptions, StatsQuery, SummaryReport};
use steer_sink_sqlite::SqliteSink;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Equal, except float sums (cost, means) within rounding: the store adds
/// them in another order (parallel parts, hourly rollup).
fn assert_same(what: &str, a: &Summary, b: &Summary) {
    let mut x = a.clone();
    let mut y = b.clone();
    assert!(
        close(x.cost_usd, y.cost_usd),
        "{what}: cost {} vs {}",
        x.cost_usd,
        y.cost_usd
    );
    y.cost_usd = x.cost_usd;
    for (d, e) in [
        (&mut x.latency_ms, &mut y.latency_ms),
        (&mut x.ttft_ms, &mut y.ttft_ms),
    ] {
        if let (Some(d), Some(e)) = (d.as_mut(), e.as_mut()) {
            assert!(close(d.mean, e.mean), "{what}: mean {} vs {}", d.mean, e.mean);
            e.mean = d.mean;
        }
    }
    assert_eq!(x, y, "{what}");
}

fn assert_reports(what: &str, a: &SummaryReport, b: &SummaryReport) {
    assert_same(what, &a.total, &b.total);
    assert_eq!(
        a.groups.keys().collect::<Vec<_>>(),
        b.groups.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (k, s) in &a.groups {
        assert_same(&format!("{what} {k}"), s, &b.groups[k]);
    }
}

/// Write `records` through a collector into a fresh store.
async fn write_through_collector(
    dir: &tempfile::TempDir,
    records: &[steer_metrics::AgentMetrics],
) -> SqliteSink {
    let sink = SqliteSink::open(dir.path().join("m.db")).unwrap();
    let options = SinkOptions::default()
        .batch_size(2000)
        .queue_capacity(records.len() + 1)
        .linger(Duration::from_millis(20));
    let collector = MetricsCollector::builder()
        .sink_with_options(sink.clone(), options)
        .build()
        .unwrap();
    for m in records {
        collector.record(m.clone());
    }
    let report = collector.shutdown(Duration::from_secs(60)).await;
    let stats = &report.sinks[0].stats;
    assert!(report.sinks[0].completed, "{stats}");
    assert_eq!(stats.delivered, records.len() as u64, "{stats}");
    assert_eq!(stats.lost(), 0, "{stats}");
    sink
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_records_through_the_collector_give_exactly_as_many_rows() {
    let dir = tempfile::tempdir().unwrap();
    let records = synthetic(20_000, 11);
    let sink = write_through_collector(&dir, &records).await;

    let conn = Connection::open(sink.path()).unwrap();
    let (rows, distinct): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT request_id) FROM llm_metrics",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, distinct), (20_000, 20_000));
    // Exactly the ids recorded, none lost, none invented.
    let mut stmt = conn.prepare("SELECT request_id FROM llm_metrics").unwrap();
    let stored: HashSet<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let recorded: HashSet<String> = records.iter().map(|m| m.request_id.to_string()).collect();
    assert_eq!(stored, recorded);
    assert_eq!(sink.store().unwrap().count().unwrap(), 20_000);
}

/// `percentile_cont(q)` over `latency_ms` written in SQL: rank the non-NULL
/// values, take the two ranks around `q * (n - 1)` and interpolate.
const SQL_PERCENTILE: &str = "
WITH ranked AS (
    SELECT latency_ms AS v,
           row_number() OVER (ORDER BY latency_ms) - 1 AS rn,
           count(*) OVER () AS n
    FROM llm_metrics
    WHERE latency_ms IS NOT NULL AND (?2 IS NULL OR model = ?2)
),
pos AS (
    SELECT ?1 * (n - 1) AS p, CAST(?1 * (n - 1) AS INTEGER) AS lo, n FROM ranked LIMIT 1
)
SELECT lo_row.v + (hi_row.v - lo_row.v) * (pos.p - pos.lo)
FROM pos
JOIN ranked AS lo_row ON lo_row.rn = pos.lo
JOIN ranked AS hi_row ON hi_row.rn = MIN(pos.lo + (pos.p > pos.lo), pos.n - 1)
";

fn sql_percentile(conn: &Connection, q: f64, model: Option<&str>) -> f64 {
    conn.query_row(SQL_PERCENTILE, rusqlite::params![q, model], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_summary_equals_the_in_memory_summary_and_sql() {
    let dir = tempfile::tempdir().unwrap();
    let records = synthetic(12_345, 5);
    let sink = write_through_collector(&dir, &records).await;
    let store = sink.store().unwrap();

    let stored = store.query_summary(&StatsQuery::new()).unwrap().total;
    let memory = Summary::from_records(&records);
    assert_same("total", &stored, &memory);
    assert_eq!(stored.count, 12_345);
    assert!(stored.errors > 0 && stored.ttft_ms.is_some() && stored.cost_usd > 0.0);

    // Percentiles equal percentile_cont computed in SQL over the same rows.
    let conn = Connection::open(sink.path()).unwrap();
    let latency = stored.latency_ms.unwrap();
    assert_eq!(latency.p95, sql_percentile(&conn, 0.95, None));
    assert_eq!(latency.p50, sql_percentile(&conn, 0.50, None));
    assert_eq!(latency.p99, sql_percentile(&conn, 0.99, None));
    // ... and the SQL is not trivially right: other quantiles differ.
    assert_ne!(latency.p95, sql_percentile(&conn, 0.94, None));
    let (count, mean, min, max): (i64, f64, f64, f64) = conn
        .query_row(
            "SELECT count(latency_ms), avg(latency_ms), min(latency_ms), max(latency_ms) FROM llm_metrics",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(count as u64, latency.count);
    assert_eq!((min, max), (latency.min, latency.max));
    assert!(
        (mean - latency.mean).abs() < 1e-9 * mean,
        "{mean} vs {}",
        latency.mean
    );

    // Per group, the same.
    let by = |key: GroupKey| StatsQuery::new().by(key);
    for key in [GroupKey::Model, GroupKey::Provider, GroupKey::Error] {
        let stored = store.query_summary(&by(key.clone())).unwrap();
        let memory = summarize(&records, &by(key.clone())).unwrap();
        assert_reports(&format!("{key}"), &stored, &memory);
    }
    let by_model = store.query_summary(&by(GroupKey::Model)).unwrap().groups;
    assert_eq!(by_model.len(), 10);
    let gpt = &by_model["gpt-4o"];
    assert_eq!(
        gpt.latency_ms.unwrap().p95,
        sql_percentile(&conn, 0.95, Some("gpt-4o"))
    );
    let by_error = store.query_summary(&by(GroupKey::Error)).unwrap().groups;
    assert!(
        by_error.contains_key("none") && by_error.len() > 2,
        "{:?}",
        by_error.keys()
    );
}

#[tokio::test]
async fn filters_select_the_same_records_as_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let records = synthetic(3000, 9);
    let sink = SqliteSink::open(dir.path().join("m.db")).unwrap();
    steer_metrics::MetricsSink::record_batch(&sink, &records)
        .await
        .unwrap();
    let store = sink.store().unwrap();
    // synthetic() spaces records 10 µs apart: a window over the middle third.
    let since = records[1000].timestamp;
    let until = records[2000].timestamp;
    let q = StatsQuery::new;
    let f = |s: &str| s.parse().unwrap();
    let queries = [
        q().since(since),
        q().until(until),
        q().since(since).until(until),
        q().filter(f("model=grok-4")),
        q().filter(f("provider=anthropic")).since(since),
        q().filter(f("model=no-such-model")),
        q().last(Duration::from_secs(3600)),
        q().since(chrono::Utc::now() + chrono::Duration::hours(1)),
        q().filter(f("error=none")).filter(f("tag:env=bench")),
    ];
    for q in queries {
        let expected: Vec<_> = records.iter().filter(|m| q.matches(m)).collect();
        assert_same(
            &format!("{q:?}"),
            &store.query_summary(&q).unwrap().total,
            &Summary::from_records(expected.iter().copied()),
        );
        let ids: Vec<_> = store.records(&q).unwrap().iter().map(|m| m.request_id).collect();
        let want: Vec<_> = expected.iter().map(|m| m.request_id).collect();
        assert_eq!(ids, want, "{q:?}");
    }
    let window = store.query_summary(&q().since(since).until(until)).unwrap().total;
    assert_eq!(window.count, 1000);
    let micros = |t: chrono::DateTime<chrono::Utc>| t.timestamp_micros();
    let (first, last) = store.time_span(&q().since(since).until(until)).unwrap().unwrap();
    assert_eq!(
        (micros(first), micros(last)),
        (micros(since), micros(records[1999].timestamp))
    );
    let none = q().filter(f("model=no-such-model"));
    assert_eq!(store.time_span(&none).unwrap(), None);
    let empty = store.query_summary(&none).unwrap().total;
    assert_eq!((empty.count, empty.latency_ms), (0, None));
}

/// Delegates to the SQLite sink, but reports the first `n` successful
/// batches as failed: a write that committed while its acknowledgement was
/// lost (a timeout), so the collector sends the same batch again.
struct LostAcks {
    inner: SqliteSink,
    remaining: std::sync::atomic::AtomicU32,
}

#[steer_metrics::async_trait]
impl steer_metrics::MetricsSink for LostAcks {
    fn name(&self) -> &str {
        "lost-acks"
    }
    async fn record(&self, m: &steer_metrics::AgentMetrics) -> Result<(), steer_metrics::SinkError> {
        self.record_batch(std::slice::from_ref(m)).await
    }
    async fn record_batch(
        &self,
        batch: &[steer_metrics::AgentMetrics],
    ) -> Result<(), steer_metrics::SinkError> {
        self.inner.record_batch(batch).await?;
        let lose = self
            .remaining
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok();
        if lose {
            return Err(steer_metrics::SinkError::retryable("acknowledgement lost"));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_retried_after_it_committed_is_not_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SqliteSink::open(dir.path().join("m.db")).unwrap();
    let records = synthetic(5000, 17);
    let retry = steer_metrics::RetryPolicy::default().initial_backoff(Duration::from_millis(1));
    let collector = MetricsCollector::builder()
        .sink_with_options(
            LostAcks {
                inner: sink.clone(),
                remaining: 3.into(),
            },
            SinkOptions::default()
                .batch_size(1000)
                .queue_capacity(5000)
                .retry(retry),
        )
        .build()
        .unwrap();
    for m in &records {
        collector.record(m.clone());
    }
    let report = collector.flush().await;
    let stats = &report.sinks[0].stats;
    assert_eq!(stats.delivered, 5000, "{stats}");
    assert!(stats.retried > 0, "{stats}");
    assert!(sink.duplicates_ignored() > 0, "the retries re-sent stored rows");
    let conn = Connection::open(sink.path()).unwrap();
    let (rows, distinct): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT request_id) FROM llm_metrics",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, distinct), (5000, 5000));
    assert_eq!(sink.inserted(), 5000);
}
