//! Against a real InfluxDB 1.x (started by scripts/services/influxdb.sh):
//! write through the sink, query back, compare every field.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::{json, Value};
use steer_metrics::{
    AgentMetrics, ErrorClass, Method, MetricsCollector, MetricsSink, RetryPolicy, SinkOptions,
};
use steer_sink_influxdb::{
    normalize_key, normalize_measurement, normalize_name, Attribute, InfluxSink, Precision,
};

use common::{server_url, Db};

fn full_record() -> AgentMetrics {
    let mut m = AgentMetrics::new("anthropic", "claude-sonnet-4-5")
        .with_latency_ms(812.625)
        .with_tokens(1200, 300)
        .with_error(ErrorClass::RateLimit)
        .with_tag("team", "search")
        .with_tag("region", "eu west")
        .with_tag("tags", "kept")
        .with_tag("provider", "skipped: a built-in name");
    m.timestamp = chrono::Utc.timestamp_opt(1_700_000_123, 456_789_123).unwrap();
    m.method = Method::Stream;
    m.trace_id = Some("trace-1".into());
    m.ttft_ms = Some(120.25);
    m.cached_tokens = 1000;
    m.cache_write_tokens = Some(10);
    m.reasoning_tokens = Some(5);
    m.cost_usd = Some(0.012_345_678_9);
    m.retries = 2;
    m.error_message = Some("429 \"slow down\" \\ retry\nlater".into());
    m.response_model = Some("claude-sonnet-4-5-20250929".into());
    m.tools_used = vec!["search".into(), "calc".into()];
    m.tools_invoked = 2;
    m.agent_loop_iters = 3;
    m.agent_runtime = Some("loop".into());
    m.sample_weight = 4.0;
    m
}

/// What the server must hold for `m`, per the documented encoding.
fn expected(m: &AgentMetrics, precision: Precision) -> BTreeMap<String, Value> {
    let mut e = BTreeMap::new();
    let nanos = i128::from(m.timestamp.timestamp()) * 1_000_000_000
        + i128::from(m.timestamp.timestamp_subsec_nanos());
    let unit = precision.nanos_per_unit();
    e.insert("time".into(), json!(nanos.div_euclid(unit) * unit));

    // Tags: built-ins first, then user tags in key order; empty dropped,
    // first of a key wins; user tags named like a built-in are skipped.
    let mut tags: Vec<(String, String)> = vec![
        ("model".into(), normalize_name(&m.model).into_owned()),
        ("provider".into(), normalize_name(&m.provider).into_owned()),
        ("method".into(), m.method.as_str().into()),
        ("status".into(), m.status().into()),
    ];
    if let Some(c) = m.error_class {
        tags.push(("error_class".into(), c.as_str().into()));
    }
    for (k, v) in &m.tags {
        let k = normalize_key(k).into_owned();
        if !Attribute::is_builtin_key(&k) {
            tags.push((k, normalize_name(v).into_owned()));
        }
    }
    for (k, v) in tags {
        if !k.is_empty() && !v.is_empty() && !e.contains_key(&k) {
            e.insert(k, json!(v));
        }
    }

    let mut f = |k: &str, v: Value| {
        e.insert(k.to_string(), v);
    };
    f("request_id", json!(m.request_id.to_string()));
    f("latency_ms", json!(m.latency_ms));
    f("input_tokens", json!(m.input_tokens));
    f("output_tokens", json!(m.output_tokens));
    f("total_tokens", json!(m.total_tokens()));
    f("cached_tokens", json!(m.cached_tokens));
    f("retries", json!(m.retries));
    f("tools_invoked", json!(m.tools_invoked));
    f("agent_loop_iters", json!(m.agent_loop_iters));
    f("sample_weight", json!(m.sample_weight));
    if let Some(v) = m.ttft_ms {
        f("ttft_ms", json!(v));
    }
    if let Some(v) = m.cache_write_tokens {
        f("cache_write_tokens", json!(v));
    }
    if let Some(v) = m.reasoning_tokens {
        f("reasoning_tokens", json!(v));
    }
    if let Some(v) = m.cost_usd {
        f("cost_usd", json!(v));
    }
    if let Some(v) = &m.error_message {
        f("error_message", json!(v));
    }
    if let Some(v) = &m.response_model {
        f("response_model", json!(v));
    }
    if let Some(v) = &m.trace_id {
        f("trace_id", json!(v));
    }
    if let Some(v) = &m.agent_runtime {
        f("agent_runtime", json!(v));
    }
    if !m.tools_used.is_empty() {
        f("tools_used", json!(m.tools_used.join(",")));
    }
    e
}

/// Compare numbers by value (the server prints 4.0 as 4), the rest exactly.
fn assert_point_eq(actual: &BTreeMap<String, Value>, expected: &BTreeMap<String, Value>, ctx: &str) {
    let keys_a: Vec<_> = actual.keys().collect();
    let keys_e: Vec<_> = expected.keys().collect();
    assert_eq!(keys_a, keys_e, "{ctx}: columns differ");
    for (k, e) in expected {
        let a = &actual[k];
        let same = match (a, e) {
            (Value::Number(x), Value::Number(y)) => {
                if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                    x == y
                } else {
                    x.as_f64() == y.as_f64()
                }
            }
            _ => a == e,
        };
        assert!(same, "{ctx}: column {k:?}: stored {a} != expected {e}");
    }
}

fn by_request_id(points: Vec<BTreeMap<String, Value>>) -> BTreeMap<String, BTreeMap<String, Value>> {
    points
        .into_iter()
        .filter_map(|p| Some((p.get("request_id")?.as_str()?.to_string(), p)))
        .collect()
}

#[tokio::test]
async fn every_field_round_trips_in_every_precision_with_and_without_gzip() {
    let Some(url) = server_url() else { return };
    let db = Db::create(&url, "roundtrip").await;
    let minimal = {
        let mut m = AgentMetrics::new("openai", "gpt-4o-mini").with_latency_ms(5.0);
        m.timestamp = chrono::Utc.timestamp_opt(1_700_000_000, 999_999_999).unwrap();
        m
    };
    let before_1970 = {
        let mut m = full_record();
        m.timestamp = chrono::Utc.timestamp_opt(-86_400, 500_000_001).unwrap();
        m.cost_usd = None;
        m
    };
    for (i, precision) in [
        Precision::Nanoseconds,
        Precision::Microseconds,
        Precision::Milliseconds,
        Precision::Seconds,
    ]
    .into_iter()
    .enumerate()
    {
        let gzip = i % 2 == 1;
        let measurement = format!("rt_{}", precision.v2_param());
        let sink = InfluxSink::new(
            InfluxSink::builder(&url)
                .database(&db.name)
                .measurement(&measurement)
                .precision(precision)
                .gzip(gzip)
                .build()
                .unwrap(),
        )
        .unwrap();
        let records = vec![full_record(), minimal.clone(), before_1970.clone()];
        sink.record_batch(&records).await.unwrap();

        let stored = by_request_id(db.points(&measurement).await);
        assert_eq!(stored.len(), records.len(), "{measurement}: one point per record");
        for m in &records {
            let ctx = format!("{measurement} gzip={gzip} {}", m.request_id);
            assert_point_eq(&stored[&m.request_id.to_string()], &expected(m, precision), &ctx);
        }
        // Absent stays absent: unknown cost is not 0, success has no error_class.
        let min = &stored[&minimal.request_id.to_string()];
        assert!(
            !min.contains_key("cost_usd") && !min.contains_key("error_class") && !min.contains_key("ttft_ms")
        );
    }
    db.drop().await;
}

#[tokio::test]
async fn non_finite_values_and_out_of_range_timestamps_fail_alone() {
    let Some(url) = server_url() else { return };
    let db = Db::create(&url, "nonfinite").await;
    let sink = InfluxSink::new(InfluxSink::builder(&url).database(&db.name).build().unwrap()).unwrap();
    let mut nan = full_record();
    nan.latency_ms = f64::NAN;
    nan.cost_usd = Some(f64::INFINITY);
    // Extremes that are finite are written exactly.
    nan.sample_weight = 1e300;
    nan.ttft_ms = Some(5e-324);
    let mut far = full_record();
    far.timestamp = chrono::Utc.with_ymd_and_hms(2300, 1, 1, 0, 0, 0).unwrap();
    let ok = AgentMetrics::new("openai", "gpt-4o");
    let err = sink
        .record_batch(&[nan.clone(), far, ok.clone()])
        .await
        .unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(
        err.records(),
        Some(&[1][..]),
        "only the out-of-range record fails: {err}"
    );
    assert!(err.message().contains("outside the range"), "{err}");

    let stored = by_request_id(db.points("llm_request").await);
    assert_eq!(stored.len(), 2);
    let p = &stored[&nan.request_id.to_string()];
    assert!(
        !p.contains_key("latency_ms") && !p.contains_key("cost_usd"),
        "NaN/Inf fields skipped: {p:?}"
    );
    let mut exp = expected(&nan, Precision::Nanoseconds);
    exp.remove("latency_ms");
    exp.remove("cost_usd");
    assert_point_eq(p, &exp, "nan record");
    assert_point_eq(
        &stored[&ok.request_id.to_string()],
        &expected(&ok, Precision::Nanoseconds),
        "ok record",
    );
    db.drop().await;
}

#[tokio::test]
async fn a_type_conflict_fails_only_the_conflicting_record_and_resends_nothing() {
    let Some(url) = server_url() else { return };
    let db = Db::create(&url, "conflict").await;
    // Someone else made `ttft_ms` a string in this measurement.
    let t0 = 1_700_000_000_000_000_000_i64;
    assert_eq!(
        db.write_raw(&format!("llm_request ttft_ms=\"other\" {t0}")).await,
        204
    );

    let sink = InfluxSink::new(InfluxSink::builder(&url).database(&db.name).build().unwrap()).unwrap();
    let fast = RetryPolicy::default().initial_backoff(Duration::from_millis(1));
    let collector = MetricsCollector::builder()
        .sink_with_options(sink, SinkOptions::default().batch_size(100).retry(fast))
        .build()
        .unwrap();
    let mut records = Vec::new();
    for i in 0..20u64 {
        let mut m = AgentMetrics::new("openai", "gpt-4o-mini").with_tokens(i, i);
        m.timestamp = chrono::Utc.timestamp_nanos(t0 + 1_000 + i as i64);
        if i == 7 {
            m.method = Method::Stream;
            m.ttft_ms = Some(42.0); // a float where the server has a string
        }
        records.push(m);
    }
    for m in &records {
        collector.record(m.clone());
    }
    collector.flush().await;
    let s = collector.stats();
    let s = s.sink("influxdb").unwrap();
    assert_eq!(s.delivered, 19, "{s}");
    assert_eq!(s.failed.rejected, 1, "{s}");
    assert_eq!(s.failed.retries_exhausted, 0, "{s}");
    assert_eq!(s.retried, 0, "{s}");

    let stored = by_request_id(db.points("llm_request").await);
    assert_eq!(
        stored.len(),
        19,
        "the 19 good records (the foreign point has no request_id)"
    );
    for (i, m) in records.iter().enumerate() {
        assert_eq!(
            stored.contains_key(&m.request_id.to_string()),
            i != 7,
            "record {i}"
        );
    }
    // The server saw each good point exactly once: nothing was resent.
    let (ok, dropped) = db.shard_points().await;
    assert_eq!((ok, dropped), (1 + 19, 1));
    db.drop().await;
}

#[tokio::test]
async fn a_missing_database_is_a_clear_permanent_error() {
    let Some(url) = server_url() else { return };
    let name = format!("steer_missing_{}", std::process::id());
    let sink = InfluxSink::new(InfluxSink::builder(&url).database(&name).build().unwrap()).unwrap();
    let batch = steer_metrics::testkit::synthetic(5, 1);
    let err = sink.record_batch(&batch).await.unwrap_err();
    assert!(err.is_misconfigured(), "{err}");
    assert_eq!(err.records(), Some(&[0, 1, 2, 3, 4][..]));
    assert!(
        err.message()
            .contains(&format!("database \"{name}\" does not exist")),
        "{err}"
    );

    // Through a collector: failed at once as misconfigured (the sink, not
    // the data, is wrong), never retried, counted.
    let collector = MetricsCollector::builder().sink(sink).build().unwrap();
    for m in batch {
        collector.record(m);
    }
    collector.flush().await;
    let s = collector.stats();
    let s = s.sink("influxdb").unwrap();
    assert_eq!(
        (s.delivered, s.failed.misconfigured, s.failed.rejected, s.retried),
        (0, 5, 0, 0),
        "{s}"
    );
}

#[tokio::test]
async fn batches_split_by_lines_and_bytes_all_arrive_once() {
    let Some(url) = server_url() else { return };
    let db = Db::create(&url, "split").await;
    let sink = InfluxSink::new(
        InfluxSink::builder(&url)
            .database(&db.name)
            .max_lines_per_request(7)
            .max_bytes_per_request(2_000)
            .gzip(true)
            .build()
            .unwrap(),
    )
    .unwrap();
    let batch = steer_metrics::testkit::synthetic(100, 3);
    sink.record_batch(&batch).await.unwrap();
    let stored = by_request_id(db.points("llm_request").await);
    assert_eq!(stored.len(), 100);
    for m in &batch {
        assert_point_eq(
            &stored[&m.request_id.to_string()],
            &expected(m, Precision::Nanoseconds),
            "split",
        );
    }
    assert_eq!(db.shard_points().await, (100, 0));
    db.drop().await;
}

/// Characters that line protocol has to escape or cannot carry, plus
/// unicode and control characters.
const NASTY: &[char] = &[
    'a', 'Z', '0', ' ', ',', '=', '\\', '\\', '\\', '"', '"', '\'', '\n', '\r', '\t', '#', '_', '-', 'é',
    '✓', 'ж', '字', '🚀', '\u{0}', '\u{1}', '\u{2028}', '\u{feff}',
];

fn nasty(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(NASTY), 0..max).prop_map(String::from_iter)
}

fn nasty_record() -> impl Strategy<Value = AgentMetrics> {
    (
        nasty(12),
        nasty(8),
        prop::collection::btree_map(nasty(6), nasty(8), 0..4),
        prop::option::of(nasty(24)),
        prop::option::of(nasty(10)),
    )
        .prop_map(|(model, provider, tags, message, response_model)| {
            let mut m = AgentMetrics::new(provider, model)
                .with_latency_ms(1.5)
                .with_tokens(3, 4);
            m.tags = tags;
            if message.is_some() {
                m.error_class = Some(ErrorClass::Unknown);
            }
            m.error_message = message;
            m.response_model = response_model;
            m
        })
}

#[test]
fn adversarial_strings_round_trip_through_the_real_server() {
    let Some(url) = server_url() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    // 8 cases of 6-8 records (about 56 records, one request per case) by
    // default; PROPTEST_CASES=N for a longer run.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(8);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (
        nasty(10).prop_filter("measurement must be writable", |s| {
            let n = normalize_measurement(s);
            !n.is_empty() && !n.starts_with('#')
        }),
        prop::collection::vec(nasty_record(), 6..=8),
    );
    let result = runner.run(&strategy, |(measurement, mut records)| {
        let base = chrono::Utc::now();
        for (i, m) in records.iter_mut().enumerate() {
            m.timestamp = base + chrono::Duration::nanoseconds(i as i64);
        }
        rt.block_on(async {
            // A database per case (and per shrink step).
            let db = Db::create(&url, "prop").await;
            let sink = InfluxSink::new(
                InfluxSink::builder(&url)
                    .database(&db.name)
                    .measurement(&measurement)
                    .build()
                    .unwrap(),
            )
            .unwrap();
            let written = sink.record_batch(&records).await;
            let measurements = db.measurements().await;
            let stored = by_request_id(db.all_points().await);
            db.drop().await;
            written.map_err(|e| TestCaseError::fail(format!("write failed: {e}")))?;
            prop_assert_eq!(
                measurements,
                vec![normalize_measurement(&measurement).into_owned()]
            );
            prop_assert_eq!(stored.len(), records.len());
            for m in &records {
                let got = stored
                    .get(&m.request_id.to_string())
                    .ok_or_else(|| TestCaseError::fail("point missing"))?;
                let exp = expected(m, Precision::Nanoseconds);
                let keys_a: Vec<_> = got.keys().collect();
                let keys_e: Vec<_> = exp.keys().collect();
                prop_assert_eq!(keys_a, keys_e, "columns of {:?}", m);
                for (k, e) in &exp {
                    if e.is_string() {
                        prop_assert_eq!(&got[k], e, "column {:?} of {:?}", k, m);
                    }
                }
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[tokio::test]
async fn placement_options_round_trip() {
    use steer_sink_influxdb::Placement;
    let Some(url) = server_url() else { return };
    let db = Db::create(&url, "placement").await;
    let sink = InfluxSink::new(
        InfluxSink::builder(&url)
            .database(&db.name)
            .measurement("placed")
            .tags(&[Attribute::Model, Attribute::ResponseModel])
            .place(Attribute::UserTags, Placement::Field)
            .place(Attribute::TraceId, Placement::Omit)
            .place(Attribute::SampleWeight, Placement::Omit)
            .user_tag_prefix("u_")
            .build()
            .unwrap(),
    )
    .unwrap();
    let m = full_record().with_tag("time", "t, \"q\"\n");
    sink.record(&m).await.unwrap();
    let points = db.points("placed").await;
    assert_eq!(points.len(), 1);
    let p = &points[0];
    // Tags now: model and response_model only; the rest became fields.
    let tags = db.query_raw(Some(&db.name), "SHOW TAG KEYS FROM placed").await;
    let tag_keys: Vec<&str> = tags["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[0].as_str().unwrap())
        .collect();
    assert_eq!(tag_keys, ["model", "response_model"]);
    assert_eq!(p["model"], json!("claude-sonnet-4-5"));
    assert_eq!(p["response_model"], json!("claude-sonnet-4-5-20250929"));
    assert_eq!(p["provider"], json!("anthropic"));
    assert_eq!(p["status"], json!("error"));
    assert_eq!(p["error_class"], json!("rate_limit"));
    // User tags as string fields under the prefix, values exact.
    assert_eq!(p["u_team"], json!("search"));
    assert_eq!(p["u_region"], json!("eu west"));
    assert_eq!(p["u_time"], json!("t, \"q\"\n"));
    assert!(
        !p.contains_key("trace_id") && !p.contains_key("sample_weight"),
        "{p:?}"
    );
    db.drop().await;
}
