//! The SQLite sink stores every record, normalised.

use super::common::*;

pub(crate) fn sqlite_normalised(m: &AgentMetrics) -> AgentMetrics {
    let mut e = m.clone();
    let sat = |v: u64| v.min(i64::MAX as u64);
    // SQLite stores a REAL with an integral value as an integer: -0.0 reads back as 0.0.
    let unsign_zero = |v: f64| if v == 0.0 { 0.0 } else { v };
    e.latency_ms = if e.latency_ms.is_finite() {
        unsign_zero(e.latency_ms)
    } else {
        f64::NAN
    };
    e.ttft_ms = e.ttft_ms.filter(|v| v.is_finite()).map(unsign_zero);
    e.cost_usd = e.cost_usd.filter(|v| v.is_finite()).map(unsign_zero);
    e.input_tokens = sat(e.input_tokens);
    e.output_tokens = sat(e.output_tokens);
    e.cached_tokens = sat(e.cached_tokens);
    e.reasoning_tokens = e.reasoning_tokens.map(sat);
    e.cache_write_tokens = e.cache_write_tokens.map(sat);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stores_every_record_normalised() {
    let cases = corpus(3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let sink = steer_sink_sqlite::SqliteSink::open(&path).unwrap();
    let (s, _collector) = drive(sink, &cases).await;
    let store = steer_sink_sqlite::SqliteStore::open_read_only(&path).unwrap();
    let rows = store.records(&steer_metrics::StatsQuery::new()).unwrap();
    let ids = by_id(&cases);
    let mut stored = HashSet::new();
    for m in rows {
        let c = ids[&m.request_id];
        assert_eq!(
            format!("{m:?}"),
            format!("{:?}", sqlite_normalised(&c.record)),
            "[sqlite] {} not stored as documented",
            c.category.name()
        );
        assert!(stored.insert(m.request_id));
    }
    let t = outcome("sqlite", &cases, &stored, &s);
    expect_all("sqlite", &t, &Category::HOSTILE);
}

// ------------------------------------------------------------ postgres
