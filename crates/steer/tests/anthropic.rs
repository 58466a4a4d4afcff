//! Anthropic Messages against a local server replaying the documented payloads.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_no_key, sse, Harness, KEY};
use futures::StreamExt;
use serde_json::json;
use steer::{ErrorClass, Message, Method, Request, SteerError, StreamEvent};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn message(usage: serde_json::Value) -> serde_json::Value {
    json!({
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hi! My name is Claude."}],
        "stop_reason": "end_turn", "stop_sequence": null, "usage": usage
    })
}

#[tokio::test]
async fn generate_sends_headers_and_costs_cache_reads_and_writes() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", KEY))
        .and(header("anthropic-version", "2023-06-01"))
        .and(body_partial_json(json!({
            "model": "claude-sonnet-4-5", "max_tokens": 256, "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hello"}], "stop_sequences": ["END"], "temperature": 0.5
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(message(json!({
            "input_tokens": 100, "cache_creation_input_tokens": 2000, "cache_read_input_tokens": 5000, "output_tokens": 300
        }))))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let req = Request::new(vec![Message::user("Hello")])
        .system("Be brief.")
        .max_tokens(256)
        .stop("END")
        .temperature(0.5);
    let resp = h
        .client
        .generate(req, "anthropic/claude-sonnet-4-5")
        .await
        .unwrap();
    assert_eq!(resp.text, "Hi! My name is Claude.");
    assert_eq!(resp.finish_reason.as_deref(), Some("end_turn"));
    let requests = server.received_requests().await.unwrap();
    assert!(
        requests[0].headers.get("authorization").is_none(),
        "Anthropic uses x-api-key only"
    );
    let m = h.only_record().await;
    assert_eq!(m.provider, "anthropic");
    assert_eq!(m.response_model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(
        m.input_tokens, 7100,
        "input + cache reads + cache writes, like every provider"
    );
    assert_eq!(m.cached_tokens, 5000);
    assert_eq!(m.cache_write_tokens, Some(2000));
    assert_eq!(m.output_tokens, 300);
    // 100*3 + 5000*0.30 + 2000*3.75 + 300*15 = 13800 / 1e6
    assert!((m.cost_usd.unwrap() - 0.0138).abs() < 1e-12, "{:?}", m.cost_usd);
    assert_no_key("record", &serde_json::to_string(&m).unwrap());
}

#[tokio::test]
async fn uncached_cost_and_routing_by_name() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(message(json!({
            "input_tokens": 2000, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1000
        }))))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    h.client.generate("Hello", "claude-haiku-4-5").await.unwrap();
    let m = h.only_record().await;
    assert_eq!(m.provider, "anthropic");
    // Priced by the requested model (haiku 4.5: 1 in, 5 out): 2000*1 + 1000*5 = 7000 / 1e6
    assert!((m.cost_usd.unwrap() - 0.007).abs() < 1e-12);
}

#[tokio::test]
async fn tool_use_is_returned_and_recorded() {
    let server = MockServer::start().await;
    let tools = json!([{"name": "get_weather", "input_schema": {"type": "object"}}]);
    Mock::given(path("/v1/messages"))
        .and(body_partial_json(json!({"tools": tools.clone()})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-opus-4-1-20250805",
            "content": [{"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 5}
        })))
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let resp = h
        .client
        .generate(Request::prompt("weather").tools(tools), "claude-opus-4-1")
        .await
        .unwrap();
    assert_eq!(resp.tool_calls[0].name, "get_weather");
    assert_eq!(resp.tool_calls[0].arguments, r#"{"city":"Paris"}"#);
    let m = h.only_record().await;
    assert_eq!(
        (m.tools_used.clone(), m.tools_invoked),
        (vec!["get_weather".to_string()], 1)
    );
}

fn documented_stream() -> Vec<u8> {
    sse(&[
        r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-haiku-4-5-20251001","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":1000,"output_tokens":1}}}"#,
        r#"event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        "event: ping\ndata: {\"type\": \"ping\"}",
        r#"event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
        r#"event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}"#,
        r#"event: content_block_stop
data: {"type":"content_block_stop","index":0}"#,
        r#"event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
        r#"event: message_stop
data: {"type":"message_stop"}"#,
    ])
}

#[tokio::test]
async fn documented_stream_yields_deltas_usage_and_ttft() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/messages"))
        .and(body_partial_json(json!({"stream": true})))
        .respond_with(ResponseTemplate::new(200).set_body_raw(documented_stream(), "text/event-stream"))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let mut s = h.client.stream("Hi", "claude-haiku-4-5").await.unwrap();
    let mut deltas = Vec::new();
    let mut done = None;
    while let Some(ev) = s.next().await {
        match ev.unwrap() {
            StreamEvent::Delta(d) => deltas.push(d),
            StreamEvent::Done(r) => done = Some(r),
            _ => unreachable!(),
        }
    }
    assert_eq!(deltas, vec!["Hello", "!"]);
    let done = done.unwrap();
    let m = h.only_record().await;
    assert_eq!(m, done.metrics);
    assert_eq!(m.method, Method::Stream);
    assert_eq!(
        (m.input_tokens, m.cached_tokens, m.output_tokens),
        (1025, 1000, 15)
    );
    // 25*1 + 1000*0.10 + 15*5 = 25 + 100 + 75 = 200 / 1e6
    assert!((m.cost_usd.unwrap() - 0.0002).abs() < 1e-12, "{:?}", m.cost_usd);
    assert!(m.ttft_ms.is_some());
}

#[tokio::test]
async fn overloaded_error_event_before_the_first_delta_is_retried() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            sse(&[
                r#"event: message_start
data: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","usage":{"input_tokens":5,"output_tokens":1}}}"#,
                r#"event: error
data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ]),
            "text/event-stream",
        ))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(documented_stream(), "text/event-stream"))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let resp = h
        .client
        .stream("Hi", "claude-sonnet-4-5")
        .await
        .unwrap()
        .collect_response()
        .await
        .unwrap();
    assert_eq!(resp.text, "Hello!");
    let m = h.only_record().await;
    assert_eq!((m.retries, m.error_class), (1, None));
}

#[tokio::test]
async fn error_event_after_a_delta_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            sse(&[
                r#"event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#,
                r#"event: error
data: {"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
            ]),
            "text/event-stream",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let mut s = h.client.stream("Hi", "claude-sonnet-4-5").await.unwrap();
    assert_eq!(s.next().await.unwrap().unwrap(), StreamEvent::Delta("Hel".into()));
    let err = s.next().await.unwrap().unwrap_err();
    assert_eq!(err.class(), ErrorClass::ServerError);
    assert!(s.next().await.is_none());
    let m = h.only_record().await;
    assert_eq!((m.retries, m.error_class), (0, Some(ErrorClass::ServerError)));
}

#[tokio::test]
async fn stream_without_message_stop_is_truncated() {
    let server = MockServer::start().await;
    let mut body = documented_stream();
    let cut = String::from_utf8(body.clone())
        .unwrap()
        .find("event: message_delta")
        .unwrap();
    body.truncate(cut);
    Mock::given(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .expect(1)
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let err = h
        .client
        .stream("Hi", "claude-haiku-4-5")
        .await
        .unwrap()
        .collect_response()
        .await
        .unwrap_err();
    assert!(matches!(err, SteerError::Network(_)), "{err:?}");
    assert_eq!(h.only_record().await.error_class, Some(ErrorClass::Network));
}

#[tokio::test]
async fn documented_errors_are_classified_and_recorded_once() {
    let cases = [
        (
            401,
            "authentication_error",
            "invalid x-api-key",
            ErrorClass::Authentication,
            false,
        ),
        (
            403,
            "permission_error",
            "Your API key does not have permission",
            ErrorClass::PermissionDenied,
            false,
        ),
        (
            404,
            "not_found_error",
            "model: claude-sonnet-9",
            ErrorClass::NotFound,
            false,
        ),
        (
            400,
            "invalid_request_error",
            "max_tokens: Field required",
            ErrorClass::InvalidRequest,
            false,
        ),
        (
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes",
            ErrorClass::InvalidRequest,
            false,
        ),
        (
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            ErrorClass::RateLimit,
            true,
        ),
        (
            500,
            "api_error",
            "Internal server error",
            ErrorClass::ServerError,
            true,
        ),
        (529, "overloaded_error", "Overloaded", ErrorClass::RateLimit, true),
    ];
    for (status, kind, msg, class, retried) in cases {
        let server = MockServer::start().await;
        let attempts = if retried { 4 } else { 1 };
        Mock::given(path("/v1/messages"))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("request-id", "req_018EeWyXxfu5pfWkrYcMdjWG")
                    .set_body_json(json!({"type": "error", "error": {"type": kind, "message": msg}})),
            )
            .expect(attempts)
            .mount(&server)
            .await;
        let h = Harness::new(&server);
        let err = h.client.generate("Hello", "claude-sonnet-4-5").await.unwrap_err();
        assert_eq!(err.class(), class, "{status} {kind}");
        assert_eq!(err.failure().unwrap().provider_code.as_deref(), Some(kind));
        let m = h.only_record().await;
        assert_eq!(m.error_class, Some(class));
        assert_eq!(m.retries, attempts as u32 - 1);
        assert!(m.error_message.as_deref().unwrap().contains(msg));
        server.verify().await;
    }
}

#[tokio::test]
async fn anthropic_retry_after_and_reset_headers() {
    let server = MockServer::start().await;
    let reset = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    Mock::given(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("anthropic-ratelimit-requests-remaining", "0")
                .insert_header("anthropic-ratelimit-requests-reset", reset.as_str())
                .set_body_json(
                    json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}),
                ),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(message(json!({"input_tokens": 1, "output_tokens": 1}))),
        )
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let t = std::time::Instant::now();
    h.client.generate("Hello", "claude-sonnet-4-5").await.unwrap();
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(h.only_record().await.retries, 1);
}

#[tokio::test]
async fn refusal_stop_reason_is_content_filter() {
    let server = MockServer::start().await;
    let mut body = message(json!({"input_tokens": 10, "output_tokens": 2}));
    body["stop_reason"] = json!("refusal");
    Mock::given(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let h = Harness::new(&server);
    let err = h.client.generate("Hello", "claude-sonnet-4-5").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::ContentFilter);
    assert_eq!(h.only_record().await.input_tokens, 10);
}
