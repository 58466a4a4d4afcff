//! Request shapes and response handling against a local capture server.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::time::{Duration, Instant};

use steer_metrics::{AgentMetrics, MetricsCollector, MetricsSink, RetryPolicy, SinkErrorKind, SinkOptions};
use steer_sink_influxdb::{InfluxSink, Precision};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn records(n: usize) -> Vec<AgentMetrics> {
    steer_metrics::testkit::synthetic(n, 11)
}

fn body_text(r: &Request) -> String {
    if r.headers.get("content-encoding").map(|v| v.to_str().unwrap()) == Some("gzip") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&r.body[..])
            .read_to_string(&mut s)
            .unwrap();
        s
    } else {
        String::from_utf8(r.body.clone()).unwrap()
    }
}

fn expected_body(sink: &InfluxSink, batch: &[AgentMetrics]) -> String {
    batch
        .iter()
        .map(|m| sink.encoder().encode_line(m).unwrap() + "\n")
        .collect()
}

fn query(r: &Request) -> Vec<(String, String)> {
    r.url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn fast_retry() -> SinkOptions {
    SinkOptions::default().retry(
        RetryPolicy::default()
            .initial_backoff(Duration::from_millis(1))
            .max_backoff(Duration::from_millis(5)),
    )
}

#[tokio::test]
async fn v2_request_shape_path_params_token_gzip_and_lines() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/write"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let sink = InfluxSink::new(
        InfluxSink::builder(server.uri())
            .org("my org")
            .bucket("metrics&more")
            .token("s3cr3t-token")
            .precision(Precision::Milliseconds)
            .gzip(true)
            .build()
            .unwrap(),
    )
    .unwrap();
    let batch = records(3);
    sink.record_batch(&batch).await.unwrap();

    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.url.path(), "/api/v2/write");
    assert_eq!(
        query(r),
        vec![
            ("org".into(), "my org".into()),
            ("bucket".into(), "metrics&more".into()),
            ("precision".into(), "ms".into()),
        ]
    );
    assert_eq!(r.headers.get("authorization").unwrap(), "Token s3cr3t-token");
    assert_eq!(r.headers.get("content-encoding").unwrap(), "gzip");
    assert!(r
        .headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let body = body_text(r);
    assert_eq!(body, expected_body(&sink, &batch));
    // Millisecond timestamps.
    let ts = body.lines().next().unwrap().rsplit(' ').next().unwrap();
    assert_eq!(ts.parse::<i64>().unwrap(), batch[0].timestamp.timestamp_millis());
    // The token is in no Debug output.
    assert!(!format!("{sink:?}").contains("s3cr3t"));
}

#[tokio::test]
async fn v1_request_shape_basic_auth_rp_precision_and_no_secret_in_errors() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/write"))
        .respond_with(ResponseTemplate::new(401).set_body_string(r#"{"error":"authorization failed"}"#))
        .mount(&server)
        .await;
    let config = InfluxSink::builder(server.uri())
        .database("llm")
        .retention_policy("week")
        .credentials("writer", "pa55word")
        .precision(Precision::Microseconds)
        .max_lines_per_request(2)
        .build()
        .unwrap();
    assert!(!format!("{config:?}").contains("pa55word"));
    let sink = InfluxSink::new(config).unwrap();
    let err = sink.record_batch(&records(5)).await.unwrap_err();
    assert!(err.is_misconfigured(), "{err}");
    // Credentials refused: the whole batch fails at once, no further requests.
    assert_eq!(err.records(), Some(&[0, 1, 2, 3, 4][..]));
    assert!(err.message().contains("credentials"), "{err}");
    assert!(!err.to_string().contains("pa55word") && !format!("{err:?}").contains("pa55word"));

    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        query(r),
        vec![
            ("db".into(), "llm".into()),
            ("rp".into(), "week".into()),
            ("precision".into(), "u".into()),
        ]
    );
    // "writer:pa55word" in base64.
    assert_eq!(
        r.headers.get("authorization").unwrap(),
        "Basic d3JpdGVyOnBhNTV3b3Jk"
    );
    assert!(r.headers.get("content-encoding").is_none());
}

#[tokio::test]
async fn throttled_with_retry_after_then_success_is_delivered_exactly_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&server)
        .await;
    let sink = InfluxSink::new(InfluxSink::builder(server.uri()).database("llm").build().unwrap()).unwrap();
    let batch = records(5);
    let expected = expected_body(&sink, &batch);
    let collector = MetricsCollector::builder()
        .sink_with_options(sink, fast_retry().linger(Duration::from_millis(1)))
        .build()
        .unwrap();
    let started = Instant::now();
    for m in &batch {
        collector.record(m.clone());
    }
    collector.flush().await;
    let elapsed = started.elapsed();
    let s = collector.stats();
    let s = s.sink("influxdb").unwrap();
    assert_eq!((s.delivered, s.retried, s.failed.total()), (5, 5, 0), "{s}");
    assert!(
        elapsed >= Duration::from_secs(1),
        "Retry-After honoured: {elapsed:?}"
    );

    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 2, "one throttled attempt, one delivery");
    // The delivery carries every line once.
    assert_eq!(body_text(&reqs[1]), expected);
    assert_eq!(body_text(&reqs[0]), expected);
}

#[tokio::test]
async fn a_transient_failure_mid_batch_retries_only_the_unsent_requests() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("overloaded"))
        .with_priority(2)
        .mount(&server)
        .await;
    let sink = InfluxSink::new(
        InfluxSink::builder(server.uri())
            .database("llm")
            .max_lines_per_request(2)
            .build()
            .unwrap(),
    )
    .unwrap();
    let err = sink.record_batch(&records(6)).await.unwrap_err();
    assert_eq!(err.kind(), SinkErrorKind::Retryable);
    assert_eq!(
        err.records(),
        Some(&[2, 3, 4, 5][..]),
        "the first request was delivered"
    );
    assert!(err.message().contains("503"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

/// A 1.x-style server: rejects lines whose model is `bad`, with the message
/// `kind` (a mapped partial write, or one that names no line).
fn picky_server_response(r: &Request, named: bool) -> ResponseTemplate {
    let body = body_text(r);
    let n_bad = body.lines().filter(|l| l.contains("model=bad")).count();
    if n_bad == 0 {
        return ResponseTemplate::new(204);
    }
    if named {
        ResponseTemplate::new(400).set_body_string(format!(
            r#"{{"error":"partial write: field type conflict: input field \"ttft_ms\" on measurement \"llm_request\" is type float, already exists as type string dropped={n_bad}"}}"#
        ))
    } else {
        ResponseTemplate::new(400).set_body_string(r#"{"error":"field type conflict"}"#)
    }
}

fn batch_with_bad(n: usize, bad: &[usize]) -> Vec<AgentMetrics> {
    let mut batch = records(n);
    for (i, m) in batch.iter_mut().enumerate() {
        if bad.contains(&i) {
            m.model = "bad".into();
            m.ttft_ms = Some(1.0);
        } else {
            m.ttft_ms = None;
        }
    }
    batch
}

#[tokio::test]
async fn a_mapped_partial_write_rejects_only_the_named_records_in_one_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(|r: &Request| picky_server_response(r, true))
        .mount(&server)
        .await;
    let sink = InfluxSink::new(InfluxSink::builder(server.uri()).database("llm").build().unwrap()).unwrap();
    let err = sink.record_batch(&batch_with_bad(10, &[3, 8])).await.unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(err.records(), Some(&[3, 8][..]));
    assert!(err.retry_records().is_empty());
    assert!(err.message().contains("field type conflict"), "{err}");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "nothing resent"
    );
}

#[tokio::test]
async fn a_rejection_naming_no_line_is_isolated_by_bisecting() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(|r: &Request| picky_server_response(r, false))
        .mount(&server)
        .await;
    let sink = InfluxSink::new(InfluxSink::builder(server.uri()).database("llm").build().unwrap()).unwrap();
    let batch = batch_with_bad(16, &[5]);
    let err = sink.record_batch(&batch).await.unwrap_err();
    assert_eq!(err.records(), Some(&[5][..]));
    assert!(err.retry_records().is_empty());
    let reqs = server.received_requests().await.unwrap();
    // 16 -> 8 -> 4 -> 2 -> 1: one rejected request per level plus its good sibling.
    assert_eq!(reqs.len(), 9);
    // Every good record reached the server in a request that was accepted.
    let accepted: Vec<String> = reqs
        .iter()
        .map(body_text)
        .filter(|b| !b.contains("model=bad"))
        .flat_map(|b| b.lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    assert_eq!(accepted.len(), 15);
    for (i, m) in batch.iter().enumerate() {
        let line = sink.encoder().encode_line(m).unwrap();
        assert_eq!(accepted.contains(&line), i != 5, "record {i}");
    }
}

#[tokio::test]
async fn too_large_requests_are_split_until_they_fit() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(|r: &Request| {
            if r.body.len() > 1500 {
                ResponseTemplate::new(413).set_body_string(r#"{"error":"Request Entity Too Large"}"#)
            } else {
                ResponseTemplate::new(204)
            }
        })
        .mount(&server)
        .await;
    let sink = InfluxSink::new(InfluxSink::builder(server.uri()).database("llm").build().unwrap()).unwrap();
    let batch = records(20);
    sink.record_batch(&batch).await.unwrap();
    let delivered: String = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.body.len() <= 1500)
        .map(body_text)
        .collect();
    assert_eq!(delivered, expected_body(&sink, &batch));
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sink = InfluxSink::new(
        InfluxSink::builder(format!("http://127.0.0.1:{port}"))
            .database("llm")
            .build()
            .unwrap(),
    )
    .unwrap();
    let err = sink.record_batch(&records(2)).await.unwrap_err();
    assert_eq!(err.kind(), SinkErrorKind::Retryable, "{err}");
    assert_eq!(err.records(), Some(&[0, 1][..]));
}
