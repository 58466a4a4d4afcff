//! Opening bad files gives typed errors; readers and other writers coexist
//! with the sink (WAL).
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use steer_metrics::testkit::synthetic;
use steer_metrics::StatsQuery;
use steer_metrics::{MetricsCollector, MetricsSink, SinkErrorKind, SinkOptions};
use steer_sink_sqlite::{SqliteError, SqliteSink, SqliteStore, SCHEMA_VERSION};

#[test]
fn read_only_open_of_a_missing_file_is_not_found_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.db");
    let err = SqliteStore::open_read_only(&path).unwrap_err();
    assert!(matches!(err, SqliteError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("nope.db"), "{err}");
    assert!(!path.exists());
}

#[test]
fn a_text_file_is_not_a_store_for_reading_or_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.db");
    let text =
        "this is not a database, just some text that is long enough to look like a header\n".repeat(20);
    std::fs::write(&path, &text).unwrap();
    let err = SqliteStore::open_read_only(&path).unwrap_err();
    assert!(matches!(err, SqliteError::NotAStore { .. }), "{err}");
    assert!(err.to_string().contains("not an SQLite database"), "{err}");
    let err = SqliteSink::open(&path).unwrap_err();
    assert!(matches!(err, SqliteError::NotAStore { .. }), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "the file is left untouched"
    );
}

#[test]
fn another_applications_database_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE users (id INTEGER); PRAGMA user_version = 3;")
        .unwrap();
    drop(conn);
    for err in [
        SqliteStore::open_read_only(&path).unwrap_err(),
        SqliteSink::open(&path).unwrap_err(),
    ] {
        assert!(matches!(err, SqliteError::NotAStore { .. }), "{err}");
    }
    // Its schema is untouched.
    let conn = Connection::open(&path).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1);

    // A plain empty SQLite file is not a store for reading either.
    let empty = dir.path().join("empty.db");
    Connection::open(&empty).unwrap();
    let err = SqliteStore::open_read_only(&empty).unwrap_err();
    assert!(matches!(err, SqliteError::NotAStore { .. }), "{err}");
}

#[tokio::test]
async fn a_store_of_a_newer_schema_is_refused_for_reading_and_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    SqliteSink::open(&path).unwrap();
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();
    drop(conn);
    for err in [
        SqliteStore::open_read_only(&path).unwrap_err(),
        SqliteSink::open(&path).unwrap_err(),
    ] {
        match err {
            SqliteError::SchemaTooNew { found, supported, .. } => {
                assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected SchemaTooNew, got {other}"),
        }
    }
}

#[test]
fn missing_directory_table_name_and_missing_table_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/m.db");
    let err = SqliteSink::open(&path).unwrap_err();
    assert!(matches!(err, SqliteError::MissingDirectory { .. }), "{err}");
    assert!(!dir.path().join("no").exists(), "directories are not created");

    let path = dir.path().join("m.db");
    let err = SqliteSink::builder(&path)
        .table("x; DROP TABLE y")
        .build()
        .unwrap_err();
    assert!(matches!(err, SqliteError::InvalidTableName(_)), "{err}");
    SqliteSink::open(&path).unwrap();
    let err = SqliteStore::open_read_only_table(&path, "other").unwrap_err();
    assert!(matches!(err, SqliteError::NotAStore { .. }), "{err}");
    let err = SqliteStore::open_read_only(dir.path()).unwrap_err();
    assert!(matches!(err, SqliteError::NotAStore { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_queries_while_the_collector_writes() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SqliteSink::open(dir.path().join("m.db")).unwrap();
    let store = sink.store().unwrap();
    const N: usize = 30_000;
    let records = synthetic(N, 21);

    // The reader polls until it has seen every row, checking each answer
    // and publishing the last count it saw.
    let last_seen = Arc::new(AtomicU64::new(0));
    let reader = {
        let last_seen = last_seen.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let count = store.count().unwrap();
                let summary = store.query_summary(&StatsQuery::new()).unwrap().total;
                assert!(summary.count >= count, "rows only ever grow");
                if seen.last() != Some(&count) {
                    seen.push(count);
                }
                last_seen.store(count, Ordering::SeqCst);
                if count == N as u64 || Instant::now() > deadline {
                    break;
                }
            }
            seen
        })
    };

    let collector = MetricsCollector::builder()
        .sink_with_options(
            sink.clone(),
            SinkOptions::default().batch_size(1000).queue_capacity(N),
        )
        .build()
        .unwrap();
    let (first, second) = records.split_at(N / 2);
    for m in first {
        collector.record(m.clone());
    }
    collector.flush().await;
    // The reader sees the first half (polling, not sleeping) ...
    let deadline = Instant::now() + Duration::from_secs(30);
    while last_seen.load(Ordering::SeqCst) != (N / 2) as u64 {
        assert!(Instant::now() < deadline, "the reader never saw the first half");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // ... and keeps querying while the second half is written.
    for chunk in second.chunks(1000) {
        for m in chunk {
            collector.record(m.clone());
        }
        tokio::task::yield_now().await;
    }
    let report = collector.flush().await;
    assert_eq!(report.sinks[0].stats.delivered, N as u64);
    let seen = reader.join().unwrap();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "monotonic: {seen:?}");
    assert_eq!(seen.last(), Some(&(N as u64)), "{seen:?}");
    assert!(seen.contains(&((N / 2) as u64)), "{seen:?}");
}

#[tokio::test]
async fn an_open_write_transaction_does_not_block_readers_and_busy_is_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SqliteSink::builder(dir.path().join("m.db"))
        .busy_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let first = synthetic(10, 1);
    sink.record_batch(&first).await.unwrap();
    let store = sink.store().unwrap();

    // Another process holds the write lock with uncommitted rows.
    let other = Connection::open(sink.path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    other
        .execute(
            "INSERT INTO llm_metrics (request_id, ts, model, provider, method, input_tokens, output_tokens,
             cached_tokens, retries, tools_used, tools_invoked, agent_loop_iters, tags)
             VALUES ('00000000-0000-7000-8000-000000000000', 0, 'm', 'p', 'generate', 0, 0, 0, 0, '[]', 0, 0, '{}')",
            [],
        )
        .unwrap();

    // Readers are not blocked and see only committed rows.
    let started = Instant::now();
    assert_eq!(store.count().unwrap(), 10);
    assert!(started.elapsed() < Duration::from_secs(1));

    // Our write waits busy_timeout, then fails as retryable, keeping nothing.
    let second = synthetic(5, 2);
    let err = sink.record_batch(&second).await.unwrap_err();
    assert_eq!(err.kind(), SinkErrorKind::Retryable, "{err}");
    assert_eq!(err.records(), None, "the whole batch is to be retried");

    other.execute_batch("COMMIT").unwrap();
    sink.record_batch(&second).await.unwrap();
    assert_eq!(store.count().unwrap(), 16);
}
