//! A store written by an older steer (schema v1, before `finish_reason` and
//! `cache_write_1h_tokens`) is migrated in place on open: old rows keep
//! their values (new columns NULL), new rows store the new fields.
#![allow(clippy::unwrap_used)]

use rusqlite::Connection;
use steer_metrics::StatsQuery;
use steer_metrics::{AgentMetrics, MetricsSink};
use steer_sink_sqlite::{SqliteSink, SqliteStore, SCHEMA_VERSION};

/// The v1 layout exactly as steer 0.1 created it.
const V1: &str = r#"
CREATE TABLE steer_tables (name TEXT PRIMARY KEY, created_us INTEGER NOT NULL);
INSERT INTO steer_tables VALUES ('llm_metrics', 0);
CREATE TABLE "llm_metrics" (
    id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, ts INTEGER NOT NULL, model TEXT NOT NULL,
    response_model TEXT, provider TEXT NOT NULL, method TEXT NOT NULL, latency_ms REAL, ttft_ms REAL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER, reasoning_tokens INTEGER, cost_usd REAL, retries INTEGER NOT NULL,
    error_class TEXT, error_message TEXT, tools_used TEXT NOT NULL, tools_invoked INTEGER NOT NULL,
    agent_loop_iters INTEGER NOT NULL, agent_runtime TEXT, tags TEXT NOT NULL, sample_weight REAL,
    trace_id TEXT
);
CREATE UNIQUE INDEX "llm_metrics_request_id_key" ON "llm_metrics" (request_id);
CREATE VIEW "llm_metrics_view" AS
    SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ts / 1000000.0, 'unixepoch') AS ts_iso, * FROM "llm_metrics";
INSERT INTO "llm_metrics" (request_id, ts, model, provider, method, latency_ms, input_tokens,
    output_tokens, cached_tokens, cache_write_tokens, cost_usd, retries, tools_used, tools_invoked,
    agent_loop_iters, tags, sample_weight)
VALUES ('0190b1c2-0000-7000-8000-000000000001', 1700000000000000, 'claude-sonnet-4-5', 'anthropic',
    'generate', 812.5, 7100, 300, 5000, 2000, 0.0138, 0, '[]', 0, 0, '{}', 1.0);
PRAGMA application_id = 1398031698;
PRAGMA user_version = 1;
"#;

#[tokio::test]
async fn a_v1_store_is_migrated_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    Connection::open(&path).unwrap().execute_batch(V1).unwrap();

    let sink = SqliteSink::open(&path).unwrap();
    let mut m = AgentMetrics::new("anthropic", "claude-sonnet-4-6");
    // The store keeps microseconds.
    m.timestamp = chrono::DateTime::from_timestamp_micros(m.timestamp.timestamp_micros()).unwrap();
    m.finish_reason = Some("max_tokens".into());
    m.cache_write_tokens = Some(3913);
    m.cache_write_1h_tokens = Some(3913);
    sink.record_batch(std::slice::from_ref(&m)).await.unwrap();
    sink.close().await.unwrap();

    let version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let rows = SqliteStore::open_read_only(&path)
        .unwrap()
        .records(&StatsQuery::new())
        .unwrap();
    assert_eq!(rows.len(), 2);
    let old = &rows[0];
    assert_eq!(old.model, "claude-sonnet-4-5");
    assert_eq!(old.cache_write_tokens, Some(2000));
    assert_eq!(old.cost_usd, Some(0.0138));
    assert_eq!(
        (old.finish_reason.as_deref(), old.cache_write_1h_tokens),
        (None, None)
    );
    assert_eq!(rows[1], m, "a new row round-trips every field");
    // The view shows the new columns too.
    let fr: Option<String> = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT finish_reason FROM llm_metrics_view WHERE model = 'claude-sonnet-4-6'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(fr.as_deref(), Some("max_tokens"));
}
