//! The sink against a local OTLP/HTTP capture server that decodes every
//! request body with the official protobuf types (there is no collector
//! package on the test machines; see TESTING-SERVICES.md).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicU16, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point, HistogramDataPoint, Metric};
use prost::Message;
use steer_metrics::{AgentMetrics, ErrorClass, Method, MetricsCollector, MetricsSink, SinkErrorKind};
use steer_sink_otlp::instruments::{DURATION_BUCKETS, TOKEN_BUCKETS, TTFC_BUCKETS};
use steer_sink_otlp::{MeterProvider, OtlpSink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------- capture

#[derive(Debug, Clone)]
struct Captured {
    path: String,
    content_type: Option<String>,
    encoding: Option<String>,
    request: ExportMetricsServiceRequest,
}

#[derive(Clone)]
struct Capture {
    url: String,
    requests: Arc<Mutex<Vec<Captured>>>,
    status: Arc<AtomicU16>,
}

impl Capture {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cap = Capture {
            url,
            requests: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
        };
        let c = cap.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let c = c.clone();
                tokio::spawn(async move {
                    let _ = c.serve(stream).await;
                });
            }
        });
        cap
    }

    async fn serve(&self, mut s: TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::new();
        loop {
            // Headers.
            let head_end = loop {
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break p + 4;
                }
                let mut chunk = [0u8; 8192];
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let mut lines = head.split("\r\n");
            let path = lines.next().unwrap().split(' ').nth(1).unwrap().to_string();
            let mut headers = BTreeMap::new();
            for l in lines.filter(|l| !l.is_empty()) {
                let (k, v) = l.split_once(':').unwrap();
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
            let len: usize = headers["content-length"].parse().unwrap();
            while buf.len() < head_end + len {
                let mut chunk = [0u8; 65536];
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body: Vec<u8> = buf[head_end..head_end + len].to_vec();
            buf.drain(..head_end + len);
            let encoding = headers.get("content-encoding").cloned();
            let raw = if encoding.as_deref() == Some("gzip") {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            } else {
                body
            };
            let request = ExportMetricsServiceRequest::decode(&raw[..]).expect("a valid OTLP protobuf body");
            self.requests.lock().unwrap().push(Captured {
                path,
                content_type: headers.get("content-type").cloned(),
                encoding,
                request,
            });
            let status = self.status.load(SeqCst);
            let reason = if status == 200 { "OK" } else { "Error" };
            let resp = format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
            );
            s.write_all(resp.as_bytes()).await?;
        }
    }

    fn last(&self) -> Captured {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("an export arrived")
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

// ---------------------------------------------------------------- decoding helpers

fn str_attrs(attrs: &[KeyValue]) -> BTreeMap<String, String> {
    attrs
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                // A string array (gen_ai.response.finish_reasons) as `[a,b]`.
                Some(any_value::Value::ArrayValue(a)) => {
                    let items: Vec<String> = a
                        .values
                        .iter()
                        .map(|v| match &v.value {
                            Some(any_value::Value::StringValue(s)) => s.clone(),
                            other => panic!("attribute {} has a non-string item: {other:?}", kv.key),
                        })
                        .collect();
                    format!("[{}]", items.join(","))
                }
                other => panic!("attribute {} is not a string: {other:?}", kv.key),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn metrics(req: &ExportMetricsServiceRequest) -> BTreeMap<String, Metric> {
    let mut out = BTreeMap::new();
    for rm in &req.resource_metrics {
        for sm in &rm.scope_metrics {
            assert_eq!(sm.scope.as_ref().unwrap().name, "steer");
            for m in &sm.metrics {
                assert!(
                    out.insert(m.name.clone(), m.clone()).is_none(),
                    "{} twice",
                    m.name
                );
            }
        }
    }
    out
}

fn hist_points(m: &Metric) -> Vec<HistogramDataPoint> {
    match &m.data {
        Some(Data::Histogram(h)) => {
            assert_eq!(h.aggregation_temporality, 2, "cumulative");
            h.data_points.clone()
        }
        other => panic!("{} is not a histogram: {other:?}", m.name),
    }
}

/// Sum points: attributes -> value.
fn sum_points(m: &Metric) -> Vec<(BTreeMap<String, String>, f64)> {
    match &m.data {
        Some(Data::Sum(s)) => {
            assert!(s.is_monotonic, "{} is a counter", m.name);
            assert_eq!(s.aggregation_temporality, 2);
            s.data_points
                .iter()
                .map(|p| {
                    let v = match p.value {
                        Some(number_data_point::Value::AsDouble(d)) => d,
                        Some(number_data_point::Value::AsInt(i)) => i as f64,
                        None => panic!("no value"),
                    };
                    (str_attrs(&p.attributes), v)
                })
                .collect()
        }
        other => panic!("{} is not a sum: {other:?}", m.name),
    }
}

fn hist_for<'a>(points: &'a [HistogramDataPoint], want: &[(&str, &str)]) -> &'a HistogramDataPoint {
    let want: BTreeMap<String, String> = want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let found: Vec<_> = points
        .iter()
        .filter(|p| str_attrs(&p.attributes) == want)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one point with {want:?}; points: {:?}",
        points
            .iter()
            .map(|p| str_attrs(&p.attributes))
            .collect::<Vec<_>>()
    );
    found[0]
}

fn sum_for(points: &[(BTreeMap<String, String>, f64)], want: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let found: Vec<_> = points.iter().filter(|(a, _)| *a == want).collect();
    assert_eq!(found.len(), 1, "one point with {want:?}; points: {points:?}");
    found[0].1
}

fn with(
    base: &[(&'static str, &'static str)],
    extra: &[(&'static str, &'static str)],
) -> Vec<(&'static str, &'static str)> {
    base.iter().chain(extra).copied().collect()
}

// ---------------------------------------------------------------- workload

fn success(latency_ms: f64, input: u64) -> AgentMetrics {
    let mut m = AgentMetrics::new("openai", "gpt-4o")
        .with_latency_ms(latency_ms)
        .with_tokens(input, 10);
    m.response_model = Some("gpt-4o-2024-08-06".into());
    m.cost_usd = Some(0.01);
    m
}

/// 8 successes of gpt-4o (7 with a cost), one streamed gpt-4o-mini call of
/// weight 3, and three failures of claude-sonnet-4-5.
fn workload() -> Vec<AgentMetrics> {
    let lat = [5.0, 10.0, 15.0, 100.0, 640.0, 641.0, 3000.0, 90_000.0];
    let input = [0, 1, 4, 5, 16, 17, 1024, 70_000_000];
    let mut v: Vec<AgentMetrics> = lat.iter().zip(input).map(|(l, i)| success(*l, i)).collect();
    v[7].cost_usd = None;

    let mut s = AgentMetrics::new("openai", "gpt-4o-mini")
        .with_latency_ms(1200.0)
        .with_tokens(100, 50);
    s.method = Method::Stream;
    s.ttft_ms = Some(250.0);
    s.sample_weight = 3.0;
    s.cost_usd = Some(0.002);
    v.push(s);

    for (class, ms) in [
        (ErrorClass::RateLimit, 200.0),
        (ErrorClass::RateLimit, 200.0),
        (ErrorClass::Timeout, 30_000.0),
    ] {
        v.push(
            AgentMetrics::new("anthropic", "claude-sonnet-4-5")
                .with_latency_ms(ms)
                .with_error(class),
        );
    }
    v
}

const GPT4O: [(&str, &str); 5] = [
    ("gen_ai.operation.name", "chat"),
    ("gen_ai.provider.name", "openai"),
    ("gen_ai.request.model", "gpt-4o"),
    ("gen_ai.response.model", "gpt-4o-2024-08-06"),
    ("server.address", "api.openai.com"),
];
const MINI: [(&str, &str); 4] = [
    ("gen_ai.operation.name", "chat"),
    ("gen_ai.provider.name", "openai"),
    ("gen_ai.request.model", "gpt-4o-mini"),
    ("server.address", "api.openai.com"),
];
const CLAUDE: [(&str, &str); 4] = [
    ("gen_ai.operation.name", "chat"),
    ("gen_ai.provider.name", "anthropic"),
    ("gen_ai.request.model", "claude-sonnet-4-5"),
    ("server.address", "api.openai.com"),
];

fn sink_for(cap: &Capture) -> steer_sink_otlp::OtlpSinkBuilder {
    OtlpSink::builder()
        .endpoint(&cap.url)
        .service_name("otlp-test")
        .server_address("api.openai.com")
        .export_interval(Duration::from_secs(3600))
        .timeout(Duration::from_secs(5))
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_workload_arrives_with_exact_names_units_attributes_buckets_and_sums() {
    let cap = Capture::start().await;
    let sink = sink_for(&cap).header("x-api-key", "k-123").build().unwrap();
    let collector = MetricsCollector::builder().sink(sink.clone()).build().unwrap();
    for m in workload() {
        collector.record(m);
    }
    let report = collector.flush().await;
    assert!(
        report.is_complete() && report.problems().next().is_none(),
        "{report}"
    );
    assert_eq!(sink.stats().records, 12);

    let got = cap.last();
    assert_eq!(got.path, "/v1/metrics");
    assert_eq!(got.content_type.as_deref(), Some("application/x-protobuf"));
    assert_eq!(got.encoding.as_deref(), Some("gzip"), "gzip by default");
    let res = str_attrs(
        &got.request.resource_metrics[0]
            .resource
            .as_ref()
            .unwrap()
            .attributes,
    );
    assert_eq!(res["service.name"], "otlp-test");

    let ms = metrics(&got.request);
    let names: Vec<&str> = ms.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "gen_ai.client.operation.duration",
            "gen_ai.client.operation.time_to_first_chunk",
            "gen_ai.client.token.usage",
            "steer.llm.cost",
            "steer.llm.errors",
            "steer.llm.requests",
        ]
    );
    let units: Vec<&str> = ms.values().map(|m| m.unit.as_str()).collect();
    assert_eq!(units, ["s", "s", "{token}", "USD", "{error}", "{request}"]);

    // Duration: gpt-4o, 8 calls, bucket i counts (b[i-1], b[i]].
    let dur = hist_points(&ms["gen_ai.client.operation.duration"]);
    assert_eq!(
        dur.len(),
        4,
        "gpt-4o, gpt-4o-mini, claude/rate_limit, claude/timeout"
    );
    let p = hist_for(&dur, &GPT4O);
    assert_eq!(p.explicit_bounds, DURATION_BUCKETS.to_vec());
    assert_eq!(p.count, 8);
    assert_eq!(p.bucket_counts, vec![2, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0, 0, 0, 0, 1]);
    assert!((p.sum.unwrap() - 94.411).abs() < 1e-9, "{:?}", p.sum);
    assert_eq!((p.min, p.max), (Some(0.005), Some(90.0)));
    // Weight 3: recorded three times.
    let p = hist_for(&dur, &MINI);
    assert_eq!(p.count, 3);
    assert!((p.sum.unwrap() - 3.6).abs() < 1e-9);
    assert_eq!(p.bucket_counts[7], 3, "1.2 s is in (0.64, 1.28]");
    // Failures carry error.type and are in the duration histogram.
    let p = hist_for(&dur, &with(&CLAUDE, &[("error.type", "rate_limit")]));
    assert_eq!((p.count, p.bucket_counts[5]), (2, 2));
    let p = hist_for(&dur, &with(&CLAUDE, &[("error.type", "timeout")]));
    assert_eq!(
        (p.count, p.bucket_counts[12]),
        (1, 1),
        "30 s is in (20.48, 40.96]"
    );

    // Token usage by type; none for the failures (no tokens reported).
    let tok = hist_points(&ms["gen_ai.client.token.usage"]);
    assert_eq!(tok.len(), 4);
    let p = hist_for(&tok, &with(&GPT4O, &[("gen_ai.token.type", "input")]));
    assert_eq!(p.explicit_bounds, TOKEN_BUCKETS.to_vec());
    assert_eq!(p.bucket_counts, vec![2, 1, 2, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!((p.count, p.sum), (8, Some(70_001_067.0)));
    let p = hist_for(&tok, &with(&GPT4O, &[("gen_ai.token.type", "output")]));
    assert_eq!((p.count, p.sum, p.bucket_counts[2]), (8, Some(80.0), 8));
    let p = hist_for(&tok, &with(&MINI, &[("gen_ai.token.type", "input")]));
    assert_eq!((p.count, p.sum), (3, Some(300.0)));
    let p = hist_for(&tok, &with(&MINI, &[("gen_ai.token.type", "output")]));
    assert_eq!((p.count, p.sum), (3, Some(150.0)));

    // Time to first chunk: only the streamed call.
    let ttfc = hist_points(&ms["gen_ai.client.operation.time_to_first_chunk"]);
    assert_eq!(ttfc.len(), 1);
    let p = hist_for(&ttfc, &MINI);
    assert_eq!(p.explicit_bounds, TTFC_BUCKETS.to_vec());
    assert_eq!(
        (p.count, p.sum, p.bucket_counts[8]),
        (3, Some(0.75), 3),
        "0.25 s is in (0.1, 0.25]"
    );

    // Counters: weights added.
    let req = sum_points(&ms["steer.llm.requests"]);
    assert_eq!(sum_for(&req, &GPT4O), 8.0);
    assert_eq!(sum_for(&req, &MINI), 3.0);
    assert_eq!(
        sum_for(&req, &with(&CLAUDE, &[("error.type", "rate_limit")])),
        2.0
    );
    assert_eq!(sum_for(&req, &with(&CLAUDE, &[("error.type", "timeout")])), 1.0);
    let err = sum_points(&ms["steer.llm.errors"]);
    assert_eq!(err.len(), 2, "only failures count as errors");
    assert_eq!(
        sum_for(&err, &with(&CLAUDE, &[("error.type", "rate_limit")])),
        2.0
    );
    let cost = sum_points(&ms["steer.llm.cost"]);
    assert_eq!(cost.len(), 2, "unknown costs are not counted");
    assert!((sum_for(&cost, &GPT4O) - 0.07).abs() < 1e-12);
    assert!((sum_for(&cost, &MINI) - 0.006).abs() < 1e-12);

    collector.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_export_is_reported_by_flush_and_recovered_by_the_next() {
    let cap = Capture::start().await;
    let sink = sink_for(&cap).gzip(false).build().unwrap();
    cap.status.store(503, SeqCst);
    sink.record_batch(&[success(100.0, 1), success(200.0, 1)])
        .await
        .unwrap();
    let err = sink.flush().await.unwrap_err();
    assert_eq!(err.kind(), SinkErrorKind::Retryable);
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(sink.stats().exports_failed, 1);

    // Through the collector the failure shows in the flush report.
    let collector = MetricsCollector::builder().sink(sink.clone()).build().unwrap();
    collector.record(success(300.0, 1));
    let report = collector.flush().await;
    let problem = report.problems().next().expect("the failed export is reported");
    assert!(problem.error.as_deref().unwrap().contains("503"), "{report}");

    // The collector comes back: cumulative totals carry everything.
    cap.status.store(200, SeqCst);
    sink.flush().await.unwrap();
    let got = cap.last();
    assert_eq!(got.encoding, None, "gzip off");
    let dur = hist_points(&metrics(&got.request)["gen_ai.client.operation.duration"]);
    assert_eq!(hist_for(&dur, &GPT4O).count, 3, "nothing lost");
    assert_eq!(sink.stats().exports_succeeded, 1);

    // A 400 means the collector refuses the data: permanent.
    cap.status.store(400, SeqCst);
    let e = sink.flush().await.unwrap_err();
    assert!(e.is_permanent(), "{e}");
    cap.status.store(200, SeqCst);
    collector.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_exports_a_last_time_and_later_records_are_refused() {
    let cap = Capture::start().await;
    let sink = sink_for(&cap).build().unwrap();
    sink.record_batch(&[success(100.0, 1)]).await.unwrap();
    assert_eq!(cap.count(), 0, "recording does not export");
    sink.close().await.unwrap();
    assert_eq!(cap.count(), 1, "shutdown exported");
    assert!(sink
        .record_batch(&[success(1.0, 1)])
        .await
        .unwrap_err()
        .is_permanent());
    sink.flush().await.unwrap();
    sink.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_export_happens_without_flush() {
    let cap = Capture::start().await;
    let sink = sink_for(&cap)
        .export_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    sink.record_batch(&[success(100.0, 1)]).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cap.count() == 0 {
        assert!(std::time::Instant::now() < deadline, "no periodic export");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dur = hist_points(&metrics(&cap.last().request)["gen_ai.client.operation.duration"]);
    assert_eq!(dur[0].count, 1);
    sink.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaches_to_the_users_meter_provider_without_shutting_it_down() {
    let cap = Capture::start().await;
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/metrics", cap.url))
        .build()
        .unwrap();
    let provider = MeterProvider::builder()
        .with_reader(
            opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
                .with_interval(Duration::from_secs(3600))
                .build(),
        )
        .build();
    let sink = OtlpSink::builder().name("mine").attach(provider.clone());
    assert_eq!(sink.name(), "mine");
    sink.record_batch(&[success(100.0, 1)]).await.unwrap();
    sink.close().await.unwrap();
    assert_eq!(cap.count(), 1, "close flushed the user's provider");
    // The provider is still the user's and still works.
    provider.force_flush().unwrap();
    assert_eq!(cap.count(), 2);
    let dur = hist_points(&metrics(&cap.last().request)["gen_ai.client.operation.duration"]);
    assert_eq!(dur[0].count, 1);
    assert_eq!(
        dur[0].explicit_bounds,
        DURATION_BUCKETS.to_vec(),
        "advisory buckets apply in the user's provider"
    );
    assert!(
        !str_attrs(&dur[0].attributes).contains_key("server.address"),
        "server.address only when configured"
    );
    provider.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_beyond_the_cap_fold_into_other() {
    let cap = Capture::start().await;
    let sink = sink_for(&cap).max_series(2).build().unwrap();
    let batch: Vec<_> = (0..5)
        .map(|i| AgentMetrics::new("openai", format!("m{i}")).with_latency_ms(10.0))
        .collect();
    sink.record_batch(&batch).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(sink.stats().folded_records, 3);
    let req = sum_points(&metrics(&cap.last().request)["steer.llm.requests"]);
    let mut models: Vec<(String, f64)> = req
        .iter()
        .map(|(a, v)| (a["gen_ai.request.model"].clone(), *v))
        .collect();
    models.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        models,
        [("m0".into(), 1.0), ("m1".into(), 1.0), ("other".into(), 3.0)]
    );
    sink.close().await.unwrap();
}

/// u64::MAX token counts used to overflow the SDK's `u64` histogram sum (a
/// panic in debug builds), and two 1e308 costs made the cost counter +Inf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implausible_values_are_skipped_so_sums_stay_exact_and_finite() {
    use steer_sink_otlp::instruments::MAX_TOKENS;
    let cap = Capture::start().await;
    let sink = sink_for(&cap).build().unwrap();
    let mut huge = success(10.0, u64::MAX);
    huge.output_tokens = u64::MAX;
    huge.cost_usd = Some(1e308);
    huge.latency_ms = 1e308;
    let mut also = huge.clone();
    also.input_tokens = MAX_TOKENS + 1;
    let mut max = success(20.0, MAX_TOKENS);
    max.cost_usd = Some(1e9);
    let batch = vec![huge, also, success(30.0, 7), max];
    sink.record_batch(&batch).await.unwrap();
    sink.flush().await.unwrap();
    let st = sink.stats();
    assert_eq!(st.records, 4, "every record is counted");
    // Per huge record: latency, cost, input and output tokens.
    assert_eq!(st.invalid_values, 8, "{st:?}");

    let m = metrics(&cap.last().request);
    let base = [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.request.model", "gpt-4o"),
        ("gen_ai.response.model", "gpt-4o-2024-08-06"),
        ("server.address", "api.openai.com"),
    ];
    let cost = sum_for(&sum_points(&m["steer.llm.cost"]), &base);
    assert_eq!(cost, 0.01 + 1e9, "only the plausible costs");
    assert_eq!(sum_for(&sum_points(&m["steer.llm.requests"]), &base), 4.0);
    let tok = hist_points(&m["gen_ai.client.token.usage"]);
    let input = hist_for(&tok, &with(&base, &[("gen_ai.token.type", "input")]));
    assert_eq!(input.count, 2);
    assert_eq!(input.sum, Some((7 + MAX_TOKENS) as f64));
    let output = hist_for(&tok, &with(&base, &[("gen_ai.token.type", "output")]));
    assert_eq!(output.count, 2);
    assert_eq!(output.sum, Some(20.0));
    let dur = hist_points(&m["gen_ai.client.operation.duration"]);
    let d = hist_for(&dur, &base);
    assert_eq!(d.count, 2, "1e308 ms is not a duration");

    sink.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_errors_and_debug() {
    // Nothing listens here: the export fails with a connection error.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    // Credentials in the URL are refused (HTTP client logs would show the
    // URL), without repeating them.
    let err = OtlpSink::builder()
        .endpoint(format!("http://user:pw-s3cret@{addr}"))
        .build()
        .unwrap_err();
    assert!(matches!(err, steer_sink_otlp::ConfigError::CredentialsInUrl));
    assert!(!format!("{err} {err:?}").contains("pw-s3cret"));
    let sink = OtlpSink::builder()
        .endpoint(format!("http://{addr}"))
        .header("authorization", "Bearer sk-secret-9")
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    sink.record_batch(&[success(1.0, 1)]).await.unwrap();
    let err = sink.flush().await.unwrap_err();
    assert_eq!(err.kind(), SinkErrorKind::Retryable);
    let text = format!("{err} {err:?} {:?} {sink:?}", sink.stats());
    assert!(
        !text.contains("pw-s3cret") && !text.contains("sk-secret-9"),
        "{text}"
    );
    sink.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_url_is_the_cli_spec() {
    let cap = Capture::start().await;
    let sink = OtlpSink::from_url(&cap.url).unwrap();
    assert_eq!(sink.name(), "otlp");
    sink.record_batch(&[success(1.0, 1)]).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(cap.last().path, "/v1/metrics");
    sink.close().await.unwrap();
    assert!(OtlpSink::from_url("127.0.0.1:4318").is_err());
}

/// The finish reason arrives as the conventions' string array
/// `gen_ai.response.finish_reasons` on every instrument, allow-listed tags
/// (`?tags=` of the spec) as attributes, and the `tags` parameter never
/// reaches the collector's URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_reason_and_allow_listed_tags_arrive_as_attributes() {
    let cap = Capture::start().await;
    let sink = OtlpSink::from_url(&format!("{}?tags=user,team", cap.url)).unwrap();
    let rec = |finish: Option<&str>, tags: &[(&str, &str)], input: u64| {
        let mut m = AgentMetrics::new("anthropic", "claude-opus-4-7")
            .with_latency_ms(100.0)
            .with_tokens(input, 7);
        m.finish_reason = finish.map(String::from);
        m.cost_usd = Some(0.5);
        for (k, v) in tags {
            m.tags.insert(k.to_string(), v.to_string());
        }
        m
    };
    sink.record_batch(&[
        rec(Some("end_turn"), &[("user", "alice"), ("team", "search")], 10),
        rec(Some("end_turn"), &[("user", "alice"), ("team", "search")], 20),
        rec(
            Some("max_tokens"),
            &[("user", "alice"), ("team", "search"), ("feature", "x")],
            30,
        ),
        rec(None, &[("user", "bob")], 40),
    ])
    .await
    .unwrap();
    sink.flush().await.unwrap();
    let got = cap.last();
    assert_eq!(got.path, "/v1/metrics", "the tags parameter is not sent");
    let ms = metrics(&got.request);
    let base = [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "anthropic"),
        ("gen_ai.request.model", "claude-opus-4-7"),
    ];
    let alice_end = with(
        &base,
        &[
            ("gen_ai.response.finish_reasons", "[end_turn]"),
            ("user", "alice"),
            ("team", "search"),
        ],
    );
    let alice_max = with(
        &base,
        &[
            ("gen_ai.response.finish_reasons", "[max_tokens]"),
            ("user", "alice"),
            ("team", "search"),
        ],
    );
    let bob = with(&base, &[("user", "bob")]);
    let req = sum_points(&ms["steer.llm.requests"]);
    assert_eq!(req.len(), 3, "{req:?}");
    assert_eq!(sum_for(&req, &alice_end), 2.0);
    assert_eq!(sum_for(&req, &alice_max), 1.0);
    assert_eq!(
        sum_for(&req, &bob),
        1.0,
        "no finish reason, no team: no such attributes"
    );
    assert_eq!(sum_for(&sum_points(&ms["steer.llm.cost"]), &alice_end), 1.0);
    let dur = hist_points(&ms["gen_ai.client.operation.duration"]);
    assert_eq!(hist_for(&dur, &alice_max).count, 1);
    let tokens = hist_points(&ms["gen_ai.client.token.usage"]);
    let input = hist_for(&tokens, &with(&alice_end, &[("gen_ai.token.type", "input")]));
    assert_eq!((input.count, input.sum), (2, Some(30.0)));
    assert_eq!(
        hist_for(&tokens, &with(&bob, &[("gen_ai.token.type", "output")])).sum,
        Some(7.0)
    );
    sink.close().await.unwrap();

    // Keys that would collide with a built-in, or are no label name, are refused.
    for bad in ["gen_ai.request.model", "error_type", "le", "1st", "__x"] {
        let e = OtlpSink::from_url(&format!("{}?tags=user,{bad}", cap.url)).unwrap_err();
        assert!(matches!(e, steer_sink_otlp::ConfigError::TagKey(_)), "{bad}: {e}");
    }
    assert!(matches!(
        OtlpSink::builder().tag_attributes(["server.address"]),
        Err(steer_sink_otlp::ConfigError::TagKey(
            steer_sink_otlp::TagKeyError::Reserved { .. }
        ))
    ));
}

mod adversarial {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        /// Odd model and provider names (unicode, quotes, backslashes,
        /// newlines, braces, `=`, empty) arrive verbatim.
        #[test]
        fn odd_names_round_trip_verbatim(
            model in prop_oneof![
                Just(String::new()),
                Just("a\"b\\c\nd{e}=f,g h".to_string()),
                "[\\PC\\n\\r\\t\"\\\\{}=,]{0,40}",
            ],
            provider in "[\\PC\\n\"\\\\{}=]{0,12}",
        ) {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async {
                let cap = Capture::start().await;
                let sink = sink_for(&cap).build().unwrap();
                let mut m = AgentMetrics::new(provider.clone(), model.clone()).with_latency_ms(5.0);
                m.response_model = Some(model.clone());
                sink.record_batch(&[m]).await.unwrap();
                sink.flush().await.unwrap();
                let req = sum_points(&metrics(&cap.last().request)["steer.llm.requests"]);
                assert_eq!(req.len(), 1);
                let want_provider = if provider == "xai" { "x_ai".to_string() } else { provider.clone() };
                assert_eq!(req[0].0["gen_ai.request.model"], model);
                assert_eq!(req[0].0["gen_ai.response.model"], model);
                assert_eq!(req[0].0["gen_ai.provider.name"], want_provider);
                sink.close().await.unwrap();
            });
        }
    }
}

#[cfg(feature = "grpc")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sink_builds_in_a_runtime_and_reports_an_unreachable_collector() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let sink = OtlpSink::builder()
        .protocol(steer_sink_otlp::Protocol::Grpc)
        .endpoint(url)
        .header("x-api-key", "grpc-secret")
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    sink.record_batch(&[success(1.0, 1)]).await.unwrap();
    let err = sink.flush().await.unwrap_err();
    assert_eq!(err.kind(), SinkErrorKind::Retryable, "{err}");
    assert!(!err.to_string().contains("grpc-secret"));
    assert_eq!(sink.stats().exports_failed, 1);
    sink.close().await.ok();
}
