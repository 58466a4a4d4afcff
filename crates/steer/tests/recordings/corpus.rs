//! The replay corpus as the replay tests read it: the manifest's entries,
//! which recorded events carry model output, and the error class each
//! recording must give. Shared by the client's replay test
//! (`crates/steer/tests/replay.rs`) and the proxy's
//! (`crates/steer-proxy/tests/replay.rs`), which include this file.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use serde_json::Value;
use steer::{AgentMetrics, ErrorClass, Usage};

/// The folder of the recordings (from either crate of the workspace).
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../steer/tests/recordings")
}

/// One entry of `manifest.json`.
#[derive(Debug, Clone)]
pub struct Recording {
    pub file: String,
    pub provider: String,
    pub stream: bool,
    pub status: u16,
    pub expected: Value,
}

/// Every entry of `manifest.json`.
pub fn manifest() -> Vec<Recording> {
    let text = std::fs::read_to_string(dir().join("manifest.json")).unwrap();
    let v: Vec<Value> = serde_json::from_str(&text).unwrap();
    v.into_iter()
        .map(|e| Recording {
            file: e["file"].as_str().unwrap().to_string(),
            provider: e["provider"].as_str().unwrap().to_string(),
            stream: e["stream"].as_bool().unwrap(),
            status: u16::try_from(e["status"].as_u64().unwrap()).unwrap(),
            expected: e["expected"].clone(),
        })
        .collect()
}

/// Whether one recorded event carries model output of any kind, read from
/// its JSON by the providers' documented shapes (not by steer's decoders,
/// so a decoder that missed thinking or tool-call output fails the TTFT
/// check).
pub fn is_output_event(provider: &str, data: &Value) -> bool {
    let non_empty = |v: &Value| match v {
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Null => false,
        _ => true,
    };
    match provider {
        // A block that starts with content (a tool call, redacted thinking,
        // non-empty text or thinking), or a delta with content.
        "anthropic" => {
            let part = match data["type"].as_str() {
                Some("content_block_start") => &data["content_block"],
                Some("content_block_delta") => &data["delta"],
                _ => return false,
            };
            matches!(
                part["type"].as_str(),
                Some(
                    "tool_use"
                        | "server_tool_use"
                        | "redacted_thinking"
                        | "input_json_delta"
                        | "citations_delta"
                )
            ) || non_empty(&part["text"])
                || non_empty(&part["thinking"])
        }
        "gemini" => data["candidates"][0]["content"]["parts"]
            .as_array()
            .is_some_and(|parts| {
                parts.iter().any(|p| {
                    p.get("functionCall").is_some() || p["text"].as_str().is_some_and(|t| !t.is_empty())
                })
            }),
        // OpenAI and compatible: text, reasoning, a tool-call delta or a refusal.
        _ => {
            let d = &data["choices"][0]["delta"];
            [
                "content",
                "reasoning_content",
                "reasoning",
                "tool_calls",
                "refusal",
            ]
            .iter()
            .any(|k| non_empty(&d[*k]))
        }
    }
}

/// Index of the first of a recorded stream's `events` that carries model
/// output of any kind (none when the model answered nothing, e.g. a
/// refusal).
pub fn first_output_event(r: &Recording, events: &[impl AsRef<[u8]>]) -> Option<usize> {
    events.iter().position(|ev| {
        String::from_utf8_lossy(ev.as_ref())
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .any(|v| is_output_event(&r.provider, &v))
    })
}

/// The error class the record of recording `r` (its answer `body`) must
/// have: by its status, or for a success, by a content-filter finish.
pub fn expected_error_class(r: &Recording, body: &[u8]) -> Option<ErrorClass> {
    if r.status != 200 {
        let has = |pat: &[u8]| body.windows(pat.len()).any(|w| w == pat);
        return Some(match r.status {
            // Gemini answers a bad key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
            400 if has(b"API_KEY_INVALID") => ErrorClass::Authentication,
            400 if r.expected["error_type"] == "content_filter" => ErrorClass::ContentFilter,
            400 => ErrorClass::InvalidRequest,
            401 => ErrorClass::Authentication,
            429 | 529 => ErrorClass::RateLimit,
            s => panic!("{}: no expectation for status {s}", r.file),
        });
    }
    matches!(
        r.expected["finish_reason"].as_str(),
        Some("refusal" | "content_filter" | "SAFETY" | "MODEL_ARMOR")
    )
    .then_some(ErrorClass::ContentFilter)
}

fn n(v: &Value) -> Option<u64> {
    v.as_u64()
}

/// The manifest's raw provider numbers, normalised as steer records them
/// (the table in the recordings' README).
pub fn expected_usage(r: &Recording) -> Usage {
    let x = &r.expected;
    let cached = n(&x["cached_tokens"]).unwrap_or(0);
    let write = n(&x["cache_write_tokens"]);
    let raw_input = n(&x["input_tokens"]).unwrap_or(0);
    let reasoning = n(&x["reasoning_tokens"]);
    let mut u = Usage {
        cached_tokens: cached,
        reasoning_tokens: reasoning,
        ..Usage::default()
    };
    u.input_tokens = match r.provider.as_str() {
        // Anthropic input excludes cache reads and writes; steer's includes them.
        "anthropic" => raw_input + cached + write.unwrap_or(0),
        // Tool-use prompt tokens are input too.
        "gemini" => raw_input + n(&x["tool_use_prompt_tokens"]).unwrap_or(0),
        _ => raw_input,
    };
    // xAI and Gemini report reasoning outside the output count.
    u.output_tokens = n(&x["output_tokens"]).unwrap_or(0)
        + match r.provider.as_str() {
            "xai" | "gemini" => reasoning.unwrap_or(0),
            _ => 0,
        };
    if r.provider == "anthropic" {
        u.cache_write_tokens = write;
        u.cache_write_1h_tokens = n(&x["cache_write_1h_tokens"]);
    }
    u
}

/// Check the fields of `m`, the record of recording `r` (its answer
/// `body`), that the manifest fixes, whoever measured it: provider, error
/// class, no `key` anywhere; for a failure, no cost and no tokens; for a
/// success, response model, finish reason, normalised usage
/// ([`expected_usage`], returned) and tools. `None` for a failure.
pub fn check_record(r: &Recording, m: &AgentMetrics, body: &[u8], key: &str) -> Option<Usage> {
    let what = &r.file;
    let x = &r.expected;
    assert_eq!(m.provider, r.provider, "{what}: provider");
    assert_eq!(
        m.error_class,
        expected_error_class(r, body),
        "{what}: error class"
    );
    let text = serde_json::to_string(m).unwrap();
    assert!(!text.contains(key), "{what}: the record holds the key");
    if r.status != 200 {
        assert!(m.error_message.is_some(), "{what}: no error message");
        assert!(
            m.cost_usd.is_none(),
            "{what}: a failed request costs nothing known"
        );
        assert_eq!((m.input_tokens, m.output_tokens), (0, 0), "{what}");
        return None;
    }
    assert_eq!(
        m.response_model.as_deref(),
        x["model"].as_str(),
        "{what}: response model"
    );
    assert_eq!(
        m.finish_reason.as_deref(),
        x["finish_reason"].as_str(),
        "{what}: finish reason"
    );
    let u = expected_usage(r);
    assert_eq!(m.input_tokens, u.input_tokens, "{what}: input tokens");
    assert_eq!(m.output_tokens, u.output_tokens, "{what}: output tokens");
    assert_eq!(m.cached_tokens, u.cached_tokens, "{what}: cached tokens");
    if r.provider == "anthropic" {
        assert_eq!(m.cache_write_tokens, u.cache_write_tokens, "{what}: cache writes");
        assert_eq!(
            m.cache_write_1h_tokens.unwrap_or(0),
            u.cache_write_1h_tokens.unwrap_or(0),
            "{what}: 1-hour cache writes"
        );
    }
    assert_eq!(
        m.reasoning_tokens.filter(|t| *t > 0),
        u.reasoning_tokens.filter(|t| *t > 0),
        "{what}: reasoning tokens"
    );
    // `tools_used` names each tool once; `tools_invoked` counts the calls.
    let calls: Vec<String> = x["tool_names"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    let mut tools = calls.clone();
    tools.dedup();
    assert_eq!(m.tools_used, tools, "{what}: tools");
    assert_eq!(m.tools_invoked as usize, calls.len(), "{what}: tool calls");
    Some(u)
}
