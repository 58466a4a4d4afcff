//! Integration tests against a local capture server that behaves like
//! Datadog's intake where it matters: a count point written twice for the
//! same (metric, tags, host, timestamp) keeps the last value; distribution
//! values add up. Every accepted body is validated against Datadog's
//! official API models (scripts/validate_datadog_payload.py, run through
//! STEER_TEST_DD_VALIDATOR set by scripts/services/datadog.sh).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use steer_metrics::testkit::synthetic;
use steer_metrics::{AgentMetrics, MetricsCollector, MetricsSink, RetryPolicy, SinkErrorKind, SinkOptions};
use steer_sink_datadog::{Compression, DatadogSink, DatadogSinkBuilder, Mode};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "fake-dd-key-RECOGNISABLE-7f3a9c";

#[derive(Debug, Clone)]
struct Captured {
    path: String,
    encoding: Option<String>,
    api_key: Option<String>,
    wire_len: usize,
    json: String,
    status: u16,
    at: Instant,
}

/// The intake's answer: status and optional `Retry-After`.
type Reply = (u16, Option<&'static str>);
type Decide = dyn Fn(&Captured, usize) -> Reply + Send + Sync;

#[derive(Default)]
struct Intake {
    requests: Vec<Captured>,
    /// (metric, tags, host, ts) -> value, last write wins.
    counts: HashMap<(String, Vec<String>, String, i64), f64>,
    /// (metric, tags) -> every value received.
    dists: HashMap<(String, Vec<String>), Vec<f64>>,
}

#[derive(Clone)]
struct Capture {
    intake: Arc<Mutex<Intake>>,
    decide: Arc<Decide>,
}

fn decode(body: &[u8], enc: Option<&str>) -> String {
    let mut out = String::new();
    match enc {
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_string(&mut out)
                .unwrap();
        }
        Some("deflate") => {
            flate2::read::ZlibDecoder::new(body)
                .read_to_string(&mut out)
                .unwrap();
        }
        None => out = String::from_utf8(body.to_vec()).unwrap(),
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    }
    out
}

fn tags_of(s: &Value) -> Vec<String> {
    s["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

impl Respond for Capture {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let enc = req
            .headers
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_string());
        let mut c = Captured {
            path: req.url.path().to_string(),
            encoding: enc.clone(),
            api_key: req
                .headers
                .get("dd-api-key")
                .map(|v| v.to_str().unwrap().to_string()),
            wire_len: req.body.len(),
            json: decode(&req.body, enc.as_deref()),
            status: 0,
            at: Instant::now(),
        };
        let mut intake = self.intake.lock().unwrap();
        let n = intake.requests.len();
        let (status, retry_after) = (self.decide)(&c, n);
        let mut resp = ResponseTemplate::new(status).set_body_string(if status < 300 {
            "{\"errors\":[]}"
        } else {
            "{\"errors\":[\"refused\"]}"
        });
        if let Some(ra) = retry_after {
            resp = resp.insert_header("Retry-After", ra);
        }
        c.status = status;
        if (200..300).contains(&status) {
            let v: Value = serde_json::from_str(&c.json).unwrap();
            for s in v["series"].as_array().unwrap() {
                let metric = s["metric"].as_str().unwrap().to_string();
                let tags = tags_of(s);
                if c.path == "/api/v2/series" {
                    assert_eq!(s["type"], 1, "counts are type 1");
                    let host = s["resources"][0]["name"].as_str().unwrap_or("").to_string();
                    for p in s["points"].as_array().unwrap() {
                        let key = (
                            metric.clone(),
                            tags.clone(),
                            host.clone(),
                            p["timestamp"].as_i64().unwrap(),
                        );
                        intake.counts.insert(key, p["value"].as_f64().unwrap());
                    }
                } else {
                    assert_eq!(c.path, "/api/v1/distribution_points");
                    assert_eq!(s["type"], "distribution");
                    for p in s["points"].as_array().unwrap() {
                        let vals = p[1].as_array().unwrap().iter().map(|x| x.as_f64().unwrap());
                        intake
                            .dists
                            .entry((metric.clone(), tags.clone()))
                            .or_default()
                            .extend(vals);
                    }
                }
            }
        }
        intake.requests.push(c);
        resp
    }
}

fn ok() -> Reply {
    (202, None)
}

async fn intake_with(
    decide: impl Fn(&Captured, usize) -> Reply + Send + Sync + 'static,
) -> (MockServer, Capture) {
    let server = MockServer::start().await;
    let cap = Capture {
        intake: Arc::default(),
        decide: Arc::new(decide),
    };
    Mock::given(wiremock::matchers::any())
        .respond_with(cap.clone())
        .mount(&server)
        .await;
    (server, cap)
}

fn builder(server: &MockServer) -> DatadogSinkBuilder {
    DatadogSink::builder()
        .site(server.uri())
        .api_key(KEY)
        .host("test-host")
        .service("steer-tests")
        .env("ci")
}

/// Records spread over the last ~50 s (several 10 s intervals).
fn workload(n: usize, seed: u64) -> Vec<AgentMetrics> {
    let now = chrono::Utc::now();
    let mut v = synthetic(n, seed);
    for (i, m) in v.iter_mut().enumerate() {
        m.timestamp =
            now - chrono::Duration::seconds(50) + chrono::Duration::milliseconds((i * 40_000 / n) as i64);
        if i % 10 == 3 {
            m.sample_weight = 2.0;
        }
        if !m.is_error() {
            m.finish_reason = Some(if i % 7 == 0 { "length" } else { "stop" }.into());
        }
    }
    v
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(5))
}

/// Sum of the count points of `metric` whose tags contain all of `with`.
fn count_sum(cap: &Capture, metric: &str, with: &[&str]) -> f64 {
    let intake = cap.intake.lock().unwrap();
    intake
        .counts
        .iter()
        .filter(|((m, tags, _, _), _)| m == metric && with.iter().all(|w| tags.iter().any(|t| t == w)))
        .map(|(_, v)| *v)
        .sum()
}

fn dist_values(cap: &Capture, metric: &str, with: &[&str]) -> Vec<f64> {
    let intake = cap.intake.lock().unwrap();
    let mut v: Vec<f64> = intake
        .dists
        .iter()
        .filter(|((m, tags), _)| m == metric && with.iter().all(|w| tags.iter().any(|t| t == w)))
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn expected_values(records: &[AgentMetrics], f: impl Fn(&AgentMetrics) -> Option<f64>) -> Vec<f64> {
    let mut v: Vec<f64> = records
        .iter()
        .filter_map(|m| f(m).map(|x| (x, m.sample_weight.round() as usize)))
        .flat_map(|(x, w)| std::iter::repeat_n(x, w))
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn assert_multiset_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: number of values");
    for (g, w) in got.iter().zip(want) {
        assert!(((g - w) / w).abs() < 0.01, "{what}: {g} vs {w}");
    }
}

/// Check every count and distribution of the workload, per model.
fn assert_exact(cap: &Capture, records: &[AgentMetrics]) {
    let mut models: BTreeMap<&str, Vec<&AgentMetrics>> = BTreeMap::new();
    for m in records {
        models.entry(&m.model).or_default().push(m);
    }
    assert_eq!(models.len(), 10);
    for (model, recs) in &models {
        let mt = format!("model:{model}");
        let w = |f: &dyn Fn(&AgentMetrics) -> f64| recs.iter().map(|m| f(m) * m.sample_weight).sum::<f64>();
        let t = [mt.as_str()];
        assert_eq!(
            count_sum(cap, "steer.llm.requests", &t),
            w(&|_| 1.0),
            "requests {model}"
        );
        assert_eq!(
            count_sum(cap, "steer.llm.errors", &t),
            w(&|m| if m.is_error() { 1.0 } else { 0.0 }),
            "errors {model}"
        );
        for class in steer_metrics::ErrorClass::ALL {
            let ct = format!("error_class:{}", class.as_str());
            assert_eq!(
                count_sum(cap, "steer.llm.errors", &[mt.as_str(), ct.as_str()]),
                w(&|m| if m.error_class == Some(class) { 1.0 } else { 0.0 }),
                "errors {model} {class}"
            );
        }
        for (tt, f) in [
            (
                "token_type:input",
                (|m: &AgentMetrics| m.input_tokens as f64) as fn(&AgentMetrics) -> f64,
            ),
            ("token_type:output", |m| m.output_tokens as f64),
            ("token_type:cached", |m| m.cached_tokens as f64),
        ] {
            assert_eq!(
                count_sum(cap, "steer.llm.tokens", &[mt.as_str(), tt]),
                w(&f),
                "{tt} {model}"
            );
        }
        for reason in ["stop", "length"] {
            let ft = format!("finish_reason:{reason}");
            assert_eq!(
                count_sum(cap, "steer.llm.requests", &[mt.as_str(), ft.as_str()]),
                w(&|m| if m.finish_reason.as_deref() == Some(reason) {
                    1.0
                } else {
                    0.0
                }),
                "requests {model} finishing with {reason}"
            );
        }
        assert_eq!(
            count_sum(cap, "steer.llm.retries", &t),
            w(&|m| m.retries as f64),
            "retries {model}"
        );
        let cost = w(&|m| m.cost_usd.unwrap_or(0.0));
        assert!(
            (count_sum(cap, "steer.llm.cost_usd", &t) - cost).abs() < 1e-9 * cost.max(1.0),
            "cost {model}"
        );
        let recs_owned: Vec<AgentMetrics> = recs.iter().map(|m| (*m).clone()).collect();
        assert_multiset_close(
            &dist_values(cap, "steer.llm.latency", &t),
            &expected_values(&recs_owned, |m| Some(m.latency_ms)),
            "latency",
        );
        assert_multiset_close(
            &dist_values(cap, "steer.llm.ttft", &t),
            &expected_values(&recs_owned, |m| m.ttft_ms),
            "ttft",
        );
    }
}

/// Run the official-schema validator over `(kind, json)` bodies; `None`
/// when the validator is not configured (and that is allowed).
fn run_validator(bodies: &[(&str, String)]) -> Option<std::process::Output> {
    let Some(cmd) = std::env::var("STEER_TEST_DD_VALIDATOR")
        .ok()
        .filter(|s| !s.trim().is_empty())
    else {
        if std::env::var_os("STEER_REQUIRE_SERVICES").is_some() || std::env::var_os("CI").is_some() {
            panic!("STEER_TEST_DD_VALIDATOR is not set: source scripts/services/datadog.sh (install_datadog, start_datadog)");
        }
        eprintln!("SKIPPED schema validation: set STEER_TEST_DD_VALIDATOR (scripts/services/datadog.sh)");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut args = Vec::new();
    for (i, (kind, json)) in bodies.iter().enumerate() {
        let p = dir.path().join(format!("body-{i}.json"));
        std::fs::write(&p, json).unwrap();
        args.push(format!("{kind}:{}", p.display()));
    }
    let mut parts = cmd.split_whitespace();
    Some(
        std::process::Command::new(parts.next().unwrap())
            .args(parts)
            .args(&args)
            .output()
            .unwrap(),
    )
}

/// Validate every accepted body against Datadog's official API models.
fn validate_schema(cap: &Capture) {
    let bodies: Vec<(&str, String)> = cap
        .intake
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| (200..300).contains(&r.status))
        .map(|r| {
            let kind = if r.path == "/api/v2/series" {
                "series"
            } else {
                "distribution"
            };
            (kind, r.json.clone())
        })
        .collect();
    assert!(!bodies.is_empty());
    let Some(out) = run_validator(&bodies) else { return };
    assert!(
        out.status.success(),
        "schema validation failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok_lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("ok "))
        .count();
    assert_eq!(ok_lines, bodies.len());
}

#[test]
fn the_schema_validator_is_strict() {
    let good = r#"{"series":[{"metric":"m","type":1,"interval":10,"points":[{"timestamp":1,"value":2}],"tags":["a:b"]}]}"#;
    let bad = [
        (
            "series",
            r#"{"series":[{"metric":"m","type":7,"points":[{"timestamp":1,"value":2}]}]}"#,
        ),
        (
            "series",
            r#"{"series":[{"metric":"m","type":1,"points":[{"timestamp":1,"value":"x"}]}]}"#,
        ),
        (
            "series",
            r#"{"series":[{"metric":"m","type":1,"points":[{"timestamp":1,"value":2}],"extra":1}]}"#,
        ),
        (
            "distribution",
            r#"{"series":[{"metric":"m","points":[[1,["x"]]],"type":"distribution"}]}"#,
        ),
        (
            "distribution",
            r#"{"series":[{"metric":"m","points":[[1,[2]]],"type":"histogram"}]}"#,
        ),
        ("distribution", good),
    ];
    let Some(out) = run_validator(&[("series", good.to_string())]) else {
        return;
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (kind, body) in bad {
        let out = run_validator(&[(kind, body.to_string())]).unwrap();
        assert!(!out.status.success(), "{kind} body accepted: {body}");
    }
}

#[tokio::test]
async fn known_workload_is_exact_valid_and_compact() {
    let (server, cap) = intake_with(|_, _| ok()).await;
    let sink = builder(&server).build().unwrap();
    let records = workload(6000, 11);
    // Small batches: many calls per interval, so each interval's totals are
    // written several times and must still come out exact.
    let opts = SinkOptions::default().batch_size(700).retry(fast_retry());
    let c = MetricsCollector::builder()
        .sink_with_options(sink.clone(), opts)
        .build()
        .unwrap();
    for m in &records {
        c.record(m.clone());
    }
    let report = c.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_complete(), "{report:?}");
    assert_exact(&cap, &records);

    let intake = cap.intake.lock().unwrap().requests.clone();
    for r in &intake {
        assert_eq!(r.api_key.as_deref(), Some(KEY));
        assert_eq!(r.encoding.as_deref(), Some("gzip"));
        assert!(r.wire_len <= 512_000 && r.json.len() <= 5_242_880);
        assert!(r.json.contains("\"service:steer-tests\"") && r.json.contains("\"env:ci\""));
    }
    // Tags sorted in every series.
    for r in &intake {
        let v: Value = serde_json::from_str(&r.json).unwrap();
        for s in v["series"].as_array().unwrap() {
            let t = tags_of(s);
            let mut sorted = t.clone();
            sorted.sort();
            assert_eq!(t, sorted);
        }
    }
    validate_schema(&cap);
    let stats = sink.stats();
    assert_eq!(stats.payloads_failed, 0);
    assert_eq!(
        stats.distribution_values as usize,
        expected_values(&records, |m| Some(m.latency_ms)).len()
            + expected_values(&records, |m| m.ttft_ms).len()
    );
}

#[tokio::test]
async fn transient_failures_are_retried_and_delivered_once() {
    // The first series POST gets 503; later the first distribution POST
    // gets 503 after the counts went out (a partial delivery).
    let seen = Arc::new(Mutex::new((0usize, 0usize)));
    let s2 = seen.clone();
    let (server, cap) = intake_with(move |c, _| {
        let mut s = s2.lock().unwrap();
        if c.path == "/api/v2/series" {
            s.0 += 1;
            if s.0 == 1 {
                return (503, None);
            }
        } else {
            s.1 += 1;
            if s.1 == 1 || s.1 == 3 {
                return (503, None);
            }
        }
        ok()
    })
    .await;
    let sink = builder(&server).build().unwrap();
    let records = workload(3000, 5);
    let opts = SinkOptions::default().batch_size(1000).retry(fast_retry());
    let c = MetricsCollector::builder()
        .sink_with_options(sink.clone(), opts)
        .build()
        .unwrap();
    for m in &records {
        c.record(m.clone());
    }
    let report = c.shutdown(Duration::from_secs(30)).await;
    assert!(report.is_complete(), "{report:?}");
    let st = c.stats();
    assert!(st.sinks[0].retried > 0, "the collector retried");
    assert_eq!(st.sinks[0].delivered, 3000);
    assert_exact(&cap, &records);
    validate_schema(&cap);
}

#[tokio::test]
async fn throttling_honours_retry_after() {
    let (server, cap) = intake_with(|_, n| if n == 0 { (429, Some("1")) } else { ok() }).await;
    let sink = builder(&server).build().unwrap();
    let records = workload(50, 9);
    // Directly: the error carries the hint.
    let err = sink.record_batch(&records).await.unwrap_err();
    assert_eq!(err.kind(), SinkErrorKind::Throttled(Duration::from_secs(1)));
    assert_eq!(err.records().unwrap().len(), 50);
    // Through the collector: the next attempt waits at least that long.
    let c = MetricsCollector::builder()
        .sink_with_options(sink.clone(), SinkOptions::default().retry(fast_retry()))
        .build()
        .unwrap();
    for m in &records {
        c.record(m.clone());
    }
    c.flush().await;
    let reqs = cap.intake.lock().unwrap().requests.clone();
    assert_eq!(reqs[0].status, 429);
    // The direct call left its counts pending; the collector's attempt
    // ships them and the distributions without counting anything twice.
    assert!(reqs[1..].iter().all(|r| r.status == 202));
    assert_exact_small(&cap, &records);

    let (server, cap) = intake_with(|_, n| if n == 0 { (429, Some("1")) } else { ok() }).await;
    let sink = builder(&server).build().unwrap();
    let c = MetricsCollector::builder()
        .sink_with_options(sink, SinkOptions::default().retry(fast_retry()))
        .build()
        .unwrap();
    for m in &records {
        c.record(m.clone());
    }
    c.flush().await;
    let reqs = cap.intake.lock().unwrap().requests.clone();
    assert_eq!(reqs[0].status, 429);
    let waited = reqs[1].at - reqs[0].at;
    assert!(waited >= Duration::from_millis(990), "retried after {waited:?}");
    assert_exact_small(&cap, &records);
}

fn assert_exact_small(cap: &Capture, records: &[AgentMetrics]) {
    let want: f64 = records.iter().map(|m| m.sample_weight).sum();
    assert_eq!(count_sum(cap, "steer.llm.requests", &[]), want);
    assert_multiset_close(
        &dist_values(cap, "steer.llm.latency", &[]),
        &expected_values(records, |m| Some(m.latency_ms)),
        "latency",
    );
}

#[tokio::test]
async fn a_refused_series_is_isolated_and_the_rest_delivered() {
    let (server, cap) = intake_with(|c, _| {
        if c.json.contains("model:poison") {
            (400, None)
        } else {
            ok()
        }
    })
    .await;
    let sink = builder(&server).build().unwrap();
    let mut records = workload(400, 3);
    let poison: Vec<usize> = vec![7, 150, 151, 399];
    for &i in &poison {
        records[i].model = "poison".into();
    }
    let err = sink.record_batch(&records).await.unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(err.records().unwrap(), &poison[..]);
    assert!(err.retry_records().is_empty());
    assert!(err.message().contains("400"), "{}", err.message());
    let good: Vec<AgentMetrics> = records
        .iter()
        .enumerate()
        .filter(|(i, _)| !poison.contains(i))
        .map(|(_, m)| m.clone())
        .collect();
    assert_exact_small(&cap, &good);
    // Bisection, not one request per series.
    let (n, series) = {
        let intake = cap.intake.lock().unwrap();
        let series: usize = intake
            .requests
            .iter()
            .filter(|r| r.status == 202)
            .map(|r| {
                serde_json::from_str::<Value>(&r.json).unwrap()["series"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .sum();
        (intake.requests.len(), series)
    };
    assert!(n < series / 2, "{n} requests for {series} series");
    validate_schema(&cap);

    // Through the collector: the poison records count as rejected, the
    // others as delivered.
    let c = MetricsCollector::builder()
        .sink_with_options(sink, SinkOptions::default().retry(fast_retry()))
        .build()
        .unwrap();
    for m in workload(200, 4).into_iter().chain(records[..10].iter().cloned()) {
        c.record(m);
    }
    c.flush().await;
    let s = &c.stats().sinks[0];
    assert_eq!(s.failed.rejected, 1);
    assert_eq!(s.delivered, 209);
}

#[tokio::test]
async fn payload_too_large_is_split() {
    let (server, cap) = intake_with(|c, _| if c.json.len() > 3000 { (413, None) } else { ok() }).await;
    let sink = builder(&server).build().unwrap();
    let records = workload(300, 8);
    sink.record_batch(&records).await.unwrap();
    assert_exact_small(&cap, &records);
    let reqs = cap.intake.lock().unwrap().requests.clone();
    assert!(reqs.iter().any(|r| r.status == 413));
    assert!(reqs.iter().filter(|r| r.status == 202).count() > 4);
}

#[tokio::test]
async fn configured_limits_and_every_compression() {
    for compression in [Compression::Gzip, Compression::Deflate, Compression::None] {
        let (server, cap) = intake_with(|_, _| ok()).await;
        let sink = builder(&server)
            .compression(compression)
            .max_compressed_bytes(2048)
            .max_uncompressed_bytes(8192)
            .build()
            .unwrap();
        let records = workload(2000, 2);
        sink.record_batch(&records).await.unwrap();
        assert_exact(&cap, &records);
        let reqs = cap.intake.lock().unwrap().requests.clone();
        assert!(reqs.len() > 10, "{compression:?}: {} bodies", reqs.len());
        let want = match compression {
            Compression::Gzip => Some("gzip"),
            Compression::Deflate => Some("deflate"),
            Compression::None => None,
        };
        for r in &reqs {
            assert_eq!(r.encoding.as_deref(), want);
            assert!(r.wire_len <= 2048, "{compression:?}: {} bytes sent", r.wire_len);
            assert!(r.json.len() <= 8192);
        }
        if compression == Compression::Gzip {
            validate_schema(&cap);
        }
    }
}

#[tokio::test]
async fn flush_resends_totals_left_by_a_failure() {
    let down = Arc::new(Mutex::new(true));
    let d2 = down.clone();
    let (server, cap) = intake_with(move |c, _| {
        if *d2.lock().unwrap() && c.path == "/api/v2/series" {
            (500, None)
        } else {
            ok()
        }
    })
    .await;
    let sink = builder(&server).build().unwrap();
    let records = workload(100, 1);
    let err = sink.record_batch(&records).await.unwrap_err();
    assert_eq!(err.kind(), SinkErrorKind::Retryable);
    assert!(sink.flush().await.is_err(), "still down: flush reports it");
    *down.lock().unwrap() = false;
    sink.flush().await.unwrap();
    // Counts are complete without resending the records; distributions
    // come with the collector's retry, which must not re-add the counts.
    let want: f64 = records.iter().map(|m| m.sample_weight).sum();
    assert_eq!(count_sum(&cap, "steer.llm.requests", &[]), want);
    let idx: Vec<AgentMetrics> = err
        .records()
        .unwrap()
        .iter()
        .map(|&i| records[i].clone())
        .collect();
    sink.record_batch(&idx).await.unwrap();
    assert_exact_small(&cap, &records);
}

#[tokio::test]
async fn raw_mode_sends_one_point_per_record() {
    let (server, cap) = intake_with(|_, _| ok()).await;
    let sink = builder(&server).mode(Mode::Raw).build().unwrap();
    let now = chrono::Utc::now();
    let mut records = synthetic(30, 4);
    for (i, m) in records.iter_mut().enumerate() {
        m.timestamp = now - chrono::Duration::seconds(40 - i as i64);
    }
    sink.record_batch(&records).await.unwrap();
    let intake = cap.intake.lock().unwrap();
    let req_points: usize = intake
        .counts
        .keys()
        .filter(|k| k.0 == "steer.llm.requests")
        .count();
    assert_eq!(req_points, 30, "one requests point per record");
    drop(intake);
    assert_exact_small(&cap, &records);
    validate_schema(&cap);
}

#[tokio::test]
async fn records_outside_the_accepted_window_are_rejected() {
    let (server, cap) = intake_with(|_, _| ok()).await;
    let sink = builder(&server).build().unwrap();
    let mut records = workload(10, 1);
    records[2].timestamp = chrono::Utc::now() - chrono::Duration::hours(2);
    records[5].timestamp = chrono::Utc::now() + chrono::Duration::hours(1);
    let err = sink.record_batch(&records).await.unwrap_err();
    assert_eq!(err.records().unwrap(), &[2, 5]);
    let want: f64 = records
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2 && *i != 5)
        .map(|(_, m)| m.sample_weight)
        .sum();
    assert_eq!(count_sum(&cap, "steer.llm.requests", &[]), want);
}

#[tokio::test]
async fn the_api_key_never_leaks() {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let b2 = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || b2.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (server, _cap) = intake_with(|_, n| if n % 2 == 0 { (403, None) } else { (400, None) }).await;
    let sink = builder(&server).build().unwrap();
    let records = workload(20, 1);
    let e1 = sink.record_batch(&records).await.unwrap_err();
    // A dead endpoint.
    let dead = DatadogSink::builder()
        .site("http://127.0.0.1:9")
        .api_key(KEY)
        .build()
        .unwrap();
    let e2 = dead.record_batch(&records).await.unwrap_err();
    let e3 = dead.flush().await.err();
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.is_empty());
    for text in [
        format!("{e1} {e1:?}"),
        format!("{e2} {e2:?} {e3:?}"),
        format!("{sink:?} {dead:?} {:?}", sink.config()),
        logs,
    ] {
        assert!(!text.contains(KEY), "key leaked in: {text}");
        assert!(!text.contains("RECOGNISABLE"));
    }
}

#[tokio::test]
async fn a_call_cancelled_mid_way_is_not_counted_twice() {
    // The first series POST is accepted but answered slowly; the caller
    // gives up (like the collector's attempt timeout) and retries.
    let slow = Arc::new(Mutex::new(true));
    let s2 = slow.clone();
    let server = MockServer::start().await;
    let cap = Capture {
        intake: Arc::default(),
        decide: Arc::new(|_, _| ok()),
    };
    Mock::given(wiremock::matchers::path("/api/v2/series"))
        .respond_with(SlowOnce {
            inner: cap.clone(),
            slow: s2,
        })
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(cap.clone())
        .mount(&server)
        .await;
    let sink = builder(&server).build().unwrap();
    let records = workload(300, 6);
    let cancelled = tokio::time::timeout(Duration::from_millis(300), sink.record_batch(&records)).await;
    assert!(cancelled.is_err(), "the first attempt must time out");
    assert!(!*slow.lock().unwrap(), "the slow POST reached the intake");
    sink.record_batch(&records).await.unwrap();
    assert_exact_small(&cap, &records);
}

/// Records like the capture server, but the first response takes 2 s.
struct SlowOnce {
    inner: Capture,
    slow: Arc<Mutex<bool>>,
}

impl Respond for SlowOnce {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let r = self.inner.respond(req);
        let mut slow = self.slow.lock().unwrap();
        if std::mem::replace(&mut *slow, false) {
            r.set_delay(Duration::from_secs(2))
        } else {
            r
        }
    }
}
