//! Gemini, Azure OpenAI, the OpenAI-compatible presets and embeddings,
//! against a local server answering with each provider's documented wire
//! format: request shape and auth, usage, cost, finish reason, tool calls,
//! streaming TTFT, retry hints, errors.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{assert_no_key, sse, Harness, KEY};
use serde_json::json;
use steer::{ErrorClass, Method, Request, SteerError};
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn gemini_base(server: &MockServer) -> String {
    format!("{}/v1beta", server.uri())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// `generateContent` as documented (REST reference, Gemini 2.5 Flash).
fn gemini_answer(parts: serde_json::Value, finish: &str) -> serde_json::Value {
    json!({
        "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": 0}],
        "usageMetadata": {"promptTokenCount": 2000, "candidatesTokenCount": 100, "totalTokenCount": 2400,
            "cachedContentTokenCount": 1500, "thoughtsTokenCount": 300,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 2000}]},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "mcNraL2jA4ad1PIP0p3Q6AE"
    })
}

#[tokio::test]
async fn gemini_generate_sends_its_key_and_measures_thoughts_and_cache() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:generateContent"))
        .and(header("x-goog-api-key", KEY))
        .and(body_partial_json(json!({
            "contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {"maxOutputTokens": 256}
        })))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(gemini_answer(json!([{"text": "Hi!"}]), "STOP")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let base = gemini_base(&server);
    let h = Harness::with(&server, |b| b.base_url("gemini", base).gemini_api_key(KEY));
    let resp = h
        .client
        .generate(
            Request::prompt("Hello").system("Be brief.").max_tokens(256),
            "gemini-2.5-flash",
        )
        .await
        .unwrap();
    assert_eq!(resp.text, "Hi!");
    let req = &server.received_requests().await.unwrap()[0];
    assert!(req.headers.get("authorization").is_none());
    let m = h.only_record().await;
    assert_eq!(
        (m.provider.as_str(), m.model.as_str()),
        ("gemini", "gemini-2.5-flash")
    );
    assert_eq!(m.finish_reason.as_deref(), Some("STOP"));
    assert_eq!(m.input_tokens, 2000);
    assert_eq!(m.cached_tokens, 1500);
    assert_eq!(m.output_tokens, 400, "thoughts are billed as output");
    assert_eq!(m.reasoning_tokens, Some(300));
    // gemini-2.5-flash: 0.30 in, 0.03 cached, 2.50 out (per 1M):
    // 500*0.30 + 1500*0.03 + 400*2.50 = 150 + 45 + 1000 = 1195
    let cost = m.cost_usd.unwrap();
    let price = h.client.prices().get("gemini-2.5-flash").unwrap().clone();
    let want =
        (500.0 * price.input + 1500.0 * price.cached_input.unwrap_or(price.input) + 400.0 * price.output)
            / 1e6;
    assert!(close(cost, want), "{cost} != {want}");
}

#[tokio::test]
async fn gemini_function_calls_and_safety_blocks() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-pro:generateContent"))
        .respond_with(ResponseTemplate::new(200).set_body_json(gemini_answer(
            json!([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]),
            "STOP",
        )))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash-lite:generateContent"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
            "modelVersion": "gemini-2.5-flash-lite"
        })))
        .mount(&server)
        .await;
    let base = gemini_base(&server);
    let h = Harness::with(&server, |b| b.base_url("gemini", base).gemini_api_key(KEY));
    let resp = h
        .client
        .generate("weather?", "gemini/gemini-2.5-pro")
        .await
        .unwrap();
    assert_eq!(resp.tool_calls[0].name, "get_weather");
    assert_eq!(resp.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
    let e = h
        .client
        .generate("bad", "gemini-2.5-flash-lite")
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::ContentFilter);
    let records = h.records().await;
    assert_eq!(records[0].tools_used, vec!["get_weather".to_string()]);
    assert_eq!(records[1].finish_reason.as_deref(), Some("SAFETY"));
    assert_eq!(records[1].input_tokens, 9, "a blocked prompt is still measured");
}

#[tokio::test]
async fn gemini_stream_ttft_counts_thoughts() {
    let server = MockServer::start().await;
    let body = sse(&[
        r#"data: {"candidates":[{"content":{"parts":[{"text":"Let me think","thought":true}],"role":"model"},"index":0}],"modelVersion":"gemini-2.5-flash"}"#,
        r#"data: {"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"modelVersion":"gemini-2.5-flash"}"#,
        r#"data: {"candidates":[{"content":{"parts":[{"text":"lo"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":2,"thoughtsTokenCount":5,"totalTokenCount":19},"modelVersion":"gemini-2.5-flash"}"#,
    ]);
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:streamGenerateContent"))
        .and(query_param("alt", "sse"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .mount(&server)
        .await;
    let base = gemini_base(&server);
    let h = Harness::with(&server, |b| b.base_url("gemini", base).gemini_api_key(KEY));
    let resp = h
        .client
        .stream("Hello", "gemini-2.5-flash")
        .await
        .unwrap()
        .collect_response()
        .await
        .unwrap();
    assert_eq!(resp.text, "Hello");
    let m = h.only_record().await;
    assert_eq!(m.method, Method::Stream);
    assert!(m.ttft_ms.is_some());
    assert_eq!(
        (m.input_tokens, m.output_tokens, m.reasoning_tokens),
        (12, 7, Some(5))
    );
    assert_eq!(m.finish_reason.as_deref(), Some("STOP"));
}

#[tokio::test]
async fn gemini_errors_retry_hints_and_bad_keys() {
    let server = MockServer::start().await;
    // 429 with the documented RetryInfo detail, then success.
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:generateContent"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {
            "code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.2s"}]}})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:generateContent"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(gemini_answer(json!([{"text": "ok"}]), "STOP")),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-pro:generateContent"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com"}]}})))
        .mount(&server)
        .await;
    let base = gemini_base(&server);
    let h = Harness::with(&server, |b| {
        b.base_url("gemini", base)
            .gemini_api_key(KEY)
            .retry(steer::RetryConfig::default().max_backoff(Duration::from_secs(5)))
    });
    let started = std::time::Instant::now();
    let resp = h.client.generate("x", "gemini-2.5-flash").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "the retryDelay was honoured"
    );
    assert_eq!(resp.metrics.retries, 1);
    let e = h.client.generate("x", "gemini-2.5-pro").await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Authentication);
    assert_eq!(e.status(), Some(400));
    assert_no_key("error", &e.to_string());
    let e = Harness::with(&server, |b| b.ignore_env())
        .client
        .generate("x", "gemini-2.5-flash")
        .await
        .unwrap_err();
    assert!(matches!(e, SteerError::MissingApiKey(_)), "{e}");
    assert!(e.to_string().contains("GEMINI_API_KEY"), "{e}");
}

fn azure_completion() -> serde_json::Value {
    json!({
        "choices": [{"content_filter_results": {"hate": {"filtered": false, "severity": "safe"}},
            "finish_reason": "stop", "index": 0, "logprobs": null,
            "message": {"content": "Hello!", "refusal": null, "role": "assistant"}}],
        "created": 1_732_000_000, "id": "chatcmpl-AzX", "model": "gpt-4o-2024-08-06",
        "object": "chat.completion",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
        "system_fingerprint": "fp_b705f0c291",
        "usage": {"completion_tokens": 10, "prompt_tokens": 1000,
            "prompt_tokens_details": {"cached_tokens": 0}, "total_tokens": 1010}
    })
}

#[tokio::test]
async fn azure_deployment_is_the_model_and_the_reported_model_is_priced() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/prod-chat/chat/completions"))
        .and(query_param("api-version", "2024-10-21"))
        .and(header("api-key", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(azure_completion()))
        .expect(1)
        .mount(&server)
        .await;
    let uri = server.uri();
    let h = Harness::with(&server, |b| b.azure_openai(format!("{uri}/"), KEY));
    h.client.generate("hi", "azure/prod-chat").await.unwrap();
    let m = h.only_record().await;
    assert_eq!((m.provider.as_str(), m.model.as_str()), ("azure", "prod-chat"));
    assert_eq!(m.response_model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!(m.finish_reason.as_deref(), Some("stop"));
    // Priced as the model Azure reports: gpt-4o-2024-08-06 (2.50 in, 10 out).
    let p = steer::measure::price_for(h.client.prices(), "azure", "prod-chat", Some("gpt-4o-2024-08-06"))
        .unwrap();
    assert!(close(
        m.cost_usd.unwrap(),
        (1000.0 * p.input + 10.0 * p.output) / 1e6
    ));
    assert!(m.cost_usd.unwrap() > 0.0);
}

#[tokio::test]
async fn azure_entra_token_and_a_missing_endpoint() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/d1/chat/completions"))
        .and(query_param("api-version", "2025-04-01-preview"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(azure_completion()))
        .expect(1)
        .mount(&server)
        .await;
    let uri = server.uri();
    let h = Harness::with(&server, |b| {
        b.ignore_env()
            .base_url("azure", format!("{uri}/openai/deployments"))
            .azure_ad_token(KEY)
            .azure_api_version("2025-04-01-preview")
    });
    h.client.generate("hi", "azure/d1").await.unwrap();
    let e = Harness::with(&server, |b| b.ignore_env())
        .client
        .generate("hi", "azure/d1")
        .await
        .unwrap_err();
    assert!(matches!(e, SteerError::Config(_)), "{e}");
    assert!(e.to_string().contains("AZURE_OPENAI_ENDPOINT"), "{e}");
}

#[tokio::test]
async fn presets_local_servers_need_no_key_hosted_ones_do() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"model": "llama3.2"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "llama3.2",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 26, "completion_tokens": 2, "total_tokens": 28}})))
        .mount(&server)
        .await;
    let uri = server.uri();
    let h = Harness::with(&server, |b| {
        b.ignore_env().base_url("ollama", format!("{uri}/v1"))
    });
    h.client.generate("hi", "ollama/llama3.2").await.unwrap();
    let req = &server.received_requests().await.unwrap()[0];
    assert!(req.headers.get("authorization").is_none(), "no key, no header");
    let m = h.only_record().await;
    assert_eq!(
        (m.provider.as_str(), m.input_tokens, m.cost_usd),
        ("ollama", 26, None)
    );
    let e = h
        .client
        .generate("hi", "groq/llama-3.3-70b-versatile")
        .await
        .unwrap_err();
    assert!(matches!(e, SteerError::MissingApiKey(_)), "{e}");
    assert!(e.to_string().contains("GROQ_API_KEY"), "{e}");
}

#[tokio::test]
async fn embeddings_are_measured_with_their_own_operation() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(body_partial_json(
            json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "data": [{"object": "embedding", "index": 1, "embedding": [0.5, 0.5]},
                     {"object": "embedding", "index": 0, "embedding": [0.1, -0.2]}],
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 1_000_000, "total_tokens": 1_000_000}})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-embedding-001:batchEmbedContents"))
        .and(header("x-goog-api-key", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "embeddings": [{"values": [0.25, 0.75, 0.0]}]})))
        .mount(&server)
        .await;
    let base = gemini_base(&server);
    let h = Harness::with(&server, |b| b.base_url("gemini", base).gemini_api_key(KEY));
    let r = h
        .client
        .embed(
            steer::EmbedRequest::from(vec!["a", "b"]).tag("feature", "search"),
            "text-embedding-3-small",
        )
        .await
        .unwrap();
    assert_eq!(
        r.embeddings,
        vec![vec![0.1, -0.2], vec![0.5, 0.5]],
        "in input order"
    );
    let g = h
        .client
        .embed("hello", "gemini/gemini-embedding-001")
        .await
        .unwrap();
    assert_eq!(g.embeddings[0].len(), 3);
    let s = h
        .client
        .embed("hello world", "sim/text-embedding-3-small")
        .await
        .unwrap();
    assert_eq!(s.embeddings[0].len(), 8);
    let records = h.records().await;
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|m| m.method == Method::Embeddings));
    assert_eq!(records[0].input_tokens, 1_000_000);
    assert_eq!(records[0].tags.get("feature").map(String::as_str), Some("search"));
    let price = h.client.prices().get("text-embedding-3-small").unwrap().input;
    assert!(
        close(records[0].cost_usd.unwrap(), price),
        "1M tokens cost the per-1M price"
    );
    assert_eq!(records[1].provider, "gemini");
    let e = h
        .client
        .embed("x", "anthropic/claude-sonnet-4-5")
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::InvalidRequest);
}
