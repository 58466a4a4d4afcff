//! OpenAI Chat Completions (also xAI and OpenAI-compatible servers).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{embedded_error, malformed, opt_u64_at, str_at, u64_at, Chunk, Completion, Decoder, Embeddings};
use crate::error::AttemptError;
use crate::sse::SseEvent;
use crate::types::{Request, ResponseFormat, Role, ToolCall, Usage};

/// The request body.
pub(crate) fn body(req: &Request, model: &str, stream: bool, max_tokens_field: &str) -> Value {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(s) = &req.system {
        messages.push(json!({"role": "system", "content": s}));
    }
    for m in &req.messages {
        let mut o = Map::new();
        o.insert("role".into(), json!(m.role.as_str()));
        o.insert("content".into(), json!(m.content));
        if m.role == Role::Tool {
            if let Some(id) = &m.tool_call_id {
                o.insert("tool_call_id".into(), json!(id));
            }
        }
        if !m.tool_calls.is_empty() {
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                .collect();
            o.insert("tool_calls".into(), Value::Array(calls));
        }
        messages.push(Value::Object(o));
    }
    let mut b = Map::new();
    b.insert("model".into(), json!(model));
    b.insert("messages".into(), Value::Array(messages));
    if stream {
        b.insert("stream".into(), json!(true));
        b.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(t) = req.temperature {
        b.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        b.insert("top_p".into(), json!(p));
    }
    if let Some(n) = req.max_tokens {
        b.insert(max_tokens_field.into(), json!(n));
    }
    if !req.stop.is_empty() {
        b.insert("stop".into(), json!(req.stop));
    }
    match &req.response_format {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => {
            b.insert("response_format".into(), json!({"type": "json_object"}));
        }
        ResponseFormat::JsonSchema { name, schema } => {
            b.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema}}),
            );
        }
    }
    if let Some(t) = &req.tools {
        b.insert("tools".into(), t.clone());
    }
    if let Some(t) = &req.tool_choice {
        b.insert("tool_choice".into(), t.clone());
    }
    for (k, v) in &req.extra {
        b.insert(k.clone(), v.clone());
    }
    Value::Object(b)
}

/// Usage: `prompt_tokens` includes cached tokens; reasoning tokens are part
/// of `completion_tokens` (OpenAI) or, where `total_tokens` shows they are
/// not (xAI), added to the output.
pub(crate) fn usage(u: &Value) -> Usage {
    let prompt = u64_at(u, "prompt_tokens");
    let completion = u64_at(u, "completion_tokens");
    // DeepSeek reports cache hits as `prompt_cache_hit_tokens` (older
    // answers have no `prompt_tokens_details`).
    let cached = u
        .get("prompt_tokens_details")
        .and_then(|d| opt_u64_at(d, "cached_tokens"))
        .or_else(|| opt_u64_at(u, "prompt_cache_hit_tokens"))
        .unwrap_or(0);
    let reasoning = u
        .get("completion_tokens_details")
        .and_then(|d| opt_u64_at(d, "reasoning_tokens"));
    let r = reasoning.unwrap_or(0);
    let excluded = r > 0
        && opt_u64_at(u, "total_tokens") == prompt.checked_add(completion).and_then(|x| x.checked_add(r));
    Usage {
        input_tokens: prompt,
        output_tokens: completion.saturating_add(if excluded { r } else { 0 }),
        cached_tokens: cached.min(prompt),
        cache_write_tokens: None,
        cache_write_1h_tokens: None,
        reasoning_tokens: reasoning,
        web_search_requests: None,
    }
}

/// The name and arguments of a tool call: `function` tools carry
/// `function.{name,arguments}`, custom tools `custom.{name,input}`.
fn tool_parts(c: &Value) -> (Option<String>, Option<String>) {
    if let Some(f) = c.get("function").filter(|f| f.is_object()) {
        return (str_at(f, "name"), str_at(f, "arguments"));
    }
    if let Some(f) = c.get("custom").filter(|f| f.is_object()) {
        return (str_at(f, "name"), str_at(f, "input"));
    }
    (None, None)
}

fn tool_calls(v: Option<&Value>) -> Vec<ToolCall> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| {
                    let (name, arguments) = tool_parts(c);
                    ToolCall {
                        id: str_at(c, "id").unwrap_or_default(),
                        name: name.unwrap_or_default(),
                        arguments: arguments.unwrap_or_default(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Parse a (200) response body.
pub(crate) fn parse(body: &[u8]) -> Result<Completion, AttemptError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(&e))?;
    if let Some(e) = embedded_error(&v) {
        return Err(e);
    }
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| AttemptError::invalid("response has no choices"))?;
    let msg = choice.get("message");
    Ok(Completion {
        text: msg.and_then(|m| str_at(m, "content")).unwrap_or_default(),
        tool_calls: tool_calls(msg.and_then(|m| m.get("tool_calls"))),
        finish_reason: str_at(choice, "finish_reason"),
        usage: v.get("usage").map(usage).unwrap_or_default(),
        response_model: str_at(&v, "model").filter(|m| !m.is_empty()),
    })
}

/// Vectors, usage and model of an `/embeddings` answer (`data[].embedding`
/// as float arrays, `usage.prompt_tokens`).
pub(crate) fn parse_embeddings(body: &[u8]) -> Result<Embeddings, AttemptError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(&e))?;
    if let Some(e) = embedded_error(&v) {
        return Err(e);
    }
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| AttemptError::invalid("embeddings response has no `data`"))?;
    let mut rows: Vec<(u64, Vec<f32>)> = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let vector = d
                .get("embedding")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_f64).map(|x| x as f32).collect())
                .ok_or_else(|| AttemptError::invalid("an embedding is not a float array"))?;
            Ok((d.get("index").and_then(Value::as_u64).unwrap_or(i as u64), vector))
        })
        .collect::<Result<_, AttemptError>>()?;
    rows.sort_by_key(|(i, _)| *i);
    let usage = v.get("usage").map_or_else(Usage::default, |u| Usage {
        input_tokens: u64_at(u, "prompt_tokens").max(u64_at(u, "total_tokens")),
        ..Usage::default()
    });
    Ok(Embeddings {
        vectors: rows.into_iter().map(|(_, v)| v).collect(),
        usage,
        model: str_at(&v, "model"),
    })
}

/// Decodes `chat.completion.chunk` events up to `data: [DONE]`.
#[derive(Default)]
pub(crate) struct StreamDecoder {
    text: String,
    tools: BTreeMap<u64, ToolCall>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    model: Option<String>,
    done: bool,
}

impl Decoder for StreamDecoder {
    fn on_event(&mut self, ev: SseEvent) -> Result<Chunk, AttemptError> {
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(Chunk::Nothing);
        }
        if data.is_empty() {
            return Ok(Chunk::Nothing);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| malformed(&e))?;
        if let Some(e) = embedded_error(&v) {
            return Err(e);
        }
        // Azure's first chunk (prompt filter results) has an empty model.
        if self.model.is_none() {
            self.model = str_at(&v, "model").filter(|m| !m.is_empty());
        }
        // Groq streams report usage in `x_groq.usage` of the last chunk.
        if let Some(u) = v.get("usage").filter(|u| u.is_object()).or_else(|| {
            v.get("x_groq")
                .and_then(|x| x.get("usage"))
                .filter(|u| u.is_object())
        }) {
            self.usage = Some(usage(u));
        }
        let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else {
            return Ok(Chunk::Nothing);
        };
        if let Some(r) = str_at(choice, "finish_reason") {
            self.finish_reason = Some(r);
        }
        let Some(delta) = choice.get("delta") else {
            return Ok(Chunk::Nothing);
        };
        let non_empty = |key: &str| {
            delta
                .get(key)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        };
        // Reasoning text (xAI, DeepSeek and other compatible servers) and
        // refusals are output too: they count for time to first token.
        let mut chunk = if non_empty("reasoning_content") || non_empty("reasoning") || non_empty("refusal") {
            Chunk::Output
        } else {
            Chunk::Nothing
        };
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            if !calls.is_empty() {
                chunk = Chunk::Output;
            }
            for (i, c) in calls.iter().enumerate() {
                let idx = c.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
                let entry = self.tools.entry(idx).or_insert_with(|| ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments: String::new(),
                });
                if let Some(id) = str_at(c, "id") {
                    entry.id = id;
                }
                let (name, arguments) = tool_parts(c);
                if let Some(n) = name {
                    entry.name.push_str(&n);
                }
                if let Some(a) = arguments {
                    entry.arguments.push_str(&a);
                }
            }
        }
        match delta.get("content").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => {
                self.text.push_str(s);
                Ok(Chunk::Text(s.to_string()))
            }
            _ => Ok(chunk),
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(self: Box<Self>) -> Result<Completion, AttemptError> {
        // Some compatible servers omit [DONE]; a finish reason is enough.
        if !self.done && self.finish_reason.is_none() {
            return Err(AttemptError::network("stream ended before the final event"));
        }
        Ok(Completion {
            text: self.text,
            tool_calls: self.tools.into_values().collect(),
            finish_reason: self.finish_reason,
            usage: self.usage.unwrap_or_default(),
            response_model: self.model,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::types::Message;

    #[test]
    fn body_has_every_option() {
        let req = Request::new(vec![Message::user("hi"), Message::tool("call_1", "42")])
            .system("sys")
            .temperature(0.2)
            .top_p(0.9)
            .max_tokens(50)
            .stop("END")
            .json_mode()
            .tools(json!([{"type": "function", "function": {"name": "f"}}]))
            .extra("seed", json!(7));
        let b = body(&req, "gpt-4o", true, "max_completion_tokens");
        assert_eq!(b["model"], "gpt-4o");
        assert_eq!(b["messages"][0], json!({"role": "system", "content": "sys"}));
        assert_eq!(b["messages"][2]["tool_call_id"], "call_1");
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["max_completion_tokens"], 50);
        assert_eq!(b["stop"], json!(["END"]));
        assert_eq!(b["response_format"]["type"], "json_object");
        assert_eq!(b["tools"][0]["function"]["name"], "f");
        assert_eq!(b["seed"], 7);
        assert_eq!(b["temperature"], 0.2);
    }

    #[test]
    fn parses_a_documented_response_with_cached_and_reasoning_tokens() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-2024-08-06",
          "choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[
            {"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
            "finish_reason":"tool_calls"}],
          "usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,
            "prompt_tokens_details":{"cached_tokens":1920},"completion_tokens_details":{"reasoning_tokens":256}}}"#;
        let c = parse(body).unwrap();
        assert_eq!(c.text, "");
        assert_eq!(c.tool_calls[0].name, "get_weather");
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(c.usage.input_tokens, 2006);
        assert_eq!(c.usage.cached_tokens, 1920);
        assert_eq!(
            c.usage.output_tokens, 300,
            "OpenAI reasoning is inside completion_tokens"
        );
        assert_eq!(c.usage.reasoning_tokens, Some(256));
        assert_eq!(c.response_model.as_deref(), Some("gpt-4o-2024-08-06"));
    }

    #[test]
    fn deepseek_cache_hits_and_groq_stream_usage() {
        let u = usage(
            &json!({"prompt_tokens":120,"completion_tokens":30,"total_tokens":150,
            "prompt_cache_hit_tokens":75,"prompt_cache_miss_tokens":45}),
        );
        assert_eq!(u.cached_tokens, 75);
        let mut d = StreamDecoder::default();
        let ev = |s: &str| SseEvent {
            data: s.into(),
            ..Default::default()
        };
        d.on_event(ev(
            r#"{"model":"gemma2-9b-it","choices":[{"index":0,"delta":{"content":"x"}}]}"#,
        ))
        .unwrap();
        d.on_event(ev(r#"{"model":"gemma2-9b-it","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"x_groq":{"id":"req_1","usage":{"prompt_tokens":18,"completion_tokens":439,"total_tokens":457}}}"#)).unwrap();
        d.on_event(ev("[DONE]")).unwrap();
        let c = Box::new(d).finish().unwrap();
        assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (18, 439));
    }

    #[test]
    fn xai_reasoning_outside_completion_tokens_is_added() {
        let u = usage(
            &json!({"prompt_tokens":32,"completion_tokens":9,"total_tokens":135,
            "completion_tokens_details":{"reasoning_tokens":94}}),
        );
        assert_eq!(u.output_tokens, 103);
    }

    #[test]
    fn stream_of_chunks_with_usage_and_tool_calls() {
        let mut d: Box<dyn Decoder> = Box::<StreamDecoder>::default();
        let ev = |s: &str| SseEvent {
            event: None,
            data: s.to_string(),
            id: None,
        };
        assert_eq!(
            d.on_event(ev(
                r#"{"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#
            ))
            .unwrap(),
            Chunk::Nothing
        );
        assert_eq!(
            d.on_event(ev(r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#))
                .unwrap(),
            Chunk::Text("Hel".into())
        );
        d.on_event(ev(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"f","arguments":"{\"a\""}}]}}]}"#)).unwrap();
        d.on_event(ev(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}"#)).unwrap();
        d.on_event(ev(
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        ))
        .unwrap();
        d.on_event(ev(r#"{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}}}"#)).unwrap();
        assert!(!d.is_done());
        d.on_event(ev("[DONE]")).unwrap();
        assert!(d.is_done());
        let c = d.finish().unwrap();
        assert_eq!(c.text, "Hel");
        assert_eq!(
            c.tool_calls,
            vec![ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: "{\"a\":1}".into()
            }]
        );
        assert_eq!(c.usage.input_tokens, 10);
        assert_eq!(c.usage.cached_tokens, 4);
        assert_eq!(c.response_model.as_deref(), Some("gpt-4o-mini"));
    }

    #[test]
    fn truncated_stream_and_error_chunk() {
        let mut d: Box<dyn Decoder> = Box::<StreamDecoder>::default();
        d.on_event(SseEvent {
            data: r#"{"choices":[{"delta":{"content":"x"}}]}"#.into(),
            ..Default::default()
        })
        .unwrap();
        assert!(d.finish().is_err());
        let mut d = StreamDecoder::default();
        let e = d
            .on_event(SseEvent {
                data: r#"{"error":{"message":"boom","type":"server_error"}}"#.into(),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(e.class, steer_metrics::ErrorClass::ServerError);
        assert!(parse(b"{not json").is_err());
        assert!(parse(b"{}").is_err());
    }
}
