//! The OTLP sink against a capture server: every record counted, valid protobuf.

use super::common::*;

async fn otlp(cases: Vec<Case>) {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    use prost::Message;
    let cap = CaptureServer::start(200, "application/x-protobuf", "").await;
    let sink = steer_sink_otlp::OtlpSink::builder()
        .endpoint(&cap.url)
        .export_interval(Duration::from_secs(3600))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (s, _collector) = drive(sink, &cases).await;
    let reqs = cap.requests();
    assert!(!reqs.is_empty(), "[otlp] no export arrived");
    // Cumulative temporality: the last export holds the totals.
    let last =
        ExportMetricsServiceRequest::decode(&reqs.last().unwrap().body[..]).expect("[otlp] valid protobuf");
    use opentelemetry_proto::tonic::common::v1::any_value;
    let mut requests = 0.0;
    let mut models = HashSet::new();
    let mut got_models: BTreeMap<String, f64> = BTreeMap::new();
    for rm in &last.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                if m.name == "steer.llm.cost" {
                    if let Some(Data::Sum(sum)) = &m.data {
                        for p in &sum.data_points {
                            if let Some(Value::AsDouble(d)) = p.value {
                                assert!(d.is_finite(), "[otlp] a cost counter is no longer a number: {d}");
                            }
                        }
                    }
                }
                if m.name != "steer.llm.requests" {
                    continue;
                }
                let Some(Data::Sum(sum)) = &m.data else {
                    panic!("[otlp] requests is not a sum")
                };
                for p in &sum.data_points {
                    requests += match p.value {
                        Some(Value::AsDouble(d)) => d,
                        Some(Value::AsInt(i)) => i as f64,
                        None => 0.0,
                    };
                    let v = match p.value {
                        Some(Value::AsDouble(d)) => d,
                        Some(Value::AsInt(i)) => i as f64,
                        None => 0.0,
                    };
                    for kv in &p.attributes {
                        if kv.key == "gen_ai.request.model" {
                            models.insert(format!("{:?}", kv.value));
                            if let Some(any_value::Value::StringValue(m)) =
                                kv.value.as_ref().and_then(|v| v.value.as_ref())
                            {
                                *got_models.entry(m.clone()).or_default() += v;
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!(
        "[otlp] steer.llm.requests total {requests}, {} distinct models",
        models.len()
    );
    assert_no_exhaustion(&s);
    assert_eq!(
        requests, s.delivered as f64,
        "[otlp] request counter vs delivered: {s:?}"
    );
    let mut want_models: BTreeMap<String, f64> = BTreeMap::new();
    for c in &cases {
        *want_models
            .entry(steer_sink_otlp::instruments::attribute_value(&c.record.model))
            .or_default() += 1.0;
    }
    assert_eq!(
        got_models, want_models,
        "[otlp] requests per gen_ai.request.model"
    );
    assert_eq!(
        s.delivered,
        cases.len() as u64,
        "[otlp] in-memory instruments accept every record: {s:?}"
    );
}

// ------------------------------------------------------------ prometheus

/// The unescaped value of label `name` in one exposition line.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_counts_every_record_and_exports_valid_protobuf() {
    otlp(corpus(7)).await;
}

/// Was bug 4: u64::MAX token counts overflowed the SDK's u64 histogram sum
/// (a panic in debug builds that killed the collector worker, a wrapped sum
/// in release).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_max_tokens_never_overflow_the_sdk_histogram() {
    otlp(corpus_only(7, &[Category::MaxTokens])).await;
}

/// Was bug 5: two 1e308 costs in one series summed to +Inf and the
/// steer.llm.cost counter stayed +Inf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_huge_costs_keep_the_cost_counter_finite() {
    otlp(corpus_only(7, &[Category::HugeFloats])).await;
}
