//! Property: arbitrary hostile values through the SQLite sink are stored as documented.

use super::common::*;
use super::sqlite::sqlite_normalised;
use proptest::prelude::*;

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 =,\"'\\\\\n\r\t\u{0}{}]{0,24}",
        ".{0,24}",
        Just(String::new()),
        Just("'); DROP TABLE llm_metrics;--".to_string()),
    ]
}

fn any_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-1.0),
        Just(1e308)
    ]
}

prop_compose! {
    fn record()(
        model in hostile_string(),
        provider in hostile_string(),
        tags in proptest::collection::btree_map(hostile_string(), hostile_string(), 0..6),
        latency in any_float(),
        cost in proptest::option::of(any_float()),
        input in any::<u64>(),
        output in any::<u64>(),
        message in proptest::option::of(hostile_string()),
    ) -> AgentMetrics {
        let mut m = AgentMetrics::new(provider, model).with_latency_ms(latency).with_tokens(input, output);
        m.timestamp = m.timestamp.duration_trunc(chrono::Duration::microseconds(1)).unwrap();
        m.tags = tags;
        m.cost_usd = cost;
        m.error_message = message;
        m
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Arbitrary hostile records through memory and SQLite: exact
    /// accounting, memory keeps them as-is, SQLite as documented.
    #[test]
    fn arbitrary_records_are_stored_as_documented(records in proptest::collection::vec(record(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("p.db");
            let mem = MemorySink::builder().max_records(1000).build();
            let collector = MetricsCollector::builder()
                .sink_with_options(mem.clone(), options())
                .sink_with_options(steer_sink_sqlite::SqliteSink::open(&path).unwrap(), options())
                .build()
                .unwrap();
            for m in &records {
                collector.record(m.clone());
            }
            collector.flush_timeout(Duration::from_secs(30)).await;
            let n = records.len() as u64;
            for s in collector.stats().sinks {
                prop_assert_eq!(s.delivered + s.failed.total() + s.dropped.total(), n, "{:?}", s);
                prop_assert_eq!(s.delivered, n, "{:?}", s);
            }
            let got: HashMap<Uuid, AgentMetrics> = mem.records().into_iter().map(|m| (m.request_id, m)).collect();
            let rows: HashMap<Uuid, AgentMetrics> = steer_sink_sqlite::SqliteStore::open_read_only(&path)
                .unwrap()
                .records(&steer_metrics::StatsQuery::new())
                .unwrap()
                .into_iter()
                .map(|m| (m.request_id, m))
                .collect();
            for m in &records {
                prop_assert_eq!(format!("{:?}", got[&m.request_id]), format!("{m:?}"));
                prop_assert_eq!(format!("{:?}", rows[&m.request_id]), format!("{:?}", sqlite_normalised(m)));
            }
            collector.shutdown(Duration::from_secs(5)).await;
            Ok(())
        })?;
    }
}
