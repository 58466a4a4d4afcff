//! The crate-internal interface through the real SDK against a local fake
//! Bedrock (`tests/bedrock/fake.rs`), with static test credentials.
#![allow(clippy::unwrap_used)]

#[path = "../../../tests/bedrock/fake.rs"]
mod fake;

use std::time::{Duration, Instant};

use serde_json::json;
use steer_metrics::ErrorClass;

use self::fake::{delayed, error, event, exception, json, stream, with_headers, Fake, Reply};
use super::Bedrock;
use crate::error::FailureKind;
use crate::providers::Chunk;
use crate::types::{Message, Request};

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const KEY: &str = "AKIDSTEERTEST";
const SECRET: &str = "steer-test-secret-do-not-log-0123456789";
const T: Duration = Duration::from_secs(5);

fn client(f: &Fake) -> Bedrock {
    Bedrock::with_endpoint(&f.url, "us-east-1", (KEY, SECRET, Some("steer-session-token")))
}

/// A Converse answer in the documented shape (`output.message`, `stopReason`,
/// `usage`, `metrics`), with prompt-cache usage: `inputTokens` excludes the
/// cache reads and writes, `totalTokens` includes them.
fn documented_answer() -> serde_json::Value {
    json!({
        "output": {"message": {"role": "assistant", "content": [
            {"text": "The most popular song on WZPZ is Elemental Hotel by 8 Storey Hike."}
        ]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 12, "outputTokens": 17, "totalTokens": 3029,
                  "cacheReadInputTokens": 1800, "cacheWriteInputTokens": 1200},
        "metrics": {"latencyMs": 1175}
    })
}

#[tokio::test]
async fn converse_answer_usage_with_cache_tokens_and_signed_request() {
    let f = Fake::start(vec![json(&documented_answer())]).await;
    let req = Request::new(vec![Message::user("What is the most popular song on WZPZ?")])
        .system("You are a radio DJ.")
        .max_tokens(200)
        .temperature(0.2)
        .top_p(0.9)
        .stop("END")
        .tools(json!([{"type": "function", "function": {"name": "top_song",
            "description": "Get the most popular song played on a radio station.",
            "parameters": {"type": "object", "properties": {"sign": {"type": "string"}}, "required": ["sign"]}}}]));
    let c = client(&f).converse(&req, MODEL, T).await.unwrap();
    assert!(c.text.starts_with("The most popular song on WZPZ"));
    assert_eq!(c.finish_reason.as_deref(), Some("end_turn"));
    assert_eq!(
        c.usage.input_tokens, 3012,
        "12 uncached + 1800 read + 1200 written"
    );
    assert_eq!(
        c.usage.input_tokens + c.usage.output_tokens,
        3029,
        "= totalTokens"
    );
    assert_eq!(c.usage.cached_tokens, 1800);
    assert_eq!(c.usage.cache_write_tokens, Some(1200));
    assert_eq!(c.usage.output_tokens, 17);
    assert_eq!(
        c.response_model.as_deref(),
        Some(MODEL),
        "Bedrock echoes no model"
    );

    let r = &f.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    );
    let auth = r.header("authorization").unwrap();
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={KEY}/")),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
    assert_eq!(r.header("x-amz-security-token"), Some("steer-session-token"));
    assert!(
        !r.headers.iter().any(|(_, v)| v.contains(SECRET)),
        "the secret key is never sent"
    );
    let body = r.json();
    assert_eq!(body["messages"][0]["role"], "user");
    assert_eq!(
        body["messages"][0]["content"][0]["text"],
        "What is the most popular song on WZPZ?"
    );
    assert_eq!(body["system"][0]["text"], "You are a radio DJ.");
    assert_eq!(body["inferenceConfig"]["maxTokens"], 200);
    assert_eq!(body["inferenceConfig"]["stopSequences"], json!(["END"]));
    assert!((body["inferenceConfig"]["topP"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    let spec = &body["toolConfig"]["tools"][0]["toolSpec"];
    assert_eq!(spec["name"], "top_song");
    assert_eq!(spec["inputSchema"]["json"]["required"], json!(["sign"]));
}

#[tokio::test]
async fn converse_tool_use() {
    // The Bedrock user guide's tool-use example answer.
    let answer = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "top_song", "input": {"sign": "WZPZ"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 375, "outputTokens": 56, "totalTokens": 431},
        "metrics": {"latencyMs": 1410}
    });
    let f = Fake::start(vec![json(&answer)]).await;
    let c = client(&f)
        .converse(
            &Request::prompt("What is the most popular song on WZPZ?"),
            MODEL,
            T,
        )
        .await
        .unwrap();
    assert_eq!(c.finish_reason.as_deref(), Some("tool_use"));
    assert_eq!(c.text, "");
    assert_eq!(c.tool_calls.len(), 1);
    assert_eq!(c.tool_calls[0].id, "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
    assert_eq!(c.tool_calls[0].name, "top_song");
    assert_eq!(c.tool_calls[0].arguments, r#"{"sign":"WZPZ"}"#);
    assert_eq!(c.usage.input_tokens, 375);
    assert_eq!(c.usage.cache_write_tokens, None);
}

#[tokio::test]
async fn guardrail_and_content_filter_stops_fail_with_usage() {
    for reason in ["guardrail_intervened", "content_filtered"] {
        let answer = json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "Sorry, the model cannot answer this question."}]}},
            "stopReason": reason,
            "usage": {"inputTokens": 20, "outputTokens": 9, "totalTokens": 29},
            "metrics": {"latencyMs": 300}
        });
        let f = Fake::start(vec![json(&answer)]).await;
        let e = client(&f)
            .converse(&Request::prompt("x"), MODEL, T)
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::ContentFilter, "{reason}");
        assert!(!e.retryable);
        assert_eq!(e.provider_code.as_deref(), Some(reason));
        let p = e.partial.unwrap();
        assert_eq!(p.usage.input_tokens, 20);
        assert_eq!(p.finish_reason.as_deref(), Some(reason));
    }
}

#[tokio::test]
async fn throttling_is_a_retryable_rate_limit() {
    let mut reply = error(
        429,
        "ThrottlingException",
        "Too many requests, please wait before trying again.",
    );
    if let Reply::Body { headers, .. } = &mut reply {
        headers.push(("Retry-After".into(), "2".into()));
    }
    let f = Fake::start(vec![reply]).await;
    let e = client(&f)
        .converse(&Request::prompt("hi"), MODEL, T)
        .await
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::Api);
    assert_eq!(e.class, ErrorClass::RateLimit);
    assert!(e.retryable);
    assert_eq!(e.status, Some(429));
    assert_eq!(e.provider_code.as_deref(), Some("ThrottlingException"));
    assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
    assert!(e.message.starts_with("Too many requests"), "{}", e.message);
    assert!(e.message.contains("f1e2d3c4-err"), "request id: {}", e.message);
    assert!(!e.message.contains(SECRET));
}

#[tokio::test]
async fn access_denied_is_permission_denied() {
    let f = Fake::start(vec![error(
        403,
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    )])
    .await;
    let e = client(&f)
        .converse(&Request::prompt("hi"), MODEL, T)
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::PermissionDenied);
    assert!(!e.retryable);
    assert_eq!(e.status, Some(403));
    assert_eq!(e.provider_code.as_deref(), Some("AccessDeniedException"));
}

#[tokio::test]
async fn every_documented_exception_is_classified() {
    let cases = [
        (
            403,
            "UnrecognizedClientException",
            ErrorClass::Authentication,
            false,
        ),
        (403, "ExpiredTokenException", ErrorClass::Authentication, false),
        (400, "ValidationException", ErrorClass::InvalidRequest, false),
        (404, "ResourceNotFoundException", ErrorClass::NotFound, false),
        (408, "ModelTimeoutException", ErrorClass::Timeout, true),
        (503, "ServiceUnavailableException", ErrorClass::ServerError, true),
        (500, "InternalServerException", ErrorClass::ServerError, true),
        (429, "ModelNotReadyException", ErrorClass::ServerError, true),
        (424, "ModelErrorException", ErrorClass::ServerError, true),
        (400, "ServiceQuotaExceededException", ErrorClass::RateLimit, false),
        (502, "SomeFutureException", ErrorClass::ServerError, true),
    ];
    let f = Fake::start(cases.iter().map(|(s, x, _, _)| error(*s, x, "m")).collect()).await;
    let b = client(&f);
    for (status, exception, class, retryable) in cases {
        let e = b.converse(&Request::prompt("hi"), MODEL, T).await.unwrap_err();
        assert_eq!((e.class, e.retryable), (class, retryable), "{exception}");
        assert_eq!(e.status, Some(status));
    }
}

#[tokio::test]
async fn network_failure_and_timeout() {
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let b = Bedrock::with_endpoint(&format!("http://{closed}"), "us-east-1", (KEY, SECRET, None));
    let e = b.converse(&Request::prompt("hi"), MODEL, T).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Network, "{}", e.message);
    assert!(e.retryable);
    assert!(!e.message.contains(SECRET));

    let f = Fake::start(vec![delayed(Duration::from_secs(3), json(&documented_answer()))]).await;
    let started = Instant::now();
    let e = client(&f)
        .converse(&Request::prompt("hi"), MODEL, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A ConverseStream answer as Bedrock frames it: reasoning first, then text,
/// then a tool call whose input arrives in pieces, then `messageStop` and
/// `metadata` (usage, with cache tokens). Payloads carry Bedrock's `p`
/// padding field.
fn stream_frames() -> Vec<(Duration, Vec<u8>)> {
    let ms = Duration::from_millis;
    vec![
        (
            ms(0),
            event("messageStart", &json!({"role": "assistant", "p": "abcdefgh"})),
        ),
        (
            ms(150),
            event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "The user asks"}}, "p": "abc"}),
            ),
        ),
        (
            ms(0),
            event("contentBlockStop", &json!({"contentBlockIndex": 0, "p": "ab"})),
        ),
        (
            ms(250),
            event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 1, "delta": {"text": "Let me "}, "p": "abcd"}),
            ),
        ),
        (
            ms(0),
            event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 1, "delta": {"text": "check."}, "p": "a"}),
            ),
        ),
        (
            ms(0),
            event("contentBlockStop", &json!({"contentBlockIndex": 1, "p": "abcde"})),
        ),
        (
            ms(0),
            event(
                "contentBlockStart",
                &json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_Xz9", "name": "top_song"}}, "p": "ab"}),
            ),
        ),
        (
            ms(0),
            event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"sign\": \"WZ"}}, "p": "abc"}),
            ),
        ),
        (
            ms(0),
            event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "PZ\"}"}}}),
            ),
        ),
        (ms(0), event("contentBlockStop", &json!({"contentBlockIndex": 2}))),
        (
            ms(0),
            event(
                "messageStop",
                &json!({"stopReason": "tool_use", "p": "abcdefghij"}),
            ),
        ),
        (
            ms(0),
            event(
                "metadata",
                &json!({"usage": {"inputTokens": 25, "outputTokens": 48, "totalTokens": 1073,
                                  "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 0},
                        "metrics": {"latencyMs": 812}, "p": "abcdef"}),
            ),
        ),
    ]
}

#[tokio::test]
async fn stream_order_ttft_tool_use_and_usage() {
    let f = Fake::start(vec![Reply::Stream {
        frames: stream_frames(),
    }])
    .await;
    let started = Instant::now();
    let mut s = client(&f)
        .converse_stream(
            &Request::prompt("What is the most popular song on WZPZ?"),
            MODEL,
            T,
        )
        .await
        .unwrap();
    let mut chunks = Vec::new();
    let mut first_output = None;
    let mut first_text = None;
    while let Some(c) = s.next().await.unwrap() {
        first_output.get_or_insert(started.elapsed());
        if matches!(c, Chunk::Text(_)) {
            first_text.get_or_insert(started.elapsed());
        }
        chunks.push(c);
    }
    assert_eq!(
        chunks,
        vec![
            Chunk::Output, // reasoning: the first output, counts for TTFT
            Chunk::Text("Let me ".into()),
            Chunk::Text("check.".into()),
            Chunk::Output, // tool use start
            Chunk::Output, // tool input deltas
            Chunk::Output,
        ]
    );
    let (first_output, first_text) = (first_output.unwrap(), first_text.unwrap());
    assert!(first_output >= Duration::from_millis(150), "{first_output:?}");
    assert!(
        first_text >= first_output + Duration::from_millis(200),
        "the first output (reasoning) came before the first text: {first_output:?} vs {first_text:?}"
    );
    let c = s.finish().unwrap();
    assert_eq!(c.text, "Let me check.");
    assert_eq!(c.finish_reason.as_deref(), Some("tool_use"));
    assert_eq!(c.tool_calls.len(), 1);
    assert_eq!(c.tool_calls[0].id, "tooluse_Xz9");
    assert_eq!(c.tool_calls[0].arguments, r#"{"sign": "WZPZ"}"#);
    assert_eq!(c.usage.input_tokens, 1025);
    assert_eq!(c.usage.cached_tokens, 1000);
    assert_eq!(c.usage.cache_write_tokens, Some(0));
    assert_eq!(c.usage.output_tokens, 48);
    assert_eq!(c.response_model.as_deref(), Some(MODEL));
    assert_eq!(
        f.requests()[0].path,
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
    );
}

#[tokio::test]
async fn stream_errors_before_during_and_cut_short() {
    // Refused before the stream starts.
    let f = Fake::start(vec![error(
        429,
        "ThrottlingException",
        "Too many tokens, please wait before trying again.",
    )])
    .await;
    let e = client(&f)
        .converse_stream(&Request::prompt("hi"), MODEL, T)
        .await
        .unwrap_err();
    assert_eq!(
        (e.class, e.retryable, e.status),
        (ErrorClass::RateLimit, true, Some(429))
    );

    // An exception frame mid-stream.
    let f = Fake::start(vec![stream(vec![
        event("messageStart", &json!({"role": "assistant"})),
        event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
        ),
        exception(
            "throttlingException",
            "Too many tokens, please wait before trying again.",
        ),
    ])])
    .await;
    let mut s = client(&f)
        .converse_stream(&Request::prompt("hi"), MODEL, T)
        .await
        .unwrap();
    assert_eq!(s.next().await.unwrap(), Some(Chunk::Text("Hel".into())));
    let e = s.next().await.unwrap_err();
    assert_eq!(e.class, ErrorClass::RateLimit, "{}", e.message);
    assert!(e.message.starts_with("Too many tokens"), "{}", e.message);

    let f = Fake::start(vec![stream(vec![
        event("messageStart", &json!({"role": "assistant"})),
        exception("modelStreamErrorException", "The model stream failed."),
    ])])
    .await;
    let mut s = client(&f)
        .converse_stream(&Request::prompt("hi"), MODEL, T)
        .await
        .unwrap();
    assert_eq!(s.next().await.unwrap_err().class, ErrorClass::ServerError);

    // The body ends before messageStop.
    let f = Fake::start(vec![stream(vec![
        event("messageStart", &json!({"role": "assistant"})),
        event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
        ),
    ])])
    .await;
    let mut s = client(&f)
        .converse_stream(&Request::prompt("hi"), MODEL, T)
        .await
        .unwrap();
    while s.next().await.unwrap().is_some() {}
    assert_eq!(s.finish().unwrap_err().class, ErrorClass::Network);

    // A stall longer than the timeout.
    let f = Fake::start(vec![Reply::Stream {
        frames: vec![
            (
                Duration::ZERO,
                event("messageStart", &json!({"role": "assistant"})),
            ),
            (
                Duration::from_secs(3),
                event("messageStop", &json!({"stopReason": "end_turn"})),
            ),
        ],
    }])
    .await;
    let mut s = client(&f)
        .converse_stream(&Request::prompt("hi"), MODEL, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(s.next().await.unwrap_err().class, ErrorClass::Timeout);
}

#[tokio::test]
async fn stream_guardrail_stop_is_a_content_filter() {
    let f = Fake::start(vec![stream(vec![
        event("messageStart", &json!({"role": "assistant"})),
        event("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": "Sorry"}})),
        event("messageStop", &json!({"stopReason": "guardrail_intervened"})),
        event("metadata", &json!({"usage": {"inputTokens": 8, "outputTokens": 1, "totalTokens": 9}, "metrics": {"latencyMs": 90}})),
    ])])
    .await;
    let mut s = client(&f)
        .converse_stream(&Request::prompt("hi"), MODEL, T)
        .await
        .unwrap();
    while s.next().await.unwrap().is_some() {}
    let e = s.finish().unwrap_err();
    assert_eq!(e.class, ErrorClass::ContentFilter);
    assert_eq!(e.partial.unwrap().usage.input_tokens, 8);
}

#[tokio::test]
async fn titan_and_cohere_embeddings() {
    // Titan: one text per InvokeModel call, tokens in the body.
    let titan = |v: f32, n: u64| {
        json(
            &json!({"embedding": [v, 0.5, -0.25], "embeddingsByType": {"float": [v, 0.5, -0.25]}, "inputTextTokenCount": n}),
        )
    };
    let f = Fake::start(vec![titan(0.1, 4), titan(0.2, 6)]).await;
    let inputs = vec!["hello world".to_string(), "second text".to_string()];
    let (vectors, usage) = client(&f)
        .embed(&inputs, "amazon.titan-embed-text-v2:0", T)
        .await
        .unwrap();
    assert_eq!(vectors.len(), 2);
    assert_eq!(vectors[0].len(), 3);
    assert_eq!(usage.input_tokens, 10);
    assert_eq!(usage.output_tokens, 0);
    let reqs = f.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
    let mut sent: Vec<String> = reqs
        .iter()
        .map(|r| r.json()["inputText"].as_str().unwrap().to_string())
        .collect();
    sent.sort();
    assert_eq!(sent, inputs);

    // Cohere: all texts in one call, tokens in the response header.
    let cohere = with_headers(
        200,
        &[("X-Amzn-Bedrock-Input-Token-Count", "7")],
        &json!({"embeddings": [[0.1, 0.2], [0.3, 0.4]], "id": "emb-1", "response_type": "embeddings_floats", "texts": ["a", "b"]}),
    );
    let f = Fake::start(vec![cohere]).await;
    let (vectors, usage) = client(&f)
        .embed(&["a".into(), "b".into()], "cohere.embed-english-v3", T)
        .await
        .unwrap();
    assert_eq!(vectors, vec![vec![0.1, 0.2], vec![0.3, 0.4]]);
    assert_eq!(usage.input_tokens, 7);
    let body = f.requests()[0].json();
    assert_eq!(body["texts"], json!(["a", "b"]));
    assert_eq!(body["input_type"], "search_document");

    // An unknown format is refused before anything is sent; errors are classified.
    let f = Fake::start(vec![error(429, "ThrottlingException", "Too many requests")]).await;
    let e = client(&f).embed(&["a".into()], MODEL, T).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::InvalidRequest);
    assert!(f.requests().is_empty());
    let e = client(&f)
        .embed(&["a".into()], "cohere.embed-english-v3", T)
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::RateLimit);
}

#[tokio::test]
async fn no_credentials_is_an_authentication_failure() {
    let f = Fake::start(vec![json(&documented_answer())]).await;
    let conf = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
        .region(aws_sdk_bedrockruntime::config::Region::new("us-east-1"))
        .endpoint_url(&f.url)
        .build();
    let b = Bedrock {
        client: aws_sdk_bedrockruntime::Client::from_conf(conf),
    };
    let e = b.converse(&Request::prompt("hi"), MODEL, T).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Authentication, "{}", e.message);
    assert!(!e.retryable);
    assert!(f.requests().is_empty(), "nothing was sent");
}

#[test]
fn debug_shows_no_credentials() {
    let b = Bedrock::with_endpoint("http://127.0.0.1:1", "eu-west-1", (KEY, SECRET, Some("tok")));
    let d = format!("{b:?}");
    assert!(d.contains("eu-west-1"));
    assert!(
        !d.contains(SECRET) && !d.contains(KEY) && !d.contains("tok\""),
        "{d}"
    );
}

/// The standard chain: region, static keys and the endpoint override from
/// the environment (the only test here that sets the process environment).
#[tokio::test]
async fn from_env_reads_region_credentials_and_endpoint_override() {
    let f = Fake::start(vec![json(&documented_answer())]).await;
    for (k, v) in [
        ("AWS_REGION", "eu-central-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDFROMENV"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/steer-test-aws-config"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/steer-test-aws-credentials",
        ),
        ("BEDROCK_ENDPOINT_URL", f.url.as_str()),
    ] {
        std::env::set_var(k, v);
    }
    std::env::remove_var("AWS_SESSION_TOKEN");
    std::env::remove_var("AWS_PROFILE");
    let b = Bedrock::from_env().await.unwrap();
    let c = b.converse(&Request::prompt("hi"), MODEL, T).await.unwrap();
    assert_eq!(c.finish_reason.as_deref(), Some("end_turn"));
    let auth = f.requests()[0].header("authorization").unwrap().to_string();
    assert!(auth.contains("Credential=AKIDFROMENV/"), "{auth}");
    assert!(auth.contains("/eu-central-1/bedrock/aws4_request"), "{auth}");

    std::env::set_var("BEDROCK_ENDPOINT_URL", "ftp://example.invalid");
    assert!(matches!(
        Bedrock::from_env().await,
        Err(crate::error::SteerError::Config(_))
    ));
    std::env::remove_var("BEDROCK_ENDPOINT_URL");
}
