//! Transport faults, cancellation, secrets, routing errors.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_no_key, builder, Harness, KEY};
use futures::StreamExt;
use serde_json::json;
use steer::testkit::RecordingSink;
use steer::{ErrorClass, Method, Request, RetryConfig, SimConfig, SteerClient, SteerError, StreamEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A raw server that reads a request, writes `reply` and closes the
/// connection. Returns its base URL and the number of connections served.
async fn raw_server(reply: &'static [u8]) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                // Read the headers and the (small) body.
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let _ = sock.write_all(reply).await;
                let _ = sock.flush().await;
                // Dropping the socket closes the connection mid-response.
            });
        }
    });
    (format!("http://{addr}"), count)
}

#[tokio::test]
async fn connection_closed_mid_stream_after_a_delta() {
    let (base, conns) = raw_server(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
          3b\r\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n\r\n",
    )
    .await;
    let h = Harness::with_base(&base, |b| b);
    let mut s = h.client.stream("Hi", "gpt-4o").await.unwrap();
    assert_eq!(s.next().await.unwrap().unwrap(), StreamEvent::Delta("Hel".into()));
    let err = s.next().await.unwrap().unwrap_err();
    assert!(matches!(err, SteerError::Network(_)), "{err:?}");
    assert!(s.next().await.is_none());
    let m = h.only_record().await;
    assert_eq!(
        (m.error_class, m.retries, m.method),
        (Some(ErrorClass::Network), 0, Method::Stream)
    );
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "not retried after a delta was delivered"
    );
}

#[tokio::test]
async fn half_a_response_then_close_is_retried_then_a_network_error() {
    let (base, conns) =
        raw_server(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"id\":\"chatcmpl-1\",\"choi")
            .await;
    let h = Harness::with_base(&base, |b| b);
    let err = h.client.generate("Hi", "gpt-4o").await.unwrap_err();
    assert!(matches!(err, SteerError::Network(_)), "{err:?}");
    let m = h.only_record().await;
    assert_eq!((m.error_class, m.retries), (Some(ErrorClass::Network), 3));
    assert_eq!(conns.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn garbage_instead_of_http_is_a_network_error() {
    let (base, _) = raw_server(b"SSH-2.0-OpenSSH\r\n").await;
    let h = Harness::with_base(&base, |b| b.retry(RetryConfig::none()));
    let err = h.client.stream("Hi", "claude-sonnet-4-5").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Network);
    assert_eq!(h.only_record().await.error_class, Some(ErrorClass::Network));
}

#[tokio::test]
async fn connection_refused_is_retried_network_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let h = Harness::with_base(&format!("http://{addr}"), |b| b);
    let err = h.client.generate("Hi", "claude-sonnet-4-5").await.unwrap_err();
    assert!(matches!(err, SteerError::Network(_)), "{err:?}");
    let m = h.only_record().await;
    assert_eq!((m.error_class, m.retries), (Some(ErrorClass::Network), 3));
    assert_no_key("error", &format!("{err} {err:?}"));
}

#[tokio::test]
async fn server_slower_than_the_timeout() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(5))
                .set_body_json(json!({})),
        )
        .expect(2)
        .mount(&server)
        .await;
    let h = Harness::with(&server, |b| b.retry(common::fast_retry().max_retries(1)));
    let t = Instant::now();
    let err = h
        .client
        .generate(
            Request::prompt("Hi").timeout(Duration::from_millis(200)),
            "gpt-4o",
        )
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(matches!(err, SteerError::Timeout(_)), "{err:?}");
    let m = h.only_record().await;
    assert_eq!((m.error_class, m.retries), (Some(ErrorClass::Timeout), 1));
    assert!(m.latency_ms >= 400.0, "two attempts of 200 ms: {}", m.latency_ms);
}

#[tokio::test]
async fn total_deadline_bounds_the_whole_call() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(5))
                .set_body_json(json!({})),
        )
        .mount(&server)
        .await;
    let h = Harness::with(&server, |b| {
        b.retry(
            common::fast_retry()
                .max_retries(10)
                .total_deadline(Duration::from_millis(500)),
        )
    });
    let t = Instant::now();
    let err = h.client.generate("Hi", "gpt-4o").await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(err.class(), ErrorClass::Timeout);
    assert_eq!(h.records().await.len(), 1);
}

#[tokio::test]
async fn stream_stalling_mid_way_times_out() {
    // Headers and one delta, then nothing (the socket stays open).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 65536];
        let _ = sock.read(&mut buf).await;
        let _ = sock
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n3b\r\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n\r\n")
            .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let h = Harness::with_base(&format!("http://{addr}"), |b| {
        b.timeout(Duration::from_millis(300))
    });
    let mut s = h.client.stream("Hi", "gpt-4o").await.unwrap();
    assert!(matches!(s.next().await.unwrap().unwrap(), StreamEvent::Delta(_)));
    let err = s.next().await.unwrap().unwrap_err();
    assert_eq!(err.class(), ErrorClass::Timeout);
    assert_eq!(h.only_record().await.error_class, Some(ErrorClass::Timeout));
}

#[tokio::test]
async fn huge_responses_are_read_or_refused_by_the_limit() {
    let server = MockServer::start().await;
    let text = "x".repeat(3 * 1024 * 1024);
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 800_000, "total_tokens": 800_001}
        })))
        .mount(&server)
        .await;
    // Within the default limit: fine.
    let h = Harness::new(&server);
    let resp = h.client.generate("Hi", "gpt-4o").await.unwrap();
    assert_eq!(resp.text.len(), 3 * 1024 * 1024);
    // Over a 1 MiB limit: a typed error, recorded, not retried.
    let h = Harness::with(&server, |b| b.max_response_bytes(1024 * 1024));
    let err = h.client.generate("Hi", "gpt-4o").await.unwrap_err();
    assert!(matches!(err, SteerError::InvalidResponse(_)), "{err:?}");
    let m = h.only_record().await;
    assert_eq!((m.error_class, m.retries), (Some(ErrorClass::Unknown), 0));
    // Streams too.
    let huge_stream = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n",
        "y".repeat(2 * 1024 * 1024)
    );
    let server2 = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(huge_stream.into_bytes(), "text/event-stream"))
        .mount(&server2)
        .await;
    let h = Harness::with(&server2, |b| b.max_response_bytes(1024 * 1024));
    let err = h
        .client
        .stream("Hi", "gpt-4o")
        .await
        .unwrap()
        .collect_response()
        .await
        .unwrap_err();
    assert!(matches!(err, SteerError::InvalidResponse(_)), "{err:?}");
    assert_eq!(h.records().await.len(), 1);
}

#[tokio::test]
async fn the_key_never_leaks_but_is_sent() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "message": format!("Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com/account/api-keys."),
            "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})))
        .mount(&server)
        .await;
    let sink = RecordingSink::new();
    let b = builder(&server.uri(), &sink);
    assert_no_key("builder Debug", &format!("{b:?}"));
    let client = b.build().unwrap();
    assert_no_key("client Debug", &format!("{client:?}"));
    assert_no_key("client pretty Debug", &format!("{client:#?}"));
    let err = client.generate("Hi", "gpt-4o").await.unwrap_err();
    assert_no_key("error Display", &err.to_string());
    assert_no_key("error Debug", &format!("{err:?}"));
    assert!(
        err.to_string().contains("Incorrect API key provided"),
        "the message is kept: {err}"
    );
    client.metrics().flush().await;
    let records = sink.records();
    assert_eq!(records.len(), 1);
    assert_no_key("metrics JSON", &serde_json::to_string(&records).unwrap());
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        requests[0]
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap(),
        format!("Bearer {KEY}")
    );
}

#[tokio::test]
async fn missing_key_is_a_recorded_authentication_error_without_a_request() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let sink = RecordingSink::new();
    let client = SteerClient::builder()
        .ignore_env()
        .sink(sink.clone())
        .openai_base_url(format!("{}/v1", server.uri()))
        .build()
        .unwrap();
    let err = client.generate("Hi", "gpt-4o").await.unwrap_err();
    assert!(matches!(err, SteerError::MissingApiKey(_)), "{err:?}");
    assert!(err.to_string().contains("OPENAI_API_KEY"));
    client.metrics().flush().await;
    let r = sink.records();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].error_class, Some(ErrorClass::Authentication));
}

#[tokio::test]
async fn unknown_model_is_an_error_and_nothing_is_sent_or_recorded() {
    let sink = RecordingSink::new();
    let client = SteerClient::builder()
        .ignore_env()
        .sink(sink.clone())
        .build()
        .unwrap();
    for model in ["llama3", "nosuchprovider/large", ""] {
        let err = client.generate("Hi", model).await.unwrap_err();
        assert!(matches!(err, SteerError::UnknownModel { .. }), "{model}: {err:?}");
        assert!(err.request_id().is_none());
    }
    client.metrics().flush().await;
    assert!(sink.is_empty());
    assert_eq!(client.metrics().stats().recorded, 0);
}

#[tokio::test]
async fn bad_configuration_is_a_typed_error() {
    let r = SteerClient::builder()
        .ignore_env()
        .openai_compatible("openai", "http://x", None)
        .build();
    assert!(matches!(r, Err(SteerError::Config(_))));
    let r = SteerClient::builder()
        .ignore_env()
        .openai_base_url("not a url")
        .build();
    assert!(matches!(r, Err(SteerError::Config(_))));
}

// ------------------------------------------------------------ simulated

#[tokio::test]
async fn sim_records_the_routed_provider_real_cost_and_the_simulated_tag() {
    let sink = RecordingSink::new();
    let client = SteerClient::builder()
        .ignore_env()
        .sink(sink.clone())
        .sim(
            SimConfig::instant()
                .seed(42)
                .input_tokens(1000, 1000)
                .output_tokens(100, 100),
        )
        .build()
        .unwrap();
    let r = client.generate("Hello", "sim/gpt-4o-mini").await.unwrap();
    assert!(!r.text.is_empty());
    let r2 = client.generate("Hello", "sim/claude-sonnet-4-5").await.unwrap();
    let r3 = client.generate("Hello", "sim/house-model").await.unwrap();
    client.metrics().flush().await;
    let recs = sink.records();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0], r.metrics);
    assert_eq!(recs[1], r2.metrics);
    assert_eq!(
        (recs[0].provider.as_str(), recs[0].model.as_str()),
        ("openai", "gpt-4o-mini")
    );
    assert_eq!(recs[0].response_model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(recs[0].tags.get("simulated").map(String::as_str), Some("true"));
    // 1000*0.15 + 100*0.60 = 210 / 1e6
    assert!((recs[0].cost_usd.unwrap() - 0.00021).abs() < 1e-12);
    assert_eq!(recs[1].provider, "anthropic");
    // 1000*3 + 100*15 = 4500 / 1e6
    assert!((recs[1].cost_usd.unwrap() - 0.0045).abs() < 1e-12);
    assert_eq!((recs[2].provider.as_str(), recs[2].cost_usd), ("sim", None));
    assert_eq!(r3.metrics.tags.get("simulated").map(String::as_str), Some("true"));
}

#[tokio::test]
async fn sim_is_deterministic_under_a_seed() {
    async fn run(seed: u64) -> Vec<(String, u64, u64)> {
        let client = SteerClient::builder()
            .ignore_env()
            .sim(
                SimConfig::instant()
                    .seed(seed)
                    .rate_limit_rate(0.2)
                    .cache_hit_rate(0.5),
            )
            .retry(common::fast_retry())
            .build()
            .unwrap();
        let mut out = Vec::new();
        for _ in 0..20 {
            match client.generate("Tell me a story", "sim/gpt-4o").await {
                Ok(r) => out.push((r.text, r.usage.output_tokens, r.usage.cached_tokens)),
                Err(e) => out.push((e.class().to_string(), 0, 0)),
            }
        }
        out
    }
    let a = run(42).await;
    assert_eq!(a, run(42).await);
    assert_ne!(a, run(43).await);
}

#[tokio::test]
async fn sim_errors_go_through_retry_and_classification() {
    let sink = RecordingSink::new();
    let client = SteerClient::builder()
        .ignore_env()
        .sink(sink.clone())
        .sim(SimConfig::instant().seed(1).rate_limit_rate(1.0))
        .retry(common::fast_retry())
        .build()
        .unwrap();
    let err = client.generate("Hi", "sim/gpt-4o").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::RateLimit);
    assert_eq!(err.status(), Some(429));
    let err = client.stream("Hi", "sim/gpt-4o").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::RateLimit);
    client.metrics().flush().await;
    let recs = sink.records();
    assert_eq!(recs.len(), 2);
    assert!(recs
        .iter()
        .all(|m| m.retries == 3 && m.error_class == Some(ErrorClass::RateLimit)));

    // Half the attempts fail: many calls succeed after retries, one record each.
    let sink = RecordingSink::new();
    let client = SteerClient::builder()
        .ignore_env()
        .sink(sink.clone())
        .sim(SimConfig::instant().seed(2).error_rates(0.3, 0.1, 0.1))
        .retry(common::fast_retry())
        .build()
        .unwrap();
    let mut ok = 0;
    for _ in 0..200 {
        if client.generate("Hi", "sim/claude-haiku-4-5").await.is_ok() {
            ok += 1;
        }
    }
    client.metrics().flush().await;
    let recs = sink.records();
    assert_eq!(recs.len(), 200);
    assert_eq!(recs.iter().filter(|m| m.error_class.is_none()).count(), ok);
    assert!(
        recs.iter().any(|m| m.error_class.is_none() && m.retries > 0),
        "retried successes"
    );
    assert!(recs.iter().any(
        |m| m.error_class == Some(ErrorClass::Timeout) || m.error_class == Some(ErrorClass::ServerError)
    ));
}

#[tokio::test]
async fn sim_stream_with_tools_and_ttft() {
    let sink = RecordingSink::new();
    let client = SteerClient::builder()
        .ignore_env()
        .sink(sink.clone())
        .sim(
            SimConfig::default()
                .seed(3)
                .latency(Duration::from_millis(60), 0.0)
                .ttft(Duration::from_millis(20))
                .output_tokens(5, 5),
        )
        .build()
        .unwrap();
    let mut s = client.stream("Hi", "sim/gpt-4o").await.unwrap();
    let mut deltas = 0;
    let mut done = None;
    while let Some(ev) = s.next().await {
        match ev.unwrap() {
            StreamEvent::Delta(_) => deltas += 1,
            StreamEvent::Done(r) => done = Some(r),
            _ => unreachable!(),
        }
    }
    assert_eq!(deltas, 5);
    let m = done.unwrap().metrics;
    let ttft = m.ttft_ms.unwrap();
    assert!((15.0..60.0).contains(&ttft), "ttft {ttft}");
    assert!(m.latency_ms >= 55.0, "latency {}", m.latency_ms);

    let tools = json!([{"type": "function", "function": {"name": "lookup"}}]);
    let client = SteerClient::builder()
        .ignore_env()
        .sim(SimConfig::instant().seed(4).tool_call_rate(1.0))
        .build()
        .unwrap();
    let r = client
        .generate(Request::prompt("Hi").tools(tools), "sim/gpt-4o")
        .await
        .unwrap();
    assert_eq!(r.tool_calls[0].name, "lookup");
    assert_eq!(
        (r.metrics.tools_used.clone(), r.metrics.tools_invoked),
        (vec!["lookup".to_string()], 1)
    );
}

#[tokio::test]
async fn dropping_a_stream_early_records_one_cancelled_call() {
    let sink = RecordingSink::new();
    let client = SteerClient::builder()
        .ignore_env()
        .sink(sink.clone())
        .sim(
            SimConfig::default()
                .seed(5)
                .latency(Duration::from_secs(5), 0.0)
                .ttft(Duration::from_millis(10))
                .output_tokens(50, 50),
        )
        .build()
        .unwrap();
    let mut s = client.stream("Hi", "sim/gpt-4o").await.unwrap();
    assert!(matches!(s.next().await.unwrap().unwrap(), StreamEvent::Delta(_)));
    drop(s);
    client.metrics().flush().await;
    let recs = sink.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].error_class, Some(ErrorClass::Cancelled));
    assert_eq!(recs[0].method, Method::Stream);
    assert!(recs[0].ttft_ms.is_some());
    assert!(recs[0].latency_ms < 5000.0);

    // A generate future dropped by a caller's timeout: also exactly one record.
    let t = tokio::time::timeout(Duration::from_millis(50), client.generate("Hi", "sim/gpt-4o")).await;
    assert!(t.is_err());
    client.metrics().flush().await;
    let recs = sink.records();
    assert_eq!(recs.len(), 2);
    assert_eq!(
        (recs[1].error_class, recs[1].method),
        (Some(ErrorClass::Cancelled), Method::Generate)
    );
}

#[tokio::test]
async fn concurrent_calls_one_record_each() {
    let sink = RecordingSink::new();
    let client = SteerClient::builder()
        .ignore_env()
        .sink(sink.clone())
        .sim(SimConfig::instant().seed(9).error_rates(0.1, 0.0, 0.1))
        .retry(common::fast_retry())
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                c.generate("Hi", "sim/gpt-4o-mini")
                    .await
                    .map(|r| r.metrics.request_id)
            } else {
                match c.stream("Hi", "sim/grok-4").await {
                    Ok(s) => s.collect_response().await.map(|r| r.metrics.request_id),
                    Err(e) => Err(e),
                }
            }
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(id) => ids.push(id),
            Err(e) => ids.push(e.request_id().unwrap()),
        }
    }
    client.metrics().flush().await;
    let mut recorded: Vec<_> = sink.records().iter().map(|m| m.request_id).collect();
    recorded.sort();
    ids.sort();
    assert_eq!(recorded, ids, "exactly one record per call, no duplicates");
}

#[tokio::test]
async fn request_deadline_bounds_retries() {
    let client = SteerClient::builder()
        .ignore_env()
        .sim(
            SimConfig::default()
                .seed(3)
                .latency_scale(1.0)
                .latency(Duration::from_millis(1), 0.0)
                .ttft(Duration::from_millis(1))
                .rate_limit_rate(1.0)
                .retry_after(Duration::from_millis(300)),
        )
        .retry(common::fast_retry().max_retries(10))
        .build()
        .unwrap();
    let t = Instant::now();
    let err = client
        .generate(
            Request::prompt("Hi").deadline(Duration::from_millis(700)),
            "sim/gpt-4o",
        )
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_millis(1500), "{:?}", t.elapsed());
    let m = err.metrics().unwrap();
    assert_eq!(m.error_class, Some(ErrorClass::RateLimit));
    assert!(
        (1..=2).contains(&m.retries),
        "300 ms hints fit 1-2 times in 700 ms: {}",
        m.retries
    );
}

#[test]
fn client_streams_and_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<SteerClient>();
    send_sync::<SteerError>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = SteerClient::builder()
            .ignore_env()
            .sim(SimConfig::instant())
            .build()
            .unwrap();
        let g = client.generate("x", "sim/gpt-4o");
        send(&g);
        drop(g);
        let s = client.stream("x", "sim/gpt-4o").await.unwrap();
        send(&s);
    });
}

#[tokio::test]
async fn a_price_table_provider_that_is_not_registered_is_an_unknown_model() {
    let mut prices = steer::pricing::PriceTable::builtin();
    prices.merge(
        steer::pricing::PriceTable::from_toml_str(
            "[models.\"house\"]\nprovider = \"inhouse\"\ninput = 1.0\noutput = 1.0\n",
        )
        .unwrap(),
    );
    let client = SteerClient::builder()
        .ignore_env()
        .prices(prices)
        .build()
        .unwrap();
    let r = client.generate("x", "house").await;
    assert!(matches!(r, Err(SteerError::UnknownModel { .. })), "{r:?}");
    let r = client.generate("x", "sim/house").await.unwrap();
    assert_eq!(r.metrics.provider, "inhouse");
}

#[tokio::test]
async fn extreme_settings_do_not_panic() {
    let client = SteerClient::builder()
        .ignore_env()
        .sim(
            SimConfig::default()
                .seed(1)
                .latency_scale(f64::MAX)
                .latency(Duration::ZERO, f64::MAX)
                .rate_limit_rate(1.0),
        )
        .retry(
            RetryConfig::default()
                .max_retries(u32::MAX)
                .total_deadline(Duration::MAX),
        )
        .build()
        .unwrap();
    // A huge retry hint under an unbounded deadline: the call is cut by the
    // caller; nothing may panic on the way.
    let r = tokio::time::timeout(
        Duration::from_millis(200),
        client.generate(
            Request::prompt("x")
                .deadline(Duration::MAX)
                .timeout(Duration::MAX),
            "sim/gpt-4o",
        ),
    )
    .await;
    assert!(r.is_err() || r.unwrap().is_err());
}
