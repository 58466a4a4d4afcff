//! What is written is what is read back: every field, odd values, duplicates,
//! refused rows.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::Connection;
use steer_metrics::StatsQuery;
use steer_metrics::{AgentMetrics, ErrorClass, Method, MetricsSink, SinkErrorKind};
use steer_sink_sqlite::{SqliteSink, SqliteStore};

fn full_record() -> AgentMetrics {
    let mut m = AgentMetrics::new("anthropic", "claude-sonnet-4-5")
        .with_latency_ms(812.25)
        .with_tokens(1200, 300)
        .with_error(ErrorClass::RateLimit)
        .with_tag("team", "search \"core\" — équipe 検索")
        .with_tag("quote'", "it's")
        .with_tag("nul", "a\0b")
        .with_tag("emoji 🦀", "");
    m.timestamp =
        Utc.with_ymd_and_hms(2026, 11, 27, 3, 4, 5).unwrap() + chrono::Duration::microseconds(678_901);
    m.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    m.response_model = Some("claude-sonnet-4-5-20250929".into());
    m.method = Method::Stream;
    m.ttft_ms = Some(120.5);
    m.cached_tokens = 1000;
    m.cache_write_tokens = Some(10);
    m.reasoning_tokens = Some(5);
    m.cost_usd = Some(0.012_345_678_9);
    m.retries = 2;
    m.error_message = Some("429 Too Many Requests; retry after 2s\nline two".into());
    m.tools_used = vec!["search".into(), "ca\"lc".into(), "".into()];
    m.tools_invoked = 3;
    m.agent_loop_iters = 4;
    m.agent_runtime = Some("loop".into());
    m.sample_weight = 4.0;
    m
}

/// Every optional field absent, empty strings.
fn sparse_record() -> AgentMetrics {
    let mut m = AgentMetrics::new("", "");
    m.timestamp = DateTime::from_timestamp_micros(1).unwrap();
    m
}

async fn open(dir: &tempfile::TempDir) -> SqliteSink {
    SqliteSink::open(dir.path().join("m.db")).unwrap()
}

#[tokio::test]
async fn every_field_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let sink = open(&dir).await;
    let mut huge = sparse_record();
    huge.input_tokens = i64::MAX as u64;
    huge.output_tokens = 7;
    huge.cache_write_tokens = Some(0);
    huge.retries = u32::MAX;
    huge.tools_invoked = u32::MAX;
    huge.agent_loop_iters = u32::MAX;
    huge.cost_usd = Some(0.0);
    huge.timestamp = Utc.with_ymd_and_hms(1969, 7, 20, 20, 17, 40).unwrap();
    let mut classes = Vec::new();
    for class in ErrorClass::ALL {
        classes.push(AgentMetrics::new("sim", "m").with_error(class));
    }
    let mut written = vec![full_record(), sparse_record(), huge];
    written.extend(classes);
    // Records carry nanosecond timestamps; the store keeps microseconds.
    for m in &mut written {
        m.timestamp = DateTime::from_timestamp_micros(m.timestamp.timestamp_micros()).unwrap();
    }
    sink.record_batch(&written).await.unwrap();

    let store = sink.store().unwrap();
    let read = store.records(&StatsQuery::new()).unwrap();
    assert_eq!(read.len(), written.len());
    for (r, w) in read.iter().zip(&written) {
        assert_eq!(r, w);
    }
    // The NUL byte and the unicode survive in the raw column too.
    let conn = Connection::open(sink.path()).unwrap();
    let tags: String = conn
        .query_row(
            "SELECT tags FROM llm_metrics WHERE request_id = ?1",
            [written[0].request_id.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&tags).unwrap();
    assert_eq!(parsed["nul"], "a\u{0}b");
    assert_eq!(parsed["team"], "search \"core\" — équipe 検索");
    // The JSON columns are queryable with SQLite's JSON functions.
    let team: String = conn
        .query_row(
            "SELECT json_extract(tags, '$.team') FROM llm_metrics WHERE json_array_length(tools_used) = 3",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(team, "search \"core\" — équipe 検索");
}

#[tokio::test]
async fn sub_microsecond_precision_is_truncated_not_rounded() {
    let dir = tempfile::tempdir().unwrap();
    let sink = open(&dir).await;
    let mut m = AgentMetrics::new("sim", "m");
    m.timestamp = DateTime::from_timestamp(1_700_000_000, 999_999_999).unwrap();
    sink.record(&m).await.unwrap();
    let back = &sink.store().unwrap().records(&StatsQuery::new()).unwrap()[0];
    assert_eq!(
        back.timestamp,
        DateTime::from_timestamp(1_700_000_000, 999_999_000).unwrap()
    );
}

#[tokio::test]
async fn counts_above_i64_max_are_stored_saturated() {
    let dir = tempfile::tempdir().unwrap();
    let sink = open(&dir).await;
    let mut m = AgentMetrics::new("sim", "m").with_tokens(u64::MAX, i64::MAX as u64 + 1);
    m.reasoning_tokens = Some(u64::MAX);
    sink.record(&m).await.unwrap();
    let conn = Connection::open(sink.path()).unwrap();
    let (input, output, reasoning): (i64, i64, i64) = conn
        .query_row(
            "SELECT input_tokens, output_tokens, reasoning_tokens FROM llm_metrics",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (input, output, reasoning),
        (i64::MAX, i64::MAX, i64::MAX),
        "saturated, never negative"
    );
    let back = &sink.store().unwrap().records(&StatsQuery::new()).unwrap()[0];
    assert_eq!(back.input_tokens, i64::MAX as u64);
    assert_eq!(back.reasoning_tokens, Some(i64::MAX as u64));
}

#[tokio::test]
async fn non_finite_floats_are_stored_as_null_and_do_not_fail_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let sink = open(&dir).await;
    let mut bad = AgentMetrics::new("sim", "m").with_latency_ms(f64::NAN);
    bad.ttft_ms = Some(f64::INFINITY);
    bad.cost_usd = Some(f64::NEG_INFINITY);
    let good = AgentMetrics::new("sim", "m").with_latency_ms(10.0);
    sink.record_batch(&[bad.clone(), good.clone()]).await.unwrap();

    let conn = Connection::open(sink.path()).unwrap();
    let nulls: i64 = conn
        .query_row(
            "SELECT count(*) FROM llm_metrics WHERE latency_ms IS NULL AND ttft_ms IS NULL AND cost_usd IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(nulls, 1);
    let store = sink.store().unwrap();
    let back = store.records(&StatsQuery::new()).unwrap();
    assert!(back[0].latency_ms.is_nan());
    assert_eq!(back[0].ttft_ms, None);
    assert_eq!(back[0].cost_usd, None);
    // Same meaning as the in-memory summary: the NaN latency is counted as a
    // record but not in the distribution; the infinite cost is unknown.
    let s = store.query_summary(&StatsQuery::new()).unwrap().total;
    assert_eq!(s, steer_metrics::Summary::from_records([&bad, &good]));
    assert_eq!(s.count, 2);
    assert_eq!(s.latency_ms.unwrap().count, 1);
    assert_eq!(s.cost_unknown, 2);
}

#[tokio::test]
async fn a_record_written_twice_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let sink = open(&dir).await;
    let batch = steer_metrics::testkit::synthetic(500, 1);
    sink.record_batch(&batch).await.unwrap();
    // A retried batch, and a batch repeating a record inside itself.
    sink.record_batch(&batch).await.unwrap();
    let mut changed = batch[3].clone();
    changed.model = "changed".into();
    sink.record_batch(&[batch[7].clone(), batch[7].clone(), changed])
        .await
        .unwrap();

    let store = sink.store().unwrap();
    assert_eq!(store.count().unwrap(), 500);
    assert_eq!(sink.inserted(), 500);
    assert_eq!(sink.duplicates_ignored(), 503);
    // The first write wins.
    assert!(store
        .records(&StatsQuery::new().filter("model=changed".parse().unwrap()))
        .unwrap()
        .is_empty());
    let conn = Connection::open(sink.path()).unwrap();
    let distinct: i64 = conn
        .query_row("SELECT count(DISTINCT request_id) FROM llm_metrics", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(distinct, 500);
}

#[tokio::test]
async fn a_row_the_database_refuses_is_rejected_alone() {
    let dir = tempfile::tempdir().unwrap();
    let sink = open(&dir).await;
    // A user's trigger refusing some rows, like a CHECK constraint would.
    Connection::open(sink.path())
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON llm_metrics WHEN NEW.model = 'bad'
             BEGIN SELECT RAISE(ABORT, 'model refused'); END;",
        )
        .unwrap();
    let mut batch: Vec<AgentMetrics> = (0..5).map(|_| AgentMetrics::new("sim", "ok")).collect();
    batch[1].model = "bad".into();
    batch[3].model = "bad".into();
    let err = sink.record_batch(&batch).await.unwrap_err();
    assert_eq!(err.kind(), SinkErrorKind::Permanent);
    assert_eq!(err.records(), Some(&[1, 3][..]));
    assert!(err.message().contains("model refused"), "{}", err.message());
    let stored: Vec<_> = sink
        .store()
        .unwrap()
        .records(&StatsQuery::new())
        .unwrap()
        .into_iter()
        .map(|m| m.request_id)
        .collect();
    assert_eq!(
        stored,
        vec![batch[0].request_id, batch[2].request_id, batch[4].request_id]
    );
}

#[tokio::test]
async fn a_row_error_that_rolls_back_the_transaction_fails_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let sink = open(&dir).await;
    Connection::open(sink.path())
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON llm_metrics WHEN NEW.model = 'bad'
             BEGIN SELECT RAISE(ROLLBACK, 'refused'); END;",
        )
        .unwrap();
    let mut batch: Vec<AgentMetrics> = (0..3).map(|_| AgentMetrics::new("sim", "ok")).collect();
    batch[2].model = "bad".into();
    let err = sink.record_batch(&batch).await.unwrap_err();
    // Nothing was kept, so nothing may be reported delivered: the collector
    // splits the batch to find the bad record.
    assert_eq!(err.kind(), SinkErrorKind::Permanent);
    assert_eq!(err.records(), None);
    assert_eq!(sink.store().unwrap().count().unwrap(), 0);
    // The connection is usable afterwards.
    sink.record_batch(&batch[..2]).await.unwrap();
    assert_eq!(sink.store().unwrap().count().unwrap(), 2);
}

#[tokio::test]
async fn close_leaves_a_single_complete_file_and_a_later_write_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let sink = open(&dir).await;
    sink.record_batch(&steer_metrics::testkit::synthetic(100, 2))
        .await
        .unwrap();
    sink.flush().await.unwrap();
    sink.close().await.unwrap();
    assert!(!dir.path().join("m.db-wal").exists(), "WAL removed on close");
    assert_eq!(
        SqliteStore::open_read_only(sink.path()).unwrap().count().unwrap(),
        100
    );
    sink.record_batch(&steer_metrics::testkit::synthetic(10, 3))
        .await
        .unwrap();
    assert_eq!(sink.store().unwrap().count().unwrap(), 110);
}

#[tokio::test]
async fn tables_and_views_are_named_after_the_configured_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let a = SqliteSink::builder(&path)
        .table("calls_a")
        .name("a")
        .build()
        .unwrap();
    let b = SqliteSink::builder(&path)
        .table("calls_b")
        .name("b")
        .build()
        .unwrap();
    assert_eq!(a.name(), "a");
    a.record_batch(&steer_metrics::testkit::synthetic(3, 1))
        .await
        .unwrap();
    b.record_batch(&steer_metrics::testkit::synthetic(5, 1))
        .await
        .unwrap();
    assert_eq!(
        SqliteStore::open_read_only_table(&path, "calls_a")
            .unwrap()
            .count()
            .unwrap(),
        3
    );
    assert_eq!(b.store().unwrap().count().unwrap(), 5);
    let conn = Connection::open(&path).unwrap();
    let iso: String = conn
        .query_row("SELECT ts_iso FROM calls_a_view LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert!(iso.ends_with('Z') && iso.contains('T'), "{iso}");
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}
