//! OpenAI Chat Completions (and xAI, and compatible servers) against a
//! local server replaying the documented payloads.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{assert_no_key, sse, Harness, KEY};
use futures::StreamExt;
use serde_json::json;
use steer::{ErrorClass, Method, Request, SteerError, StreamEvent};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn completion(model: &str, content: &str) -> serde_json::Value {
    json!({
        "id": "chatcmpl-123", "object": "chat.completion", "created": 1_700_000_000, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10_000, "completion_tokens": 1_000, "total_tokens": 11_000,
                  "prompt_tokens_details": {"cached_tokens": 8_000, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}},
        "system_fingerprint": "fp_1"
    })
}

#[tokio::test]
async fn generate_sends_the_key_and_options_and_records_cached_cost() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(body_partial_json(json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
            "temperature": 0.2, "max_completion_tokens": 100, "top_p": 0.9, "stop": ["END"],
            "response_format": {"type": "json_object"}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("gpt-4o-mini-2024-07-18", "Hi!")))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let id = uuid::Uuid::now_v7();
    let req = Request::prompt("Hello")
        .system("Be brief.")
        .temperature(0.2)
        .max_tokens(100)
        .top_p(0.9)
        .stop("END")
        .json_mode()
        .request_id(id)
        .trace_id("trace-1")
        .tag("team", "search");
    let resp = h.client.generate(req, "gpt-4o-mini").await.unwrap();
    assert_eq!(resp.text, "Hi!");
    assert_eq!(resp.model, "gpt-4o-mini-2024-07-18");
    let m = h.only_record().await;
    assert_eq!(m, resp.metrics, "the caller gets the recorded record");
    assert_eq!(m.request_id, id);
    assert_eq!(m.trace_id.as_deref(), Some("trace-1"));
    assert_eq!(m.tags.get("team").map(String::as_str), Some("search"));
    assert_eq!((m.provider.as_str(), m.model.as_str()), ("openai", "gpt-4o-mini"));
    assert_eq!(m.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(m.method, Method::Generate);
    assert_eq!(
        (m.input_tokens, m.cached_tokens, m.output_tokens),
        (10_000, 8_000, 1_000)
    );
    assert_eq!(m.reasoning_tokens, Some(0));
    // (10000-8000)*0.15 + 8000*0.075 + 1000*0.60 = 300 + 600 + 600 = 1500 / 1e6
    assert!((m.cost_usd.unwrap() - 0.0015).abs() < 1e-12, "{:?}", m.cost_usd);
    assert_eq!(m.error_class, None);
    assert_eq!(m.retries, 0);
    assert!(m.latency_ms > 0.0);
    assert_no_key("record", &serde_json::to_string(&m).unwrap());
    assert_no_key("client Debug", &format!("{:?}", h.client));
}

#[tokio::test]
async fn tool_calls_are_returned_and_named_in_the_record() {
    let server = MockServer::start().await;
    let body = json!({
        "id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "gpt-4.1",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}},
                {"id": "call_3", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
            ]}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130}
    });
    let tools =
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    Mock::given(path("/v1/chat/completions"))
        .and(body_partial_json(
            json!({"tools": tools.clone(), "tool_choice": "auto"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let resp = h
        .client
        .generate(
            Request::prompt("weather?")
                .tools(tools)
                .tool_choice(json!("auto")),
            "gpt-4.1",
        )
        .await
        .unwrap();
    assert_eq!(resp.tool_calls.len(), 3);
    assert_eq!(resp.tool_calls[0].arguments, "{\"city\":\"Paris\"}");
    let m = h.only_record().await;
    assert_eq!(m.tools_used, vec!["get_weather", "get_time"]);
    assert_eq!(m.tools_invoked, 3);
}

#[tokio::test]
async fn stream_yields_deltas_then_usage_with_ttft() {
    let server = MockServer::start().await;
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-08-06",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": null})
        .to_string()
    };
    let usage =
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-2024-08-06",
        "choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 20, "total_tokens": 1020,
        "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}})
        .to_string();
    let body = sse(&[
        ": keep-alive comment",
        &format!(
            "data: {}",
            chunk(json!({"role": "assistant", "content": ""}), json!(null))
        ),
        &format!("data: {}", chunk(json!({"content": "Hel"}), json!(null))),
        &format!("data: {}", chunk(json!({"content": "lo"}), json!(null))),
        &format!("data: {}", chunk(json!({}), json!("stop"))),
        &format!("data: {usage}"),
        "data: [DONE]",
    ]);
    Mock::given(path("/v1/chat/completions"))
        .and(body_partial_json(
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let mut s = h.client.stream("Hi", "gpt-4o").await.unwrap();
    let mut deltas = Vec::new();
    let mut done = None;
    while let Some(item) = s.next().await {
        match item.unwrap() {
            StreamEvent::Delta(d) => deltas.push(d),
            StreamEvent::Done(r) => done = Some(r),
            _ => unreachable!(),
        }
    }
    assert_eq!(deltas, vec!["Hel", "lo"]);
    let done = done.unwrap();
    assert_eq!(done.text, "Hello");
    let m = h.only_record().await;
    assert_eq!(m, done.metrics);
    assert_eq!(m.method, Method::Stream);
    assert_eq!((m.input_tokens, m.output_tokens), (1000, 20));
    // 1000*2.50 + 20*10.00 = 2700 / 1e6
    assert!((m.cost_usd.unwrap() - 0.0027).abs() < 1e-12);
    let ttft = m.ttft_ms.unwrap();
    assert!(ttft > 0.0 && ttft <= m.latency_ms);
}

/// (status, OpenAI error body, expected class, retried?)
fn documented_errors() -> Vec<(u16, serde_json::Value, ErrorClass, bool)> {
    let err = |msg: &str, t: &str, code: Option<&str>| json!({"error": {"message": msg, "type": t, "param": null, "code": code}});
    vec![
        (
            401,
            err(
                &format!("Incorrect API key provided: {KEY}."),
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
            ErrorClass::Authentication,
            false,
        ),
        (
            403,
            err(
                "Project does not have access to model",
                "invalid_request_error",
                None,
            ),
            ErrorClass::PermissionDenied,
            false,
        ),
        (
            404,
            err(
                "The model `gpt-4o-mini` does not exist or you do not have access to it.",
                "invalid_request_error",
                Some("model_not_found"),
            ),
            ErrorClass::NotFound,
            false,
        ),
        (
            400,
            err("'messages' is a required property", "invalid_request_error", None),
            ErrorClass::InvalidRequest,
            false,
        ),
        (
            400,
            err(
                "Your request was rejected by our safety system",
                "invalid_request_error",
                Some("content_filter"),
            ),
            ErrorClass::ContentFilter,
            false,
        ),
        (
            429,
            err(
                "Rate limit reached for requests",
                "requests",
                Some("rate_limit_exceeded"),
            ),
            ErrorClass::RateLimit,
            true,
        ),
        (
            429,
            err(
                "You exceeded your current quota",
                "insufficient_quota",
                Some("insufficient_quota"),
            ),
            ErrorClass::RateLimit,
            false,
        ),
        (
            500,
            err(
                "The server had an error while processing your request.",
                "server_error",
                None,
            ),
            ErrorClass::ServerError,
            true,
        ),
        (
            503,
            err("The engine is currently overloaded", "server_error", None),
            ErrorClass::ServerError,
            true,
        ),
    ]
}

#[tokio::test]
async fn documented_errors_are_classified_retried_or_not_and_recorded_once() {
    for (status, body, class, retried) in documented_errors() {
        let server = MockServer::start().await;
        let attempts = if retried { 4 } else { 1 };
        Mock::given(path("/v1/chat/completions"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body.clone()))
            .expect(attempts)
            .mount(&server)
            .await;
        let h = Harness::new(&server);
        let err = h.client.generate("Hello", "gpt-4o-mini").await.unwrap_err();
        assert!(matches!(err, SteerError::Api(_)), "{status}: {err:?}");
        assert_eq!(err.class(), class, "{status} {body}");
        assert_eq!(err.status(), Some(status));
        let m = h.only_record().await;
        assert_eq!(m.error_class, Some(class));
        assert_eq!(m.retries, attempts as u32 - 1, "{status}");
        assert_eq!(Some(m.request_id), err.request_id());
        assert!(m.latency_ms > 0.0);
        assert!(m.error_message.is_some());
        assert_eq!(m.cost_usd, None, "no tokens known");
        assert_no_key("error Display", &err.to_string());
        assert_no_key("error Debug", &format!("{err:?}"));
        assert_no_key("record", &serde_json::to_string(&m).unwrap());
        server.verify().await;
    }
}

#[tokio::test]
async fn retry_after_is_honoured_and_the_retry_succeeds() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("gpt-4o", "ok")))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let t = Instant::now();
    let resp = h.client.generate("Hello", "gpt-4o").await.unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1), "waited for Retry-After");
    assert_eq!(resp.text, "ok");
    let m = h.only_record().await;
    assert_eq!(m.retries, 1);
    assert_eq!(m.error_class, None);
    assert!(m.latency_ms >= 1000.0, "latency covers the whole logical call");
}

#[tokio::test]
async fn openai_rate_limit_reset_headers_are_honoured() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-ratelimit-remaining-requests", "0")
                .insert_header("x-ratelimit-reset-requests", "300ms")
                .insert_header("x-ratelimit-reset-tokens", "6m0s")
                .set_body_json(json!({"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("gpt-4o", "ok")))
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let t = Instant::now();
    h.client.generate("Hello", "gpt-4o").await.unwrap();
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(
        waited < Duration::from_secs(60),
        "took the exhausted limit's reset, not the longest"
    );
    assert_eq!(h.only_record().await.retries, 1);
}

#[tokio::test]
async fn retry_hint_beyond_the_deadline_gives_up_at_once() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "3600")
                .set_body_json(json!({"error": {"message": "slow down", "type": "tokens", "code": "rate_limit_exceeded"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::with(&server, |b| {
        b.retry(common::fast_retry().total_deadline(Duration::from_secs(5)))
    });
    let t = Instant::now();
    let err = h.client.generate("Hello", "gpt-4o").await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(err.class(), ErrorClass::RateLimit);
    assert_eq!(
        err.failure().unwrap().retry_after,
        Some(Duration::from_secs(3600))
    );
    assert_eq!(h.only_record().await.retries, 0);
}

#[tokio::test]
async fn finish_reason_content_filter_is_an_error_with_its_tokens() {
    let server = MockServer::start().await;
    let mut body = completion("gpt-4o", "");
    body["choices"][0]["finish_reason"] = json!("content_filter");
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let err = h.client.generate("Hello", "gpt-4o").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::ContentFilter);
    let m = h.only_record().await;
    assert_eq!(m.error_class, Some(ErrorClass::ContentFilter));
    assert_eq!(m.input_tokens, 10_000, "tokens were billed and are recorded");
    assert!(m.cost_usd.is_some());
}

#[tokio::test]
async fn malformed_json_is_invalid_response_not_retried() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(b"{\"id\": \"x\", \"choices\": [".to_vec(), "application/json"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let err = h.client.generate("Hello", "gpt-4o").await.unwrap_err();
    assert!(matches!(err, SteerError::InvalidResponse(_)), "{err:?}");
    assert_eq!(h.only_record().await.error_class, Some(ErrorClass::Unknown));
}

#[tokio::test]
async fn truncated_stream_after_a_delta_is_a_network_error_not_retried() {
    let server = MockServer::start().await;
    let body =
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"ind"
            .to_vec();
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let mut s = h.client.stream("Hi", "gpt-4o").await.unwrap();
    assert_eq!(s.next().await.unwrap().unwrap(), StreamEvent::Delta("Hel".into()));
    let err = s.next().await.unwrap().unwrap_err();
    assert!(matches!(err, SteerError::Network(_)), "{err:?}");
    assert!(s.next().await.is_none(), "the stream ends after its error");
    let m = h.only_record().await;
    assert_eq!(m.error_class, Some(ErrorClass::Network));
    assert_eq!(m.retries, 0);
    assert!(m.ttft_ms.is_some());
}

#[tokio::test]
async fn truncated_stream_before_any_delta_is_retried() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(b"data: {\"choi".to_vec(), "text/event-stream"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            sse(&[
                r#"data: {"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}"#,
                r#"data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
                r#"data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#,
                "data: [DONE]",
            ]),
            "text/event-stream",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let resp = h
        .client
        .stream("Hi", "gpt-4o")
        .await
        .unwrap()
        .collect_response()
        .await
        .unwrap();
    assert_eq!(resp.text, "ok");
    let m = h.only_record().await;
    assert_eq!((m.retries, m.error_class), (1, None));
    assert_eq!(m.input_tokens, 5);
}

#[tokio::test]
async fn stream_http_errors_are_returned_by_stream_and_recorded() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let err = h.client.stream("Hi", "gpt-4o").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Authentication);
    let m = h.only_record().await;
    assert_eq!(
        (m.method, m.error_class),
        (Method::Stream, Some(ErrorClass::Authentication))
    );
}

#[tokio::test]
async fn xai_uses_its_base_url_key_and_reasoning_accounting() {
    let server = MockServer::start().await;
    Mock::given(path("/xai/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(body_partial_json(json!({"model": "grok-4", "max_tokens": 50})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "x", "object": "chat.completion", "created": 1, "model": "grok-4-0709",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "42"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 32, "completion_tokens": 9, "total_tokens": 135,
                      "prompt_tokens_details": {"cached_tokens": 6},
                      "completion_tokens_details": {"reasoning_tokens": 94}}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    h.client
        .generate(Request::prompt("?").max_tokens(50), "grok-4")
        .await
        .unwrap();
    let m = h.only_record().await;
    assert_eq!(m.provider, "xai");
    assert_eq!((m.input_tokens, m.cached_tokens, m.output_tokens), (32, 6, 103));
    // 26*3 + 6*0.75 + 103*15 = 78 + 4.5 + 1545 = 1627.5 / 1e6
    assert!((m.cost_usd.unwrap() - 0.0016275).abs() < 1e-12);
}

#[tokio::test]
async fn compatible_server_by_name_without_key_and_unknown_cost() {
    let server = MockServer::start().await;
    Mock::given(path("/ollama/v1/chat/completions"))
        .and(body_partial_json(json!({"model": "llama3.2:1b", "max_tokens": 20})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "x", "object": "chat.completion", "created": 1, "model": "llama3.2:1b",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::with(&server, |b| {
        b.openai_compatible("ollama", format!("{}/ollama/v1", server.uri()), None)
    });
    h.client
        .generate(Request::prompt("hi").max_tokens(20), "ollama/llama3.2:1b")
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    assert!(
        requests[0].headers.get("authorization").is_none(),
        "no key sent to a keyless server"
    );
    let m = h.only_record().await;
    assert_eq!((m.provider.as_str(), m.model.as_str()), ("ollama", "llama3.2:1b"));
    assert_eq!(m.cost_usd, None, "unknown price is None, never 0");
    assert_eq!((m.input_tokens, m.output_tokens), (3, 1));
}

#[tokio::test]
async fn x_should_retry_overrides_the_status_and_request_ids_are_kept() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(500)
                .insert_header("x-should-retry", "false")
                .insert_header("x-request-id", "req_abc123")
                .set_body_json(json!({"error": {"message": "boom", "type": "server_error", "code": null}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let err = h.client.generate("Hello", "gpt-4o").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::ServerError);
    assert!(err.to_string().contains("req_abc123"), "{err}");
    assert_eq!(h.only_record().await.retries, 0);
}
