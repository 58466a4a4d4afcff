//! `steer generate` against local servers speaking each added provider's
//! wire format, configured only through the documented environment
//! variables: Gemini, Azure OpenAI, Bedrock (through the AWS SDK) and Ollama.
#![allow(clippy::unwrap_used)]

use std::process::Output;

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "test-KEY-0123456789-secret";

/// Run `steer generate PROMPT --model MODEL` with only `env` set (no
/// provider variables inherited from the machine).
async fn generate(model: &str, env: &[(&str, String)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_steer"));
    cmd.args(["generate", "Say hi", "--model", model])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// The metrics record `generate` prints last on stderr.
fn record(o: &Output) -> Value {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {err}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout)
    );
    let json = err.rsplit("--- metrics ---").next().unwrap();
    serde_json::from_str(json.trim()).unwrap()
}

fn no_key(o: &Output) {
    for s in [&o.stdout, &o.stderr] {
        assert!(!String::from_utf8_lossy(s).contains(KEY), "the key was printed");
    }
}

#[tokio::test]
async fn gemini_by_its_environment_variables() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash:generateContent"))
        .and(header("x-goog-api-key", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"content": {"parts": [{"text": "Hi there!"}], "role": "model"},
                "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 27,
                "thoughtsTokenCount": 20},
            "modelVersion": "gemini-2.5-flash"})))
        .expect(1)
        .mount(&server)
        .await;
    let o = generate(
        "gemini-2.5-flash",
        &[
            ("GEMINI_BASE_URL", format!("{}/v1beta", server.uri())),
            ("GEMINI_API_KEY", KEY.into()),
        ],
    )
    .await;
    no_key(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Hi there!"));
    let m = record(&o);
    assert_eq!(m["provider"], "gemini");
    assert_eq!(m["finish_reason"], "STOP");
    assert_eq!(
        (m["output_tokens"].as_u64(), m["reasoning_tokens"].as_u64()),
        (Some(23), Some(20))
    );
    assert!(m["cost_usd"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn azure_deployment_by_its_environment_variables() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/chat-prod/chat/completions"))
        .and(query_param("api-version", "2024-10-21"))
        .and(header("api-key", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-2024-11-20",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop",
                "content_filter_results": {}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})))
        .expect(1)
        .mount(&server)
        .await;
    let o = generate(
        "azure/chat-prod",
        &[
            ("AZURE_OPENAI_ENDPOINT", server.uri()),
            ("AZURE_OPENAI_API_KEY", KEY.into()),
            ("OPENAI_API_VERSION", "2024-10-21".into()),
        ],
    )
    .await;
    no_key(&o);
    let m = record(&o);
    assert_eq!(
        (m["provider"].as_str(), m["model"].as_str()),
        (Some("azure"), Some("chat-prod"))
    );
    assert_eq!(m["response_model"], "gpt-4o-2024-11-20");
    assert!(
        m["cost_usd"].as_f64().unwrap() > 0.0,
        "priced as the reported model"
    );
    // Without an endpoint: a configuration error (exit 7), nothing sent.
    let o = generate("azure/chat-prod", &[("AZURE_OPENAI_API_KEY", KEY.into())]).await;
    assert_eq!(o.status.code(), Some(7), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("AZURE_OPENAI_ENDPOINT"));
}

#[tokio::test]
async fn bedrock_through_the_aws_sdk_with_an_endpoint_override() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(
            r"^/model/anthropic\.claude-sonnet-4-5-20250929-v1(%3A|:)0/converse$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "Hello!"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 20, "outputTokens": 5, "totalTokens": 1025,
                      "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 0},
            "metrics": {"latencyMs": 300}})))
        .expect(1)
        .mount(&server)
        .await;
    let o = generate(
        "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
        &[
            ("BEDROCK_ENDPOINT_URL", server.uri()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "AKIDTESTKEY".into()),
            ("AWS_SECRET_ACCESS_KEY", KEY.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ],
    )
    .await;
    no_key(&o);
    let m = record(&o);
    assert_eq!(m["provider"], "bedrock");
    assert_eq!(m["finish_reason"], "end_turn");
    assert_eq!(
        (m["input_tokens"].as_u64(), m["cached_tokens"].as_u64()),
        (Some(1020), Some(1000))
    );
    // 20*3 + 1000*0.30 + 5*15 = 60 + 300 + 75 = 435 per 1e6
    assert!((m["cost_usd"].as_f64().unwrap() - 435e-6).abs() < 1e-12, "{m}");
    let req = &server.received_requests().await.unwrap()[0];
    assert!(
        req.headers
            .get("authorization")
            .is_some_and(|v| v.to_str().unwrap().starts_with("AWS4-HMAC-SHA256")),
        "signed with SigV4"
    );
}

#[tokio::test]
async fn ollama_preset_without_a_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "llama3.2",
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32}})))
        .expect(1)
        .mount(&server)
        .await;
    let o = generate(
        "ollama/llama3.2",
        &[("OLLAMA_BASE_URL", format!("{}/v1", server.uri()))],
    )
    .await;
    let m = record(&o);
    assert_eq!(
        (m["provider"].as_str(), m["input_tokens"].as_u64()),
        (Some("ollama"), Some(30))
    );
    assert!(
        m.get("cost_usd").is_none(),
        "a local model has no price: unknown, not 0"
    );
}
