//! The official `openai` and `anthropic` Python SDKs as clients of the
//! proxy (tests/py/sdk_client.py), in front of the fake upstream replaying
//! recorded provider answers; the `openai` SDK's `AzureOpenAI` client on the
//! Azure OpenAI paths (tests/py/azure_client.py) and the Google Gen AI SDK
//! (`google-genai`, tests/py/genai_client.py) on Gemini's native routes, in
//! front of the same fake replaying recorded Azure and Gemini answers; and
//! the AWS SDK for Python (`boto3`,
//! tests/py/bedrock_client.py) on the Bedrock routes in front of the fake
//! Bedrock endpoint: the SDKs see exactly what the upstream sent, and the
//! store holds exactly one correct record per call, with its tags.
//!
//! Needs `STEER_TEST_PYSDK_PYTHON` (scripts/services/pysdk.sh sets it);
//! under `STEER_REQUIRE_SERVICES`/`CI` a missing venv fails the test.
#![allow(clippy::unwrap_used)]

#[cfg(feature = "bedrock")]
#[path = "../../steer/tests/bedrock/fake.rs"]
mod bedrock_fake;
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use serde_json::Value;
use steer_metrics::{AgentMetrics, ErrorClass, Method};

const OPENAI_KEY: &str = "sk-test-openai-client-key-0123456789";
const ANTHROPIC_KEY: &str = "sk-ant-test-client-key-0123456789";

/// Run a script of tests/py with `python` and these arguments; its output,
/// one JSON object per case, by case name.
async fn run_script(
    python: PathBuf,
    script: &str,
    args: Vec<String>,
    unset: &[&'static str],
) -> BTreeMap<String, Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let unset = unset.to_vec();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(&python);
        cmd.arg(&script).args(&args);
        for v in unset {
            cmd.env_remove(v);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the script failed:\n{stderr}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["case"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

/// Records by their `case` tag: exactly one each, all with `suite`.
fn records_by_case<'a>(
    records: &'a [AgentMetrics],
    suite: &str,
    keys: &[&str],
) -> BTreeMap<String, &'a AgentMetrics> {
    let mut by_case = BTreeMap::new();
    for m in records {
        let case = m.tags.get("case").cloned().unwrap();
        assert_eq!(m.tags.get("suite").map(String::as_str), Some(suite), "{case}");
        assert_eq!(m.retries, 0);
        assert!(m.latency_ms > 0.0);
        let json = serde_json::to_string(m).unwrap();
        for k in keys {
            assert!(!json.contains(k), "{json}");
        }
        assert!(
            by_case.insert(case.clone(), m).is_none(),
            "two records for {case}"
        );
    }
    by_case
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdks_through_the_proxy() {
    let Some(python) = pysdk_python() else { return };
    let up = fake_upstream().await;
    let proxy = start_proxy(config_for(&up)).await;

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/sdk_client.py");
    let url = proxy.url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python)
            .arg(&script)
            .arg(&url)
            .env_remove("OPENAI_BASE_URL")
            .env_remove("ANTHROPIC_BASE_URL")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sdk_client.py failed:\n{stderr}");
    let sdk: BTreeMap<String, Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["case"].as_str().unwrap().to_string(), v)
        })
        .collect();
    let get = |case: &str| {
        sdk.get(case)
            .unwrap_or_else(|| panic!("no output for {case}: {sdk:?}"))
    };

    // --- What the SDKs saw: exactly what the upstream sent. ---
    let raw = |case: &str| unhex(get(case)["body_hex"].as_str().unwrap());
    assert_eq!(raw("oai_chat_raw"), recording("openai_chat_basic.json"));
    assert_eq!(
        raw("oai_stream_raw"),
        without_usage_chunk(&recording("openai_chat_stream_text_usage.sse"))
    );
    assert_eq!(raw("oai_embeddings_raw"), embeddings_body(2));
    assert_eq!(
        raw("ant_msg_raw"),
        recording("anthropic_cache_write_and_read.json")
    );
    assert_eq!(raw("ant_stream_raw"), recording("anthropic_stream_thinking.sse"));
    assert_eq!(raw("oai_429"), openai_429_body());
    assert_eq!(raw("oai_401"), recording("openai_error_401_invalid_api_key.json"));
    assert_eq!(raw("ant_429"), recording("anthropic_error_429_rate_limit.json"));
    assert_eq!(raw("ant_401"), anthropic_401_body());
    let headers = &get("oai_chat_raw")["headers"];
    assert_eq!(headers["x-request-id"], "req_fake_123");
    assert_eq!(headers["openai-processing-ms"], "7");
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers["x-steer-request-id"].is_string());
    let headers = &get("ant_stream_raw")["headers"];
    assert_eq!(headers["content-type"], "text/event-stream; charset=utf-8");
    assert_eq!(headers["x-request-id"], "req_fake_stream");

    // What the SDKs parsed.
    let oc = get("oai_chat");
    assert_eq!(
        (oc["prompt_tokens"].as_u64(), oc["completion_tokens"].as_u64()),
        (Some(14), Some(30))
    );
    assert_eq!(oc["finish_reason"], "stop");
    assert_eq!(
        get("oai_tools")["tool_names"],
        serde_json::json!(["get_user_country"])
    );
    let os = get("oai_stream");
    assert_eq!(os["text"], "The capital of the UK is London.");
    assert_eq!(
        os["usage_chunks"], 0,
        "the usage chunk the client did not ask for is stripped"
    );
    assert_eq!(get("oai_stream_usage")["usage"], serde_json::json!([78, 9]));
    assert_eq!(
        get("oai_stream_tools")["tool_names"],
        serde_json::json!(["get_capital"])
    );
    assert_eq!(get("oai_embeddings")["vectors"], 2);
    assert_eq!(get("oai_429")["error"], "RateLimitError");
    assert_eq!(get("oai_429")["status"], 429);
    assert_eq!(get("oai_401")["error"], "AuthenticationError");
    let am = get("ant_msg");
    assert_eq!(
        (am["cache_read"].as_u64(), am["cache_write"].as_u64()),
        (Some(1111), Some(418))
    );
    assert_eq!(
        get("ant_tools")["tool_names"],
        serde_json::json!(["get_user_country"])
    );
    assert_eq!(get("ant_stream")["stop_reason"], "end_turn");
    assert_eq!(get("ant_stream")["output_tokens"], 277);
    assert_eq!(
        get("ant_stream_tools")["tool_names"],
        serde_json::json!(["updateIssueList"])
    );
    assert_eq!(get("ant_429")["error"], "RateLimitError");
    assert_eq!(get("ant_401")["error"], "AuthenticationError");

    // The client's keys went upstream (pass-through), unchanged.
    for r in up.received() {
        if r.path.ends_with("/messages") {
            // Older SDKs send `x-api-key`, newer ones `Authorization: Bearer`.
            let key = r
                .headers
                .get("x-api-key")
                .map(|v| v.to_str().unwrap().to_string())
                .or_else(|| {
                    r.headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().trim_start_matches("Bearer ").to_string())
                });
            assert_eq!(key.as_deref(), Some(ANTHROPIC_KEY));
            assert!(r.headers.get("anthropic-version").is_some());
        } else {
            assert_eq!(
                r.headers["authorization"],
                format!("Bearer {OPENAI_KEY}").as_str()
            );
        }
    }

    // --- The records: exactly one per call, each correct, with its tags. ---
    const CASES: [&str; 16] = [
        "oai_chat",
        "oai_tools",
        "oai_stream",
        "oai_stream_raw",
        "oai_stream_usage",
        "oai_stream_tools",
        "oai_embeddings",
        "oai_429",
        "oai_401",
        "ant_msg",
        "ant_tools",
        "ant_stream",
        "ant_stream_raw",
        "ant_stream_tools",
        "ant_429",
        "ant_401",
    ];
    let records = proxy.wait_records(CASES.len()).await;
    assert_eq!(records.len(), CASES.len(), "{records:#?}");
    let mut by_case: BTreeMap<&str, &AgentMetrics> = BTreeMap::new();
    for m in &records {
        let case = m.tags.get("case").map(String::as_str).unwrap();
        assert!(by_case.insert(case, m).is_none(), "two records for {case}");
        assert_eq!(m.tags.get("suite").map(String::as_str), Some("pysdk"));
        assert_eq!(m.retries, 0);
        assert!(m.latency_ms > 0.0);
        let json = serde_json::to_string(m).unwrap();
        assert!(
            !json.contains(OPENAI_KEY) && !json.contains(ANTHROPIC_KEY),
            "{json}"
        );
    }
    let rec = |case: &str| {
        *by_case
            .get(case)
            .unwrap_or_else(|| panic!("no record for {case}"))
    };
    let tokens = |m: &AgentMetrics| (m.input_tokens, m.output_tokens);

    let m = rec("oai_chat");
    assert_eq!(
        (m.provider.as_str(), m.model.as_str(), m.method),
        ("openai", "gpt-4o", Method::Generate)
    );
    assert_eq!(tokens(m), (14, 30));
    assert_eq!(m.finish_reason.as_deref(), Some("stop"));
    assert_eq!(m.tags.get("user").map(String::as_str), Some("alice"));
    assert!(m.cost_usd.is_some_and(|c| c > 0.0));
    assert_eq!(
        get("oai_chat_raw")["headers"]["x-steer-request-id"].as_str(),
        Some(m.request_id.to_string().as_str())
    );
    let m = rec("oai_tools");
    assert_eq!(m.tools_used, vec!["get_user_country".to_string()]);
    assert_eq!(m.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(tokens(m), (68, 11));
    for case in ["oai_stream", "oai_stream_raw", "oai_stream_usage"] {
        let m = rec(case);
        assert_eq!(m.method, Method::Stream, "{case}");
        assert_eq!(tokens(m), (78, 9), "{case}: usage asked upstream");
        assert!(m.ttft_ms.is_some_and(|t| t <= m.latency_ms), "{case}");
        assert!(m.error_class.is_none());
    }
    assert_eq!(
        rec("oai_stream").tags.get("user").map(String::as_str),
        Some("bob")
    );
    let m = rec("oai_stream_tools");
    assert_eq!(m.tools_used, vec!["get_capital".to_string()]);
    assert_eq!(tokens(m), (53, 15));
    let m = rec("oai_embeddings");
    assert_eq!(
        (m.provider.as_str(), m.model.as_str()),
        ("openai", "text-embedding-3-small")
    );
    assert_eq!(tokens(m), (8, 0));
    assert_eq!(rec("oai_429").error_class, Some(ErrorClass::RateLimit));
    assert_eq!(rec("oai_401").error_class, Some(ErrorClass::Authentication));

    let m = rec("ant_msg");
    assert_eq!(
        (m.provider.as_str(), m.model.as_str()),
        ("anthropic", "claude-sonnet-4-5")
    );
    assert_eq!(m.response_model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(
        tokens(m),
        (3 + 1111 + 418, 33),
        "Anthropic input normalised: cache reads and writes included"
    );
    assert_eq!((m.cached_tokens, m.cache_write_tokens), (1111, Some(418)));
    assert_eq!(m.tags.get("user").map(String::as_str), Some("carol"));
    assert!(m.cost_usd.is_some());
    let m = rec("ant_tools");
    assert_eq!(m.tools_used, vec!["get_user_country".to_string()]);
    assert_eq!(m.finish_reason.as_deref(), Some("tool_use"));
    for case in ["ant_stream", "ant_stream_raw"] {
        let m = rec(case);
        assert_eq!((m.method, tokens(m)), (Method::Stream, (43, 277)), "{case}");
        assert_eq!(m.finish_reason.as_deref(), Some("end_turn"));
        assert!(m.ttft_ms.is_some());
    }
    let m = rec("ant_stream_tools");
    assert_eq!(m.tools_used, vec!["updateIssueList".to_string()]);
    assert_eq!(tokens(m), (565, 48));
    assert_eq!(rec("ant_429").error_class, Some(ErrorClass::RateLimit));
    assert_eq!(rec("ant_401").error_class, Some(ErrorClass::Authentication));

    proxy.stop().await;
}

/// The official AWS SDK for Python (`boto3`, tests/py/bedrock_client.py)
/// with its endpoint URL pointed at the proxy's Bedrock Runtime routes, in
/// front of the fake Bedrock endpoint of the client's tests: boto3 gets
/// exactly what the endpoint sent (Converse JSON, ConverseStream frames,
/// a throttling error, InvokeModelWithResponseStream chunks, also through
/// Anthropic's `AnthropicBedrock` client), the endpoint gets the proxy's
/// signature, and there is exactly one correct record per call.
#[cfg(feature = "bedrock")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_aws_sdk_for_python_through_the_bedrock_routes() {
    use bedrock_fake::{error, event, exception, Fake};
    use serde_json::json;

    const MODEL: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";
    const PROXY_KEY: &str = "pk-steer-boto3-test-0123456789";
    let Some(python) = pysdk_python() else { return };

    let converse = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"text": "London."},
            {"toolUse": {"toolUseId": "t1", "name": "get_capital", "input": {"country": "UK"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 12, "outputTokens": 3, "totalTokens": 3015,
                  "cacheReadInputTokens": 1800, "cacheWriteInputTokens": 1200},
        "metrics": {"latencyMs": 410}
    });
    let frames = vec![
        event("messageStart", &json!({"role": "assistant"})),
        event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": "The capital "}}),
        ),
        event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": "is London."}}),
        ),
        event("contentBlockStop", &json!({"contentBlockIndex": 0})),
        event("messageStop", &json!({"stopReason": "end_turn"})),
        event(
            "metadata",
            &json!({"usage": {"inputTokens": 14, "outputTokens": 6, "totalTokens": 20}, "metrics": {"latencyMs": 99}}),
        ),
    ];
    // InvokeModelWithResponseStream: Anthropic's events, base64 in `chunk` frames.
    let chunk = |inner: Value| {
        event(
            "chunk",
            &json!({ "bytes": aws_smithy_types::base64::encode(inner.to_string()) }),
        )
    };
    let invoke_chunks = vec![
        chunk(
            json!({"type": "message_start", "message": {"id": "msg_bdrk_1", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 16, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0, "output_tokens": 1}}}),
        ),
        chunk(
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        chunk(
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "London"}}),
        ),
        chunk(
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "."}}),
        ),
        chunk(json!({"type": "content_block_stop", "index": 0})),
        chunk(
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 4}}),
        ),
        chunk(json!({"type": "message_stop", "amazon-bedrock-invocationMetrics":
            {"inputTokenCount": 16, "outputTokenCount": 4, "invocationLatency": 321, "firstByteLatency": 120}})),
    ];
    // InvokeModel of an Anthropic model: an Anthropic Messages answer.
    let invoke_answer = json!({"id": "msg_bdrk_2", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_capital", "input": {"country": "UK"}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 21, "cache_read_input_tokens": 1500, "cache_creation_input_tokens": 0, "output_tokens": 17}});
    let f = Fake::start(vec![
        bedrock_fake::json(&converse),
        bedrock_fake::stream(frames.clone()),
        bedrock_fake::stream(frames.clone()),
        error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
        bedrock_fake::stream(vec![
            event("messageStart", &json!({"role": "assistant"})),
            exception("throttlingException", "Too many tokens, please wait."),
        ]),
        bedrock_fake::stream(invoke_chunks.clone()),
        bedrock_fake::stream(invoke_chunks.clone()),
        bedrock_fake::json(&invoke_answer),
    ])
    .await;
    let proxy = start_proxy(
        steer_proxy::ProxyConfig::builder()
            .ignore_env()
            .bedrock_endpoint(&f.url)
            .bedrock_region("us-east-1")
            .bedrock_credentials("AKIDPROXYBOTO3TEST01", "proxy-secret-boto3", None)
            .bedrock_key(PROXY_KEY),
    )
    .await;

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/bedrock_client.py");
    let url = proxy.url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python)
            .arg(&script)
            .args([url.as_str(), PROXY_KEY, MODEL])
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
            .env_remove("AWS_BEARER_TOKEN_BEDROCK")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bedrock_client.py failed:\n{stderr}");
    let sdk: BTreeMap<String, Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["case"].as_str().unwrap().to_string(), v)
        })
        .collect();
    let get = |case: &str| {
        sdk.get(case)
            .unwrap_or_else(|| panic!("no output for {case}: {sdk:?}\n{stderr}"))
    };

    // --- What boto3 saw: exactly what the endpoint sent. ---
    let c = get("converse");
    assert_eq!(
        unhex(c["body_hex"].as_str().unwrap()),
        converse.to_string().into_bytes()
    );
    assert_eq!(c["headers"]["x-amzn-requestid"], "0e3a5b1c-ok");
    assert!(c["headers"]["x-steer-request-id"].is_string());
    assert_eq!(c["stop_reason"], "tool_use");
    assert_eq!(c["text"], "London.");
    assert_eq!(c["tool_names"], json!(["get_capital"]));
    assert_eq!(c["usage"]["cacheReadInputTokens"], 1800);
    let s = get("converse_stream");
    assert_eq!(s["text"], "The capital is London.");
    assert_eq!(s["stop_reason"], "end_turn");
    assert_eq!(s["usage"]["outputTokens"], 6);
    assert_eq!(
        s["kinds"],
        json!([
            "messageStart",
            "contentBlockDelta",
            "contentBlockDelta",
            "contentBlockStop",
            "messageStop",
            "metadata"
        ])
    );
    let raw = get("converse_stream_raw");
    assert_eq!(unhex(raw["body_hex"].as_str().unwrap()), frames.concat());
    assert_eq!(
        raw["headers"]["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let t = get("throttled");
    assert_eq!(
        (t["error"].as_str(), t["status"].as_u64()),
        (Some("ThrottlingException"), Some(429))
    );
    assert_eq!(
        t["message"],
        "Too many requests, please wait before trying again."
    );
    assert_eq!(get("stream_throttled")["error"], "throttlingException");
    let n = get("no_proxy_key");
    assert_eq!(
        (n["error"].as_str(), n["status"].as_u64()),
        (Some("AccessDeniedException"), Some(401))
    );

    // --- The endpoint got the proxy's signature, never the client's. ---
    for case in ["invoke_stream", "anthropic_bedrock_stream"] {
        assert_eq!(get(case)["text"], "London.", "{case}");
    }
    assert_eq!(
        get("invoke_stream")["types"],
        json!([
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ])
    );
    let abc = get("anthropic_bedrock_create");
    assert_eq!(abc["text"], "Checking.");
    assert_eq!(abc["tool_names"], json!(["get_capital"]));
    assert_eq!(
        (abc["stop_reason"].as_str(), abc["cache_read"].as_u64()),
        (Some("tool_use"), Some(1500))
    );
    let ab = get("anthropic_bedrock_stream");
    assert_eq!(ab["stop_reason"], "end_turn");
    assert_eq!(
        (ab["input_tokens"].as_u64(), ab["output_tokens"].as_u64()),
        (Some(16), Some(4))
    );

    let received = f.requests();
    assert_eq!(
        received.len(),
        8,
        "the call without the proxy key never went upstream"
    );
    for r in &received {
        let auth = r.header("authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDPROXYBOTO3TEST01/"),
            "{auth}"
        );
        assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
        assert!(r.header("x-steer-proxy-key").is_none());
        // boto3 encodes the model id's colon, AnthropicBedrock does not:
        // either way the path goes upstream as the client sent it.
        assert!(
            r.path
                .starts_with("/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/")
                || r.path
                    .starts_with("/model/anthropic.claude-sonnet-4-5-20250929-v1:0/"),
            "{}",
            r.path
        );
        assert_eq!(
            r.json()["messages"][0]["content"][0]["text"],
            "What is the capital of the UK?"
        );
    }

    // --- The records: exactly one per call that went upstream. ---
    let records = proxy.wait_records(8).await;
    assert_eq!(records.len(), 8, "{records:#?}");
    let mut by_case: BTreeMap<&str, &AgentMetrics> = BTreeMap::new();
    for m in &records {
        let case = m.tags.get("case").map(String::as_str).unwrap();
        assert!(by_case.insert(case, m).is_none(), "two records for {case}");
        assert_eq!(m.tags.get("suite").map(String::as_str), Some("boto3"));
        assert_eq!((m.provider.as_str(), m.model.as_str()), ("bedrock", MODEL));
        let json = serde_json::to_string(m).unwrap();
        assert!(
            !json.contains(PROXY_KEY) && !json.contains("proxy-secret-boto3"),
            "{json}"
        );
    }
    let m = by_case["converse"];
    assert_eq!(m.method, Method::Generate);
    assert_eq!((m.input_tokens, m.output_tokens), (12 + 1800 + 1200, 3));
    assert_eq!((m.cached_tokens, m.cache_write_tokens), (1800, Some(1200)));
    assert_eq!(m.finish_reason.as_deref(), Some("tool_use"));
    assert_eq!(m.tools_used, vec!["get_capital".to_string()]);
    assert!(m.cost_usd.is_some_and(|c| c > 0.0));
    assert_eq!(
        c["headers"]["x-steer-request-id"].as_str(),
        Some(m.request_id.to_string().as_str())
    );
    for case in ["converse_stream", "converse_stream_raw"] {
        let m = by_case[case];
        assert_eq!(m.method, Method::Stream, "{case}");
        assert_eq!((m.input_tokens, m.output_tokens), (14, 6), "{case}");
        assert_eq!(m.finish_reason.as_deref(), Some("end_turn"), "{case}");
        assert!(m.ttft_ms.is_some_and(|t| t <= m.latency_ms), "{case}");
        assert!(m.error_class.is_none() && m.cost_usd.is_some(), "{case}");
    }
    assert_eq!(by_case["throttled"].error_class, Some(ErrorClass::RateLimit));
    assert_eq!(
        by_case["stream_throttled"].error_class,
        Some(ErrorClass::RateLimit)
    );
    // InvokeModel measured from the Anthropic answer: cache reads, stop
    // reason, tools (Bedrock's token-count headers carry no cache tokens).
    let m = by_case["anthropic_bedrock_create"];
    assert_eq!(m.method, Method::Generate);
    assert_eq!(
        (m.input_tokens, m.cached_tokens, m.output_tokens),
        (21 + 1500, 1500, 17)
    );
    assert_eq!(m.finish_reason.as_deref(), Some("tool_use"));
    assert_eq!(m.tools_used, vec!["get_capital".to_string()]);
    assert_eq!(m.response_model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    assert!(m.cost_usd.is_some_and(|c| c > 0.0));
    for case in ["invoke_stream", "anthropic_bedrock_stream"] {
        let m = by_case[case];
        assert_eq!(m.method, Method::Stream, "{case}");
        assert_eq!((m.input_tokens, m.output_tokens), (16, 4), "{case}");
        assert_eq!(m.finish_reason.as_deref(), Some("end_turn"), "{case}");
        assert!(m.ttft_ms.is_some_and(|t| t <= m.latency_ms), "{case}");
        assert!(
            m.error_class.is_none() && m.cost_usd.is_some_and(|c| c > 0.0),
            "{case}"
        );
    }
    proxy.stop().await;
}

/// The official `openai` SDK's `AzureOpenAI` client (tests/py/azure_client.py)
/// with `azure_endpoint` = the proxy, in front of the fake Azure resource
/// replaying recorded Azure answers: the SDK gets exactly the recorded
/// bytes, the resource gets the SDK's path, `api-version` and `api-key`,
/// and there is one correct record per call (deployment, response model,
/// tokens, cost, tags).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_azure_openai_client_through_the_azure_routes() {
    const AZURE_KEY: &str = "azure-test-client-key-0123456789";
    let Some(python) = pysdk_python() else { return };
    let up = fake_upstream().await;
    let proxy = start_proxy(config_for(&up).base_url("azure", up.root())).await;
    let unset = &[
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_API_KEY",
        "OPENAI_API_VERSION",
        "AZURE_OPENAI_AD_TOKEN",
        "OPENAI_BASE_URL",
    ];
    let sdk = run_script(python, "azure_client.py", vec![proxy.url()], unset).await;
    let get = |case: &str| {
        sdk.get(case)
            .unwrap_or_else(|| panic!("no output for {case}: {sdk:?}"))
    };
    let raw = |case: &str| unhex(get(case)["body_hex"].as_str().unwrap());

    // --- What the SDK saw: exactly what the resource sent. ---
    assert_eq!(raw("az_chat_raw"), recording("azure_chat_text.json"));
    assert_eq!(
        raw("az_stream_raw"),
        without_usage_chunk(&recording("azure_chat_stream_usage.sse"))
    );
    assert_eq!(raw("az_embeddings_raw"), embeddings_body(2));
    assert_eq!(raw("az_429"), openai_429_body());
    assert_eq!(raw("az_401"), azure_401_body());
    assert_eq!(
        raw("az_filtered"),
        recording("azure_error_400_content_filter.json")
    );
    assert!(get("az_chat_raw")["headers"]["x-steer-request-id"].is_string());
    let c = get("az_chat");
    assert_eq!(c["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(
        (c["prompt_tokens"].as_u64(), c["completion_tokens"].as_u64()),
        (Some(149), Some(39))
    );
    assert_eq!(c["finish_reason"], "stop");
    let two = serde_json::json!(["secret_retrieval_tool", "secret_retrieval_tool"]);
    assert_eq!(get("az_tools")["tool_names"], two);
    assert_eq!(get("az_tools")["finish_reason"], "tool_calls");
    assert_eq!(get("az_stream")["text"], "Hello World");
    assert_eq!(
        get("az_stream")["usage_chunks"],
        0,
        "the usage chunk not asked for is left out"
    );
    assert_eq!(get("az_stream_usage")["usage"], serde_json::json!([15, 5]));
    assert_eq!(get("az_stream_tools")["tool_names"], two);
    assert_eq!(get("az_embeddings")["vectors"], 2);
    assert_eq!(
        (get("az_429")["error"].as_str(), get("az_429")["status"].as_u64()),
        (Some("RateLimitError"), Some(429))
    );
    assert_eq!(get("az_429")["retry_after"], "20");
    assert_eq!(get("az_401")["error"], "AuthenticationError");
    assert_eq!(get("az_filtered")["error"], "BadRequestError");
    assert_eq!(get("az_filtered")["code"], "content_filter");

    // --- The resource got the SDK's own request. ---
    let got = up.received();
    assert_eq!(got.len(), 10);
    for r in &got {
        assert!(r.path.starts_with("/openai/deployments/my-"), "{}", r.path);
        assert_eq!(r.query, "api-version=2024-10-21");
        assert_eq!(r.headers["api-key"], AZURE_KEY);
        assert!(r.headers.get("x-steer-tag-case").is_none());
    }
    assert_eq!(got[0].path, "/openai/deployments/my-gpt4o/chat/completions");
    assert_eq!(got[0].body["model"], "my-gpt4o");

    // --- One correct record per call. ---
    let records = proxy.wait_records(10).await;
    assert_eq!(records.len(), 10, "{records:#?}");
    let by_case = records_by_case(&records, "azure", &[AZURE_KEY]);
    let rec = |case: &str| {
        *by_case
            .get(case)
            .unwrap_or_else(|| panic!("no record for {case}"))
    };
    for m in &records {
        assert_eq!(m.provider, "azure");
    }
    let m = rec("az_chat");
    assert_eq!((m.model.as_str(), m.method), ("my-gpt4o", Method::Generate));
    assert_eq!(m.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!((m.input_tokens, m.output_tokens), (149, 39));
    assert!(
        m.cost_usd.is_some_and(|c| c > 0.0),
        "priced by the answer's model"
    );
    assert_eq!(m.tags.get("user").map(String::as_str), Some("alice"));
    assert_eq!(
        get("az_chat_raw")["headers"]["x-steer-request-id"].as_str(),
        Some(m.request_id.to_string().as_str())
    );
    let m = rec("az_tools");
    assert_eq!(m.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!((m.input_tokens, m.output_tokens), (75, 54));
    assert!(m.tools_used.contains(&"secret_retrieval_tool".to_string()));
    for case in ["az_stream", "az_stream_raw", "az_stream_usage"] {
        let m = rec(case);
        assert_eq!(
            (m.model.as_str(), m.method),
            ("my-gpt4o", Method::Stream),
            "{case}"
        );
        assert_eq!(m.response_model.as_deref(), Some("gpt-4"), "{case}");
        assert_eq!(
            (m.input_tokens, m.output_tokens),
            (15, 5),
            "{case}: usage asked upstream"
        );
        assert!(m.ttft_ms.is_some_and(|t| t <= m.latency_ms), "{case}");
        assert!(m.error_class.is_none() && m.cost_usd.is_some(), "{case}");
    }
    assert_eq!(rec("az_stream").tags.get("user").map(String::as_str), Some("bob"));
    let m = rec("az_stream_tools");
    assert_eq!(m.finish_reason.as_deref(), Some("tool_calls"));
    assert!(m.tools_used.contains(&"secret_retrieval_tool".to_string()));
    let m = rec("az_embeddings");
    assert_eq!((m.model.as_str(), m.method), ("my-emb", Method::Embeddings));
    assert_eq!(m.input_tokens, 8);
    assert_eq!(rec("az_429").error_class, Some(ErrorClass::RateLimit));
    assert_eq!(rec("az_401").error_class, Some(ErrorClass::Authentication));
    assert_eq!(rec("az_filtered").error_class, Some(ErrorClass::ContentFilter));
    proxy.stop().await;
}

/// The official Google Gen AI SDK (`google-genai`, tests/py/genai_client.py)
/// with `http_options.base_url` = the proxy, on Gemini's native routes in
/// front of the fake Gemini endpoint replaying recorded Gemini answers:
/// the SDK parses exactly the recorded answers, the endpoint gets the SDK's
/// key, and there is one correct record per call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_google_genai_sdk_through_the_gemini_routes() {
    const GEMINI_KEY: &str = "AIza-test-client-key-0123456789";
    let Some(python) = pysdk_python() else { return };
    let up = fake_upstream().await;
    let proxy = start_proxy(config_for(&up).base_url("gemini", format!("{}/v1beta", up.root()))).await;
    let unset = &[
        "GOOGLE_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_GENAI_API_VERSION",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_CLOUD_LOCATION",
        "GOOGLE_GEMINI_BASE_URL",
    ];
    let sdk = run_script(python, "genai_client.py", vec![proxy.url()], unset).await;
    let get = |case: &str| {
        sdk.get(case)
            .unwrap_or_else(|| panic!("no output for {case}: {sdk:?}"))
    };
    let json = |name: &str| serde_json::from_slice::<Value>(&recording(name)).unwrap();

    // --- What the SDK parsed: the recorded answers. ---
    let g = get("gm_generate");
    let want = json("gemini_generate_thinking.json");
    assert_eq!(g["model_version"], want["modelVersion"]);
    assert_eq!(g["finish_reason"], "STOP");
    assert_eq!(
        g["usage"],
        serde_json::json!({"prompt": 9, "candidates": 28, "thoughts": 244, "total": 281})
    );
    assert_eq!(g["json"], want, "the SDK's object is the recorded answer");
    assert!(g["headers"]["x-steer-request-id"].is_string());
    let s = get("gm_stream");
    assert_eq!(s["model_version"], "gemini-2.5-flash");
    assert_eq!(s["finish_reason"], "STOP");
    assert_eq!(s["chunks"], 3);
    assert_eq!(
        (
            s["usage"]["prompt"].as_u64(),
            s["usage"]["candidates"].as_u64(),
            s["usage"]["thoughts"].as_u64()
        ),
        (Some(18), Some(80), Some(35))
    );
    assert_eq!(get("gm_tools")["tool_names"], serde_json::json!(["weather"]));
    assert_eq!(
        get("gm_stream_tools")["tool_names"],
        serde_json::json!(["get_country"])
    );
    let e = get("gm_429");
    assert_eq!(
        (e["error"].as_str(), e["code"].as_u64(), e["status"].as_str()),
        (Some("ClientError"), Some(429), Some("RESOURCE_EXHAUSTED"))
    );
    let e = get("gm_400");
    assert_eq!(
        (e["error"].as_str(), e["code"].as_u64(), e["status"].as_str()),
        (Some("ClientError"), Some(400), Some("INVALID_ARGUMENT"))
    );

    // --- The endpoint got the SDK's request and key. ---
    let got = up.received();
    assert_eq!(got.len(), 6);
    for r in &got {
        assert!(r.path.contains("/models/gemini-2.5-flash:"), "{}", r.path);
        assert_eq!(r.headers["x-goog-api-key"], GEMINI_KEY);
        assert!(r.body["contents"].is_array());
    }
    assert_eq!(got[1].query, "alt=sse");

    // --- One correct record per call. ---
    let records = proxy.wait_records(6).await;
    assert_eq!(records.len(), 6, "{records:#?}");
    let by_case = records_by_case(&records, "genai", &[GEMINI_KEY]);
    let rec = |case: &str| {
        *by_case
            .get(case)
            .unwrap_or_else(|| panic!("no record for {case}"))
    };
    for m in &records {
        assert_eq!(
            (m.provider.as_str(), m.model.as_str()),
            ("gemini", "gemini-2.5-flash")
        );
    }
    let m = rec("gm_generate");
    assert_eq!(m.method, Method::Generate);
    assert_eq!(m.response_model.as_deref(), Some("gemini-3-pro-preview"));
    assert_eq!((m.input_tokens, m.reasoning_tokens), (9, Some(244)));
    assert!(m.cost_usd.is_some_and(|c| c > 0.0));
    assert_eq!(
        get("gm_generate")["headers"]["x-steer-request-id"].as_str(),
        Some(m.request_id.to_string().as_str())
    );
    let m = rec("gm_stream");
    assert_eq!(m.method, Method::Stream);
    assert_eq!((m.input_tokens, m.reasoning_tokens), (18, Some(35)));
    assert!(m.ttft_ms.is_some_and(|t| t <= m.latency_ms));
    assert_eq!(m.finish_reason.as_deref(), Some("STOP"));
    assert_eq!(rec("gm_tools").tools_used, vec!["weather".to_string()]);
    assert_eq!(rec("gm_stream_tools").tools_used, vec!["get_country".to_string()]);
    assert_eq!(rec("gm_429").error_class, Some(ErrorClass::RateLimit));
    assert_eq!(rec("gm_400").error_class, Some(ErrorClass::Authentication));
    proxy.stop().await;
}
