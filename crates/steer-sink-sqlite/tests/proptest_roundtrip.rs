//! Property: any record written reads back equal, up to the documented
//! value rules (microsecond timestamps, counts saturating at `i64::MAX`).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use chrono::DateTime;
use proptest::prelude::*;
use steer_metrics::StatsQuery;
use steer_metrics::{AgentMetrics, ErrorClass, Method, MetricsSink};
use steer_sink_sqlite::SqliteSink;

fn text() -> impl Strategy<Value = String> {
    // Any unicode, NUL and quotes included, sometimes empty.
    prop_oneof![any::<String>(), "[\"'\\\\\0a-z ]{0,8}".prop_map(String::from)]
}

prop_compose! {
    fn record()(
        model in text(),
        provider in text(),
        response_model in proptest::option::of(text()),
        stream in any::<bool>(),
        ts in -62_000_000_000_000_000i64..200_000_000_000_000_000,
        latency in -1e12f64..1e12,
        ttft in proptest::option::of(0f64..1e9),
        tokens in (any::<u64>(), any::<u64>(), any::<u64>()),
        extra in (proptest::option::of(any::<u64>()), proptest::option::of(any::<u64>())),
        cost in proptest::option::of(0f64..1e6),
        small in (any::<u32>(), any::<u32>(), any::<u32>()),
        error in proptest::option::of((0usize..ErrorClass::ALL.len(), proptest::option::of(text()))),
        tools in proptest::collection::vec(text(), 0..4),
        runtime in proptest::option::of(text()),
        tags in proptest::collection::btree_map(text(), text(), 0..4),
        weight in 0f64..1e6,
        trace in proptest::option::of(text()),
    ) -> AgentMetrics {
        let mut m = AgentMetrics::new(provider, model);
        m.response_model = response_model;
        m.method = if stream { Method::Stream } else { Method::Generate };
        m.timestamp = DateTime::from_timestamp_micros(ts).unwrap();
        m.latency_ms = latency;
        m.ttft_ms = ttft;
        (m.input_tokens, m.output_tokens, m.cached_tokens) = tokens;
        (m.cache_write_tokens, m.reasoning_tokens) = extra;
        m.cost_usd = cost;
        (m.retries, m.tools_invoked, m.agent_loop_iters) = small;
        if let Some((class, message)) = error {
            m.error_class = Some(ErrorClass::ALL[class]);
            m.error_message = message;
        }
        m.tools_used = tools;
        m.agent_runtime = runtime;
        m.tags = tags.into_iter().collect::<BTreeMap<_, _>>();
        m.sample_weight = weight;
        m.trace_id = trace;
        m
    }
}

/// What the store gives back for `m`.
fn stored(m: &AgentMetrics) -> AgentMetrics {
    let sat = |v: u64| v.min(i64::MAX as u64);
    let mut m = m.clone();
    m.input_tokens = sat(m.input_tokens);
    m.output_tokens = sat(m.output_tokens);
    m.cached_tokens = sat(m.cached_tokens);
    m.cache_write_tokens = m.cache_write_tokens.map(sat);
    m.reasoning_tokens = m.reasoning_tokens.map(sat);
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_batch_round_trips(batch in proptest::collection::vec(record(), 1..20)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sink = SqliteSink::open(dir.path().join("p.db")).unwrap();
        rt.block_on(sink.record_batch(&batch)).unwrap();
        let back = sink.store().unwrap().records(&StatsQuery::new()).unwrap();
        let expected: Vec<AgentMetrics> = batch.iter().map(stored).collect();
        prop_assert_eq!(back, expected);
    }
}
