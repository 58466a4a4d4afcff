//! The proxy against the fake upstream, with a plain HTTP client: what is
//! forwarded, what comes back, what is recorded.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use steer_metrics::{ErrorClass, Method};

async fn post(url: &str, body: Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = reqwest::Client::new().post(url).json(&body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streaming_chat_passes_through_and_is_recorded() {
    let up = fake_upstream().await;
    let proxy = start_proxy(config_for(&up)).await;
    let resp = post(
        &format!("{}/v1/chat/completions", proxy.url()),
        json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}], "user": "alice"}),
        &[
            ("authorization", "Bearer sk-client-key-123456"),
            ("x-steer-tag-team", "search"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "req_fake_123");
    assert_eq!(resp.headers()["openai-processing-ms"], "7");
    let request_id = resp.headers()[steer_proxy::REQUEST_ID_HEADER]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        recording("openai_chat_basic.json")
    );

    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["model"], "gpt-4o", "provider prefix removed");
    assert_eq!(got[0].headers["authorization"], "Bearer sk-client-key-123456");
    assert!(got[0].headers.get("x-steer-tag-team").is_none());
    assert_eq!(got[0].headers["accept-encoding"], "identity");

    let records = proxy.wait_records(1).await;
    assert_eq!(records.len(), 1);
    let m = &records[0];
    assert_eq!(m.request_id.to_string(), request_id);
    assert_eq!((m.provider.as_str(), m.model.as_str()), ("openai", "gpt-4o"));
    assert_eq!(m.response_model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!((m.input_tokens, m.output_tokens), (14, 30));
    assert_eq!(m.finish_reason.as_deref(), Some("stop"));
    assert_eq!(m.method, Method::Generate);
    assert_eq!(m.retries, 0);
    assert!(m.error_class.is_none());
    assert!(m.cost_usd.is_some_and(|c| c > 0.0));
    assert!(m.latency_ms > 0.0 && m.ttft_ms.is_none());
    assert_eq!(m.tags.get("team").map(String::as_str), Some("search"));
    assert_eq!(m.tags.get("user").map(String::as_str), Some("alice"));
    assert_eq!(m.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_get_usage_upstream_and_the_usage_chunk_is_stripped() {
    let up = fake_upstream().await;
    let proxy = start_proxy(config_for(&up)).await;
    let url = format!("{}/v1/chat/completions", proxy.url());
    let sse = recording("openai_chat_stream_text_usage.sse");

    // Without include_usage: the client sees what OpenAI would have sent it.
    let resp = post(
        &url,
        json!({"model": "gpt-4o-mini", "stream": true, "messages": [], "stream_options": {"other": 1}}),
        &[("x-fake-delay-ms", "5")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-length").is_none());
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.as_ref(), without_usage_chunk(&sse).as_slice());
    let got = up.received();
    assert_eq!(
        got[0].body["stream_options"],
        json!({"other": 1, "include_usage": true})
    );

    // With include_usage: every byte.
    let resp = post(
        &url,
        json!({"model": "gpt-4o-mini", "stream": true, "messages": [], "stream_options": {"include_usage": true}}),
        &[],
    )
    .await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), sse.as_slice());

    let records = proxy.wait_records(2).await;
    assert_eq!(records.len(), 2);
    for m in &records {
        assert_eq!(m.method, Method::Stream);
        assert_eq!((m.input_tokens, m.output_tokens), (78, 9));
        assert_eq!(m.finish_reason.as_deref(), Some("stop"));
        assert!(m.error_class.is_none(), "{m:?}");
        let ttft = m.ttft_ms.unwrap();
        assert!(ttft > 0.0 && ttft <= m.latency_ms, "{m:?}");
    }
    // Delayed 5 ms before each event: TTFT after the second event (the
    // first carries an empty content delta, which is not output).
    assert!(records[0].ttft_ms.unwrap() >= 9.0, "{:?}", records[0].ttft_ms);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_messages_and_embeddings() {
    let up = fake_upstream().await;
    let proxy = start_proxy(config_for(&up)).await;
    let resp = post(
        &format!("{}/v1/messages", proxy.url()),
        json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "stream": true, "messages": [], "metadata": {"user_id": "bob"}}),
        &[("x-api-key", "sk-ant-client-123456"), ("anthropic-version", "2023-06-01")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        recording("anthropic_stream_thinking.sse").as_slice()
    );
    let got = up.received();
    assert_eq!(got[0].headers["x-api-key"], "sk-ant-client-123456");
    assert_eq!(got[0].headers["anthropic-version"], "2023-06-01");
    assert!(got[0].body.get("stream_options").is_none());

    let resp = post(
        &format!("{}/v1/embeddings", proxy.url()),
        json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);

    let records = proxy.wait_records(2).await;
    let a = records.iter().find(|m| m.provider == "anthropic").unwrap();
    assert_eq!((a.input_tokens, a.output_tokens), (43, 277));
    assert_eq!(a.finish_reason.as_deref(), Some("end_turn"));
    assert_eq!(a.tags.get("user").map(String::as_str), Some("bob"));
    assert!(a.ttft_ms.is_some());
    let e = records
        .iter()
        .find(|m| m.model == "text-embedding-3-small")
        .unwrap();
    assert_eq!(
        (e.provider.as_str(), e.input_tokens, e.output_tokens),
        ("openai", 8, 0)
    );
    assert_eq!(e.method, steer::Method::Embeddings);
    // text-embedding-3-small: 0.02 USD per 1M tokens.
    assert!(
        (e.cost_usd.unwrap() - 8.0 * 0.02 / 1e6).abs() < 1e-15,
        "{:?}",
        e.cost_usd
    );
    assert!(e.error_class.is_none());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_pass_through_with_status_and_class() {
    let up = fake_upstream().await;
    let proxy = start_proxy(config_for(&up)).await;
    let resp = post(
        &format!("{}/v1/messages", proxy.url()),
        json!({"model": "claude-haiku-4-5", "max_tokens": 1, "messages": []}),
        &[("x-fake-scenario", "rate_limit")],
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        recording("anthropic_error_429_rate_limit.json").as_slice()
    );
    let resp = post(
        &format!("{}/v1/chat/completions", proxy.url()),
        json!({"model": "gpt-4o", "messages": []}),
        &[
            ("x-fake-scenario", "auth"),
            ("authorization", "Bearer sk-VKMIs-wrong-key"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        recording("openai_error_401_invalid_api_key.json").as_slice()
    );
    let records = proxy.wait_records(2).await;
    let rl = records.iter().find(|m| m.provider == "anthropic").unwrap();
    assert_eq!(rl.error_class, Some(ErrorClass::RateLimit));
    assert!(rl.latency_ms > 0.0);
    let au = records.iter().find(|m| m.provider == "openai").unwrap();
    assert_eq!(au.error_class, Some(ErrorClass::Authentication));
    let msg = au.error_message.as_deref().unwrap();
    assert!(!msg.contains("sk-VKMIs"), "{msg}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_refused_by_the_proxy_are_clear_and_not_recorded() {
    let up = fake_upstream().await;
    let proxy = start_proxy(config_for(&up).max_body_bytes(1024)).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", proxy.url());

    let r = client.post(&url).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("not valid JSON"),
        "{v}"
    );

    let r = post(&url, json!({"model": "llama3", "messages": []}), &[]).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("llama3"), "{v}");

    let r = post(&url, json!({"messages": []}), &[]).await;
    assert_eq!(r.status(), 400);

    let big = "x".repeat(2000);
    let r = post(
        &url,
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": big}]}),
        &[],
    )
    .await;
    assert_eq!(r.status(), 413);
    // Chunked (no content-length) bodies are capped too.
    let chunks = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(vec![b' '; 800]),
        Ok(vec![b' '; 800]),
    ]);
    let r = client
        .post(&url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    let r = post(
        &format!("{}/v1/messages", proxy.url()),
        json!({"model": "sim/gpt-4o"}),
        &[],
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error", "Anthropic error shape: {v}");

    assert_eq!(
        client
            .get(format!("{}/nope", proxy.url()))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        client
            .get(format!("{}/healthz", proxy.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(up.received().is_empty());
    assert!(proxy.records().await.is_empty());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_keys_mode_requires_the_proxy_key_and_never_forwards_it() {
    let up = fake_upstream().await;
    let proxy = start_proxy(
        config_for(&up)
            .provider_key("openai", "sk-provider-openai-999")
            .provider_key("anthropic", "sk-ant-provider-999")
            .provider_keys("pk-proxy-secret-1"),
    )
    .await;
    let url = format!("{}/v1/chat/completions", proxy.url());
    let body = json!({"model": "gpt-4o", "messages": []});
    let r = post(
        &url,
        body.clone(),
        &[("authorization", "Bearer pk-proxy-secret-2")],
    )
    .await;
    assert_eq!(r.status(), 401);
    let text = r.text().await.unwrap();
    assert!(!text.contains("pk-proxy-secret"), "{text}");
    let r = post(&url, body.clone(), &[]).await;
    assert_eq!(r.status(), 401);
    assert!(up.received().is_empty());

    let r = post(&url, body, &[("authorization", "Bearer pk-proxy-secret-1")]).await;
    assert_eq!(r.status(), 200);
    let r = post(
        &format!("{}/v1/messages", proxy.url()),
        json!({"model": "claude-haiku-4-5", "max_tokens": 1, "messages": []}),
        &[("x-api-key", "pk-proxy-secret-1")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let got = up.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].headers["authorization"], "Bearer sk-provider-openai-999");
    assert!(got[0].headers.get("x-api-key").is_none());
    assert_eq!(got[1].headers["x-api-key"], "sk-ant-provider-999");
    assert!(got[1].headers.get("authorization").is_none());
    let records = proxy.wait_records(2).await;
    let all = serde_json::to_string(&records).unwrap();
    // (Not "999" alone: a float such as 1.4287379999999998 has it.)
    for key in ["pk-proxy-secret", "sk-provider-openai-999", "sk-ant-provider-999"] {
        assert!(!all.contains(key), "{key} in {all}");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_silent_upstreams_are_gateway_errors() {
    let up = fake_upstream().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/v1", dead.local_addr().unwrap());
    drop(dead);
    let proxy = start_proxy(
        config_for(&up)
            .xai_base_url(dead_url)
            .response_timeout(Duration::from_millis(300))
            .idle_timeout(Duration::from_millis(300)),
    )
    .await;
    let url = format!("{}/v1/chat/completions", proxy.url());
    let r = post(&url, json!({"model": "grok-4", "messages": []}), &[]).await;
    assert_eq!(r.status(), 502);
    let r = post(
        &url,
        json!({"model": "gpt-4o", "messages": []}),
        &[("x-fake-scenario", "slow_headers"), ("x-fake-delay-ms", "2000")],
    )
    .await;
    assert_eq!(r.status(), 504);
    // A stream that goes silent: cut after the idle timeout.
    let r = post(
        &url,
        json!({"model": "gpt-4o", "messages": [], "stream": true}),
        &[("x-fake-scenario", "hang"), ("x-fake-delay-ms", "1000")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "the body is cut");

    let records = proxy.wait_records(3).await;
    let class = |p: &str, m: Method| {
        records
            .iter()
            .find(|r| r.provider == p && r.method == m)
            .and_then(|r| r.error_class)
    };
    assert_eq!(class("xai", Method::Generate), Some(ErrorClass::Network));
    assert_eq!(class("openai", Method::Generate), Some(ErrorClass::Timeout));
    assert_eq!(class("openai", Method::Stream), Some(ErrorClass::Timeout));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_stream_cancels_upstream_and_records_cancelled() {
    let up = fake_upstream().await;
    let proxy = start_proxy(config_for(&up)).await;
    let resp = post(
        &format!("{}/v1/chat/completions", proxy.url()),
        json!({"model": "gpt-4o-mini", "stream": true, "messages": [], "user": "carol"}),
        &[("x-fake-scenario", "hang"), ("x-fake-delay-ms", "20")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    // Read up to the first text, then go away.
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("\"The\"") {
        seen.extend_from_slice(&body.next().await.unwrap().unwrap());
    }
    drop(body);

    // The upstream sees its client (the proxy) go away.
    for _ in 0..100 {
        if up.state.cancelled.load(std::sync::atomic::Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.state.cancelled.load(std::sync::atomic::Ordering::SeqCst), 1);
    let records = proxy.wait_records(1).await;
    assert_eq!(records.len(), 1);
    let m = &records[0];
    assert_eq!(m.error_class, Some(ErrorClass::Cancelled));
    assert_eq!(m.method, Method::Stream);
    assert!(m.ttft_ms.is_some(), "output was seen before the client left");
    assert_eq!(m.tags.get("user").map(String::as_str), Some("carol"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_the_prometheus_exposition() {
    let up = fake_upstream().await;
    let memory = steer_metrics::sinks::MemorySink::new();
    let prometheus = steer_sink_prometheus::PrometheusSink::builder().build();
    let collector = steer_metrics::MetricsCollector::builder()
        .sink(memory.clone())
        .sink(prometheus.clone())
        .build()
        .unwrap();
    let proxy = steer_proxy::Proxy::new(config_for(&up).build().unwrap(), collector.clone())
        .unwrap()
        .metrics_endpoint(prometheus);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(proxy.serve(listener, async move {
        let _ = rx.await;
    }));
    let r = post(
        &format!("http://{addr}/v1/chat/completions"),
        json!({"model": "gpt-4o", "messages": []}),
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    collector.flush().await;
    let r = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("steer_llm_requests_total{"), "{text}");
    assert!(text.contains(r#"gen_ai_request_model="gpt-4o""#), "{text}");
    let _ = tx.send(());
    server.await.unwrap().unwrap();
    assert_eq!(memory.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_streams_in_flight() {
    let up = fake_upstream().await;
    let proxy = start_proxy(config_for(&up)).await;
    let url = format!("{}/v1/chat/completions", proxy.url());
    let resp = post(
        &url,
        json!({"model": "gpt-4o-mini", "stream": true, "messages": []}),
        &[("x-fake-delay-ms", "30")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let collector = proxy.collector.clone();
    let memory = proxy.memory.clone();
    let addr = proxy.addr;
    let stopping = tokio::spawn(proxy.stop());
    tokio::time::sleep(Duration::from_millis(50)).await;
    // New connections are refused while the stream still runs.
    assert!(reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .is_err());
    let body = resp.bytes().await.unwrap();
    assert!(body.ends_with(b"data: [DONE]\n\n"));
    stopping.await.unwrap();
    collector.flush().await;
    let records = memory.records();
    assert_eq!(records.len(), 1);
    assert!(records[0].error_class.is_none());
}
