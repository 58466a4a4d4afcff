//! AWS Bedrock Runtime through the proxy (`/model/{modelId}/converse`,
//! `/converse-stream`, `/invoke`, `/invoke-with-response-stream`), in front of the fake Bedrock endpoint of
//! the client's tests (`crates/steer/tests/bedrock/fake.rs`: Converse JSON,
//! ConverseStream event-stream frames, `x-amzn-ErrorType` errors).
//!
//! The proxy's AWS credentials and region come from the standard chain
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`, set here for the test process). Checked: the upstream
//! gets the exact path and body, re-signed with the proxy's access key id
//! (never the client's signature, token or proxy key); the client gets the
//! upstream's bytes; one correct record per call (tokens, cost, stop
//! reason, TTFT, error class, tags); the access rules.
#![cfg(feature = "bedrock")]
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../steer/tests/bedrock/fake.rs"]
mod fake;

use std::time::Duration;

use common::*;
use fake::{error, event, exception, Fake, Reply};
use futures::StreamExt;
use serde_json::{json, Value};
use steer_metrics::{AgentMetrics, ErrorClass, Method};
use steer_proxy::ProxyConfigBuilder;

const MODEL: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";
const MODEL_PATH: &str = "anthropic.claude-sonnet-4-5-20250929-v1%3A0";
const PROXY_KEY: &str = "pk-steer-bedrock-test-0123456789";
const PROXY_AWS_KEY_ID: &str = "AKIDPROXYTEST0000001";
const PROXY_SESSION_TOKEN: &str = "proxy-session-token-abc";

/// The proxy's AWS identity, through the standard chain (same values in
/// every test, so the order of the tests does not matter).
fn aws_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", PROXY_AWS_KEY_ID);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "proxy-secret-access-key-xyz");
        std::env::set_var("AWS_SESSION_TOKEN", PROXY_SESSION_TOKEN);
        std::env::set_var("AWS_REGION", "us-west-2");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/steer-test-aws-config");
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/steer-test-aws-credentials",
        );
    });
}

fn config(f: &Fake) -> ProxyConfigBuilder {
    aws_env();
    steer_proxy::ProxyConfig::builder()
        .ignore_env()
        .bedrock_endpoint(&f.url)
}

/// A request as an AWS SDK signs it for the proxy's host, plus the proxy key.
fn client_request(proxy: &TestProxy, op: &str, body: &Value, key: Option<&str>) -> reqwest::RequestBuilder {
    client_request_to(proxy, MODEL_PATH, op, body, key)
}

/// The same for the model whose id is `model_path` (as encoded in the path).
fn client_request_to(
    proxy: &TestProxy,
    model_path: &str,
    op: &str,
    body: &Value,
    key: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut r = reqwest::Client::new()
        .post(format!("{}/model/{model_path}/{op}", proxy.url()))
        .header("content-type", "application/json")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=client-key/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
        )
        .header("x-amz-date", "20250101T000000Z")
        .header("x-amz-security-token", "client-session-token")
        .header("x-steer-tag-team", "search")
        .body(body.to_string());
    if let Some(k) = key {
        r = r.header("x-steer-proxy-key", k);
    }
    r
}

fn ask() -> Value {
    json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}], "inferenceConfig": {"maxTokens": 64}})
}

/// The upstream request was signed by the proxy, for Bedrock in its region.
fn assert_signed_by_proxy(r: &fake::Recorded) {
    let auth = r.header("authorization").unwrap();
    let (head, rest) = auth.split_once(' ').unwrap();
    assert_eq!(head, "AWS4-HMAC-SHA256", "{auth}");
    let cred = rest
        .split(", ")
        .find_map(|p| p.strip_prefix("Credential="))
        .unwrap();
    let scope: Vec<&str> = cred.split('/').collect();
    assert_eq!(scope[0], PROXY_AWS_KEY_ID, "{auth}");
    assert_eq!(&scope[2..], ["us-west-2", "bedrock", "aws4_request"], "{auth}");
    let signed = rest
        .split(", ")
        .find_map(|p| p.strip_prefix("SignedHeaders="))
        .unwrap();
    for h in ["host", "x-amz-date", "content-type"] {
        assert!(signed.split(';').any(|s| s == h), "{h} not signed: {auth}");
    }
    let sig = rest
        .split(", ")
        .find_map(|p| p.strip_prefix("Signature="))
        .unwrap();
    assert!(
        sig.len() == 64 && sig.bytes().all(|b| b.is_ascii_hexdigit()),
        "{auth}"
    );
    assert_ne!(r.header("x-amz-date"), Some("20250101T000000Z"));
    assert_eq!(r.header("x-amz-security-token"), Some(PROXY_SESSION_TOKEN));
    assert!(r.header("x-steer-proxy-key").is_none());
    assert!(r.header("x-steer-tag-team").is_none());
    assert!(!auth.contains("client-key"));
}

/// Seconds since the epoch of an `x-amz-date` (`20250101T000000Z`).
fn amz_date(d: &str) -> std::time::SystemTime {
    let n = |a: usize, b: usize| d[a..b].parse::<i64>().unwrap();
    let (y, m, day) = (n(0, 4), n(4, 6), n(6, 8));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(9, 11) * 3600 + n(11, 13) * 60 + n(13, 15);
    std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap())
}

/// The upstream request's signature is right: signing what the upstream
/// received (its signed headers, path and body) with the proxy's secret
/// gives the same signature.
fn assert_signature_verifies(f: &Fake, r: &fake::Recorded) {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let auth = r.header("authorization").unwrap();
    let part = |p: &str| {
        auth.split(", ")
            .find_map(|x| x.split(' ').next_back().unwrap().strip_prefix(p))
            .unwrap()
    };
    let signed: Vec<&str> = part("SignedHeaders=").split(';').collect();
    let headers: Vec<(&str, &str)> = signed
        .iter()
        .filter(|h| !matches!(**h, "x-amz-date" | "x-amz-security-token"))
        .map(|h| (*h, r.header(h).unwrap()))
        .collect();
    let creds = aws_credential_types::Credentials::new(
        PROXY_AWS_KEY_ID,
        "proxy-secret-access-key-xyz",
        Some(PROXY_SESSION_TOKEN.to_string()),
        None,
        "test",
    );
    let identity = creds.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-west-2")
        .name("bedrock")
        .time(amz_date(r.header("x-amz-date").unwrap()))
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let url = format!("{}{}", f.url, r.path);
    let req = SignableRequest::new("POST", &url, headers.into_iter(), SignableBody::Bytes(&r.body)).unwrap();
    let (instructions, _) = sign(req, &params).unwrap().into_parts();
    let expected = instructions
        .headers()
        .find(|(k, _)| *k == "authorization")
        .map(|(_, v)| v.to_string())
        .unwrap();
    assert_eq!(auth, expected, "the signature verifies");
}

fn the_only(records: &[AgentMetrics]) -> &AgentMetrics {
    assert_eq!(records.len(), 1, "{records:#?}");
    &records[0]
}

fn priced(model: &str, m: &AgentMetrics) -> Option<f64> {
    let mut want = AgentMetrics::new("bedrock", model);
    let usage = steer::Usage {
        input_tokens: m.input_tokens,
        output_tokens: m.output_tokens,
        cached_tokens: m.cached_tokens,
        cache_write_tokens: m.cache_write_tokens,
        ..steer::Usage::default()
    };
    steer::measure::apply_usage(
        &mut want,
        &usage,
        Some(model),
        &steer::pricing::PriceTable::builtin(),
    );
    want.cost_usd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converse_is_re_signed_relayed_and_recorded() {
    let answer = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"text": "Let me look."},
            {"toolUse": {"toolUseId": "t1", "name": "search", "input": {"q": "x"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 12, "outputTokens": 3, "totalTokens": 3015,
                  "cacheReadInputTokens": 1800, "cacheWriteInputTokens": 1200},
        "metrics": {"latencyMs": 410}
    });
    let f = Fake::start(vec![fake::json(&answer)]).await;
    let proxy = start_proxy(config(&f).bedrock_key(PROXY_KEY)).await;
    let body = ask();
    let resp = client_request(&proxy, "converse", &body, Some(PROXY_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-amzn-requestid"], "0e3a5b1c-ok");
    let request_id = resp.headers()[steer_proxy::REQUEST_ID_HEADER]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(resp.bytes().await.unwrap(), answer.to_string().into_bytes());

    let got = f.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].path,
        format!("/model/{MODEL_PATH}/converse"),
        "encoding kept"
    );
    assert_eq!(got[0].body, body.to_string().into_bytes(), "body byte for byte");
    assert_signed_by_proxy(&got[0]);
    assert_signature_verifies(&f, &got[0]);

    let records = proxy.wait_records(1).await;
    let m = the_only(&records);
    assert_eq!(m.request_id.to_string(), request_id);
    assert_eq!(
        (m.provider.as_str(), m.model.as_str(), m.method),
        ("bedrock", MODEL, Method::Generate)
    );
    assert_eq!((m.input_tokens, m.output_tokens), (12 + 1800 + 1200, 3));
    assert_eq!((m.cached_tokens, m.cache_write_tokens), (1800, Some(1200)));
    assert_eq!(m.finish_reason.as_deref(), Some("tool_use"));
    assert_eq!(m.tools_used, vec!["search".to_string()]);
    assert!(m.cost_usd.is_some_and(|c| c > 0.0), "{:?}", m.cost_usd);
    assert_eq!(
        m.cost_usd,
        priced(MODEL, m),
        "priced like the client's bedrock/ calls"
    );
    assert_eq!(m.tags.get("team").map(String::as_str), Some("search"));
    assert!(m.error_class.is_none() && m.ttft_ms.is_none());
    let json = serde_json::to_string(m).unwrap();
    assert!(!json.contains(PROXY_KEY) && !json.contains("proxy-secret-access-key"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converse_stream_frames_are_relayed_as_they_come() {
    let frames = vec![
        (
            Duration::ZERO,
            event("messageStart", &json!({"role": "assistant"})),
        ),
        (
            Duration::from_millis(150),
            event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
            ),
        ),
        (
            Duration::from_millis(200),
            event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 0, "delta": {"text": "lo"}}),
            ),
        ),
        (
            Duration::ZERO,
            event("contentBlockStop", &json!({"contentBlockIndex": 0})),
        ),
        (
            Duration::ZERO,
            event("messageStop", &json!({"stopReason": "end_turn"})),
        ),
        (
            Duration::ZERO,
            event(
                "metadata",
                &json!({"usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7}, "metrics": {"latencyMs": 99}}),
            ),
        ),
    ];
    let all: Vec<u8> = frames.iter().flat_map(|(_, b)| b.clone()).collect();
    let first_output_at = frames[0].1.len() + frames[1].1.len();
    let f = Fake::start(vec![Reply::Stream { frames }]).await;
    let proxy = start_proxy(config(&f).bedrock_key(PROXY_KEY)).await;
    let started = std::time::Instant::now();
    let resp = client_request(&proxy, "converse-stream", &ask(), Some(PROXY_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let mut body = resp.bytes_stream();
    let mut got = Vec::new();
    let mut first_output_seen = None;
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk.unwrap());
        if first_output_seen.is_none() && got.len() >= first_output_at {
            first_output_seen = Some(started.elapsed());
        }
    }
    assert_eq!(got, all, "frames byte for byte");
    let seen = first_output_seen.unwrap();
    assert!(
        seen < started.elapsed() - Duration::from_millis(150),
        "the first output frame arrived before the end ({seen:?})"
    );
    assert_eq!(
        f.requests()[0].path,
        format!("/model/{MODEL_PATH}/converse-stream")
    );
    assert_signed_by_proxy(&f.requests()[0]);
    assert_signature_verifies(&f, &f.requests()[0]);

    let records = proxy.wait_records(1).await;
    let m = the_only(&records);
    assert_eq!((m.provider.as_str(), m.method), ("bedrock", Method::Stream));
    assert_eq!((m.input_tokens, m.output_tokens), (5, 2));
    assert_eq!(m.finish_reason.as_deref(), Some("end_turn"));
    let ttft = m.ttft_ms.unwrap();
    assert!(
        (140.0..m.latency_ms - 150.0).contains(&ttft),
        "ttft {ttft} ms, latency {} ms",
        m.latency_ms
    );
    assert!(m.cost_usd.is_some_and(|c| c > 0.0));
    assert!(m.error_class.is_none());
    proxy.stop().await;
}

/// An `InvokeModelWithResponseStream` chunk: the model's own event, base64.
fn chunk(inner: &Value) -> Vec<u8> {
    event(
        "chunk",
        &json!({ "bytes": aws_smithy_types::base64::encode(inner.to_string()) }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_with_response_stream_is_relayed_and_measured_as_anthropic_events() {
    let frames = vec![
        (
            Duration::ZERO,
            chunk(
                &json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": null,
                "usage": {"input_tokens": 20, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0, "output_tokens": 1}}}),
            ),
        ),
        (
            Duration::ZERO,
            chunk(
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
        ),
        (
            Duration::from_millis(150),
            chunk(
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            ),
        ),
        (
            Duration::from_millis(150),
            chunk(&json!({"type": "content_block_stop", "index": 0})),
        ),
        (
            Duration::ZERO,
            chunk(
                &json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 9}}),
            ),
        ),
        (
            Duration::ZERO,
            chunk(
                &json!({"type": "message_stop", "amazon-bedrock-invocationMetrics":
                {"inputTokenCount": 20, "outputTokenCount": 9, "invocationLatency": 400, "firstByteLatency": 150}}),
            ),
        ),
    ];
    let all: Vec<u8> = frames.iter().flat_map(|(_, b)| b.clone()).collect();
    let f = Fake::start(vec![Reply::Stream { frames }]).await;
    let proxy = start_proxy(config(&f).bedrock_key(PROXY_KEY)).await;
    let body = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 9,
        "messages": [{"role": "user", "content": "hi"}]});
    let resp = client_request(&proxy, "invoke-with-response-stream", &body, Some(PROXY_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = resp.bytes().await.unwrap();
    assert_eq!(got.as_ref(), all.as_slice(), "frames byte for byte");
    let up = &f.requests()[0];
    assert_eq!(
        up.path,
        format!("/model/{MODEL_PATH}/invoke-with-response-stream")
    );
    assert_eq!(serde_json::from_slice::<Value>(&up.body).unwrap(), body);
    assert_signed_by_proxy(up);
    assert_signature_verifies(&f, up);

    let records = proxy.wait_records(1).await;
    let m = the_only(&records);
    assert_eq!(
        (m.provider.as_str(), m.model.as_str(), m.method),
        ("bedrock", MODEL, Method::Stream)
    );
    // Anthropic's usage (the cache read included), not only Bedrock's counts.
    assert_eq!((m.input_tokens, m.cached_tokens, m.output_tokens), (120, 100, 9));
    assert_eq!(m.finish_reason.as_deref(), Some("max_tokens"));
    assert_eq!(m.tags.get("team").map(String::as_str), Some("search"));
    let ttft = m.ttft_ms.unwrap();
    assert!(
        (140.0..m.latency_ms - 140.0).contains(&ttft),
        "ttft {ttft} ms (the first text), latency {} ms",
        m.latency_ms
    );
    assert!(m.cost_usd.is_some_and(|c| c > 0.0));
    assert!(m.error_class.is_none());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_invoke_stream_is_relayed_as_sent_and_recorded_as_failed() {
    // One good chunk, then a chunk whose bytes are not base64, then the end.
    let frames = vec![
        (
            Duration::ZERO,
            chunk(&json!({"generation": "Hi", "stop_reason": null})),
        ),
        (
            Duration::ZERO,
            event("chunk", &json!({"bytes": "%%% not base64"})),
        ),
    ];
    let all: Vec<u8> = frames.iter().flat_map(|(_, b)| b.clone()).collect();
    let f = Fake::start(vec![Reply::Stream { frames }]).await;
    let proxy = start_proxy(config(&f).bedrock_key(PROXY_KEY)).await;
    let body = json!({"prompt": "hi", "max_gen_len": 8});
    let resp = client_request_to(
        &proxy,
        "meta.llama3-8b-instruct-v1%3A0",
        "invoke-with-response-stream",
        &body,
        Some(PROXY_KEY),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        all.as_slice(),
        "relayed as sent"
    );
    let records = proxy.wait_records(1).await;
    let m = the_only(&records);
    assert_eq!(m.model, "meta.llama3-8b-instruct-v1:0");
    assert_eq!(m.method, Method::Stream);
    assert_eq!(m.error_class, Some(ErrorClass::Unknown), "{m:?}");
    assert!(
        m.error_message.as_deref().is_some_and(|e| e.contains("base64")),
        "{m:?}"
    );
    assert!(m.ttft_ms.is_some(), "the first chunk was output");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_passes_through_as_rate_limit() {
    let throttled = exception("throttlingException", "Too many tokens, please wait.");
    let partial = event("messageStart", &json!({"role": "assistant"}));
    let f = Fake::start(vec![
        error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
        fake::stream(vec![partial.clone(), throttled.clone()]),
    ])
    .await;
    let proxy = start_proxy(config(&f).bedrock_key(PROXY_KEY)).await;
    let resp = client_request(&proxy, "converse", &ask(), Some(PROXY_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers()["x-amzn-errortype"],
        "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
    );
    assert_eq!(
        resp.bytes().await.unwrap(),
        json!({"message": "Too many requests, please wait before trying again."})
            .to_string()
            .into_bytes()
    );
    let resp = client_request(&proxy, "converse-stream", &ask(), Some(PROXY_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), [partial, throttled].concat());

    let records = proxy.wait_records(2).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    for m in &records {
        assert_eq!(m.error_class, Some(ErrorClass::RateLimit), "{m:#?}");
        assert_eq!(m.provider, "bedrock");
    }
    assert_eq!(
        records
            .iter()
            .map(|m| m.error_message.as_deref().unwrap())
            .collect::<Vec<_>>(),
        [
            "Too many requests, please wait before trying again.",
            "Too many tokens, please wait."
        ]
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_embeddings_are_measured_from_the_token_count_header() {
    let answer = json!({"embedding": [0.1, 0.2], "inputTextTokenCount": 7});
    let f = Fake::start(vec![fake::with_headers(
        200,
        &[("x-amzn-bedrock-input-token-count", "7")],
        &answer,
    )])
    .await;
    let proxy = start_proxy(config(&f).bedrock_open(true)).await;
    let model = "amazon.titan-embed-text-v2:0";
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/model/amazon.titan-embed-text-v2%3A0/invoke",
            proxy.url()
        ))
        .header("content-type", "application/json")
        .body(r#"{"inputText":"hello"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), answer.to_string().into_bytes());
    assert_signed_by_proxy(&f.requests()[0]);
    assert_signature_verifies(&f, &f.requests()[0]);
    let records = proxy.wait_records(1).await;
    let m = the_only(&records);
    assert_eq!((m.model.as_str(), m.method), (model, Method::Embeddings));
    assert_eq!((m.input_tokens, m.output_tokens), (7, 0));
    assert!(m.cost_usd.is_some_and(|c| c > 0.0), "{:?}", m.cost_usd);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_routes_need_the_proxy_key_or_an_explicit_opening() {
    let f = Fake::start(vec![fake::json(&json!({"stopReason": "end_turn"}))]).await;
    // No proxy key, not opened: refused, whatever the client sends.
    let closed = start_proxy(config(&f)).await;
    let resp = client_request(&closed, "converse", &ask(), Some(PROXY_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-amzn-errortype"], "AccessDeniedException");
    let msg: Value = resp.json().await.unwrap();
    assert!(
        msg["message"].as_str().unwrap().contains("--bedrock-open"),
        "{msg}"
    );
    closed.stop().await;

    // A proxy key: missing or wrong is a 401; the provider-keys proxy key counts.
    let keyed = start_proxy(config(&f).provider_keys(PROXY_KEY)).await;
    for key in [None, Some("pk-wrong-key-0123456789")] {
        let resp = client_request(&keyed, "converse", &ask(), key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{key:?}");
        assert_eq!(resp.headers()["x-amzn-errortype"], "AccessDeniedException");
        let text = resp.text().await.unwrap();
        assert!(!text.contains(PROXY_KEY), "{text}");
    }
    // `Authorization: Bearer KEY` (an AWS SDK's Bedrock API key) works too.
    let resp = reqwest::Client::new()
        .post(format!("{}/model/{MODEL_PATH}/converse", keyed.url()))
        .bearer_auth(PROXY_KEY)
        .header("content-type", "application/json")
        .body(ask().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_signed_by_proxy(&f.requests()[0]);
    assert_eq!(f.requests().len(), 1, "refused calls never went upstream");
    assert_eq!(
        keyed.wait_records(1).await.len(),
        1,
        "refused calls have no record"
    );
    keyed.stop().await;

    // Unknown operations (this one needs HTTP/2) are a 404 in Bedrock's shape.
    let open = start_proxy(config(&f).bedrock_open(true)).await;
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/model/{MODEL_PATH}/invoke-with-bidirectional-stream",
            open.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-amzn-errortype"], "UnknownOperationException");
    open.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_stream_records_cancelled() {
    let frames = vec![
        (
            Duration::ZERO,
            event("messageStart", &json!({"role": "assistant"})),
        ),
        (
            Duration::ZERO,
            event(
                "contentBlockDelta",
                &json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
            ),
        ),
        (
            Duration::from_secs(30),
            event("messageStop", &json!({"stopReason": "end_turn"})),
        ),
    ];
    let f = Fake::start(vec![Reply::Stream { frames }]).await;
    let proxy = start_proxy(config(&f).bedrock_key(PROXY_KEY)).await;
    let resp = client_request(&proxy, "converse-stream", &ask(), Some(PROXY_KEY))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(body);
    let records = proxy.wait_records(1).await;
    let m = the_only(&records);
    assert_eq!(m.error_class, Some(ErrorClass::Cancelled));
    assert_eq!(m.method, Method::Stream);
    proxy.stop().await;
}
